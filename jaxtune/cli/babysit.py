"""``jaxtune babysit CONFIG.toml``: panda mode from the terminal (or from a file of commands).

The config names a task (``[task]``), optionally a ``[space]``, and a ``[babysit]`` table::

    [babysit]
    segment = 100            # steps per segment
    seed = 0
    storage = "runs/panda.db"
    name = "panda"           # an existing run of that name resumes at its head
    metric = "val_accuracy"
    mode = "max"
    [babysit.hp]             # the starting configuration (missing names: the middle of their range)
    lr = 3e-3

Commands (one per line, at the ``babysit>`` prompt or in ``--commands FILE``)::

    train [N]                      train N segments (default 1)
    set lr=1e-3 [b1=0.95 ...]      change traced hyperparameters from now on (lr*=0.5 halves it)
    rollback STEP                  back to the checkpoint at STEP (its hyperparameters come back too)
    fork lr=1e-3 | lr=3e-3 [for N] train the edits side by side for N segments (default 1)
    adopt LABEL                    continue from branch LABEL (a, b, ...) of the last fork
    show | tree | best | help      the learning curve, the run's tree, its best checkpoint
    quit                           stop (the run resumes from storage next time)
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
from typing import Any

from jaxtune.analysis.report import fmt, held_out
from jaxtune.errors import CommandError, JaxtuneError

BABYSIT_KEYS = ("segment", "seed", "storage", "name", "metric", "mode", "hp")
COMMANDS = ("train", "set", "rollback", "fork", "adopt", "show", "tree", "best", "help", "quit")
HELP = __doc__[__doc__.index("Commands") :].split("\n", 1)[1]


def _value(text: str) -> Any:
    """A command-line value: int, float or the string itself (a choice's value)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _assignments(words: list[str], where: str, current: Mapping[str, Any]) -> dict[str, Any]:
    """``name=value`` pairs; ``name*=factor`` scales the current value (``lr*=0.5`` halves it)."""
    out = {}
    for w in words:
        name, eq, value = w.partition("=")
        if not eq or not name or not value:
            raise CommandError(f"{where}: expected name=value or name*=factor, got {w!r}")
        if name.endswith("*"):
            name, factor = name[:-1], _value(value)
            if name not in current or isinstance(current[name], str) or isinstance(factor, str):
                raise CommandError(f"{where}: {w!r} scales a numeric hyperparameter by a number")
            value = current[name] * factor
            out[name] = int(round(value)) if isinstance(current[name], int) else float(value)
            continue
        out[name] = _value(value)
    if not out:
        raise CommandError(f"{where}: give at least one name=value")
    return out


class Session:
    """Reads babysitting commands and carries them out on a :class:`~jaxtune.babysitting.Babysitter`."""

    def __init__(self, sitter, out=None):
        self.sitter = sitter
        self.out = out or sys.stdout

    def say(self, text: str) -> None:
        """Prints a line of the session (flushed: a pseudo-terminal or a pipe sees it at once)."""
        print(text, file=self.out, flush=True)

    def status(self) -> str:
        """The head's step and metrics, as a line (the selection metric first, held-out ones left out)."""
        s = self.sitter
        m = s.metrics  # the selection metric first; held-out (test) ones are stored, not shown while choosing
        names = sorted((k for k in m if not held_out(k)), key=lambda k: (k != s.metric, k))
        shown = ", ".join(f"{k}={m[k]:.4g}" for k in names)
        hp = ", ".join(f"{k}={fmt(v)}" for k, v in s.hp.items())
        return f"step {s.step}: {shown}  [{hp}]"

    def _fork(self, args: list[str]) -> None:
        """``fork EDITS | EDITS ... [for N]``: the edits side by side from the current state."""
        s, segments = self.sitter, 1
        if len(args) >= 2 and args[-2] == "for":
            if not args[-1].isdigit() or int(args[-1]) < 1:
                raise CommandError(f"fork: 'for' needs a number of segments >= 1, got {args[-1]!r}")
            segments, args = int(args[-1]), args[:-2]
        edits, current = [], []
        for w in args + ["|"]:
            if w == "|":
                edits.append(_assignments(current, "fork", s.hp))
                current = []
            else:
                current.append(w)
        result = s.fork(edits, segments)
        for label, edit in zip(result, edits):
            m = result[label]
            edit_text = " ".join(f"{k}={fmt(v)}" for k, v in edit.items())
            self.say(f"  {label}: {edit_text:<24} {s.metric}={m.get(s.metric, float('nan')):.4g}")
        best = min(result, key=lambda k: (1 if s.mode == "min" else -1) * result[k].get(s.metric, float("inf")))
        self.say(f"best: {best} (adopt {best} to continue from it)")

    def run(self, line: str) -> bool:
        """Carries out one command; False when it asks to stop."""
        try:
            words = shlex.split(line, comments=True)
        except ValueError as e:  # an unclosed quote
            raise CommandError(f"cannot read {line!r}: {e}") from e
        if not words:
            return True
        cmd, args = words[0].lower(), words[1:]
        s = self.sitter
        if cmd in ("quit", "exit", "stop", "q"):
            return False
        if cmd == "help":
            self.say(HELP)
        elif cmd == "train":
            n = int(args[0]) if args and args[0].isdigit() else 1 if not args else None
            if n is None or n < 1 or len(args) > 1:
                raise CommandError(f"train: expected a number of segments >= 1, got {' '.join(args)!r}")
            s.train(n)
            self.say(self.status())
        elif cmd == "set":
            s.set(**_assignments(args, "set", s.hp))
            self.say(f"from step {s.step}: " + ", ".join(f"{k}={fmt(v)}" for k, v in s.hp.items()))
        elif cmd == "rollback":
            if len(args) != 1 or not args[0].isdigit():
                raise CommandError(f"rollback: expected a step, got {' '.join(args)!r}")
            s.rollback(int(args[0]))
            self.say("rolled back; " + self.status())
        elif cmd == "fork":
            self._fork(args)
        elif cmd == "adopt":
            if len(args) != 1:
                raise CommandError("adopt: expected one branch label (a, b, ...)")
            s.adopt(args[0])
            self.say("adopted; " + self.status())
        elif cmd == "show":
            events = dict(s.events())
            for step, m in s.curve():
                note = f"   <- {events[step]}" if step in events and events[step] != "start" else ""
                self.say(f"{step:>8}  {s.metric}={m.get(s.metric, float('nan')):.4g}{note}")
        elif cmd == "tree":
            self.say(s.tree())
        elif cmd == "best":
            b = s.best()
            value = b["metrics"][s.metric]
            self.say(f"best checkpoint: #{b['id']} at step {b['step']}, {s.metric}={value:.4g}, {b['hp']}")
        else:
            raise CommandError(f"unknown command {cmd!r}; commands are {', '.join(COMMANDS)}")
        return True


def check_babysit(table: Mapping[str, Any]) -> dict[str, Any]:
    """The ``[babysit]`` table of a config, checked (every problem at once, as a ConfigError)."""
    from jaxtune._checks import check_int
    from jaxtune.cli.config import ConfigError
    from jaxtune.errors import Problems
    from jaxtune.result import MODES

    if not isinstance(table, Mapping):
        raise ConfigError("[babysit] must be a table")
    problems = Problems(ConfigError)
    with problems.check():
        bad = sorted(set(table) - set(BABYSIT_KEYS))
        if bad:
            raise ConfigError(f"[babysit] unknown key(s) {bad}; allowed are {list(BABYSIT_KEYS)}")
    with problems.check():
        check_int("[babysit] segment", table.get("segment", 100))
    with problems.check():
        check_int("[babysit] seed", table.get("seed", 0), 0)
    with problems.check():
        if table.get("mode", "min") not in MODES:
            raise ConfigError(f"[babysit] mode must be 'min' or 'max', got {table['mode']!r}")
    with problems.check():
        if not isinstance(table.get("hp", {}), Mapping):
            raise ConfigError("[babysit.hp] must be a table of name = value")
    problems.raise_if_any("the config")
    return dict(table)


def open_sitter(cfg: Mapping[str, Any], table: Mapping[str, Any], space, storage: str | None, name: str | None = None):
    """The :class:`~jaxtune.babysitting.Babysitter` a checked config describes (its task, ``[babysit]``
    table and space), started or resumed at its head in ``storage``."""
    from jaxtune.babysitting import Babysitter
    from jaxtune.cli.config import build_task

    task = build_task(cfg, space)
    return Babysitter(
        task.objective,
        space or task.space,
        table.get("hp") or None,
        storage=storage,
        name=name or table.get("name", "babysit"),
        seed=table.get("seed", 0),
        segment=table.get("segment", 100),
        metric=table.get("metric", task.metric),
        mode=table.get("mode", task.mode),
    )


def main(args) -> int:
    """``jaxtune babysit``: builds the task, starts or resumes the run, reads commands."""
    from jaxtune.cli.config import build_task, check_config, enable_compile_cache, every_parameter_read, load_config

    cfg = load_config(args.config)
    table = check_babysit(cfg.get("babysit", {}))
    space = check_config(cfg, {})
    commands = _read_commands(args.commands) if args.commands else None
    storage = args.storage or table.get("storage")
    if storage:
        os.makedirs(os.path.dirname(os.path.abspath(storage)), exist_ok=True)
    enable_compile_cache()
    with every_parameter_read(build_task(cfg, space).name):
        sitter = open_sitter(cfg, table, space, storage)
    session = Session(sitter)
    resumed = sitter.step > 0 or len(sitter.nodes) > 1
    session.say(("resumed " if resumed else "started ") + session.status())
    interactive = commands is None and sys.stdin.isatty()
    if interactive:
        try:
            import readline  # noqa: F401  (line editing and history at the prompt)
        except ImportError:
            pass
        session.say("commands: " + ", ".join(COMMANDS) + " (help explains them)")
    try:
        _loop(session, commands, interactive)
    finally:
        sitter.close()
    if storage and commands is None:
        session.say(f"stored in {storage} (run the same command to resume)")
    elif storage:  # a rerun with the same file would apply its commands again, on top of this state
        session.say(
            f"stored in {storage} at step {sitter.step}; to go on from here, run it again at the prompt "
            "(without --commands) or with a file of the next commands"
        )
    return 0


def _read_commands(path: str) -> list[str]:
    """The lines of a ``--commands`` file, or a :class:`ConfigError` saying why they cannot be read."""
    from jaxtune.cli.config import ConfigError

    if not os.path.isfile(path):
        raise ConfigError(f"--commands {path!r} " + ("is a directory" if os.path.isdir(path) else "does not exist"))
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"--commands {path!r} cannot be read as UTF-8 text ({e})") from e


def _loop(session: Session, commands: list[str] | None, interactive: bool) -> None:
    """Runs ``commands`` (a script: it stops at its first bad command), or reads them at the prompt."""
    lines = iter(commands) if commands is not None else None
    while True:
        if lines is not None:
            line = next(lines, None)
            if line is None:
                break
            if line.strip():
                session.say(f"babysit> {line}")
        else:
            try:
                line = input("babysit> ")
            except EOFError:
                break
        try:
            if not session.run(line):
                break
        except JaxtuneError as e:
            if not interactive and lines is not None:
                raise  # a script stops at its first bad command
            session.say(f"error: {e}")


def add_parser(sub) -> None:
    """Adds ``babysit`` to the CLI's subcommands."""
    b = sub.add_parser("babysit", help="train one model segment by segment: set, rollback, fork, adopt")
    b.add_argument("config")
    b.add_argument("--commands", help="read commands from this file instead of the terminal")
    b.add_argument("--storage", help="override [babysit] storage")
    b.set_defaults(func=main)
