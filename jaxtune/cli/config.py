"""The CLI's config: loading a TOML file, checking every value before any compute, and the
helpers every command shares (``ConfigError``, durations, output paths, the compile cache).

Config (every section but ``[task]`` is optional)::

    [task]                  # a built-in task and its options
    name = "mnist1d_mlp"
    steps = 2000
    # or your own: objective = "mymodel:make_trainer" (a jt.tasks.Task, a Trainer, an
    # objective(hp, key), or a factory called with the other [task] keys; with [space] and
    # [tune] metric unless it is a Task)

    [tune]                  # arguments of jt.tune
    strategy = "coarse_to_fine"
    trials = 32
    rounds = 4
    seed = 0
    storage = "runs/demo.db"
    study = "demo"
    # warm_start = "runs/old.db"  # start from a stored study's trials (see jt.tune's warm_start)

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

import contextlib
import os
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any

from jaxtune.errors import ConfigError, InputError, Problems, UnreadParameterWarning

__all__ = [
    "ConfigError",
    "load_config",
    "check_config",
    "space_from_config",
    "parse_duration",
    "every_parameter_read",
    "enable_compile_cache",
    "cpu_devices",
    "make_parent",
    "check_output",
    "positive_int",
    "load_study",
    "task_of_study",
    "build_task",
]

_SECTIONS = ("task", "tune", "strategy", "space", "babysit")
_TUNE_KEYS = (
    "strategy", "trials", "rounds", "seed", "storage", "study", "metric", "mode", "max_batch", "timeout", "select",
    "tie_break", "constraints", "seeds", "aggregate", "warm_start",
)  # fmt: skip
_PARAM_KEYS = {
    "float": ("low", "high", "scale", "static", "when"),
    "int": ("low", "high", "scale", "static", "masked", "when"),
    "choice": ("values", "static", "when"),
}
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
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: a config must be UTF-8 text ({e.reason} at byte {e.start})") from e
    except OSError as e:
        raise ConfigError(f"config file {path!r} cannot be read ({e.strerror})") from e
    problems = Problems(ConfigError)
    with problems.check():
        _check_keys(path, cfg, _SECTIONS)
    with problems.check():
        if not isinstance(cfg.get("task"), Mapping) or ("name" in cfg["task"]) == ("objective" in cfg["task"]):
            raise ConfigError(f"{path}: needs a [task] section with name = one of the built-in tasks (jaxtune tasks) "
                              'or objective = "package.module:attribute" (your own), one of the two')  # fmt: skip
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
    from jaxtune.schedulers import is_scheduler
    from jaxtune.schedulers.base import make_spec as make_scheduler_spec
    from jaxtune.strategies.base import make_spec
    from jaxtune.tune import RULES, check_argument

    problems = Problems(ConfigError)
    task = dict(cfg["task"])
    with problems.check():
        if "objective" in task:  # importable, and there (nothing is called: it may build data)
            tasks.find(task["objective"])
        else:
            tasks.check_options(task.pop("name"), task)
    if "timeout" in tune_opts:  # a duration here ("20m"): seconds for the rule
        with problems.check():
            tune_opts["timeout"] = parse_duration(tune_opts["timeout"], "[tune] timeout")
    for key in RULES:  # the rules jt.tune checks its own arguments with
        if key in tune_opts:
            with problems.check():
                check_argument(key, tune_opts[key], f"[tune] {key}")
    if "constraints" in tune_opts:
        with problems.check():
            _check_constraints(tune_opts["constraints"])
    if "warm_start" in tune_opts:  # a study file to start from (its trials are read when the sweep starts)
        with problems.check():
            if not isinstance(tune_opts["warm_start"], str) or not os.path.isfile(tune_opts["warm_start"]):
                raise ConfigError(f"[tune] warm_start must name a study file, got {tune_opts['warm_start']!r}")
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


def _check_constraints(value: Any) -> None:
    """``[tune] constraints``: a list of strings ``"NAME OP NUMBER"`` (names are checked against the
    objective's metrics and the space when the sweep starts, before anything is compiled)."""
    from jaxtune.constraints import constraint

    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f'[tune] constraints must be a list of strings such as ["val_loss < 2"], got {value!r}')
    for v in value:
        constraint(v)


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


def check_output(flag: str, path: str | None) -> None:
    """An output path (``--csv``, ``--out``, ...) must be a file whose folder exists or can be made,
    checked before any work; :func:`make_parent` makes the folder when the command writes."""
    if path is None:
        return
    if os.path.isdir(path):
        raise ConfigError(f"{flag} {path!r} is a directory; give a file name")
    _check_creatable(flag, path, os.path.dirname(os.path.abspath(path)))


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (``--top``)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def make_parent(flag: str, path: str) -> None:
    """Makes the directory ``path`` will be written in (after :func:`_check_creatable` passed)."""
    from jaxtune.study.storage import StorageError

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


def enable_compile_cache() -> None:
    """Enables JAX's persistent compilation cache (``JAXTUNE_CACHE_DIR``; ``none`` turns it off):
    a rerun (or a resumed sweep) loads compiled programs instead of compiling them again."""
    from jaxtune.settings import enable_compile_cache as enable

    enable()


def cpu_devices() -> int | None:
    """CPU devices to split the cores into (``JAXTUNE_CPU_DEVICES``; None: one per core)."""
    value = os.environ.get(CPU_DEVICES_ENV, "auto")
    if value == "auto":
        return None
    most = max(64, 4 * (os.cpu_count() or 1))  # each device is a thread pool: thousands would hang
    if not value.isdigit() or not 1 <= int(value) <= most:
        raise ConfigError(f"{CPU_DEVICES_ENV} must be 'auto' or an integer in [1, {most}], got {value!r}")
    return int(value)


def _check_same_objective(result, objective, space, storage: str) -> None:
    """Raises :class:`ConfigError` unless the config builds the objective the study was run with (as
    ``jaxtune run`` checks on resume): for ``export`` and ``reseed``."""
    from jaxtune.study.study import objective_mismatch

    what = objective_mismatch(result.config, objective, space)
    if what:
        raise ConfigError(f"{storage}: the config builds another objective than the study's ({what}); "
                          "use the config the study was run with")  # fmt: skip


def load_study(args):
    """``(config, result)`` of ``export``/``reseed``: the checked TOML config and the stored study."""
    import jaxtune as jt

    cfg = load_config(args.config)
    check_config(cfg, dict(cfg.get("tune", {})))
    return cfg, jt.Result.load(args.storage, study=args.study)


def build_task(cfg: Mapping[str, Any], space=None):
    """The :class:`~jaxtune.tasks.Task` of a checked config's ``[task]``: a built-in one by
    ``name``, or the user's ``objective = "package.module:attribute"`` (a Task as it is; an
    objective, or what a factory returns, with the config's ``[space]`` and metric).

    Raises:
      ConfigError: an objective that is not a Task without ``[space]`` or a metric.
    """
    import jaxtune as jt

    options = {k: v for k, v in cfg["task"].items() if k not in ("name", "objective")}
    if "objective" not in cfg["task"]:
        return jt.tasks.get(cfg["task"]["name"], **options)
    reference = cfg["task"]["objective"]
    try:
        found = jt.tasks.from_reference(reference, **options)
    except InputError as e:
        raise ConfigError(str(e)) from e
    if isinstance(found, jt.tasks.Task):
        return found
    metric = cfg.get("tune", {}).get("metric") or cfg.get("babysit", {}).get("metric")
    if space is None or metric is None:
        raise ConfigError(f"[task] objective = {reference!r} is an objective, not a jt.tasks.Task: the config needs a "
                          "[space] section and [tune] metric (and mode) to tune it")  # fmt: skip
    mode = cfg.get("tune", {}).get("mode") or cfg.get("babysit", {}).get("mode") or "min"
    first = (lambda v: v[0] if isinstance(v, list) else v)  # noqa: E731  (several objectives: the first)
    return jt.tasks.Task(reference, found, space, first(metric), first(mode))


def task_of_study(cfg, result, storage: str):
    """The task ``cfg`` builds, checked to build the objective ``result``'s study was run with."""
    from jaxtune.space import Space

    stored = Space.from_description(result.config["space"]) if "space" in result.config else None
    task = build_task(cfg, stored)
    _check_same_objective(result, task.objective, stored or task.space, storage)
    return task
