"""Every code block of README.md and of the docs pages runs as written, each in a fresh directory
and a fresh Python (the pages in the order of mkdocs.yml's nav, after the README).

A block's marks are an HTML comment on the line before it, ``<!-- test: ... -->``:

- ``after``: a Python block that continues the one before it, in the same process;
- ``fill=NAME``: what the README itself leaves to the reader (``...``, or names it says are
  yours) is filled from :data:`FILLS` — nothing else of the block is changed;
- ``check=NAME``: assertions from :data:`CHECKS` run after the block;
- ``cli``: a shell block whose ``jaxtune`` lines run in order, after the README's set-up, in one
  directory (``make`` lines aside: ``.ci/run`` runs ``make test`` and ``make demo`` themselves);
- ``slow``: a block that takes minutes: run by ``.ci/run`` (after ``make demo``, with the
  ``cli`` lines, ``JAXTUNE_README_ALL=1``), skipped by a plain ``make test``;
- ``skip=REASON``: not run here, and why.

Blocks of ``text`` (output) and unlabelled ones (diagrams) are not code. A code block without a
mark that says how it runs fails :func:`test_every_code_block_is_run`.
"""

import dataclasses
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def pages() -> list[pathlib.Path]:
    """README.md, then every page of mkdocs.yml's nav that is in docs/ (in nav order)."""
    nav = re.findall(r"^\s+- [^:]+: (\S+\.md)$", (ROOT / "mkdocs.yml").read_text(), flags=re.M)
    return [README, *(ROOT / "docs" / n for n in nav if (ROOT / "docs" / n).exists())]


def where(block) -> str:
    """A block's page and line, as a message names it."""
    return f"{block.page.relative_to(ROOT)} line {block.line}"
ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}


@dataclasses.dataclass
class Block:
    line: int  # the page's line of its opening fence
    lang: str
    code: str
    marks: dict
    page: pathlib.Path = README


def blocks() -> list[Block]:
    """Every page's fenced blocks, in order, dedented, with their marks."""
    return [b for page in pages() for b in page_blocks(page)]


def page_blocks(page: pathlib.Path) -> list[Block]:
    """One page's fenced blocks, in order, dedented, with their marks."""
    lines = page.read_text(encoding="utf-8").splitlines()
    out, i = [], 0
    while i < len(lines):
        fence = re.fullmatch(r"( *)```(\w*)", lines[i])
        if fence is None:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        mark = re.fullmatch(r"<!-- test: (.*) -->", lines[i - 1].strip()) if i else None
        marks = {}
        for item in mark.group(1).split(", ") if mark else []:
            name, _, value = item.partition("=")
            marks[name] = value or True
        out.append(Block(i + 1, fence.group(2), textwrap.dedent("\n".join(lines[i + 1 : end])) + "\n", marks, page))
        i = end + 1
    return out


def python_blocks() -> list[str]:
    """Every page's ```python blocks, in order (as written)."""
    return [b.code for b in blocks() if b.lang == "python"]


def sessions() -> list[list[Block]]:
    """Python blocks grouped into processes: a block marked ``after`` joins the one before."""
    out = []
    for b in blocks():
        if b.lang == "python" and "skip" not in b.marks:
            if b.marks.get("after") and out and out[-1][-1].page == b.page:
                out[-1].append(b)
            else:
                out.append([b])
    return out


# What the README leaves to its reader, filled: "before" runs ahead of the block, "ellipsis"
# replaces its `...` line, "files" are written beside it.
FILLS = {
    "objective_body": {
        "before": "import jax.numpy as jnp\n",
        "ellipsis": 'v = jnp.log10(hp["lr"] / 3e-3) ** 2 + hp["wd"] + (1 - hp["b1"])\na = -v\n',
    },
    "scan_helpers": {
        "before": """
import jax
import jax.numpy as jnp
import optax
from sklearn.datasets import load_digits

x, y = load_digits(return_X_y=True)
x, y = jnp.asarray(x / 16.0, jnp.float32), jnp.asarray(y)


def init_params(key):
    return {"w": 0.01 * jax.random.normal(key, (64, 10)), "b": jnp.zeros(10)}


def loss_fn(params, xb, yb):
    return optax.softmax_cross_entropy_with_integer_labels(xb @ params["w"] + params["b"], yb).mean()


def sample_batch(k):
    i = jax.random.randint(k, (64,), 0, 1200)
    return x[i], y[i]


def val_loss(params):
    return loss_fn(params, x[1200:], y[1200:])
""",
    },
    "bench_problem": {
        "before": """
import jaxtune as jt

space = jt.Space({"x": jt.Float(-1.0, 1.0)})
fn = lambda hp: (hp["x"] - 0.25) ** 2
optimum = 0.0
""",
    },
    "mymodel": {
        "files": {
            "mymodel.py": """
import optax
from flax import nnx
from sklearn.datasets import load_digits

import jaxtune as jt


def make_trainer(width=64, steps=500):
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")

    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.a, self.b = nnx.Linear(64, width, rngs=rngs), nnx.Linear(width, 10, rngs=rngs)

        def __call__(self, x):
            return self.b(nnx.relu(self.a(x)))

    return jt.train.Trainer(model=lambda hp, rngs: MLP(rngs), optimizer=lambda hp: optax.adam(hp["lr"]),
                            data=(x[:1200], y[:1200]), eval_data={"val": (x[1200:], y[1200:])}, steps=steps,
                            batch_size=64)  # fmt: skip
""",
        },
    },
}

# Assertions run after a block (the test's, not the README's).
CHECKS = {
    "replay": """
import numpy as np

assert model.a.kernel.shape == (64, best["params"]["hidden"]), model.a.kernel.shape  # its true width
acc = float((np.argmax(model(x[1200:1500]), -1) == y[1200:1500]).mean())
assert abs(acc - best["metrics"]["val_accuracy"]) <= 2 / 300, (acc, best["metrics"])  # the stored trial again
""",
    "conditional": """
import jax

for p in space.to_python(space.sample(jax.random.key(0), 16)):
    assert ("momentum" in p) == (p["opt"] == "sgd") and ("b2" in p) == (p["opt"] == "adam"), p
    assert callable(optimizer(p).update)
""",
    "scan": """
import jaxtune as jt

scan_space = jt.Space({"lr": jt.Float(1e-3, 1.0, scale="log"), "b1": jt.Float(0.5, 0.99, scale="reverse_log"),
                       "wd": jt.Float(1e-6, 1e-2, scale="log")})
r = jt.tune(objective, scan_space, "random", trials=8, metric="val_loss", progress=False)
assert r.best["metrics"]["val_loss"] < 0.5, r.best  # trained: chance is 2.3
""",
    "living": """
assert len(pbt.history(pbt.best)) >= 1 and pbt.best["metrics"]["val_accuracy"] > 0.3
assert model is not None and asha.best is not None and sh.best is not None
print("living trials ok")
""",
}


def _filled(block: Block) -> str:
    """The block with what its ``fill`` mark names filled in, and its check after it."""
    fill, code = FILLS.get(block.marks.get("fill"), {}), block.code
    if "ellipsis" in fill:
        line = next(x for x in code.splitlines() if x.strip().startswith("..."))
        indent = line[: len(line) - len(line.lstrip())]
        code = code.replace(line, textwrap.indent(fill["ellipsis"], indent).rstrip("\n"), 1)
    return fill.get("before", "") + code + CHECKS.get(block.marks.get("check"), "")


def _python(session: list[Block], cwd: pathlib.Path) -> subprocess.CompletedProcess:
    for b in session:
        for name, text in FILLS.get(b.marks.get("fill"), {}).get("files", {}).items():
            (cwd / name).write_text(text)
    code = "\n".join(_filled(b) for b in session)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=900)


def test_every_code_block_is_run():
    for b in blocks():
        if b.lang in ("", "text"):
            continue  # a diagram or output
        assert b.lang in ("python", "bash", "toml"), f"{where(b)}: a ```{b.lang} block"
        runs = b.lang == "python" or "cli" in b.marks or "skip" in b.marks or "check" in b.marks
        assert runs, f"{where(b)}: a ```{b.lang} block no test runs (mark it, see tests/test_readme.py)"
        checks = CHECKS if b.lang == "python" else ("own_config",)  # a config: its own test below
        for kind, table in (("fill", FILLS), ("check", checks)):
            assert b.marks.get(kind, None) in (None, *table), f"{where(b)}: no {kind} {b.marks[kind]!r}"
    assert sum(len(s) for s in sessions()) == len(python_blocks())


def test_the_first_example_runs_as_written_and_returns_curves(tmp_path):
    first = sessions()[0]
    code = first[0].code
    assert "jt.tune(" in code and "masked=True" in code  # the quick-start sweep, no compile per width
    run = _python(first, tmp_path)  # with the blocks that continue it
    assert run.returncode == 0, run.stderr[-3000:]
    params, curve = [x for x in run.stdout.strip().splitlines() if x.startswith(("{", "[("))][-2:]
    assert "'hidden':" in params and float(params.rsplit(" ", 1)[1]) > 0.8  # digits: a real model was trained
    assert curve.startswith("[(100, {") and "(300, {" in curve  # the best trial's learning curve
    assert (tmp_path / "sweep.db").exists()
    rerun = _python(first[:1], tmp_path)  # the sweep's block alone: what resumes
    assert rerun.returncode == 0 and params in rerun.stdout.splitlines()  # resumed: the same best


ALL = bool(os.environ.get("JAXTUNE_README_ALL"))
SLOW = "takes minutes: .ci/run runs it after make demo (JAXTUNE_README_ALL=1 runs it here)"


@pytest.mark.parametrize("index", range(1, len(sessions())), ids=lambda i: where(sessions()[i][0]).replace(" ", ":"))
def test_a_python_block_runs_as_written(index, tmp_path):
    if any("slow" in b.marks for b in sessions()[index]) and not ALL:
        pytest.skip(f"{where(sessions()[index][0])} {SLOW}")
    run = _python(sessions()[index], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]


def test_the_own_objective_config_runs_as_written(tmp_path):
    (block,) = [b for b in blocks() if b.marks.get("check") == "own_config"]
    for name, text in FILLS[block.marks["fill"]]["files"].items():
        (tmp_path / name).write_text(text)
    (tmp_path / "mine.toml").write_text(block.code)
    jaxtune = [sys.executable, "-m", "jaxtune.cli"]
    run = subprocess.run([*jaxtune, "run", "mine.toml", "--trials", "4", "--storage", "mine.db"], cwd=tmp_path,
                         env=ENV, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0 and "best trial" in run.stdout, run.stderr[-3000:]
    export = subprocess.run([*jaxtune, "export", "mine.db", "mine.toml", "--out", "best.npz"], cwd=tmp_path,
                            env=ENV, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert export.returncode == 0 and (tmp_path / "best.npz").exists(), export.stderr[-3000:]


# A line that reads commands at a prompt is given them on its standard input.
STDIN = {"babysit": "train 3\nquit\n"}


def cli_lines() -> list[str]:
    """Every command of the README's ``cli`` blocks, in order, comments dropped."""
    out = []
    for b in blocks():
        if "cli" in b.marks:
            out += [" ".join(shlex.split(x, comments=True)) for x in b.code.splitlines() if x.split("#")[0].strip()]
    return out


def make_recipe(target: str) -> list[str]:
    """The ``jaxtune`` commands of a Makefile target's recipe."""
    text = (ROOT / "Makefile").read_text()
    recipe = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", text, flags=re.M).group(1)
    return [x.strip().replace("$(BIN)/", "") for x in recipe.splitlines() if x.strip().startswith("$(BIN)/jaxtune")]


def test_the_cli_lines_are_jaxtune_commands():
    assert make_recipe("demo") == ["jaxtune run configs/demo.toml --plot runs/demo.png"]
    lines = cli_lines()
    assert len(lines) >= 15 and {shlex.split(x)[0] for x in lines} <= {"jaxtune", ".venv/bin/jaxtune", "make"}


@pytest.mark.skipif(not ALL, reason=f"the README's CLI lines {SLOW}")
def test_every_cli_line_runs_as_written(tmp_path):
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    if (ROOT / "runs" / "demo.db").exists():  # what make demo left, as after the README's set-up
        (tmp_path / "runs").mkdir()
        shutil.copy(ROOT / "runs" / "demo.db", tmp_path / "runs" / "demo.db")
    env = {**ENV, "PATH": f"{pathlib.Path(sys.executable).parent}{os.pathsep}{ENV['PATH']}"}  # venv activated
    lines = []
    for line in cli_lines():
        if line == "make demo" and not (tmp_path / "runs" / "demo.db").exists():
            lines += make_recipe("demo")  # not made yet: what make demo runs
        elif not line.startswith("make "):  # .ci/run runs make demo and make test themselves
            lines.append(line)
    for line in lines:
        argv = shlex.split(line)
        argv[0] = "jaxtune"
        stdin = STDIN.get(argv[1], "")
        run = subprocess.run(argv, cwd=tmp_path, env=env, input=stdin, capture_output=True, text=True, timeout=900)
        assert run.returncode == 0, f"{line}\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}"


def test_the_front_page_is_short_and_every_docs_page_is_in_the_guide():
    """README.md stays a front page (the guide is docs/); every docs page is in mkdocs.yml's nav,
    so its code blocks run here and the site links it; every page the README links exists."""
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 200
    listed = {p.name for p in pages()[1:]}
    assert {p.name for p in (ROOT / "docs").glob("*.md")} == listed
    for link in re.findall(r"\]\((docs/[^)#]+)\)", README.read_text(encoding="utf-8")):
        assert (ROOT / link).exists(), link
