"""Fuzzing the CLI's config schema (hypothesis): any config either runs, or is refused with one
``jaxtune: error:`` line and exit 2 — never a traceback.

Configs are drawn from the schema itself (every section and key, with values of right and wrong
types, in and out of range), on cheap tasks, so a run that is accepted finishes in about a second.
CI runs a fixed, derandomized budget; ``JAXTUNE_FUZZ_EXAMPLES=N`` (with
``JAXTUNE_HYPOTHESIS_EXPLORE=1`` for new draws) runs a longer search locally.
"""

import math
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxtune import cli

SETTINGS = settings(
    max_examples=int(os.environ.get("JAXTUNE_FUZZ_EXAMPLES", 40)),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=not os.environ.get("JAXTUNE_HYPOTHESIS_EXPLORE"),
)

odd = st.one_of(
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.lists(st.integers(-2, 3), max_size=3),
)
small = st.integers(-1, 6)
TASKS = ["branin", "hartmann3", "rosenbrock", "pbt_toy", "no_such_task"]
STRATEGIES = ["random", "grid", "halton", "coarse_to_fine", "successive_halving", "hyperband", "pbt", "asha",
              "median", "no_such_strategy"]  # fmt: skip
NAMES = ["x1", "x2", "x3", "h0", "h1", "steps", "bad name"]


def maybe(strategy):
    """Mostly ``strategy``'s values (5 in 6), sometimes anything at all."""
    return st.one_of(strategy, strategy, strategy, strategy, strategy, odd)


param = st.fixed_dictionaries(
    {"type": st.one_of(st.sampled_from(["float", "int", "choice"]), odd)},
    optional={
        "low": maybe(st.one_of(st.integers(-3, 4), st.floats(-3, 4))),
        "high": maybe(st.one_of(st.integers(-3, 40), st.floats(-3, 40))),
        "scale": maybe(st.sampled_from(["linear", "log", "reverse_log"])),
        "values": maybe(st.lists(st.one_of(st.integers(0, 3), st.text(max_size=2)), max_size=3)),
        "static": st.booleans(),
        "masked": st.booleans(),
    },
)
# Configs a user would write (each value of the right kind), so that many of them run ...
plausible = st.fixed_dictionaries(
    {
        "task": st.one_of(
            st.fixed_dictionaries({"name": st.sampled_from(["branin", "hartmann3", "rosenbrock"])}),
            st.fixed_dictionaries({"name": st.just("pbt_toy"), "steps": st.sampled_from([8, 12, 40])}),
        )
    },
    optional={
        "tune": st.fixed_dictionaries(
            {},
            optional={
                "strategy": st.sampled_from(STRATEGIES[:-1]),
                "trials": st.integers(1, 8),
                "rounds": st.integers(1, 3),
                "seed": st.integers(0, 3),
                "mode": st.sampled_from(["min", "max"]),
                "select": st.sampled_from(["final", "best_step"]),
                "timeout": st.sampled_from([30, "1m"]),
                "max_batch": st.integers(1, 8),
                "seeds": st.integers(1, 3),
                "aggregate": st.sampled_from(["mean", "median", "lcb"]),
                "constraints": st.lists(st.sampled_from(["value < 50", "x1 > 0", "Q >= 0.1"]), max_size=2),
            },
        ),
        "strategy": st.dictionaries(
            st.sampled_from(["top_fraction", "segment", "min_steps", "eta", "configs", "quantile", "grace"]),
            st.one_of(st.integers(1, 8), st.floats(0.05, 1.0)),
            max_size=2,
        ),
    },
)
# ... and anything the schema allows, with values of any type, in and out of range.
wild = st.fixed_dictionaries(
    {"task": st.fixed_dictionaries({"name": maybe(st.sampled_from(TASKS))}, optional={"steps": maybe(small)})},
    optional={
        "tune": st.fixed_dictionaries(
            {},
            optional={
                "strategy": maybe(st.sampled_from(STRATEGIES)),
                "trials": maybe(small),
                "rounds": maybe(small),
                "seed": maybe(small),
                "mode": maybe(st.one_of(st.sampled_from(["min", "max"]), st.lists(st.sampled_from(["min", "max"]),
                                                                                   max_size=3))),
                "metric": maybe(st.one_of(st.sampled_from(["value", "Q", "loss"]),
                                          st.lists(st.sampled_from(["value", "Q", "loss"]), max_size=3))),
                "seeds": maybe(small),
                "aggregate": maybe(st.sampled_from(["mean", "median", "lcb", "max"])),
                "constraints": maybe(st.lists(st.sampled_from(["value < 50", "x1 > 0", "Q >= 0.1", "bad spec",
                                                               "nope < 1"]), max_size=2)),
                "select": maybe(st.sampled_from(["final", "best_step"])),
                "timeout": maybe(st.sampled_from([30, "1m", "0s", "-1", "soon"])),
                "max_batch": maybe(small),
                "tie_break": maybe(st.sampled_from(["value", "Q"])),
            },
        ),
        "strategy": st.dictionaries(
            st.sampled_from(["top_fraction", "segment", "min_steps", "eta", "configs", "quantile", "grace", "inner",
                             "initial", "fidelity"]),  # fmt: skip
            maybe(small),
            max_size=3,
        ),
        "space": st.dictionaries(st.sampled_from(NAMES), param, max_size=3),
    },
)
config = st.one_of(plausible, wild)


def toml(value, key=None) -> str:
    """A TOML document (tables of tables) or value, for the drawn dicts."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return quoted(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    raise TypeError(value)


def quoted(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped, the rest as it is."""
    out = []
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def document(cfg: dict) -> str:
    lines = []

    def table(path: list[str], body: dict):
        scalars = {k: v for k, v in body.items() if not isinstance(v, dict)}
        lines.append(f"[{'.'.join(quoted(p) for p in path)}]")
        lines.extend(f"{quoted(k)} = {toml(v)}" for k, v in scalars.items())
        for k, v in body.items():
            if isinstance(v, dict):
                table([*path, k], v)

    for section, body in cfg.items():
        table([section], body)
    return "\n".join(lines) + "\n"


@SETTINGS
@given(config)
def test_any_config_runs_or_is_refused_in_one_line(tmp_path_factory, capsys, cfg):
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / "c.toml"
    path.write_text(document(cfg))
    try:
        code = cli.main(["run", str(path), "--quiet", "--storage", str(folder / "f.db")])
    except SystemExit as e:  # argparse
        code = e.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if code == 2:
        assert err.startswith("jaxtune: error: "), err
    else:
        assert code in (0, 1), (code, err)
    OUTCOMES[code] = OUTCOMES.get(code, 0) + 1


OUTCOMES: dict = {}  # exit codes seen (a longer local run prints them: pytest -s)


def teardown_module():
    print(f"\nfuzzed configs by exit code: {OUTCOMES}")


@pytest.fixture(autouse=True)
def _shared_compile_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("JAXTUNE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "xla"))
