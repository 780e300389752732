"""Built-in classification tasks: MNIST-1D (linear, MLP, CNN, GRU) and scikit-learn digits.

Each is a :class:`~jaxtune.train.Trainer` with AdamW (lr, b1 and weight decay traced; b2=0.999,
eps=1e-8 fixed, as Ng recommends) and a default space; selection is on the validation split and
test metrics are recorded alongside, for the report only.
"""

from __future__ import annotations

import optax

from jaxtune._checks import check_int
from jaxtune.errors import InputError, InputTypeError
from jaxtune.space import Float, Masked, Space
from jaxtune.tasks import data as data_lib
from jaxtune.tasks import models
from jaxtune.tasks.base import Task
from jaxtune.train import Trainer

__all__ = ["mnist1d", "digits", "digits_cnn", "adamw", "optimizer", "OPTIMIZERS", "default_space", "MNIST1D_MODELS"]

MNIST1D_MODELS = ("linear", "mlp", "cnn", "gru")


OPTIMIZERS = ("adamw", "sgd")


def adamw(hp) -> optax.GradientTransformation:
    """AdamW from traced ``lr``, ``b1`` and ``wd`` (each optional: 1e-2, 0.9, 0)."""
    return optax.adamw(hp.get("lr", 1e-2), b1=hp.get("b1", 0.9), b2=0.999, eps=1e-8, weight_decay=hp.get("wd", 0.0))


def optimizer(hp) -> optax.GradientTransformation:
    """The built-in tasks' optimizer: ``hp["optimizer"]`` (a static choice, default ``"adamw"``).

    * ``"adamw"``: :func:`adamw` (``lr``, ``b1``, ``wd``; β2 = 0.999 and ε = 1e-8 fixed).
    * ``"sgd"``: SGD with heavy-ball ``momentum`` (default 0.9) and decoupled weight decay ``wd``
      (``lr * wd`` a step, as AdamW decays).

    With a conditional space the branch's own hyperparameters exist only in its trials, e.g.
    ``"momentum": jt.Float(0.5, 0.99, scale="reverse_log", when={"optimizer": "sgd"})``.
    """
    name = hp["optimizer"] if "optimizer" in hp else "adamw"  # not a "default" worth a notice
    if name == "adamw":
        return adamw(hp)
    if name == "sgd":
        return optax.chain(
            optax.trace(decay=hp.get("momentum", 0.9)),
            optax.add_decayed_weights(hp.get("wd", 0.0)),
            optax.scale_by_learning_rate(hp.get("lr", 1e-2)),
        )
    raise InputError(f"optimizer must be one of {list(OPTIMIZERS)}, got {name!r}")


def default_space() -> Space:
    """lr log-uniform on [1e-4, 1e-1]; b1 with log(1 - b1) uniform on [0.8, 0.999]; wd log on [1e-5, 1]."""
    return Space(
        {
            "lr": Float(1e-4, 1e-1, scale="log"),
            "b1": Float(0.8, 0.999, scale="reverse_log"),
            "wd": Float(1e-5, 1.0, scale="log"),  # AdamW decays by lr * wd a step
        }
    )


def _make_model(model: str, hidden: int, features_in: int, length: int):
    if model not in MNIST1D_MODELS:
        raise InputError(f"unknown MNIST-1D model {model!r}; allowed are {', '.join(map(repr, MNIST1D_MODELS))}")
    check_int("hidden (the MLP's width)", hidden)

    def build(hp, rngs):
        width = hp.get("hidden", hidden)  # an int, or jt.Masked for a masked=True width
        depth = hp.get("depth", 2)
        for name, v in (("hidden", width), ("depth", depth)):
            if not isinstance(v, (int, Masked)) or (name == "depth" and not isinstance(v, int)):
                raise InputTypeError(
                    f"{name} changes array shapes: declare it jt.Int(..., static=True)"
                    + (" or jt.Int(..., masked=True)" if name == "hidden" else "")
                    + f", got {v!r}"
                )
        return {
            "linear": lambda: models.Linear(features_in, 10, rngs=rngs),
            "mlp": lambda: models.MLP(features_in, 10, hidden=width, depth=depth, rngs=rngs),
            "cnn": lambda: models.CNN(length, 10, rngs=rngs),
            "gru": lambda: models.GRU(length, 10, rngs=rngs),
        }[model]()

    return build


def mnist1d(
    model: str = "mlp",
    *,
    steps: int = 2000,
    batch_size: int = 128,
    hidden: int = 100,
    eval_every: int | None = None,
    data_path: str | None = None,
    space: Space | None = None,
) -> Task:
    """An MNIST-1D task: train on 3200 sequences, select on 800, report test on 1000.

    Args:
      model: ``"linear"``, ``"mlp"`` (40-hidden-hidden-10), ``"cnn"`` or ``"gru"`` (paper architectures).
      steps: optimizer steps per trial.
      batch_size: examples per step (the largest, when the space tunes ``batch_size``).
      hidden: MLP width unless the space tunes ``hidden``.
      eval_every: record validation curves every this many steps.
      data_path: optional .npz instead of generating the data (see :func:`jaxtune.tasks.data.mnist1d`).
      space: search space (default: :func:`default_space`).
    """
    splits = data_lib.mnist1d(path=data_path)
    length = splits.train[0].shape[-1]
    return _task(
        f"mnist1d_{model}", _make_model(model, hidden, length, length), splits, steps, batch_size, eval_every, space
    )


def _task(name, model, splits, steps, batch_size, eval_every, space, **trainer_options) -> Task:
    """A classification task: AdamW, selection on val accuracy, val and test reported."""
    trainer = Trainer(
        **trainer_options,
        model=model,
        optimizer=optimizer,
        data=splits.train,
        eval_data={"val": splits.val, "test": splits.test},
        steps=steps,
        batch_size=batch_size,
        eval_every=eval_every,
    )
    return Task(
        name,
        trainer,
        space or default_space(),
        "val_accuracy",
        "max",
        report=("val_accuracy", "val_loss", "test_accuracy", "test_loss"),
    )


def digits(
    *,
    steps: int = 1000,
    batch_size: int = 64,
    hidden: int = 64,
    eval_every: int | None = None,
    space: Space | None = None,
) -> Task:
    """scikit-learn digits with an MLP 64-hidden-hidden-10."""
    return _task(
        "digits_mlp", _make_model("mlp", hidden, 64, 64), data_lib.digits(), steps, batch_size, eval_every, space
    )


def digits_cnn(
    *,
    steps: int = 500,
    batch_size: int = 32,
    conv: str = "patches",
    eval_every: int | None = None,
    space: Space | None = None,
) -> Task:
    """scikit-learn digits with the Flax NNX tutorial's CNN (:class:`~jaxtune.tasks.models.TutorialCNN`).

    Args:
      steps: optimizer steps per trial.
      batch_size: examples per step (the tutorial's 32).
      conv: ``"patches"`` (the Trainer runs the ``nnx.Conv`` layers as patches @ kernel, its
        default) or ``"nnx"`` (as written).
      eval_every: record validation curves every this many steps.
      space: search space (default: :func:`default_space`).
    """
    if conv not in ("patches", "nnx"):
        raise InputError(f"digits_cnn conv must be 'patches' or 'nnx', got {conv!r}")

    def build(hp, rngs):
        return models.TutorialCNN(8, 10, rngs=rngs)

    splits = data_lib.digits()
    return _task("digits_cnn", build, splits, steps, batch_size, eval_every, space, patch_convs=conv == "patches")
