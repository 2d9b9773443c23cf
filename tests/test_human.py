"""pricer.human: the template a class fills in, and scoring what they wrote."""

import csv

import numpy as np
import pytest

from pricer.catalog import make_splits
from pricer.human import (COLUMNS, human_predictor, load_human_guesses, template_for_preset,
                          write_human_template)
from pricer.items import DataError, Item
from pricer.prompts import make_prompt, text_of


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


def test_blank_and_unreadable_guesses_are_named_by_file_line_and_row(test_items, tmp_path):
    path = write_human_template(test_items, tmp_path / "human.csv", size=5)
    fill(path, ["10", "", "12", "about twenty", "-4"])
    with pytest.raises(DataError) as failure:
        load_human_guesses(path)
    message = str(failure.value)
    assert str(path) in message and "3 guess(es)" in message
    lines = path.read_text(encoding="utf-8").splitlines()  # a summary spans several lines of the file
    starts = [next(n for n, text in enumerate(lines, 1) if text.startswith(f"{item.id},")) for item in test_items[:5]]
    assert starts[1] > 3  # so a line number is not a row number here
    for i, row in ((1, 3), (3, 5), (4, 6)):  # spreadsheet rows: the header is row 1
        assert f"line {starts[i]} (row {row})" in message
    for i in (0, 2):
        assert f"line {starts[i]} " not in message


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
    path = template_for_preset(tmp_path / "human.csv", size=4, preset="tiny")
    _, _, test = Item.from_hub("embedded")
    assert [r["title"] for r in read(path)] == [item.title for item in test[:4]]


def test_cli_writes_a_template_from_any_items_folder(test_items, tmp_path, capsys):
    from pricer.cli import main

    folder = Item.save_items(tmp_path / "my_items", test_items[:3], test_items[3:6], test_items[6:12])
    main(["human-template", "--items", str(folder), "--out", str(tmp_path / "mine.csv"), "--size", "4"])
    assert [r["title"] for r in read(tmp_path / "mine.csv")] == [item.title for item in test_items[6:10]]
    assert "mine.csv" in capsys.readouterr().out
    with pytest.raises(DataError, match=r"none/test.jsonl: no rows \(an empty file\); the test split needs products"):
        template_for_preset(tmp_path / "x.csv", items=str(Item.save_items(tmp_path / "none", test_items[:1],
                                                                           test_items[1:2], [])))


# The course's week-6 human_in.csv / human_out.csv (ed-donner/llm_engineering, read at commit 109b683e7):
# no header, two columns (the item's summary, the guess: 0 in human_in.csv), written by csv.writer, so
# rows end in CRLF while the quoted summaries break their lines with "  \n"; 100 rows, human_out.csv
# has no final line break and whole-dollar guesses. These rows copy that layout with our products.

def course_items(test_items, n=6) -> list:
    """Items whose summaries are laid out like the course's (Markdown breaks, a quoted inch mark)."""
    return [Item(title=f"Widget {i}", category="Tools", price=item.price, id=item.id,
                 summary=f'Title: Widget {i} 10.6" Model  \nCategory: Tools  \nBrand: Acme  \n'
                         f"Description: {item.summary.splitlines()[-1]}  \nDetails: part {i}, \u2011 long life.")
            for i, item in enumerate(test_items[:n])]


def write_course_csv(path, items, guesses, final_newline=False) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([item.summary, guess] for item, guess in zip(items, guesses))
    if not final_newline:
        path.write_bytes(path.read_bytes().removesuffix(b"\r\n"))


def test_the_courses_headerless_human_out_csv_loads_as_it_is(test_items, tmp_path):
    from pricer.evaluator import evaluate

    items = course_items(test_items)
    guesses = [120, 300, 43, 55, 12, 220]
    write_course_csv(tmp_path / "human_out.csv", items, guesses)
    predictor = human_predictor(tmp_path / "human_out.csv")
    assert predictor.size == 6
    assert [predictor(item) for item in reversed(items)] == guesses[::-1]  # matched by text, any order
    cut = {"prompt": make_prompt(items[2].summary.split("Brand:")[0]), "completion": "0"}
    assert predictor(cut) == 43  # a prompt whose summary was cut: matched by its Title line
    result = evaluate(predictor, items, size=predictor.size)
    assert result.metrics["error"] == pytest.approx(np.mean([abs(g - i.price) for g, i in zip(guesses, items)]))
    rows = load_human_guesses(tmp_path / "human_out.csv")
    assert [r["title"] for r in rows] == [f'Widget {i} 10.6" Model' for i in range(6)]
    assert [r["text"] for r in rows] == [text_of(item) for item in items]


def test_the_courses_unfilled_human_in_csv_is_refused_as_a_template(test_items, tmp_path):
    write_course_csv(tmp_path / "human_in.csv", course_items(test_items), [0] * 6, final_newline=True)
    with pytest.raises(DataError, match=r"human_in\.csv: 6 guess\(es\).*unfilled human_in\.csv"):
        load_human_guesses(tmp_path / "human_in.csv")


def test_a_bad_row_of_a_headerless_file_is_named_by_its_line(test_items, tmp_path):
    items = course_items(test_items, n=3)
    path = tmp_path / "human_out.csv"
    write_course_csv(path, items, [10, "a lot", 30])
    with pytest.raises(DataError) as failure:
        load_human_guesses(path)
    assert str(path) in str(failure.value) and "guess 'a lot'" in str(failure.value)
    assert "line 6 (row 2) ('Widget 1 10.6\" Model')" in str(failure.value)  # five lines per summary
    with open(path, "a", encoding="utf-8", newline="") as f:
        f.write('\r\n"Title: Widget 9",12,extra\r\n')
    with pytest.raises(DataError, match=r"line 16 \(row 4\).*3 columns"):
        load_human_guesses(path)


def test_a_guess_is_read_like_any_answer(test_items, tmp_path):
    from pricer.evaluator import Tester

    path = write_human_template(test_items, tmp_path / "human.csv", size=4)
    written = ["$1,234.50", " 49 ", "about 20 dollars", "US$7.5"]
    fill(path, written)
    assert [r["guess"] for r in load_human_guesses(path)] == [Tester.post_process(w) for w in written]


def test_a_datapoint_matched_by_two_rows_with_different_guesses_names_them(test_items, tmp_path):
    items = course_items(test_items, n=2)
    write_course_csv(tmp_path / "twice.csv", [items[0], items[1], items[0]], [10, 20, 30])
    predictor = human_predictor(tmp_path / "twice.csv")
    with pytest.raises(DataError, match=r"twice\.csv: no single human guess .*line 1 and line 11"):
        predictor(items[0])
