import jax
import pytest

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


@pytest.fixture
def key():
    return jax.random.key(0)
