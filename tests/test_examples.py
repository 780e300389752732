"""Every example runs end to end with tiny settings."""

import importlib.util
import pathlib

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quickstart(tmp_path):
    result = load("quickstart").main(
        ["--steps", "20", "--trials", "4", "--rounds", "2", "--storage", str(tmp_path / "q.db")]
    )
    assert len(result) == 8 and result.best["params"]["hidden"] in (32, 64, 128)


def test_mnist1d_cnn():
    result = load("mnist1d_cnn").main(["--steps", "10", "--trials", "2", "--rounds", "1"])
    assert len(result) == 2 and "test_accuracy" in result.best["metrics"]


def test_width_batch_sweep():
    result, reports = load("width_batch_sweep").main(["--steps", "10", "--trials", "6"])
    assert all(isinstance(t["params"]["hidden"], int) for t in result.trials)
    assert reports[-1]["compiles"] <= 5


def test_research_code():
    result = load("research_code").main(["--steps", "10", "--trials", "4", "--rounds", "2"])
    assert len(result) == 8 and result.best["status"] == "ok"


@pytest.mark.parametrize(
    "name", ["quickstart", "mnist1d_cnn", "width_batch_sweep", "research_code", "compare_strategies"]
)
def test_examples_have_docstrings_and_main(name):
    module = load(name)
    assert module.__doc__ and callable(module.main)


def test_living_trials():
    pbt, asha = load("living_trials").main(["--steps", "18", "--lanes", "4"])
    assert pbt.best["status"] == "ok" and asha.best["status"] == "ok"


def test_compare_strategies():
    res = load("compare_strategies").main(["--seeds", "16", "--evals", "100"])
    assert res.strategies == ["random", "coarse_to_fine"] and res.curves[("valley", "random")].shape == (16, 4)
