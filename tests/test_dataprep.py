"""Your own products, end to end: every course format read, bad rows refused by name, the prompts made once and
trained on as made, by command and through a notebook's session (rows in tests/course_rows.py, from the course)."""

import csv
import io
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from course_rows import PRODUCTS, STYLES, SPLITS, write_style  # noqa: E402

from pricer.errors import DataError, SettingError  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture
def home(monkeypatch, tmp_path):
    """A PRICER_HOME of the test's own: prompts made from items are cached there."""
    monkeypatch.setenv("PRICER_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.mark.parametrize("style", STYLES)
def test_every_course_style_reads_as_the_same_products(style, tmp_path, capsys):
    from pricer.items import Item

    train, val, test = Item.from_hub(str(write_style(tmp_path / "items", style)))
    assert [len(train), len(val), len(test)] == [len(s) for s in SPLITS.values()]
    for item, (title, *_rest) in zip(train + val + test, PRODUCTS):
        assert title in item.summary.splitlines()[0] and item.title.endswith(title[-20:])  # the title line leads
    exact = [p[2] for p in PRODUCTS]
    prices = [i.price for i in train + val + test]
    assert prices == ([float(round(p)) for p in exact] if style == "prompt rows" else exact)  # as each wrote it
    assert "kept 6 / 2 / 2 (train / val / test)" in capsys.readouterr().out


def test_bad_rows_are_skipped_by_reason_with_file_and_line(tmp_path, capsys):
    from pricer.formats import item_row
    from pricer.items import Item, read_items
    from course_rows import row

    good = [row("items", p) for p in PRODUCTS]
    bad = [{**good[0], "title": "Delphi pump, priced true", "summary": "Delphi pump", "price": True},
           {**row("raw listings", PRODUCTS[1]), "price": "None"},  # Amazon metadata's missing price
           {"messages": [{"role": "user", "content": "Title: Bose QC35"}, {"role": "assistant", "content": "P16"}]},
           good[2],  # a copy of a training row: kept as written
           row("raw listings", PRODUCTS[1]), row("raw listings", PRODUCTS[1])]  # a listing twice: week 6 keeps one
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in good[:6] + bad) + "{not json\n")
    (tmp_path / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in good[6:8]))
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in good[8:] + [good[0]]))
    items, tally = read_items(str(tmp_path))
    assert [len(items[s]) for s in ("train", "val", "test")] == [8, 2, 3]  # written twice: kept, and said
    assert tally.skipped == {"unusable price": 3, "not valid JSON": 1, "duplicate": 1}
    assert tally.first["duplicate"] == "train.jsonl, line 12: the same text as train.jsonl, line 11"
    assert tally.first["unusable price"].startswith("train.jsonl, line 7: ")
    assert tally.repeats == 1 and "test.jsonl, line 3 repeats train.jsonl, line 1" in " ".join(tally.lines())
    assert tally.first["not valid JSON"].startswith("train.jsonl, line 13")
    with pytest.raises(DataError, match="price"):
        Item.from_row({**good[0], "price": True})  # true is no price, not $1.00
    with pytest.raises(DataError, match="not a product row"):
        item_row({"name": "lamp", "cost": 3})


@pytest.mark.parametrize("kind", ["items", "prompts"])
def test_val_and_validation_together_are_refused_by_name(kind, tmp_path):
    from pricer.items import load_prompts, read_items

    write_style(tmp_path, "items" if kind == "items" else "prompt rows")
    (tmp_path / "validation.jsonl").write_text((tmp_path / "val.jsonl").read_text())
    with pytest.raises(DataError, match="val.* and validation.* are both the val split"):
        (read_items if kind == "items" else load_prompts)(str(tmp_path))


def test_split_names_as_the_course_writes_them_and_a_hash_split_when_there_are_none(tmp_path, capsys):
    from pricer.formats import folder_rows

    course = write_style(tmp_path / "course", "chat rows")
    (course / "train.jsonl").rename(course / "fine_tune_train.jsonl")
    (course / "val.jsonl").rename(course / "fine_tune_validation.jsonl")
    assert [len(v) for v in folder_rows(course).values()] == [6, 2, 2]
    (course / "notes.jsonl").write_text("{}\n")
    with pytest.raises(DataError, match="notes.jsonl has no split name"):
        folder_rows(course)
    pooled = tmp_path / "pooled"
    pooled.mkdir()
    (pooled / "products.jsonl").write_text((course / "fine_tune_train.jsonl").read_text() * 1)
    splits = folder_rows(pooled)
    assert sum(map(len, splits.values())) == 6 and "split 80/10/10 by a hash" in capsys.readouterr().out
    assert folder_rows(pooled) == splits  # the same split every time
    (pooled / "products.jsonl").unlink()
    (pooled / "train.pkl").write_bytes(b"\x80")
    with pytest.raises(DataError, match="pickles of the course's Item objects"):
        folder_rows(pooled)


def _as_table(rows: list[dict], delimiter: str = ",", newline: str = "\n") -> str:
    """Rows as a spreadsheet saves them: a header line, every value as text, cells quoted where they must be."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), delimiter=delimiter, lineterminator=newline)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def test_a_spreadsheets_csv_and_a_datasets_json_export_read_as_the_jsonl_products(tmp_path, capsys):
    from pricer.items import read_items
    from course_rows import row

    expected, _ = read_items(str(write_style(tmp_path / "jsonl", "items")))
    sheet, export = tmp_path / "sheet", tmp_path / "export"
    sheet.mkdir(), export.mkdir()
    for split, products in SPLITS.items():  # Excel in Europe: `;`, CRLF, a BOM, "$" prices, "Title" capitalised
        rows = [{"Title": r["title"], "Category": r["category"], "Price": f"${r['price']:,.2f}",
                 "Summary": r["summary"], "weight": ""} for r in (row("items", p) for p in products)]
        (sheet / f"{split}.csv").write_text("\ufeff" + _as_table(rows, ";", "\r\n"), encoding="utf-8", newline="")
        json_rows = [json.dumps(row("items", p)) for p in products]  # Dataset.to_json: lines; a list for val
        (export / f"{split}.json").write_text(f"[{', '.join(json_rows)}]" if split == "val" else "\n".join(json_rows))
    (export / "sources.json").write_text('{"made by": "a notebook"}')
    for folder in (sheet, export):
        items, tally = read_items(str(folder))
        assert {s: [i.model_dump() for i in v] for s, v in items.items()} == \
            {s: [i.model_dump() for i in v] for s, v in expected.items()}  # every product, field and price as read
        assert not tally.skipped
    said = capsys.readouterr().out
    assert f"not read in {export} " in said and "sources.json (one JSON value" in said and f"in {sheet} " not in said

    expected, _ = read_items(str(write_style(tmp_path / "listings_jsonl", "raw listings")))
    listings = tmp_path / "listings"  # pandas' to_csv: a list cell as Python writes it, or as JSON
    listings.mkdir()
    for split, products in SPLITS.items():
        rows = [row("raw listings", p) for p in products]
        rows = [{**r, "description": repr(r["description"]), "features": json.dumps(r["features"])} for r in rows]
        (listings / f"{split}.csv").write_text(_as_table(rows))
    items, _ = read_items(str(listings))
    assert [i.summary for s in SPLITS for i in items[s]] == [i.summary for s in SPLITS for i in expected[s]]

    texts = tmp_path / "texts"  # a student's week 7 CSV in the course repository: text,price
    texts.mkdir()
    for split, products in SPLITS.items():
        (texts / f"{split}.csv").write_text(_as_table([{"text": p[3], "price": p[2]} for p in products]))
    items, tally = read_items(str(texts))
    assert tally.styles == {"texts": len(PRODUCTS)} and items["test"][0].summary == PRODUCTS[8][3]


def test_a_malformed_spreadsheet_is_refused_by_file_and_line(tmp_path):
    from pricer.items import read_items

    good = _as_table([{"title": p[0], "price": p[2]} for p in PRODUCTS])

    def folder_with(train: str | bytes, name: str = "train.csv"):
        folder = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        for split in ("val", "test"):
            (folder / f"{split}.csv").write_text(good)
        (folder / name).write_bytes(train if isinstance(train, bytes) else train.encode())
        return str(folder)

    lines = good.splitlines()
    refused = {  # what is wrong -> what the refusal must say
        "\n".join(lines[:3] + ['"Stark mixer, 349.95'] + lines[3:]): r"train.csv, line 4: not valid CSV",
        "title,price,Title\nA,1,B\n": "names 'title' twice",
        "\n".join(lines[1:]): r"header line \('Delphi.*names no column",
        good.replace("Castle", "Caf\xe9").encode("cp1252"): "not UTF-8.*CSV UTF-8",
    }
    for text, says in refused.items():
        with pytest.raises(DataError, match=says):
            read_items(folder_with(text))
    europe = good.replace(",", ";").replace("52.99", "52,99").replace("18.99\n", "18.99;extra\n")  # Excel's `;`
    _, tally = read_items(folder_with(europe))
    assert tally.skipped == {"unusable price": 1, "wrong number of CSV cells": 1}
    assert tally.first["unusable price"].startswith("train.csv, line 6:") and "decimal point" in \
        tally.first["unusable price"]
    xlsx = tmp_path / "xlsx"
    xlsx.mkdir()
    (xlsx / "prices.xlsx").write_bytes(b"PK\x03\x04")
    with pytest.raises(SettingError, match=r"found prices.xlsx\).*CSV UTF-8"):
        read_items(str(xlsx))


def test_week_6_cleaning_drops_duplicates_unusable_prices_boilerplate_and_part_numbers(tokenizer):
    from pricer.listings import clean_listings, listing_text
    from course_rows import row

    listings = [row("raw listings", p) for p in PRODUCTS]
    listings += [dict(listings[0]), {**listings[1], "title": "x", "price": None}, {**listings[2], "price": "2,000"}]
    listings[4] = {**listings[4], "description": ["KNIPEX 72 11 160 pliers, part KNX7211160X for plastics"]}
    kept, dropped = clean_listings(listings, tokenizer, max_tokens=24)
    assert len(kept) == len(PRODUCTS) and dropped == {"duplicate": 1, "unusable price": 2}
    assert "KNX7211160X" not in listing_text(listings[4]) and "160 pliers, part for" in listing_text(listings[4])
    assert "Best Sellers Rank" not in listing_text(listings[1]) and "Brand: Power Stop" in listing_text(listings[1])
    assert all(len(tokenizer.encode(k["summary"], add_special_tokens=False)) <= 24 for k in kept)
    assert clean_listings(listings, min_chars=10_000)[1]["under 10000 characters"] == len(PRODUCTS)


def test_an_items_folder_given_as_prompts_says_what_it_is_and_what_to_do(tmp_path, capsys):
    from pricer.cli import main

    folder = write_style(tmp_path / "mine", "raw listings")
    with pytest.raises(SystemExit):
        main(["train", "--set", f"prompts={folder}", "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert "holds products (raw listings" in err and "--set items=FOLDER" in err and "pricer data --items" in err
    with pytest.raises(SystemExit):  # both: not clear which to train on
        main(["train", "--set", f"items={folder}", f"prompts={folder}", "--output-dir", str(tmp_path / "out")])
    assert "both items=" in capsys.readouterr().err


@pytest.mark.parametrize("style", ["2024 prompts", "items", "raw listings", "punctuation-stripped"])
def test_an_items_folder_reaches_training_as_exactly_the_prompts_pricer_data_writes(style, tiny_model, home,
                                                                                    tmp_path, capsys, monkeypatch):
    from pricer.cli import main
    from pricer.items import load_prompts
    from pricer.runs import RUN_FILE, identity, runs_of
    from pricer.config import get_preset

    folder = write_style(tmp_path / "mine", style)
    settings = ["--set", f"base_model={tiny_model}", "train_rows=4", "batch_size=4"]
    main(["data", "--items", str(folder), "--out", str(tmp_path / "prompts"), "--preset", "tiny", *settings])
    out = capsys.readouterr().out
    assert "read 10 rows" in out and "the summary cut shortened" in out
    made = load_prompts(str(tmp_path / "prompts"))
    assert made["train"][0]["prompt"].startswith("What does this cost to the nearest dollar?\n\n")
    from pricer import items

    reads = []
    read_splits = items.read_splits
    monkeypatch.setattr(items, "read_splits", lambda *a, **k: reads.append(a) or read_splits(*a, **k))
    main(["train", "--max-steps", "1", "--output-dir", str(tmp_path / "out"), *settings, f"items={folder}"])
    assert "training" in capsys.readouterr().out and len(reads) == 1  # the prompt rows read once
    [(run_dir, record)] = runs_of(tmp_path / "out")
    preset = get_preset("tiny", base_model=tiny_model, train_rows=4, batch_size=4)
    assert record["identity"]["data"] == identity(preset, made["train"][:4], 1)["data"]  # the very rows written
    assert (run_dir / "adapter_model.safetensors").exists() and (run_dir / RUN_FILE).exists()


def test_a_notebooks_session_with_items_set_trains_on_the_same_prompts(tiny_model, home, tmp_path, monkeypatch,
                                                                       capsys):
    from pricer import session
    from pricer.dataprep import prepare

    monkeypatch.setattr(session, "_gpu", lambda: None)
    monkeypatch.chdir(tmp_path)
    folder = write_style(tmp_path / "mine", "2024 prompts")
    lab2 = session.start(notebook=2, preset="tiny", lab_dir=tmp_path / "lab", settings={"items": str(folder),
                                                                                        "base_model": tiny_model})
    assert f"items {folder}" in capsys.readouterr().out  # notebook 2's banner names what it reads
    lab4 = session.start(notebook=4, preset="tiny", lab_dir=tmp_path / "lab")
    prepare(str(folder), tmp_path / "cli", lab2.preset.summary_tokens, tiny_model)
    cli_rows = [json.loads(line) for line in (tmp_path / "cli" / "train.jsonl").read_text().splitlines()]
    assert lab4.job.train_rows == cli_rows[:lab4.preset.train_rows]
    assert lab4.job.preset == lab4.preset and lab4.job is lab4.job  # resolved and read once

    from pricer.items import Item, make_all_prompts  # notebook 2's own steps, as its cells run them
    from pricer.models import load_tokenizer

    train, val, test = Item.from_hub(lab2.preset.items)
    make_all_prompts(load_tokenizer(lab2.preset.base_model), train, val, test, lab2.preset.summary_tokens)
    assert [i.to_datapoint() for i in train] == cli_rows  # the lab's prompts are pricer data's


def test_seeds_are_separate_runs_and_a_rerun_of_one_finds_it(tiny_model, home, tmp_path, capsys):
    from pricer.config import get_preset
    from pricer.job import resolve_job
    from pricer.train import train

    folder = write_style(tmp_path / "mine", "items")
    job = resolve_job(get_preset("tiny", base_model=tiny_model, items=str(folder), train_rows=4, batch_size=4))
    zero = train(job, tmp_path / "out", max_steps=1, seed=0)
    one = train(job, tmp_path / "out", max_steps=1, seed=1)
    assert zero.run_dir != one.run_dir
    again = train(job, tmp_path / "out", max_steps=1, seed=1)
    assert again.run_dir == one.run_dir and "already finished" in capsys.readouterr().out


def fake_run(output_dir: Path, name: str, ident: dict, finished_at: str, status: str = "finished") -> Path:
    """A run folder with a record and a readable adapter file, as training leaves one."""
    import torch
    from safetensors.torch import save_file

    from pricer.runs import RUN_FILE

    run_dir = output_dir / name
    run_dir.mkdir(parents=True)
    save_file({"w": torch.zeros(2)}, str(run_dir / "adapter_model.safetensors"))
    (run_dir / "adapter_config.json").write_text("{}")
    (run_dir / RUN_FILE).write_text(json.dumps({"identity": ident, "status": status, "finished_at": finished_at}))
    return run_dir


def test_the_adapter_is_the_newest_by_record_time_whose_identity_fits(tmp_path, tiny_model):
    from pricer.config import get_preset
    from pricer.runs import choose_adapter, identity, latest_adapter

    preset = get_preset("tiny", base_model=tiny_model)
    rows = [{"prompt": "p", "completion": "1.00"}]
    full = identity(preset, rows, None)
    older = fake_run(tmp_path, "tiny-2026-12-31_00.00.00", full, "2026-01-01T00:00:00")
    newer = fake_run(tmp_path, "tiny-x-2026-01-01_00.00.00", {**full, "seed": 1}, "2026-06-01T00:00:00")
    fake_run(tmp_path, "tiny-2026-12-30_00.00.00", identity(preset, rows, 20), "2026-12-30T00:00:00")  # a trial
    fake_run(tmp_path, "tiny-2026-12-29_00.00.00", identity(preset, rows + rows, None), "2026-12-29T00:00:00")
    fake_run(tmp_path, "tiny-2026-12-28_00.00.00", full, "2026-12-28T00:00:00", status="running")
    folder, why = choose_adapter(tmp_path, preset, rows)
    assert folder == newer and "seed 1" in why and "newest of 2 finished tiny full run" in why
    assert "passed over 2" in why
    assert choose_adapter(tmp_path, preset, rows, seed=42)[0] == older
    trial, why = choose_adapter(tmp_path, preset, rows, max_steps=20)
    assert trial.name == "tiny-2026-12-30_00.00.00" and "20-step trial" in why
    assert latest_adapter(tmp_path, preset, rows) == newer
    none, why = choose_adapter(tmp_path, get_preset("tiny", base_model=tiny_model, lora_r=4), rows)
    assert none is None and "other training values (lora_r)" in why and "a 20-step trial (--max-steps 20" in why


def test_evaluate_takes_an_adapter_folder_a_run_folder_or_refuses_a_bad_path_by_name(tiny_model, tmp_path,
                                                                                     monkeypatch, capsys):
    import shutil

    from pricer.cli import main

    from pricer.dataprep import prepare

    monkeypatch.setenv("PRICER_RESULTS", str(tmp_path / "results"))
    prepare(str(write_style(tmp_path / "mine", "prompt rows")), tmp_path / "p", 48, tiny_model)
    settings = ["--set", f"base_model={tiny_model}", f"prompts={tmp_path / 'p'}", "train_rows=4", "batch_size=4"]
    main(["train", "--max-steps", "1", "--output-dir", str(tmp_path / "out"), *settings])
    [run_dir] = (tmp_path / "out").iterdir()
    adapter = tmp_path / "adapter"  # an adapter on its own, as a download or a copy leaves it
    adapter.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy(run_dir / name, adapter / name)
    for given in (run_dir, adapter):
        main(["evaluate", "--adapter", str(given), "--size", "2", *settings])
    assert len(list((tmp_path / "results").glob("*.json"))) >= 1
    for bad, words in ((tmp_path / "nowhere", "no such folder"), (adapter / "adapter_config.json", "is a file"),
                       (tmp_path / "p", "holds no adapter")):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            main(["evaluate", "--adapter", str(bad), *settings])
        assert exit_.value.code == 2 and words in capsys.readouterr().err
    monkeypatch.setenv("PRICER_OFFLINE", "1")
    with pytest.raises(SystemExit):
        main(["evaluate", "--adapter", "me/pricer-lite", "--revision", "abc123", *settings])
    assert "--adapter me/pricer-lite needs the Hugging Face Hub" in capsys.readouterr().err
