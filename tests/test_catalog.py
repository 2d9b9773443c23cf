"""The embedded catalog: deterministic, valid, and priced the way real listings are (value a bag of
words misses: magnitudes, combinations, phrases that flip it, text past the cut)."""

import dataclasses
import hashlib
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from pricer.catalog import KINDS, generate, listings, make_splits, product, split_listings, value_of
from pricer.items import MAX_PRICE, MIN_PRICE, Item, load_prompts
from pricer.sources import write_catalog

SEEDS = range(12)
PLAIN = dict(tier=2, line="standard", condition="New", warranty="1-year", pack=1, part=False, no_battery=False,
             accessory=None, host=None)  # a mid brand's standard product, new and alone: room to vary one fact


def _digest(items):
    return hashlib.sha256("".join(json.dumps(i.model_dump()) for i in items).encode()).hexdigest()


def _price(seed, kind, **change) -> float:
    """The price of a plain `kind` drawn from `seed`, with `change` made: same product, same noise."""
    return product(seed, **{**PLAIN, "kind": kind, **change}).item.price


def _same_but(a, b, *names):
    """The two listings' facts differ only in `names`: a paired comparison, same noise."""
    return all(getattr(a.facts, f.name) == getattr(b.facts, f.name) for f in dataclasses.fields(a.facts)
               if f.name not in names)


def _ratio(kind, plain=None, **change) -> float:
    """What `change` does to a plain `kind`'s price (with `plain` facts fixed too): the median over
    SEEDS of changed / plain."""
    plain = plain or {}
    return float(np.median([_price(s, kind, **plain, **change) / _price(s, kind, **plain) for s in SEEDS]))


def test_same_seed_same_items_other_seed_other_items():
    assert _digest(generate(200, seed=1)) == _digest(generate(200, seed=1))
    assert _digest(generate(200, seed=1)) != _digest(generate(200, seed=2))
    sizes = {"train": 50, "val": 5, "test": 20}
    assert _digest(sum(make_splits(3, sizes), [])) == _digest(sum(make_splits(3, sizes), []))
    assert _digest(make_splits(3, sizes)[2]) != _digest(make_splits(4, sizes)[2])


def test_same_bytes_in_a_fresh_interpreter():
    code = ("import hashlib, json; from pricer.catalog import make_splits; "
            "print(hashlib.sha256(''.join(json.dumps(i.model_dump()) for s in make_splits(1, "
            "{'train': 150, 'val': 10, 'test': 40}) for i in s).encode()).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == _digest(sum(make_splits(1, {"train": 150, "val": 10, "test": 40}), []))


def test_items_follow_the_hub_schema_and_course_layout():
    items = generate(500, seed=3)
    assert len({i.category for i in items}) >= 8
    for item in items:
        assert MIN_PRICE <= item.price <= MAX_PRICE and round(item.price, 2) == item.price
        assert item.summary.startswith(f"Title: {item.title}\nCategory: ")
        for label in ("\nBrand: ", "\nDescription: ", "\nDetails: "):
            assert label in item.summary
        assert item.full.startswith(item.title) and item.weight > 0
    assert [i.id for i in items] == list(range(500))


def test_prices_have_a_long_right_tail():
    prices = np.array([i.price for i in generate(3000, seed=5)])
    assert np.mean(prices) > 1.4 * np.median(prices)  # skewed like real shop prices
    assert np.percentile(prices, 99) > 5 * np.median(prices)
    assert (prices > 990).mean() < 0.01  # no pile-up at the window's edge


def test_a_split_does_not_depend_on_the_others_sizes():
    small = make_splits(2, {"train": 40, "val": 5, "test": 30})
    large = make_splits(2, {"train": 300, "val": 5, "test": 30})
    assert _digest(large[0][:40]) == _digest(small[0])  # a bigger train split starts with the smaller
    assert [i.summary for i in large[2]] == [i.summary for i in small[2]]  # the same test products
    assert len({i.id for split in large for i in split}) == 335  # ids stay unique across splits


def test_bad_sizes_and_facts_say_what_to_fix():
    with pytest.raises(ValueError, match="'train' must be a whole number of rows >= 0, got -1"):
        make_splits(1, {"train": -1, "val": 0, "test": 0})
    with pytest.raises(ValueError, match="'test' must be a whole number"):
        make_splits(1, {"train": 1, "val": 1})
    with pytest.raises(ValueError, match=r"unknown fact\(s\) \['colour'\]"):
        product(1, colour="red")
    with pytest.raises(ValueError, match="unknown kind 'Toaster'"):
        product(1, kind="Toaster")
    with pytest.raises(ValueError, match="outside 0.5-999.49 dollars"):
        product(1, kind="Mountain Bike", tier=5, line="max", value=27, extra=29, pack=1, part=False)


def test_the_noiseless_value_is_what_the_facts_imply():
    for listing in listings(200, seed=4):
        assert listing.value == value_of(listing.facts)
        assert abs(math.log(listing.item.price / listing.value)) < 0.8  # noise, not a different price


def test_a_bigger_number_costs_more_on_a_smooth_curve():
    for seed in SEEDS:
        prices = [_price(seed, "Portable SSD", value=gb) for gb in (250, 500, 1000, 2000, 4000)]
        assert prices == sorted(prices) and prices[-1] > 4 * prices[0]
        steps = np.diff(np.log(prices))  # equal steps in log capacity, equal steps in log price
        assert steps.max() - steps.min() < 0.25


def test_numbers_come_in_mixed_units_and_several_per_listing():
    drawn = listings(4000, seed=6)
    big = [x for x in drawn if x.facts.kind == "Portable SSD" and x.facts.value >= 1000]
    assert any("TB" in x.item.title for x in big)  # 1500 reads "1.5 TB" ...
    assert any(f"{x.facts.value}GB" in x.item.title or f"{x.facts.value} GB" in x.item.title
               for x in big)  # ... or "1500GB"
    assert all("MB/s" in x.item.title for x in big)  # and a second number: read speed
    packs = [x.item.title for x in drawn if x.facts.pack > 1]
    assert any("Pack of" in t for t in packs) and any("-Pack" in t for t in packs)


def test_for_parts_renewed_and_part_only_are_cheaper():
    for seed in SEEDS:
        new = product(seed, **PLAIN, kind="Espresso Machine")
        broken = product(seed, **{**PLAIN, "condition": "For parts or not working"}, kind="Espresso Machine")
        assert _same_but(new, broken, "condition") and broken.item.price < 0.3 * new.item.price
        assert 0.6 < _price(seed, "Espresso Machine", condition="Renewed") / new.item.price < 0.85
        assert _price(seed, "Espresso Machine", part=True) < 0.3 * new.item.price


def test_a_premium_brands_budget_line_is_not_the_sum_of_its_factors():
    """Additive in log price, the budget line would cut every brand's price by the same share."""
    for seed in SEEDS:
        def change(tier, line):  # a plastic 40mm watch: even the luxury Ultra stays in the window
            watch = dict(tier=tier, material="plastic", value=40)
            return _price(seed, "Smart Watch", line=line, **watch) / _price(seed, "Smart Watch", **watch)

        assert change(5, "budget") < 0.75 * change(0, "budget")  # the luxury brand's budget line loses far more
        assert change(0, "pro") < 1.25 < change(5, "pro")  # a budget brand's "Pro" adds little, a premium one's a lot


def test_what_a_word_is_worth_depends_on_the_product():
    materials = {kind: _ratio(kind, material="titanium") / _ratio(kind, material="plastic")
                 for kind in ("Smart Watch", "Portable SSD")}
    assert materials["Smart Watch"] > 2 and materials["Portable SSD"] < 1.3
    assert _ratio("Cordless Drill", no_battery=True) < 0.7 < 0.9 < _ratio("Label Maker", no_battery=True)
    assert _ratio("Ballpoint Pens", pack=10) / 10 < 0.6 < 0.9 < _ratio("Bluetooth Speaker", pack=2) / 2  # bulk discount
    bundle = {kind: _ratio(kind, {"value": value}, accessory="a carrying case")
              for kind, value in (("Phone Case", 8), ("Mountain Bike", 7))}
    assert bundle["Phone Case"] > 1.5 and bundle["Mountain Bike"] < 1.1  # dollars added, not a share
    assert _ratio("Cordless Drill", warranty="5-year") > 1.1 * _ratio("Cordless Drill", warranty="90-day")


def test_naming_a_pricier_product_it_fits_does_not_change_the_price():
    for seed in SEEDS:
        plain = product(seed, **PLAIN, kind="Phone Case")
        named = product(seed, **{**PLAIN, "host": "Aurelius Ultra"}, kind="Phone Case")
        assert "for Aurelius Ultra Smartphone" in named.item.title and "Aurelius" not in plain.item.title
        assert named.item.price == plain.item.price


def test_some_flips_are_stated_only_far_from_the_title():
    from sklearn.feature_extraction.text import CountVectorizer

    drills = [x for x in listings(3000, seed=8) if x.facts.no_battery and x.facts.kind == "Cordless Drill"]
    quiet = [x for x in drills if "battery" not in x.item.title.lower()]
    assert quiet and all("Battery: not included" in x.item.summary for x in quiet)
    words = CountVectorizer(stop_words="english", ngram_range=(1, 2)).build_analyzer()
    assert words("Battery: not included") == words("Battery: included")  # what a bag of words sees


def test_text_predicts_price_far_better_than_a_constant_and_far_worse_than_a_reader_could():
    """Ridge on words beats the constant by a margin; the noise floor (the error of the generator's
    own noiseless value, the best any model can do) is far below ridge: there is room to learn."""
    from pricer.baselines import fit_baseline

    train, _, test = split_listings(seed=11, sizes={"train": 2000, "val": 0, "test": 300})
    y, y_test = (np.array([x.item.price for x in split]) for split in (train, test))
    ridge = fit_baseline("ridge_bow", [x.item for x in train])
    ridge_error = np.abs(np.array(ridge.predict_batch([x.item for x in test])) - y_test).mean()
    constant_error = np.abs(y.mean() - y_test).mean()
    floor = np.mean([abs(x.item.price - x.value) for x in test])
    assert ridge_error < 0.75 * constant_error
    assert floor < 0.5 * ridge_error


def test_summaries_are_long_enough_for_the_cut_to_bite_and_lead_with_the_title(tokenizer):
    items = generate(300, seed=12)
    counts = np.array([len(tokenizer.encode(item.summary, add_special_tokens=False)) for item in items])
    assert 0.3 < (counts > 110).mean() < 0.95 and counts.max() > 1.5 * 110
    assert all(item.summary.index(item.title) < item.summary.index("Warranty:") for item in items)


def test_write_catalog_and_cli(tmp_path, tokenizer):
    sizes = {"train": 30, "val": 5, "test": 10}
    out = write_catalog(tmp_path / "a", sizes=sizes, summary_tokens=40)  # cut with the embedded model's tokenizer
    train, val, test = Item.from_hub(str(out / "items"))
    assert [len(train), len(val), len(test)] == [30, 5, 10]
    prompts = load_prompts(str(out / "prompts-40"))
    assert len(prompts["test"]) == 10
    assert all(len(tokenizer.encode(i.summary, add_special_tokens=False)) > 40 for i in train[:3])
    subprocess.run([sys.executable, "-m", "pricer", "data", "--out", str(tmp_path / "b"), "--train", "30",
                    "--val", "5", "--test", "10"], check=True, capture_output=True)
    for split in ("train", "validation", "test"):
        assert ((tmp_path / "b" / "items" / f"{split}.jsonl").read_bytes()
                == (out / "items" / f"{split}.jsonl").read_bytes())
    bad = subprocess.run([sys.executable, "-m", "pricer", "data", "--out", str(tmp_path / "c"), "--test", "-1"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "--test: must be at least 1, got -1" in bad.stderr and not (tmp_path / "c").exists()


def test_the_cli_writes_the_default_sizes(tmp_path):
    subprocess.run([sys.executable, "-m", "pricer", "data", "--out", str(tmp_path / "b")], check=True,
                   capture_output=True)
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


def test_every_kind_can_be_drawn():
    drawn = {x.facts.kind for x in listings(3000, seed=13)}
    assert drawn == set(KINDS)
