"""Every docstring example users copy runs, and prints what it says it prints."""

import doctest
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxtune as jt

MODULES = [
    "jaxtune.space.space",
    "jaxtune.execute.executor",
    "jaxtune.tune",
    "jaxtune.train",
    "jaxtune.layers",
    "jaxtune.errors",
    "jaxtune.study.records",
    "jaxtune.constraints",
    "jaxtune.reseeding",
    "jaxtune.pareto",
    "jaxtune.tasks",
    "jaxtune.bench.tables",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    globs = {"jax": jax, "jnp": jnp, "np": np, "optax": optax, "nnx": nnx, "jt": jt, **vars(module)}
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(module, name, globs=globs) if t.examples]
    for test in tests:
        runner.run(test)
    assert runner.failures == 0, f"{runner.failures} docstring example(s) of {name} failed (output above)"
    assert tests, f"{name} has no docstring examples"
