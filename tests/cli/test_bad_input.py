"""The bad-input matrix: every CLI command, given input a user can get wrong, answers with
one line ``elmjax COMMAND: ...`` naming the thing, a non-zero exit status, no traceback
(unless ``--debug``), and leaves every file and directory as it was.

One small run (trained here, 2 steps) and its Hugging Face export are the good inputs the
damaged ones are made from.
"""

import json
import os
import shutil
import struct

import pytest

from elmjax import cli
from tests.train.conftest import ROOT

CONFIG = '''
from tests.train.conftest import tiny_run_config

def get_config(arg=None):
    return tiny_run_config(steps=2, every=2)
'''

MIXTURE = str(ROOT / "data_mixtures" / "quickstart.yaml")
TOKENIZER = str(ROOT / "data_mixtures" / "samples" / "tokenizer.model")


def _mixture(weight):
    return ("sources:\n  - {name: a, format: jsonl, paths: ['%s/data_mixtures/samples/redpajama/*'], "
            "weight: %s}\n" % (ROOT, weight))


def _lying_header(src: str, dst: str, how: str) -> None:
    """Copies a safetensors file with a header that lies: about its own length, or about
    where a tensor's bytes end."""
    data = open(src, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    if how == "header_length":
        data = struct.pack("<Q", n + 10 ** 6) + data[8:]
    else:
        name = next(k for k in header if k != "__metadata__")
        begin, end = header[name]["data_offsets"]
        header[name]["data_offsets"] = [begin, end + 10 ** 6]
        raw = json.dumps(header).encode()
        raw += b" " * (-len(raw) % 8)
        data = struct.pack("<Q", len(raw)) + raw + data[8 + n:]
    open(dst, "wb").write(data)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Paths the rows refer to: a trained run, its export, and damaged copies."""
    t = tmp_path_factory.mktemp("bad_input")
    (t / "cfg.py").write_text(CONFIG)
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        assert cli.main(["train", "--config", str(t / "cfg.py"), "--workdir", str(t / "run")]) == 0
        assert cli.main(["export", "--workdir", str(t / "run"), "--out", str(t / "hf")]) == 0
    finally:
        os.chdir(cwd)
    (t / "afile").write_text("not a directory\n")
    (t / "adir").mkdir()
    (t / "junk.model").write_bytes(b"\x00\x01 not a sentencepiece model")
    (t / "junk.yaml").write_bytes(b"sources: [\x00\xff")
    (t / "empty.yaml").write_text("sources: []\n")
    (t / "nomatch.yaml").write_text("sources:\n  - {name: a, format: jsonl, paths: [none/*.jsonl], "
                                    "weight: 1}\n")
    for name, w in (("zero", 0), ("negative", -1), ("nan", ".nan"), ("inf", ".inf")):
        (t / f"{name}.yaml").write_text(_mixture(w))
    for how in ("header_length", "data_offsets"):
        shutil.copytree(t / "hf", t / f"hf_{how}")
        _lying_header(str(t / "hf" / "model.safetensors"),
                      str(t / f"hf_{how}" / "model.safetensors"), how)
    shutil.copytree(t / "hf", t / "hf_nokey")
    cfg = json.loads((t / "hf" / "config.json").read_text())
    del cfg["num_transformer_layers"]
    (t / "hf_nokey" / "config.json").write_text(json.dumps(cfg))
    shutil.copytree(t / "hf", t / "hf_notjson")
    (t / "hf_notjson" / "config.json").write_text("{ not json")
    shutil.copytree(t / "hf", t / "hf_noweights")
    (t / "hf_noweights" / "model.safetensors").unlink()
    # A checkpoint of something else: an Orbax step whose state is not a train state.
    import orbax.checkpoint as ocp

    shutil.copytree(t / "run", t / "foreign")
    step = t / "foreign" / "checkpoints" / "2"
    shutil.rmtree(step / "state")
    ocp.PyTreeCheckpointer().save(step / "state", {"something": {"else": [1, 2, 3]}})
    (t / "sweep_bad.py").write_text("def get_sweep():\n    return 42\n")
    return t


# (row id, command line with {T} for the fixture directory, what the one line must say)
CONFIG_ROWS = [
    ("config_missing", "--config {T}/nope.py", "nope.py"),
    ("config_is_dir", "--config {T}/adir", "adir"),
    ("config_not_python", "--config {T}/junk.yaml", "junk.yaml"),
    ("override_wrong_type", "--config {T}/cfg.py --config.train.steps=abc", "train.steps"),
    ("override_unknown_key", "--config {T}/cfg.py --config.train.stepz=3", "stepz"),
    ("override_no_value", "--config {T}/cfg.py --config.train.steps", "--config.train.steps"),
]
CONFIG_COMMANDS = {
    "model": "model {config}",
    "train": "train {config} --workdir {T}/new_run",
    "finetune": "finetune {config} --init {T}/hf --workdir {T}/new_run",
    "data_inspect": "data inspect {config}",
    "import": "import --hf {T}/hf {config} --workdir {T}/new_run",
    "bench_infer": "bench infer {config} --gen-len 2 --prompt-len 4 --reps 1",
}

ROWS = [(f"{cmd}-{row}", template.format(config=args, T="{T}"), expect)
        for cmd, template in CONFIG_COMMANDS.items() for row, args, expect in CONFIG_ROWS]

ROWS += [
    # Mixtures and tokenizers (train and data inspect read both).
    *[(f"{cmd}-{row}", f"{base} --config.data.{key}={{T}}/{value}", expect)
      for cmd, base in (("train", "train --config {T}/cfg.py --workdir {T}/new_run"),
                        ("data_inspect", "data inspect --config {T}/cfg.py"))
      for row, key, value, expect in (
          ("mixture_missing", "mixture", "none.yaml", "none.yaml"),
          ("mixture_is_dir", "mixture", "adir", "adir"),
          ("mixture_not_yaml", "mixture", "junk.yaml", "junk.yaml"),
          ("mixture_empty", "mixture", "empty.yaml", "at least one source"),
          ("mixture_glob_matches_nothing", "mixture", "nomatch.yaml", "none/*.jsonl"),
          ("weight_zero", "mixture", "zero.yaml", "'weight' must be a positive number"),
          ("weight_negative", "mixture", "negative.yaml", "'weight' must be a positive number"),
          ("weight_nan", "mixture", "nan.yaml", "'weight' must be a positive number"),
          ("weight_inf", "mixture", "inf.yaml", "'weight' must be a positive number"),
          ("tokenizer_missing", "tokenizer", "none.model", "none.model"),
          ("tokenizer_is_dir", "tokenizer", "adir", "adir"),
          ("tokenizer_not_sentencepiece", "tokenizer", "junk.model", "junk.model"))],
    ("train-vocab_exceeds_model", "train --config {T}/cfg.py --workdir {T}/new_run "
     "--config.model.vocab_size=1000", "model.vocab_size"),
    ("data_inspect-vocab_exceeds_model", "data inspect --config {T}/cfg.py "
     "--config.model.vocab_size=1000", "model.vocab_size"),
    ("finetune-mesh_not_device_count", "finetune --config " + str(ROOT / "experiments" /
     "quickstart_sft.py") + " --init {T}/hf --workdir {T}/new_run --config.mesh.data=3", "mesh"),
    ("train-batch_not_divisible_by_batch_axes", "train --config {T}/cfg.py --workdir "
     "{T}/new_run --config.train.global_batch_size=7", "global_batch_size"),
    ("train-batch_not_divisible_by_microbatches", "train --config {T}/cfg.py --workdir "
     "{T}/new_run --config.train.microbatches=3", "microbatches"),
    ("train-mesh_not_device_count", "train --config {T}/cfg.py --workdir {T}/new_run "
     "--config.mesh.data=3", "mesh"),
    ("train-workdir_is_file", "train --config {T}/cfg.py --workdir {T}/afile", "afile"),
    ("train-foreign_checkpoint", "train --config {T}/cfg.py --workdir {T}/foreign "
     "--config.train.steps=4", "foreign"),
    ("train-incompatible_checkpoint", "train --config {T}/cfg.py --workdir {T}/run "
     "--config.model.num_layers=3", "num_layers"),
    # Checkpoints in and out.
    ("export-workdir_missing", "export --workdir {T}/none --out {T}/out", "none"),
    ("export-workdir_is_file", "export --workdir {T}/afile --out {T}/out", "afile"),
    ("export-step_missing", "export --workdir {T}/run --step 7 --out {T}/out", "step 7"),
    ("export-foreign_checkpoint", "export --workdir {T}/foreign --out {T}/out", "foreign"),
    ("export-out_is_file", "export --workdir {T}/run --out {T}/afile", "afile"),
    ("import-hf_missing", "import --hf {T}/none --workdir {T}/new_run", "none"),
    ("import-into_existing_run", "import --hf {T}/hf --workdir {T}/run", "already has checkpoints"),
    ("checkpoints-workdir_missing", "checkpoints --workdir {T}/none", "none"),
    # Hugging Face directories: every command that reads one.
    *[(f"{cmd}-{row}", base.replace("{hf}", "{T}/" + d), expect)
      for cmd, base in (("eval", "eval --hf {hf} --tokenizer " + TOKENIZER + " --perplexity "
                         + MIXTURE + " --perplexity-docs 2"),
                        ("generate", "generate --hf {hf} --tokenizer " + TOKENIZER + " --prompt hi"),
                        ("import", "import --hf {hf} --workdir {T}/new_run"),
                        ("bench_infer", "bench infer --hf {hf} --reps 1"))
      for row, d, expect in (
          ("hf_missing", "none", "none"),
          ("safetensors_header_length_lies", "hf_header_length", "model.safetensors"),
          ("safetensors_data_offsets_lie", "hf_data_offsets", "model.safetensors"),
          ("config_json_missing_key", "hf_nokey", "num_transformer_layers"),
          ("config_json_not_json", "hf_notjson", "config.json"),
          ("no_weights", "hf_noweights", "model.safetensors"))],
    ("finetune-no_sft_section", "finetune --config {T}/cfg.py --init {T}/hf --workdir "
     "{T}/new_run", "sft"),
    ("finetune-init_missing", "finetune --config " + str(ROOT / "experiments" / "quickstart_sft.py")
     + " --init {T}/none --workdir {T}/new_run", "none"),
    # Evaluation, generation, sweeps, tokenizers.
    ("eval-nothing_to_do", "eval --hf {T}/hf --tokenizer " + TOKENIZER, "--perplexity"),
    ("eval-workdir_missing", "eval --workdir {T}/none --tokenizer " + TOKENIZER + " --perplexity "
     + MIXTURE, "none"),
    ("eval-tokenizer_missing", "eval --hf {T}/hf --tokenizer {T}/none.model --perplexity "
     + MIXTURE, "none.model"),
    ("eval-tokenizer_is_dir", "eval --hf {T}/hf --tokenizer {T}/adir --perplexity " + MIXTURE,
     "adir"),
    ("eval-tasks_without_data_dir", "eval --hf {T}/hf --tokenizer " + TOKENIZER +
     " --tasks arc_easy", "--data-dir"),
    ("eval-unknown_task", "eval --hf {T}/hf --tokenizer " + TOKENIZER + " --tasks nosuchtask "
     "--data-dir {T}/adir", "nosuchtask"),
    ("eval-perplexity_missing", "eval --hf {T}/hf --tokenizer " + TOKENIZER +
     " --perplexity {T}/none.jsonl", "none.jsonl"),
    ("generate-workdir_missing", "generate --workdir {T}/none --prompt hi", "none"),
    ("generate-tokenizer_missing", "generate --hf {T}/hf --tokenizer {T}/none.model --prompt hi",
     "none.model"),
    ("sweep_list-missing", "sweep list {T}/none.py", "none.py"),
    ("sweep_list-not_a_sweep", "sweep list {T}/sweep_bad.py", "sweep_bad.py"),
    ("sweep_run-missing", "sweep run {T}/none.py --workdir {T}/new_run", "none.py"),
    ("tokenizer_train-mixture_missing", "tokenizer train --mixture {T}/none.yaml --output "
     "{T}/tok.model", "none.yaml"),
    ("tokenizer_train-output_is_dir", "tokenizer train --mixture " + MIXTURE + " --output {T}/adir "
     "--vocab-size 512 --max-documents 40", "adir"),
    ("data_inspect-mixture_flag_missing", "data inspect --mixture {T}/none.yaml", "none.yaml"),
]


def snapshot(root):
    """Every path under ``root`` with its size and modification time (directories too)."""
    out = {}
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(d, name)
            st = os.stat(p)
            out[p] = (st.st_size if name in files else -1, st.st_mtime_ns)
    return out


def run(argv, capsys):
    try:
        rc = cli.main(argv)
    except SystemExit as e:  # argparse
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("row,command,expect", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input(env, capsys, row, command, expect):
    argv = [a.replace("{T}", str(env)) for a in command.split()]
    before = snapshot(env)
    rc, out, err = run(argv, capsys)
    assert rc not in (0, None), (row, out, err)
    assert "Traceback" not in out + err, err
    lines = [line for line in err.splitlines() if line.startswith("elmjax ")]
    assert len(lines) == 1, err
    assert expect.replace("{T}", str(env)) in lines[0], lines[0]
    assert snapshot(env) == before, "the command changed files"


def test_debug_shows_the_traceback(env, capsys):
    with pytest.raises(FileNotFoundError):
        cli.main(["--debug", "export", "--workdir", str(env / "none"), "--out", str(env / "o")])


def test_export_respects_the_umask(env, tmp_path):
    old = os.umask(0o022)
    try:
        assert cli.main(["export", "--workdir", str(env / "run"), "--out", str(tmp_path / "a")]) == 0
        os.umask(0o007)
        assert cli.main(["export", "--workdir", str(env / "run"), "--out", str(tmp_path / "b")]) == 0
    finally:
        os.umask(old)
    for name in ("model.safetensors", "config.json", "tokenizer.model"):
        assert os.stat(tmp_path / "a" / name).st_mode & 0o777 == 0o644, name
        assert os.stat(tmp_path / "b" / name).st_mode & 0o777 == 0o660, name


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_each_file_of_a_checkpoint_damaged_in_turn(env, tmp_path, capsys, damage):
    """``export`` of a step with one file damaged either writes exactly the undamaged weights
    (the file is not needed for them) or fails with one line and writes nothing."""
    step = env / "run" / "checkpoints" / "2"
    files = sorted(str(p.relative_to(step)) for p in step.rglob("*") if p.is_file())
    want = (env / "hf" / "model.safetensors").read_bytes()
    outcomes = {}
    for i, rel in enumerate(files):
        work = tmp_path / f"w{i}"
        shutil.copytree(env / "run", work)
        victim = work / "checkpoints" / "2" / rel
        if damage == "delete":
            victim.unlink()
        else:
            victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
        out = tmp_path / f"out{i}"
        rc, _, err = run(["export", "--workdir", str(work), "--out", str(out)], capsys)
        assert "Traceback" not in err, (rel, err)
        if rc == 0:
            assert (out / "model.safetensors").read_bytes() == want, rel
            outcomes[rel] = "exported, identical"
        else:
            lines = [line for line in err.splitlines() if line.startswith("elmjax export:")]
            assert len(lines) == 1 and not out.exists(), (rel, err)
            assert "checkpoints/2 is damaged" in lines[0], lines[0]
            outcomes[rel] = f"refused: {lines[0][:100]}"
    print(json.dumps(outcomes, indent=1))
    assert any(v.startswith("refused") for v in outcomes.values())  # the damage had teeth
