"""Mixture files: ``data_mixtures/*.yaml`` -> weighted sources.

A mixture file has a top-level ``sources:`` list; each source is a mapping::

    sources:
      - name: refinedweb            # unique; names the source in stats and checkpoints
        format: refinedweb          # refinedweb | pile | redpajama | dolma | jsonl | text | tfds
        paths: [refinedweb/*.parquet]   # globs, local or cloud; relative to this file
        weight: 0.37                # or `tokens: 665e9` (weights follow from the counts)
        text_field: content         # optional; the format's default otherwise
        pile_sets: [Pile-CC, ArXiv] # pile only: keep just these pile_set_names
        text_documents: file        # text only: one document per `file` or per `line`
        quality_field: metadata.score   # JSON formats: a numeric quality score, filtered by
                                        # data.min_quality (e.g. per curriculum phase)
      - name: my_tfds
        format: tfds
        tfds_name: my_dataset       # tfds only, instead of paths
        split: train
        data_dir: /data/tfds

Weights are normalised to sum to 1 and are *token* proportions: the pipeline
draws each source's share of the packed tokens from them.
"""

from __future__ import annotations

import dataclasses
import math

import yaml
from etils import epath

from elmjax import storage
from elmjax.data.sources import FORMATS, ReadOptions

_KEYS = {"name", "format", "paths", "weight", "tokens", "text_field", "pile_sets",
         "text_documents", "tfds_name", "split", "data_dir", "quality_field"}


class MixtureError(ValueError):
    """A mixture file is missing or malformed; the message names the file and the key."""


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """One source of a mixture, with its weight normalised over the mixture."""

    name: str
    format: str
    paths: tuple = ()
    weight: float = 1.0
    text_field: str | None = None
    pile_sets: tuple = ()
    text_documents: str = "file"
    quality_field: str | None = None
    min_quality: float | None = None  # set from data.min_quality by the pipeline
    tfds_name: str | None = None
    split: str = "train"
    data_dir: str | None = None
    base_dir: str | None = None  # directory of the mixture file (relative paths)

    @property
    def read_options(self) -> ReadOptions:
        """The :class:`ReadOptions` for this source's shards."""
        return ReadOptions(format=self.format, text_field=self.text_field,
                           pile_sets=self.pile_sets, text_documents=self.text_documents,
                           quality_field=self.quality_field, min_quality=self.min_quality)


def _fail(where: str, msg: str):
    raise MixtureError(f"{where}: {msg}")


def parse(doc, where: str = "mixture", base_dir: str | None = None) -> list[SourceSpec]:
    """Validates a parsed mixture (``{"sources": [...]}``) and returns its sources.

    Raises :class:`MixtureError` naming ``where`` and the offending key.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("sources"), list) or not doc["sources"]:
        _fail(where, "needs a top-level 'sources:' list with at least one source")
    specs, raw_weights, kinds = [], [], set()
    for i, s in enumerate(doc["sources"]):
        at = f"{where}: sources[{i}]"
        if not isinstance(s, dict):
            _fail(at, f"must be a mapping, got {s!r}")
        unknown = set(s) - _KEYS
        if unknown:
            _fail(at, f"unknown keys {sorted(unknown)}; allowed: {sorted(_KEYS)}")
        name = s.get("name")
        if not isinstance(name, str) or not name:
            _fail(at, "'name' must be a non-empty string")
        at = f"{where}: source {name!r}"
        if s.get("format") not in FORMATS:
            _fail(at, f"'format' must be one of {FORMATS}, got {s.get('format')!r}")
        fmt = s["format"]
        if ("weight" in s) == ("tokens" in s):
            _fail(at, "give exactly one of 'weight' or 'tokens'")
        kind = "weight" if "weight" in s else "tokens"
        kinds.add(kind)
        value = s[kind]
        if isinstance(value, str):  # PyYAML reads 665e9 (no sign in the exponent) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if (not isinstance(value, (int, float)) or isinstance(value, bool)
                or not math.isfinite(value) or value <= 0):
            _fail(at, f"'{kind}' must be a positive number, got {value!r}")
        raw_weights.append(float(value))
        if fmt == "tfds":
            if not isinstance(s.get("tfds_name"), str):
                _fail(at, "format 'tfds' needs 'tfds_name' (and optionally 'split', 'data_dir')")
            paths = ()
        else:
            paths = s.get("paths")
            if isinstance(paths, str):
                paths = [paths]
            if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
                _fail(at, "'paths' must be a non-empty list of globs")
            paths = tuple(paths)
        pile_sets = s.get("pile_sets") or ()
        if pile_sets and fmt != "pile":
            _fail(at, "'pile_sets' only applies to format 'pile'")
        if s.get("quality_field") is not None and fmt not in ("pile", "redpajama", "dolma", "jsonl"):
            _fail(at, f"'quality_field' applies to JSON-lines formats, not {fmt!r}")
        if s.get("text_documents", "file") not in ("file", "line"):
            _fail(at, f"'text_documents' must be 'file' or 'line', got {s['text_documents']!r}")
        specs.append(SourceSpec(
            name=name, format=fmt, paths=paths, text_field=s.get("text_field"),
            pile_sets=tuple(pile_sets), text_documents=s.get("text_documents", "file"),
            quality_field=s.get("quality_field"),
            tfds_name=s.get("tfds_name"), split=s.get("split", "train"),
            data_dir=s.get("data_dir"), base_dir=base_dir))
    if len(kinds) > 1:
        _fail(where, "use either 'weight' or 'tokens' for all sources, not both")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        _fail(where, f"source names must be unique, got {names}")
    total = sum(raw_weights)
    return [dataclasses.replace(s, weight=w / total) for s, w in zip(specs, raw_weights)]


def load(path: str) -> list[SourceSpec]:
    """Reads a mixture YAML file (local or cloud); returns its sources with normalised weights.

    ``path`` is used as given (configs resolve their paths once, ``elmjax.config.load``);
    relative ``paths`` inside the file are relative to the file's directory.
    Raises ``FileNotFoundError`` when the file is missing and :class:`MixtureError`
    when it is malformed.
    """
    p = epath.Path(path)
    if not storage.isfile(path):
        what = "is a directory, not a YAML file" if p.is_dir() else "not found"
        raise FileNotFoundError(f"mixture file {what}: {path}")
    try:
        doc = yaml.safe_load(storage.read_bytes(path).decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise MixtureError(f"{path}: not a valid YAML mixture file ({first})") from None
    return parse(doc, where=str(path), base_dir=str(p.parent))


def sample_documents(specs: list[SourceSpec], max_documents: int, max_chars: int | None = None):
    """Yields up to ``max_documents`` texts from a mixture, each source's share by weight.

    Takes the sources (from :func:`load`), the document budget and an optional
    character budget; reads every source's shards in order (tfds sources are
    skipped). For training a tokenizer on a sample of the data.
    """
    from elmjax.data import sources

    chars = 0
    for spec in specs:
        if spec.format == "tfds":
            continue
        quota = max(1, round(spec.weight * max_documents))
        stats = sources.SourceStats()
        for path in sources.expand_paths(spec.paths, spec.base_dir):
            for _, text in sources.read_shard(path, spec.read_options, stats):
                yield text
                quota -= 1
                chars += len(text)
                if quota <= 0 or (max_chars and chars >= max_chars):
                    break
            if quota <= 0 or (max_chars and chars >= max_chars):
                break
        if max_chars and chars >= max_chars:
            return
