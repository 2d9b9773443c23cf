"""report.html for a lab run: the leaderboard, every evaluation's charts, training loss, timings.

    from pricer.report import write_report
    write_report("runs/2026-11-23_12.00.00")      # -> runs/.../report.html, viewable offline

One self-contained page (plotly's JavaScript is embedded once), so it opens from a laptop's
disk or a CI artifact with no network. This run's leaderboard ranks its own results on the same
test items; the course's published figures and our GPU benchmark's come after it, in a
reference panel of their own, each labelled with its source (pricer.leaderboard).

The page is built by joining strings, not with a template engine: its shape is fixed (five
sections, two tables), every value that comes from data (names, notebook file names, settings)
passes through `html.escape` where it is written, and the only unescaped pieces are plotly's own
HTML and this file's literals. A Jinja template would add a dependency to the lab for that.
"""

import html
import json
import platform
from pathlib import Path

from pricer.env import redact

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{padding:4px 10px;border-bottom:1px solid #ddd;
text-align:right}td:first-child,th:first-child{text-align:left}.course{color:#888}
.note{color:#555;font-size:.9em}h2{margin-top:2em}"""


def write_report(run_dir: str | Path) -> Path:
    """Write run_dir/report.html from the run's results, checkpoints and lab.json."""
    from pricer.leaderboard import leaderboard, load_results, reference_board

    run_dir = Path(run_dir)
    results_dir = run_dir / "results"
    table, bars = leaderboard(results_dir)
    reference, reference_bars = reference_board()
    left_out = table.attrs.get("left_out") or []
    parts = [f"<h1>pricer lab report</h1>{_run_info(run_dir)}",
             f"<h2>Leaderboard</h2><p class=note>This run's results: average absolute error on the same "
             f"{table.attrs.get('size') or 0} test items (the first of the test split), lower is better.</p>",
             _table(table, ["name", "error", "rmsle", "r2", "hit_rate", "unparsed", "size"]), _plot(bars, first=True)]
    if left_out:
        parts.append(f"<p class=note>Not ranked here (other items): {html.escape(', '.join(left_out))}.</p>")
    parts += ["<h2>Reference figures</h2><p class=note>Measured elsewhere, not by this run: the course's "
              "published figures on its real Amazon data, and our benchmark's on a GPU. Compare orderings, "
              "not dollars.</p>", _table(reference, ["name", "error", "source"], css="course"), _plot(reference_bars)]
    loss = _loss_chart(run_dir / "outputs")
    if loss is not None:
        parts += ["<h2>Training loss</h2>", _plot(loss)]
    for result in sorted(load_results(results_dir), key=lambda r: r.metrics["error"]):
        trend, scatter = result.figures()
        parts += [f"<h2>{html.escape(result.name)}</h2><p>{html.escape(result.summary())}</p>",
                  _plot(trend), _plot(scatter)]
    notebooks = sorted(run_dir.glob("*.ipynb"))
    parts.append("<h2>Executed notebooks</h2><ul>" + "".join(
        f'<li><a href="{html.escape(n.name, quote=True)}">{html.escape(n.name)}</a></li>' for n in notebooks)
        + "</ul>")
    page = f"<!doctype html><meta charset=utf-8><title>pricer lab report</title><style>{STYLE}</style>"
    path = run_dir / "report.html"
    path.write_text(redact(page + "\n".join(parts)), encoding="utf-8")
    return path


def _run_info(run_dir: Path) -> str:
    state_file = run_dir / "lab.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {"done": {}}
    rows = "".join(f"<tr><td>{html.escape(n)}</td><td>{s:.0f} s</td></tr>" for n, s in state["done"].items())
    total = sum(state["done"].values())
    machine = f"{platform.machine()}, {platform.system()}, Python {platform.python_version()}"
    cpu_4bit = _cpu_4bit(run_dir / "outputs")
    kernels = f"<p class=note>4-bit layers on this CPU: {html.escape(cpu_4bit)}.</p>" if cpu_4bit else ""
    return (f"<p>Preset <b>{html.escape(str(state.get('preset', '?')))}</b>, started "
            f"{html.escape(str(state.get('started', '?')))}, on {html.escape(machine)}.</p>{kernels}"
            f"<table><tr><th>notebook</th><th>wall time</th></tr>{rows}"
            f"<tr><th>total</th><th>{total / 60:.1f} min</th></tr></table>")


def _cpu_4bit(outputs: Path) -> str | None:
    """Which CPU 4-bit kernels the newest training run recorded (pricer.patches.bitsandbytes.cpu_4bit_path)."""
    from pricer.runs import RUN_FILE, read_record

    records = sorted(outputs.glob(f"**/{RUN_FILE}"), key=lambda p: p.stat().st_mtime)
    return (read_record(records[-1].parent) or {}).get("cpu_4bit") if records else None


def _table(df, columns: list[str], css: str = "ours") -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(f"<tr class={css}>" + "".join(f"<td>{_fmt(c, row.get(c))}</td>" for c in columns) + "</tr>"
                   for _, row in df.iterrows())
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(column: str, value) -> str:
    if value is None or value != value:  # NaN: a missing figure
        return ""
    if column == "error":
        return f"${value:,.2f}"
    if column in ("size", "unparsed"):
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return html.escape(str(value))


def _loss_chart(outputs: Path):
    """Training and validation loss from the newest trainer_state.json, if a training ran."""
    states = sorted(outputs.glob("**/trainer_state.json"), key=lambda p: p.stat().st_mtime)
    if not states:
        return None
    from pricer.progress import loss_chart

    return loss_chart(json.loads(states[-1].read_text())["log_history"])


def _plot(fig, first: bool = False) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=first)
