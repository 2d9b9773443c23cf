"""The leaderboard: this run's evaluations ranked on the same test items, and reference figures kept apart.

    from pricer.leaderboard import leaderboard, reference_board
    table, fig = leaderboard()                  # runs saved under $PRICER_RESULTS (the lab folder's results/)
    table, fig = leaderboard(size=200)          # every run scored on its first 200 test items
    ref, ref_fig = reference_board()            # the course's published figures + our GPU benchmark's

A run is one JSON file written by `Result.save` (pricer.evaluator); when a name appears more than
once, its latest run wins. Runs are ranked only against runs on the same items: every Result keeps
its per-item answers, and the Tester always scores the first `size` items of the test split, so
each run is rescored on the first `size` items (by default the size most runs used). A run
scored on fewer items, or on other items, is left out and named in `table.attrs["left_out"]`.

Figures this code did not produce here are references, never rows of the ranking: the course's
(its real Amazon data, its models), and our benchmark's (`bench/results/accuracy.json`: the
`smol` preset trained and scored on a GPU). Each carries its source.
"""

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from pricer.evaluator import Result, metrics, results_folder

# The course's published average absolute errors (2025 edition, week7/results.ipynb: real Amazon data).
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
COURSE = "the course (2025): real Amazon data, Llama-3.2-3B, 200 test items"
# bench/results/accuracy.json, shipped inside the package so a pip-installed lab (Colab) has it (a test keeps them equal)
BENCH = Path(__file__).resolve().parent / "reference_accuracy.json"  # bench/accuracy.py: smol on the catalog
REAL_BENCH = Path(__file__).resolve().parent / "reference_real_accuracy.json"  # bench/real_accuracy.py: real listings
COLUMNS = ["name", "model", "preset", "data", "size", "error", "rmsle", "r2", "hit_rate", "unparsed", "date"]
REFERENCE_COLUMNS = ["name", "error", "source"]


def load_results(results_dir=None) -> list[Result]:
    """Every saved run; a corrupt or older-schema file raises (naming it) instead of vanishing."""
    folder = results_folder(results_dir)
    return [Result.load(path) for path in sorted(folder.glob("*.json"))]  # cache/ holds .jsonl files


def latest(results: list[Result]) -> list[Result]:
    """The latest run of each name (by its recorded date; a later file wins a tie)."""
    by_name = {}
    for result in sorted(results, key=lambda r: pd.to_datetime(r.meta.get("date") or 0, utc=True, format="ISO8601")):
        by_name[result.name] = result
    return list(by_name.values())


def common_size(results: list[Result]) -> int | None:
    """The test size most runs were scored on (the larger on a tie): the one the ranking uses."""
    counts = Counter(r.metrics["size"] for r in results)
    return max(counts, key=lambda size: (counts[size], size)) if counts else None


def rescored(result: Result, size: int) -> dict:
    """The run's numbers on its first `size` items."""
    cut = slice(0, size)
    return metrics(result.truths[cut], result.guesses[cut], result.colors[cut], result.unparsed[cut])


def leaderboard(results_dir=None, size: int | None = None) -> tuple[pd.DataFrame, go.Figure]:
    """This run's results, one row per name, ranked by average error on the same first `size` test items."""
    results = latest(load_results(results_dir))
    size = size or common_size(results)
    rows, left_out, items = [], [], None
    for result in sorted(results, key=lambda r: -r.metrics["size"]):
        if result.metrics["size"] < size:
            left_out.append(f"{result.name} (scored on {result.metrics['size']} items)")
            continue
        items = items if items is not None else result.truths[:size]
        if result.truths[:size] != items:
            left_out.append(f"{result.name} (scored on other test items)")
            continue
        m = rescored(result, size)
        rows.append({"name": result.name, **{k: result.meta.get(k) for k in ("model", "preset", "data")},
                     **{k: m[k] for k in ("size", "error", "rmsle", "r2", "hit_rate", "unparsed")},
                     "date": result.meta.get("date")})
    table = pd.DataFrame(rows, columns=COLUMNS).sort_values("error", kind="stable").reset_index(drop=True)
    table.attrs.update(size=size, left_out=left_out)
    title = (f"This run: average absolute error on the same {size} test items (lower is better)" if size
             else "This run: no results yet")
    fig = px.bar(table, x="error", y="name", orientation="h", text_auto="$,.2f", title=title,
                 labels={"error": "Average absolute error ($)", "name": ""}, color_discrete_sequence=["firebrick"],
                 height=160 + 28 * len(table), width=1000, template="plotly_white")
    fig.update_yaxes(categoryorder="array", categoryarray=list(table["name"]), autorange="reversed")
    return table, fig


def bench_reference(path=BENCH) -> list[dict]:
    """Our GPU benchmark's figures (mean over its seeds), labelled with preset, data, machine and seeds; [] without
    it. The real-listings benchmark's rows are named "... (real listings)", so both fit on one chart."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        seeds = record["seeds"]
        names = sorted({name for run in seeds.values() for name in run["errors"]})
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{path}: not a readable accuracy benchmark ({e!r}); rerun bench/accuracy.py") from None
    machine = record.get("machine", {})
    where = machine.get("gpu") or machine.get("name") if isinstance(machine, dict) else machine
    preset = record.get("preset", "?")
    preset = preset.get("name", "?") if isinstance(preset, dict) else preset
    real = record.get("bench") == "real_accuracy"
    if real:
        chosen = (record.get("chosen") or {}).get("label")
        preset = f"{preset} ({chosen})" if chosen else preset
    source = (f"our benchmark{' on real listings' if real else ''}: preset {preset} on {where or 'a GPU'}, "
              f"mean of {len(seeds)} seed(s)")
    rows = []
    for name in names:
        values = [run["errors"][name] for run in seeds.values() if name in run["errors"]]
        rows.append({"name": f"{name} (real listings)" if real else name, "error": sum(values) / len(values),
                     "source": source})
    return rows


def reference_board(benches=(BENCH, REAL_BENCH)) -> tuple[pd.DataFrame, go.Figure]:
    """Figures measured elsewhere, by source: the course's published ones and our benchmarks'. Not this run's."""
    rows = [{"name": name, "error": error, "source": COURSE} for name, error in COURSE_REFERENCE.items()]
    for bench in (benches,) if isinstance(benches, (str, Path)) else benches:
        rows += bench_reference(bench)
    table = pd.DataFrame(rows, columns=REFERENCE_COLUMNS)
    order = [name for _, group in table.groupby("source", sort=False) for name in group.sort_values("error")["name"]]
    fig = px.bar(table, x="error", y="name", color="source", orientation="h", text_auto="$,.2f",
                 labels={"error": "Average absolute error ($)", "name": "", "source": ""},
                 title="Reference figures, measured elsewhere: compare orderings, not dollars",
                 height=220 + 26 * len(table), width=1000, template="plotly_white",
                 color_discrete_sequence=["lightslategray", "steelblue", "darkorange"])
    fig.update_yaxes(categoryorder="array", categoryarray=order, autorange="reversed")
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.12, x=0))
    return table, fig


def compare(errors_a, errors_b, name_a: str = "the first", name_b: str = "the second") -> tuple[str | None, str]:
    """Which of two predictors erred less on the same items, or None when the gap is within noise; and a line
    saying so with the gap and its 95% margin (1.96 standard errors of the per-item differences)."""
    import math

    n = min(len(errors_a), len(errors_b))
    if n < 2:
        return None, f"{n} item(s): too few to compare {name_a} with {name_b}"
    diffs = [a - b for a, b in zip(errors_a[:n], errors_b[:n])]
    mean = sum(diffs) / n
    margin = 1.96 * math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1) / n)
    gap = f"${abs(mean):,.2f} ± ${margin:,.2f} (95%) on the same {n} items"
    if abs(mean) <= margin:
        return None, f"{name_a} and {name_b} differ by {gap}: within noise, a tie on these items"
    lower, higher = (name_a, name_b) if mean < 0 else (name_b, name_a)
    return lower, f"{lower} erred less than {higher} by {gap}: beyond noise"
