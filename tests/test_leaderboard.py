"""pricer.leaderboard: runs saved by the evaluator, ranked, latest run per name, course figures labelled."""

import pytest

from pricer.evaluator import Result, evaluate
from pricer.leaderboard import COURSE, COURSE_REFERENCE, THIS_RUN, leaderboard, load_results

ROWS = [{"prompt": f"Q\n\nTitle: Item {i}\n\nPrice is $", "completion": f"{price:.2f}"}
        for i, price in enumerate([10.0, 55.5, 120.0, 300.0, 999.0])]


@pytest.fixture(autouse=True)
def results_dir(tmp_path, monkeypatch):
    """Runs are saved under PRICER_RESULTS, a fresh folder per test."""
    monkeypatch.setenv("PRICER_RESULTS", str(tmp_path / "results"))
    return tmp_path / "results"


def run(name, guess, date=None, **meta):
    """Evaluate a constant guess under `name` and save it; `date` pins the run's time."""
    return evaluate(lambda row: guess, ROWS, title=name, meta={**meta, **({"date": date} if date else {})})


def expected_error(guess):
    return sum(abs(guess - float(r["completion"])) for r in ROWS) / len(ROWS)


def test_rows_are_sorted_by_error_and_the_chart_puts_the_best_on_top():
    for name, guess in [("Hundred", 100), ("Ten", 10), ("Three hundred", 300), ("Fifty", 50)]:
        run(name, guess, model="const", preset="tiny", data="embedded")
    table, fig = leaderboard()
    assert list(table["error"]) == sorted(expected_error(g) for g in (100, 10, 300, 50))
    assert table["error"].is_monotonic_increasing
    assert set(table["source"]) == {THIS_RUN}
    assert list(table.columns[:12]) == ["name", "model", "preset", "data", "size", "error", "rmsle", "r2",
                                        "hit_rate", "unparsed", "seconds", "date"]
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


def test_reference_rows_are_labelled_and_kept_apart():
    run("Mine", 100)
    plain, _ = leaderboard()
    assert set(plain["source"]) == {THIS_RUN}
    table, fig = leaderboard(reference=True)
    course = table[table["source"] == COURSE]
    assert COURSE == "course (2025, real Amazon data)"
    assert len(course) == len(COURSE_REFERENCE) == 14
    assert all(name.endswith("(course, real data)") for name in course["name"])
    assert sorted(course["error"]) == sorted(COURSE_REFERENCE.values())
    assert COURSE_REFERENCE["Fine-tuned (full)"] == 39.85 and COURSE_REFERENCE["Constant"] == 106.18
    assert table["error"].is_monotonic_increasing
    assert table[table["source"] == THIS_RUN]["name"].tolist() == ["Mine"]
    assert {trace.name for trace in fig.data} == {THIS_RUN, COURSE}  # one colour per source
    colours = {trace.name: trace.marker.color for trace in fig.data}
    assert colours[THIS_RUN] != colours[COURSE]


def test_empty_folder_gives_an_empty_table(results_dir):
    table, fig = leaderboard()
    assert table.empty and load_results() == []
    table, _ = leaderboard(reference=True)
    assert len(table) == len(COURSE_REFERENCE)


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
