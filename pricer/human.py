"""The human baseline: a class guesses prices in a CSV, and the Tester scores the guesses.

    write_human_template(test, "human.csv", size=100)   # columns id, title, text, guess (empty)
    # ... people fill in the guess column (in a spreadsheet: keep it CSV) ...
    evaluate(human_predictor("human.csv"), test, size=100)
    python -m pricer human-template --out human.csv --size 100 [--items FOLDER_OR_HUB_NAME]

The course's own files load as they are: its week-6 `human_in.csv` / `human_out.csv` have no
header and two columns, the product's summary and the guess (0 in human_in.csv, the placeholder).
A file with a header needs a `guess` column and an `id`, `title` or `text` column.

Rows are matched to datapoints by `id` for Items that have one, else by the product text (the
summary, or the summary inside a prompt row), else by the title (the text's "Title:" line).
So a template written from Items scores those Items or their prompt rows, in any order. A guess
is read like any answer (`pricer.evaluator.parse_price`: "$1,234.50" is fine) and must be above
$0: a blank, unreadable or zero one stops the load with a DataError naming the file and line,
rather than quietly scoring as $0.
"""

import csv
from collections.abc import Mapping
from pathlib import Path

from pricer.evaluator import parse_price
from pricer.items import DataError
from pricer.prompts import text_of, title_in, title_of

COLUMNS = ("id", "title", "text", "guess")
COURSE = ("text", "guess")  # the course's human_in.csv / human_out.csv: no header, these two columns


def _id_of(datapoint, position: int) -> str:
    item_id = None if isinstance(datapoint, Mapping) else getattr(datapoint, "id", None)
    return str(item_id) if item_id is not None else f"row-{position}"


def write_human_template(data, path, size: int = 100) -> Path:
    """A CSV of the first `size` test products with an empty guess column, for a class to fill in."""
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    if not len(data):
        raise ValueError("no test products to write a template from")
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for i in range(min(size, len(data))):
            writer.writerow([_id_of(data[i], i), title_of(data[i]), text_of(data[i]), ""])
    return path


def _records(path: Path) -> list[tuple[str, list[str]]]:
    """(where, cells) of each non-blank CSV record; where is "line L" of the file, and the
    spreadsheet's row when that differs (a quoted summary spans several lines)."""
    records = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: Excel's CSVs start with a BOM
            reader = csv.reader(f)
            line = 1
            for row, cells in enumerate(reader, start=1):
                if any(c.strip() for c in cells):
                    records.append((f"line {line}" + (f" (row {row})" if row != line else ""), cells))
                line = reader.line_num + 1
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save it as 'CSV UTF-8'") from None
    except csv.Error as e:
        raise DataError(f"{path}, line {reader.line_num}: not a readable CSV ({e})") from None
    return records


def _layout(path: Path, first: list[str]) -> tuple[dict[str, int], bool]:
    """Which column holds what, and whether the first record is a header."""
    header = [cell.strip().lower() for cell in first]
    if "guess" in header:
        if not {"id", "title", "text"} & set(header):
            raise DataError(f"{path}: needs an id, title or text column beside guess; found {first}")
        return {name: header.index(name) for name in COLUMNS if name in header}, True
    if len(first) == len(COURSE) and parse_price(first[1]) is not None:
        return {name: i for i, name in enumerate(COURSE)}, False
    raise DataError(f"{path}: needs a guess column and an id, title or text column (a header such as "
                    f"{','.join(COLUMNS)}), or the course's two columns without a header (the product "
                    f"text, then the guess, as in its human_out.csv); its first row is {first!r:.80}")


def load_human_guesses(path) -> list[dict]:
    """Rows {id, title, text, guess, where}; DataError naming the file and each line that can't be scored."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: no such file; write one with write_human_template(test, {str(path)!r})")
    records = _records(path)
    if not records:
        raise DataError(f"{path}: the file is empty; write it with write_human_template(test, path)")
    columns, has_header = _layout(path, records[0][1])
    rows, bad = [], []
    for where, cells in records[has_header:]:
        row = {name: cells[i].strip() if i < len(cells) else "" for name, i in columns.items()}
        row = {"id": row.get("id", ""), "text": row.get("text", ""),
               "title": row.get("title") or title_in(row.get("text", "")), "guess": row["guess"], "where": where}
        guess = parse_price(row["guess"])
        label = f"{where} ({(row['title'] or row['id'])[:40]!r})"
        if not has_header and len(cells) != len(COURSE):
            bad.append(f"{label}: {len(cells)} columns, not the course's 2 (text, guess)")
        elif guess is None or guess <= 0:
            bad.append(f"{label}: guess {row['guess']!r}")
        rows.append({**row, "guess": guess})
    if bad:
        unfilled = all(r["guess"] == 0 for r in rows)
        hint = (" Every guess is 0, the course's placeholder: this is an unfilled human_in.csv; put the "
                "guesses in its second column (the course's filled-in copy is human_out.csv)." if unfilled else
                " Fill them in (a number like 49.99) or delete those rows.")
        raise DataError(f"{path}: {len(bad)} guess(es) missing, not a price above $0 or in the wrong "
                        f"place, e.g. {'; '.join(bad[:5])}.{hint}")
    if not rows:
        raise DataError(f"{path}: no guesses in it, only the header")
    return rows


class HumanPredictor:
    """Looks each datapoint's guess up in a filled-in template."""

    __name__ = "human"

    def __init__(self, rows: list[dict], source: str = "the guesses"):
        self.size = len(rows)  # evaluate(..., size=predictor.size) scores exactly the guessed items
        self.source = source
        self.by_key = {}
        for row in rows:
            for key in (f"id:{row['id']}", f"text:{_squash(row['text'])}", f"title:{row['title']}"):
                if key.partition(":")[2]:
                    self.by_key.setdefault(key, {}).setdefault(row["guess"], row.get("where", "?"))

    def __call__(self, datapoint) -> float:
        item_id = None if isinstance(datapoint, Mapping) else getattr(datapoint, "id", None)
        keys = ([f"id:{item_id}"] if item_id is not None else []) + [
            f"text:{_squash(text_of(datapoint))}", f"title:{title_of(datapoint)}"]
        for key in keys:
            guesses = self.by_key.get(key)
            if guesses and len(guesses) == 1:
                return next(iter(guesses))
        clash = next((g for g in map(self.by_key.get, keys) if g), None)
        why = (f"{' and '.join(clash.values())} match it with different guesses" if clash
               else "was it in the template?")
        raise DataError(f"{self.source}: no single human guess for {title_of(datapoint)[:60]!r} (looked up "
                        f"by {', '.join(k.partition(':')[0] for k in keys)}); {why}")


def human_predictor(path) -> HumanPredictor:
    """The human baseline as a predictor the Tester can run (size: how many items were guessed)."""
    return HumanPredictor(load_human_guesses(path), source=str(Path(path).expanduser()))


def _squash(text: str) -> str:
    """Text with whitespace runs made single spaces: spreadsheets rewrap the line ends."""
    return " ".join(text.split())


def template_for_preset(out, size: int = 100, preset: str = "tiny", items: str | None = None) -> Path:
    """The CLI's `human-template`: the test Items of `items` (a folder, Hub name; default the preset's)."""
    from pricer.config import get_preset
    from pricer.errors import SettingError
    from pricer.items import Item

    name = items or get_preset(preset).items
    _, _, test = Item.from_hub(name)
    if not test:
        raise DataError(f"{name}: no usable test items to write a template from")
    if size > len(test):  # writing fewer rows than asked, and saying the number asked, would mislead the class
        raise SettingError(f"--size {size:,}, but {name} has {len(test):,} test items: use --size {len(test):,} or "
                           "fewer")
    return write_human_template(test, out, size)
