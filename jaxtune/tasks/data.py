"""Built-in data sets, made locally: nothing is downloaded at run time.

* MNIST-1D (Greydanus & Kobak): ``mnist1d.data.make_dataset`` generates 4000 training and 1000
  test sequences of length 40 in about a second. (``get_dataset`` would download: never used.)
* Digits: scikit-learn's ``load_digits``, 1797 real 8x8 images shipped with the package.

Validation splits are carved from the training data with a fixed seed; test data is kept apart.
"""

from __future__ import annotations

import functools
import os
from typing import NamedTuple

import numpy as np

from jaxtune.errors import InputError, MissingDependencyError, MissingFileError

__all__ = ["Splits", "mnist1d", "digits", "save_npz", "MNIST1D_ENV", "DIGITS_ENV"]

# Points to an .npz with x, y, x_test, y_test to use instead of generating MNIST-1D (for
# machines without the mnist1d package, e.g. a GPU image).
MNIST1D_ENV = "JAXTUNE_MNIST1D_NPZ"
# Likewise scikit-learn's digits: an .npz with data, target (as load_digits returns them).
DIGITS_ENV = "JAXTUNE_DIGITS_NPZ"


class Splits(NamedTuple):
    """Train/validation/test arrays: x float32, y int32."""

    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]


def _split(x, y, xt, yt, val_fraction: float, seed: int) -> Splits:
    if not 0 < val_fraction < 1:
        raise InputError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    x, xt = np.asarray(x, np.float32), np.asarray(xt, np.float32)
    y, yt = np.asarray(y, np.int32), np.asarray(yt, np.int32)
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = int(round(val_fraction * len(x)))
    val, train = order[:n_val], order[n_val:]
    return Splits((x[train], y[train]), (x[val], y[val]), (xt, yt))


@functools.lru_cache(maxsize=4)
def _mnist1d_raw(path: str | None):
    if path:
        if not os.path.exists(path):
            raise MissingFileError(f"MNIST-1D file {path!r} (from {MNIST1D_ENV} or data_path) does not exist")
        d = np.load(path)
        return d["x"], d["y"], d["x_test"], d["y_test"]
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as e:
        raise MissingDependencyError("MNIST-1D needs the mnist1d package: pip install 'jaxtune[tasks]'") from e
    d = make_dataset(get_dataset_args())
    return d["x"], d["y"], d["x_test"], d["y_test"]


def mnist1d(val_fraction: float = 0.2, seed: int = 0, path: str | None = None) -> Splits:
    """MNIST-1D with a validation split: 3200/800/1000 sequences of length 40, 10 classes.

    Args:
      val_fraction: fraction of the 4000 training sequences held out for validation.
      seed: seed of the train/validation split.
      path: optional .npz (x, y, x_test, y_test) to load instead of generating; defaults to the
        ``JAXTUNE_MNIST1D_NPZ`` environment variable.
    """
    return _split(*_mnist1d_raw(path or os.environ.get(MNIST1D_ENV) or None), val_fraction, seed)


def digits(val_fraction: float = 0.2, seed: int = 0, path: str | None = None) -> Splits:
    """scikit-learn's 8x8 digits (pixels scaled to [0, 1]): half for test, the rest train/val.

    Args:
      val_fraction: fraction of the training half held out for validation.
      seed: seed of the train/validation split.
      path: optional .npz (``data``, ``target`` as ``load_digits`` returns them) for machines
        without scikit-learn; defaults to the ``JAXTUNE_DIGITS_NPZ`` environment variable.
    """
    path = path or os.environ.get(DIGITS_ENV) or None
    if path is not None:
        with np.load(path) as f:
            data, target = f["data"], f["target"]
    else:
        try:
            from sklearn.datasets import load_digits
        except ImportError as e:
            raise MissingDependencyError("the digits task needs scikit-learn: pip install 'jaxtune[tasks]'") from e
        d = load_digits()
        data, target = d.data, d.target
    x, y = data / 16.0, target
    order = np.random.default_rng(1234).permutation(len(x))
    half = len(x) // 2
    tr, te = order[:half], order[half:]
    return _split(x[tr], y[tr], x[te], y[te], val_fraction, seed)


def save_npz(path: str) -> None:
    """Writes MNIST-1D (x, y, x_test, y_test) to ``path`` for machines without mnist1d."""
    x, y, xt, yt = _mnist1d_raw(None)
    np.savez_compressed(path, x=x, y=y, x_test=xt, y_test=yt)
