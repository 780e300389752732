import jax
import numpy as np
import pytest

import jaxtune as jt
from jaxtune.tasks import data


def test_mnist1d_splits_are_disjoint_and_local():
    s = data.mnist1d()
    assert s.train[0].shape == (3200, 40) and s.val[0].shape == (800, 40) and s.test[0].shape == (1000, 40)
    assert s.train[0].dtype == np.float32 and s.train[1].dtype == np.int32
    assert set(np.unique(s.train[1])) == set(range(10))
    train_rows = {r.tobytes() for r in s.train[0]}
    assert not any(r.tobytes() in train_rows for r in s.val[0])


def test_mnist1d_from_npz(tmp_path):
    path = str(tmp_path / "m.npz")
    data.save_npz(path)
    np.testing.assert_array_equal(data.mnist1d(path=path).val[0], data.mnist1d().val[0])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.mnist1d(path=str(tmp_path / "nope.npz"))


def test_digits_split():
    s = data.digits()
    assert s.train[0].shape[1] == 64 and len(s.train[0]) + len(s.val[0]) + len(s.test[0]) == 1797
    assert s.train[0].max() <= 1.0


@pytest.mark.parametrize(
    "name", ["mnist1d_linear", "mnist1d_mlp", "mnist1d_cnn", "mnist1d_gru", "digits_mlp", "digits_cnn"]
)
def test_builtin_tasks_train_and_report_val_and_test(name, key):
    task = jt.tasks.get(name, steps=4, batch_size=8)
    result = jt.tune(task.objective, task.space, "random", trials=2, metric=task.metric, mode=task.mode, progress=False)
    assert len(result) == 2
    assert {"val_accuracy", "val_loss", "test_accuracy", "test_loss", "train_loss"} <= set(result.best["metrics"])


def test_tutorial_cnn_with_patches_is_the_nnx_conv_model():
    from flax import nnx

    from jaxtune.tasks.models import TutorialCNN
    from jaxtune.train import set_mode

    x = jax.random.uniform(jax.random.key(1), (5, 64))
    patches = TutorialCNN(conv="patches", rngs=nnx.Rngs(0))
    conv = TutorialCNN(conv="nnx", rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(patches.conv2.kernel[...], conv.conv2.kernel[...])
    out = set_mode(patches, train=False)(x)
    assert out.shape == (5, 10)
    np.testing.assert_allclose(out, set_mode(conv, train=False)(x), rtol=1e-4, atol=1e-5)


def test_task_registry_errors():
    with pytest.raises(ValueError, match="unknown task 'mnist2d'.*mnist1d_mlp"):
        jt.tasks.get("mnist2d")
    with pytest.raises(ValueError, match="no option\\(s\\) \\['epochs'\\]"):
        jt.tasks.get("mnist1d_mlp", epochs=3)
    with pytest.raises(ValueError, match="unknown MNIST-1D model"):
        from jaxtune.tasks import classify

        classify.mnist1d("resnet")


@pytest.mark.parametrize("name", sorted(jt.tasks.SYNTHETIC))
def test_synthetic_optima(name):
    syn = jt.tasks.SYNTHETIC[name]
    known = {
        "branin": {"x1": np.pi, "x2": 2.275},
        "hartmann3": dict(zip(["x1", "x2", "x3"], [0.114614, 0.555649, 0.852547])),
        "hartmann6": dict(
            zip([f"x{i}" for i in range(1, 7)], [0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573])
        ),
        "rosenbrock": {f"x{i}": 1.0 for i in range(1, 5)},
    }[name]
    value = float(syn.objective({k: np.float32(v) for k, v in known.items()}, jax.random.key(0))["value"])
    assert value == pytest.approx(syn.optimum, abs=1e-4)
