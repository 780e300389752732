"""``jaxtune export STORAGE CONFIG``: train a stored trial again, exactly, and write its state."""

from __future__ import annotations

from jaxtune.cli.config import ConfigError, check_config, load_config

__all__ = ["main", "add_parser"]


def main(args) -> int:
    """``jaxtune export``: trains the best trial of a stored study again (exactly: its key is part of the record, a PBT
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


def add_parser(sub) -> None:
    """Adds ``export`` to the CLI's subcommands."""
    e = sub.add_parser("export", help="train a study's best trial again and write its state (.npz)")
    e.add_argument("storage")
    e.add_argument("config", help="the TOML config the study was run with (it names the task)")
    e.add_argument("--study")
    e.add_argument("--out", default="best.npz")
    e.set_defaults(func=main)
