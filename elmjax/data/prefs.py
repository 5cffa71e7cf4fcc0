"""Preference pairs (a prompt, a chosen and a rejected response) as batches of row pairs.

Two record formats (one JSON object per line in ``.jsonl``, a JSON list in ``.json``, or
rows of a ``.parquet`` file), decided per record by ``prefs.format=auto``:

- ``ultrafeedback``: UltraFeedback binarized (the ``*_prefs`` splits): ``prompt`` (text),
  ``chosen`` and ``rejected`` = lists of ``{"role", "content"}`` messages ending with the
  assistant's answer. Everything before that last message is the prompt (it must be the
  same in both lists); a list that is only the answer takes ``prompt`` as the user turn.
- ``plain``: ``{"prompt": str, "chosen": str, "rejected": str}`` — one user turn and two answers.

The ``prefs`` section (defaults: ``elmjax.config.prefs_config``) names the files and the
settings. The prompt is rendered with the chat template of the SFT data (``elmjax.data.sft``:
the ``system``/``user``/``assistant`` templates of the ``prefs`` section, whose defaults are
``sft``'s) and ends with the assistant header; each response is the answer's text and the
closing ``</s>``. Prompt and both responses are tokenized once (one SentencePiece call per
batch). Truncation follows the alignment recipes (TRL's DPO trainer, the alignment-handbook):
a pair is at most ``data.seq_len + 1`` tokens per row; when the prompt plus the longer
response is longer, the prompt is cut to ``prefs.max_prompt_length`` tokens first
(``truncation=keep_end`` keeps its end, after BOS; ``keep_start`` its start), then both
responses are cut to what is left. Only response tokens are trained (``loss_mask``).

A batch of ``P`` pairs is ``2P`` padded rows, **interleaved**: row ``2i`` is pair ``i``'s
chosen response, row ``2i + 1`` its rejected one, so any even split of the rows (devices,
microbatches) keeps a pair together. ``train.global_batch_size`` counts rows (two per
pair). Keys: ``inputs``, ``targets``, ``segment_ids``, ``positions`` (int32 ``[2P, L]``),
``loss_mask`` (float32 ``[2P, L]``) and, when the reference is precomputed,
``ref_logp`` (float32 ``[2P, 1]``: the reference model's log-probability of the row's
response). The iterator's state is three integers (epoch, position, pairs kept this
epoch), so a restored iterator continues exactly.
"""

from __future__ import annotations


import grain
import ml_collections
import numpy as np

from elmjax import config as config_lib
from elmjax.data import sft
from elmjax.data.packing import pad_pieces
from elmjax.data.sources import SourceStats
from elmjax.data.tokenizer import Tokenizer

SOURCE = "prefs"
FORMATS = ("auto", "ultrafeedback", "plain")
TRUNCATION = ("keep_end", "keep_start")
LOSSES = ("sigmoid", "hinge", "ipo")  # elmjax.train.preference
REFERENCES = ("model", "precomputed")
SKIP_REASONS = (
    "invalid_json", "invalid_utf8", "not_an_object",  # as in pretraining
    "unknown_format",   # no prompt/chosen/rejected fields of a known shape
    "bad_messages",     # a message list that is not {role, content} with known roles
    "no_answer",        # chosen/rejected does not end with a non-empty assistant message
    "prompt_mismatch",  # chosen and rejected carry different conversations before the answer
    "empty_text",       # an empty prompt
)


def _validate_prefs(cfg) -> None:
    if "prefs" not in cfg:
        return
    p, need = cfg.prefs, config_lib.need
    need(isinstance(p.files, str) and p.files.strip(), "prefs.files", "must name the preference data files")
    need(p.format in FORMATS, "prefs.format", f"must be one of {FORMATS}, got {p.format!r}")
    need(p.truncation in TRUNCATION, "prefs.truncation", f"must be one of {TRUNCATION}, got {p.truncation!r}")
    need(p.loss in LOSSES, "prefs.loss", f"must be one of {LOSSES}, got {p.loss!r}")
    need(p.reference in REFERENCES, "prefs.reference", f"must be one of {REFERENCES}, got {p.reference!r}")
    need(float(p.beta) > 0, "prefs.beta", f"must be positive, got {p.beta!r}")
    need(0.0 <= float(p.label_smoothing) < 0.5, "prefs.label_smoothing",
         f"must be in [0, 0.5), got {p.label_smoothing!r}")
    need(p.label_smoothing == 0 or p.loss == "sigmoid", "prefs.label_smoothing",
         f"applies to the sigmoid (DPO) loss only, not {p.loss!r}: set it to 0")
    if "sft" in cfg:
        raise config_lib.ConfigError("config sections 'sft' and 'prefs' are both set: a fine-tuning "
                                     "run is either supervised (sft) or preference training (prefs)")
    if "data" in cfg:
        need(isinstance(p.max_prompt_length, int) and 1 < p.max_prompt_length <= cfg.data.seq_len,
             "prefs.max_prompt_length", f"must be an integer in [2, data.seq_len={cfg.data.seq_len}], "
             f"got {p.max_prompt_length!r}")
    if "train" in cfg:
        t = cfg.train
        need(t.global_batch_size % (2 * t.microbatches) == 0, "train.global_batch_size",
             f"{t.global_batch_size} counts rows, two per preference pair: it must be a multiple "
             f"of 2 * train.microbatches={2 * t.microbatches}")


config_lib.register_validator(_validate_prefs)


# --------------------------------------------------------------------------- rendering


def _answer_and_context(value) -> tuple[str, list[dict]]:
    """``(answer text, messages before it)`` of a ``chosen``/``rejected`` message list."""
    msgs = sft.parse_messages(value)
    last = msgs[-1]
    if last["role"] != "assistant" or not last["content"].strip():
        raise sft.SkipRecord("no_answer")
    return last["content"], msgs[:-1]


def pair_parts(record: dict, fmt: str = "auto") -> tuple[list[dict], str, str]:
    """``(prompt messages, chosen answer, rejected answer)`` of one parsed record.

    Raises ``elmjax.data.sft.SkipRecord`` (reason in :data:`SKIP_REASONS`) for a record
    that cannot be used.
    """
    chosen, rejected, prompt = record.get("chosen"), record.get("rejected"), record.get("prompt")
    if fmt == "auto":
        if isinstance(chosen, str) and isinstance(rejected, str):
            fmt = "plain"
        elif isinstance(chosen, list) and isinstance(rejected, list):
            fmt = "ultrafeedback"
        else:
            raise sft.SkipRecord("unknown_format")
    if fmt == "plain":
        if not all(isinstance(x, str) for x in (prompt, chosen, rejected)):
            raise sft.SkipRecord("unknown_format")
        if not chosen.strip() or not rejected.strip():
            raise sft.SkipRecord("no_answer")
        context = [{"role": "user", "content": prompt}]
    else:
        chosen, context = _answer_and_context(chosen)
        rejected, other = _answer_and_context(rejected)
        if context != other:
            raise sft.SkipRecord("prompt_mismatch")
        if not context:
            if not isinstance(prompt, str):
                raise sft.SkipRecord("unknown_format")
            context = [{"role": "user", "content": prompt}]
    if not any(m["content"].strip() for m in context):
        raise sft.SkipRecord("empty_text")
    return context, chosen, rejected


def pair_segments(record: dict, s) -> list[list[tuple[str, bool]]]:
    """A record as three ``(text, trained)`` piece lists: prompt (ending with the assistant
    header), chosen response, rejected response — per the ``prefs`` section ``s``."""
    context, chosen, rejected = pair_parts(record, s.format)
    prompt = []
    for m in context:
        head, _, tail = s[m["role"]].partition("{content}")
        prompt += [(head, False), (m["content"] + tail, False)]
    head, _, tail = s.assistant.partition("{content}")
    prompt.append((head, False))
    return [prompt, [(chosen + tail, True)], [(rejected + tail, True)]]


def truncate_pair(prompt: np.ndarray, chosen: np.ndarray, rejected: np.ndarray, *, max_length: int,
                  max_prompt_length: int, keep_end: bool, bos: bool):
    """Cuts a tokenized pair to ``max_length`` tokens per row, prompt first (see the module
    docstring). Takes and returns int32 id arrays ``(prompt, chosen, rejected)``; ``bos``
    says the prompt starts with BOS (kept when ``keep_end`` drops the prompt's start)."""
    longest = max(len(chosen), len(rejected))
    if len(prompt) + longest > max_length and len(prompt) > max_prompt_length:
        if not keep_end:
            prompt = prompt[:max_prompt_length]
        elif bos:
            prompt = np.concatenate([prompt[:1], prompt[len(prompt) - max_prompt_length + 1:]])
        else:
            prompt = prompt[len(prompt) - max_prompt_length:]
    room = max_length - len(prompt)
    return prompt, chosen[:room], rejected[:room]


def encode_pairs(tokenizer: Tokenizer, records: list[dict], s, max_length: int):
    """Tokenizes parsed records into pairs in one SentencePiece call.

    Returns ``(pairs, skipped)``: ``pairs`` has one entry per record, ``None`` for a
    skipped one, else ``(prompt, chosen, rejected)`` int32 id arrays after
    :func:`truncate_pair`; ``skipped`` maps reason -> count.
    """
    pieces, owner, skipped = [], [], {}
    for i, record in enumerate(records):
        try:
            pieces += pair_segments(record, s)
            owner.append(i)
        except sft.SkipRecord as e:
            skipped[e.args[0]] = skipped.get(e.args[0], 0) + 1
    encoded = sft.encode_segments(tokenizer, pieces, add_bos=False)
    pairs: list = [None] * len(records)
    for k, i in enumerate(owner):
        (p, _), (c, _), (r, _) = encoded[3 * k:3 * k + 3]
        if s.add_bos:
            p = np.concatenate([np.asarray([tokenizer.bos_id], np.int32), p])
        # max_prompt_length <= data.seq_len leaves every response at least one token
        pairs[i] = truncate_pair(p, c, r, max_length=max_length, max_prompt_length=s.max_prompt_length,
                                 keep_end=s.truncation == "keep_end", bos=s.add_bos)
    return pairs, skipped


def pair_rows(pairs: list, seq_len: int, pad_id: int) -> dict:
    """Interleaved padded rows of tokenized pairs: row ``2i`` = prompt + chosen of pair ``i``,
    row ``2i + 1`` = prompt + rejected. Returns the pretraining batch keys, ``[2P, seq_len]``,
    with ``loss_mask`` 1 exactly where the target is a response token."""
    tokens, masks = [], []
    for p, c, r in pairs:
        for resp in (c, r):
            tokens.append(np.concatenate([p, resp]).astype(np.int32))
            masks.append(np.concatenate([np.zeros(len(p), np.float32), np.ones(len(resp), np.float32)]))
    lens = np.asarray([len(t) - 1 for t in tokens], np.int64)
    starts = np.cumsum(lens + 1) - (lens + 1)
    return pad_pieces(np.concatenate(tokens), starts, lens, seq_len, pad_id, np.concatenate(masks))


# --------------------------------------------------------------------------- iterator


class PairBatches(grain.IterDataset):
    """Batches of ``pairs`` pairs from ``records`` (this host's raw records), in a new
    seeded order each epoch, forever. ``ref_logps`` (float ``[len(records), 2]``, optional)
    are the precomputed reference log-probabilities (chosen, rejected) of each record."""

    def __init__(self, records: list, tokenizer: Tokenizer, s, *, seq_len: int, pairs: int,
                 seed: int, ref_logps: np.ndarray | None = None):
        super().__init__()
        if not records:
            raise ValueError(f"prefs.files {s.files!r}: no records")
        self.records, self.tokenizer, self.s = records, tokenizer, s
        self.seq_len, self.pairs, self.seed, self.ref_logps = seq_len, pairs, seed, ref_logps

    def __iter__(self):
        return _PairIterator(self)


class _PairIterator(sft.EpochOrderIterator):
    def __init__(self, ds: PairBatches):
        super().__init__(ds)
        self.stats = SourceStats()

    def _take(self, n: int) -> list[int]:
        """The next ``n`` record indices in epoch order (moving to a new epoch at the end)."""
        ds, out = self._ds, []
        while len(out) < n:
            self._roll_epoch(lambda: f"prefs.files {ds.s.files!r}: a full pass kept no pair "
                                     f"(every record was skipped: {self.stats.records_skipped})")
            chunk = self._order[self._pos:self._pos + n - len(out)]
            self._pos += len(chunk)
            out += [int(i) for i in chunk]
        return out

    def __next__(self):
        ds, batch, index = self._ds, [], []
        while len(batch) < ds.pairs:  # exactly the records up to the last pair used are consumed
            parsed = []
            for i in self._take(ds.pairs - len(batch)):
                try:
                    parsed.append((i, sft.parse_record(ds.records[i])))
                except sft.SkipRecord as e:
                    self.stats.skip(e.args[0])
            pairs, skipped = encode_pairs(ds.tokenizer, [r for _, r in parsed], ds.s, ds.seq_len + 1)
            for reason, n in skipped.items():
                self.stats.skip(reason, n)
            for (i, _), pair in zip(parsed, pairs):
                if pair is not None:
                    self._kept_this_epoch += 1
                    batch.append(pair)
                    index.append(i)
            self.stats.documents_read += len(parsed)
        self.stats.documents_kept += len(batch)
        self.stats.tokens += int(sum(len(p) + len(c) + len(r) for p, c, r in batch))
        out = pair_rows(batch, ds.seq_len, ds.tokenizer.pad_id)
        if ds.ref_logps is not None:
            out["ref_logp"] = np.asarray(ds.ref_logps[index], np.float32).reshape(-1, 1)
        return out


def open_tokenizer(cfg) -> Tokenizer:
    """The run's tokenizer, checked against ``model.vocab_size``."""
    tokenizer = Tokenizer(cfg.data.tokenizer, num_threads=cfg.data.get("tokenizer_threads", 1))
    if tokenizer.vocab_size > cfg.model.vocab_size:
        raise ValueError(f"data.tokenizer {cfg.data.tokenizer} has {tokenizer.vocab_size} pieces but "
                         f"model.vocab_size is {cfg.model.vocab_size}")
    return tokenizer


def make_pair_dataset(cfg, ref_logps: np.ndarray | None = None, process_index: int | None = None,
                      process_count: int | None = None) -> PairBatches:
    """This host's preference batches as a grain ``IterDataset`` (see the module docstring).

    Takes the run config (sections ``prefs``, ``data``: ``tokenizer``, ``seq_len``; ``train``:
    ``global_batch_size`` (rows), ``seed``; ``model``) and optionally the precomputed
    reference log-probabilities of *all* records ``[N, 2]`` (in ``sft.load_records`` order;
    each host takes its share).
    """
    import jax

    index = jax.process_index() if process_index is None else process_index
    count = jax.process_count() if process_count is None else process_count
    rows = cfg.train.global_batch_size
    if rows % (2 * count):
        raise ValueError(f"train.global_batch_size={rows} rows (two per pair) cannot be split into "
                         f"whole pairs over {count} hosts")
    records = sft.load_records(cfg.prefs.files)
    share = None if ref_logps is None else np.asarray(ref_logps)[index::count]
    if share is not None and len(ref_logps) != len(records):
        raise ValueError(f"the precomputed reference log-probabilities cover {len(ref_logps)} records "
                         f"but prefs.files has {len(records)}: delete them to recompute")
    return PairBatches(records[index::count], open_tokenizer(cfg), cfg.prefs, seq_len=cfg.data.seq_len,
                       pairs=rows // (2 * count), seed=cfg.train.seed, ref_logps=share)


def make_pair_iterator(cfg, ref_logps: np.ndarray | None = None, process_index: int | None = None,
                       process_count: int | None = None):
    """The iterator of :func:`make_pair_dataset`: ``next`` gives a batch, ``get_state`` /
    ``set_state`` resume exactly, ``.stats`` counts records read, kept and skipped."""
    return make_pair_dataset(cfg, ref_logps, process_index, process_count).__iter__()


def batches_in_file_order(cfg, pairs: int):
    """Every record of ``prefs.files`` once, in file order, as ``(record indices [n], batch)``
    with at most ``pairs`` pairs per batch (skipped records are left out; the last batch is
    padded with copies of its last pair, whose indices are not listed). For scoring the
    reference once (``elmjax.train.preference.precompute_reference``)."""
    records, tokenizer = sft.load_records(cfg.prefs.files), open_tokenizer(cfg)
    for start in range(0, len(records), pairs):
        parsed, index = [], []
        for i in range(start, min(start + pairs, len(records))):
            try:
                parsed.append(sft.parse_record(records[i]))
                index.append(i)
            except sft.SkipRecord:
                pass
        encoded, _ = encode_pairs(tokenizer, parsed, cfg.prefs, cfg.data.seq_len + 1)
        kept = [(i, p) for i, p in zip(index, encoded) if p is not None]
        if kept:
            batch = [p for _, p in kept]
            batch += [batch[-1]] * (pairs - len(batch))
            yield np.asarray([i for i, _ in kept]), pair_rows(batch, cfg.data.seq_len, tokenizer.pad_id)


class PrefsData(sft.IteratorData):
    """The trainer's batch source for preference training (``curriculum.TrainData``'s interface).

    ``ref_logps``: the precomputed reference log-probabilities ``[N, 2]`` of every record
    (``prefs.reference=precomputed``), attached to each batch as ``ref_logp``.
    """

    def __init__(self, cfg, ref_logps: np.ndarray | None = None):
        self.cfg = cfg
        ds = make_pair_dataset(cfg, ref_logps)
        self.num_records = len(ds.records)
        self._iterator = ds.__iter__()

    def describe(self) -> str:
        """One line for the start-up narration."""
        c = self.cfg
        return (f"preference pairs {c.prefs.files} ({self.num_records} records), tokenizer "
                f"{c.data.tokenizer}, {c.train.global_batch_size // 2} pairs "
                f"({c.train.global_batch_size} rows) x {c.data.seq_len} tokens per step")

    def stats(self) -> dict:
        """Records read, kept and skipped (by reason) so far."""
        return self._iterator.stats.to_dict()
