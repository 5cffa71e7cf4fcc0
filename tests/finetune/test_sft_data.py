"""Instruction data: template rendering, assistant-only loss masks, skipped records, resume."""

import json

import numpy as np
import pytest

from elmjax.config import sft_config
from elmjax.data import sft
from elmjax.data.tokenizer import Tokenizer
from elmjax.presets import base_config
from tests.finetune.conftest import ROOT

TOKENIZER = str(ROOT / "data_mixtures" / "samples" / "tokenizer.model")
SAMPLES = ROOT / "data_mixtures" / "samples" / "sft"

CHAT = {"messages": [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Name a red fruit."},
    {"role": "assistant", "content": "A cherry."},
    {"role": "user", "content": "And a yellow one?"},
    {"role": "assistant", "content": "A lemon."}]}


def data_config(files, seq_len=64, batch=4, pack=True):
    cfg = base_config()
    cfg.model.vocab_size = 4096
    cfg.data.tokenizer = TOKENIZER
    cfg.data.seq_len = seq_len
    cfg.data.pack_rows = 8
    cfg.train.global_batch_size = batch
    cfg.sft = sft_config(files=str(files), pack=pack, window=16)
    return cfg


def trained_text(tok, batch, row):
    """Decoded targets that carry loss in one row, split into runs of consecutive positions."""
    m, t = batch["loss_mask"][row] > 0, batch["targets"][row]
    runs, cur = [], []
    for keep, tid in zip(m, t):
        if keep:
            cur.append(int(tid))
        elif cur:
            runs.append(cur)
            cur = []
    if cur:
        runs.append(cur)
    return runs


@pytest.mark.parametrize("pack", [True, False])
def test_only_assistant_tokens_carry_loss(tmp_path, pack):
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps(CHAT) + "\n")
    cfg = data_config(path, seq_len=128, pack=pack, batch=1)
    batch = next(sft.make_sft_iterator(cfg, 0, 1))
    tok = Tokenizer(TOKENIZER)
    runs = trained_text(tok, batch, 0)
    # each assistant turn: its content, then EOS (the rendered "</s>"); nothing else
    assert [tok.decode(r) for r in runs] == ["A cherry.", "A lemon."]
    assert all(r[-1] == tok.eos_id for r in runs)
    # the whole conversation is one segment starting at position 0 after BOS
    seg = batch["segment_ids"][0]
    n = int((seg == 1).sum())
    assert batch["inputs"][0, 0] == tok.bos_id and batch["positions"][0, n - 1] == n - 1
    text = tok.decode(batch["inputs"][0, :n].tolist())
    assert text.startswith("<|system|>\n") and "<|user|>\n" in text and "<|assistant|>\n" in text
    assert batch["loss_mask"][0, n:].sum() == 0


def test_commonsense_records_use_the_alpaca_prompt_and_train_the_response():
    tok = Tokenizer(TOKENIZER)
    record = json.loads((SAMPLES / "commonsense.json").read_text())[0]
    segments = sft.render_segments(record, sft_config())
    assert segments[0][0].startswith("Below is an instruction that describes a task.")
    assert "### Instruction:\n" + record["instruction"] in segments[0][0]
    ((ids, mask),) = sft.encode_segments(tok, [segments])
    assert tok.decode(ids[mask > 0].tolist()) == record["output"]
    assert ids[-1] == tok.eos_id and mask[-1] == 1


def test_ultrafeedback_chosen_conversation_is_rendered():
    record = json.loads((SAMPLES / "ultrafeedback.jsonl").read_text().splitlines()[0])
    segments = sft.render_segments(record, sft_config())
    assert [t for t, _ in segments] == ["<|user|>\n", record["prompt"] + "</s>", "<|assistant|>\n",
                                        record["chosen"][1]["content"] + "</s>"]
    assert [k for _, k in segments] == [False, False, False, True]
    only_answer = dict(record, chosen=record["chosen"][1:])  # prompt not repeated in chosen
    assert sft.render_segments(only_answer, sft_config())[1][0] == record["prompt"] + "</s>"


def test_bad_records_are_skipped_and_counted_by_reason(tmp_path):
    good = json.dumps(CHAT)
    lines = [good, "{not json", json.dumps([1, 2]), json.dumps({"text": "plain"}),
             json.dumps({"messages": [{"role": "robot", "content": "hi"}]}),
             json.dumps({"messages": [{"role": "user", "content": "only a question"}]}),
             json.dumps({"instruction": "Say hi", "input": "", "output": " "}),
             json.dumps({"messages": [{"role": "user", "content": "long " * 200},
                                      {"role": "assistant", "content": "ok"}]}),
             good]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(("\n".join(lines) + "\n").encode() + b"\xff\xfe bad bytes\n")
    cfg = data_config(path, batch=2)
    it = sft.make_sft_iterator(cfg, 0, 1)
    next(it)
    stats = sft.sft_stats(it)
    epochs = stats["documents_kept"] // 2  # a packing round reads the 10 records several times
    assert epochs >= 1 and stats["documents_kept"] == 2 * epochs
    assert stats["records_skipped"] == {reason: epochs for reason in (
        "invalid_json", "not_an_object", "unknown_format", "bad_messages", "no_assistant_turn",
        "empty_text", "no_target_tokens", "invalid_utf8")}


def test_restored_iterator_continues_exactly():
    cfg = data_config(f"{SAMPLES}/ultrafeedback.jsonl,{SAMPLES}/messages.jsonl", batch=4)
    it = sft.make_sft_iterator(cfg, 0, 1)
    for _ in range(3):
        next(it)
    state = json.loads(json.dumps(it.get_state()))
    want = [next(it) for _ in range(6)]  # crosses an epoch of the 40 records
    again = sft.make_sft_iterator(cfg, 0, 1)
    again.set_state(state)
    for a in want:
        b = next(again)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
