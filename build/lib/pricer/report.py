"""report.html for a lab run: the leaderboard, every evaluation's charts, training loss, timings.

    from pricer.report import write_report
    write_report("runs/2026-11-23_12.00.00")      # -> runs/.../report.html, viewable offline

One self-contained page (plotly's JavaScript is embedded once), so it opens from a laptop's
disk or a CI artifact with no network.
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
    from pricer.leaderboard import leaderboard, load_results

    run_dir = Path(run_dir)
    results_dir = run_dir / "results"
    table, bars = leaderboard(results_dir, reference=True)
    parts = [f"<h1>pricer lab report</h1>{_run_info(run_dir)}",
             "<h2>Leaderboard</h2><p class=note>Average absolute error on the test items, lower is "
             "better. Grey rows are the course's published figures on its real Amazon data: compare "
             "the ordering, not the dollars.</p>", _table(table), _plot(bars, first=True)]
    loss = _loss_chart(run_dir / "outputs")
    if loss is not None:
        parts += ["<h2>Training loss</h2>", _plot(loss)]
    for result in sorted(load_results(results_dir), key=lambda r: r.metrics["error"]):
        trend, scatter = result.figures()
        parts += [f"<h2>{html.escape(result.name)}</h2><p>{html.escape(result.summary())}</p>",
                  _plot(trend), _plot(scatter)]
    notebooks = sorted(run_dir.glob("*.ipynb"))
    parts.append("<h2>Executed notebooks</h2><ul>" + "".join(
        f'<li><a href="{n.name}">{n.name}</a></li>' for n in notebooks) + "</ul>")
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
    return (f"<p>Preset <b>{html.escape(str(state.get('preset', '?')))}</b>, started "
            f"{html.escape(str(state.get('started', '?')))}, on {html.escape(machine)}.</p>"
            f"<table><tr><th>notebook</th><th>wall time</th></tr>{rows}"
            f"<tr><th>total</th><th>{total / 60:.1f} min</th></tr></table>")


def _table(df) -> str:
    columns = ["name", "error", "rmsle", "r2", "hit_rate", "unparsed", "size", "source"]
    head = "".join(f"<th>{c}</th>" for c in columns)
    body = ""
    for _, row in df.iterrows():
        course = "course" in str(row.get("source", ""))
        cells = "".join(f"<td>{_fmt(c, row.get(c))}</td>" for c in columns)
        body += f"<tr class={'course' if course else 'ours'}>{cells}</tr>"
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(column: str, value) -> str:
    if value is None or value != value:  # NaN: the course rows have no size or r²
        return ""
    if column == "error":
        return f"${value:,.2f}"
    if column in ("size", "unparsed"):
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return html.escape(str(value))


def _loss_chart(outputs: Path):
    """Training loss per step from the newest trainer_state.json, if a training ran."""
    states = sorted(outputs.glob("**/trainer_state.json"), key=lambda p: p.stat().st_mtime)
    if not states:
        return None
    import plotly.graph_objects as go

    history = [h for h in json.loads(states[-1].read_text())["log_history"] if "loss" in h]
    fig = go.Figure(go.Scatter(x=[h["step"] for h in history], y=[h["loss"] for h in history],
                               mode="lines+markers"))
    fig.update_layout(xaxis_title="step", yaxis_title="training loss (completion tokens)",
                      template="plotly_white", height=360)
    return fig


def _plot(fig, first: bool = False) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=first)
