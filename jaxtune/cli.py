"""The ``jaxtune`` command line: ``run`` a sweep from a TOML config, ``report`` a stored study,
``export`` its best trial's trained state.

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
import contextlib
import os
import sys
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any

from jaxtune.errors import (
    ConfigError,
    InputError,
    JaxtuneError,
    MissingDependencyError,
    Problems,
    UnreadParameterWarning,
)

__all__ = ["main", "load_config", "check_config", "space_from_config", "ConfigError"]

_SECTIONS = ("task", "tune", "strategy", "space", "babysit")
_TUNE_KEYS = (
    "strategy", "trials", "rounds", "seed", "storage", "study", "metric", "mode", "max_batch", "timeout", "select",
    "tie_break",
)  # fmt: skip
_PARAM_KEYS = {
    "float": ("low", "high", "scale", "static", "when"),
    "int": ("low", "high", "scale", "static", "masked", "when"),
    "choice": ("values", "static", "when"),
}
CACHE_ENV = "JAXTUNE_CACHE_DIR"
CPU_DEVICES_ENV = "JAXTUNE_CPU_DEVICES"




def _check_keys(where: str, got: Mapping[str, Any], allowed: Sequence[str]) -> None:
    bad = sorted(set(got) - set(allowed))
    if bad:
        raise ConfigError(f"{where}: unknown key(s) {bad}; allowed are {sorted(allowed)}")


def _param_from_config(name: str, spec: Any):
    from jaxtune.space import Choice, Float, Int

    if not isinstance(spec, Mapping):
        raise ConfigError(f"[space.{name}] must be a table with type = 'float' | 'int' | 'choice'")
    kind = spec.get("type")
    if not isinstance(kind, str) or kind not in _PARAM_KEYS:
        raise ConfigError(f"[space.{name}] type must be one of 'float', 'int', 'choice'; got {kind!r}")
    opts = {k: v for k, v in spec.items() if k != "type"}
    _check_keys(f"[space.{name}]", opts, _PARAM_KEYS[kind])
    try:
        param = {"float": Float, "int": Int, "choice": Choice}[kind](**opts)
        param.validate(name)
        return param
    except (TypeError, InputError) as e:  # a missing required key (low, high, values), or a bad value
        msg = str(e).removeprefix(f"{name}: ")
        raise ConfigError(f"[space.{name}] {msg}") from e


def space_from_config(table: Mapping[str, Any]):
    """Builds a :class:`~jaxtune.Space` from ``{name: {type = ..., ...}}`` tables.

    Raises:
      ConfigError: listing every bad parameter at once.
    """
    from jaxtune.space import Space

    if not isinstance(table, Mapping) or not table:
        raise ConfigError("[space] must hold at least one [space.NAME] table")
    problems = Problems(ConfigError)
    params = {}
    for name, spec in table.items():
        with problems.check():
            params[name] = _param_from_config(name, spec)
    problems.raise_if_any("[space]")
    try:
        return Space(params)
    except InputError as e:
        raise ConfigError(f"[space]: {e}") from e


def load_config(path: str) -> dict[str, Any]:
    """Reads a TOML config and checks its sections and keys (every problem reported at once)."""
    if not os.path.exists(path):
        raise ConfigError(f"config file {path!r} does not exist")
    try:
        with open(path, "rb") as f:
            cfg = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from e
    except OSError as e:
        raise ConfigError(f"config file {path!r} cannot be read ({e.strerror})") from e
    problems = Problems(ConfigError)
    with problems.check():
        _check_keys(path, cfg, _SECTIONS)
    with problems.check():
        if not isinstance(cfg.get("task"), Mapping) or "name" not in cfg["task"]:
            raise ConfigError(f"{path}: needs a [task] section with name = one of the built-in tasks (jaxtune tasks)")
    for section in ("tune", "strategy"):
        with problems.check():
            if not isinstance(cfg.get(section, {}), Mapping):
                raise ConfigError(f"[{section}] must be a table")
    with problems.check():
        if isinstance(cfg.get("tune"), Mapping):
            _check_keys("[tune]", cfg["tune"], _TUNE_KEYS)
    problems.raise_if_any(path)
    return cfg


def check_config(cfg: Mapping[str, Any], tune_opts: Mapping[str, Any], plot: str | None = None):
    """Checks every value of a loaded config that needs no data, all at once; returns its space (or None).

    Covers the task's name and option names, every ``[tune]`` value, the strategy and its
    options, every ``[space.*]`` parameter, and the ``--plot`` path.

    Raises:
      ConfigError: listing every problem found.
    """
    from jaxtune import tasks
    from jaxtune._checks import check_int
    from jaxtune.result import MODES, SELECT, tie_break_spec
    from jaxtune.schedulers import is_scheduler
    from jaxtune.schedulers.base import make_spec as make_scheduler_spec
    from jaxtune.strategies.base import make_spec
    from jaxtune.tune import MAX_SEED, MAX_TRIALS

    problems = Problems(ConfigError)
    task = dict(cfg["task"])
    name = task.pop("name")
    with problems.check():
        tasks.check_options(name, task)
    checks = {
        "trials": lambda v: check_int("[tune] trials", v, 1, MAX_TRIALS),
        "rounds": lambda v: check_int("[tune] rounds", v, 1),
        "seed": lambda v: check_int("[tune] seed", v, 0, MAX_SEED),
        "max_batch": lambda v: check_int("[tune] max_batch", v, 1),
    }
    for key, check in checks.items():
        if key in tune_opts:
            with problems.check():
                check(tune_opts[key])
    if "timeout" in tune_opts:
        with problems.check():
            tune_opts["timeout"] = parse_duration(tune_opts["timeout"], "[tune] timeout")
    with problems.check():
        if tune_opts.get("select", "final") not in SELECT:
            raise ConfigError(f"[tune] select must be one of {list(SELECT)}, got {tune_opts['select']!r}")
    if "tie_break" in tune_opts:
        with problems.check():
            tie_break_spec(tune_opts["tie_break"])
    for key in ("storage", "study", "metric"):
        with problems.check():
            if key in tune_opts and (not isinstance(tune_opts[key], str) or not tune_opts[key]):
                raise ConfigError(f"[tune] {key} must be a non-empty string, got {tune_opts[key]!r}")
    with problems.check():
        if tune_opts.get("mode", "min") not in MODES:
            raise ConfigError(f"[tune] mode must be 'min' or 'max', got {tune_opts['mode']!r}")
    strategy = tune_opts.get("strategy", "coarse_to_fine")
    with problems.check():  # the strategy and its options alone; with the space when the sweep starts
        if is_scheduler(strategy):
            make_scheduler_spec(strategy, **(cfg.get("strategy") or {}))
        else:
            make_spec(strategy, **(cfg.get("strategy") or {}))
    space = None
    if "space" in cfg:
        with problems.check():
            space = space_from_config(cfg["space"])
    with problems.check():
        _check_plot(plot)
    problems.raise_if_any("the config")
    return space


def parse_duration(value: Any, name: str = "timeout") -> float:
    """Seconds from a number or a string such as ``"90"``, ``"90s"``, ``"20m"``, ``"1.5h"``."""
    units = {"s": 1, "m": 60, "h": 3600}
    seconds = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip().lower()
        factor = units.get(text[-1], None)
        try:
            seconds = float(text[:-1] if factor else text) * (factor or 1)
        except ValueError:
            seconds = None
    if seconds is None or not seconds > 0 or seconds == float("inf"):
        raise ConfigError(f"{name} must be a positive duration such as 90, '90s', '20m' or '1.5h', got {value!r}")
    return seconds


def _check_plot(path: str | None) -> None:
    """A figure path must be writable before the sweep runs, not found bad after it."""
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ConfigError(f"--plot {path!r} is a directory; give a file name such as sweep.png")
    _check_creatable("--plot", path, folder)


def _check_creatable(flag: str, path: str, folder: str) -> None:
    """``folder`` exists and is writable, or can be made (its nearest existing ancestor is a
    writable directory): the folder itself is made only when the command runs."""
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ConfigError(f"{flag} {path!r}: {existing!r} is a file, so the directory {folder!r} cannot be made")
    if not os.access(existing, os.W_OK):
        raise ConfigError(f"{flag} {path!r}: the directory {existing!r} is not writable")


def _make_parent(flag: str, path: str) -> None:
    """Makes the directory ``path`` will be written in (after :func:`_check_creatable` passed)."""
    from jaxtune.storage import StorageError

    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    except OSError as e:
        raise StorageError(f"{flag} {path!r}: cannot create its directory ({e.strerror})") from e


@contextlib.contextmanager
def every_parameter_read(task: str):
    """A ``[space]`` parameter the task never reads (a typo such as ``dropuot``) is a config error
    here, raised when the task is traced (before anything compiles or trains), not a warning after
    which the sweep runs. The Python API keeps the warning."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UnreadParameterWarning)
        try:
            yield
        except UnreadParameterWarning as w:
            raise ConfigError(
                f"[space] parameter(s) {w.unread} are never read by task {task!r}, so tuning them would change "
                f"nothing; its parameters are {w.read}"
            ) from None


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
    for key in ("trials", "rounds", "seed", "storage", "study", "timeout"):
        if getattr(args, key) is not None:
            tune_opts[key] = getattr(args, key)
    # Check everything that needs no data before building the task (which generates data).
    space = check_config(cfg, tune_opts, args.plot)
    if tune_opts.get("storage"):
        from jaxtune.storage import Storage

        _make_parent("storage", tune_opts["storage"])
        Storage.check(tune_opts["storage"])
    if args.plot:
        _make_parent("--plot", args.plot)
    _enable_compile_cache()
    task = jt.tasks.get(cfg["task"]["name"], **task_opts)
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
    print(report.summary(result, top=args.top, metrics=task.report or None))
    if args.plot:
        print(f"figure: {report.plot(result, args.plot)}")
    if result.storage:
        print(f"results: {os.path.abspath(result.storage)} (jaxtune report {result.storage})")
    return 0 if result.best is not None or result.stopped else 1


def _is_babysit(path: str, study: str | None) -> bool:
    """Whether the study to report is a babysitting run (the only study, or the one named)."""
    from jaxtune.storage import Storage

    store = Storage(path, read_only=True)
    try:
        names = store.study_names() if study is None else [study]
        kinds = {(store.study_config(n) or {}).get("kind") for n in names}
    finally:
        store.close()
    return kinds == {"babysit"}


def _report(args) -> int:
    from jaxtune import report
    from jaxtune.result import Result

    if _is_babysit(args.storage, args.study):
        folder = None if args.no_html else args.html or os.path.splitext(args.storage)[0] + "-report"
        print(report.babysit_report(args.storage, args.study, folder))
        if folder:
            print(f"report: {os.path.join(folder, 'index.html')} (figures beside it)")
        return 0
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
    if not args.no_html:
        folder = args.html or os.path.splitext(args.storage)[0] + "-report"
        parent = os.path.dirname(os.path.abspath(folder))
        if not os.access(parent, os.W_OK):
            raise ConfigError(f"--html {folder!r}: its directory {parent!r} is not writable (pass --html DIR)")
        try:
            print(f"report: {report.html(result, folder)} (figures beside it)")
        except MissingDependencyError:
            if args.html:
                raise
            print("(no HTML report: figures need matplotlib, pip install 'jaxtune[report]')")
    return 0


def _export(args) -> int:
    """Trains the best trial of a stored study again (exactly: its key is part of the record, a PBT
    winner along its lineage) and writes its final state (parameters, optimizer state, ...) as .npz."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxtune as jt
    from jaxtune.execute.population import supports_protocol

    cfg = load_config(args.config)
    task_opts = {k: v for k, v in cfg["task"].items() if k != "name"}
    check_config(cfg, dict(cfg.get("tune", {})))
    result = jt.Result.load(args.storage, study=args.study)
    best = result.best
    if best is None:
        raise ConfigError(f"{args.storage}: the study has no finished trial to export")
    task = jt.tasks.get(cfg["task"]["name"], **task_opts)
    if not supports_protocol(task.objective):
        raise ConfigError(f"task {cfg['task']['name']!r} cannot be replayed (no stateful trial protocol)")
    fidelity = result.config.get("strategy", {}).get("fidelity")
    hp = {n: v if isinstance(v, (int, str)) and not isinstance(v, bool) else jnp.float32(v)
          for n, v in best["params"].items() if n != fidelity}  # fmt: skip
    state = result.replay(task.objective, best)
    again = {k: float(v) for k, v in task.objective.evaluate_state(hp, state).items()}
    from jaxtune._trees import host_leaf

    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    np.savez(args.out, **{jax.tree_util.keystr(path): host_leaf(leaf) for path, leaf in leaves})
    print(f"best trial (round {best['round']}, slot {best['slot']}): {best['params']}")
    print(f"replayed {result.metric}: {again.get(result.metric, float('nan')):.6g} (stored {best['value']:.6g})")
    print(f"state: {args.out} ({len(leaves)} arrays)")
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
    r.add_argument("--timeout", help="stop at a safe point after this long (90, 90s, 20m, 1.5h); rerun to resume")
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
    rep.add_argument("--html", help="folder for the HTML report and its figures (default: STORAGE's name + '-report')")
    rep.add_argument("--no-html", action="store_true", help="print the summary only")
    rep.set_defaults(func=_report)
    e = sub.add_parser("export", help="train a study's best trial again and write its state (.npz)")
    e.add_argument("storage")
    e.add_argument("config", help="the TOML config the study was run with (it names the task)")
    e.add_argument("--study")
    e.add_argument("--out", default="best.npz")
    e.set_defaults(func=_export)
    from jaxtune import cli_bench, cli_panda, cli_plan

    cli_panda.add_parser(sub)
    cli_plan.add_parser(sub)
    cli_bench.add_parser(sub)
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
    except JaxtuneError as e:  # what the user can fix; anything else is a bug and shows its traceback
        if os.environ.get("JAXTUNE_DEBUG"):
            raise
        print(f"jaxtune: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
