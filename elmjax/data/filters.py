"""The OpenELM paper's document filters (applied on the fly).

Apple drops a document whose *processed* text -- lower-cased, punctuation
stripped, whitespace collapsed -- is under 200 characters, and one that has
under 256 tokens after tokenizing with BOS and EOS. A threshold of 0 turns a
filter off.
"""

from __future__ import annotations

import re

import numpy as np

# Punctuation and symbols in the Unicode sense (anything that is neither a word
# character nor whitespace), plus "_", which \w counts as a word character.
_PUNCT = re.compile(r"[^\w\s]|_")


def processed_length(text: str, enough: int | None = None) -> int:
    """Length of ``text`` lower-cased, without punctuation, whitespace collapsed.

    With ``enough``, stops early once the length provably reaches it: the
    processed form of a prefix is a prefix of the processed whole, so a long
    document is decided from its first few thousand characters.
    """
    if enough is not None:
        head = 4 * enough + 64
        if len(text) > head:
            n = processed_length(text[:head])
            if n >= enough:
                return n
    return len(" ".join(_PUNCT.sub("", text.lower()).split()))


def char_filter_mask(texts: list[str], min_chars: int) -> np.ndarray:
    """``bool [len(texts)]``: True where the processed text has at least ``min_chars`` characters."""
    if min_chars <= 0:
        return np.ones(len(texts), dtype=bool)
    return np.fromiter((processed_length(t, min_chars) >= min_chars for t in texts),
                       dtype=bool, count=len(texts))


def token_filter_mask(lengths: np.ndarray, min_tokens: int) -> np.ndarray:
    """``bool [docs]``: True where a document (counted with BOS and EOS) has ``>= min_tokens``."""
    return np.asarray(lengths) >= max(min_tokens, 0)
