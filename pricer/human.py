"""The human baseline: a class guesses prices in a CSV, and the Tester scores the guesses.

    write_human_template(test, "human.csv", size=100)   # columns id, title, text, guess (empty)
    # ... people fill in the guess column (in a spreadsheet: keep it CSV) ...
    evaluate(human_predictor("human.csv"), test, size=100)
    python -m pricer human-template --out human.csv --size 100

Rows are matched to datapoints by `id` for Items that have one, else by the product text (the
summary, or the summary inside a prompt row), else by the title (the prompt's "Title:" line).
So a template written from Items scores those Items or their prompt rows, in any order. Every
guess must be a number ("$1,234.50" is fine): a blank or unreadable one stops the load with a
ValueError naming its line, rather than quietly scoring as $0.
"""

import csv
import math
import re
from collections.abc import Mapping
from pathlib import Path

from pricer.baselines import text_of

COLUMNS = ("id", "title", "text", "guess")


def title_of(datapoint) -> str:
    """The product title: an Item's title, or the 'Title:' line of the text."""
    title = None if isinstance(datapoint, Mapping) else getattr(datapoint, "title", None)
    if not title:
        match = re.search(r"^Title:\s*(.+)$", text_of(datapoint), re.M)
        title = match.group(1) if match else text_of(datapoint).splitlines()[0]
    return title.strip()


def _id_of(datapoint, position: int) -> str:
    item_id = None if isinstance(datapoint, Mapping) else getattr(datapoint, "id", None)
    return str(item_id) if item_id is not None else f"row-{position}"


def write_human_template(data, path, size: int = 100) -> Path:
    """A CSV of the first `size` test products with an empty guess column, for a class to fill in."""
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for i in range(min(size, len(data))):
            writer.writerow([_id_of(data[i], i), title_of(data[i]), text_of(data[i]), ""])
    return path


def _price(text: str) -> float | None:
    cleaned = text.strip().replace("$", "").replace(",", "")
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None  # no negative, NaN or inf guesses


def load_human_guesses(path) -> list[dict]:
    """Rows {id, title, text, guess}; ValueError naming each line whose guess is missing or not a price."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ValueError(f"{path}: no such file; write one with write_human_template(test, {str(path)!r})")
    with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: Excel's CSVs start with a BOM
        reader = csv.DictReader(f)
        if reader.fieldnames is None:
            raise ValueError(f"{path}: the file is empty; write it with write_human_template(test, path)")
        fields = set(reader.fieldnames)
        if "guess" not in fields or not {"id", "title", "text"} & fields:
            raise ValueError(f"{path}: needs a guess column and an id, title or text column; "
                             f"found {reader.fieldnames}")
        rows, bad = [], []
        for line, row in enumerate(reader, start=2):  # line 1 is the header
            guess = _price(row.get("guess") or "")
            if guess is None:
                bad.append(f"line {line} ({(row.get('title') or row.get('id') or '')[:40]!r}): "
                           f"guess {row.get('guess')!r}")
            rows.append({**{c: (row.get(c) or "").strip() for c in COLUMNS[:3]}, "guess": guess})
    if bad:
        raise ValueError(f"{path}: {len(bad)} guess(es) missing or not a price, e.g. {'; '.join(bad[:5])}. "
                         "Fill them in (a number like 49.99) or delete those rows.")
    if not rows:
        raise ValueError(f"{path}: no guesses in it")
    return rows


class HumanPredictor:
    """Looks each datapoint's guess up in a filled-in template."""

    __name__ = "human"

    def __init__(self, rows: list[dict]):
        self.size = len(rows)  # evaluate(..., size=predictor.size) scores exactly the guessed items
        self.by_key = {}
        for row in rows:
            for key in (f"id:{row['id']}", f"text:{_squash(row['text'])}", f"title:{row['title']}"):
                if key.partition(":")[2]:
                    self.by_key.setdefault(key, set()).add(row["guess"])

    def __call__(self, datapoint) -> float:
        item_id = None if isinstance(datapoint, Mapping) else getattr(datapoint, "id", None)
        keys = ([f"id:{item_id}"] if item_id is not None else []) + [
            f"text:{_squash(text_of(datapoint))}", f"title:{title_of(datapoint)}"]
        for key in keys:
            guesses = self.by_key.get(key)
            if guesses and len(guesses) == 1:
                return next(iter(guesses))
        raise ValueError(f"no single human guess for {title_of(datapoint)[:60]!r} (looked up by "
                         f"{', '.join(k.partition(':')[0] for k in keys)}); was it in the template?")


def human_predictor(path) -> HumanPredictor:
    """The human baseline as a predictor the Tester can run (size: how many items were guessed)."""
    return HumanPredictor(load_human_guesses(path))


def _squash(text: str) -> str:
    """Text with whitespace runs made single spaces: spreadsheets rewrap the line ends."""
    return " ".join(text.split())


def template_for_preset(out, size: int = 100, preset: str = "tiny") -> Path:
    """The CLI's `human-template`: the preset's test Items written as a template."""
    from pricer.config import get_preset
    from pricer.items import Item

    _, _, test = Item.from_hub(get_preset(preset).items)
    return write_human_template(test, out, size)
