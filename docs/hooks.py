"""mkdocs hook: the measurements page and its figures come from ``benchmarks/`` (one copy of each).

``benchmarks/README.md`` becomes the page ``benchmarks.md``, and the figures under
``benchmarks/results/`` are served at ``results/...``, where the guide's pages link them. Its
links to the guide are written for GitHub (``../docs/page.md``) and rewritten to the site's
(``page.md``) as the page is built.
"""

from __future__ import annotations

import pathlib

from mkdocs.structure.files import File

ROOT = pathlib.Path(__file__).resolve().parent.parent


def on_files(files, config):
    """Adds the measurements page and the committed figures to the site's files."""
    files.append(File.generated(config, "benchmarks.md", abs_src_path=str(ROOT / "benchmarks" / "README.md")))
    results = ROOT / "benchmarks" / "results"
    for path in sorted(results.rglob("*.png")):
        files.append(File.generated(config, f"results/{path.relative_to(results).as_posix()}", abs_src_path=str(path)))
    return files


def on_page_markdown(markdown, page, config, files):
    """Rewrites the measurements page's GitHub links to the guide (``../docs/x.md``) as site links."""
    if page.file.src_uri == "benchmarks.md":
        return markdown.replace("](../docs/", "](")
    return markdown
