"""``elmjax train`` (pretrain or resume) and ``elmjax finetune`` (instruction tuning, or
preference training when the config has a ``prefs`` section)."""

from __future__ import annotations

import contextlib
import os
import shutil

from elmjax.cli.common import (EXIT_FAILED, EXIT_PREEMPTED, add_config_arg, config_from, fail)


def cmd_train(args, overrides):
    """Pretrains (or resumes) a run in ``--workdir``."""
    from elmjax import parallel

    parallel.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    cfg = config_from(args, overrides)
    from elmjax.eval.harness import training_evaluator
    from elmjax.train import loop

    try:
        with removed_if_new(args.workdir):
            result = loop.train(cfg, args.workdir, evaluator=training_evaluator(cfg))
    except loop.TrainingError as e:
        return fail("train", e, EXIT_FAILED)
    # Preempted after a clean save: EX_TEMPFAIL tells a scheduler to requeue the same command.
    return 0 if result.status == "completed" else EXIT_PREEMPTED


@contextlib.contextmanager
def removed_if_new(workdir):
    """Removes ``workdir`` again when the command created it and fails (bad input, not a
    ``TrainingError``) before its first checkpoint, so a failed start leaves nothing behind."""
    from elmjax import storage

    path = storage.output_path(workdir)
    new = not storage.is_remote(path) and not os.path.exists(path)
    try:
        yield
    except BaseException as e:
        from elmjax.train import TrainingError

        if isinstance(e, TrainingError):  # the run itself failed: keep its metrics to look at
            raise
        ckpt = os.path.join(path, "checkpoints")
        saved = os.path.isdir(ckpt) and any(name.isdigit() for name in os.listdir(ckpt))
        if new and os.path.isdir(path) and not saved:
            shutil.rmtree(path, ignore_errors=True)
        raise


def cmd_finetune(args, overrides):
    """Instruction-tunes (all weights, or LoRA/DoRA adapters) from ``--init`` in ``--workdir``."""
    from elmjax import parallel

    parallel.initialize_distributed()
    cfg = config_from(args, overrides)
    from elmjax.config import ConfigError
    from elmjax.train import finetune, loop

    try:
        with removed_if_new(args.workdir):
            result = finetune.finetune(cfg, args.workdir, args.init)
    except ConfigError:
        raise
    except (FileNotFoundError, ValueError, RuntimeError) as e:  # missing --init / data, bad checkpoint
        if isinstance(e, loop.TrainingError):
            return fail("finetune", e, EXIT_FAILED)
        return fail("finetune", e)
    return 0 if result.status == "completed" else EXIT_PREEMPTED


def register(sub) -> None:
    p = sub.add_parser("train", help="pretrain (or resume) a model in a workdir")
    add_config_arg(p)
    p.add_argument("--workdir", required=True, help="run directory (checkpoints, metrics)")
    p.add_argument("--coordinator", help="multi-host: coordinator host:port (auto-detected on "
                                         "TPU pods and SLURM)")
    p.add_argument("--num-processes", type=int, help="multi-host: number of processes")
    p.add_argument("--process-id", type=int, help="multi-host: this process's index")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("finetune", help="instruction-tune (sft section) or preference-train (prefs "
                                        "section: DPO, hinge, IPO) a model, all weights or "
                                        "LoRA/DoRA, from imported or pretrained weights")
    add_config_arg(p)
    p.add_argument("--init", required=True,
                   help="starting weights: a Hugging Face OpenELM directory or an elmjax workdir")
    p.add_argument("--workdir", required=True, help="run directory (checkpoints, metrics)")
    p.set_defaults(func=cmd_finetune)
