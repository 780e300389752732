"""Benchmarking strategies: vectorized sweeps equal jt.tune's, known findings, outputs, CLI."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

import jaxtune as jt
from jaxtune import cli
from jaxtune.bench import Problem, get_problem, register_problem, run, sweep_curves
from jaxtune.errors import InputError, UnknownNameError


@pytest.mark.parametrize("strategy", ["random", "coarse_to_fine", "halton"])
def test_a_vectorized_seed_proposes_what_jt_tune_would(strategy):
    problem = get_problem("branin")
    curves = sweep_curves(problem, strategy, [0, 3], evals=48, trials=16)
    for row, seed in zip(curves, (0, 3)):
        result = jt.tune(lambda hp, key: {"value": problem.fn(hp)}, problem.space, strategy, trials=16, rounds=3,
                         seed=seed, progress=False)  # fmt: skip
        np.testing.assert_allclose(row, result.best_curve(), rtol=1e-5)
    assert not np.array_equal(curves[0], curves[1])  # each seed its own sweep


def test_known_findings_hold_and_the_outputs_are_written(tmp_path):
    # Few of many hyperparameters matter: random search beats a grid (Bergstra & Bengio 2012) ...
    few = run(["branin_in_10d"], ["random", "grid"], seeds=16, evals=400, trials=40)
    assert np.median(few.final("branin_in_10d", "random")) < np.median(few.final("branin_in_10d", "grid")) / 10
    # ... and on a smooth low-dimensional problem coarse-to-fine beats random search.
    res = run(["branin"], ["random", "coarse_to_fine"], seeds=16, evals=400, trials=40)
    assert np.median(res.final("branin", "coarse_to_fine")) < np.median(res.final("branin", "random")) / 10
    assert res.average_rank() == {"coarse_to_fine": 1.0, "random": 2.0}
    assert res.curves[("branin", "random")].shape == (16, 10)
    assert (np.diff(res.curves[("branin", "random")], axis=1) <= 0).all()  # best so far never worsens
    res.to_json(tmp_path / "b.json")
    payload = json.loads((tmp_path / "b.json").read_text())
    assert len(payload["summary"]) == 2 and set(payload["curves"]["branin/random"]) == {"q25", "median", "q75"}
    res.to_csv(tmp_path / "b.csv")
    assert len((tmp_path / "b.csv").read_text().splitlines()) == 3
    assert res.table().startswith("| strategy | branin | average rank |\n|---|---|---|\n| coarse_to_fine |")
    pytest.importorskip("matplotlib")
    assert res.plot(str(tmp_path / "r.png")) and (tmp_path / "r.png").stat().st_size > 0


def test_users_register_problems_and_pass_strategy_options():
    space = jt.Space({"x": jt.Float(-1.0, 1.0)})
    register_problem(Problem("parabola", space, lambda hp: (hp["x"] - 0.3) ** 2, 0.0))
    res = run(["parabola"], ["random", 'coarse_to_fine:inner="grid",top_fraction=0.2'], seeds=4, evals=40, trials=8)
    assert res.strategies == ["random", 'coarse_to_fine:inner="grid",top_fraction=0.2']
    assert np.median(res.final("parabola", res.strategies[1])) < 1e-3
    with pytest.raises(UnknownNameError, match="unknown problem 'nope'"):
        run(["nope"], ["random"], seeds=2)
    with pytest.raises(InputError, match="unknown strategy 'annealing'"):
        run(["parabola"], ["annealing"], seeds=2)
    with pytest.raises(jt.JaxtuneError, match="no option"):
        run(["parabola"], ["random:foo=1"], seeds=2)


def test_halton_points_fill_the_cube_and_differ_by_seed():
    space = jt.Space({"a": jt.Float(0.0, 1.0), "b": jt.Float(0.0, 1.0)})
    strategy = jt.strategies.make_strategy("halton", space, 64)
    import jax

    u = [np.asarray(strategy.ask(None, strategy.init(jax.random.key(s)))[0]) for s in (0, 1)]
    assert u[0].shape == (64, 2) and (u[0] >= 0).all() and (u[0] < 1).all() and not np.allclose(u[0], u[1])
    # Low discrepancy: unshifted, the 64 first points put one point in each 1/64 of the first axis
    # (base 2) and 7 to 9 in each 1/8 of the second (base 3); uniform draws would not.
    base = np.mod(u[0] - np.asarray(strategy.init(jax.random.key(0)).shift), 1.0)
    assert len(set(np.floor(base[:, 0] * 64).astype(int))) == 64
    assert set(np.bincount(np.floor(base[:, 1] * 8).astype(int), minlength=8)) <= {7, 8, 9}


def test_bench_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "bench"
    args = ["bench", "--problems", "branin", "--strategies", "random,halton", "--seeds", "4", "--evals", "40",
            "--trials", "8", "--out", str(out)]  # fmt: skip
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "| strategy | branin | average rank |" in printed and "1 problems x 2 strategies x 4 seeds" in printed
    assert {p.name for p in out.iterdir()} >= {"bench.json", "bench.csv", "table.md"}
    assert cli.main(["bench", "--problems", "nope", "--seeds", "0"]) == 2
    err = capsys.readouterr().err
    assert "unknown problem 'nope'" in err and "--seeds must be" in err


MY_PROBLEM = """
import jax.numpy as jnp
import jaxtune as jt


def make():
    space = jt.Space({"x": jt.Float(-1.0, 1.0), "y": jt.Float(-1.0, 1.0)})
    return jt.bench.Problem("my_bowl", space, lambda hp: hp["x"] ** 2 + (hp["y"] - 0.5) ** 2, 0.0)
"""


def test_a_problem_of_your_own_from_the_command_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "myproblems.py").write_text(MY_PROBLEM)
    monkeypatch.chdir(tmp_path)  # imported as python -m would: the current directory first
    args = ["bench", "--problems", "myproblems:make,branin", "--strategies", "random", "--seeds", "4", "--evals",
            "40", "--trials", "8", "--out", str(tmp_path / "out")]  # fmt: skip
    assert cli.main(args) == 0
    assert "| strategy | my_bowl | branin | average rank |" in capsys.readouterr().out
    assert cli.main(["bench", "--problems", "myproblems:nope"]) == 2
    assert "problem 'myproblems:nope': 'myproblems' has no attribute 'nope'" in capsys.readouterr().err
    assert cli.main(["bench", "--problems", "myproblems:jt"]) == 2  # a module, not a problem
    assert "problem 'myproblems:jt' is a module: name a jt.bench.Problem" in capsys.readouterr().err


def test_cma_es_runs_on_the_device_in_the_bench_and_in_jt_tune():
    pytest.importorskip("evosax")
    res = run(["hartmann3"], ["random", "cma_es"], seeds=8, evals=320, trials=16)
    assert np.median(res.final("hartmann3", "cma_es")) < np.median(res.final("hartmann3", "random"))
    problem = get_problem("hartmann3")
    result = jt.tune(lambda hp, key: {"value": problem.fn(hp)}, problem.space, "cma_es", trials=16, rounds=3,
                     progress=False, strategy_options={"sigma": 0.2})  # fmt: skip
    np.testing.assert_allclose(result.best_curve(), sweep_curves(problem, ("cma_es"), [0], 48, 16, {"sigma": 0.2})[0],
                               rtol=1e-5)  # fmt: skip
    with pytest.raises(InputError, match="sigma must be in"):
        jt.strategies.make_strategy("cma_es", problem.space, 16, sigma=2.0)


def test_a_table_built_from_a_real_sweep_is_looked_up_by_nearest_configuration(tmp_path):
    from jaxtune.bench.tables import build_table, lookup_test_accuracy, table_problem

    space = jt.Space({"lr": jt.Float(1e-3, 1.0, scale="log"), "b1": jt.Float(0.5, 0.99, scale="reverse_log")})
    path = str(tmp_path / "digits.npz")
    arrays = build_table(path, task="digits_mlp", space=space, configs=8, steps=8, eval_every=4)
    assert arrays["unit"].shape == (8, 2) and list(arrays["budgets"]) == [4, 8]
    assert arrays["val_accuracy"].shape == (8, 2) and np.isfinite(arrays["val_accuracy"]).all()
    problem = table_problem(path)
    assert problem.name == "digits_table" and problem.optimum == -arrays["val_accuracy"][:, -1].max()
    hp = space.from_unit(arrays["unit"][3])  # a recorded configuration scores its own entry
    assert float(problem.fn(hp)) == -arrays["val_accuracy"][3, -1]
    assert lookup_test_accuracy(path, {k: float(v) for k, v in hp.items()}) == arrays["test_accuracy"][3]
    early = table_problem(path, budget=4)
    assert float(early.fn(hp)) == -arrays["val_accuracy"][3, 0]
    res = run([problem], ["random", "halton"], seeds=4, evals=16, trials=4)
    assert (res.final("digits_table", "random") >= 0).all()


def test_optuna_samplers_propose_batches_in_jt_tune_and_the_bench(tmp_path):
    pytest.importorskip("optuna")
    problem = get_problem("branin")
    objective = lambda hp, key: {"value": problem.fn(hp)}  # noqa: E731
    db = str(tmp_path / "o.db")
    first = jt.tune(objective, problem.space, "optuna", trials=8, rounds=3, storage=db, progress=False)
    assert len(first) == 24 and len({tuple(t["unit"]) for t in first.trials}) == 24
    again = jt.tune(objective, problem.space, "optuna", trials=8, rounds=4, storage=db, progress=False)
    assert len(again) == 32  # resumed: three rounds replayed (the same proposals), one more run
    fresh = jt.tune(objective, problem.space, "optuna", trials=8, rounds=3, progress=False)
    assert [t["unit"] for t in fresh.trials] == [t["unit"] for t in first.trials]  # seeded: the same points
    res = run(["branin"], [("optuna", {"sampler": "tpe"}), "random"], seeds=3, evals=48, trials=8)
    assert res.curves[("branin", "optuna:sampler=tpe")].shape == (3, 6)
    with pytest.raises(InputError, match="unknown sampler 'bayes'"):
        jt.tune(objective, problem.space, "optuna", trials=8, strategy_options={"sampler": "bayes"})


def test_a_multi_fidelity_problem_counts_budget_and_only_full_budget_finds(tmp_path):
    from jaxtune.bench.tables import build_table, table_problem

    space = jt.Space({"lr": jt.Float(1e-3, 1.0, scale="log"), "b1": jt.Float(0.5, 0.99, scale="reverse_log")})
    path = str(tmp_path / "d.npz")
    arrays = build_table(path, task="digits_mlp", space=space, configs=8, steps=8, eval_every=2)
    mf = table_problem(path, fidelity="steps")
    assert mf.fidelity == "steps" and list(arrays["budgets"]) == [2, 4, 6, 8]
    curves, spent = sweep_curves(mf, "successive_halving", 2, 8 * 3, 8, {"eta": 2}, cost=True)
    # Rungs of 8, 4 and 2 configurations on 2, 4 and 8 steps: 16 steps a rung.
    np.testing.assert_array_equal(spent, [[16, 32, 48]] * 2)
    assert np.isinf(curves[:, :2]).all() and np.isfinite(curves[:, 2]).all()  # found only at 8 steps
    assert (curves[:, 2] >= mf.optimum).all()


def test_the_gaussian_process_proposes_batches_on_the_device_and_beats_random():
    res = run(["hartmann3"], ["random", ("gp", {"capacity": 64, "fit_steps": 20})], seeds=4, evals=64, trials=16)
    gp = res.strategies[1]
    # Every seed: after 4 rounds of 16 (one Halton round, three fitted) better than random's median.
    assert np.max(res.final("hartmann3", gp)) < np.median(res.final("hartmann3", "random"))
    problem = get_problem("hartmann3")
    options = {"capacity": 64, "fit_steps": 20}
    first = jt.tune(lambda hp, key: {"value": problem.fn(hp)}, problem.space, "gp", trials=16, rounds=3,
                    progress=False, strategy_options=options)  # fmt: skip
    again = jt.tune(lambda hp, key: {"value": problem.fn(hp)}, problem.space, "gp", trials=16, rounds=3,
                    progress=False, strategy_options=options)  # fmt: skip
    assert [t["unit"] for t in first.trials] == [t["unit"] for t in again.trials]  # same seed, same trials
    for r in range(3):  # a batch without duplicates
        assert len({tuple(t["unit"]) for t in first.trials if t["round"] == r}) == 16
    with pytest.raises(InputError, match="candidates must be >= 2 x trials"):
        jt.strategies.make_strategy("gp", problem.space, 16, candidates=16)


def test_the_gaussian_process_keeps_the_best_points_and_survives_diverged_trials():
    import jax
    import jax.numpy as jnp

    space = jt.Space({"a": jt.Float(0.0, 1.0), "b": jt.Float(0.0, 1.0)})
    strategy = jt.strategies.make_strategy("gp", space, 4, capacity=6, candidates=64, fit_steps=5)
    state = strategy.init(jax.random.key(0))
    for r in range(3):
        u, state = strategy.ask(jax.random.key(r), state)
        assert np.isfinite(np.asarray(u)).all() and (np.asarray(u) >= 0).all() and (np.asarray(u) <= 1).all()
        scores = jnp.sum(u, axis=1).at[0].set(jnp.nan)  # one diverged trial a round
        state = strategy.tell(state, u, scores)
    y = np.asarray(state.y)
    assert np.asarray(state.used).all() and np.isfinite(y[:6]).all()  # 12 told, 9 finite: the 6 best kept
    assert (np.diff(y) >= 0).all()


def test_results_with_fewer_seeds_merge_into_one_table():
    many = run(["branin"], ["random"], seeds=8, evals=40, trials=8)
    few = run(["branin"], ["coarse_to_fine"], seeds=3, evals=40, trials=8)
    both = many.merge(few)
    assert both.strategies == ["random", "coarse_to_fine"] and both.seeds_of("coarse_to_fine") == 3
    assert "| coarse_to_fine (3 seeds) |" in both.table() and "| random |" in both.table()
    assert {r["strategy"]: r["seeds"] for r in both.summary()} == {"random": 8, "coarse_to_fine": 3}
    with pytest.raises(InputError, match="are in both results"):
        both.merge(few)
    with pytest.raises(InputError, match="must share problems"):
        many.merge(run(["branin"], ["halton"], seeds=2, evals=80, trials=8))


def test_problems_of_two_objectives_measure_hypervolume_regret(tmp_path, capsys):
    from jaxtune.bench.tables import mlp_params

    res = run(["zdt1", "zdt2", "mnist1d_width_table"], ["random", "optuna"], seeds=3, evals=48, trials=16)
    for p in res.problems:
        for s in res.strategies:
            c = res.curves[(p, s)]
            assert c.shape == (3, 3) and (c >= 0).all() and (np.diff(c, axis=1) <= 1e-5).all()  # found only grows
        assert 0 < np.median(res.final(p, "random")) < get_problem(p).optimum
    zdt1 = get_problem("zdt1")
    assert zdt1.objectives == 2 and abs(zdt1.optimum - (10 + 2 / 3 + 1.1)) < 1e-9
    on_front = {f"x{i}": jnp.asarray(0.0 if i else 0.25) for i in range(6)}  # g = 1: f2 = 1 - sqrt(f1)
    np.testing.assert_allclose(np.asarray(zdt1.fn(on_front)), [0.25, 0.5], rtol=1e-6)
    assert mlp_params(100) == 40 * 100 + 100 + 100 * 100 + 100 + 100 * 10 + 10
    with pytest.raises(InputError, match="need a reference point"):
        jt.bench.Problem("bad", zdt1.space, zdt1.fn, 1.0, objectives=2)
    assert cli.main(["bench", "--problems", "zdt1", "--strategies", "random", "--seeds", "2", "--evals", "32",
                     "--trials", "16", "--out", str(tmp_path / "b")]) == 0  # fmt: skip
    assert "zdt1" in capsys.readouterr().out
