import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tolerances import F32_ITERATED

import jaxtune as jt
from jaxtune.strategies import REGISTRY, make_strategy

SPACE = jt.Space({"a": jt.Float(0, 1), "b": jt.Float(1e-3, 1, scale="log"), "c": jt.Choice([1, 2, 3])})


# Successive halving and Hyperband need a budget in the space: the same three dimensions, the last a budget.
BUDGET_SPACE = jt.Space({**dict(list(SPACE.params.items())[:2]), "steps": jt.Int(1, 27, static=True)})
SPACES = {"successive_halving": BUDGET_SPACE, "hyperband": BUDGET_SPACE, "bohb": BUDGET_SPACE}
# The properties below do not depend on the Gaussian process's size: a small one runs op by op in seconds.
OPTIONS = {"gp": {"capacity": 64, "candidates": 128, "fit_steps": 10, "features": 128}}


def sphere(u):
    return jnp.sum((u - jnp.asarray([[0.3, 0.7, 0.5]])) ** 2, axis=-1)


# Every registered strategy but the host one (Optuna's samplers propose on the host: test_bench).
JITTABLE = [name for name in sorted(REGISTRY) if name != "optuna"]


def run_loop(strategy, key, rounds):
    state = strategy.init(key)
    asked = []
    for r in range(rounds):
        u, state = strategy.ask(jax.random.fold_in(key, r), state)
        asked.append(u)
        state = strategy.tell(state, u, sphere(u))
    return state, jnp.stack(asked)


def run_scan(strategy, key, rounds):
    def body(state, r):
        u, state = strategy.ask(jax.random.fold_in(key, r), state)
        return strategy.tell(state, u, sphere(u)), u

    return jax.jit(lambda k: jax.lax.scan(body, strategy.init(k), jnp.arange(rounds)))(key)


@pytest.mark.parametrize("name", JITTABLE)
def test_loop_equals_scan(name, key):
    if name == "cma_es":
        pytest.importorskip("evosax")
    strategy = make_strategy(name, SPACES.get(name, SPACE), 16, **OPTIONS.get(name, {}))
    if name == "gp":
        # The Gaussian process's lanes each take the argmin of a posterior sample among its
        # candidates, many of them close together near the best point: op-by-op and compiled
        # float32 rounding pick different near-ties after a few fitted rounds. Its Halton round and
        # first fitted round agree; each program is deterministic (the next test).
        _, u1 = run_loop(strategy, key, 2)
        _, u2 = run_scan(strategy, key, 2)
        np.testing.assert_allclose(u1, u2, **F32_ITERATED)
        return
    s1, u1 = run_loop(strategy, key, 4)
    s2, u2 = run_scan(strategy, key, 4)
    np.testing.assert_allclose(u1, u2, **F32_ITERATED)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **F32_ITERATED), s1, s2)


@pytest.mark.parametrize("name", JITTABLE)
def test_deterministic_for_a_fixed_key_and_in_the_cube(name, key):
    if name == "cma_es":
        pytest.importorskip("evosax")
    strategy = make_strategy(name, SPACES.get(name, SPACE), 16, **OPTIONS.get(name, {}))
    _, u1 = run_loop(strategy, key, 3)
    _, u2 = run_loop(strategy, key, 3)
    np.testing.assert_array_equal(u1, u2)
    assert u1.shape == (3, 16, 3) and float(u1.min()) >= 0 and float(u1.max()) <= 1
    if name != "grid":  # grid order is a permutation of one table; the others draw anew
        _, u3 = run_loop(strategy, jax.random.key(1), 3)
        assert not np.allclose(u1, u3)


def test_grid_covers_every_point_once_then_pads_and_masks(key):
    space = jt.Space({"x": jt.Float(0, 1), "y": jt.Choice(["a", "b", "c"])})
    strategy = make_strategy("grid", space, 4, points=3)  # 9 points: rounds of 4, 4, 1 + 3 padded
    assert strategy.num_rounds == 3
    state = strategy.init(key)
    seen, masks = [], []
    for _ in range(3):
        u, state = strategy.ask(key, state)
        valid = np.asarray(strategy.valid(state))
        masks.append(valid)
        seen += [tuple(np.round(p, 5)) for p in np.asarray(u)[valid]]
    assert [m.sum() for m in masks] == [4, 4, 1]
    assert len(seen) == 9 and len(set(seen)) == 9
    assert set(seen) == {tuple(np.round(p, 5)) for p in space.grid_unit(3)}


@pytest.mark.parametrize("max_grow", [0.75, 0.5, 1.5])
def test_coarse_to_fine_box_shrinks_around_the_best(key, max_grow):
    strategy = make_strategy("coarse_to_fine", SPACE, 64, max_grow=max_grow)
    state = strategy.init(key)
    widths, improved = [np.ones(3)], []
    for r in range(5):
        u, state = strategy.ask(jax.random.fold_in(key, r), state)
        before = float(state.top_s[0])
        state = strategy.tell(state, u, sphere(u))
        improved.append(float(state.top_s[0]) < before)
        lo, hi = np.asarray(state.lo), np.asarray(state.hi)
        widths.append(hi - lo)
        assert np.all(lo >= 0) and np.all(hi <= 1 + 1e-6)
        best = np.asarray(state.top_u[0])
        assert np.all(best >= lo - 1e-6) and np.all(best <= hi + 1e-6)
    # Each round multiplies every half-width by a factor in [min_shrink, max_grow] = [0.25, max_grow]
    # after a round that improved the best, [0.25, max_shrink = 0.5] after one that did not.
    ratios = np.asarray(widths[1:]) / np.asarray(widths[:-1])
    top = np.where(improved, max_grow, 0.5)[:, None]
    assert np.all(ratios <= top + 1e-5) and np.all(ratios >= 0.25 - 1e-5)
    assert np.asarray(widths[-1]).max() < 0.5  # it zoomed
    np.testing.assert_allclose(np.asarray(state.top_u[0]), [0.3, 0.7, 0.5], atol=0.05)


def test_coarse_to_fine_explore_samples_a_share_in_the_whole_cube(key):
    strategy = make_strategy("coarse_to_fine", SPACE, 16, explore=0.25)
    state = strategy.init(key)
    for r in range(4):
        u, state = strategy.ask(jax.random.fold_in(key, r), state)
        state = strategy.tell(state, u, sphere(u))
    u, _ = strategy.ask(jax.random.fold_in(key, 9), state)
    inside = np.all((np.asarray(u) >= np.asarray(state.lo) - 1e-6) & (np.asarray(u) <= np.asarray(state.hi) + 1e-6), 1)
    assert inside[:12].all() and not inside[12:].all()  # the last 4 lanes: anywhere in the cube
    with pytest.raises(ValueError, match="explore must be in"):
        make_strategy("coarse_to_fine", SPACE, 16, explore=1.0)
    with pytest.raises(ValueError, match="max_grow must be >= max_shrink"):
        make_strategy("coarse_to_fine", SPACE, 16, max_grow=0.3)


def test_coarse_to_fine_ignores_diverged_trials(key):
    strategy = make_strategy("coarse_to_fine", SPACE, 32)
    state = strategy.init(key)
    u, state = strategy.ask(key, state)
    scores = sphere(u).at[0].set(jnp.nan).at[1].set(-jnp.inf)
    state = strategy.tell(state, u, scores)
    np.testing.assert_array_equal(state.top_u[0], u[jnp.argmin(sphere(u).at[0].set(9).at[1].set(9))])
    # All diverged: the box stays where it was.
    u, state2 = strategy.ask(key, state)
    state2 = strategy.tell(state2, u, jnp.full((32,), jnp.nan))
    np.testing.assert_array_equal(state2.lo, state.lo)


def test_coarse_to_fine_inner_grid_puts_a_lattice_in_the_box(key):
    space = jt.Space({"x": jt.Float(0, 1), "y": jt.Float(0, 1)})
    strategy = make_strategy("coarse_to_fine", space, 20, inner="grid")  # 4x4 lattice + 4 random
    u, _ = strategy.ask(key, strategy.init(key))
    lattice = (np.arange(4) + 0.5) / 4
    np.testing.assert_allclose(
        np.asarray(u[:16]), np.stack(np.meshgrid(lattice, lattice, indexing="ij"), -1).reshape(-1, 2)
    )


def test_registry_and_option_errors():
    with pytest.raises(ValueError, match="unknown strategy 'bayes'.*'coarse_to_fine'"):
        make_strategy("bayes", SPACE, 8)
    with pytest.raises(TypeError, match="no option.*'shrink'"):
        make_strategy("coarse_to_fine", SPACE, 8, shrink=0.3)
    with pytest.raises(ValueError, match="top_fraction must be in"):
        jt.strategies.CoarseToFine(top_fraction=0.0)
    with pytest.raises(ValueError, match="unknown inner sampler 'sobol'"):
        jt.strategies.CoarseToFine(inner="sobol")
    built = make_strategy("random", SPACE, 8)
    with pytest.raises(ValueError, match="built for 8 trials"):
        make_strategy(built, SPACE, 16)


def test_branin_coarse_to_fine_beats_random_within_budget():
    """Known optimum: coarse-to-fine with 2048 evaluations gets within 1e-3 of f*, random does not."""
    syn = jt.tasks.SYNTHETIC["branin"]
    kw = dict(trials=256, rounds=8, seed=0, progress=False)
    c2f = jt.tune(syn.objective, syn.space, "coarse_to_fine", **kw)
    rnd = jt.tune(syn.objective, syn.space, "random", **kw)
    assert len(c2f) == len(rnd) == 2048
    gap_c2f = c2f.best["value"] - syn.optimum
    gap_rnd = rnd.best["value"] - syn.optimum
    assert 0 <= gap_c2f < 1e-3
    assert gap_c2f < gap_rnd


def test_halving_budgets():
    from jaxtune.strategies.halving import budgets

    assert budgets(100, 2700, 3) == [100, 300, 900, 2700]
    assert budgets(1, 16, 2) == [1, 2, 4, 8, 16]
    assert budgets(10, 50, 3) == [17, 50]  # high, high/eta, ... while >= low


HALVING_SPACE = jt.Space({"x": jt.Float(0, 1), "steps": jt.Int(1, 9, static=True)})


def test_successive_halving_keeps_the_best_third_on_three_times_the_budget(key):
    strategy = make_strategy("successive_halving", HALVING_SPACE, 9)
    assert strategy.num_rounds == 3
    state = strategy.init(key)
    rungs = []
    for r in range(4):
        u, state = strategy.ask(jax.random.fold_in(key, r), state)
        valid = np.asarray(strategy.valid(state))
        hp = HALVING_SPACE.from_unit(u)
        rungs.append((np.asarray(hp["x"]), np.asarray(hp["steps"]), valid))
        state = strategy.tell(state, u, hp["x"])  # lower x is better
    assert [int(v.sum()) for _, _, v in rungs] == [9, 3, 1, 9]  # a new bracket after the largest budget
    assert [set(s[v].tolist()) for _, s, v in rungs] == [{1}, {3}, {9}, {1}]
    x0, _, _ = rungs[0]
    x1, _, v1 = rungs[1]
    np.testing.assert_array_equal(x1, x0)  # the same configurations, trained longer
    assert set(np.flatnonzero(v1)) == set(np.argsort(x0)[:3])
    x2, _, v2 = rungs[2]
    assert np.flatnonzero(v2).tolist() == [int(np.argmin(x0))]
    assert not np.array_equal(rungs[3][0], x0)  # fresh samples


def test_successive_halving_never_promotes_diverged_trials(key):
    strategy = make_strategy("successive_halving", HALVING_SPACE, 9)
    state = strategy.init(key)
    u, state = strategy.ask(key, state)
    scores = jnp.full((9,), jnp.nan).at[4].set(1.0).at[7].set(jnp.inf)
    state = strategy.tell(state, u, scores)
    assert np.flatnonzero(np.asarray(strategy.valid(state))).tolist() == [4]
    u, state = strategy.ask(key, state)
    state = strategy.tell(state, u, jnp.full((9,), jnp.nan))  # every survivor diverged: start over
    u2, state = strategy.ask(jax.random.fold_in(key, 1), state)
    assert bool(np.asarray(strategy.valid(state)).all())
    assert set(np.asarray(HALVING_SPACE.from_unit(u2)["steps"]).tolist()) == {1}


@pytest.mark.parametrize(
    "space, options, message",
    [
        (jt.Space({"x": jt.Float(0, 1)}), {}, "fidelity 'steps' is not in the space"),
        (jt.Space({"steps": jt.Int(1, 9)}), {}, "must be a jt.Int\\(low, high, static=True\\) budget"),
        (jt.Space({"epochs": jt.Int(1, 2, static=True)}), {"fidelity": "epochs"}, "less than one factor of eta=3"),
        (HALVING_SPACE, {"eta": 1}, "eta must be an int >= 2, got 1"),
    ],
)
def test_successive_halving_errors(space, options, message):
    with pytest.raises(ValueError, match=message):
        make_strategy("successive_halving", space, 9, **options)


def test_successive_halving_sweep_stores_every_rung():
    def objective(hp, key):
        # More budget, lower loss: the survivors' losses drop as the budget grows.
        return {"loss": (hp["x"] - 0.3) ** 2 + 1.0 / hp["steps"] + 0 * jax.random.uniform(key)}

    reports = []
    result = jt.tune(objective, HALVING_SPACE, "successive_halving", trials=9, metric="loss", progress=reports.append)
    assert [r["ran"] for r in reports] == [9, 3, 1]
    assert reports[-1]["compiles"] == 3  # one program per budget
    by_round = {r: [t for t in result.trials if t["round"] == r] for r in range(3)}
    assert [{t["params"]["steps"] for t in by_round[r]} for r in range(3)] == [{1}, {3}, {9}]
    best_first = min(by_round[0], key=lambda t: t["value"])
    assert by_round[2][0]["params"]["x"] == pytest.approx(best_first["params"]["x"])
    assert result.best["params"]["steps"] == 9


def test_successive_halving_resumes_mid_bracket(tmp_path):
    def objective(hp, key):
        return {"loss": (hp["x"] - 0.3) ** 2 + 1.0 / hp["steps"] + 0.01 * jax.random.uniform(key)}

    db = str(tmp_path / "sh.db")
    args = dict(metric="loss", progress=False, seed=3)
    jt.tune(objective, HALVING_SPACE, "successive_halving", trials=9, rounds=2, storage=db, **args)
    reports = []
    resumed = jt.tune(
        objective,
        HALVING_SPACE,
        "successive_halving",
        trials=9,
        rounds=3,
        storage=db,
        **{**args, "progress": reports.append},
    )
    assert [r["ran"] for r in reports] == [1]  # only the last rung runs again
    fresh = jt.tune(objective, HALVING_SPACE, "successive_halving", trials=9, rounds=3, **args)
    key = lambda t: (t["round"], t["slot"])  # noqa: E731
    assert sorted(map(key, resumed.trials)) == sorted(map(key, fresh.trials))
    assert resumed.best["value"] == pytest.approx(fresh.best["value"])


def test_hyperband_runs_brackets_from_aggressive_to_cautious(key):
    space = jt.Space({"x": jt.Float(0, 1), "steps": jt.Int(1, 27, static=True)})
    strategy = make_strategy("hyperband", space, 27)
    assert strategy.num_rounds == 10  # brackets of 4, 3, 2 and 1 rounds
    state = strategy.init(key)
    counts, steps = [], []
    for r in range(11):
        u, state = strategy.ask(jax.random.fold_in(key, r), state)
        valid = np.asarray(strategy.valid(state))
        hp = space.from_unit(u)
        counts.append(int(valid.sum()))
        steps.append(sorted(set(np.asarray(hp["steps"])[valid].tolist())))
        state = strategy.tell(state, u, hp["x"])
    # n_s = ceil(27 * 4 / (s + 1) / 3**(3 - s)): 27, 12, 6, 4 configurations, each halved s times.
    assert counts == [27, 9, 3, 1, 12, 4, 1, 6, 2, 4, 27]
    assert [b[0] for b in steps] == [1, 3, 9, 27, 3, 9, 27, 9, 27, 27, 1]


def test_hyperband_sweep_runs_every_bracket():
    def objective(hp, key):
        return {"loss": (hp["x"] - 0.3) ** 2 + 1.0 / hp["steps"] + 0 * jax.random.uniform(key)}

    space = jt.Space({"x": jt.Float(0, 1), "steps": jt.Int(1, 27, static=True)})
    reports = []
    result = jt.tune(objective, space, "hyperband", trials=27, metric="loss", progress=reports.append)
    assert [r["ran"] for r in reports] == [27, 9, 3, 1, 12, 4, 1, 6, 2, 4]
    assert len(result) == 69 and result.best["params"]["steps"] == 27
