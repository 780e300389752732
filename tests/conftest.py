"""Shared test settings, fixtures and helpers (test modules import the helpers from here)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxtune as jt


def pytest_configure(config):
    """JAX settings for the test process (a hook, so a subprocess that imports the helpers below
    keeps its own device count)."""
    # Strict promotion (equinox style): mixing ranks by accident is a bug, not a broadcast.
    jax.config.update("jax_numpy_rank_promotion", "raise")
    # One CPU device in this process, whichever test runs first (the CLI, run in-process, would
    # otherwise give JAX one device per core); several devices and processes are tested in
    # subprocesses.
    jax.config.update("jax_num_cpu_devices", 1)
    # The tests check equalities that hold in float32 arithmetic (a masked batch = the small batch,
    # patches @ kernel = nnx.Conv, a vmapped trial = the trial alone). On GPUs JAX's default float32
    # matmul and convolution precision is TF32 (~1e-3 relative), under which none of them holds to a
    # float32 tolerance; the H200 run of this suite failed 6 such tests. Check them in full float32 on
    # every backend (a no-op on CPUs, which always compute in float32).
    jax.config.update("jax_default_matmul_precision", "highest")
    # Many tests compile the same small programs (the same toy trainer, in new closures): a
    # compilation cache for the session lets them share one compile. Its own directory, so no
    # stale entry from another run or version can answer; made once by the controlling process
    # and inherited by pytest-xdist's workers, so the two workers share their compiles too.
    import os
    import tempfile

    if "JAXTUNE_TEST_XLA_CACHE" not in os.environ:
        os.environ["JAXTUNE_TEST_XLA_CACHE"] = tempfile.mkdtemp(prefix="jaxtune-test-xla-")
    jax.config.update("jax_compilation_cache_dir", os.environ["JAXTUNE_TEST_XLA_CACHE"])
    # The tests' subprocesses (the README's code, the CLI, kill -9 runs) use it too, not the
    # user's ~/.cache/jaxtune (a test that tests the default sets its own HOME).
    os.environ["JAXTUNE_CACHE_DIR"] = os.environ["JAXTUNE_TEST_XLA_CACHE"]
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


# Seconds each of the slowest test files takes on two cores (measured; the rest take less). `make
# test` hands files to its two workers in this order, longest first (--no-loadscope-reorder), so
# a long file does not start last and leave one worker alone at the end (the suite's tail).
FILE_SECONDS = {
    "test_capabilities": 128, "test_schedulers": 100, "test_bench": 90, "test_readme": 90, "test_pareto": 62,
    "test_strategies": 58, "test_train": 58, "test_seeds": 48, "test_cli": 47, "test_plan": 41,
    "test_warm_start": 38, "test_replay": 37, "test_examples": 35, "test_tasks": 33, "test_sharing": 31,
    "test_babysit": 30, "test_layers": 29, "test_population": 27, "test_live": 26, "test_attention": 25,
}  # fmt: skip


def pytest_collection_modifyitems(config, items):
    """The slowest files first (a stable sort: each file's tests keep their order)."""
    items.sort(key=lambda item: -FILE_SECONDS.get(item.path.stem, 0))


@pytest.fixture
def key():
    return jax.random.key(0)


@pytest.fixture
def no_sharing():
    """Each masked bucket its own program (jt.configure(share_programs=False)) for the test."""
    jt.configure(share_programs=False)
    yield
    jt.configure(share_programs=True)


SPACE = jt.Space(
    {"lr": jt.Float(1e-3, 1.0, scale="log"), "b1": jt.Float(0.5, 0.99, scale="reverse_log"), "n": jt.Int(1, 3)}
)


def quad_objective(hp, key):
    """A tiny noisy 'training run': a few gradient steps on a quadratic, scanned."""
    target = jax.random.normal(key, (4,))

    def step(w, _):
        g = 2 * (w - target)
        return w - hp["lr"] * g * hp["b1"], None

    w, _ = jax.lax.scan(step, jnp.zeros(4), None, length=5)
    loss = jnp.sum((w - target) ** 2) * hp["n"]
    return {"loss": loss, "acc": 1.0 / (1.0 + loss)}


class CompileCounter:
    """Counts XLA backend compilations (any program, not only the executor's)."""

    def __init__(self):
        self.count = 0
        jax.monitoring.register_event_duration_secs_listener(self._on)

    def _on(self, event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            self.count += 1


def toy_data(n=96, d=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0.5).astype(np.int32)
    return x, y % classes


class Net(nnx.Module):
    def __init__(self, hidden, dropout, rngs):
        self.l1 = nnx.Linear(6, hidden, rngs=rngs)
        self.drop = nnx.Dropout(dropout, rngs=rngs)
        self.l2 = nnx.Linear(hidden, 3, rngs=rngs)

    def __call__(self, x):
        return self.l2(self.drop(jax.nn.relu(self.l1(x))))


class MaskedNet(nnx.Module):
    """The toy classifier with a masked hidden width (``hp["hidden"]`` arrives as ``jt.Masked``)."""

    def __init__(self, hidden, rngs):
        self.a = jt.layers.MaskedLinear(6, hidden, rngs=rngs)
        self.b = jt.layers.MaskedLinear(hidden, 3, rngs=rngs)

    def __call__(self, x):
        return self.b(nnx.relu(self.a(x)))


def make_trainer(dropout=0.0, batch_size=16, steps=20, eval_every=None, model=None, optimizer=None, **options):
    x, y = toy_data()
    return jt.train.Trainer(
        model=model or (lambda hp, rngs: Net(int(hp.get("hidden", 8)), dropout, rngs)),
        optimizer=optimizer or (lambda hp: optax.adamw(hp["lr"], b1=hp["b1"], weight_decay=1e-4)),
        data=(x[:64], y[:64]),
        eval_data={"val": (x[64:], y[64:])},
        steps=steps,
        batch_size=batch_size,
        eval_every=eval_every,
        **options,
    )
