"""pricer.leaderboard: this run's results ranked on the same items, latest run per name; references kept apart."""

import json
from pathlib import Path

import pytest

from pricer.evaluator import Result, evaluate
from pricer.leaderboard import COURSE, COURSE_REFERENCE, bench_reference, leaderboard, load_results, reference_board

ROWS = [{"prompt": f"Q\n\nTitle: Item {i}\n\nPrice is $", "completion": f"{price:.2f}"}
        for i, price in enumerate([10.0, 55.5, 120.0, 300.0, 999.0])]


@pytest.fixture(autouse=True)
def results_dir(tmp_path, monkeypatch):
    """Runs are saved under PRICER_RESULTS, a fresh folder per test."""
    monkeypatch.setenv("PRICER_RESULTS", str(tmp_path / "results"))
    return tmp_path / "results"


def run(name, guess, date=None, size=len(ROWS), rows=ROWS, **meta):
    """Evaluate a constant guess under `name` on the first `size` rows and save it; `date` pins the run's time."""
    return evaluate(lambda row: guess, rows, size=size, title=name, meta={**meta, **({"date": date} if date else {})})


def expected_error(guess, size=len(ROWS)):
    return sum(abs(guess - float(r["completion"])) for r in ROWS[:size]) / size


def test_rows_are_sorted_by_error_and_the_chart_puts_the_best_on_top():
    for name, guess in [("Hundred", 100), ("Ten", 10), ("Three hundred", 300), ("Fifty", 50)]:
        run(name, guess, model="const", preset="tiny", data="embedded")
    table, fig = leaderboard()
    assert list(table["error"]) == sorted(expected_error(g) for g in (100, 10, 300, 50))
    assert table["error"].is_monotonic_increasing
    assert list(table.columns) == ["name", "model", "preset", "data", "size", "error", "rmsle", "r2", "hit_rate",
                                   "unparsed", "date"]
    assert set(table["preset"]) == {"tiny"} and set(table["size"]) == {len(ROWS)}
    assert list(fig.layout.yaxis.categoryarray) == list(table["name"])
    assert fig.layout.yaxis.autorange == "reversed"  # first category (the best) drawn at the top
    assert all(trace.orientation == "h" for trace in fig.data)


def test_latest_run_of_a_name_wins_even_when_worse():
    run("Model", 50, date="2025-01-01T00:00:00+00:00")
    run("Model", 900, date="2025-03-01T00:00:00+00:00")
    run("Model", 100, date="2025-02-01T00:00:00+00:00")
    run("Other", 60)
    table, _ = leaderboard()
    assert len(load_results()) == 4
    model = table[table["name"] == "Model"]
    assert len(model) == 1 and model["error"].item() == pytest.approx(expected_error(900))
    assert list(table["name"]) == ["Other", "Model"]


def test_latest_run_wins_without_pinned_dates():
    run("Model", 50)
    run("Model", 300)
    table, _ = leaderboard()
    assert table["error"].tolist() == [pytest.approx(expected_error(300))]


def test_results_persist_across_reloads(results_dir):
    saved = [run("A", 40), run("B", 80)]
    before = {p.name: p.read_bytes() for p in results_dir.glob("*.json")}
    first, _ = leaderboard()
    second, _ = leaderboard(results_dir)
    assert first.equals(second) and len(first) == 2
    assert sorted(load_results(), key=lambda r: r.name) == saved
    assert {p.name: p.read_bytes() for p in results_dir.glob("*.json")} == before


def test_runs_are_ranked_on_the_same_items_and_the_others_named():
    run("All five", 100)
    run("Four", 300, size=4)
    run("Also four", 50, size=4)
    run("Two", 10, size=2)
    shuffled = ROWS[1:] + ROWS[:1]
    run("Other items", 120, rows=shuffled, size=4)
    table, fig = leaderboard()
    assert table.attrs["size"] == 4  # most runs used 4 items
    assert set(table["size"]) == {4} and set(table["name"]) == {"All five", "Four", "Also four"}
    error = dict(zip(table["name"], table["error"]))
    assert error["All five"] == pytest.approx(expected_error(100, size=4))  # rescored on its first 4 items
    assert error["Four"] == pytest.approx(expected_error(300, size=4))
    assert sorted(table.attrs["left_out"]) == ["Other items (scored on other test items)",
                                               "Two (scored on 2 items)"]
    assert "4 test items" in fig.layout.title.text
    table, _ = leaderboard(size=2)
    assert set(table["name"]) == {"All five", "Four", "Also four", "Two"}
    assert dict(zip(table["name"], table["error"]))["Two"] == pytest.approx(expected_error(10, size=2))


def test_reference_figures_are_a_panel_of_their_own_never_ranked_with_this_run(tmp_path):
    run("Mine", 100)
    table, fig = leaderboard()
    assert table["name"].tolist() == ["Mine"]  # no course or benchmark row in this run's ranking
    bench = tmp_path / "accuracy.json"
    bench.write_text(json.dumps({"machine": {"gpu": "NVIDIA H200"}, "preset": "smol", "seeds": {
        "0": {"errors": {"fine_tuned_expected": 30.0, "ridge_bow": 40.0}, "train_s": 70},
        "1": {"errors": {"fine_tuned_expected": 32.0, "ridge_bow": 40.0}, "train_s": 71}}}))
    ref, ref_fig = reference_board(bench)
    course = ref[ref["source"] == COURSE]
    assert dict(zip(course["name"], course["error"])) == COURSE_REFERENCE
    ours = ref[ref["source"] != COURSE]
    assert dict(zip(ours["name"], ours["error"])) == {"fine_tuned_expected": 31.0, "ridge_bow": 40.0}  # seed means
    assert set(ours["source"]) == {"our benchmark: preset smol on NVIDIA H200, mean of 2 seed(s)"}
    assert {trace.name for trace in ref_fig.data} == set(ref["source"])  # one colour per source, labelled
    assert "Mine" not in ref["name"].tolist()


def test_a_missing_benchmark_leaves_the_course_panel_and_a_damaged_one_is_named(tmp_path):
    assert bench_reference(tmp_path / "absent.json") == []
    table, _ = reference_board(tmp_path / "absent.json")
    assert set(table["source"]) == {COURSE}
    bad = tmp_path / "accuracy.json"
    bad.write_text('{"seeds": {"0": {}}}')
    with pytest.raises(ValueError, match="not a readable accuracy benchmark") as info:
        reference_board(bad)
    assert str(bad) in str(info.value)


def test_empty_folder_gives_an_empty_table(results_dir):
    table, fig = leaderboard()
    assert table.empty and load_results() == [] and table.attrs["left_out"] == []


def test_cache_folder_is_skipped(results_dir):
    evaluate(lambda row: 5.0, ROWS, title="Cached", cache_key="k")
    assert list((results_dir / "cache").glob("*.jsonl"))
    assert [r.name for r in load_results()] == ["Cached"]


@pytest.mark.parametrize("content, problem", [
    ("{truncated", "not a readable results file"),
    ('{"kind": "pricer.result", "schema": 2}', "schema 2"),
])
def test_bad_files_stop_the_leaderboard_and_are_left_alone(results_dir, content, problem):
    run("Good", 10)
    bad = results_dir / "bad.json"
    bad.write_text(content)
    with pytest.raises(ValueError, match=problem) as info:
        leaderboard()
    assert str(bad) in str(info.value)
    assert bad.read_text() == content
    assert isinstance(Result.load(next(p for p in results_dir.glob("good-*.json"))), Result)


def test_the_package_ships_the_benchmarks_figures_as_they_were_measured():
    """Notebook 5 on Colab (pricer pip-installed, no bench/ folder) still shows the GPU reference rows."""
    from pricer.leaderboard import BENCH

    measured = Path(__file__).resolve().parents[1] / "bench" / "results" / "accuracy.json"
    assert BENCH.read_bytes() == measured.read_bytes(), "copy bench/results/accuracy.json to pricer/ (bench/accuracy.py does)"
    rows = bench_reference()
    seeds = json.loads(measured.read_text())["seeds"]
    assert {r["name"] for r in rows} == {name for run in seeds.values() for name in run["errors"]}
    assert all(r["source"].startswith("our benchmark: preset smol on ") for r in rows)


def test_the_package_ships_the_real_listings_figures_as_they_were_measured():
    """Notebook 5's reference rows include real listings, named apart from the catalog's so both fit one chart."""
    from pricer.leaderboard import BENCH, REAL_BENCH

    measured = Path(__file__).resolve().parents[1] / "bench" / "results" / "real_accuracy.json"
    assert REAL_BENCH.read_bytes() == measured.read_bytes(), "copy bench/results/real_accuracy.json to pricer/"
    record = json.loads(measured.read_text())
    rows = bench_reference(REAL_BENCH)
    assert {r["name"] for r in rows} == {f"{n} (real listings)" for run in record["seeds"].values() for n in run["errors"]}
    assert all(r["source"].startswith("our benchmark on real listings: preset smol (") for r in rows)
    table, _ = reference_board((BENCH, REAL_BENCH))
    assert not table.duplicated(["name"]).any()  # one bar per name: none stacked on another source's
    assert set(table["source"]) >= {COURSE, rows[0]["source"]}
