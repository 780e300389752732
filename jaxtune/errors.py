"""The errors jaxtune raises about what it was given (as opposed to its own bugs).

Every exception that means "change your input" derives from :class:`JaxtuneError`, so a caller
(the ``jaxtune`` CLI among them) can report those in one line and let anything else, a bug, show
its traceback. Each also derives from the matching built-in (``ValueError``, ``TypeError``,
``KeyError``, ``ImportError``) so existing ``except ValueError`` code keeps working.
"""

from __future__ import annotations

from typing import Any, NoReturn

__all__ = [
    "JaxtuneError",
    "InputError",
    "InputTypeError",
    "MissingDependencyError",
    "MissingFileError",
    "Problems",
    "UnknownNameError",
    "UnreadParameterWarning",
    "LayoutWarning",
    "StudyBusyError",
    "StudyMismatchError",
    "StorageError",
    "StorageFullError",
    "CheckpointError",
    "CheckpointWarning",
    "MissingHyperparameterError",
    "ConfigError",
    "CommandError",
    "Terminated",
    "raise_from_signal",
    "raise_swallowed_signal",
    "signal_handled",
]


class JaxtuneError(Exception):
    """Base of every error jaxtune raises about its input, configuration, storage or environment."""


class InputError(JaxtuneError, ValueError):
    """A bad argument or config value; the message names the value and what is allowed."""


class InputTypeError(InputError, TypeError):
    """An argument of the wrong type; the message names it and the types allowed."""


class UnknownNameError(JaxtuneError, KeyError):
    """A name that is not there (a study, a hyperparameter); the message lists the names that are."""

    def __str__(self) -> str:  # KeyError's own str() would print the message in quotes
        return str(self.args[0]) if self.args else ""


class MissingFileError(JaxtuneError, FileNotFoundError):
    """A file the input names does not exist."""


class MissingDependencyError(JaxtuneError, ImportError):
    """An optional dependency a feature needs is not installed; the message says how to install it."""


class UnreadParameterWarning(UserWarning):
    """The objective never reads some parameters of the search space: tuning them changes nothing.

    Attributes:
      unread: the space's parameters the objective never read.
      read: the names it did read (its hyperparameters, defaulted ones included).
    """

    def __init__(self, message: str, unread: list[str], read: list[str]):
        super().__init__(message)
        self.unread, self.read = unread, read


class LayoutWarning(UserWarning):
    """A study resumes with another execution layout (devices, chunking, backend, JAX version)."""


class StudyBusyError(JaxtuneError, RuntimeError):
    """Another process runs the same study in the same storage file right now."""


class StudyMismatchError(JaxtuneError, ValueError):
    """The stored study was made with another space, strategy, batch size, seed or metric."""


class StorageError(JaxtuneError, ValueError):
    """A storage path that cannot hold a jaxtune study: not writable, not SQLite, another application's."""


class StorageFullError(StorageError):
    """The disk holding the storage is full: what was stored is intact, and a rerun resumes."""


class CheckpointError(StorageError):
    """Every stored checkpoint of a population is damaged (or another study's): it cannot resume."""


class CheckpointWarning(UserWarning):
    """A damaged checkpoint was skipped; the run resumes from the one before it."""


class MissingHyperparameterError(JaxtuneError, KeyError):
    """The objective read a hyperparameter that the search space does not define, or a conditional
    one that is inactive in this trial."""

    def __init__(self, name: Any, names: list[str], when: Any = None):
        super().__init__(name)
        self.name, self.names, self.when = name, names, when

    def __str__(self) -> str:
        if self.when is not None:
            cond = " and ".join(f"{a} in {list(v)!r}" for a, v in self.when)
            return (
                f"the objective reads hyperparameter {self.name!r}, which is inactive in this trial: it exists only "
                f"when {cond}; read it in that branch only, or with hp.get({self.name!r}, default)"
            )
        return (
            f"the objective reads hyperparameter {self.name!r}, which the search space does not define "
            f"(it has {self.names}); add it to the space, or read it with hp.get({self.name!r}, default)"
        )


class ConfigError(InputError):
    """A config file that cannot be run, with a message that says what to change."""


class CommandError(InputError):
    """A babysit command that cannot be carried out (bad syntax, name or value)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is: finished trials are stored and a rerun resumes."""


_SIGNALLED: list[KeyboardInterrupt] = []  # raised by a signal handler and not yet handled


def raise_from_signal(error: KeyboardInterrupt) -> NoReturn:
    """Raises ``error`` from a signal handler and remembers it until :func:`signal_handled`.

    Python runs a signal handler between any two bytecodes, a destructor's or a garbage-collector
    callback's (``jax`` has one) among them, and there an exception is printed and dropped: the run
    would carry on. Remembered, the stop is raised again at the drivers' next safe point
    (:func:`raise_swallowed_signal`).
    """
    _SIGNALLED.append(error)
    raise error


def raise_swallowed_signal() -> None:
    """Raises again a signalled stop that the code it interrupted swallowed (no-op otherwise)."""
    if _SIGNALLED:
        raise _SIGNALLED[-1]


def signal_handled() -> None:
    """Forgets the signalled stops: whoever called this has handled them."""
    _SIGNALLED.clear()


class Problems:
    """Collects the input errors of independent checks, so a user sees all of them at once.

    Examples:
      >>> problems = Problems()
      >>> with problems.check():
      ...     raise InputError("trials must be an int >= 1, got 0")
      >>> with problems.check():
      ...     raise InputError("mode must be 'min' or 'max', got 'up'")
      >>> problems.raise_if_any("jt.tune")
      Traceback (most recent call last):
      ...
      jaxtune.errors.InputError: 2 problems in jt.tune:
        - trials must be an int >= 1, got 0
        - mode must be 'min' or 'max', got 'up'
    """

    def __init__(self, kind: type[InputError] = InputError):
        self.errors: list[JaxtuneError] = []
        self.kind = kind

    def check(self):
        """A context manager that records a :class:`JaxtuneError` raised inside it instead of raising it."""
        import contextlib

        @contextlib.contextmanager
        def guard():
            try:
                yield
            except JaxtuneError as e:  # a list of problems from a nested check joins this one
                self.errors.extend(getattr(e, "problems", None) or [e])

        return guard()

    def raise_if_any(self, where: str) -> None:
        """Raises the one error recorded, or one :attr:`kind` error listing them all."""
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            lines = "\n".join(f"  - {e}" for e in self.errors)
            error = self.kind(f"{len(self.errors)} problems in {where}:\n{lines}")
            error.problems = list(self.errors)
            raise error
