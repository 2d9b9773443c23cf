"""The course's prompt format, the Item class and dataset loading from folders."""

import json

import pytest

from pricer.items import DataError, Item, check_prompt_row, load_prompts, make_all_prompts, read_splits
from pricer.prompts import make_completion, make_prompt, truncate

ROW = {"title": "Acme 20W Speaker", "category": "Electronics", "price": 349.99,
       "summary": "Title: Acme 20W Speaker\nCategory: Electronics", "id": 3}


def test_prompt_is_the_course_format():
    assert make_prompt("S") == "What does this cost to the nearest dollar?\n\nS\n\nPrice is $"


@pytest.mark.parametrize("price, do_round, expected", [
    (349.99, True, "350.00"), (349.49, True, "349.00"), (349.99, False, "349.99"), (12.5, False, "12.5")])
def test_completion_rounds_for_training_only(price, do_round, expected):
    assert make_completion(price, do_round) == expected


def test_truncate_caps_tokens_and_keeps_short_text(tokenizer):
    long = " ".join(f"word{i}" for i in range(200))
    cut = truncate(tokenizer, long, 20)
    assert len(tokenizer.encode(cut, add_special_tokens=False)) <= 20
    assert long.startswith(cut)
    assert truncate(tokenizer, "short text", 20) == "short text"


MULTI_BYTE = ("Title: 6000\u202fmAh Battery 🔋 for 𝐆𝐚𝐥𝐚𝐱𝐲 Tab\u202fS3 😀👍🏽 ∑ 𝓟𝓻𝓸 — 10\u202f× zoom "
              "café naïve 日本語 🇯🇵 ü" * 3)


def test_truncate_never_splits_a_character(tokenizer):
    tokens = tokenizer.encode(MULTI_BYTE, add_special_tokens=False)
    naive = [tokenizer.decode(tokens[:n]) for n in range(1, len(tokens))]
    assert sum(cut.endswith("\ufffd") for cut in naive) > 10  # the text does split characters
    cuts = [truncate(tokenizer, MULTI_BYTE, n) for n in range(1, len(tokens))]
    for n, cut in enumerate(cuts, start=1):
        assert "\ufffd" not in cut and MULTI_BYTE.startswith(cut)
        assert len(tokenizer.encode(cut, add_special_tokens=False)) <= n
    assert [len(c) for c in cuts] == sorted(len(c) for c in cuts)  # a longer cap never keeps less
    assert cuts[-1].startswith(MULTI_BYTE[:len(MULTI_BYTE) // 2])  # backs off a character, not the text


def test_truncate_keeps_a_replacement_character_the_text_has(tokenizer):
    text = "Title: Broken \ufffd byte in the source " + "word " * 50
    count = len(tokenizer.encode("Title: Broken \ufffd", add_special_tokens=False))
    assert truncate(tokenizer, text, count) == "Title: Broken \ufffd"


def test_item_prompts_and_token_counts(tokenizer):
    item = Item(**ROW)
    item.make_prompts(tokenizer, max_tokens=110, do_round=True)
    assert item.prompt == make_prompt(ROW["summary"]) and item.completion == "350.00"
    assert item.to_datapoint() == {"prompt": item.prompt, "completion": "350.00"}
    assert item.count_tokens(tokenizer) == len(tokenizer.encode(ROW["summary"], add_special_tokens=False))
    assert item.count_prompt_tokens(tokenizer) > item.count_tokens(tokenizer)
    assert repr(item) == "<Acme 20W Speaker = $349.99>"


@pytest.mark.parametrize("field, value, words", [
    ("title", "  ", "title"), ("price", 0.2, "price"), ("price", 1200, "price"),
    ("price", float("nan"), "price"), ("summary", "", "summary"), ("price", "cheap", "price")])
def test_bad_rows_name_the_row_and_field(field, value, words):
    with pytest.raises(DataError, match=rf"train row 5: .*{words}"):
        Item.from_row({**ROW, field: value}, where="train row 5")


def test_missing_field_is_named():
    row = dict(ROW)
    del row["title"]
    with pytest.raises(DataError, match="title"):
        Item.from_row(row)


def test_datapoint_needs_prompts():
    with pytest.raises(DataError, match="make_prompts"):
        Item(**ROW).to_datapoint()


def _write(folder, split, rows):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.parametrize("val_name", ["validation", "val"])
def test_from_hub_reads_a_folder_with_either_split_name(tmp_path, val_name):
    for split in ("train", val_name, "test"):
        _write(tmp_path, split, [ROW, {**ROW, "id": 4}])
    train, val, test = Item.from_hub(str(tmp_path))
    assert [len(train), len(val), len(test)] == [2, 2, 2]
    assert all(isinstance(i, Item) for i in train + val + test)


def test_bulk_load_skips_and_counts_bad_rows(tmp_path, capsys):
    bad = [{**ROW, "price": -1}, {**ROW, "title": ""}]
    _write(tmp_path, "train", [ROW] + bad)
    _write(tmp_path, "validation", [ROW])
    _write(tmp_path, "test", [ROW])
    train, val, test = Item.from_hub(str(tmp_path))
    assert len(train) == 1
    out = capsys.readouterr().out
    assert "skipped 1 (unusable price); first: train.jsonl, line 2: price" in out
    assert "skipped 1 (invalid item); first: train.jsonl, line 3: title" in out


def test_missing_split_is_a_clear_error(tmp_path):
    _write(tmp_path, "train", [ROW])
    with pytest.raises(DataError, match="no val/test split"):
        read_splits(str(tmp_path), kind="items")


def test_save_and_load_prompts_round_trip(tmp_path, tokenizer, catalog):
    train, val, test = (split[:5] for split in catalog)
    make_all_prompts(tokenizer, train, val, test, max_tokens=40)
    Item.save_prompts(tmp_path, train, val, test)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test.jsonl", "train.jsonl", "val.jsonl"]
    prompts = load_prompts(str(tmp_path))
    assert prompts["train"][0] == train[0].to_datapoint()
    assert prompts["test"][0]["completion"] == str(test[0].price)  # exact price for testing
    assert prompts["val"][0]["completion"].endswith(".00")


@pytest.mark.parametrize("row, words", [
    ({"prompt": "", "completion": "3.00"}, "prompt"), ({"prompt": "p", "completion": "abc"}, "not a price"),
    ({"prompt": "p"}, "not a price"), ({"prompt": "p", "completion": "-4"}, "not a price"), ({"prompt": "p", "completion": "$1,200.00"}, "outside"), ("text", "dict")])
def test_bad_prompt_rows(row, words):
    with pytest.raises(DataError, match=words):
        check_prompt_row(row, where="test row 1")
