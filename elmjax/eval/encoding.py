"""Text -> token requests, exactly as lm-evaluation-harness's causal models encode them.

One place opens the tokenizer (``open_tokenizer``) and one place turns
``(context, continuation)`` strings into token lists (``encode_pairs``), so the
elmjax evaluator and the lm-evaluation-harness adapter score identical tokens.
"""

from __future__ import annotations

from typing import Sequence


def open_tokenizer(path: str):
    """A SentencePiece ``.model`` file -> a tokenizer object.

    The object has ``encode_batch(texts, add_bos=, add_eos=) -> list[list[int]]``,
    ``decode(ids) -> str``, ``bos_id``, ``eos_id`` and ``vocab_size``
    (``elmjax.data.tokenizer.Tokenizer``, which NFC-normalises as pretraining does).
    """
    from elmjax.data.tokenizer import Tokenizer

    return Tokenizer(path)


def encode(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text, without BOS/EOS: ``[n]`` strings -> ``[n]`` id lists."""
    return tokenizer.encode_batch(list(texts), add_bos=False, add_eos=False)


def encode_pairs(tokenizer, pairs: Sequence[tuple[str, str]], add_bos: bool = True,
                 prefix_token: int | None = None) -> list[tuple[list[int], list[int]]]:
    """``[(context, continuation)]`` strings -> ``[(context_ids, continuation_ids)]``.

    As lm-evaluation-harness does for causal models: trailing whitespace of the
    context moves to the continuation; ``context + continuation`` is encoded whole
    and the continuation is what follows the encoded context's length, so token
    merges across the boundary match the whole text. With ``add_bos`` both
    encodings start with BOS; the context ids are the context encoded alone. An
    empty context becomes ``[prefix_token]`` (default BOS).
    """
    bos = tokenizer.bos_id
    prefix = bos if prefix_token is None else prefix_token
    head = [bos] if add_bos else []
    texts, kinds = [], []
    for ctx, cont in pairs:
        if ctx == "":
            texts.append(cont)
            kinds.append(None)
            continue
        n_spaces = len(ctx) - len(ctx.rstrip())
        if n_spaces:
            ctx, cont = ctx[:-n_spaces], ctx[-n_spaces:] + cont
        texts.extend([ctx + cont, ctx])
        kinds.append(2)
    ids = encode(tokenizer, texts)
    out, k = [], 0
    for kind in kinds:
        if kind is None:
            cont_ids = ids[k]
            k += 1
            if cont_ids and cont_ids[0] == prefix:
                out.append((cont_ids[:1], cont_ids[1:]))
            else:
                out.append(([prefix], cont_ids))
            continue
        whole, ctx_ids = head + ids[k], head + ids[k + 1]
        k += 2
        out.append((ctx_ids or [prefix], whole[len(ctx_ids):]))
    return out
