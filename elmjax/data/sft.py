"""Instruction data: chat templates, assistant-only loss masks, packed batches.

Three record formats (one JSON object per line in ``.jsonl``, a JSON list in
``.json``, or rows of a ``.parquet`` file):

- ``ultrafeedback``: UltraFeedback binarized (``prompt``, ``chosen`` = a list of
  ``{"role", "content"}`` messages; ``rejected``, scores and the rest are ignored).
  When ``chosen`` does not start with the user's turn, ``prompt`` is put first.
- ``messages``: ``{"messages": [{"role", "content"}, ...]}`` (roles system, user, assistant).
- ``commonsense``: the CommonSense-170k mixture as distributed by LLM-Adapters
  (``instruction``, ``input``, ``output``, ``answer``), rendered with the Alpaca prompt;
  the response (``output``) is trained.

``sft.format=auto`` decides per record by its keys. Chat records are rendered with the
template in the ``sft`` section (defaults: ``elmjax.config.sft_config``); the default is OpenELM-Instruct's Zephyr-style form
``<|user|>\\n…</s><|assistant|>\\n…</s>`` as in docs/data_formats.md (Zephyr's own template
puts a newline after each ``</s>``; change ``sft.user``/``sft.assistant`` to get it). The
literals ``<s>``/``</s>`` in a template are the tokenizer's BOS/EOS ids, never text. Each
text piece is encoded on its own (SentencePiece adds its word-boundary marker at the
start of each), so prompts for generation must be built with :func:`encode_prompt`.

Only what the assistant says is trained: its content and the closing ``</s>``, not the
``<|assistant|>\\n`` header nor any user/system turn. Conversations are cut to
``data.seq_len + 1`` tokens; each becomes one segment of a packed row (or one padded row,
``sft.pack=False``) with the same batch dict as pretraining. Records that do not parse or
have nothing to train are skipped and counted by reason (:data:`SKIP_REASONS`).

The iterator (:func:`make_sft_iterator`) is a grain graph whose state is a few integers
(epoch, position, packing round), so a restored iterator continues exactly.
"""

from __future__ import annotations

import json
import re

import grain
import numpy as np
from etils import epath

from elmjax.data import sources
from elmjax.data.packing import PackIterDataset
from elmjax.data.sources import SourceStats
from elmjax.data.tokenizer import Tokenizer

SOURCE = "sft"
ROLES = ("system", "user", "assistant")
SKIP_REASONS = (
    "invalid_json", "invalid_utf8", "not_an_object",  # as in pretraining
    "unknown_format",    # no prompt/chosen, messages or instruction/output fields
    "bad_messages",      # messages not a list of {role, content} with known roles and text
    "no_assistant_turn",  # nothing for the model to learn
    "empty_text",        # an instruction or response that is empty
    "no_target_tokens",  # every assistant token fell beyond data.seq_len
)

# --------------------------------------------------------------------------- rendering


class SkipRecord(ValueError):
    """A record that cannot be used; ``args[0]`` is one of :data:`SKIP_REASONS`."""


def parse_messages(value) -> list[dict]:
    """A non-empty list of ``{"role", "content"}`` messages (known roles, text content) as
    clean dicts; raises :class:`SkipRecord` (``bad_messages``) otherwise."""
    if not isinstance(value, list) or not value:
        raise SkipRecord("bad_messages")
    out = []
    for m in value:
        if not (isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str)):
            raise SkipRecord("bad_messages")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def record_format(record: dict, fmt: str = "auto") -> str:
    """The format of one parsed record (``fmt`` unless it is ``auto``)."""
    if fmt != "auto":
        return fmt
    if "chosen" in record:
        return "ultrafeedback"
    if "messages" in record:
        return "messages"
    if "instruction" in record and "output" in record:
        return "commonsense"
    raise SkipRecord("unknown_format")


def render_segments(record: dict, s) -> list[tuple[str, bool]]:
    """A record as ``(text, trained)`` pieces in order, per the ``sft`` section ``s``.

    Raises :class:`SkipRecord` for a record that cannot be used.
    """
    fmt = record_format(record, s.format)
    if fmt == "commonsense":
        instruction, inp, output = (record.get(k, "") for k in ("instruction", "input", "output"))
        if not all(isinstance(x, str) for x in (instruction, inp, output)):
            raise SkipRecord("unknown_format")
        if not instruction.strip() or not output.strip():
            raise SkipRecord("empty_text")
        template = s.alpaca_with_input if inp.strip() else s.alpaca_no_input
        return [(template.format(instruction=instruction, input=inp), False), (output + "</s>", True)]
    if fmt == "ultrafeedback":
        msgs = parse_messages(record.get("chosen"))
        prompt = record.get("prompt")
        if msgs[0]["role"] == "assistant" and isinstance(prompt, str) and prompt.strip():
            msgs = [{"role": "user", "content": prompt}] + msgs
    elif fmt == "messages":
        msgs = parse_messages(record.get("messages"))
    else:
        raise SkipRecord("unknown_format")
    if not any(m["role"] == "assistant" and m["content"].strip() for m in msgs):
        raise SkipRecord("no_assistant_turn")
    out = []
    for m in msgs:
        head, _, tail = s[m["role"]].partition("{content}")
        trained = m["role"] == "assistant"
        out += [(head, False), (m["content"] + tail, trained)]
    return out


_SPECIAL = re.compile(r"(<s>|</s>)")


def encode_segments(tokenizer: Tokenizer, segments_per_record, add_bos: bool = True):
    """Tokenizes records given as ``(text, trained)`` pieces, in one SentencePiece call.

    Returns one ``(ids int32 [n], label_mask float32 [n])`` per record; the label mask is 1
    on tokens the model should learn to produce. ``<s>``/``</s>`` in the text become the
    BOS/EOS ids.
    """
    texts, layout = [], []
    for segments in segments_per_record:
        parts = []
        for text, trained in segments:
            for piece in _SPECIAL.split(text):
                if piece in ("<s>", "</s>"):  # a literal id
                    parts.append(([tokenizer.bos_id if piece == "<s>" else tokenizer.eos_id], trained))
                elif piece:  # the index of a text to encode
                    parts.append((len(texts), trained))
                    texts.append(piece)
        layout.append(parts)
    encoded = tokenizer.encode_batch(texts, add_bos=False, add_eos=False)
    out = []
    for parts in layout:
        ids, mask = ([tokenizer.bos_id], [0.0]) if add_bos else ([], [])
        for item, trained in parts:
            piece = encoded[item] if isinstance(item, int) else item
            ids += piece
            mask += [float(trained)] * len(piece)
        out.append((np.asarray(ids, np.int32), np.asarray(mask, np.float32)))
    return out


def encode_prompt(tokenizer: Tokenizer, messages: list[dict], s) -> np.ndarray:
    """Token ids int32 ``[n]`` of a conversation followed by the assistant header, ready for
    generation, rendered and encoded exactly as in training."""
    msgs = parse_messages(messages)
    segments = []
    for m in msgs:
        head, _, tail = s[m["role"]].partition("{content}")
        segments += [(head, False), (m["content"] + tail, False)]
    segments.append((s.assistant.partition("{content}")[0], False))
    return encode_segments(tokenizer, [segments], s.add_bos)[0][0]


# --------------------------------------------------------------------------- reading


def _read_file(path: str) -> list:
    """Raw records of one file: bytes lines (``.jsonl``) or parsed objects (``.json``, parquet)."""
    p = epath.Path(path)
    data = p.read_bytes()
    if data[:4] == b"PAR1":
        import io

        import pyarrow.parquet as pq

        return pq.read_table(io.BytesIO(data)).to_pylist()
    if path.endswith(".json") and data.lstrip()[:1] == b"[":
        return json.loads(data)
    return [line for line in data.split(b"\n") if line.strip()]


def load_records(files: str) -> list:
    """Every raw record of the comma-separated paths/globs, in file order."""
    paths = sources.expand_paths([f.strip() for f in files.split(",") if f.strip()])
    return [r for path in paths for r in _read_file(path)]


def parse_record(raw) -> dict:
    """A raw record (bytes line or object) as a dict; raises :class:`SkipRecord`."""
    if isinstance(raw, bytes):
        try:
            raw = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise SkipRecord("invalid_utf8") from None
        except ValueError:
            raise SkipRecord("invalid_json") from None
    if not isinstance(raw, dict):
        raise SkipRecord("not_an_object")
    return raw


class ConversationWindows(grain.IterDataset):
    """Records as blocks of tokenized conversations, for :class:`PackIterDataset`.

    Takes the raw records (this host's share), the tokenizer, the ``sft`` section,
    ``seq_len`` and ``seed``. Reads forever, in a new seeded order each epoch, ``window``
    records at a time; yields ``tokens`` int32 ``[T]``, ``label_mask`` float32 ``[T]``,
    ``piece_start``/``piece_len`` ``[P]`` (one piece per kept conversation), ``stats``
    and ``source``.
    """

    def __init__(self, records: list, tokenizer: Tokenizer, s, *, seq_len: int, seed: int):
        super().__init__()
        if not records:
            raise ValueError(f"sft.files {s.files!r}: no records")
        self.records, self.tokenizer, self.s = records, tokenizer, s
        self.seq_len, self.seed = seq_len, seed

    def __iter__(self):
        return _ConversationIterator(self)


class EpochOrderIterator(grain.DatasetIterator):
    """Reads ``ds.records`` in a fresh seeded order each epoch; its state is three integers
    (epoch, position, records kept this epoch), so a restored iterator continues exactly."""

    def __init__(self, ds):
        super().__init__()
        self._ds = ds
        self._epoch, self._pos, self._kept_this_epoch = 0, 0, 0
        self._order = self._permutation()

    def _permutation(self):
        return np.random.default_rng([self._ds.seed, self._epoch]).permutation(len(self._ds.records))

    def _roll_epoch(self, nothing_kept) -> None:
        """Starts the next epoch when this one is read; ``ValueError(nothing_kept())`` if it kept
        no record (every record skipped: the data cannot train anything)."""
        if self._pos >= len(self._ds.records):
            if self._kept_this_epoch == 0:
                raise ValueError(nothing_kept())
            self._epoch, self._pos, self._kept_this_epoch = self._epoch + 1, 0, 0
            self._order = self._permutation()

    def get_state(self):
        return {"epoch": self._epoch, "pos": self._pos, "kept_this_epoch": self._kept_this_epoch}

    def set_state(self, state):
        self._epoch, self._pos = state["epoch"], state["pos"]
        self._kept_this_epoch = state["kept_this_epoch"]
        self._order = self._permutation()


class _ConversationIterator(EpochOrderIterator):
    def __next__(self):
        ds, stats = self._ds, SourceStats()
        self._roll_epoch(lambda: f"sft.files {ds.s.files!r}: a full pass kept no conversation "
                                 f"(every record was skipped)")
        chunk = self._order[self._pos:self._pos + ds.s.window]
        self._pos += len(chunk)
        segments = []
        for i in chunk:
            try:
                segments.append(render_segments(parse_record(ds.records[i]), ds.s))
            except SkipRecord as e:
                stats.skip(e.args[0])
        stats.documents_read += len(segments)
        tokens, masks, lens = [], [], []
        for ids, mask in encode_segments(ds.tokenizer, segments, ds.s.add_bos):
            keep = min(len(ids), ds.seq_len + 1)
            if not mask[1:keep].any():
                stats.skip("no_target_tokens")
                continue
            stats.tokens_dropped += len(ids) - keep
            tokens.append(ids[:keep])
            masks.append(mask[:keep])
            lens.append(keep - 1)
        stats.documents_kept += len(lens)
        stats.tokens += int(sum(lens)) + len(lens)
        stats.chunks += len(lens)
        self._kept_this_epoch += len(lens)
        sizes = np.asarray([x + 1 for x in lens], np.int64)
        return {"tokens": np.concatenate(tokens) if tokens else np.zeros(1, np.int32),
                "label_mask": np.concatenate(masks) if masks else np.zeros(1, np.float32),
                "piece_start": np.cumsum(sizes) - sizes, "piece_len": np.asarray(lens, np.int32),
                "stats": {SOURCE: stats.to_dict()}, "source": SOURCE}


def make_sft_dataset(cfg, process_index: int | None = None, process_count: int | None = None):
    """This host's instruction-tuning batches as a grain ``IterDataset`` (see
    :func:`make_sft_iterator`); ``.num_records`` is the host's record count."""
    import jax

    index = jax.process_index() if process_index is None else process_index
    count = jax.process_count() if process_count is None else process_count
    if cfg.train.global_batch_size % count:
        raise ValueError(f"train.global_batch_size={cfg.train.global_batch_size} is not divisible "
                         f"by the {count} hosts")
    tokenizer = Tokenizer(cfg.data.tokenizer, num_threads=cfg.data.get("tokenizer_threads", 1))
    if tokenizer.vocab_size > cfg.model.vocab_size:
        raise ValueError(f"data.tokenizer {cfg.data.tokenizer} has {tokenizer.vocab_size} pieces but "
                         f"model.vocab_size is {cfg.model.vocab_size}")
    records = load_records(cfg.sft.files)[index::count]
    ds = ConversationWindows(records, tokenizer, cfg.sft, seq_len=cfg.data.seq_len, seed=cfg.train.seed)
    ds = PackIterDataset(ds, batch_size=cfg.train.global_batch_size // count, seq_len=cfg.data.seq_len,
                         round_rows=cfg.data.pack_rows, pad_id=tokenizer.pad_id, seed=cfg.train.seed,
                         source_names=[SOURCE], pack=cfg.sft.pack)
    ds.num_records = len(records)
    return ds


def make_sft_iterator(cfg, process_index: int | None = None, process_count: int | None = None):
    """This host's instruction-tuning batches as a grain ``DatasetIterator``.

    Takes the run config (sections ``sft``, ``data``: ``tokenizer``, ``seq_len``,
    ``pack_rows``; ``train``: ``global_batch_size``, ``seed``; ``model``). Batches are dicts
    of ``[B, L]`` arrays (``B = global_batch_size // hosts``, ``L = data.seq_len``):
    ``inputs``, ``targets``, ``segment_ids``, ``positions`` (int32) and ``loss_mask``
    (float32, 1 only where the target is an assistant token). ``get_state``/``set_state``
    resume exactly.
    """
    return make_sft_dataset(cfg, process_index, process_count).__iter__()


def sft_stats(it) -> dict:
    """Counts so far of an iterator from :func:`make_sft_iterator` (see ``SourceStats``)."""
    return it.stats[SOURCE].to_dict()


class IteratorData:
    """A batch source for the training loop over one resumable iterator (``curriculum.TrainData``'s
    interface without curriculum phases): subclasses set ``self._iterator`` and give
    ``describe`` and ``stats``."""

    _iterator = None

    def phase_name(self, step: int) -> str | None:
        """Fine-tuning data has no curriculum phases."""
        return None

    def next_batch(self, step: int) -> dict:
        """The host's share of the batch for ``step``."""
        return next(self._iterator)

    # grain's Orbax handler calls these.
    def get_state(self) -> bytes:
        return json.dumps({"iterator": self._iterator.get_state()}).encode()

    def set_state(self, state: bytes) -> None:
        self._iterator.set_state(json.loads(state)["iterator"])

    def start_prefetch(self) -> None:
        """Called by grain's handler after a restore; these sources read on demand (no prefetch)."""

    def close(self) -> None:
        """Stops the iterator's background work, if it has any (the trainer calls this at the end)."""
        close = getattr(self._iterator, "close", None)
        if close is not None:
            close()


class SFTData(IteratorData):
    """The trainer's batch source for instruction tuning (``curriculum.TrainData``'s interface)."""

    def __init__(self, cfg):
        self.cfg = cfg
        ds = make_sft_dataset(cfg)
        self.num_records = ds.num_records
        self._iterator = ds.__iter__()

    def describe(self) -> str:
        """One line for the start-up narration."""
        return (f"instruction data {self.cfg.sft.files} ({self.num_records} records), tokenizer {self.cfg.data.tokenizer}, "
                f"{self.cfg.train.global_batch_size} x {self.cfg.data.seq_len} tokens per step")

    def stats(self) -> dict:
        """Records read, kept and skipped (by reason) so far."""
        return sft_stats(self._iterator)
