"""Attention tasks: a small decoder-only transformer (Flax NNX) on generated sequence data.

* ``modular_arithmetic``: ``(a op b) mod p`` from the tokens ``a b =``, the task on which grokking
  was found (Power et al. 2022) and explained (Nanda et al. 2023): a one-layer transformer
  memorises its training pairs early and generalises to the held-out pairs much later, in a band
  of weight decay and learning rate. Every pair is in exactly one split.
* ``associative_recall``: multi-query associative recall (MQAR; Arora et al. 2023, "Zoology"):
  a sequence of key-value pairs, then keys again; the model must emit each queried key's value,
  the in-context recall that separates attention from its cheap substitutes.

Both train with AdamW (learning rate, β₂, weight decay traced) under the Trainer's warmup and
schedule; their default spaces tune the four that interact in transformers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxtune._checks import check_int
from jaxtune.errors import InputError
from jaxtune.layers import MaskedLinear
from jaxtune.space import Float, Masked, Space
from jaxtune.tasks.base import Task
from jaxtune.train import Trainer, accuracy

__all__ = [
    "Transformer",
    "OPERATIONS",
    "modular_data",
    "modular_arithmetic",
    "recall_data",
    "associative_recall",
    "transformer_adamw",
    "default_space",
]

OPERATIONS = ("add", "subtract", "multiply", "divide")
_ModuleList = getattr(nnx, "List", list)


class Block(nnx.Module):
    """One pre-residual transformer block: causal multi-head self-attention, then a ReLU MLP.

    ``d_mlp`` may be :class:`~jaxtune.space.Masked` (its layers are then
    :class:`~jaxtune.layers.MaskedLinear`, so MLP widths in one power-of-two bucket share a program).
    Attention is written as einsums over ``[batch, position, head, feature]``: under ``vmap`` over
    trials each is one batched matmul (``dot_general`` with the trial as a batch dimension).
    """

    def __init__(self, d_model: int, heads: int, d_mlp: int | Masked, norm: bool, *, rngs: nnx.Rngs):
        self.heads = heads
        self.qkv = nnx.Linear(d_model, 3 * d_model, use_bias=False, rngs=rngs)
        self.proj = nnx.Linear(d_model, d_model, use_bias=False, rngs=rngs)
        dense = MaskedLinear if isinstance(d_mlp, Masked) else nnx.Linear
        self.up = dense(d_model, d_mlp, rngs=rngs)
        self.down = dense(d_mlp, d_model, rngs=rngs)
        self.norm1 = nnx.LayerNorm(d_model, rngs=rngs) if norm else None
        self.norm2 = nnx.LayerNorm(d_model, rngs=rngs) if norm else None

    def attend(self, x):
        """Causal self-attention of ``x: [batch, position, d_model]``."""
        *lead, t, d = x.shape
        q, k, v = jnp.split(self.qkv(x).reshape(*lead, t, 3 * self.heads, d // self.heads), 3, axis=-2)
        scores = jnp.einsum("...qhd,...khd->...hqk", q, k) / jnp.sqrt(jnp.float32(d // self.heads))
        causal = jnp.tril(jnp.ones((t, t), bool)).reshape((1,) * (scores.ndim - 2) + (t, t))
        weights = jax.nn.softmax(jnp.where(causal, scores, -1e9), axis=-1)
        return self.proj(jnp.einsum("...hqk,...khd->...qhd", weights, v).reshape(*lead, t, d))

    def __call__(self, x):
        x = x + self.attend(self.norm1(x) if self.norm1 is not None else x)
        h = self.norm2(x) if self.norm2 is not None else x
        return x + self.down(jax.nn.relu(self.up(h)))


class Transformer(nnx.Module):
    """A decoder-only transformer: token and learned position embeddings, ``layers`` blocks, unembedding.

    ``norm=False`` (no LayerNorm) is Nanda et al.'s grokking model; ``last_only`` returns the
    last position's logits (``[batch, classes]``, one answer per sequence) instead of every
    position's (``[batch, length, classes]``).
    """

    def __init__(
        self,
        vocab: int,
        length: int,
        classes: int,
        *,
        d_model: int = 128,
        heads: int = 4,
        d_mlp: int | Masked = 512,
        layers: int = 1,
        norm: bool = False,
        last_only: bool = False,
        rngs: nnx.Rngs,
    ):
        if d_model % heads:
            raise InputError(f"d_model={d_model} must be a multiple of heads={heads}")
        self.embed = nnx.Embed(vocab, d_model, rngs=rngs)
        self.position = nnx.Param(jax.random.normal(rngs.params(), (length, d_model)) / jnp.sqrt(d_model))
        self.blocks = _ModuleList([Block(d_model, heads, d_mlp, norm, rngs=rngs) for _ in range(layers)])
        self.norm = nnx.LayerNorm(d_model, rngs=rngs) if norm else None
        self.unembed = nnx.Linear(d_model, classes, use_bias=False, rngs=rngs)
        self.last_only = last_only

    def __call__(self, tokens):
        x = self.embed(tokens)
        x = x + self.position[...].reshape((1,) * (x.ndim - 2) + self.position.shape)
        for block in self.blocks:
            x = block(x)
        if self.norm is not None:
            x = self.norm(x)
        return self.unembed(x[..., -1, :] if self.last_only else x)


def transformer_adamw(hp) -> optax.GradientTransformation:
    """AdamW from traced ``lr`` (default 1e-3), ``b1`` (0.9), ``b2`` (0.98) and ``wd`` (1.0): the
    grokking papers' optimizer; ε = 1e-8."""
    return optax.adamw(
        hp.get("lr", 1e-3), b1=hp.get("b1", 0.9), b2=hp.get("b2", 0.98), eps=1e-8, weight_decay=hp.get("wd", 1.0)
    )


def default_space() -> Space:
    """lr log on [1e-4, 1e-2]; wd log on [1e-3, 10]; β₂ with log(1 − β₂) uniform on [0.9, 0.999];
    warmup (a fraction of the steps) on [0, 0.1]."""
    return Space(
        {
            "lr": Float(1e-4, 1e-2, scale="log"),
            "wd": Float(1e-3, 10.0, scale="log"),
            "b2": Float(0.9, 0.999, scale="reverse_log"),
            "warmup": Float(0.0, 0.1),
        }
    )


def _check_sizes(task: str, **sizes) -> None:
    """Each of ``sizes`` an integer >= 1, else an error naming it; and heads dividing d_model."""
    for name, v in sizes.items():
        check_int(f"{task}: {name}", v)
    if sizes["d_model"] % sizes["heads"]:
        raise InputError(f"{task}: d_model={sizes['d_model']} must be a multiple of heads={sizes['heads']}")


def _is_prime(p: int) -> bool:
    return p >= 2 and all(p % d for d in range(2, int(p**0.5) + 1))


def modular_data(p: int, operation: str = "add", train_fraction: float = 0.3, seed: int = 0):
    """Every pair ``(a, b)`` as the tokens ``[a, b, p]`` (``p`` is "=") with label ``(a op b) mod p``,
    split at random (``seed``) into ``(train, val)``: each pair in exactly one split.

    ``divide`` is ``a · b⁻¹ mod p`` over ``b ≠ 0`` and needs a prime ``p``.
    """
    check_int("modular_arithmetic: p", p, 2, 10_000)
    if operation not in OPERATIONS:
        raise InputError(f"modular_arithmetic: operation must be one of {list(OPERATIONS)}, got {operation!r}")
    if operation == "divide" and not _is_prime(p):
        raise InputError(f"modular_arithmetic: divide needs a prime p (every b != 0 invertible), got p={p}")
    if not isinstance(train_fraction, (int, float)) or not 0 < train_fraction < 1:
        raise InputError(f"modular_arithmetic: train_fraction must be in (0, 1), got {train_fraction!r}")
    first_b = 1 if operation == "divide" else 0
    a, b = (g.ravel() for g in np.meshgrid(np.arange(p), np.arange(first_b, p), indexing="ij"))
    c = {
        "add": lambda: (a + b) % p,
        "subtract": lambda: (a - b) % p,
        "multiply": lambda: (a * b) % p,
        "divide": lambda: (a * np.asarray([pow(int(v), p - 2, p) for v in b])) % p,
    }[operation]()
    x = np.stack([a, b, np.full_like(a, p)], -1).astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(x))
    n = int(round(train_fraction * len(x)))
    if not 0 < n < len(x):
        raise InputError(f"modular_arithmetic: train_fraction={train_fraction} leaves a split empty ({len(x)} pairs)")
    take = lambda idx: (x[idx], c[idx].astype(np.int32))  # noqa: E731
    return take(order[:n]), take(order[n:])


def modular_arithmetic(
    *,
    p: int = 113,
    operation: str = "add",
    train_fraction: float = 0.3,
    layers: int = 1,
    heads: int = 4,
    d_model: int = 128,
    d_mlp: int = 512,
    steps: int = 10_000,
    eval_every: int = 100,
    threshold: float = 0.95,
    data_seed: int = 0,
    space: Space | None = None,
) -> Task:
    """Grokking's task: ``(a op b) mod p`` with a one-layer transformer, full-batch AdamW.

    The defaults are Nanda et al.'s (p = 113, 30% of pairs to train on, 4 heads, d_model 128,
    d_mlp 512, no LayerNorm) for an accelerator; ``p=23, d_model=32, d_mlp=128`` runs on a CPU.
    Metrics: ``train_`` and ``val_accuracy``/``_loss`` (the training pairs are evaluated too) and,
    from the learning curve, ``steps_to_memorise`` (train accuracy ≥ ``threshold``) and
    ``steps_to_generalise`` (val accuracy ≥ ``threshold``): ``steps + 1`` for a trial that never
    does. A ``d_mlp`` hyperparameter (``masked=True``) tunes the MLP width.
    """
    _check_sizes("modular_arithmetic", layers=layers, heads=heads, d_model=d_model, d_mlp=d_mlp, eval_every=eval_every)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise InputError(f"modular_arithmetic: threshold (an accuracy) must be in (0, 1], got {threshold!r}")
    (train, val) = modular_data(p, operation, train_fraction, data_seed)

    def build(hp, rngs):
        width = hp.get("d_mlp", d_mlp)
        return Transformer(p + 1, 3, p, d_model=d_model, heads=heads, d_mlp=width, layers=layers, last_only=True,
                           rngs=rngs)  # fmt: skip

    trainer = Trainer(
        model=build,
        optimizer=transformer_adamw,
        data=train,
        eval_data={"train": train, "val": val},
        steps=steps,
        eval_every=eval_every,
        schedule="constant",
        full_batch=True,
        milestones={
            "steps_to_memorise": ("train_accuracy", threshold),
            "steps_to_generalise": ("val_accuracy", threshold),
        },
    )
    report = ("val_accuracy", "train_accuracy", "steps_to_generalise", "steps_to_memorise")
    return Task("modular_arithmetic", trainer, space or default_space(), "val_accuracy", "max", report=report)


def recall_data(examples: int, vocab: int, pairs: int, queries: int, seed: int):
    """MQAR sequences: ``pairs`` key-value pairs (keys distinct, from the vocabulary's first half,
    values from its second), then ``queries`` of those keys; the label after each queried key is its
    value, ``-1`` (not scored) elsewhere. ``(tokens, labels)``, both ``int32[examples, 2·pairs + queries]``."""
    rng = np.random.default_rng(seed)
    half = vocab // 2
    keys = np.argsort(rng.random((examples, half)), axis=1)[:, :pairs]
    values = rng.integers(half, vocab, (examples, pairs))
    asked = np.argsort(rng.random((examples, pairs)), axis=1)[:, :queries]
    rows = np.arange(examples)[:, None]
    context = np.stack([keys, values], -1).reshape(examples, 2 * pairs)
    tokens = np.concatenate([context, keys[rows, asked]], 1).astype(np.int32)
    labels = np.full(tokens.shape, -1, np.int32)
    labels[:, 2 * pairs :] = values[rows, asked]
    return tokens, labels


def _scored_loss(logits, labels):
    """Mean cross-entropy over the scored positions (label ≥ 0) of each sequence."""
    scored = labels >= 0
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(scored, labels, 0))
    return jnp.sum(jnp.where(scored, ce, 0.0), -1) / jnp.maximum(jnp.sum(scored, -1), 1)


def _scored_accuracy(logits, labels):
    """Fraction of a sequence's queries answered with the right value."""
    scored = labels >= 0
    hit = jnp.where(scored, accuracy(logits, labels), 0.0)
    return jnp.sum(hit, -1) / jnp.maximum(jnp.sum(scored, -1), 1)


def associative_recall(
    *,
    vocab: int = 64,
    pairs: int = 8,
    queries: int = 8,
    examples: int = 4096,
    layers: int = 2,
    heads: int = 2,
    d_model: int = 64,
    d_mlp: int = 128,
    steps: int = 500,
    batch_size: int = 64,
    eval_every: int | None = None,
    space: Space | None = None,
) -> Task:
    """Multi-query associative recall with a two-layer transformer (LayerNorm), AdamW with warmup
    and cosine decay. ``examples`` training sequences and a quarter as many for validation and for
    test, each drawn afresh (the key-value bindings differ in every sequence: recall, not memory).

    Metrics: ``val_accuracy`` (fraction of queries answered), ``val_loss``, and the test split's.
    The default budget is where learning rates part: checked on a CPU, lr 1e-3 answered 67% of
    queries after 500 steps and lr 3e-3 99.5% (both 100% by 1,000).
    """
    _check_sizes("associative_recall", vocab=vocab, pairs=pairs, queries=queries, examples=examples, layers=layers,
                 heads=heads, d_model=d_model, d_mlp=d_mlp)  # fmt: skip
    if pairs > vocab // 2 or queries > pairs:
        raise InputError(f"associative_recall: need queries <= pairs <= vocab / 2, got queries={queries}, "
                         f"pairs={pairs}, vocab={vocab}")  # fmt: skip
    split = {n: recall_data(k, vocab, pairs, queries, seed) for n, k, seed in
             (("train", examples, 0), ("val", examples // 4, 1), ("test", examples // 4, 2))}  # fmt: skip

    def build(hp, rngs):
        width = hp.get("d_mlp", d_mlp)
        return Transformer(vocab, 2 * pairs + queries, vocab, d_model=d_model, heads=heads, d_mlp=width,
                           layers=layers, norm=True, rngs=rngs)  # fmt: skip

    trainer = Trainer(
        model=build,
        optimizer=transformer_adamw,
        data=split["train"],
        eval_data={"val": split["val"], "test": split["test"]},
        loss=_scored_loss,
        metrics={"accuracy": _scored_accuracy},
        steps=steps,
        batch_size=batch_size,
        eval_every=eval_every,
        schedule="cosine",
    )
    report = ("val_accuracy", "val_loss", "test_accuracy")
    return Task("associative_recall", trainer, space or default_space(), "val_accuracy", "max", report=report)
