"""A study as TensorBoard event files: every trial a run, its learning curves as scalars and its
hyperparameters and final metrics in the HParams plugin's table (written with ``tensorboardX``,
no TensorFlow)."""

from __future__ import annotations

import math
import os

from jaxtune.errors import InputError, MissingDependencyError

__all__ = ["to_tensorboard", "run_name"]


def run_name(trial: dict) -> str:
    """The run (folder) of a trial: ``round-R-slot-S``."""
    return f"round-{trial['round']:03d}-slot-{trial['slot']:04d}"


def _value(v):
    """A hyperparameter as the HParams plugin takes one (a number, string or bool)."""
    return v if isinstance(v, (bool, int, float, str)) else str(v)


def to_tensorboard(result, folder: str | os.PathLike) -> str:
    """Writes ``result`` under ``folder`` (made if missing): a run per trial (:func:`run_name`)
    with each curve point of every metric as a scalar at its step, the final metrics as
    ``final/NAME`` scalars, and the HParams plugin's table (the trial's hyperparameters, its final
    metrics, its status as ``status``). ``tensorboard --logdir FOLDER`` shows it. Returns ``folder``.

    Raises:
      MissingDependencyError: tensorboardX is not installed.
      InputError: ``folder`` cannot be made or written.
    """
    try:
        from tensorboardX import SummaryWriter
        from tensorboardX.summary import hparams
    except ImportError as e:
        raise MissingDependencyError("TensorBoard event files need tensorboardX: pip install "
                                     "'jaxtune[tensorboard]'") from e  # fmt: skip
    folder = os.fspath(folder)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise InputError(f"tensorboard: cannot make the folder {folder!r} ({e.strerror})") from None
    if not os.access(folder, os.W_OK):
        raise InputError(f"tensorboard: the folder {folder!r} is not writable")
    for t in result.trials:
        curve = result.curves.get((t["round"], t["slot"]), [])
        last = max((int(step) for step, _ in curve), default=0)
        final = {f"final/{k}": float(v) for k, v in t["metrics"].items() if v is not None and math.isfinite(v)}
        with SummaryWriter(os.path.join(folder, run_name(t))) as w:
            for step, metrics in curve:
                for name, v in metrics.items():
                    if v is not None and math.isfinite(v):
                        w.add_scalar(name, float(v), int(step))
            for name, v in final.items():
                w.add_scalar(name, v, last)
            params = {k: _value(v) for k, v in t["params"].items()}
            for summary in hparams({**params, "status": t["status"]}, final):
                w.file_writer.add_summary(summary)
    return folder
