"""The leaderboard: every saved evaluation run in one table and one chart, best first.

    from pricer.leaderboard import leaderboard
    table, fig = leaderboard()                   # runs saved under $PRICER_RESULTS or ./results
    table, fig = leaderboard(reference=True)     # plus the course's published numbers, labelled

A run is one JSON file written by `Result.save` (see pricer.evaluator). When a name appears
more than once, its latest run wins. The course's figures were measured on the real Amazon
data with the full models; they are context for our runs, not results of this code.
"""

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from pricer.evaluator import Result, results_folder

# The course's published average absolute errors (2025 edition, real Amazon data, its test items).
COURSE_REFERENCE = {
    "Constant": 106.18,
    "Linear regression": 101.56,
    "Bag-of-words + LR": 76.81,
    "Random forest": 72.28,
    "XGBoost": 68.23,
    "Human": 87.62,
    "Neural network": 63.97,
    "Deep neural network": 46.49,
    "GPT-4.1-nano": 62.51,
    "Claude": 47.10,
    "GPT-5.1": 44.74,
    "Base Llama-3.2-3B 4-bit": 110.72,
    "Fine-tuned (lite)": 65.40,
    "Fine-tuned (full)": 39.85,
}
COURSE = "course (2025, real Amazon data)"
THIS_RUN = "this run"
COLUMNS = ["name", "model", "preset", "data", "size", "error", "rmsle", "r2", "hit_rate", "unparsed",
           "seconds", "date", "source"]


def load_results(results_dir=None) -> list[Result]:
    """Every saved run; a corrupt or older-schema file raises (naming it) instead of vanishing."""
    folder = results_folder(results_dir)
    return [Result.load(path) for path in sorted(folder.glob("*.json"))]  # cache/ holds .jsonl files


def _row(result: Result) -> dict:
    meta, m = result.meta, result.metrics
    return {"name": result.name, **{k: meta.get(k) for k in ("model", "preset", "data")},
            **{k: m.get(k) for k in ("size", "error", "rmsle", "r2", "hit_rate", "unparsed", "seconds")},
            "date": meta.get("date"), "source": THIS_RUN}


def leaderboard(results_dir=None, reference=False) -> tuple[pd.DataFrame, go.Figure]:
    """One row per run name (its latest run), sorted by average error, and a bar chart of it."""
    rows = [_row(result) for result in load_results(results_dir)]
    if reference:
        rows += [{"name": f"{name} (course, real data)", "error": error, "source": COURSE}
                 for name, error in COURSE_REFERENCE.items()]
    table = pd.DataFrame(rows, columns=COLUMNS)
    table["date"] = pd.to_datetime(table["date"], utc=True, format="ISO8601")
    table = table.sort_values("date", kind="stable").drop_duplicates("name", keep="last")
    table = table.sort_values("error", kind="stable").reset_index(drop=True)
    fig = px.bar(table, x="error", y="name", color="source", orientation="h", text_auto="$,.2f",
                 color_discrete_map={THIS_RUN: "firebrick", COURSE: "lightslategray"},
                 labels={"error": "Average absolute error ($)", "name": ""},
                 title="Price prediction leaderboard (lower is better)",
                 height=160 + 28 * len(table), width=1000, template="plotly_white")
    fig.update_yaxes(categoryorder="array", categoryarray=list(table["name"]), autorange="reversed")
    return table, fig
