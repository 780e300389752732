import jax
import pytest

# Strict promotion (equinox style): mixing ranks by accident is a bug, not a broadcast.
jax.config.update("jax_numpy_rank_promotion", "raise")
# One CPU device in this process, whichever test runs first (the CLI, run in-process, would
# otherwise give JAX one device per core); several devices and processes are tested in
# subprocesses.
jax.config.update("jax_num_cpu_devices", 1)


@pytest.fixture
def key():
    return jax.random.key(0)
