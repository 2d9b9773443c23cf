"""pricer.evaluator: the course's Tester, its fixes, and what we added (metrics, saving, resume)."""

import dataclasses
import importlib.util
import json
import math
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
from pydantic import BaseModel
from sklearn.metrics import mean_absolute_error, mean_squared_error, mean_squared_log_error, r2_score

import pricer.evaluator as ev
from pricer.evaluator import Result, evaluate

ROOT = Path(__file__).resolve().parents[1]
PER_ITEM = ("titles", "guesses", "truths", "errors", "colors", "unparsed")


@pytest.fixture(autouse=True)
def results_dir(tmp_path, monkeypatch):
    """Every test writes its results into its own temporary folder, never ./results."""
    monkeypatch.setenv("PRICER_RESULTS", str(tmp_path / "results"))
    return tmp_path / "results"


def make_rows(n, seed=0):
    """Prompt rows as on the Hub, plus the index so predictors can look their answer up."""
    rng = np.random.default_rng(seed)
    prices = rng.uniform(1, 999, n).round(2)
    return [{"prompt": f"What does this cost?\n\nTitle: Product {i} of a fairly long catalogue name\n"
                       f"Category: Tools\n\nPrice is $", "completion": f"{p:.2f}", "i": i}
            for i, p in enumerate(prices)]


def guesses_for(rows, seed=1):
    return np.random.default_rng(seed).uniform(1, 999, len(rows)).round(2)


def band(error, truth):
    """The course's colour rule, written out independently of the code under test."""
    if error < 40 or (truth > 0 and error / truth < 0.2):
        return "green"
    if error < 80 or (truth > 0 and error / truth < 0.4):
        return "orange"
    return "red"


def numbers(result):
    return {k: v for k, v in result.metrics.items() if k != "seconds"}


# ----- metrics and colours -----

def test_metrics_match_scikit_learn():
    rows = make_rows(50)
    guesses = guesses_for(rows)
    result = evaluate(lambda row: guesses[row["i"]], rows, size=50, save=False)
    truths = [float(r["completion"]) for r in rows]
    m = result.metrics
    assert m["error"] == pytest.approx(mean_absolute_error(truths, guesses))
    assert m["mse"] == pytest.approx(mean_squared_error(truths, guesses))
    assert m["rmsle"] == pytest.approx(math.sqrt(mean_squared_log_error(truths, guesses)))
    assert m["r2"] == pytest.approx(100 * r2_score(truths, guesses))
    colors = [band(abs(g - t), t) for g, t in zip(guesses, truths)]
    assert m["hit_rate"] == pytest.approx(100 * colors.count("green") / 50)
    assert result.colors == colors
    assert (m["unparsed"], m["size"]) == (0, 50)
    assert m["seconds"] >= 0


def test_rmsle_clips_negative_guesses_at_zero():
    rows = make_rows(10)
    result = evaluate(lambda row: -5.0, rows, save=False)
    truths = [float(r["completion"]) for r in rows]
    assert result.metrics["rmsle"] == pytest.approx(math.sqrt(mean_squared_log_error(truths, [0.0] * 10)))


def test_size_defaults_to_200_and_is_capped_by_the_data():
    assert ev.Tester(lambda r: 1, make_rows(300)).size == 200
    assert ev.Tester(lambda r: 1, make_rows(30)).size == 30
    with pytest.raises(ValueError, match="nothing to evaluate"):
        ev.Tester(lambda r: 1, [])


@pytest.mark.parametrize("error, truth, color", [
    (39.99, 100, "green"), (40, 100, "orange"),        # $40 absolute boundary
    (199.99, 1000, "green"), (200, 1000, "orange"),    # 20% relative boundary
    (79.99, 100, "orange"), (80, 100, "red"),          # $80 absolute boundary
    (399.99, 1000, "orange"), (400, 1000, "red"),      # 40% relative boundary
    (0, 0, "green"), (50, 0, "orange"), (100, 0, "red"),  # a $0 truth must not crash
])
def test_color_bands(error, truth, color):
    assert ev.Tester.color_for(error, truth) == color == band(error, truth)


# ----- parsing answers -----

@pytest.mark.parametrize("value, parsed", [
    ("$1,234.50", 1234.5), ("349.99 what is", 349.99), ("Price is $42", 42.0), (".5 dollars", 0.5),
    ("no number", None), ("", None), (None, None), (float("nan"), None), (42, 42), (3.5, 3.5),
    ("-4.5", -4.5), ("-4", -4.0), ("around $7.5.", 7.5), ("10-15", 10.0),  # the first number, as the course
    ("the X-100 costs $45", 100.0),  # a "-" after a letter is no minus sign
])
def test_post_process(value, parsed):
    assert ev.Tester.post_process(value) == parsed


def test_unparsed_answers_score_as_zero_and_are_counted(capsys):
    rows = make_rows(6)
    answers = ["no number", None, float("nan"), "$12.50", 7, "about 3"]
    result = evaluate(lambda row: answers[row["i"]], rows, save=False)
    truths = [float(r["completion"]) for r in rows]
    assert result.unparsed == [True, True, True, False, False, False]
    assert result.guesses == [0.0, 0.0, 0.0, 12.5, 7.0, 3.0]
    assert result.errors[:3] == pytest.approx(truths[:3])
    assert result.metrics["unparsed"] == 3
    assert result.metrics["error"] == pytest.approx(mean_absolute_error(truths, result.guesses))
    assert "unparsed: 3" in capsys.readouterr().out
    assert "unparsed: 3" in re.sub("<[^>]+>", "", result.headline())


# ----- data shapes -----

@dataclasses.dataclass
class PlainItem:
    title: str
    price: float
    prompt: str | None = None
    summary: str | None = None


class PydanticItem(BaseModel):
    title: str
    price: float
    prompt: str | None = None
    summary: str | None = None


class FakeDataset:
    """Like datasets.Dataset: indexable, sized, each row a dict."""

    def __init__(self, rows):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return dict(self.rows[i])


def test_dict_rows_titles_come_from_the_prompt_and_are_cut_at_40():
    long = "A" * 45
    rows = [{"prompt": f"Q\n\nTitle: {long}\nCategory: x\n\nPrice is $", "completion": "350.00"},
            {"prompt": "Q\n\nTitle: Short name\n\nPrice is $", "completion": "349.99"}]
    result = evaluate(lambda row: 300, rows, save=False)
    assert result.titles == ["A" * 40 + "...", "Short name"]
    assert result.truths == [350.0, 349.99]


@pytest.mark.parametrize("cls", [PlainItem, PydanticItem])
def test_item_objects(cls):
    items = [cls(title="B" * 50, price=20.0),
             cls(title="ignored", price=30.0, summary="Title: From summary\nBrand: x"),
             cls(title="ignored", price=40.0, prompt="Q\n\nTitle: From prompt\n\nPrice is $")]
    result = evaluate(lambda item: 25, items, save=False)
    assert result.titles == ["B" * 40 + "...", "From summary", "From prompt"]
    assert result.truths == [20.0, 30.0, 40.0]
    assert result.errors == [5.0, 5.0, 15.0]


def test_dataset_like_data_gives_the_same_result_as_a_list():
    rows = make_rows(12)
    guesses = guesses_for(rows)
    as_list = evaluate(lambda row: guesses[row["i"]], rows, save=False)
    as_dataset = evaluate(lambda row: guesses[row["i"]], FakeDataset(rows), save=False)
    assert numbers(as_list) == numbers(as_dataset)
    assert as_list.titles == as_dataset.titles


def test_make_title():
    def gpt_4__1_nano(row):
        return 0
    assert ev.Tester.make_title(gpt_4__1_nano) == "GPT 4.1 Nano"
    assert ev.Tester(gpt_4__1_nano, make_rows(1)).title == "GPT 4.1 Nano"
    assert ev.Tester(gpt_4__1_nano, make_rows(1), title="Mine").title == "Mine"


# ----- batched predictors -----

class Batched:
    """A predictor that answers in batches, recording the batch sizes it was given."""

    def __init__(self, guesses, batch_size=None, chunk_size=None):
        self.guesses, self.batches = guesses, []
        if batch_size:
            self.batch_size = batch_size
        if chunk_size:
            self.chunk_size = chunk_size

    def __call__(self, row):
        raise AssertionError("a batched predictor must not be called per item")

    def predict_batch(self, rows):
        self.batches.append(len(rows))
        return [f"${self.guesses[row['i']]:,.2f}" for row in rows]


@pytest.mark.parametrize("batch_size, chunk_size, batches", [(7, None, [7, 7, 6]), (None, None, [20]),
                                                           (3, 8, [8, 8, 4])])
def test_batched_predictor_matches_per_item(batch_size, chunk_size, batches):
    """Chunks of the predictor's chunk_size (what PricePredictor sorts over at once), else its batch_size."""
    rows = make_rows(20)
    guesses = guesses_for(rows) * 10  # some answers above $1,000, to exercise the comma
    single = evaluate(lambda row: f"${guesses[row['i']]:,.2f}", rows, title="T", save=False)
    predictor = Batched(guesses, batch_size, chunk_size)
    batched = evaluate(predictor, rows, title="T", save=False)
    assert predictor.batches == batches
    assert numbers(batched) == numbers(single)
    for name in PER_ITEM:
        assert getattr(batched, name) == getattr(single, name)


def test_batched_predictor_must_answer_every_datapoint():
    class Short(Batched):
        def predict_batch(self, rows):
            return [1.0] * (len(rows) - 1)
    with pytest.raises(ValueError, match="answers for"):
        evaluate(Short([]), make_rows(5), save=False)


# ----- resuming after a disconnect -----

class Flaky:
    """Counts its calls and, if asked, 'disconnects' (KeyboardInterrupt) at item `fail_at`."""

    cache_key = "flaky-v1"

    def __init__(self, guesses, fail_at=None):
        self.guesses, self.fail_at, self.calls, self.asked = guesses, fail_at, 0, []

    def __call__(self, row):
        if row["i"] == self.fail_at:
            raise KeyboardInterrupt
        self.calls += 1
        self.asked.append(row["i"])
        return "no idea" if row["i"] % 5 == 0 else f"{self.guesses[row['i']]}"


def test_cache_resume_predicts_only_what_is_missing(results_dir):
    rows, k = make_rows(20), 8
    guesses = guesses_for(rows)
    whole = evaluate(Flaky(guesses), rows, title="Flaky", save=False, results_dir=results_dir / "other")

    with pytest.raises(KeyboardInterrupt):
        evaluate(Flaky(guesses, fail_at=k), rows, title="Flaky")
    (cache,) = (results_dir / "cache").glob("*.jsonl")
    assert len(cache.read_text().splitlines()) == k
    assert not list(results_dir.glob("*.json"))  # nothing saved for the broken run

    again = Flaky(guesses)
    resumed = evaluate(again, rows, title="Flaky")
    assert again.calls == 20 - k
    assert numbers(resumed) == numbers(whole)
    assert resumed.unparsed == whole.unparsed and resumed.metrics["unparsed"] == 4
    for name in PER_ITEM:
        assert getattr(resumed, name) == getattr(whole, name)

    third = Flaky(guesses)
    assert numbers(evaluate(third, rows, title="Flaky")) == numbers(whole)
    assert third.calls == 0


def test_each_answer_is_on_disk_before_the_next_prediction(results_dir):
    """A killed Colab runtime runs no cleanup: what was flushed is all that survives."""
    rows, seen = make_rows(5), []

    def predict(row):
        cache = next((results_dir / "cache").glob("*.jsonl"), None)
        seen.append(len(cache.read_text().splitlines()) if cache else 0)
        return 10.0

    evaluate(predict, rows, cache_key="flush", save=False)
    assert seen == [0, 1, 2, 3, 4]


def test_cache_is_keyed_by_key_data_and_size(results_dir):
    rows = make_rows(10)
    path = ev.Tester(Flaky([]), rows).cache_path(rows)
    assert path.parent == results_dir / "cache" and len(path.stem) == 16
    assert ev.Tester(Flaky([]), rows, cache_key="other").cache_path(rows) != path
    assert ev.Tester(Flaky([]), rows).cache_path(rows[:9]) != path
    changed = [dict(r, prompt=r["prompt"] + " ") if r["i"] == 3 else r for r in rows]
    assert ev.Tester(Flaky([]), changed).cache_path(changed) != path
    assert ev.Tester(lambda r: 1, rows).cache_key is None


def test_tester_cache_key_argument_enables_resume(results_dir):
    rows, calls = make_rows(6), []
    predict = lambda row: calls.append(row["i"]) or 10.0  # noqa: E731
    first = evaluate(predict, rows, cache_key="plain-fn", save=False)
    second = evaluate(predict, rows, cache_key="plain-fn", save=False)
    assert calls == list(range(6)) and numbers(first) == numbers(second)


@pytest.mark.parametrize("damage", ['{"i": 3, "gue', '{"i": 2, "guess": NaN, "unparsed": false}',
                                    '{"i": 1, "guess": 1e12, "unparsed": false}', '{"i": 99, "guess": 5, "unparsed": false}'])
def test_a_damaged_cache_line_is_named_dropped_and_its_item_predicted_again(results_dir, capsys, damage):
    rows = make_rows(6)
    clean = evaluate(Flaky(guesses_for(rows)), rows, save=False)
    (cache,) = (results_dir / "cache").glob("*.jsonl")
    lines = cache.read_text().splitlines()
    cache.write_text("\n".join(lines[:1] + [damage] + lines[4:]) + "\n")  # items 1-3 lost, one bad line
    again = Flaky(guesses_for(rows))
    result = evaluate(again, rows, save=False)
    out = capsys.readouterr().out
    assert str(cache) in out and "line 2" in out and "predicted again" in out
    assert numbers(result) == numbers(clean) and sorted(again.asked) == [1, 2, 3]
    assert damage not in cache.read_text().splitlines()  # dropped from the file, not named again next time


def test_a_line_cut_off_by_the_interruption_is_predicted_again(results_dir):
    rows = make_rows(6)
    clean = evaluate(Flaky(guesses_for(rows)), rows, save=False)
    (cache,) = (results_dir / "cache").glob("*.jsonl")
    lines = cache.read_text().splitlines(keepends=True)
    cache.write_text("".join(lines[:3]) + lines[3][:9])  # killed mid-write: no newline
    again = Flaky(guesses_for(rows))
    assert numbers(evaluate(again, rows, save=False)) == numbers(clean)
    assert again.calls == 3


def test_run_datapoint_keeps_the_course_signature():
    rows = make_rows(3)
    tester = ev.Tester(lambda row: "$12.50", rows)
    title, guess, truth, error, color = tester.run_datapoint(1)
    assert (guess, truth) == (12.5, float(rows[1]["completion"]))
    assert error == pytest.approx(abs(12.5 - truth)) and title.startswith("Product 1")
    assert color == band(error, truth)


# ----- saving and loading results -----

def test_result_save_and_load_round_trip(results_dir):
    rows = make_rows(8)
    result = evaluate(lambda row: 100, rows, meta={"model": "m", "preset": "tiny"})
    (path,) = results_dir.glob("*.json")
    data = json.loads(path.read_text())
    assert (data["schema"], data["kind"]) == (1, "pricer.result")
    assert path.name.startswith("lambda-")
    loaded = Result.load(path)
    assert loaded == result
    assert loaded.meta["model"] == "m" and loaded.meta["size"] == 8
    assert datetime.fromisoformat(loaded.meta["date"]).tzinfo is not None


def test_save_never_overwrites(tmp_path, monkeypatch):
    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2025, 1, 2, 3, 4, 5, tzinfo=tz)

    monkeypatch.setattr(ev, "datetime", Frozen)
    result = evaluate(lambda row: 1, make_rows(3), title="Same Name!", save=False)
    paths = [result.save(tmp_path) for _ in range(3)]
    assert [p.name for p in paths] == ["same-name-20250102-030405.json", "same-name-20250102-030405-2.json",
                                       "same-name-20250102-030405-3.json"]
    paths[0].write_text("mine")
    result.save(tmp_path)
    assert paths[0].read_text() == "mine" and len(list(tmp_path.glob("*.json"))) == 4


@pytest.mark.parametrize("content, problem", [
    ("{not json", "not a readable results file"),
    ('{"kind": "something.else", "schema": 1}', "not a pricer result"),
    ('[1, 2]', "not a pricer result"),
    ('{"kind": "pricer.result", "schema": 0}', "schema 0"),
    ('{"kind": "pricer.result", "schema": 1, "name": "x"}', "lacks the field"),
])
def test_bad_result_files_raise_clearly_and_are_left_alone(tmp_path, content, problem):
    path = tmp_path / "run.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=problem) as info:
        Result.load(path)
    assert str(path) in str(info.value)
    assert path.read_text() == content


def test_run_save_false_writes_nothing(results_dir):
    evaluate(lambda row: 1, make_rows(3), save=False)
    assert not results_dir.exists()


# ----- charts and display -----

def test_headless_run_prints_a_summary_and_shows_nothing(capsys, monkeypatch):
    def no_show(self, *args, **kwargs):
        raise AssertionError("fig.show() called outside a notebook")

    monkeypatch.setattr(go.Figure, "show", no_show)
    rows = make_rows(10)
    result = evaluate(lambda row: 100.0, rows, title="Hundred", save=False)
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [result.summary()]
    m = result.metrics
    assert out[0].startswith("Hundred: ")
    for piece in (f"Error=${m['error']:,.2f}", f"RMSLE={m['rmsle']:.2f}", f"r²={m['r2']:.1f}%",
                  f"hit={m['hit_rate']:.1f}%", "unparsed: 0"):
        assert piece in out[0]


def test_notebook_run_shows_both_charts_and_prints_its_numbers_as_text(capsys, monkeypatch):
    """The summary line too: a chart's title is no place for the only copy of a score (GitHub may not draw it)."""
    shown = []
    monkeypatch.setattr(go.Figure, "show", lambda self, *a, **k: shown.append(self.layout.title.text))
    monkeypatch.setattr(ev, "_in_notebook", lambda: True)
    result = evaluate(lambda row: 100.0, make_rows(10), title="Hundred", save=False)
    assert len(shown) == 2
    assert shown[0].startswith("Hundred Error: $") and shown[1] == result.headline()
    assert capsys.readouterr().out.strip().splitlines() == [result.summary()]


def test_charts_are_built_from_the_per_item_lists():
    rows = make_rows(30)
    guesses = guesses_for(rows)
    tester = ev.Tester(lambda row: guesses[row["i"]], rows, title="Chart")
    result = tester.run(save=False)
    trend, scatter = result.figures()
    points = [t for t in scatter.data if t.mode == "markers"]
    assert sum(len(t.x) for t in points) == 30
    for trace in points:
        assert all(c == trace.name for c, g in zip(result.colors, result.guesses) if g in trace.y)
    top = max(max(result.truths), max(result.guesses))
    assert tuple(scatter.layout.xaxis.range) == tuple(scatter.layout.yaxis.range) == (0, top)
    errors = np.array(result.errors)
    final_ci = 1.96 * errors.std() / math.sqrt(30)  # population std, as the course did
    assert trend.layout.title.text == f"Chart Error: ${errors.mean():,.2f} ± ${final_ci:,.2f}"
    assert tester.error_trend_chart().layout.title.text == trend.layout.title.text
    assert tester.chart("t").to_dict()["data"] == scatter.to_dict()["data"]


# ----- util.py, the single-file copy -----

def test_util_is_the_evaluator_with_a_header():
    util, source = (ROOT / "util.py").read_bytes(), (ROOT / "pricer" / "evaluator.py").read_bytes()
    assert util == ev.UTIL_HEADER + source, "util.py is stale: run python -m pricer.evaluator --write-util"
    assert 2 <= ev.UTIL_HEADER.count(b"\n") <= 3 and b"do not edit" in ev.UTIL_HEADER


def test_write_util_is_idempotent(tmp_path):
    path = ev.write_util(tmp_path / "util.py")
    assert path.read_bytes() == (ROOT / "util.py").read_bytes()


def test_util_evaluate_gives_the_same_numbers():
    spec = importlib.util.spec_from_file_location("util_under_test", ROOT / "util.py")
    util = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(util)
    rows = make_rows(25)
    guesses = guesses_for(rows)
    ours = evaluate(lambda row: f"${guesses[row['i']]}", rows, title="Same", save=False)
    theirs = util.evaluate(lambda row: f"${guesses[row['i']]}", rows, title="Same", save=False)
    assert numbers(theirs) == numbers(ours)
    for name in PER_ITEM:
        assert getattr(theirs, name) == getattr(ours, name)
