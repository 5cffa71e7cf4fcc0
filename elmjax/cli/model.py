"""``elmjax model``: a config's layer schedule, parameter count and FLOPs per token."""

from __future__ import annotations

from elmjax.cli.common import add_config_arg, config_from


def cmd_model(args, overrides):
    """Prints the model's layer schedule, parameter count and FLOPs per token."""
    from elmjax.model import schedule

    cfg = config_from(args, overrides)
    print(schedule.describe(cfg))
    seq = cfg.data.seq_len if "data" in cfg else cfg.model.max_context_length
    honest = schedule.flops_per_token(cfg.model, seq, causal=True)
    common = schedule.flops_per_token(cfg.model, seq, causal=False)
    print(f"training FLOPs/token at seq_len {seq}: {honest:.4g} (causal attention), "
          f"{common:.4g} (6N + 12LHQT)")
    if args.init:
        import jax

        from elmjax.model.openelm import init_params

        params = init_params(cfg, jax.random.key(0))
        n = sum(x.size for x in jax.tree.leaves(params))
        print(f"initialised {n:,} parameters on {jax.devices()[0].platform}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("model", help="print a config's layer schedule and parameter count")
    add_config_arg(p)
    p.add_argument("--init", action="store_true", help="also initialise the parameters")
    p.set_defaults(func=cmd_model)
