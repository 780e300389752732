"""Conditional hyperparameters: a parameter that exists only in some branches of a static choice."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tolerances import F32

import jaxtune as jt
from jaxtune.errors import InputError
from jaxtune.space.hyperparameters import MissingHyperparameterError

SPACE = jt.Space(
    {
        "opt": jt.Choice(["sgd", "adam"]),
        "lr": jt.Float(1e-3, 1.0, scale="log"),
        "momentum": jt.Float(0.5, 0.99, scale="reverse_log", when={"opt": "sgd"}),
        "b2": jt.Float(0.9, 0.9999, scale="reverse_log", when={"opt": "adam"}),
    }
)


def branchy(hp, key):
    """SGD's best is near lr=0.1, momentum=0.9; Adam's is 0.5 worse at best."""
    if hp["opt"] == "sgd":
        assert set(hp) == {"opt", "lr", "momentum"}, sorted(hp)
        return (jnp.log10(hp["lr"]) + 1) ** 2 + 10 * (hp["momentum"] - 0.9) ** 2
    assert set(hp) == {"opt", "lr", "b2"}, sorted(hp)
    return (jnp.log10(hp["lr"]) + 2) ** 2 + 0.5 + jnp.abs(hp["b2"] - 0.99)


def test_inactive_parameters_are_left_out_of_the_trial_values(key):
    rows = SPACE.to_python(SPACE.sample(key, 64))
    for row in rows:
        expected = {"opt", "lr", "momentum"} if row["opt"] == "sgd" else {"opt", "lr", "b2"}
        assert set(row) == expected
    assert {row["opt"] for row in rows} == {"sgd", "adam"}


def test_active_unit_agrees_with_active_on_python_values(key):
    space = jt.Space(
        {
            "kind": jt.Choice(["a", "b", "c"]),
            "depth": jt.Int(1, 3, static=True, when={"kind": ["a", "b"]}),
            "x": jt.Float(0, 1, when={"kind": "a", "depth": [2, 3]}),  # nested: needs depth active
            "y": jt.Float(0, 1),
        }
    )
    u = jax.random.uniform(key, (500, space.dim))
    on = np.asarray(space.active_unit(u))
    rows = space.to_python(space.from_unit(u))
    for row, got in zip(rows, on):
        assert list(got) == [n in row for n in space.names]
    assert on[:, 2].any() and not on[:, 2].all()  # both outcomes occur
    assert jax.jit(space.active_unit)(u).shape == (500, 4)


def test_grid_has_no_points_that_differ_only_where_inactive():
    grid = SPACE.grid_unit(3)
    # 2 optimizers x 3 learning rates x 3 values of the branch's own parameter (not 3 x 3 of both).
    assert grid.shape == (18, 4)
    rows = SPACE.to_python(SPACE.from_unit(grid))
    assert len({tuple(sorted(r.items())) for r in rows}) == 18


def test_description_round_trips_and_is_unchanged_for_unconditional_spaces():
    again = jt.Space.from_description(SPACE.describe())
    assert again.describe() == SPACE.describe()
    assert again.params["momentum"].when == (("opt", ("sgd",)),)
    plain = jt.Space({"lr": jt.Float(1e-3, 1.0, scale="log")})
    assert "when" not in plain.describe()["lr"]


@pytest.mark.parametrize(
    "params, message",
    [
        ({"x": jt.Float(0, 1, when={"opt": "sgd"}), "opt": jt.Choice(["sgd"])}, "defined after it"),
        ({"x": jt.Float(0, 1, when={"nope": "sgd"})}, "not in the space"),
        ({"opt": jt.Choice([1, 2]), "x": jt.Float(0, 1, when={"opt": 1})}, "must be a static Choice or Int"),
        ({"opt": jt.Float(0, 1, static=True), "x": jt.Float(0, 1, when={"opt": 1})}, "static Choice or Int"),
        ({"opt": jt.Choice(["sgd", "adam"]), "x": jt.Float(0, 1, when={"opt": "rmsprop"})}, "not 'rmsprop'"),
        ({"d": jt.Int(1, 3, static=True), "x": jt.Float(0, 1, when={"d": 4})}, "integers in [1, 3]"),
    ],
)
def test_bad_conditions_are_refused_with_what_is_allowed(params, message):
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        jt.Space(params)


def test_bad_when_values_are_refused():
    with pytest.raises(jt.errors.InputTypeError, match="when must be a non-empty dict"):
        jt.Float(0, 1, when="opt=sgd")
    with pytest.raises(InputError, match="at least one value"):
        jt.Float(0, 1, when={"opt": []})


def test_trials_receive_and_store_only_their_branch(tmp_path):
    db = str(tmp_path / "c.db")
    result = jt.tune(branchy, SPACE, "random", trials=32, rounds=2, seed=1, storage=db, progress=False)
    loaded = jt.Result.load(db)
    for trials in (result.trials, loaded.trials):
        for t in trials:
            branch = "momentum" if t["params"]["opt"] == "sgd" else "b2"
            other = "b2" if branch == "momentum" else "momentum"
            assert branch in t["params"] and other not in t["params"]
    assert loaded.param_names == ["opt", "lr", "momentum", "b2"]
    rows = {(r["round"], r["slot"]): r for r in loaded.rows()}
    assert all(("b2" in rows[(t["round"], t["slot"])]) == (t["params"]["opt"] == "adam") for t in loaded.trials)
    # Same seed, same trials; a rerun resumes without running anything new.
    again = jt.tune(branchy, SPACE, "random", trials=32, rounds=2, seed=1, storage=db, progress=False)
    assert [t["params"] for t in again.trials] == [t["params"] for t in result.trials]


def test_reading_an_inactive_parameter_says_which_branch_it_belongs_to():
    def wrong(hp, key):
        return hp["lr"] * hp["momentum"]  # momentum exists only for sgd

    with pytest.raises(
        MissingHyperparameterError, match=r"'momentum', which is inactive in this trial.*opt in \['sgd'\]"
    ):
        jt.tune(wrong, SPACE, "random", trials=8, seed=3, progress=False)

    def with_default(hp, key):
        # Allowed: a default where it is absent.
        return hp["lr"] * hp.get("momentum", 0.0) + (hp["opt"] == "adam") * hp.get("b2", 0.0)

    result = jt.tune(with_default, SPACE, "random", trials=8, seed=3, progress=False)
    assert len(result.trials) == 8


def test_coarse_to_fine_zooms_a_conditional_coordinate_only_on_trials_where_it_is_active():
    strategy = jt.strategies.make_strategy("coarse_to_fine", SPACE, 8)
    state = strategy.init(jax.random.key(0))
    opt_sgd, opt_adam = 0.25, 0.75  # unit coordinates of the two choices
    u = np.full((8, 4), 0.5, np.float32)
    u[:, 0] = opt_adam
    u[:, 1] = np.linspace(0.3, 0.7, 8)
    u[:, 3] = np.linspace(0.1, 0.9, 8)
    u[7] = [opt_sgd, 0.5, 0.8, 0.5]  # the only sgd trial, and the worst one
    scores = np.arange(8, dtype=np.float32)
    state = strategy.tell(state, jnp.asarray(u), jnp.asarray(scores))
    lo, hi = np.asarray(state.lo), np.asarray(state.hi)
    assert hi[3] - lo[3] <= 0.75 + 1e-6 and lo[3] <= 0.1 <= hi[3]  # b2 zoomed around the best adam trial
    assert lo[2] <= 0.8 <= hi[2]  # momentum: centred on its only active trial, not on adam's 0.5
    # No trial with momentum active: its range stays whole.
    u[7, 0] = opt_adam
    fresh = strategy.tell(strategy.init(jax.random.key(0)), jnp.asarray(u), jnp.asarray(scores))
    assert np.asarray(fresh.lo)[2] == 0.0 and np.asarray(fresh.hi)[2] == 1.0


def test_coarse_to_fine_finds_the_better_branch_and_its_optimum():
    result = jt.tune(branchy, SPACE, "coarse_to_fine", trials=64, rounds=5, seed=0, progress=False)
    best = result.best
    assert best["params"]["opt"] == "sgd" and "b2" not in best["params"]
    assert best["value"] < 0.05


def test_importance_judges_a_conditional_parameter_on_its_branch():
    result = jt.tune(branchy, SPACE, "random", trials=200, seed=0, progress=False)
    imps = {i.name: i for i in jt.importance(result, bootstrap=20)}
    assert set(imps) == {"opt", "lr", "momentum", "b2"}
    assert imps["lr"].value > 0.2
    assert imps["momentum"].direction == "best inside"
    with pytest.raises(InputError, match="conditional"):
        jt.importance(result, method="fanova")
    text = jt.report.table(result, top=3)
    assert "-" in text.splitlines()[1]  # the best trial's absent b2


def test_config_files_take_when_as_an_inline_table():
    from jaxtune.cli import ConfigError, space_from_config

    table = {
        "optimizer": {"type": "choice", "values": ["adamw", "sgd"]},
        "lr": {"type": "float", "low": 1e-4, "high": 1.0, "scale": "log"},
        "momentum": {"type": "float", "low": 0.5, "high": 0.99, "scale": "reverse_log", "when": {"optimizer": "sgd"}},
    }
    space = space_from_config(table)
    assert space.params["momentum"].when == (("optimizer", ("sgd",)),)
    table["momentum"]["when"] = {"optimizer": "adam"}
    with pytest.raises(ConfigError, match="'optimizer' takes \\['adamw', 'sgd'\\], not 'adam'"):
        space_from_config(table)


def test_the_built_in_optimizer_choice_is_sgd_with_momentum_or_adamw():
    import optax

    from jaxtune.tasks.classify import optimizer

    params = {"w": jnp.asarray([1.0, -2.0])}
    grads = {"w": jnp.asarray([0.5, 0.25])}

    def two_steps(tx):
        state, p = tx.init(params), params
        for _ in range(2):
            updates, state = tx.update(grads, state, p)
            p = optax.apply_updates(p, updates)
        return np.asarray(p["w"])

    hp = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.8}
    np.testing.assert_allclose(two_steps(optimizer(hp)), two_steps(optax.sgd(0.1, momentum=0.8)), **F32)
    hp = {"lr": 0.1, "b1": 0.8, "wd": 0.01}  # no choice in the space: AdamW
    np.testing.assert_allclose(
        two_steps(optimizer(hp)), two_steps(optax.adamw(0.1, b1=0.8, weight_decay=0.01)), **F32
    )
    with pytest.raises(InputError, match="optimizer must be one of"):
        optimizer({"optimizer": "rmsprop"})
