"""SentencePiece tokenizer: batch encoding with BOS/EOS, and training a new model.

Apple trained OpenELM with LLaMA's 32k SentencePiece model (BOS=1, EOS=2); any
``.model`` file works here. The sample tokenizer shipped in
``data_mixtures/samples/tokenizer.model`` follows the same id layout:
``<unk>``=0, ``<s>``=1, ``</s>``=2, ``<pad>``=3, 4096 pieces in all.

:class:`Tokenizer` opens its processor lazily and drops it when pickled, so it
can be shipped to grain's worker processes (MaxText's pattern).
"""

from __future__ import annotations

import io
import unicodedata
from typing import Iterable, Sequence

from elmjax import storage


def nfc(text: str) -> str:
    """``text`` in Unicode normal form C (Apple's code normalises before encoding)."""
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


class Tokenizer:
    """A SentencePiece model file (a local path, ``gs://`` or ``s3://``).

    ``num_threads`` is passed to SentencePiece's batch encoder (1 keeps each grain
    worker on one core).
    """

    def __init__(self, path: str, num_threads: int = 1):
        self.path = str(path)
        self.num_threads = int(num_threads)
        self._sp = None
        if not storage.isfile(self.path):
            what = "is a directory" if storage.exists(self.path) else "not found"
            raise FileNotFoundError(f"tokenizer model {what}: {self.path}")

    @property
    def sp(self):
        """The ``sentencepiece.SentencePieceProcessor``, opened on first use."""
        if self._sp is None:
            import sentencepiece as spm

            try:
                self._sp = spm.SentencePieceProcessor(model_proto=storage.read_bytes(self.path))
            except (RuntimeError, OSError) as e:
                raise ValueError(f"{self.path} is not a SentencePiece model ({type(e).__name__}); "
                                 f"give the .model file the tokenizer trainer wrote") from None
        return self._sp

    def __getstate__(self):
        return {"path": self.path, "num_threads": self.num_threads, "_sp": None}

    def __setstate__(self, state):
        self.__dict__.update(state)

    @property
    def vocab_size(self) -> int:
        """Number of pieces (embedding rows needed)."""
        return self.sp.get_piece_size()

    @property
    def bos_id(self) -> int:
        """Id of the beginning-of-document token."""
        return self.sp.bos_id()

    @property
    def eos_id(self) -> int:
        """Id of the end-of-document token."""
        return self.sp.eos_id()

    @property
    def pad_id(self) -> int:
        """Id used for padding; the model's own pad piece, else ``<unk>`` (0), as in LLaMA."""
        pad = self.sp.pad_id()
        return pad if pad >= 0 else max(self.sp.unk_id(), 0)

    def encode_batch(self, texts: Sequence[str], add_bos: bool = True,
                     add_eos: bool = True) -> list[list[int]]:
        """NFC-normalises and encodes ``texts``; returns one list of ids per text."""
        if not texts:
            return []
        return self.sp.encode([nfc(t) for t in texts], out_type=int, add_bos=add_bos,
                              add_eos=add_eos, num_threads=self.num_threads)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of a sequence of ids (BOS/EOS/pad are dropped)."""
        return self.sp.decode([int(i) for i in ids])


def train_tokenizer(texts: Iterable[str], output_path: str, vocab_size: int,
                    model_type: str = "bpe", character_coverage: float = 0.9995,
                    max_sentence_length: int = 8192, seed_sentencepiece_size: int = 200_000,
                    num_threads: int = 1) -> str:
    """Trains a LLaMA-style SentencePiece model and writes it to ``output_path``.

    Takes documents (each is split into lines for the trainer), the output path
    (``.model``; local or cloud) and the vocabulary size. The model has LLaMA's
    id layout (``<unk>``=0, ``<s>``=1, ``</s>``=2) plus ``<pad>``=3, byte fallback,
    split digits and no text normalisation (elmjax normalises to NFC itself).
    Returns the path written.
    """
    import sentencepiece as spm

    def lines():
        for text in texts:
            for line in nfc(text).split("\n"):
                if line.strip():
                    yield line

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=lines(), model_writer=model, vocab_size=vocab_size,
        model_type=model_type, character_coverage=character_coverage,
        unk_id=0, bos_id=1, eos_id=2, pad_id=3, byte_fallback=True, split_digits=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        max_sentence_length=max_sentence_length, seed_sentencepiece_size=seed_sentencepiece_size,
        num_threads=num_threads, hard_vocab_limit=True, minloglevel=2,
        allow_whitespace_only_pieces=True, train_extremely_large_corpus=False)
    storage.write_bytes(output_path, model.getvalue())
    return str(output_path)
