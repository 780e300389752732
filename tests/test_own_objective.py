"""Your own objective from the CLI: ``[task] objective = "package.module:attribute"`` runs a
user's NNX model through ``run``, ``report``, ``export``, ``plan`` and ``babysit``."""

import os
import textwrap

import numpy as np
import pytest

import jaxtune as jt
from jaxtune import cli

MODULE = '''
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jaxtune as jt


class Tiny(nnx.Module):
    def __init__(self, width, rngs):
        self.a = nnx.Linear(4, width, rngs=rngs)
        self.b = nnx.Linear(width, 2, rngs=rngs)

    def __call__(self, x):
        return self.b(nnx.relu(self.a(x)))


def make_trainer(width=8, steps=20):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int32)
    return jt.train.Trainer(model=lambda hp, rngs: Tiny(width, rngs), optimizer=lambda hp: optax.adam(hp["lr"]),
                            data=(x[:64], y[:64]), eval_data={"val": (x[64:], y[64:])}, steps=steps, batch_size=16)


def task():
    return jt.tasks.Task("tiny", make_trainer(), jt.Space({"lr": jt.Float(1e-3, 1e-1, scale="log")}),
                         "val_accuracy", "max")


NOT_CALLABLE = 3
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "usermodel_jt.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def _config(path, task, extra=""):
    path.write_text(task + '\n[tune]\nstrategy = "random"\ntrials = 4\nrounds = 1\nmetric = "val_accuracy"\n'
                    'mode = "max"\nstorage = "own.db"\n' + extra)  # fmt: skip
    return str(path)


SPACE = '[space.lr]\ntype = "float"\nlow = 1e-3\nhigh = 0.1\nscale = "log"\n'


def test_a_users_trainer_factory_runs_reports_and_exports(user_module, capsys):
    cfg = _config(user_module / "own.toml", '[task]\nobjective = "usermodel_jt:make_trainer"\nwidth = 6\nsteps = 15',
                  SPACE)  # fmt: skip
    assert cli.main(["run", cfg]) == 0
    out = capsys.readouterr().out
    assert "best trial" in out
    result = jt.Result.load("own.db")
    assert len(result.trials) == 4 and "n_params" in result.best["metrics"]
    assert result.best["metrics"]["n_params"] == 4 * 6 + 6 + 6 * 2 + 2  # the factory's width=6 reached the model
    assert cli.main(["report", "own.db"]) == 0
    assert cli.main(["export", "own.db", cfg, "--out", "best.npz"]) == 0
    assert os.path.exists("best.npz") and len(np.load("best.npz").files) > 0
    # The model as an Orbax checkpoint, restored into the user's own class as Flax's guide does it.
    assert cli.main(["export", "own.db", cfg, "--format", "orbax"]) == 0  # --out best.npz: the folder best/
    replayed = float(capsys.readouterr().out.split("replayed val_accuracy: ")[1].split()[0])
    import jax.numpy as jnp
    import orbax.checkpoint as ocp
    from flax import nnx
    from usermodel_jt import Tiny, make_trainer

    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: Tiny(6, nnx.Rngs(0))))
    model = nnx.merge(graphdef, ocp.StandardCheckpointer().restore(os.path.abspath("best"), abstract))
    x, y = make_trainer().eval_data["val"]
    assert float(jnp.mean(jnp.argmax(model(x), -1) == y)) == pytest.approx(replayed, abs=1e-5)
    assert cli.main(["export", "own.db", cfg, "--format", "orbax"]) == 2  # never over an existing folder
    assert "exists already: an Orbax checkpoint needs a new folder" in capsys.readouterr().err
    assert cli.main(["plan", cfg]) == 0


def test_a_users_task_needs_nothing_else_and_bad_references_are_config_errors(user_module, capsys):
    cfg = user_module / "task.toml"
    cfg.write_text('[task]\nobjective = "usermodel_jt:task"\n[tune]\nstrategy = "random"\ntrials = 2\n')
    (user_module / "raises_jt.py").write_text('raise RuntimeError("no GPU")\n')  # a module that fails on import
    (user_module / "exits_jt.py").write_text("import sys\nsys.exit(0)\n")  # ... or exits: not a 0 for nothing run
    (user_module / "factory_jt.py").write_text('def make():\n    raise ValueError("bad width")\n')
    assert cli.main(["run", str(cfg)]) == 0
    capsys.readouterr()
    for task, why in [
        ('objective = "usermodel_jt"', "must be 'package.module:attribute'"),
        ('objective = "no_such_module_jt:x"', "cannot import module 'no_such_module_jt'"),
        ('objective = "usermodel_jt:nope"', "has no attribute 'nope'"),
        ('objective = "usermodel_jt:NOT_CALLABLE"', "is a int"),
        ('objective = "usermodel_jt:make_trainer"\nsize = 3', "calling it with the [task] options ['size'] raised"),
        ('objective = "raises_jt:task"', "module 'raises_jt' raised RuntimeError: no GPU (raises_jt.py, line 1)"),
        ('objective = "exits_jt:task"', "importing module 'exits_jt' raised SystemExit(0) (exits_jt.py, line 2)"),
        ('objective = "factory_jt:make"', "options [] raised ValueError: bad width (factory_jt.py, line 2)"),
        ('name = "branin"\nobjective = "usermodel_jt:task"', "one of the two"),
    ]:
        path = _config(user_module / "bad.toml", "[task]\n" + task, SPACE)
        assert cli.main(["run", path]) == 2, task
        assert why in capsys.readouterr().err, task
    path = _config(user_module / "nospace.toml", '[task]\nobjective = "usermodel_jt:make_trainer"')
    assert cli.main(["run", path]) == 2
    assert "needs a [space] section and [tune] metric" in capsys.readouterr().err


def test_a_users_task_is_babysat(user_module, capsys):
    cfg = user_module / "sit.toml"
    cfg.write_text('[task]\nobjective = "usermodel_jt:task"\n[babysit]\nsegment = 5\nstorage = "sit.db"\n'
                   "[babysit.hp]\nlr = 0.01\n")  # fmt: skip
    cmds = user_module / "cmds.txt"
    cmds.write_text("train 2\nset lr=0.02\ntrain\nshow\n")
    assert cli.main(["babysit", str(cfg), "--commands", str(cmds)]) == 0
    assert "val_accuracy" in capsys.readouterr().out


def test_a_babysat_model_is_exported_at_its_head_or_any_node(user_module, capsys):
    cfg = user_module / "sit.toml"
    cfg.write_text('[task]\nobjective = "usermodel_jt:task"\n[babysit]\nsegment = 5\nstorage = "sit.db"\n'
                   "[babysit.hp]\nlr = 0.01\n")  # fmt: skip
    (user_module / "cmds.txt").write_text("train 2\nset lr=0.02\ntrain\n")
    assert cli.main(["babysit", str(cfg), "--commands", "cmds.txt"]) == 0
    assert cli.main(["export", "sit.db", str(cfg), "--out", "head.npz"]) == 0
    assert "babysat model, node" in capsys.readouterr().out
    assert cli.main(["export", "sit.db", str(cfg), "--node", "1", "--out", "one.npz"]) == 0
    head, one = np.load("head.npz"), np.load("one.npz")
    assert head.files == one.files and any(not np.array_equal(head[k], one[k]) for k in head.files)
    assert cli.main(["export", "sit.db", str(cfg), "--node", "99"]) == 2
    assert "--node 99 is not a node of the run" in capsys.readouterr().err
