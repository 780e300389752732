"""``jaxtune bench``: strategies × problems × seeds, vectorized, with regret tables and curves."""

from __future__ import annotations

DEFAULT_PROBLEMS = "branin,hartmann3,hartmann6,rosenbrock4,branin_in_10d"
DEFAULT_STRATEGIES = "random,grid,halton,coarse_to_fine"
# Evaluations of one problem and strategy held at once (seeds x evals floats of every curve).
MAX_POINTS = 2**28


def main(args) -> int:
    """Runs :func:`jaxtune.bench.run` and writes JSON, CSV, a markdown table and a PNG to ``--out``."""
    import os
    import time

    import jax

    from jaxtune import bench
    from jaxtune._checks import check_int
    from jaxtune.cli.config import ConfigError
    from jaxtune.errors import Problems

    if args.out is None:  # a folder per run: an earlier run's results are kept
        args.out = os.path.join("runs", "bench", time.strftime("%Y%m%d-%H%M%S"))
    problems = [p for p in args.problems.split(",") if p]
    strategies = [s for s in args.strategies.split(";" if ";" in args.strategies else ",") if s]
    checks = Problems(ConfigError)
    for p in problems:
        with checks.check():
            bench.get_problem(p)
    with checks.check():  # strategies too, before the --out folder is made
        bench.check_strategies(strategies)
    for name, value, low in (("--seeds", args.seeds, 1), ("--trials", args.trials, 1), ("--evals", args.evals, 1)):
        with checks.check():
            check_int(name, value, low)
    with checks.check():
        if args.evals < args.trials:
            raise ConfigError(f"--evals ({args.evals}) must be at least --trials ({args.trials})")
    with checks.check():  # every seed's anytime curve is held at once
        if isinstance(args.seeds, int) and isinstance(args.evals, int) and args.seeds * args.evals > MAX_POINTS:
            raise ConfigError(
                f"--seeds x --evals = {args.seeds * args.evals:,} evaluations per sweep exceed the {MAX_POINTS:,} "
                "held in memory at once: use fewer seeds (their medians settle long before that)"
            )
    with checks.check():
        if os.path.exists(args.out) and not os.path.isdir(args.out):
            raise ConfigError(f"--out {args.out!r} is a file; give a folder for bench.json, bench.csv, table.md")
    checks.raise_if_any("jaxtune bench")
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--out {args.out!r} cannot be made ({e.strerror})") from e
    t = time.perf_counter()
    res = bench.run(problems, strategies, seeds=args.seeds, evals=args.evals, trials=args.trials, progress=True)
    seconds = time.perf_counter() - t
    table = res.table()
    print(table)
    print(f"{len(problems)} problems x {len(strategies)} strategies x {args.seeds} seeds x {args.evals} evaluations "
          f"in {seconds:.1f} s on {jax.devices()[0].device_kind}")  # fmt: skip
    res.to_json(os.path.join(args.out, "bench.json"), seconds=seconds, device=jax.devices()[0].device_kind)
    res.to_csv(os.path.join(args.out, "bench.csv"))
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(table + "\n")
    try:
        print(f"figure: {res.plot(os.path.join(args.out, 'regret.png'))}")
    except Exception as e:  # matplotlib missing: the numbers are written anyway
        print(f"(no figure: {e})")
    print(f"results in {args.out}/ (bench.json, bench.csv, table.md)")
    return 0


def add_parser(sub) -> None:
    """Adds ``bench`` to the CLI's subcommands."""
    b = sub.add_parser("bench", help="benchmark search strategies on problems with known optima, seeds vectorized")
    b.add_argument("--problems", default=DEFAULT_PROBLEMS, help=f"comma-separated (default {DEFAULT_PROBLEMS})")
    b.add_argument(
        "--strategies",
        default=DEFAULT_STRATEGIES,
        help=f"comma-separated names, or ';'-separated name:key=value,... entries (default {DEFAULT_STRATEGIES})",
    )
    b.add_argument("--seeds", type=int, default=100)
    b.add_argument("--evals", type=int, default=1000, help="evaluations per sweep")
    b.add_argument("--trials", type=int, default=50, help="evaluations per round")
    b.add_argument("--out", help="folder for bench.json, bench.csv, table.md, regret.png (default: "
                   "runs/bench/DATE-TIME, a new one per run)")  # fmt: skip
    b.set_defaults(func=main)
