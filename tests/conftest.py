import jax
import pytest

# Strict promotion (equinox style): mixing ranks by accident is a bug, not a broadcast.
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key():
    return jax.random.key(0)
