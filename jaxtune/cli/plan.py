"""``jaxtune plan CONFIG.toml [--budget 20m]``: measure the config's trial on this device and plan.

It reads the same config as ``jaxtune run`` (task, ``[tune]`` trials and rounds, ``[space]``),
compiles and times the trial at two widths, and prints memory per trial, how many trials fit at
once, trials/s, the time of a round and of the sweep, and a recommendation: caviar (N trials x R
rounds with a strategy) or panda (babysit one model). Nothing is stored.
"""

from __future__ import annotations


def main(args) -> int:
    """``jaxtune plan``: checks the config, builds the task, prints :func:`jaxtune.plan`."""
    import jaxtune as jt
    from jaxtune.cli.config import (
    build_task,
        check_config,
        cpu_devices,
        enable_compile_cache,
        every_parameter_read,
        load_config,
        parse_duration,
    )

    jt.use_cpu_cores(cpu_devices())  # measured as `jaxtune run` would run it
    cfg = load_config(args.config)
    tune_opts = dict(cfg.get("tune", {}))
    for key in ("trials", "rounds"):
        if getattr(args, key) is not None:
            tune_opts[key] = getattr(args, key)
    space = check_config(cfg, tune_opts)
    budget = None if args.budget is None else parse_duration(args.budget, "--budget")
    enable_compile_cache()
    task = build_task(cfg, space)
    with every_parameter_read(task.name):
        result = jt.plan(
            task.objective,
            space or task.space,
            trials=tune_opts.get("trials", 64),
            rounds=tune_opts.get("rounds", 4),
            budget=budget,
            max_batch=tune_opts.get("max_batch"),
            strategy=tune_opts.get("strategy", "coarse_to_fine"),
            strategy_options=cfg.get("strategy") or None,
        )
    print(result)
    return 0


def add_parser(sub) -> None:
    """Adds ``plan`` to the CLI's subcommands."""
    p = sub.add_parser("plan", help="measure a config's trial on this device: memory, trials/s, caviar or panda")
    p.add_argument("config")
    p.add_argument("--budget", help="time available, e.g. 90s, 20m, 1.5h")
    p.add_argument("--trials", type=int, help="override [tune] trials")
    p.add_argument("--rounds", type=int, help="override [tune] rounds")
    p.set_defaults(func=main)
