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
    assert path.endswith("fig.png")
    import matplotlib.image

    image = matplotlib.image.imread(path)
    # A PNG with one panel for the best-so-far curve and one per parameter (4 x 3.5 inches at 100 dpi).
    assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert image.shape[:2] == (350, 1200) and image[..., :3].std() > 0.05  # not a blank canvas
    assert "best trial" in report.summary(result)
