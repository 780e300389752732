"""Built-in tasks: real training tasks on local data, and synthetic functions with known optima.

``get(name, **options)`` builds a :class:`Task` by name; :data:`TASKS` lists the names.
``from_reference("package.module:attribute", **options)`` finds a user's own task, objective or
factory (what a config's ``[task] objective = "..."`` names).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import sys
from typing import Any

from jaxtune.errors import InputError
from jaxtune.tasks.base import Task
from jaxtune.tasks.synthetic import (
    SYNTHETIC,
    TOY_PBT_SPACE,
    Synthetic,
    ToyPBT,
    branin,
    hartmann3,
    hartmann6,
    rosenbrock,
)

__all__ = [
    "TASKS",
    "Task",
    "get",
    "check_options",
    "find",
    "from_reference",
    "describe",
    "SYNTHETIC",
    "Synthetic",
    "branin",
    "hartmann3",
    "hartmann6",
    "rosenbrock",
    "ToyPBT",
]


def _synthetic_task(name: str) -> Task:
    s = SYNTHETIC[name]
    return Task(name, s.objective, s.space, "value", "min", report=("value",))


def _registry():
    from jaxtune.tasks import attention, classify

    tasks = {f"mnist1d_{m}": functools.partial(classify.mnist1d, m) for m in classify.MNIST1D_MODELS}
    tasks["digits_mlp"] = classify.digits
    tasks["digits_cnn"] = classify.digits_cnn
    tasks.update({n: functools.partial(_synthetic_task, n) for n in SYNTHETIC})
    tasks["pbt_toy"] = _pbt_toy
    tasks["modular_arithmetic"] = attention.modular_arithmetic
    tasks["associative_recall"] = attention.associative_recall
    return tasks


def _pbt_toy(steps: int = 400, lr: float = 0.01) -> Task:
    return Task("pbt_toy", ToyPBT(steps=steps, lr=lr), TOY_PBT_SPACE, "Q", "max", report=("Q",))


TASKS = tuple(
    sorted(
        [
            "mnist1d_linear",
            "mnist1d_mlp",
            "mnist1d_cnn",
            "mnist1d_gru",
            "digits_mlp",
            "digits_cnn",
            "pbt_toy",
            "modular_arithmetic",
            "associative_recall",
            *SYNTHETIC,
        ]
    )
)


def _describe_param(p) -> str:
    from jaxtune.space import Choice

    if isinstance(p, Choice):
        return f"choice {list(p.values)}"
    return f"{type(p).__name__.lower()} {p.scale} [{p.low:g}, {p.high:g}]" + (" static" if p.static else "")


def describe(name: str) -> str:
    """One task's options (with defaults) and default search space, without building it (no data)."""
    registry = _registry()
    if name not in registry:
        raise InputError(f"unknown task {name!r}; built-in tasks are {', '.join(TASKS)}")
    factory = registry[name]
    options = [
        f"{p.name}={p.default!r}"
        for p in inspect.signature(factory).parameters.values()
        if p.name not in ("model", "space") and p.default is not inspect.Parameter.empty
    ]
    if name in SYNTHETIC:
        space = SYNTHETIC[name].space
    elif name == "pbt_toy":
        space = TOY_PBT_SPACE
    elif name in ("modular_arithmetic", "associative_recall"):
        from jaxtune.tasks.attention import default_space

        space = default_space()
    else:
        from jaxtune.tasks.classify import default_space

        space = default_space()
    params = "; ".join(f"{n}: {_describe_param(p)}" for n, p in space.params.items())
    return f"{name}\n  options: {', '.join(options) or '-'}\n  default space: {params}"


def check_options(name: str, options: dict) -> None:
    """Checks a task name and its option names without building it (no data is generated)."""
    if name not in TASKS:
        raise InputError(f"unknown task {name!r}; built-in tasks are {', '.join(TASKS)}")
    params = {n: p for n, p in inspect.signature(_registry()[name]).parameters.items() if n != "model"}
    bad = sorted(set(options) - set(params))
    if bad:
        raise InputError(f"task {name!r} has no option(s) {bad}; its options are {list(params)}")
    for option, value in options.items():  # of the kind its default is, before anything is built
        default = params[option].default
        if isinstance(default, bool):
            ok, kind = isinstance(value, bool), "true or false"
        elif isinstance(default, int):
            ok, kind = isinstance(value, int) and not isinstance(value, bool), "an integer"
        elif isinstance(default, float):
            ok, kind = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
        elif isinstance(default, str):
            ok, kind = isinstance(value, str), "a string"
        else:
            continue
        if not ok:
            raise InputError(f"task {name!r}: option {option} must be {kind}, got {value!r}")


def get(name: str, **options) -> Task:
    """Builds the built-in task ``name`` with ``options`` (e.g. ``steps=500``)."""
    check_options(name, options)
    return _registry()[name](**options)


def find(reference: str, what: str = "objective") -> Any:
    """The object ``"package.module:attribute"`` names (``attribute`` may be dotted), imported as
    ``python -m`` would: the current directory first. Nothing is called; ``what`` names it in errors.

    Raises:
      InputError: the reference is malformed, its module cannot be imported, or it has no such attribute.
    """
    module, sep, attribute = reference.partition(":") if isinstance(reference, str) else ("", "", "")
    if not (sep and module and attribute):
        raise InputError(
            f"{what} must be 'package.module:attribute' (e.g. 'mymodel:make_trainer'), got {reference!r}"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        found = importlib.import_module(module)
    except ImportError as e:
        raise InputError(f"{what} {reference!r}: cannot import module {module!r} ({e})") from e
    except (Exception, SystemExit) as e:  # the module's own code failed (or exited) while importing
        raise InputError(f"{what} {reference!r}: importing module {module!r} raised {_where(e)}") from None
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise InputError(f"{what} {reference!r}: {module!r} has no attribute {attribute!r}")
        found = getattr(found, part)
    return found


def _where(e: BaseException) -> str:
    """``e`` in one line with where it was raised: ``RuntimeError: boom (mymodel.py, line 3)``."""
    import traceback

    frames = traceback.extract_tb(e.__traceback__)
    at = f" ({os.path.basename(frames[-1].filename)}, line {frames[-1].lineno})" if frames else ""
    text = f"SystemExit({e.code!r})" if isinstance(e, SystemExit) else f"{type(e).__name__}: {e}"
    return text + at


def _is_objective(obj: Any) -> bool:
    """An ``objective(hp, key)``: a Trainer (or any object with the stateful trial protocol), or a
    function that needs exactly two positional arguments (a factory's options have defaults)."""
    if all(hasattr(obj, m) for m in ("init", "train", "evaluate_state")):
        return True
    try:
        params = list(inspect.signature(obj).parameters.values())
    except (TypeError, ValueError):
        return False
    required = [p for p in params if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return len(required) == 2 and all(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in required)


def from_reference(reference: str, **options) -> Task | Any:
    """What ``"package.module:attribute"`` gives: a :class:`Task`, or an objective (a Trainer or a
    function ``objective(hp, key)``), as it stands or returned by a factory called with
    ``options`` (a function that is not an objective: e.g. ``make_trainer(width=64, steps=500)``).

    Examples:
      >>> task = from_reference("jaxtune.tasks:get", name="branin")
      >>> task.name, task.metric
      ('branin', 'value')
    """
    found = find(reference)
    if isinstance(found, Task) or (_is_objective(found) and not inspect.isclass(found)):
        if options:
            raise InputError(f"objective {reference!r} is a task or objective, not a factory: it takes no options, "
                             f"got {sorted(options)}")  # fmt: skip
        return found
    if not callable(found):
        raise InputError(f"objective {reference!r} is a {type(found).__name__}: name a jt.tasks.Task, a Trainer, an "
                         "objective(hp, key) or a factory returning one")  # fmt: skip
    try:
        made = found(**options)
    except (Exception, SystemExit) as e:  # wrong options, or the factory's own code failed
        raise InputError(
            f"objective {reference!r}: calling it with the [task] options {sorted(options)} raised {_where(e)}"
        ) from None
    if not (isinstance(made, Task) or callable(made)):
        raise InputError(f"objective {reference!r} returned a {type(made).__name__}: a factory must return a "
                         "jt.tasks.Task, a Trainer or an objective(hp, key)")  # fmt: skip
    return made
