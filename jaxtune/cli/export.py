"""``jaxtune export STORAGE CONFIG``: train a stored trial again, exactly, and write its state."""

from __future__ import annotations

import os

from jaxtune.cli.config import ConfigError, check_output, load_study, make_parent, task_of_study
from jaxtune.cli.report import is_babysit

__all__ = ["main", "add_parser"]


def _trial(result, which: str | None, storage: str):
    """The trial to export: ``ROUND:SLOT``, or the best."""
    if which is None:
        if result.best is None:
            raise ConfigError(f"{storage}: the study has no finished trial to export")
        return result.best
    try:
        key = tuple(int(x) for x in which.split(":"))
    except ValueError:
        key = ()
    trial = next((t for t in result.trials if (t["round"], t["slot"]) == key), None) if len(key) == 2 else None
    if trial is None:
        raise ConfigError(f"--trial {which!r} is not a stored trial: give ROUND:SLOT as the report's table shows them")
    return trial


def _write_state(out: str, state) -> list:
    """Writes ``state``'s leaves to ``out`` (.npz, one array per tree path); returns the leaves.
    The file appears whole or not at all (written beside it, then renamed)."""
    import jax
    import numpy as np

    from jaxtune._trees import host_leaf

    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    make_parent("--out", out)
    part = f"{out}.part"
    try:
        with open(part, "wb") as f:
            np.savez(f, **{jax.tree_util.keystr(path): host_leaf(leaf) for path, leaf in leaves})
        os.replace(part, out)
    finally:
        if os.path.exists(part):
            os.remove(part)
    return leaves


def _export_babysit(args, out: str) -> int:
    """``jaxtune export`` of a babysitting run: the state at its head, or at ``--node N`` (trained
    again along its path, bit for bit on CPU), from the config it was run with."""

    from jaxtune.cli.babysit import check_babysit, open_sitter
    from jaxtune.cli.config import check_config, load_config

    cfg = load_config(args.config)
    table = check_babysit(cfg.get("babysit", {}))
    sitter = open_sitter(cfg, table, check_config(cfg, {}), args.storage, args.study)
    try:
        node = sitter.head if args.node is None else args.node
        if not 0 <= node < len(sitter.nodes):
            raise ConfigError(f"--node {node} is not a node of the run: its nodes are 0..{len(sitter.nodes) - 1} "
                              "(jaxtune report STORAGE draws the tree)")  # fmt: skip
        state = sitter.state if args.node is None else sitter.replay(node)
        at = sitter.nodes[node]
    finally:
        sitter.close()
    leaves = _write_state(out, state)
    print(f"babysat model, node {node} at step {at['step']}: {at['hp']}")
    print(f"state: {os.path.abspath(out)} ({len(leaves)} arrays)")
    return 0


def main(args) -> int:
    """``jaxtune export``: trains a stored trial (the best, or ``--trial``) again, exactly (its key
    is part of the record; a PBT winner along its lineage), after checking that the config builds
    the study's objective, and writes its final state (parameters, optimizer state, ...) as .npz,
    each array at the trial's true widths (a masked width is cut from its bucket to its value)."""

    from jaxtune.execute.population import supports_protocol

    orbax = args.format == "orbax"
    if orbax:  # a checkpoint is a folder: --out best.npz (the default) writes best/
        out = os.path.abspath(args.out[: -len(".npz")] if args.out.endswith(".npz") else args.out)
        if os.path.exists(out):
            raise ConfigError(f"--out {out!r} exists already: an Orbax checkpoint needs a new folder")
    else:
        out = args.out if args.out.endswith(".npz") else args.out + ".npz"  # (numpy would add it)
    check_output("--out", out)
    if is_babysit(args.storage, args.study):
        if orbax:
            raise ConfigError("--format orbax writes a sweep's trial; a babysitting run exports as .npz")
        return _export_babysit(args, out)
    if args.node is not None:
        raise ConfigError("--node is for a babysitting run; a sweep's trial is --trial ROUND:SLOT")
    cfg, result = load_study(args)
    trial = _trial(result, args.trial, args.storage)
    task = task_of_study(cfg, result, args.storage)
    if not supports_protocol(task.objective):
        raise ConfigError(f"task {task.name!r} cannot be replayed (no stateful trial protocol)")
    state, again = result.replay(task.objective, trial, return_metrics=True)
    if hasattr(task.objective, "unpadded"):  # masked widths: the arrays at the trial's true widths
        state = task.objective.unpadded(trial["params"], state)
    which = "best trial" if args.trial is None else "trial"
    print(f"{which} (round {trial['round']}, slot {trial['slot']}): {trial['params']}")
    print(f"replayed {result.metric}: {again.get(result.metric, float('nan')):.6g} (stored {trial['value']:.6g})")
    if orbax:
        from jaxtune.study.orbax_export import model_state, save_orbax

        make_parent("--out", out)
        print(f"model state (Orbax): {save_orbax(out, model_state(task.objective, trial['params'], state))} "
              "(restore it into your model with orbax's StandardCheckpointer and nnx.merge / nnx.update)")  # fmt: skip
        return 0
    leaves = _write_state(out, state)
    print(f"state: {os.path.abspath(out)} ({len(leaves)} arrays)")
    return 0


def add_parser(sub) -> None:
    """Adds ``export`` to the CLI's subcommands."""
    e = sub.add_parser("export", help="train a study's best trial (or --trial) again and write its state (.npz)")
    e.add_argument("storage")
    e.add_argument("config", help="the TOML config the study was run with (it names the task)")
    e.add_argument("--study")
    e.add_argument("--trial", help="ROUND:SLOT of the trial to export (default: the best)")
    e.add_argument("--node", type=int, help="a babysitting run's node to export (default: its head)")
    e.add_argument("--out", default="best.npz", help="the .npz to write (with --format orbax: a new folder)")
    e.add_argument("--format", choices=["npz", "orbax"], default="npz", help="npz: the trial's whole state as "
                   "arrays; orbax: its model's nnx.state as an Orbax checkpoint")  # fmt: skip
    e.set_defaults(func=main)
