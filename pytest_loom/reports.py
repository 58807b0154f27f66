"""Writing the gate's reports: ``summary.json``, ``summary.md`` and ``report.html`` in one folder.

The pytest session (``--loom-report=DIR``) and ``loom report merge`` both write through here, so
a merged report has exactly the bytes of a single run's. Each file is written atomically (a
temporary file, then ``os.replace``); the markdown is also appended to the file named by
``$GITHUB_STEP_SUMMARY``, as GitHub Actions expects, in one write.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._atomic import write_atomic
from ._html import render_html
from .report_text import markdown
from .summary import Summary

SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
REPORT_HTML = "report.html"
STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"


def write_reports(summary: Summary, directory: Path) -> list[Path]:
    """Write the three reports into ``directory`` (created if needed); returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    text = markdown(summary)
    files = {
        SUMMARY_JSON: summary.to_json(),
        SUMMARY_MD: text.encode(),
        REPORT_HTML: render_html(summary).encode(),
    }
    paths = []
    for name, data in files.items():
        paths.append(directory / name)
        write_atomic(directory / name, data)
    append_step_summary(text)
    return paths


def append_step_summary(text: str) -> Path | None:
    """Append ``text`` to ``$GITHUB_STEP_SUMMARY`` when it is set; returns the file."""
    target = os.environ.get(STEP_SUMMARY_ENV)
    if not target:
        return None
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    return Path(target)
