"""README's first example runs as written (extracted from README.md, run in a fresh directory)."""

import os
import pathlib
import re
import subprocess
import sys

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    """The README's ```python blocks, in order."""
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_the_first_example_runs_as_written_and_returns_curves(tmp_path):
    code = python_blocks()[0]
    assert "jt.tune(" in code and "masked=True" in code  # the quick-start sweep, no compile per width
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=900)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    params, curve = run.stdout.strip().splitlines()[-2:]
    assert "'hidden':" in params and float(params.rsplit(" ", 1)[1]) > 0.8  # digits: a real model was trained
    assert curve.startswith("[(100, {") and "(300, {" in curve  # the best trial's learning curve
    assert (tmp_path / "sweep.db").exists()
    rerun = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=900)  # fmt: skip
    assert rerun.returncode == 0 and rerun.stdout.strip().splitlines()[-2] == params  # resumed: the same best
