"""``jaxtune reseed STORAGE CONFIG``: the study's best configurations on fresh seeds, and the gap."""

from __future__ import annotations

from jaxtune.cli.config import load_study, positive_int, task_of_study

__all__ = ["main", "add_parser"]


def main(args) -> int:
    """``jaxtune reseed``: trains the study's ``--top`` best configurations under ``--seeds`` keys
    no tuning run used (after checking that the config builds the study's objective, as export
    does) and prints each one's tuning value, fresh-seed mean ± standard error and the gap."""
    from jaxtune.reseeding import gap_table, reseed

    cfg, result = load_study(args)
    task = task_of_study(cfg, result, args.storage)
    rows = reseed(result, task.objective, seeds=args.seeds, top=args.top)
    print(f"study {result.study!r}: its {len(rows)} best configurations on {args.seeds} fresh seeds each "
          f"({result.metric}, {result.mode}; gap > 0: the tuning value was the better)")  # fmt: skip
    print(gap_table(rows, result.metric))
    return 0


def add_parser(sub) -> None:
    """Adds ``reseed`` to the CLI's subcommands."""
    r = sub.add_parser("reseed", help="train a study's best configurations on fresh seeds: the tuning-vs-fresh gap")
    r.add_argument("storage")
    r.add_argument("config", help="the TOML config the study was run with (it names the task)")
    r.add_argument("--study")
    r.add_argument("--seeds", type=positive_int, default=8, help="fresh seeds per configuration")
    r.add_argument("--top", type=positive_int, default=5, help="how many of the best configurations")
    r.set_defaults(func=main)
