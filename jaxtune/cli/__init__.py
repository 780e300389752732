"""The ``jaxtune`` command line: ``run`` a sweep from a TOML config, ``report`` a stored study,
``export`` a trial's trained state, ``plan``, ``babysit``, ``bench`` and ``tasks``.

One module per command (each with ``main(args)`` and ``add_parser(sub)``); :mod:`jaxtune.cli.config`
loads and checks configs for all of them.

See :mod:`jaxtune.cli.config` for the config file.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from jaxtune.cli import babysit, bench, export, plan, report, reseed, run
from jaxtune.cli.config import ConfigError, check_config, load_config, parse_duration, space_from_config
from jaxtune.errors import JaxtuneError, StorageFullError

__all__ = ["main", "load_config", "check_config", "space_from_config", "parse_duration", "ConfigError"]


def _tasks(args) -> int:
    from jaxtune.tasks import TASKS, describe

    print("\n".join(describe(name) for name in TASKS))
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jaxtune", description="Tune hyperparameters by training many trials at once.")
    sub = p.add_subparsers(dest="command", required=True)
    for command in (run, report, export, reseed, babysit, plan, bench):
        command.add_parser(sub)
    t = sub.add_parser("tasks", help="list the built-in tasks")
    t.set_defaults(func=_tasks)
    return p


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is (finished trials are stored; a rerun resumes)."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jaxtune`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        return args.func(args)
    except KeyboardInterrupt as e:
        what = "terminated" if isinstance(e, _Terminated) else "interrupted"
        print(f"jaxtune: {what}; finished trials are stored, rerun the same command to resume", file=sys.stderr)
        return 143 if isinstance(e, _Terminated) else 130
    except JaxtuneError as e:  # what the user can fix; anything else is a bug and shows its traceback
        if os.environ.get("JAXTUNE_DEBUG"):
            raise
        print(f"jaxtune: error: {e}", file=sys.stderr)
        return 1 if isinstance(e, StorageFullError) else 2  # a full disk is no mistake in the command
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
