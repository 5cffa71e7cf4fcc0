"""``elmjax export``, ``elmjax import`` and ``elmjax checkpoints``: a run's weights in and out."""

from __future__ import annotations

from elmjax.cli.common import config_from, fail


def cmd_export(args, overrides):
    """Writes a run's checkpoint in Apple's Hugging Face layout."""
    from elmjax import checkpoint, storage
    from elmjax.interop import hf
    from elmjax.model import peft
    from elmjax.train import state

    workdir, out = storage.resolve(args.workdir), storage.output_path(args.out)
    if peft.enabled(checkpoint.saved_config(workdir, args.step)):
        if not args.merge_adapters:
            return fail("export", f"{args.workdir} holds LoRA/DoRA adapters, which the Hugging "
                        "Face layout has no place for: pass --merge-adapters to fold them into "
                        "the weights")
        from elmjax.train.finetune import load_merged

        cfg, params = load_merged(workdir, args.step, args.init and storage.resolve(args.init))
    else:
        cfg, params = state.load_params(workdir, args.step)
    names = hf.save_hf(out, cfg, params, dtype=args.dtype,
                       max_shard_bytes=int(args.max_shard_gb * 2 ** 30))
    tok = cfg.get("data", {}).get("tokenizer") if "data" in cfg else None
    if tok and storage.isfile(tok):
        storage.write_bytes(storage.join(out, "tokenizer.model"), storage.read_bytes(tok))
        names.append("tokenizer.model")
    print(f"wrote {out}: {', '.join(names)}")
    return 0


def cmd_import(args, overrides):
    """Makes a step-0 checkpoint from Apple's HF layout or a corenet ``.pt`` file."""
    import jax

    from elmjax import checkpoint, parallel, storage
    from elmjax.config import default_config
    from elmjax.interop import hf
    from elmjax.train import optimizer, state

    if bool(args.hf) == bool(args.corenet):
        return fail("import", "give exactly one of --hf DIR or --corenet FILE.pt")
    if args.hf:
        hf_cfg, params = hf.load_hf(storage.resolve(args.hf))
        cfg = config_from(args, overrides) if args.config else default_config()
        cfg.model = hf_cfg.model
    else:
        if not args.config:
            return fail("import", "--corenet needs --config (the preset the model was trained "
                        "with, e.g. experiments/openelm_270m.py --config.model.vocab_size=32128)")
        from elmjax.interop.corenet import load_corenet

        cfg = config_from(args, overrides)
        params = load_corenet(storage.resolve(args.corenet), cfg.model)
    mesh = parallel.make_mesh(cfg)
    tx = optimizer.make_optimizer(cfg)
    train_state, _ = state.init_state(cfg, mesh, tx, jax.random.key(0), params)
    saver = checkpoint.Checkpointer(args.workdir, cfg)
    existing = saver.steps()
    if existing:
        saver.close()
        return fail("import", f"{args.workdir} already has checkpoints {existing}; "
                    "use an empty --workdir")
    saver.save(0, train_state, None, force=True)
    saver.close()
    print(f"imported {args.hf or args.corenet} as step 0 of {args.workdir} "
          f"({sum(x.size for x in jax.tree.leaves(params)):,} parameters)")
    return 0


def cmd_checkpoints(args, overrides):
    """Lists a run's checkpoints."""
    import datetime

    from elmjax import checkpoint

    rows = checkpoint.list_checkpoints(args.workdir)
    if not rows:
        return fail("checkpoints", f"no checkpoints in {args.workdir} (is it an elmjax workdir?)", 1)
    print(f"{'step':>8}  {'written':19}  {'size':>10}  phase")
    for r in rows:
        when = (datetime.datetime.fromtimestamp(r["time"]).strftime("%Y-%m-%d %H:%M:%S")
                if r["time"] else "damaged")
        print(f"{r['step']:>8}  {when:19}  {r['bytes'] / 2 ** 20:>8.1f}MB  {r['phase'] or '-'}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("export", help="write a checkpoint in Apple's Hugging Face layout")
    p.add_argument("--workdir", required=True)
    p.add_argument("--step", type=int, help="checkpoint step (default: latest)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--max-shard-gb", type=float, default=5.0, help="shard size limit")
    p.add_argument("--merge-adapters", action="store_true",
                   help="LoRA/DoRA runs: fold the adapters into plain weights")
    p.add_argument("--init", help="base weights of an adapters-only run (default: the --init "
                                  "it was fine-tuned from)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help="make a step-0 checkpoint from HF or corenet weights")
    p.add_argument("--hf", help="directory in Apple's Hugging Face layout")
    p.add_argument("--corenet", help="corenet PyTorch checkpoint (.pt)")
    p.add_argument("--workdir", required=True)
    p.add_argument("--config", help="run config for training settings (and the model, for --corenet)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("checkpoints", help="list a run's checkpoints")
    p.add_argument("--workdir", required=True)
    p.set_defaults(func=cmd_checkpoints)
