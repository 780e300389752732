"""The ``jaxtune`` command line: ``run`` a sweep from a TOML config, ``report`` a stored study.

Config (every section but ``[task]`` is optional)::

    [task]                  # a built-in task and its options
    name = "mnist1d_mlp"
    steps = 2000

    [tune]                  # arguments of jt.tune
    strategy = "coarse_to_fine"
    trials = 32
    rounds = 4
    seed = 0
    storage = "runs/demo.db"
    study = "demo"

    [strategy]              # options of the strategy
    top_fraction = 0.1

    [space.lr]              # replaces the task's default space when present
    type = "float"          # float | int | choice
    low = 1e-4
    high = 0.1
    scale = "log"

Errors in the config are reported without a traceback and exit with status 2, before any
compute starts.
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any

from jaxtune.storage import StudyBusyError

__all__ = ["main", "load_config", "space_from_config", "ConfigError"]

_SECTIONS = ("task", "tune", "strategy", "space")
_TUNE_KEYS = ("strategy", "trials", "rounds", "seed", "storage", "study", "metric", "mode", "max_batch")
_PARAM_KEYS = {
    "float": ("low", "high", "scale", "static"),
    "int": ("low", "high", "scale", "static", "masked"),
    "choice": ("values", "static"),
}
CACHE_ENV = "JAXTUNE_CACHE_DIR"
CPU_DEVICES_ENV = "JAXTUNE_CPU_DEVICES"


class ConfigError(ValueError):
    """A config file that cannot be run, with a message that says what to change."""


def _check_keys(where: str, got: Mapping[str, Any], allowed: Sequence[str]) -> None:
    bad = sorted(set(got) - set(allowed))
    if bad:
        raise ConfigError(f"{where}: unknown key(s) {bad}; allowed are {sorted(allowed)}")


def space_from_config(table: Mapping[str, Any]):
    """Builds a :class:`~jaxtune.Space` from ``{name: {type = ..., ...}}`` tables."""
    from jaxtune.space import Choice, Float, Int, Space

    params = {}
    for name, spec in table.items():
        if not isinstance(spec, Mapping):
            raise ConfigError(f"[space.{name}] must be a table with type = 'float' | 'int' | 'choice'")
        kind = spec.get("type")
        if kind not in _PARAM_KEYS:
            raise ConfigError(f"[space.{name}] type must be one of 'float', 'int', 'choice'; got {kind!r}")
        opts = {k: v for k, v in spec.items() if k != "type"}
        _check_keys(f"[space.{name}]", opts, _PARAM_KEYS[kind])
        try:
            params[name] = {"float": Float, "int": Int, "choice": Choice}[kind](**opts)
        except TypeError as e:
            raise ConfigError(f"[space.{name}]: {e}") from e
    try:
        return Space(params)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"[space]: {e}") from e


def load_config(path: str) -> dict[str, Any]:
    """Reads and checks the shape of a TOML config."""
    if not os.path.exists(path):
        raise ConfigError(f"config file {path!r} does not exist")
    try:
        with open(path, "rb") as f:
            cfg = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from e
    _check_keys(path, cfg, _SECTIONS)
    if "task" not in cfg or "name" not in cfg["task"]:
        raise ConfigError(f"{path}: needs a [task] section with name = one of the built-in tasks (jaxtune tasks)")
    _check_keys("[tune]", cfg.get("tune", {}), _TUNE_KEYS)
    return cfg


def _enable_compile_cache() -> None:
    # A rerun (or a resumed sweep) then loads compiled programs instead of compiling them again.
    path = os.environ.get(CACHE_ENV, os.path.join(os.path.expanduser("~"), ".cache", "jaxtune", "xla"))
    if path.lower() in ("", "0", "none", "off"):
        return
    import jax

    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def _cpu_devices() -> int | None:
    value = os.environ.get(CPU_DEVICES_ENV, "auto")
    if value == "auto":
        return None
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"{CPU_DEVICES_ENV} must be 'auto' or a positive integer, got {value!r}")
    return int(value)


def _run(args) -> int:
    import jaxtune as jt
    from jaxtune import report

    jt.use_cpu_cores(_cpu_devices())  # before anything runs: trials sharded over the CPU's cores

    cfg = load_config(args.config)
    task_opts = {k: v for k, v in cfg["task"].items() if k != "name"}
    tune_opts = dict(cfg.get("tune", {}))
    for key in ("trials", "rounds", "seed", "storage", "study"):
        if getattr(args, key) is not None:
            tune_opts[key] = getattr(args, key)
    # Check everything that needs no data before building the task (which generates data).
    space = space_from_config(cfg["space"]) if "space" in cfg else None
    if tune_opts.get("storage"):
        from jaxtune.storage import Storage, StorageError

        path = tune_opts["storage"]
        if not isinstance(path, str) or not path:
            raise ConfigError(f"[tune] storage must be a file path, got {path!r}")
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        except OSError as e:
            raise StorageError(f"storage {path!r}: cannot create its directory ({e.strerror})") from e
        Storage.check(path)
    _enable_compile_cache()
    task = jt.tasks.get(cfg["task"]["name"], **task_opts)
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
    print(report.summary(result, top=args.top, metrics=task.report or None))
    if args.plot:
        print(f"figure: {report.plot(result, args.plot)}")
    if result.storage:
        print(f"results: {os.path.abspath(result.storage)} (jaxtune report {result.storage})")
    return 0 if result.best is not None else 1


def _report(args) -> int:
    from jaxtune import report
    from jaxtune.result import Result

    result = Result.load(args.storage, study=args.study)
    print(report.summary(result, top=args.top))
    if args.csv:
        result.to_csv(args.csv)
        print(f"csv: {args.csv}")
    if args.curves_csv:
        result.to_csv(args.curves_csv, curves=True)
        print(f"learning curves: {args.curves_csv} ({len(result.curve_rows())} points)")
    if args.plot:
        print(f"figure: {report.plot(result, args.plot)}")
    return 0


def _tasks(args) -> int:
    from jaxtune.tasks import TASKS, describe

    print("\n".join(describe(name) for name in TASKS))
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jaxtune", description="Tune hyperparameters by training many trials at once.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run (or resume) a sweep from a TOML config")
    r.add_argument("config")
    r.add_argument("--trials", type=int)
    r.add_argument("--rounds", type=int)
    r.add_argument("--seed", type=int)
    r.add_argument("--storage")
    r.add_argument("--study")
    r.add_argument("--top", type=int, default=5, help="trials to list in the report")
    r.add_argument("--plot", help="write a figure (PNG) here")
    r.add_argument("--quiet", action="store_true", help="no per-round progress")
    r.set_defaults(func=_run)
    rep = sub.add_parser("report", help="summarise a stored study")
    rep.add_argument("storage")
    rep.add_argument("--study")
    rep.add_argument("--top", type=int, default=10)
    rep.add_argument("--csv", help="also write every trial to this CSV file")
    rep.add_argument("--curves-csv", help="also write every learning-curve point to this CSV file")
    rep.add_argument("--plot", help="write a figure (PNG) here")
    rep.set_defaults(func=_report)
    t = sub.add_parser("tasks", help="list the built-in tasks")
    t.set_defaults(func=_tasks)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jaxtune`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("jaxtune: interrupted; finished trials are stored, rerun the same command to resume", file=sys.stderr)
        return 130
    except (ValueError, TypeError, KeyError, FileNotFoundError, ImportError, StudyBusyError) as e:
        if os.environ.get("JAXTUNE_DEBUG"):
            raise
        msg = e.args[0] if type(e) is KeyError and e.args else e
        print(f"jaxtune: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
