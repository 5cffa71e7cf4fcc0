"""Fixtures for evaluation tests: a tiny random model and a tiny SentencePiece tokenizer."""

import random

import jax
import pytest

import elmjax
from tests.conftest import tiny_model

WORDS = ("the a an of to in is was it that on for with as by at from this which or be are "
         "question answer yes no true false water sun moon rock plant animal cold hot light "
         "heavy energy earth air fire tree cat dog man woman he she they put took because "
         "bottle cup table kitchen door open close cut paper knife glass sand boil ice melt "
         "people science cell body grow small large long short run walk jump sky blue red").split()


def corpus_lines(n: int = 400, seed: int = 0) -> list[str]:
    """Deterministic pseudo-English lines covering the words of the hand-written items."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 14))]
        words[0] = words[0].capitalize()
        lines.append(" ".join(words) + rng.choice([".", "?", "!", ",", ":"]))
    return lines


def train_tokenizer(path, vocab_size: int = 120) -> str:
    """Trains a LLaMA-layout SentencePiece model (<unk>=0, <s>=1, </s>=2) and writes ``path``."""
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus_lines()), model_prefix=str(path), vocab_size=vocab_size,
        model_type="bpe", unk_id=0, bos_id=1, eos_id=2, pad_id=-1, character_coverage=1.0,
        num_threads=1, minloglevel=2)
    return str(path) + ".model"


@pytest.fixture(scope="session")
def tokenizer_path(tmp_path_factory):
    return train_tokenizer(tmp_path_factory.mktemp("tok") / "tiny")


@pytest.fixture(scope="session")
def tiny_lm():
    """(config, params) of a tiny random OpenELM with vocabulary 128 and context 64."""
    cfg = tiny_model()
    return cfg, elmjax.init_params(cfg, jax.random.key(0))
