"""The ``jaxtune`` command line: ``run`` a sweep from a TOML config, ``report`` a stored study,
``export`` a trial's trained state, ``plan``, ``babysit``, ``bench`` and ``tasks``.

One module per command (each with ``main(args)`` and ``add_parser(sub)``); :mod:`jaxtune.cli.config`
loads and checks configs for all of them.

See :mod:`jaxtune.cli.config` for the config file.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
from collections.abc import Sequence

from jaxtune.cli import babysit, bench, export, plan, report, reseed, run
from jaxtune.cli.config import ConfigError, check_config, load_config, parse_duration, space_from_config
from jaxtune.errors import JaxtuneError, StorageFullError, Terminated, raise_from_signal, signal_handled
from jaxtune.study.study import Study

__all__ = ["main", "console", "load_config", "check_config", "space_from_config", "parse_duration", "ConfigError"]


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


def _on_signal(signum, frame):
    """Ctrl-C and SIGTERM: stop the run, and again at its next safe point if this raise is swallowed."""
    raise_from_signal(Terminated() if signum == signal.SIGTERM else KeyboardInterrupt())


def _quiet_about_signals(hook):
    """``sys.unraisablehook`` that leaves out a signalled stop (it is raised again at a safe point)."""

    def unraisable(info):
        if not isinstance(info.exc_value, KeyboardInterrupt):
            hook(info)

    return unraisable


def _what_was_kept(args, stored: int) -> str:
    """After a Ctrl-C or SIGTERM: what this run stored, only what is true."""
    if args.command not in ("run", "reseed", "bench"):
        return "nothing was changed" if args.command in ("report", "plan", "tasks") else "stopped"
    if stored:
        trials = f"the {stored} trial{'s' if stored != 1 else ''}"
        return f"{trials} this run finished are stored: rerun the same command to resume"
    return ("no trial of this run had finished (a round's trials finish together, a chunk at a time), so none was "
            "stored: rerun the same command to start where the study stood")  # fmt: skip


# Errors of the disk or the filesystem while writing an output file: said in one line, exit 1.
_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def console() -> None:
    """The ``jaxtune`` console script: :func:`main`, then exit. After Ctrl-C or SIGTERM it exits at
    once: everything finished is stored (each chunk in its own committed transaction), and an
    interrupted compiled program or compile would otherwise hold the interpreter's shutdown,
    which waits for XLA's and the compile workers' threads, for as long as it runs."""
    code = main()
    if code in (130, 143):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jaxtune`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    previous = {}
    try:
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, _on_signal)
    except ValueError:  # not the main thread: leave signals alone
        pass
    hook, sys.unraisablehook = sys.unraisablehook, _quiet_about_signals(sys.unraisablehook)
    stored_before = Study.stored_since_opened()
    try:
        return args.func(args)
    except KeyboardInterrupt as e:
        what = "terminated" if isinstance(e, Terminated) else "interrupted"
        print(f"jaxtune: {what}; {_what_was_kept(args, Study.stored_since_opened() - stored_before)}", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    except JaxtuneError as e:  # what the user can fix; anything else is a bug and shows its traceback
        if os.environ.get("JAXTUNE_DEBUG"):
            raise
        print(f"jaxtune: error: {e}", file=sys.stderr)
        return 1 if isinstance(e, StorageFullError) else 2  # a full disk is no mistake in the command
    except OSError as e:  # a file the command writes (a figure, a report, an export), not the study
        if e.errno not in _DISK_ERRORS or os.environ.get("JAXTUNE_DEBUG"):
            raise
        name = f" ({e.filename})" if e.filename else ""
        kept = ""
        if args.command in ("run", "reseed", "bench"):
            kept = f" ({_what_was_kept(args, Study.stored_since_opened() - stored_before)})"
        print(f"jaxtune: error: cannot write a file{name}: {e.strerror}; the study file is unharmed{kept}",
              file=sys.stderr)  # fmt: skip
        return 1
    finally:
        signal_handled()
        sys.unraisablehook = hook
        for signum, handler in previous.items():
            if handler is not None:  # None: installed outside Python, which cannot be put back
                signal.signal(signum, handler)
