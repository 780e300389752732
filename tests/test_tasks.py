import jax
import jax.numpy as jnp
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


def test_tutorial_cnn_with_its_convs_as_patches_computes_the_same(key):
    from flax import nnx

    from jaxtune.layers import PatchConv, patch_convs
    from jaxtune.tasks.models import CNN, TutorialCNN
    from jaxtune.train import set_mode

    x = jax.random.uniform(jax.random.key(1), (5, 64))
    model = TutorialCNN(rngs=nnx.Rngs(0))
    before = set_mode(model, train=False)(x)
    kernel = model.conv2.kernel
    assert patch_convs(model) is model
    assert isinstance(model.conv1, PatchConv) and isinstance(model.conv2, PatchConv)
    assert model.conv2.kernel is kernel  # the same Param, not a copy
    assert before.shape == (5, 10)
    np.testing.assert_allclose(set_mode(model, train=False)(x), before, rtol=1e-5, atol=1e-6)
    # Convolutions inside lists (the MNIST-1D CNN's nnx.List) are found too.
    cnn = CNN(conv="nnx", rngs=nnx.Rngs(0))
    xs = jax.random.normal(key, (3, 40))
    before = cnn(xs)
    patch_convs(cnn)
    assert all(isinstance(c, PatchConv) for c in cnn.convs)
    np.testing.assert_allclose(cnn(xs), before, rtol=1e-5, atol=1e-5)


def test_convolutions_patches_cannot_express_stay_as_they_are():
    from flax import nnx

    from jaxtune.layers import PatchConv, patch_convs

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.grouped = nnx.Conv(4, 4, (3,), feature_group_count=2, rngs=rngs)
            self.dilated = nnx.Conv(4, 4, (3,), kernel_dilation=2, rngs=rngs)
            self.circular = nnx.Conv(4, 4, (3,), padding="CIRCULAR", rngs=rngs)
            self.plain = nnx.Conv(4, 4, (3,), strides=2, padding="VALID", rngs=rngs)

    net = patch_convs(Net(nnx.Rngs(0)))
    assert [type(m).__name__ for m in (net.grouped, net.dilated, net.circular)] == ["Conv"] * 3
    assert isinstance(net.plain, PatchConv)
    with pytest.raises(ValueError, match="non-default feature_group_count"):
        PatchConv.from_conv(nnx.Conv(4, 4, (3,), feature_group_count=2, rngs=nnx.Rngs(0)))


def test_the_trainer_runs_convolutions_as_patches_unless_told_not_to():
    patches = jt.tasks.get("digits_cnn", steps=3, batch_size=8)
    plain = jt.tasks.get("digits_cnn", steps=3, batch_size=8, conv="nnx")
    assert patches.objective.patch_convs and not plain.objective.patch_convs
    hp = {"lr": jnp.float32(1e-3), "b1": jnp.float32(0.9), "wd": jnp.float32(1e-4)}
    lowered = {t: jax.jit(t.objective).lower(hp, jax.random.key(0)) for t in (patches, plain)}
    # That both compute the same function is tested on the model itself (the test above); here:
    # no convolution op is left in the patches program (its windows are strided slices).
    assert "convolution" not in lowered[patches].as_text()
    assert "convolution" in lowered[plain].as_text()


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


def test_digits_load_from_an_npz_as_on_machines_without_scikit_learn(tmp_path, monkeypatch):
    from sklearn.datasets import load_digits

    d = load_digits()
    np.savez(tmp_path / "digits.npz", data=d.data, target=d.target)
    monkeypatch.setenv(data.DIGITS_ENV, str(tmp_path / "digits.npz"))
    loaded = data.digits()
    monkeypatch.delenv(data.DIGITS_ENV)
    reference = data.digits()  # from scikit-learn
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(reference)):
        np.testing.assert_array_equal(a, b)
