"""Which hyperparameters mattered: known first-order indices, determinism, directions, studies."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxtune as jt
from jaxtune.analysis import importance as priorities  # (the module; jt.importance is its function)
from jaxtune.errors import InputError


def ishigami(n, seed=1):
    u = np.random.default_rng(seed).random((n, 3))
    x = (2 * u - 1) * np.pi
    return u, np.sin(x[:, 0]) + 7 * np.sin(x[:, 1]) ** 2 + 0.1 * x[:, 2] ** 4 * np.sin(x[:, 0])


def test_ishigami_first_order_indices_are_recovered_and_repeatable():
    u, y = ishigami(10_000)
    value, low, high, _ = priorities.first_order(u, y)
    # Known first-order Sobol indices: 0.314, 0.442, 0 (x3 acts only through its interaction).
    np.testing.assert_allclose(value, [0.314, 0.442, 0.0], atol=0.02)
    assert (low <= value).all() and (value <= high).all() and (high - low < 0.05).all()
    again = priorities.first_order(u, y)
    for a, b in zip((value, low, high), again[:3]):
        np.testing.assert_array_equal(a, b)  # same data, same numbers (a seeded bootstrap)


def test_one_parameter_that_matters_among_five_and_its_direction():
    rng = np.random.default_rng(0)
    u = rng.random((2000, 5))
    inside = (u[:, 2] - 0.4) ** 2 + 0.01 * rng.standard_normal(2000)  # optimum inside the range
    value, low, high, best = priorities.first_order(u, inside)
    assert value[2] > 0.9 and np.delete(high, 2).max() < 0.03
    assert abs(best[2] - 0.4) < 0.05
    assert priorities._direction(u[:, 2], inside) == "best inside"
    # A rank correlation sees almost nothing of that optimum; a monotone effect gets its sign.
    assert priorities._direction(u[:, 0], -u[:, 0] + 0.01 * rng.standard_normal(2000)) == "higher is better"
    assert priorities._direction(u[:, 0], u[:, 0]) == "lower is better"


def test_a_trend_whose_best_bin_is_inside_has_no_clear_direction():
    """Ranks fall with u ("higher is better") but the best bin is the middle one, not clearly so:
    "higher is better; best near" a middle value would contradict itself."""
    u = np.linspace(0, 1, 36)
    swing = np.tile([-1.0, 1.0], 6)
    y = np.concatenate([1 + 0.1 * swing, -0.5 + 3 * swing, 0.1 * swing])  # 3 bins of 12
    assert priorities._direction(u, y) == "no clear direction"


def test_bad_inputs_are_refused():
    with pytest.raises(InputError, match="need u"):
        priorities.first_order(np.zeros((4, 2)), np.zeros(5))
    with pytest.raises(InputError, match="finite"):
        priorities.first_order(np.zeros((4, 1)), np.array([0, 1, np.inf, 2.0]))


def objective(hp, key):
    loss = (jnp.log10(hp["lr"]) + 2) ** 2 + 0.01 * hp["other"] + 0.01 * jax.random.normal(key)
    return {"loss": jnp.where(hp["lr"] > 0.5, jnp.nan, loss)}  # large learning rates diverge


SPACE = jt.Space({"lr": jt.Float(1e-4, 1.0, scale="log"), "other": jt.Float(0.0, 1.0)})


def test_importance_of_a_study_uses_the_uniform_rounds_and_counts_diverged_trials():
    result = jt.tune(objective, SPACE, "coarse_to_fine", trials=64, rounds=3, metric="loss", progress=False)
    assert result.num_diverged > 0
    imps = jt.importance(result)
    assert [i.name for i in imps] == ["lr", "other"] and imps[0].value > 0.6 > 0.1 > imps[1].value
    assert not imps[0].local
    assert imps[0].direction == "best inside" and 1e-3 < imps[0].best_at < 1e-1  # optimum 1e-2; bins a decade wide
    assert imps == jt.importance(result)  # deterministic
    local = jt.importance(result, rounds="all")
    assert all(i.local for i in local)  # zoomed rounds describe a region, and say so
    raw = jt.importance(result, transform="none")  # diverged trials dropped instead of ranked worst
    assert raw[0].name == "lr"
    with pytest.raises(InputError, match="unknown method"):
        jt.importance(result, method="shap")
    with pytest.raises(InputError, match="need at least 8"):
        jt.importance(jt.tune(objective, SPACE, "coarse_to_fine", trials=4, rounds=2, metric="loss", progress=False))
    assert "which hyperparameters mattered" in jt.report.summary(result)


@pytest.mark.parametrize("method", ["fanova", "ped_anova"])
def test_optunas_evaluators_agree_on_what_mattered(method):
    pytest.importorskip("optuna")
    result = jt.tune(objective, SPACE, "random", trials=48, metric="loss", progress=False)
    imps = jt.importance(result, method=method)
    assert imps[0].name == "lr" and imps[0].value > imps[1].value
    if method == "ped_anova":  # (fANOVA's forests take seconds: once is enough here)
        assert imps == jt.importance(result, method=method)


def test_a_parameter_of_no_importance_gets_no_direction():
    imp = priorities.Importance("wd", 0.0, 0.0, 0.004, "higher is better", 0.1, False)
    assert priorities.direction_shown(imp) == "no clear effect" and "no clear effect" in priorities.table([imp])
    assert priorities.direction_shown(dataclasses.replace(imp, value=0.3)) == "higher is better"
