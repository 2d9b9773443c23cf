"""The embedded catalog: deterministic, valid, and learnable from its text."""

import hashlib
import json
import subprocess
import sys

import numpy as np

from pricer.catalog import CATEGORIES, generate, make_splits, write_catalog
from pricer.items import MAX_PRICE, MIN_PRICE, Item, load_prompts


def _digest(items):
    return hashlib.sha256("".join(json.dumps(i.model_dump()) for i in items).encode()).hexdigest()


def test_same_seed_same_items_other_seed_other_items():
    assert _digest(generate(200, seed=1)) == _digest(generate(200, seed=1))
    assert _digest(generate(200, seed=1)) != _digest(generate(200, seed=2))


def test_same_bytes_in_a_fresh_interpreter():
    code = ("import hashlib, json; from pricer.catalog import generate; "
            "print(hashlib.sha256(''.join(json.dumps(i.model_dump()) for i in generate(200, seed=1))"
            ".encode()).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == _digest(generate(200, seed=1))


def test_items_follow_the_hub_schema_and_course_layout():
    items = generate(500, seed=3)
    assert len({i.category for i in items}) >= 8 == len(CATEGORIES) - 2
    for item in items:
        assert MIN_PRICE <= item.price <= MAX_PRICE
        assert item.summary.startswith(f"Title: {item.title}\nCategory: ")
        for label in ("\nBrand: ", "\nDescription: ", "\nDetails: "):
            assert label in item.summary
        assert item.full and item.weight > 0
    assert [i.id for i in items] == list(range(500))


def test_prices_have_a_long_right_tail():
    prices = np.array([i.price for i in generate(3000, seed=5)])
    assert np.mean(prices) > 1.4 * np.median(prices)  # skewed like real shop prices
    assert np.percentile(prices, 99) > 5 * np.median(prices)
    assert (prices > 990).mean() < 0.01  # no pile-up at the window's edge


def test_text_predicts_price_far_better_than_a_constant():
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import Ridge

    train, _, test = make_splits(seed=11, sizes={"train": 2000, "val": 0, "test": 300})
    y, y_test = (np.array([i.price for i in split]) for split in (train, test))
    vectorizer = CountVectorizer(token_pattern=r"(?u)\b\w+\b")
    ridge = Ridge(alpha=1.0).fit(vectorizer.fit_transform([i.summary for i in train]), y)
    ridge_error = np.abs(ridge.predict(vectorizer.transform([i.summary for i in test])) - y_test).mean()
    constant_error = np.abs(y.mean() - y_test).mean()
    assert ridge_error < 0.7 * constant_error


def test_numbers_in_the_text_carry_price():
    """Same product kind, brand and options: the bigger spec number costs more on average."""
    items = [i for i in generate(6000, seed=9) if " Portable SSD" in i.title and "(" not in i.title]
    sized = sorted(items, key=lambda i: int(i.title.split("GB")[0].split()[-1]))
    small, large = sized[: len(sized) // 3], sized[-len(sized) // 3:]
    assert np.median([i.price for i in large]) > 1.5 * np.median([i.price for i in small])


def test_write_catalog_and_cli(tmp_path, tokenizer):
    out = write_catalog(tmp_path / "a", sizes={"train": 30, "val": 5, "test": 10}, summary_tokens=40,
                        tokenizer=tokenizer)
    train, val, test = Item.from_hub(str(out / "items"))
    assert [len(train), len(val), len(test)] == [30, 5, 10]
    prompts = load_prompts(str(out / "prompts-40"))
    assert len(prompts["test"]) == 10
    assert all(len(tokenizer.encode(i.summary, add_special_tokens=False)) > 40 for i in train[:3])
    subprocess.run([sys.executable, "-m", "pricer", "data", "--out", str(tmp_path / "b")], check=True)
    first = (tmp_path / "b" / "items" / "train.jsonl").read_bytes()
    assert first == (write_catalog(tmp_path / "c") / "items" / "train.jsonl").read_bytes()


def test_processes_writing_the_catalog_at_once_all_succeed(tmp_path):
    """A multi-GPU launch on a fresh machine: every process writes the embedded catalog on first use."""
    from concurrent.futures import ProcessPoolExecutor

    out = tmp_path / "catalog"
    with ProcessPoolExecutor(4) as pool:
        list(pool.map(write_catalog, [out] * 12))  # raises if one writer's rename took another's file
    expected = write_catalog(tmp_path / "alone") / "items"
    for split in ("train", "validation", "test"):
        assert (out / "items" / f"{split}.jsonl").read_bytes() == (expected / f"{split}.jsonl").read_bytes()
    assert not list((out / "items").glob(".*tmp"))
