import os
import pathlib
import re
import subprocess

import jax.numpy as jnp
import numpy as np
import pytest
from browser import FLAGS, chromium

import jaxtune as jt
from jaxtune.analysis import figures, report
from jaxtune.analysis.figures import axes

SPACE = jt.Space(
    {
        "lr": jt.Float(1e-4, 1.0, scale="log"),
        "b1": jt.Float(0.9, 0.999, scale="reverse_log"),
        "width": jt.Int(4, 256, scale="log"),
        "act": jt.Choice(["relu", "tanh", "gelu"]),
    }
)


def objective(hp, key):
    act = {"relu": 0.0, "tanh": 0.1, "gelu": 0.2}[hp["act"]]
    return {"loss": (jnp.log10(hp["lr"]) + 2) ** 2 + jnp.log10(1 - hp["b1"]) ** 2 + act + 0 * hp["width"]}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    db = tmp_path_factory.mktemp("report") / "s.db"
    jt.tune(objective, SPACE, "coarse_to_fine", trials=16, rounds=3, metric="loss", storage=str(db), progress=False)
    return jt.Result.load(db)


def test_axis_scales_follow_the_space_and_the_values(study):
    assert [figures.axis_kind(study, n, []) for n in SPACE.names] == ["log", "reverse_log", "log", "choice"]
    bare = jt.Result(study.trials, "loss")  # no stored space: guessed from the values
    assert axes._guess_scale([1e-4, 3e-3, 0.1]) == "log"
    assert axes._guess_scale([0.9, 0.95, 0.999]) == "reverse_log"
    assert axes._guess_scale([0.2, 0.5, 0.7]) == "linear"
    assert figures.axis_kind(bare, "act", ["relu", "tanh"]) == "choice"
    np.testing.assert_allclose(axes._reverse_log([0.9, 0.99, 0.999]), [1, 2, 3])


def test_parameter_figure_draws_each_scale_rounds_boxes_and_the_best(study):
    pytest.importorskip("matplotlib")
    boxes = figures.round_boxes(study)
    assert len(boxes) == 3 and np.allclose(boxes[0][0], 0) and np.allclose(boxes[0][1], 1)
    assert all((hi - lo).max() < (hi0 - lo0).max() for (lo, hi), (lo0, hi0) in zip(boxes[1:], boxes))  # it zooms
    fig = figures.plot_parameters(study)
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]
    assert [ax.get_xscale() for ax in axes] == ["log", "function", "log", "linear"]
    assert [t.get_text() for t in axes[3].get_xticklabels()] == ["relu", "tanh", "gelu"]
    assert "study 'default': loss (min), 48 trials" in fig._suptitle.get_text()
    for ax in axes:
        assert len(ax.collections) >= 3 + 1 + 0  # a scatter per round and the best trial's star
    assert sum(len(c.get_segments()) for c in axes[0].collections if hasattr(c, "get_segments")) == 3  # boxes
    bar = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"][0]
    assert [t.get_text() for t in bar.get_yticklabels()] == ["0", "1", "2"]  # whole rounds only
    figures.pyplot().close(fig)


def test_html_report_is_self_contained_with_every_figure(study, tmp_path):
    pytest.importorskip("matplotlib")
    page = report.html(study, str(tmp_path / "rep"))
    with open(page) as f:
        text = f.read()
    assert sorted(os.listdir(tmp_path / "rep")) == sorted(
        ["index.html", "history.png", "parameters.png", "importance.png", "parallel.png", "landscape.png"]
    )
    assert text.count("data:image/png;base64,") == 5 and not re.search(r"(src|href)=\"(https?:|//)", text)
    assert "which hyperparameters mattered" in text and 'class="sortable"' in text
    assert f"<h2>all {len(study)} trials</h2>" in text and text.count("<tr><td>") == len(study)  # every trial
    header = re.search(r"<thead><tr>(.*?)</tr>", text).group(1)
    assert header == "".join(f"<th>{h}</th>" for h in report.table_cells(study, 1)[0])  # as the text table
    assert "<h2>best 3 trials</h2>" in pathlib.Path(report.html(study, str(tmp_path / "top"), top=3)).read_text()


def load_in_chromium(path, tmp_path, *extra):
    flags = [*FLAGS, f"--user-data-dir={tmp_path / 'chrome'}", "--enable-logging=stderr", "--v=0"]
    run = subprocess.run([chromium(), *flags, *extra, f"file://{path}"], capture_output=True, text=True, timeout=120)
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line]
    errors = [line for line in console if "Uncaught" in line or ":ERROR:CONSOLE" in line]
    return run, errors


def test_html_report_loads_in_headless_chromium_without_errors(study, tmp_path):
    pytest.importorskip("matplotlib")
    page = report.html(study, str(tmp_path / "rep"))
    run, errors = load_in_chromium(page, tmp_path, "--dump-dom")
    assert errors == [] and 'data-ready="1"' in run.stdout  # its script ran to the end
    shot = tmp_path / "shot.png"
    load_in_chromium(page, tmp_path, f"--screenshot={shot}", "--window-size=1200,1600")
    import matplotlib.image

    assert matplotlib.image.imread(shot)[..., :3].std() > 0.05  # something was drawn
    broken = tmp_path / "broken.html"
    broken.write_text("<html><body><script>notDefined();</script></body></html>")
    assert load_in_chromium(broken, tmp_path, "--dump-dom")[1]  # the check can fail


def test_population_figures_draw_curves_and_lineage(tmp_path):
    pytest.importorskip("matplotlib")
    from jaxtune.analysis import live
    from jaxtune.tasks import get

    task, db, seen = get("pbt_toy", steps=40), str(tmp_path / "pbt.db"), []

    def look(event):  # the live view, from inside the running population, after its second segment
        if event["round"] == 1:
            seen.append(live._render(db, None, str(tmp_path / "live"), False))

    result = jt.tune(task.objective, task.space, "pbt", trials=4, metric="Q", mode="max", storage=db,
                     strategy_options={"segment": 4, "quantile": 0.5}, progress=look)  # fmt: skip
    ((status, page),) = seen  # its lanes still training: their latest point, no trial record yet
    assert status["state"] == "running" and status["in_progress"] >= 1
    assert f"<h2>in progress: {status['in_progress']} trial" in page and "<td>8</td>" in page  # at step 8
    assert result.lineage
    paths = figures.write_figures(result, tmp_path)
    assert {"curves", "lineage", "history", "parameters", "parallel"} <= set(paths)
    label = figures.plot_history(result).axes[0].get_xlabel()  # PBT's replaced lanes, not "diverged"
    assert "exploited" in label and "diverged" not in label, label
    fig = figures.plot_lineage(result)  # a panel per hyperparameter, each on its own scale, steps from 0
    from readable import assert_readable

    assert_readable(fig)
    assert_readable(figures.plot_curves(result))
    assert [ax.get_ylabel() for ax in fig.axes] == result.param_names
    for ax, name in zip(fig.axes, result.param_names):
        ys = [t["params"][name] for t in result.trials]
        kind = axes.axis_kind(result, name, ys)
        assert ax.get_yscale() == {"log": "log", "reverse_log": "function"}.get(kind, "linear")
        assert ax.get_xscale() == "linear" and ax.get_xlim()[0] == 0
    logged = jt.Result(result.trials, result.metric, result.mode, config={**result.config, "space": {
        name: {"type": "Float", "scale": "log"} for name in result.param_names}}, lineage=result.lineage)  # fmt: skip
    assert {ax.get_yscale() for ax in figures.plot_lineage(logged).axes} == {"log"}


def test_held_out_metrics_stay_out_of_the_table_unless_asked():
    def objective(hp, key):
        return {"train_loss": hp["x"], "test_accuracy": 1 - hp["x"], "val_accuracy": 1 - hp["x"] ** 2, "n_params": 5.0}

    result = jt.tune(objective, jt.Space({"x": jt.Float(0.0, 1.0)}), "random", trials=4, metric="val_accuracy",
                     mode="max", progress=False)  # fmt: skip
    header = report.table(result).splitlines()[0].split()
    assert header[header.index("x") + 1:] == ["val_accuracy", "n_params", "train_loss", "status"]  # selection first
    assert "test_accuracy" in report.table(result, show_test=True).splitlines()[0]
    text = report.summary(result)
    assert "(held-out test_accuracy not in the table" in text and "held out: test_accuracy=" in text
    assert "held-out" not in report.summary(result, show_test=True).split("best trial")[0]


def test_a_pbt_study_reads_as_schedules_and_refuses_importance():
    task = jt.tasks.get("pbt_toy", steps=40)
    result = jt.tune(task.objective, task.space, "pbt", trials=4, metric="Q", mode="max",
                     strategy_options={"segment": 4, "quantile": 0.5}, progress=False)  # fmt: skip
    best = result.best
    plan = report.schedule(result, best)
    assert plan["h0"][0][0] == 0 and [s for s, _ in plan["h0"]] == sorted(s for s, _ in plan["h0"])
    assert plan["h0"][-1][1] == best["params"]["h0"]  # the schedule ends at the trial's own values
    changed = [n for n, v in plan.items() if len(v) > 1]
    assert changed  # exploit/explore changed something along the best lineage
    text = report.summary(result)
    first = text.split("rank")[1].splitlines()[1]
    assert f"{report._fmt(plan[changed[0]][0][1])}→{report._fmt(plan[changed[0]][-1][1])}" in first
    assert "trained with (PBT schedule, from step: value):" in text and "(a→b: a PBT trial's" in text
    assert "no hyperparameter importance: a population's trials" in text
    with pytest.raises(jt.InputError, match="not independent samples"):
        jt.importance(result)


def test_every_figure_of_a_study_with_log_and_reverse_log_axes_is_readable(study):
    """Log, reverse-log and choice axes: every tick label plain text (no raw mathtext), none
    overlapping; log ticks are powers of ten as a reader writes them."""
    pytest.importorskip("matplotlib")
    from readable import assert_readable

    imps = jt.importance(study)
    drawn = [figures.plot_history(study), figures.plot_parameters(study), figures.plot_parallel(study),
             figures.plot_importance(imps)]  # fmt: skip
    for fig in drawn:
        assert_readable(fig)
    lr = [ax for ax in drawn[1].axes if ax.get_xlabel() == "lr"][0]
    shown = {t.get_text() for t in lr.get_xticklabels() if t.get_visible()}
    assert {"10⁻⁴", "10⁻²", "10⁰"} <= shown, shown
    for fig in drawn:
        figures.pyplot().close(fig)


def test_the_readability_check_fails_on_raw_mathtext_and_overlaps():
    pytest.importorskip("matplotlib")
    from readable import assert_readable

    plt = figures.pyplot()
    with plt.rc_context({"text.parse_math": False}):  # what the figures did: mathtext drawn raw
        fig, ax = plt.subplots()
        ax.set_xscale("log")
        ax.set_xlim(1e-4, 1)
    with pytest.raises(AssertionError, match="raw tick label"):
        assert_readable(fig)
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.set_xticks(range(6), ["a long label"] * 6)
    with pytest.raises(AssertionError, match="overlap"):
        assert_readable(fig)
    plt.close("all")


def test_the_history_and_summary_name_what_happened_to_each_trial_not_shown():
    pytest.importorskip("matplotlib")

    def objective(hp, key):
        return {"loss": hp["x"], "size": 10140.0 + 0 * hp["x"]}

    space = jt.Space({"x": jt.Float(0.0, 1.0)})
    nothing = jt.tune(objective, space, "random", trials=4, rounds=1, metric="loss", constraints=["loss < -1"],
                      progress=False)  # fmt: skip
    text = report.summary(nothing)
    assert "4 trials in 1 round," in text
    assert "no trial can be selected: none finished feasible and finite (4 infeasible)" in text
    label = figures.plot_history(nothing).axes[0].get_xlabel()
    assert label.endswith("not shown: 4 infeasible"), label
    seeded = jt.tune(objective, space, "random", trials=2, rounds=2, metric="loss", seeds=2, progress=False)
    line = [x for x in report.summary(seeded).splitlines() if "over 2 seeds" in x][0]
    assert line.count("mean") == 1 and "± " in line, line  # the aggregate is the mean: said once
    assert "size=10140" in report.summary(seeded)  # a whole count, not 1.014e+04
    figures.pyplot().close("all")


def test_several_studies_in_one_file_get_a_report_each_and_an_html_file_is_a_file(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from jaxtune import cli

    db = tmp_path / "s.db"
    for name in ("a", "b"):
        jt.tune(objective, SPACE, "random", trials=8, rounds=1, metric="loss", storage=str(db), study=name,
                progress=False)  # fmt: skip
    for name in ("a", "b"):
        assert cli.main(["report", str(db), "--study", name]) == 0
    assert (tmp_path / "s-a-report" / "index.html").exists() and (tmp_path / "s-b-report" / "index.html").exists()
    assert "study &#x27;b&#x27;" in (tmp_path / "s-b-report" / "index.html").read_text()
    assert cli.main(["report", str(db), "--study", "a", "--html", str(tmp_path / "page.html")]) == 0
    assert (tmp_path / "page.html").is_file() and (tmp_path / "history.png").exists()
    out = capsys.readouterr().out
    trial = re.search(r"^\s+1\s+(\d+:\d+)\s", out, re.M).group(1)  # the table's trial column: ROUND:SLOT
    assert trial in (tmp_path / "page.html").read_text()  # the HTML table has it too, as export --trial takes it


def test_the_landscape_draws_a_metric_over_two_parameters_on_their_own_scales(study):
    """On a grid each grid point is a cell (the brightest where the optimum is), on random trials
    cells bin the space on each axis's scale; tick labels read as written, the colour bar names
    the metric; a choice, an unknown name or metric is refused by name."""
    pytest.importorskip("matplotlib")
    from readable import assert_readable

    space = jt.Space({"lr": jt.Float(1e-4, 1.0, scale="log"), "b1": jt.Float(0.9, 0.999, scale="reverse_log")})

    def bowl(hp, key):
        return {"acc": -((jnp.log10(hp["lr"]) + 2) ** 2) - (jnp.log10(1 - hp["b1"]) + 2) ** 2}

    grid = jt.tune(bowl, space, "grid", trials=25, metric="acc", mode="max", progress=False)
    fig = figures.plot_landscape(grid, "lr", "b1")
    assert_readable(fig)
    ax = fig.axes[0]
    cells = np.ma.filled(ax.collections[0].get_array(), np.nan).reshape(5, 5)  # [b1, lr]
    row, col = np.unravel_index(np.nanargmax(cells), cells.shape)
    assert (row, col) == (2, 2)  # b1 = 0.99 (1 - b1 = 10^-2), lr = 10^-2: the optimum
    assert ax.get_xlabel() == "lr" and ax.get_ylabel().startswith("b1") and "grid" in ax.get_title()
    assert fig.axes[1].get_ylabel().startswith("acc")
    assert {"10⁻⁴", "10⁻²", "10⁰"} <= {t.get_text() for t in ax.get_xticklabels() if t.get_visible()}
    binned = figures.plot_landscape(study, "lr", "b1")
    assert_readable(binned)
    assert "binned" in binned.axes[0].get_title() or "grid" in binned.axes[0].get_title()
    with pytest.raises(jt.InputError, match="'act' is a choice of non-numbers"):
        figures.plot_landscape(study, "lr", "act")
    with pytest.raises(jt.InputError, match="mode must be 'min' or 'max', got 'best'"):
        figures.plot_landscape(study, "lr", "b1", mode="best")
    with pytest.raises(jt.InputError, match="'momentum' is not a hyperparameter"):
        figures.plot_landscape(study, "lr", "momentum")
    with pytest.raises(jt.InputError, match="'accuracy' is not a metric"):
        figures.plot_landscape(study, "lr", "b1", metric="accuracy")
    assert figures.landscape_pair(study) == ("lr", "b1")
    figures.pyplot().close("all")


def test_a_phase_diagram_over_numeric_choices_greys_what_was_never_reached():
    """Weight decay 0 and learning rate as numeric choices: a cell per value in sorted order,
    ticks reading the values; a milestone's "never" (budget + 1) drawn grey, apart from the colour
    scale; the best by the given mode starred."""
    pytest.importorskip("matplotlib")
    from readable import assert_readable

    space = jt.Space({"wd": jt.Choice([1.0, 0.0, 0.1]), "lr": jt.Choice([1e-3, 1e-2])})

    def grokking(hp, key):  # generalises sooner with more weight decay and a larger lr; never without
        return {"steps": jnp.where(hp["wd"] > 0, 100 / (hp["wd"] * hp["lr"] * 100), 501.0), "acc": hp["wd"]}

    result = jt.tune(grokking, space, "grid", trials=6, metric="acc", mode="max", progress=False)
    fig = figures.plot_landscape(result, "wd", "lr", "steps", mode="min", unreached=501)
    assert_readable(fig)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.0", "0.1", "1.0"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0.001", "0.01"]
    grey, colour = (np.ma.getmaskarray(c.get_array()).reshape(2, 3) for c in ax.collections[:2])
    assert (~grey[:, 0]).all() and grey[:, 1:].all()  # wd = 0: never, grey ...
    assert colour[:, 0].all() and (~colour[:, 1:]).all()  # ... and off the colour scale
    assert "grey: never (501)" in ax.get_title() and "min is better" in fig.axes[-1].get_ylabel()
    star = ax.collections[-1].get_offsets()[0]
    assert tuple(star) == (2, 1)  # wd = 1, lr = 1e-2: the fewest steps
    figures.pyplot().close("all")
