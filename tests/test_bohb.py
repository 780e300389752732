"""BOHB: Hyperband whose brackets draw from a kernel density model of the best budget so far."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import SPACE, make_trainer

import jaxtune as jt
from jaxtune.strategies.bohb import kde_proposals
from jaxtune.strategies.halving import modelled_level

BUDGET = jt.Space({"steps": jt.Int(4, 36, scale="log", static=True), "lr": SPACE.params["lr"],
                   "b1": SPACE.params["b1"]})  # fmt: skip
TARGET = np.asarray([0.2, 0.7])


def test_proposals_come_from_where_the_good_observations_are():
    """Without the random fraction every proposal is a draw from the good density chosen by l/g:
    they sit around the best observations; with fewer than d + 3 observations all stay random."""
    x = jax.random.uniform(jax.random.key(0), (60, 2))
    score = jnp.sum((x - TARGET[None, :]) ** 2, axis=1).at[3].set(jnp.inf)  # a diverged one among them
    random_u = np.asarray(jax.random.uniform(jax.random.key(1), (40, 2)))
    args = (0.15, 0.0, 64, 3.0, 1e-3)
    out = np.asarray(kde_proposals(jax.random.key(2), random_u, x, score, jnp.ones(60, bool), *args))
    assert out.min() >= 0 and out.max() <= 1
    assert np.median(np.linalg.norm(out - TARGET, axis=1)) < 0.25 < np.median(np.linalg.norm(random_u - TARGET, axis=1))
    few = jnp.arange(60) < 4  # d + 3 = 5 needed
    np.testing.assert_array_equal(kde_proposals(jax.random.key(2), random_u, x, score, few, *args), random_u)
    half = np.asarray(
        kde_proposals(jax.random.key(2), random_u, x, score, jnp.ones(60, bool), 0.15, 0.5, 64, 3.0, 1e-3)
    )
    kept = np.all(half == np.asarray(random_u), axis=1).mean()
    assert 0.25 < kept < 0.75  # about random_fraction of them stay random


def test_the_modelled_budget_is_the_largest_with_enough_observations():
    level = jnp.asarray([0] * 9 + [1] * 5 + [2] * 2)
    assert int(modelled_level(level, jnp.ones(16, bool), 3, 2)) == 1
    assert int(modelled_level(level, jnp.arange(16) < 4, 3, 2)) == -1


def _brackets(result):
    by_round = {}
    for t in result.trials:
        by_round.setdefault(t["round"], {})[t["slot"]] = t["params"]["lr"]
    return by_round


@pytest.mark.parametrize("objective", ["stateful", "function"])
def test_bohb_starts_as_hyperband_then_draws_its_brackets_from_the_model(objective):
    """Its first bracket is Hyperband's (nothing to model yet); the next one's modelled
    configurations are near the best of the first bracket's rungs, where Hyperband's are uniform.
    Survivors continue (a stateful trainer: the model reads the stored rungs) or retrain (a plain
    function: the model lives in the strategy's state)."""
    if objective == "stateful":
        fn, kw = make_trainer(steps=36), dict(trials=9, rounds=4)
    else:

        def fn(hp, key):
            return {"val_loss": (jnp.log10(hp["lr"]) + 1.6) ** 2 + (1 - hp["b1"]) + 1.0 / hp["steps"]}

        kw = dict(trials=9, rounds=4)
    hb = jt.tune(fn, BUDGET, "hyperband", metric="val_loss", progress=False, seed=3, **kw)
    bohb = jt.tune(
        fn, BUDGET, "bohb", metric="val_loss", progress=False, seed=3, strategy_options={"random_fraction": 0.0}, **kw
    )
    a, b = _brackets(hb), _brackets(bohb)
    assert a[0] == b[0]  # the first bracket: random, the same draws
    second = 3  # Hyperband's second bracket starts at round 3 (the first has 3 rungs)
    best = np.log10(min(hb.trials, key=lambda t: t["value"] if t["round"] == 0 else np.inf)["params"]["lr"])
    modelled = np.abs(np.log10(list(b[second].values())) - best)
    uniform = np.abs(np.log10(list(a[second].values())) - best)
    assert a[second] != b[second] and np.median(modelled) < np.median(uniform), (modelled, uniform)
    again = jt.tune(
        fn, BUDGET, "bohb", metric="val_loss", progress=False, seed=3, strategy_options={"random_fraction": 0.0}, **kw
    )
    assert _brackets(again) == b  # same seed, same brackets


@pytest.mark.parametrize(
    "options, word",
    [
        ({"top_fraction": 0.9}, "top_fraction"),
        ({"random_fraction": 2}, "random_fraction"),
        ({"bandwidth_factor": 0.5}, "bandwidth_factor"),
        ({"samples": 0}, "samples"),
    ],
)
def test_bad_bohb_options_are_refused_by_name(options, word):
    with pytest.raises(jt.InputError, match=word):
        jt.tune(make_trainer(steps=36), BUDGET, "bohb", trials=9, strategy_options=options, progress=False)
