"""Score a price predictor on test items: the course's Tester, plus saved results and resume.

    from util import evaluate                # in this repo: from pricer.evaluator import evaluate
    result = evaluate(my_predictor, test)    # 200 items; a summary line, and charts in Jupyter
    result.metrics["error"]                  # also rmsle, r2, hit_rate, unparsed; saved in results/

A predictor maps one datapoint to a price: a number, or text such as "$349.99" that
`parse_price` reads (the Tester's `post_process`). Datapoints are prompt rows ({"prompt",
"completion"}, a list or a `datasets.Dataset`) or Item-like objects (`.title`, `.price`, optional
`.prompt` / `.summary`).
A predictor with `predict_batch(datapoints) -> list` (and optional `chunk_size` or `batch_size`,
default 32: how many it takes at once) is called on chunks instead; one with `cache_key` resumes
after a disconnect (see `Tester.run`).

This file is self-contained (stdlib, numpy, plotly, tqdm) because it is
also shipped alone as util.py; `python -m pricer.evaluator --write-util` regenerates that copy.
"""

import contextlib
import dataclasses
import hashlib
import itertools
import json
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

with warnings.catch_warnings():  # the first import of tqdm.auto in a Jupyter kernel without ipywidgets (executed
    warnings.filterwarnings("ignore", message="IProgress not found")  # labs, plain installs) warns that it draws
    from tqdm.auto import tqdm  # text bars: what we want. Scoped to this import; pricer's other modules take it here

SCHEMA, KIND = 1, "pricer.result"
UTIL_HEADER = (
    b"# Generated from pricer/evaluator.py -- do not edit; regenerate with:\n"
    b"#     python -m pricer.evaluator --write-util\n"
)


# The first number in an answer, after "$" and thousands commas are dropped (as the course did). A
# minus sign counts only standing alone: "-4.5" is negative, the "-" of "X-100" is not a sign.
NUMBER = re.compile(r"(?:(?<![\w.-])-)?(?:\d+(?:\.\d+)?|\.\d+)")


def parse_price(value):
    """The price in a free-text answer ("$1,299.99" -> 1299.99, "around $7.5." -> 7.5); a number as is.

    The one reader of written prices: the Tester's post_process, the frontier models' answers and
    the human baseline's guesses all use it. None when there is no number or it is not finite."""
    if isinstance(value, str):
        match = NUMBER.search(value.replace("$", "").replace(",", ""))
        value = float(match.group()) if match else None
    return None if value is None or not math.isfinite(value) else value  # "9" * 400 is inf


def _truth(datapoint) -> float:
    return float(datapoint["completion"]) if isinstance(datapoint, Mapping) else float(datapoint.price)


def _text(datapoint) -> str:
    get = datapoint.get if isinstance(datapoint, Mapping) else lambda name: getattr(datapoint, name, None)
    return get("prompt") or get("summary") or ""


def _title(datapoint) -> str:
    text = _text(datapoint)
    pieces = text.split("Title: ")
    title = pieces[1].split("\n")[0] if len(pieces) > 1 else getattr(datapoint, "title", text)
    return title if len(title) <= 40 else title[:40] + "..."


def _is_main() -> bool:  # one process of a multi-GPU run (RANK, set by accelerate / torchrun) writes files
    return os.environ.get("RANK", "0") == "0"


def _in_notebook() -> bool:  # a Jupyter/Colab kernel: the only place fig.show() can draw
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython else None
    return shell is not None and hasattr(shell, "kernel")


def results_folder(results_dir=None) -> Path:
    """Where results live: the argument, else $PRICER_RESULTS, else ./results."""
    return Path(results_dir or os.environ.get("PRICER_RESULTS", "results"))


def color_for(error, truth) -> str:
    """The course's bands: green within $40 or 20%, orange within $80 or 40%, else red."""
    relative = error / truth if truth else math.inf
    if error < 40 or relative < 0.2:
        return "green"
    elif error < 80 or relative < 0.4:
        return "orange"
    return "red"


def metrics(truths, guesses, colors, unparsed=(), seconds=0.0) -> dict:
    """Every number a run is judged by; r2 and hit_rate (share green) are percentages, as in the course."""
    t, g = np.asarray(truths, dtype=float), np.asarray(guesses, dtype=float)
    sse, sst = np.sum((t - g) ** 2), np.sum((t - t.mean()) ** 2)
    return {
        "error": float(np.mean(np.abs(t - g))),
        "mse": float(sse / len(t)),
        "rmsle": float(np.sqrt(np.mean((np.log1p(t) - np.log1p(np.maximum(g, 0))) ** 2))),
        "r2": float(100 * (1 - sse / sst)) if sst else (100.0 if sse == 0 else 0.0),
        "hit_rate": 100 * list(colors).count("green") / len(t),
        "unparsed": int(sum(unparsed)),
        "size": len(t),
        "seconds": float(seconds),
    }


def _trend_chart(name, errors) -> go.Figure:
    x = np.arange(1, len(errors) + 1)
    errors = np.asarray(errors, dtype=float)
    means = np.cumsum(errors) / x
    stds = np.sqrt(np.maximum(np.cumsum(errors**2) / x - means**2, 0))  # population running std
    ci = np.where(x > 1, 1.96 * stds / np.sqrt(x), 0)
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=np.concatenate([x, x[::-1]]), y=np.concatenate([means + ci, (means - ci)[::-1]]),
        fill="toself", fillcolor="rgba(128,128,128,0.2)", line=dict(color="rgba(255,255,255,0)"),
        hoverinfo="skip", name="95% CI"))
    fig.add_trace(go.Scatter(
        x=x, y=means, mode="lines", line=dict(width=3, color="firebrick"), customdata=ci,
        name="Cumulative Avg Error",
        hovertemplate="n=%{x}<br>Avg Error=$%{y:,.2f}<br>±95% CI=$%{customdata:,.2f}<extra></extra>"))
    fig.update_layout(
        title=f"{name} Error: ${means[-1]:,.2f} ± ${ci[-1]:,.2f}", xaxis_title="Number of Datapoints",
        yaxis_title="Average Absolute Error ($)", width=1000, height=360, template="plotly_white",
        showlegend=False)
    return fig


def _scatter_chart(title, titles, guesses, truths, colors, unparsed) -> go.Figure:
    hover = [f"{name}<br>Guess=${g:,.2f} Actual=${t:,.2f}" + (" (unparsed)" if u else "")
             for name, g, t, u in zip(titles, guesses, truths, unparsed)]
    top = float(max(max(truths), max(guesses)))
    fig = go.Figure()
    for color in ("green", "orange", "red"):
        keep = [i for i, c in enumerate(colors) if c == color]
        fig.add_trace(go.Scatter(
            x=[truths[i] for i in keep], y=[guesses[i] for i in keep], mode="markers", name=color,
            marker=dict(color=color, size=6), customdata=[hover[i] for i in keep],
            hovertemplate="%{customdata}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[0, top], y=[0, top], mode="lines", hoverinfo="skip",
                             line=dict(width=2, dash="dash", color="deepskyblue")))
    fig.update_layout(title=title, xaxis_title="Actual Price", yaxis_title="Predicted Price",
                      width=1000, height=800, showlegend=False)
    fig.update_xaxes(range=[0, top])
    fig.update_yaxes(range=[0, top])
    return fig


@dataclass
class Result:
    """One evaluation run: its numbers, its per-item answers, and what produced it (meta)."""

    name: str
    metrics: dict
    titles: list
    guesses: list
    truths: list
    errors: list
    colors: list
    unparsed: list
    meta: dict = field(default_factory=dict)

    def summary(self) -> str:
        """One plain line for terminals and logs, where no chart can be drawn."""
        m = self.metrics
        return (f"{self.name}: Error=${m['error']:,.2f} RMSLE={m['rmsle']:.2f} r²={m['r2']:.1f}% hit="
                f"{m['hit_rate']:.1f}% unparsed: {m['unparsed']} ({m['size']} items, {m['seconds']:.1f}s)")

    def headline(self) -> str:
        """The scatter chart's title: the course's Error / MSE / r², then what we added."""
        m = self.metrics
        return (f"{self.name} results<br><b>Error:</b> ${m['error']:,.2f} <b>MSE:</b> {m['mse']:,.0f} "
                f"<b>RMSLE:</b> {m['rmsle']:.2f} <b>r²:</b> {m['r2']:.1f}% <b>hit:</b> {m['hit_rate']:.1f}% "
                f"<b>unparsed:</b> {m['unparsed']}")

    def figures(self) -> tuple[go.Figure, go.Figure]:
        """The error-trend and scatter charts rebuilt from the saved lists (for reports)."""
        items = self.titles, self.guesses, self.truths, self.colors, self.unparsed
        return _trend_chart(self.name, self.errors), _scatter_chart(self.headline(), *items)

    def save(self, results_dir=None) -> Path:
        """Write this run as a new JSON file (never over an old one) so every run stays comparable."""
        folder = results_folder(results_dir)
        folder.mkdir(parents=True, exist_ok=True)
        slug = re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-") or "run"
        stem = f"{slug}-{datetime.now():%Y%m%d-%H%M%S}"
        text = json.dumps({"schema": SCHEMA, "kind": KIND, **dataclasses.asdict(self)}, indent=1, default=str)
        for n in itertools.count(1):
            path = folder / (f"{stem}.json" if n == 1 else f"{stem}-{n}.json")
            try:
                with open(path, "x", encoding="utf-8") as f:  # "x": fails rather than overwrite
                    f.write(text)
                return path
            except FileExistsError:
                continue

    @classmethod
    def load(cls, path) -> "Result":
        """A saved run, or a ValueError naming the file and what is wrong with it (file left as is)."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except ValueError as e:
            raise ValueError(f"{path}: not a readable results file ({e}); fix or move it away") from None
        if not isinstance(data, dict) or data.get("kind") != KIND:
            raise ValueError(f"{path}: not a pricer result (kind is not {KIND!r}); move it out of the folder")
        if data.get("schema") != SCHEMA:
            raise ValueError(f"{path}: results schema {data.get('schema')!r}, but this code reads schema "
                             f"{SCHEMA}; rerun that evaluation or move the file away")
        try:
            return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})
        except KeyError as e:
            raise ValueError(f"{path}: results file lacks the field {e}") from None


class Tester:
    """Runs one predictor over the first `size` datapoints, then scores, charts and saves the run."""

    def __init__(self, predictor, data, title=None, size=200, meta=None, results_dir=None, cache_key=None):
        self.predictor = predictor
        self.data = data
        self.title = title or self.make_title(predictor)
        self.size = min(size, len(data))
        if self.size < 1:
            raise ValueError(f"nothing to evaluate: {len(data)} datapoints, size={size}")
        self.meta = dict(meta or {})
        self.results_dir = results_dir
        self.cache_key = cache_key or getattr(predictor, "cache_key", None)
        self.titles, self.guesses, self.truths, self.errors, self.colors, self.unparsed = [], [], [], [], [], []
        self.seconds = 0.0

    @staticmethod
    def make_title(predictor) -> str:
        """A chart title from the predictor's name: `gpt_4__1_nano` -> 'GPT 4.1 Nano'."""
        name = getattr(predictor, "__name__", type(predictor).__name__)
        return name.replace("__", ".").replace("_", " ").title().replace("Gpt", "GPT")

    @staticmethod
    def post_process(value):
        """The price in a predictor's answer ("$1,234.50" -> 1234.5); None when it holds no (finite) number."""
        return parse_price(value)

    color_for = staticmethod(color_for)

    def run_datapoint(self, i):
        """The course's step: predict datapoint i and score it -> (title, guess, truth, error, color)."""
        datapoint = self.data[i]
        return self.score(datapoint, self.post_process(self._predict([datapoint])[0]))[:5]

    def score(self, datapoint, guess):
        """Score one post-processed answer: (title, guess, truth, error, color, unparsed).

        An unparsed answer (None) scores as $0, exactly as the course did, so errors stay
        comparable with its published numbers; the flag lets the report count them."""
        unparsed = guess is None
        guess = 0.0 if unparsed else float(guess)
        truth = _truth(datapoint)
        error = abs(guess - truth)
        return _title(datapoint), guess, truth, error, self.color_for(error, truth), unparsed

    def cache_path(self, rows) -> Path:
        """The resume file for this key, rows and size: a changed test set never reuses old answers."""
        fingerprint = hashlib.sha256()
        for row in rows:
            text = _text(row) if isinstance(row, Mapping) else f"{row.title}\0{row.price}"
            fingerprint.update(text.encode() + b"\0")
        key = f"{self.cache_key}\0{fingerprint.hexdigest()}\0{len(rows)}"
        key = hashlib.sha256(key.encode()).hexdigest()
        return results_folder(self.results_dir) / "cache" / f"{key[:16]}.jsonl"

    def _predict(self, rows) -> list:
        if not hasattr(self.predictor, "predict_batch"):
            return [self.predictor(row) for row in rows]
        values = list(self.predictor.predict_batch(rows))
        if len(values) != len(rows):
            raise ValueError(f"predict_batch returned {len(values)} answers for {len(rows)} datapoints")
        return values

    def chart(self, title) -> go.Figure:
        """Predicted vs actual price, coloured by the bands, with the y = x line of perfect guesses."""
        return _scatter_chart(title, self.titles, self.guesses, self.truths, self.colors, self.unparsed)

    def error_trend_chart(self) -> go.Figure:
        """The running average error with a 95% band: has the number settled after `size` items?"""
        return _trend_chart(self.title, self.errors)

    def report(self) -> Result:
        """The run's Result; its summary line printed, and its charts shown in a notebook."""
        meta = {"size": self.size, "date": datetime.now(timezone.utc).isoformat(), "seconds": self.seconds}
        numbers = metrics(self.truths, self.guesses, self.colors, self.unparsed, self.seconds)
        result = Result(self.title, numbers, self.titles, self.guesses, self.truths, self.errors,
                        self.colors, self.unparsed, {**meta, **self.meta})
        if _in_notebook():
            self.error_trend_chart().show()
            self.chart(result.headline()).show()
        if _is_main():  # in a notebook too: the numbers as text, where a chart can't be drawn or read
            print(result.summary())
        return result

    def run(self, save=True) -> Result:
        """Predict and score every item, report, and (by default) save the Result.

        With a cache key, each answer is appended and flushed to a .jsonl file under
        <results>/cache as soon as it exists: a 3B model takes minutes over 200 items and Colab
        drops connections, so a rerun only predicts what is missing and ends with the same
        numbers. (Point PRICER_RESULTS at Google Drive to survive a lost runtime.) A corrupt
        line stops the run with its file named rather than quietly scoring a different set."""
        start = time.perf_counter()
        rows = [self.data[i] for i in range(self.size)]
        path = self.cache_path(rows) if self.cache_key else None
        done = _read_cache(path, self.size) if path else {}
        path = path if _is_main() else None  # every process reads the cache, only the main one appends
        todo = [i for i in range(self.size) if i not in done]
        step = (getattr(self.predictor, "chunk_size", None) or getattr(self.predictor, "batch_size", 32)
                if hasattr(self.predictor, "predict_batch") else 1)
        with (open(path, "a", encoding="utf-8") if path else contextlib.nullcontext()) as log, \
                tqdm(total=self.size, initial=self.size - len(todo), desc=self.title, disable=not _is_main()) as bar:
            for chunk in (todo[k:k + step] for k in range(0, len(todo), step)):
                for i, value in zip(chunk, self._predict([rows[i] for i in chunk])):
                    done[i] = guess = self.post_process(value)
                    if log:
                        entry = {"i": i, "guess": float(guess or 0), "unparsed": guess is None}
                        log.write(json.dumps(entry) + "\n")
                        log.flush()
                    bar.update()
        scored = zip(*(self.score(row, done[i]) for i, row in enumerate(rows)))
        self.titles, self.guesses, self.truths, self.errors, self.colors, self.unparsed = map(list, scored)
        self.seconds = time.perf_counter() - start
        result = self.report()
        if save and _is_main():
            result.save(self.results_dir)
        return result


MAX_CACHED = 1e7  # dollars: no answer in the course's window comes near; a larger cached one is damage


def _read_cache(path, size: int) -> dict:
    """Answers saved by an earlier run; a damaged or implausible line is named, dropped, and predicted again."""
    done, good, bad = {}, [], []
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        text = path.read_text(encoding="utf-8", errors="replace")
        lines = text.splitlines()
        if lines and not text.endswith("\n"):
            lines.pop()  # a line cut off by the interruption itself: that item is predicted again
        for n, line in enumerate(lines, 1):
            try:
                entry = json.loads(line)
                i, guess = int(entry["i"]), None if entry["unparsed"] else float(entry["guess"])
                if not 0 <= i < size or (guess is not None and not abs(guess) <= MAX_CACHED):  # NaN fails too
                    raise ValueError(f"item {i} or answer {guess} out of range")
            except (ValueError, KeyError, TypeError) as e:
                bad.append(f"line {n} ({e})")
                continue
            done[i] = guess
            good.append(line)
        if bad:
            print(f"pricer: {path}: {len(bad)} damaged cache line(s) dropped, those items are predicted again; "
                  f"first: {bad[0]}")
            tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
            tmp.write_text("".join(line + "\n" for line in good), encoding="utf-8")
            tmp.replace(path)  # whole or not at all, like every file a run depends on
    return done


def evaluate(predictor, data, size=200, save=True, **kwargs) -> Result:
    """The course's one-liner: run a Tester over `size` items and return its Result."""
    return Tester(predictor, data, size=size, **kwargs).run(save=save)


def write_util(path) -> Path:
    """Write util.py, the single-file copy students wget in Colab, so it never drifts from this one."""
    source = Path(__file__).read_bytes().removeprefix(UTIL_HEADER)
    Path(path).write_bytes(UTIL_HEADER + source)
    return Path(path)


if __name__ == "__main__":
    if sys.argv[1:] != ["--write-util"]:
        sys.exit("usage: python -m pricer.evaluator --write-util")
    print(f"wrote {write_util(Path(__file__).resolve().parents[1] / 'util.py')}")
