"""``elmjax generate`` streams the same text greedy ``generate`` produces."""

import jax
import pytest

import elmjax
from elmjax import cli
from elmjax.interop import hf
from tests.conftest import tiny_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    spm = pytest.importorskip("sentencepiece")
    d = tmp_path_factory.mktemp("cli_gen")
    words = "the a fox dog runs jumps over under quick lazy brown red cat sat mat on".split()
    lines = [" ".join(words[(i * 7 + j * 3) % len(words)] for j in range(12)) for i in range(400)]
    (d / "text.txt").write_text("\n".join(lines))
    spm.SentencePieceTrainer.train(input=str(d / "text.txt"), model_prefix=str(d / "tok"),
                                   vocab_size=64, model_type="bpe", bos_id=1, eos_id=2,
                                   unk_id=0, pad_id=-1, minloglevel=2)
    cfg = tiny_model(vocab_size=64)
    hf.save_hf(d / "hf", cfg, elmjax.init_params(cfg, jax.random.key(5)))
    return d, spm.SentencePieceProcessor(model_file=str(d / "tok.model"))


def test_generate_command_streams_greedy_text(setup, capsys):
    d, sp = setup
    rc = cli.main(["generate", "--hf", str(d / "hf"), "--tokenizer", str(d / "tok.model"),
                   "--prompt", "the quick fox", "--max-new-tokens", "6"])
    assert rc == 0
    printed = capsys.readouterr().out
    cfg, params = hf.load_hf(d / "hf")
    prompt = [1] + sp.encode("the quick fox")
    new = [t for t in elmjax.generate(cfg, params, [prompt], 6, stop_tokens=[2]).to_lists()[0]
           if t != 2]
    want = sp.decode(prompt + new)
    assert printed.startswith("the quick fox")
    assert printed.strip().endswith(want[len(sp.decode(prompt)):].strip())


def test_missing_tokenizer_is_a_clear_error(setup, capsys):
    d, _ = setup
    rc = cli.main(["generate", "--hf", str(d / "hf"), "--tokenizer", str(d / "missing.model"),
                   "--prompt", "x"])
    assert rc == 2 and "missing.model" in capsys.readouterr().err
