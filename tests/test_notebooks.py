"""The five notebooks: stored clean and opening alike (static checks), executed cleanly (output checks),
and the course code they write out equal to the package's (tagged cells run here against pricer).

    python -m pytest -q tests/test_notebooks.py                      # static + code checks (seconds)
    PRICER_EXECUTED_RUN=runs/<stamp> python -m pytest -q tests/test_notebooks.py -k executed

The lab test (tests/test_lab.py, marked `lab`) calls `output_problems` on every notebook it executes.
"""

import ast
import os
import re
from pathlib import Path

import nbformat
import pytest

from pricer import lab, session

NOTEBOOKS = [lab.NOTEBOOK_DIR / f"{name}.ipynb" for name in lab.NOTEBOOKS]
MAX_LINES = 20  # a code cell a student reads at a glance (STYLE.md: about 15)
ANSI = re.compile(r"\x1b\[")  # cursor moves ([A), erases and colours: a terminal's, not a notebook's
WARNING = re.compile(r"Warning|warn\(")
PLOTLY = "application/vnd.plotly.v1+json"


def load(path):
    return nbformat.read(path, as_version=4)


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def tagged(nb, tag: str) -> list[str]:
    """The sources of the code cells carrying `tag`, in order."""
    return [c.source for c in code_cells(nb) if tag in c.metadata.get("tags", [])]


# ----- executed notebooks --------------------------------------------------------------------

def _texts(output) -> list[str]:
    """The plain text of one output: a stream's, a result's text/plain, an error's traceback."""
    if output.output_type == "stream":
        return [output.text]
    if output.output_type == "error":
        return ["\n".join(output.traceback)]
    data = output.get("data", {})
    return [data[m] for m in ("text/plain", "text/markdown") if isinstance(data.get(m), str)]


def _merged(outputs) -> list:
    """Outputs as a reader sees them: consecutive chunks of one stream joined (nbclient keeps each write)."""
    merged = []
    for output in outputs:
        if (output.output_type == "stream" and merged and merged[-1].output_type == "stream"
                and merged[-1].name == output.name):
            merged[-1] = nbformat.v4.new_output("stream", name=output.name, text=merged[-1].text + output.text)
        else:
            merged.append(output)
    return merged


def output_problems(nb) -> list[str]:
    """Everything in an executed notebook a student should not see: errors, tracebacks, warnings,
    stderr, terminal control codes, redrawn bars, Out[] results, long tables, crowded chart cells."""
    problems = []
    for n, cell in enumerate(code_cells(nb), 1):
        where = f"code cell {n} ({cell.source.splitlines()[0][:50] if cell.source else ''!r})"
        outputs = _merged(cell.get("outputs", []))
        charts = 0
        for output in outputs:
            kind = output.output_type
            if kind == "error":
                problems.append(f"{where}: error {output.ename}: {output.evalue[:200]}")
            if kind == "execute_result":
                problems.append(f"{where}: an Out[] result (IPython keeps it alive): "
                                f"{output.get('data', {}).get('text/plain', '')[:80]!r}")
            if kind == "stream" and output.name == "stderr":
                problems.append(f"{where}: printed to stderr: {output.text[:200]!r}")
            for text in _texts(output):
                if kind != "error" and "Traceback" in text:
                    problems.append(f"{where}: a traceback in the output: {text[:200]!r}")
                if kind != "error" and ANSI.search(text):
                    problems.append(f"{where}: terminal control codes: {text[:120]!r}")
                if kind == "stream" and "\r" in text.replace("\r\n", "\n"):
                    problems.append(f"{where}: a redrawn line (\\r, a progress bar): {text[:120]!r}")
                found = WARNING.search(text)
                if found and kind != "error":
                    line = next(line for line in text.splitlines() if WARNING.search(line))
                    problems.append(f"{where}: warning text: {line[:200]!r}")
                if "Loading weights" in text:
                    problems.append(f"{where}: a weight-loading progress fragment")
            html = output.get("data", {}).get("text/html", "") if kind in ("display_data", "execute_result") else ""
            if isinstance(html, str) and html.count("<tr") > 25:
                problems.append(f"{where}: an HTML table of {html.count('<tr')} rows")
            charts += PLOTLY in output.get("data", {}) if kind == "display_data" else 0
        if charts > 2:
            problems.append(f"{where}: {charts} charts in one cell (two at most)")
    return list(dict.fromkeys(problems))


def executed_runs() -> list[Path]:
    folder = os.environ.get("PRICER_EXECUTED_RUN")
    return sorted(Path(folder).glob("*.ipynb")) if folder else []


@pytest.mark.skipif(not executed_runs(), reason="set PRICER_EXECUTED_RUN to a lab run folder to check its notebooks")
@pytest.mark.parametrize("path", executed_runs(), ids=lambda p: p.stem)
def test_executed_notebook_output_is_clean(path):
    assert output_problems(load(path)) == []


def test_the_output_check_catches_what_it_must():
    nb = nbformat.v4.new_notebook()
    out = nbformat.v4
    nb.cells = [out.new_code_cell("model", outputs=[out.new_output("execute_result", data={"text/plain": "Llama"},
                                                                   execution_count=1)]),
                out.new_code_cell("fit()", outputs=[out.new_output("stream", name="stderr", text="x\x1b[A\r50%")]),
                out.new_code_cell("go()", outputs=[out.new_output("stream", name="stdout",
                                                                  text="a.py:3: UserWarning: no\n  warn(x)\n")]),
                out.new_code_cell("boom()", outputs=[out.new_output("error", ename="ValueError", evalue="bad",
                                                                    traceback=["Traceback", "ValueError: bad"])]),
                out.new_code_cell("fine()", outputs=[out.new_output("stream", name="stdout", text="all good\n")])]
    problems = output_problems(nb)
    for expected in ("code cell 1 ('model'): an Out[] result", "code cell 2 ('fit()'): printed to stderr",
                     "code cell 2 ('fit()'): terminal control codes", "code cell 2 ('fit()'): a redrawn line",
                     "code cell 3 ('go()'): warning text", "code cell 4 ('boom()'): error ValueError"):
        assert any(p.startswith(expected) for p in problems), (expected, problems)
    assert not any("cell 5" in p for p in problems)
