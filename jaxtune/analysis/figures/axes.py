"""Axes on each hyperparameter's own scale, and matplotlib loaded only when a figure is drawn."""

from __future__ import annotations

import functools
import math

import numpy as np

from jaxtune.errors import MissingDependencyError
from jaxtune.result import Result

_REVERSE_LOG_TICKS = (0.5, 0.8, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9999)


def pyplot():
    """matplotlib's pyplot on the Agg backend (no screen needed), or a clear error."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise MissingDependencyError("figures need matplotlib: pip install 'jaxtune[report]'") from e
    return plt


_SUPERSCRIPT = str.maketrans("-0123456789", "\u207b\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079")


def power_label(x: float) -> str:
    """``x`` on a log axis as plain text: ``10⁻⁴``, ``2×10⁻⁴`` (no mathtext to parse)."""
    if x <= 0 or not math.isfinite(x):
        return f"{x:g}"
    exponent = math.floor(math.log10(x) + 1e-9)
    coeff = round(x / 10.0**exponent, 6)
    if coeff >= 10:  # rounding carried into the next decade
        coeff, exponent = coeff / 10, exponent + 1
    power = "10" + str(exponent).translate(_SUPERSCRIPT)
    return power if coeff == 1 else f"{coeff:g}\u00d7{power}"


def _plain_log_ticks(fig) -> None:
    """Log axes' tick labels as plain text (:func:`power_label`) instead of matplotlib's mathtext,
    which is drawn raw (``$\\mathdefault{10^{-4}}$``) while the user's names are kept literal."""
    from matplotlib.ticker import LogFormatter

    class PowerFormatter(LogFormatter):
        def __call__(self, x, pos=None):
            return power_label(x) if super().__call__(x, pos) else ""

    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            for which in ("major", "minor"):
                f = getattr(axis, f"get_{which}_formatter")()
                if isinstance(f, LogFormatter) and not isinstance(f, PowerFormatter):
                    plain = PowerFormatter(base=f._base, labelOnlyBase=f.labelOnlyBase,
                                           minor_thresholds=f.minor_thresholds)  # fmt: skip
                    getattr(axis, f"set_{which}_formatter")(plain)


def plain_text(plot):
    """``plot`` drawing with mathtext off: a name such as ``$x$`` is shown as typed (an unbalanced
    ``$`` would fail), and log axes labelled in plain text (``10⁻⁴``) rather than in mathtext,
    which would be drawn raw."""
    @functools.wraps(plot)
    def drawn(*args, **kwargs):
        with pyplot().rc_context({"text.parse_math": False}):
            fig = plot(*args, **kwargs)
        if fig is not None:
            _plain_log_ticks(fig)
        return fig

    return drawn


def _reverse_log(x):
    return -np.log10(np.clip(1.0 - np.asarray(x, float), 1e-12, None))


def _reverse_log_inverse(y):
    return 1.0 - 10.0 ** -np.asarray(y, float)


def _guess_scale(xs) -> str:
    """The axis for values whose space is unknown: log over decades, 1-x for momentum-like values."""
    lo, hi = min(xs), max(xs)
    if lo > 0 and hi / lo > 50:
        return "log"
    if 0 <= lo and hi < 1 and (1 - lo) / (1 - hi) > 10:
        return "reverse_log"
    return "linear"


def axis_kind(result: Result, name: str, xs) -> str:
    """How to draw parameter ``name``: ``"log"``, ``"reverse_log"``, ``"linear"`` or ``"choice"``."""
    desc = (result.config.get("space") or {}).get(name)
    if desc is None:
        if xs and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs):
            return _guess_scale(xs)
        return "choice"
    if desc["type"] == "Choice":
        return "choice"
    return desc.get("scale", "linear")


def set_axis(ax, kind: str, xs, choices=None, axis: str = "x") -> None:
    """Puts ``ax``'s ``axis`` ("x" or "y") on the scale ``kind`` (see :func:`axis_kind`) for values ``xs``."""
    scale, set_ticks, set_lim = (getattr(ax, f"set_{axis}{what}") for what in ("scale", "ticks", "lim"))
    if kind == "log":
        scale("log")
    elif kind == "reverse_log":
        scale("function", functions=(_reverse_log, _reverse_log_inverse))
        span = _reverse_log([min(xs), max(xs)])
        ticks, last = [], -np.inf
        for t in _REVERSE_LOG_TICKS:  # in range, and at least a third of a decade apart
            at = float(_reverse_log(t))
            if span[0] - 0.15 <= at <= span[1] + 0.15 and at - last >= 0.33:
                ticks.append(t)
                last = at
        set_ticks(ticks, [f"{t:g}" for t in ticks])
    elif kind == "choice" and choices is not None:
        turn = 30 if len(choices) > 4 and axis == "x" else 0
        set_ticks(range(len(choices)), [str(c) for c in choices], rotation=turn)
        set_lim(-0.5, len(choices) - 0.5)
