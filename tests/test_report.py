import jax.numpy as jnp
import numpy as np
import pytest

import jaxtune as jt
from jaxtune import report


def test_axis_scale_follows_the_values():
    assert report._axis_scale([1e-4, 3e-3, 0.1]) == "log"
    assert report._axis_scale([0.9, 0.95, 0.999]) == "reverse_log"
    assert report._axis_scale([0.2, 0.5, 0.7]) == "linear"
    np.testing.assert_allclose(report._reverse_log([0.9, 0.99, 0.999]), [1, 2, 3])
    np.testing.assert_allclose(report._reverse_log_inverse(report._reverse_log([0.9, 0.995])), [0.9, 0.995])


def test_plot_draws_every_scale(tmp_path):
    pytest.importorskip("matplotlib")
    space = jt.Space({"lr": jt.Float(1e-4, 1.0, scale="log"), "b1": jt.Float(0.9, 0.999, scale="reverse_log")})

    def objective(hp, key):
        return {"loss": jnp.log10(hp["lr"]) ** 2 + jnp.log10(1 - hp["b1"]) ** 2}

    result = jt.tune(objective, space, "random", trials=16, progress=False)
    path = report.plot(result, str(tmp_path / "fig.png"))
    assert (tmp_path / "fig.png").stat().st_size > 1000 and path.endswith("fig.png")
    assert "best trial" in report.summary(result)
