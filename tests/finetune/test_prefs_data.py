"""Preference pairs: both formats, the chat template, prompt-first truncation, response-only
loss masks, interleaved rows, skipped records and exact resume."""

import json

import numpy as np
import pytest

from elmjax import config as config_lib
from elmjax.config import prefs_config, sft_config
from elmjax.data import prefs, sft
from elmjax.data.tokenizer import Tokenizer
from elmjax.presets import base_config
from tests.finetune.conftest import ROOT

TOKENIZER = str(ROOT / "data_mixtures" / "samples" / "tokenizer.model")
TRAIN = ROOT / "data_mixtures" / "samples" / "prefs" / "train.jsonl"
ULTRA = ROOT / "data_mixtures" / "samples" / "sft" / "ultrafeedback.jsonl"


def prefs_data_config(files, seq_len=64, batch=4, **prefs_keys):
    cfg = base_config()
    cfg.model.vocab_size = 4096
    cfg.data.tokenizer = TOKENIZER
    cfg.data.seq_len = seq_len
    cfg.train.global_batch_size = batch
    cfg.prefs = prefs_config(files=str(files), **{"max_prompt_length": seq_len // 2, **prefs_keys})
    return config_lib.validate(cfg)


def row_text(tok, batch, row):
    """(the row's input text before any trained target, the trained targets' text)."""
    seg, mask = batch["segment_ids"][row] > 0, batch["loss_mask"][row] > 0
    first = int(np.argmax(mask))
    return tok.decode(batch["inputs"][row][:first + 1].tolist()), batch["targets"][row][mask].tolist()


def test_both_formats_render_the_sft_template_and_train_responses_only(tmp_path):
    tok = Tokenizer(TOKENIZER)
    plain = {"prompt": "Name a red fruit.", "chosen": "A cherry.", "rejected": "Blue."}
    ultra = {"prompt": "Name a red fruit.",
             "chosen": [{"role": "user", "content": "Name a red fruit."},
                        {"role": "assistant", "content": "A cherry."}],
             "rejected": [{"role": "user", "content": "Name a red fruit."},
                          {"role": "assistant", "content": "Blue."}]}
    answer_only = {"prompt": "Name a red fruit.", "chosen": [{"role": "assistant", "content": "A cherry."}],
                   "rejected": [{"role": "assistant", "content": "Blue."}]}
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (plain, ultra, answer_only)))
    cfg = prefs_data_config(path, batch=6)
    batch = next(prefs.make_pair_iterator(cfg, process_index=0, process_count=1))
    assert batch["inputs"].shape == (6, 64)
    # The SFT renderer of the same conversation gives the same tokens and the same trained part.
    (sft_ids, sft_mask), = sft.encode_segments(tok, [sft.render_segments(ultra, sft_config())])
    for row in range(6):
        n = int(batch["segment_ids"][row].sum())
        ids = np.concatenate([batch["inputs"][row][:1], batch["targets"][row][:n]])
        mask = np.concatenate([[0.0], batch["loss_mask"][row][:n]])
        if row % 2 == 0:  # chosen rows equal SFT's rendering of the chosen conversation
            np.testing.assert_array_equal(ids, sft_ids)
            np.testing.assert_array_equal(mask, sft_mask)
        trained = batch["targets"][row][batch["loss_mask"][row] > 0].tolist()
        assert tok.decode(trained) == ("A cherry." if row % 2 == 0 else "Blue.")
        assert trained[-1] == tok.eos_id
    # a chosen row and its rejected row share the prompt
    k = int(np.argmax(batch["loss_mask"][0]))
    np.testing.assert_array_equal(batch["inputs"][0][:k + 1], batch["inputs"][1][:k + 1])


def test_truncation_cuts_the_prompt_first_then_the_responses():
    p, c, r = np.arange(100, 130), np.arange(200, 220), np.arange(300, 305)
    # fits: untouched
    out = prefs.truncate_pair(p, c, r, max_length=60, max_prompt_length=10, keep_end=True, bos=True)
    assert [len(x) for x in out] == [30, 20, 5]
    # prompt cut to 10 keeping BOS and its end; the responses then fit (10 + 20 <= 40)
    out = prefs.truncate_pair(p, c, r, max_length=40, max_prompt_length=10, keep_end=True, bos=True)
    np.testing.assert_array_equal(out[0], np.concatenate([[100], np.arange(121, 130)]))
    assert [len(x) for x in out[1:]] == [20, 5]
    out = prefs.truncate_pair(p, c, r, max_length=40, max_prompt_length=10, keep_end=False, bos=True)
    np.testing.assert_array_equal(out[0], np.arange(100, 110))
    # still too long: the responses are cut to what is left
    out = prefs.truncate_pair(p, c, r, max_length=25, max_prompt_length=10, keep_end=True, bos=True)
    assert [len(x) for x in out] == [10, 15, 5]
    np.testing.assert_array_equal(out[1], np.arange(200, 215))


def test_bad_records_are_skipped_and_counted(tmp_path):
    ok = {"prompt": "Hi?", "chosen": "Hello.", "rejected": "No."}
    bad = [b"{not json", json.dumps([1]).encode(), json.dumps({"prompt": "x"}).encode(),
           json.dumps({"prompt": "x", "chosen": "", "rejected": "y"}).encode(),
           json.dumps({"prompt": "q", "chosen": [{"role": "user", "content": "a"},
                                                 {"role": "assistant", "content": "b"}],
                       "rejected": [{"role": "user", "content": "OTHER"},
                                    {"role": "assistant", "content": "c"}]}).encode()]
    path = tmp_path / "p.jsonl"
    path.write_bytes(b"\n".join(bad + [json.dumps(ok).encode()]) + b"\n")
    cfg = prefs_data_config(path, seq_len=32, batch=2)
    it = prefs.make_pair_iterator(cfg, process_index=0, process_count=1)
    batches = [next(it) for _ in range(2)]  # the second reads the rest of the first epoch
    assert it.get_state()["epoch"] == 1
    assert set(it.stats.records_skipped) == {"invalid_json", "not_an_object", "unknown_format",
                                             "no_answer", "prompt_mismatch"}
    assert it.stats.documents_kept == 2
    for b in batches:
        np.testing.assert_array_equal(b["inputs"], batches[0]["inputs"])  # the one good pair


def test_resume_continues_exactly_across_epochs():
    cfg = prefs_data_config(TRAIN, seq_len=48, batch=6)
    it = prefs.make_pair_iterator(cfg, process_index=0, process_count=1)
    for _ in range(9):  # 27 pairs: into the second epoch of 40 at step 14
        next(it)
    state = it.get_state()
    expect = [next(it) for _ in range(8)]
    again = prefs.make_pair_iterator(cfg, process_index=0, process_count=1)
    again.set_state(state)
    for want in expect:
        got = next(again)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
    assert again.get_state()["epoch"] == 1


def test_ultrafeedback_samples_and_hosts_split_the_records():
    cfg = prefs_data_config(ULTRA, seq_len=96, batch=8)
    rows = [next(prefs.make_pair_iterator(cfg, process_index=i, process_count=2)) for i in range(2)]
    assert all(r["inputs"].shape == (4, 96) for r in rows)
    assert not np.array_equal(rows[0]["inputs"], rows[1]["inputs"])


def test_config_errors_name_the_key():
    cfg = prefs_data_config(TRAIN, batch=6)
    cfg.train.microbatches = 2  # 3 pairs cannot split into 2 microbatches
    with pytest.raises(config_lib.ConfigError, match="global_batch_size"):
        config_lib.validate(cfg)
    with pytest.raises(config_lib.ConfigError, match="prefs.truncation"):
        prefs_data_config(TRAIN, truncation="middle")
    with pytest.raises(config_lib.ConfigError, match="prefs.max_prompt_length"):
        prefs_data_config(TRAIN, seq_len=64, max_prompt_length=65)
    cfg = prefs_data_config(TRAIN)
    cfg.sft = sft_config()
    with pytest.raises(config_lib.ConfigError, match="'sft' and 'prefs'"):
        config_lib.validate(cfg)
    with pytest.raises(config_lib.ConfigError, match="prefs.label_smoothing"):
        prefs_data_config(TRAIN, loss="hinge", label_smoothing=0.1)
    with pytest.raises(config_lib.ConfigError, match="prefs.loss"):
        prefs_data_config(TRAIN, loss="kto")
