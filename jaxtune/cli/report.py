"""``jaxtune report STORAGE``: summarise a stored study (tables, CSV, figures, an HTML page)."""

from __future__ import annotations

import argparse
import os
import time

from jaxtune.cli.config import ConfigError, check_output, make_parent, positive_int
from jaxtune.errors import MissingDependencyError, Problems

__all__ = ["main", "add_parser"]


def is_babysit(path: str, study: str | None) -> bool:
    """Whether the study to report is a babysitting run (the only study, or the one named)."""
    from jaxtune.study.storage import Storage

    store = Storage(path, read_only=True)
    try:
        names = store.study_names() if study is None else [study]
        kinds = {(store.study_config(n) or {}).get("kind") for n in names}
    finally:
        store.close()
    return kinds == {"babysit"}


def study_count(path: str) -> int:
    """How many studies the file holds."""
    from jaxtune.study.storage import Storage

    store = Storage(path, read_only=True)
    try:
        return len(store.study_names())
    finally:
        store.close()


def html_target(html: str | None, storage: str, study: str, several: bool) -> tuple[str, str]:
    """``(folder, page)`` of the HTML report: ``--html FILE.html`` is that page (figures beside
    it), ``--html DIR`` a folder with ``index.html``; by default ``STORAGE-report/``, or
    ``STORAGE-STUDY-report/`` when the file holds several studies (one folder each, none
    overwriting another)."""
    if html and html.lower().endswith((".html", ".htm")):
        return os.path.dirname(html) or ".", os.path.basename(html)
    if html:
        return html, "index.html"
    stem = os.path.splitext(storage)[0]
    return (f"{stem}-{study}-report" if several else f"{stem}-report"), "index.html"


def main(args) -> int:
    """``jaxtune report``: the summary, then CSV, figures and the HTML report as asked."""
    from jaxtune.analysis import report
    from jaxtune.result import Result

    if args.serve:
        return serve(args)
    if is_babysit(args.storage, args.study):
        folder = None if args.no_html else args.html or os.path.splitext(args.storage)[0] + "-report"
        print(report.babysit_report(args.storage, args.study, folder))
        if folder:
            print(f"report: {os.path.join(folder, 'index.html')} (figures beside it)")
        return 0
    outputs = {"--csv": args.csv, "--curves-csv": args.curves_csv, "--plot": args.plot}
    problems = Problems(ConfigError)
    for flag, path in outputs.items():  # every output path checked before anything is read or drawn
        with problems.check():
            check_output(flag, path)
    with problems.check():
        if args.to_optuna is not None and "://" not in args.to_optuna:
            raise ConfigError(f"--to-optuna must be an Optuna storage URL such as sqlite:///optuna.db, got "
                              f"{args.to_optuna!r}")  # fmt: skip
    problems.raise_if_any("the arguments")
    for flag, path in outputs.items():
        if path:
            make_parent(flag, path)
    result = Result.load(args.storage, study=args.study)
    if args.tensorboard:
        print(f"tensorboard: {result.to_tensorboard(args.tensorboard)} (tensorboard --logdir {args.tensorboard})")
    if args.to_optuna:
        study = result.to_optuna(args.to_optuna)
        print(f"optuna: study {study.study_name!r} in {args.to_optuna} ({len(study.trials)} trials; "
              f"optuna-dashboard {args.to_optuna} opens it)")  # fmt: skip
    print(report.summary(result, top=args.top, show_test=args.show_test))
    if args.csv:
        result.to_csv(args.csv)
        print(f"csv: {args.csv}")
    if args.curves_csv:
        result.to_csv(args.curves_csv, curves=True)
        print(f"learning curves: {args.curves_csv} ({len(result.curve_rows())} points)")
    if args.plot:
        print(f"figure: {report.plot(result, args.plot)}")
    if not args.no_html:
        folder, page = html_target(args.html, args.storage, result.study, several=study_count(args.storage) > 1)
        parent = os.path.dirname(os.path.abspath(folder))
        if not os.access(parent, os.W_OK):
            raise ConfigError(f"--html {folder!r}: its directory {parent!r} is not writable (pass --html DIR)")
        try:
            print(f"report: {report.html(result, folder, show_test=args.show_test, page=page)} (figures beside it)")
        except MissingDependencyError:
            if args.html:
                raise
            print("(no HTML report: figures need matplotlib, pip install 'jaxtune[report]')")
    return 0


def serve(args) -> int:
    """``jaxtune report STORAGE --serve``: the live view until Ctrl-C, its state changes printed."""
    from jaxtune.analysis.live import LiveReport
    from jaxtune.errors import signal_handled

    written = [flag for flag, value in (("--csv", args.csv), ("--curves-csv", args.curves_csv), ("--plot", args.plot),
               ("--tensorboard", args.tensorboard), ("--to-optuna", args.to_optuna), ("--html", args.html),
               ("--no-html", args.no_html)) if value]  # fmt: skip
    if written:
        raise ConfigError(f"--serve shows the study live; {', '.join(written)} write{'s' if len(written) == 1 else ''} "
                          "files: run them in a separate `jaxtune report` (without --serve)")  # fmt: skip
    live = LiveReport(args.storage, args.study, host=args.host, port=args.port, show_test=args.show_test)
    print(f"live view of {args.storage} at {live.url} (Ctrl-C stops it)", flush=True)
    said = None
    try:
        while True:
            if live.status.get("state") != said:
                said = live.status.get("state")
                print(f"[{live.status.get('read')}] {live.status.get('message')}", flush=True)
            time.sleep(0.5)
    except KeyboardInterrupt:
        signal_handled()
        print("stopped serving")
    finally:
        live.close()
    return 0


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 0..65535 (0: any free one)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number in 0..65535 (0: any free port), got {text!r}")
    return value


def add_parser(sub) -> None:
    """Adds ``report`` to the CLI's subcommands."""
    rep = sub.add_parser("report", help="summarise a stored study")
    rep.add_argument("storage")
    rep.add_argument("--study")
    rep.add_argument("--top", type=positive_int, default=10, help="trials to list (default 10)")
    rep.add_argument("--show-test", action="store_true", help="show held-out (test) metrics in the table too")
    rep.add_argument("--csv", help="also write every trial to this CSV file")
    rep.add_argument("--curves-csv", help="also write every learning-curve point to this CSV file")
    rep.add_argument("--plot", help="write a figure (PNG) here")
    rep.add_argument("--tensorboard", metavar="DIR", help="also write TensorBoard event files here: a run per "
                     "trial, its curves as scalars, the HParams table")  # fmt: skip
    rep.add_argument("--to-optuna", metavar="URL", help="also write the study into this Optuna storage (e.g. "
                     "sqlite:///optuna.db) for optuna-dashboard and optuna.visualization")  # fmt: skip
    rep.add_argument("--html", help="the HTML report: a FILE.html (figures beside it) or a folder (default: STORAGE's "
                     "name + '-report', with the study's name when the file holds several)")
    rep.add_argument("--no-html", action="store_true", help="print the summary only")
    rep.add_argument("--serve", action="store_true", help="serve the report on localhost, refreshed as the sweep "
                     "writes (a live view beside a running sweep; Ctrl-C stops it)")  # fmt: skip
    rep.add_argument("--port", type=port_number, default=8000, help="the live view's port (default 8000; 0: any free)")
    rep.add_argument("--host", default="127.0.0.1", help="the live view's address (default 127.0.0.1: this machine)")
    rep.set_defaults(func=main)
