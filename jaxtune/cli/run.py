"""``jaxtune run CONFIG.toml``: run (or resume) a sweep from a config, print its report."""

from __future__ import annotations

import os

from jaxtune.cli.config import (
    build_task,
    check_config,
    cpu_devices,
    enable_compile_cache,
    every_parameter_read,
    load_config,
    make_parent,
    positive_int,
)

__all__ = ["main", "add_parser"]


def main(args) -> int:
    """``jaxtune run``: checks the config, builds the task, runs ``jt.tune``, prints the summary."""
    import jaxtune as jt
    from jaxtune.analysis import report

    jt.use_cpu_cores(cpu_devices())  # before anything runs: trials sharded over the CPU's cores

    cfg = load_config(args.config)
    tune_opts = dict(cfg.get("tune", {}))
    for key in ("trials", "rounds", "seed", "storage", "study", "timeout"):
        if getattr(args, key) is not None:
            tune_opts[key] = getattr(args, key)
    # Check everything that needs no data before building the task (which generates data).
    space = check_config(cfg, tune_opts, args.plot)
    if tune_opts.get("storage"):
        from jaxtune.study.storage import Storage

        make_parent("storage", tune_opts["storage"])
        Storage.check(tune_opts["storage"])
    if args.plot:
        make_parent("--plot", args.plot)
    enable_compile_cache()
    task = build_task(cfg, space)
    with every_parameter_read(task.name):
        result = jt.tune(
            task.objective,
            space or task.space,
            strategy=tune_opts.pop("strategy", "coarse_to_fine"),
            strategy_options=cfg.get("strategy") or None,
            metric=tune_opts.pop("metric", task.metric),
            mode=tune_opts.pop("mode", task.mode),
            progress=not args.quiet,
            **tune_opts,
        )
    print(report.summary(result, top=args.top, metrics=task.report or None, show_test=args.show_test))
    if args.plot:
        print(f"figure: {report.plot(result, args.plot)}")
    if result.storage:
        from jaxtune.cli.report import study_count

        which = f" --study {result.study}" if study_count(result.storage) > 1 else ""  # else report cannot choose
        print(f"results: {os.path.abspath(result.storage)} (jaxtune report {result.storage}{which})")
    return 0 if result.best is not None or result.stopped else 1


def add_parser(sub) -> None:
    """Adds ``run`` to the CLI's subcommands."""
    r = sub.add_parser("run", help="run (or resume) a sweep from a TOML config")
    r.add_argument("config")
    r.add_argument("--trials", type=int)
    r.add_argument("--rounds", type=int)
    r.add_argument("--seed", type=int)
    r.add_argument("--storage")
    r.add_argument("--study")
    r.add_argument("--timeout", help="stop at a safe point after this long (90, 90s, 20m, 1.5h); rerun to resume")
    r.add_argument("--top", type=positive_int, default=5, help="trials to list in the report")
    r.add_argument("--plot", help="write a figure (PNG) here")
    r.add_argument("--show-test", action="store_true", help="show held-out (test) metrics in the table too")
    r.add_argument("--quiet", action="store_true", help="no per-round progress")
    r.set_defaults(func=main)
