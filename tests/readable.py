"""What a reader sees in a drawn figure: tick labels rendered as text, none overlapping."""

import itertools


def shown_text(fig):
    """Every visible, non-empty text of ``fig`` after drawing: ``[(text artist, its box), ...]``."""
    from matplotlib.text import Text

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return [(t, t.get_window_extent(renderer)) for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def assert_readable(fig):
    """No raw mathtext (``$``, ``\\mathdefault``) in any tick label, and no two tick labels of one
    axis overlapping (more than a pixel each way)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        for axis in (ax.xaxis, ax.yaxis):
            labels = [t for t in axis.get_ticklabels(which="both") if t.get_visible() and t.get_text().strip()]
            for t in labels:
                assert "$" not in t.get_text() and "\\" not in t.get_text(), f"raw tick label {t.get_text()!r}"
            boxes = [(t.get_text(), t.get_window_extent(renderer).expanded(1, 1).padded(-1)) for t in labels]
            for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2):
                assert not box_a.overlaps(box_b), f"tick labels {a!r} and {b!r} overlap on {ax.get_label() or ax}"
