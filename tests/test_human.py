"""pricer.human: the template a class fills in, and scoring what they wrote."""

import csv

import numpy as np
import pytest

from pricer.catalog import make_splits
from pricer.human import (COLUMNS, human_predictor, load_human_guesses, template_for_preset,
                          write_human_template)
from pricer.prompts import make_prompt


@pytest.fixture(scope="module")
def test_items():
    return make_splits(seed=5, sizes={"train": 1, "val": 1, "test": 30})[2]


@pytest.fixture(autouse=True)
def results_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PRICER_RESULTS", str(tmp_path / "results"))


def read(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def fill(path, guesses) -> None:
    """What a class does: type a guess into each row (a spreadsheet saves CSV again)."""
    rows = read(path)
    for row, guess in zip(rows, guesses):
        row["guess"] = guess
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def test_template_has_one_empty_row_per_item(test_items, tmp_path):
    path = write_human_template(test_items, tmp_path / "sub" / "human.csv", size=12)
    rows = read(path)
    assert list(rows[0]) == list(COLUMNS)
    assert [r["id"] for r in rows] == [str(item.id) for item in test_items[:12]]
    assert [r["title"] for r in rows] == [item.title for item in test_items[:12]]
    assert rows[3]["text"] == test_items[3].summary and all(r["guess"] == "" for r in rows)
    assert "price" not in path.read_text().lower().split("\n")[0]  # the answers are not in the sheet


def test_round_trip_scores_the_guesses(test_items, tmp_path):
    from pricer.evaluator import evaluate

    path = write_human_template(test_items, tmp_path / "human.csv", size=20)
    guesses = [round(item.price * 1.5, 2) for item in test_items[:20]]
    fill(path, [f"${g:,.2f}" for g in guesses])  # "$1,234.50" is how people write prices
    predictor = human_predictor(path)
    assert predictor.size == 20 and predictor.__name__ == "human"
    result = evaluate(predictor, test_items, size=predictor.size)
    expected = np.mean([abs(g - item.price) for g, item in zip(guesses, test_items)])
    assert result.metrics["error"] == pytest.approx(expected, abs=1e-6)
    assert result.metrics["unparsed"] == 0


def test_items_are_found_in_any_order_and_as_prompt_rows(test_items, tmp_path):
    path = write_human_template(test_items, tmp_path / "human.csv", size=10)
    fill(path, [str(i + 1) for i in range(10)])
    predictor = human_predictor(path)
    assert predictor(test_items[7]) == 8  # by id
    full = {"prompt": make_prompt(test_items[4].summary), "completion": "0"}
    cut = {"prompt": make_prompt(test_items[2].summary.split("\nDescription")[0]), "completion": "0"}
    assert predictor(full) == 5  # by text
    assert predictor(cut) == 3  # by the Title line, when the prompt's summary was cut


def test_a_template_from_prompt_rows_is_matched_by_text(test_items, tmp_path):
    rows = [{"prompt": make_prompt(item.summary), "completion": str(item.price)} for item in test_items[:5]]
    path = write_human_template(rows, tmp_path / "human.csv", size=5)
    assert [r["id"] for r in read(path)] == [f"row-{i}" for i in range(5)]
    fill(path, ["10", "20", "30", "40", "50"])
    assert human_predictor(path)(rows[3]) == 40


def test_blank_and_unreadable_guesses_are_named(test_items, tmp_path):
    path = write_human_template(test_items, tmp_path / "human.csv", size=5)
    fill(path, ["10", "", "12", "about twenty", "-4"])
    with pytest.raises(ValueError) as failure:
        load_human_guesses(path)
    message = str(failure.value)
    assert "3 guess(es)" in message
    assert "line 3" in message and "line 5" in message and "line 6" in message
    assert "line 2 " not in message and "line 4 " not in message


def test_an_item_nobody_guessed_is_an_error_naming_it(test_items, tmp_path):
    path = write_human_template(test_items, tmp_path / "human.csv", size=3)
    fill(path, ["1", "2", "3"])
    with pytest.raises(ValueError, match="no single human guess for"):
        human_predictor(path)(test_items[10])


def test_unusable_files_are_refused(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        load_human_guesses(tmp_path / "missing.csv")
    (tmp_path / "wrong.csv").write_text("name,price\nkettle,12\n")
    with pytest.raises(ValueError, match="needs a guess column"):
        load_human_guesses(tmp_path / "wrong.csv")
    (tmp_path / "blank.csv").write_text("")
    with pytest.raises(ValueError, match="the file is empty"):
        load_human_guesses(tmp_path / "blank.csv")
    (tmp_path / "empty.csv").write_text("id,title,text,guess\n")
    with pytest.raises(ValueError, match="no guesses"):
        load_human_guesses(tmp_path / "empty.csv")
    with pytest.raises(ValueError, match="size"):
        write_human_template([], tmp_path / "x.csv", size=0)


def test_cli_helper_writes_the_presets_test_items(tmp_path):
    from pricer.items import Item

    path = template_for_preset(tmp_path / "human.csv", size=4, preset="tiny")
    _, _, test = Item.from_hub("embedded")
    assert [r["title"] for r in read(path)] == [item.title for item in test[:4]]
