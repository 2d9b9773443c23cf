"""The course's data formats, told apart row by row and read as item rows (title, price, summary).

    row, style = item_row({"prompt": "How much does this cost...?\\n\\nAcme Lamp\\n...\\n\\nPrice is $", "completion": "12.00"})
    splits = folder_rows("my_items")      # {"train": [(where, row), ...], "val": [...], "test": [...]}

What a folder of products may hold, in any mix, as JSON Lines (.jsonl), JSON (.json: an array, or lines
as `Dataset.to_json` writes them) or CSV (.csv, .tsv: a header line naming the columns, as a spreadsheet
saves them; an empty cell is no value):
- items: the course's `Item` rows (`title`, `price`, `summary`; the 2025 summaries are
  `Title: ...\\nCategory: ...` lines, some copies have their punctuation stripped);
- the course's 2024 prompts: `prompt` (or `text`) as its `Item.prompt` wrote it, the question, the
  title on the first line (no `Title:` label), the description, and `Price is $123.00`;
- `{"prompt", "completion"}` rows, with any question line and the answer `123.00` or `Price is $123.00`;
- OpenAI chat rows (`messages`), the course's week 6 fine-tuning files: the user's text, the
  assistant's price;
- raw listings: Amazon Reviews 2023 metadata (`title`, `description`, `features`, `details`,
  `price`), cleaned as week 6 does (pricer.listings);
- a product's `text` and its `price`, or only a `title` and a `price`.
Whatever the style, the product text is kept as written (only the question and the answer
around it come off), so the preset's tokenizer and cut make the prompts, the same way for every
style. A row that fits no style, or has no usable price, raises `RowProblem` with a short reason
that the reader counts.

Splits come from file names: `train`, `val` / `validation` / `valid` / `dev` and `test`, also as
the last word of a longer name (`fine_tune_train.jsonl`, `fine_tune_validation.jsonl`). Two files
for one split are refused by name. Files with no split name at all are pooled and split 80/10/10
by a hash of each title (the same on every machine), said when it happens. Other files are named as
not read; a .json file holding one object that is no product (sources.json) is metadata, not rows.
"""

import csv
import hashlib
import io
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pricer.errors import DataError
from pricer.files import check_file
from pricer.listings import is_listing, listing_text
from pricer.prompts import PREFIX, read_price

SPLIT_WORDS = {"train": "train", "training": "train", "val": "val", "validation": "val", "valid": "val",
               "dev": "val", "test": "test", "testing": "test"}
HASH_SPLIT = (80, 90)  # a title hash below 80 of 100 trains, below 90 validates, the rest tests
TABLE_SUFFIXES = (".csv", ".tsv")
ROW_SUFFIXES = (".jsonl", ".json", *TABLE_SUFFIXES)
COLUMNS = {"title", "price", "summary", "full", "prompt", "completion", "text", "description", "features", "details"}
SAVE_AS = ("Save the products as train, val and test files: .jsonl (one JSON object per line), or .csv with a "
           "header line naming the columns (Excel: Save As 'CSV UTF-8').")


class RowProblem(DataError):
    """A row that can't become an item: `reason` (counted), and the detail."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}{': ' + detail if detail else ''}")
        self.reason = reason


def strip_question(text: str) -> str:
    """The product text of a prompt: without a leading question paragraph and the trailing 'Price is $...'."""
    text = text.strip()
    head, sep, rest = text.partition("\n\n")
    if sep and head.strip().endswith("?") and "\n" not in head.strip():
        text = rest
    at = text.rfind(PREFIX)
    if at >= 0:
        text = text[:at]
    return text.strip()


def price_in(text) -> float:
    """The price an answer states: 123.00, "$1,299.00", "Price is $123.00"; ValueError otherwise."""
    return read_price(re.sub(r"^\s*price\s+is\s*", "", text, flags=re.I) if isinstance(text, str) else text)


def _titled(text: str) -> str:
    """The title a product text states: its `Title:` line (with or without the colon), else its first line."""
    match = re.search(r"^Title:?\s+(.+)$", text, re.M)
    return (match.group(1) if match else text.splitlines()[0]).strip()


def _priced(row: dict, text: str, answer, style: str) -> tuple[dict, str]:
    """An item row from a product text and the answer it came with (or the row's own `price`)."""
    if not text.strip():
        raise RowProblem("no product text", f"{style} with an empty text")
    price = row.get("price", answer)
    if isinstance(price, bool):
        raise RowProblem("unusable price", f"price is {price!r}, not a number")
    try:
        price = price_in(price)
    except ValueError as e:
        raise RowProblem("unusable price", str(e)) from None
    item = {"title": _titled(text), "price": price, "summary": text.strip()}
    if isinstance(row.get("category"), str) and row["category"].strip():
        item["category"] = row["category"]
    return item, style


def item_row(row) -> tuple[dict, str]:
    """(item row, style) for one row of any of the course's formats; RowProblem when it fits none."""
    if not isinstance(row, dict):
        raise RowProblem("not a product row", f"a JSON {type(row).__name__}, not an object")
    if "title" in row and (row.get("summary") or row.get("full")):
        if isinstance(row.get("price"), bool):
            raise RowProblem("unusable price", f"price is {row['price']!r}, not a number")
        item = {k: v for k, v in row.items() if k not in ("prompt", "completion")}
        return {**item, "summary": row.get("summary") or row["full"]}, "items"
    if isinstance(row.get("messages"), list):
        said = {m.get("role"): m.get("content") for m in row["messages"] if isinstance(m, dict)}
        if not isinstance(said.get("user"), str):
            raise RowProblem("not a product row", "chat messages without a user message")
        return _priced(row, strip_question(said["user"]), said.get("assistant"), "chat rows")
    if "completion" in row and isinstance(row.get("prompt"), str):
        return _priced(row, strip_question(row["prompt"]), row["completion"], "prompt rows")
    text = row.get("prompt") if isinstance(row.get("prompt"), str) else row.get("text")
    if isinstance(text, str) and PREFIX in text:
        answer = text[text.rfind(PREFIX) + len(PREFIX):].strip() or None
        return _priced(row, strip_question(text), answer, "2024 prompts")
    if is_listing(row):
        return _priced(row, listing_text(row), None, "raw listings")
    if isinstance(row.get("text"), str) and "price" in row:
        return _priced(row, row["text"], None, "texts")
    if isinstance(row.get("title"), str) and "price" in row:
        return _priced(row, row["title"], None, "titles only")
    raise RowProblem("not a product row", f"no title, summary, prompt or messages (keys: {', '.join(sorted(row))[:80]})")


def split_of(stem: str) -> str | None:
    """The split a file's name says: its whole stem, or the last word of it ('fine_tune_validation' -> val)."""
    stem = stem.lower()
    return SPLIT_WORDS.get(stem) or SPLIT_WORDS.get(re.split(r"[_\-. ]+", stem)[-1])


def hash_split(title: str) -> str:
    """train, val or test by a hash of the title: stable across machines and Python versions."""
    bucket = int(hashlib.sha256(" ".join(title.lower().split()).encode()).hexdigest(), 16) % 100
    return "train" if bucket < HASH_SPLIT[0] else "val" if bucket < HASH_SPLIT[1] else "test"


def _text(path: Path) -> str:
    """A whole file as text; a byte-order mark (Windows editors, Excel) is not part of the first row."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        excel = " (Excel: Save As 'CSV UTF-8')" if path.suffix.lower() in TABLE_SUFFIXES else ""
        raise DataError(f"{path}: not UTF-8 text near byte {e.start}; save it as UTF-8{excel}") from None


def _lines(name: str, lines):
    """(where, row or RowProblem) for each non-blank line of JSON Lines."""
    for n, line in enumerate(lines, 1):
        if line.strip():
            try:
                yield f"{name}, line {n}", json.loads(line)
            except ValueError as e:
                yield f"{name}, line {n}", RowProblem("not valid JSON", e.msg)


def _json_rows(path: Path) -> list | None:
    """A .json file's rows: a JSON array of them, or JSON Lines (as `Dataset.to_json` writes); None for one
    JSON value that is no product (metadata such as sources.json)."""
    text = _text(path)
    try:
        value = json.loads(text)
    except ValueError as e:
        if text.lstrip().startswith("["):
            raise DataError(f"{path}: not valid JSON at line {e.lineno}, column {e.colno} ({e.msg}); fix it, or "
                            "write one JSON object per line (.jsonl) so a bad line is skipped, not the file") from None
        return list(_lines(path.name, text.split("\n")))  # JSON Lines: a bad line is counted, as in .jsonl
    if isinstance(value, list):
        return [(f"{path.name}, row {n}", row) for n, row in enumerate(value, 1)]
    try:
        item_row(value)
    except RowProblem:
        return None
    return [(f"{path.name}, line 1", value)]


def _csv_rows(path: Path) -> list:
    """A CSV (or tab-separated) file's rows as dicts keyed by its header line, names lower-cased; an empty cell
    is no value. Its delimiter is the one its header line uses most (`,` `;` tab `|`: Excel's in Europe is `;`)."""
    text = _text(path)
    head = next((line.rstrip("\r\n") for line in io.StringIO(text) if line.strip()), "")  # lazily: not every line
    delimiter = max(",;\t|", key=head.count) if any(d in head for d in ",;\t|") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header, rows, end = None, [], 0
    while True:
        start = end + 1
        try:
            record = next(reader, None)
        except csv.Error as e:
            raise DataError(f"{path}, line {start}: not valid CSV ({e}). A cell holding the delimiter, a quote "
                            "or a line break is written in double quotes, with each quote inside it doubled.") from None
        if record is None:
            return rows
        end = reader.line_num
        if not any(cell.strip() for cell in record):
            continue
        if header is None:
            header = [cell.strip().lower() for cell in record]
            twice = sorted({name for name in header if name and header.count(name) > 1})
            if twice or not COLUMNS & set(header):
                problem = f"names {twice[0]!r} twice" if twice else f"({head[:70]!r}) names no column pricer reads"
                raise DataError(f"{path}: its header line {problem}. The first line names the columns, once each, "
                                f"e.g. title,price,summary or text,price ({', '.join(sorted(COLUMNS))}).")
            continue
        where = f"{path.name}, line {start}"
        if len(record) != len(header):
            rows.append((where, RowProblem("wrong number of CSV cells",
                                           f"{len(record)} cells, the header names {len(header)}")))
        else:
            rows.append((where, {name: cell for name, cell in zip(header, record) if cell.strip()}))


def file_rows(path: Path) -> list | None:
    """(where, row or RowProblem) for every row of a product file, by its suffix; None for a .json file that
    holds one JSON value that is no product (metadata, not rows)."""
    path = check_file(path, "product file")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return list(_lines(path.name, _text(path).split("\n")))  # not splitlines: JSON strings may hold U+2028
    return _json_rows(path) if suffix == ".json" else _csv_rows(path)


def _product_files(folder: Path) -> tuple[dict[Path, list], list[str]]:
    """Each product file of a folder with its rows, and what was not read (named, not passed over in silence)."""
    found, skipped = {}, []
    for f in sorted(p for p in folder.iterdir() if not p.name.startswith(".")):
        suffix, split = f.suffix.lower(), split_of(f.stem)
        rows = file_rows(f) if suffix in ROW_SUFFIXES and not f.is_dir() else None  # a pipe: named by check_file
        if rows is None and suffix == ".json" and split:
            raise DataError(f"{f}: one JSON value that is no product, not rows. Write the {split} products as a "
                            "JSON array of objects, or one object per line.")
        if rows == [] and split:
            empty = ("an empty file" if not f.stat().st_size else
                     "nothing below its header line" if suffix in TABLE_SUFFIXES else "only blank lines")
            raise DataError(f"{f}: no rows ({empty}); the {split} split needs products.")
        if rows is None:
            skipped.append(f.name + (" (one JSON value, not a list of rows)" if suffix == ".json" else
                                     "/" if f.is_dir() else ""))
        else:
            found[f] = rows
    return found, skipped


def folder_rows(folder: str | Path) -> dict[str, list[tuple[str, object]]]:
    """Every row of a folder's product files by split, each with 'file, line N' (see the split rules above)."""
    folder = Path(folder)
    found, skipped = _product_files(folder)
    files = list(found)
    if not files:
        pickles = sorted(p.name for p in folder.glob("*.pkl"))
        hint = (f" ({', '.join(pickles)} are pickles of the course's Item objects, which only its own code can "
                "read: write them out with `[item.__dict__ for item in items]` to JSONL)" if pickles else "")
        raise DataError(f"{folder}: no product files to read ({', '.join(ROW_SUFFIXES)}; found "
                        f"{', '.join(skipped[:6]) or 'nothing'}){hint}. {SAVE_AS}")
    if skipped:
        print(f"pricer: not read in {folder} (products come from {', '.join(ROW_SUFFIXES)} files): "
              f"{', '.join(skipped[:6])}{' ...' if len(skipped) > 6 else ''}")
    named = {}
    for f in files:
        if split_of(f.stem):
            named.setdefault(split_of(f.stem), []).append(f)
    twice = {s: fs for s, fs in named.items() if len(fs) > 1}
    if twice:
        s, fs = next(iter(twice.items()))
        raise DataError(f"{folder}: {' and '.join(f.name for f in fs)} are both the {s} split; keep one (rename or "
                        "move the other), so it is clear which rows are which.")
    if named:
        unnamed = [f.name for f in files if not split_of(f.stem)]
        missing = [s for s in ("train", "val", "test") if s not in named]
        if missing or unnamed:
            raise DataError(
                f"{folder}: {'no ' + '/'.join(missing) + ' split' if missing else ''}"
                f"{'; ' if missing and unnamed else ''}{', '.join(unnamed) + ' has no split name' if unnamed else ''} "
                f"(found {', '.join(f.name for f in files)}). Name the files train, val (or validation) and test, or "
                "give no file a split name and the rows are split 80/10/10 by a hash of the title.")
        return {s: [pair for f in named[s] for pair in found[f]] for s in ("train", "val", "test")}
    splits = {"train": [], "val": [], "test": []}
    for f in files:
        for where, row in found[f]:
            try:
                title = item_row(row)[0]["title"]
            except DataError:
                title = where  # counted as skipped when read; any split will do
            splits[hash_split(str(title))].append((where, row))
    print(f"pricer: {folder} has no train/val/test files, so its {sum(map(len, splits.values())):,} rows are split "
          f"{'/'.join(map(str, (HASH_SPLIT[0], HASH_SPLIT[1] - HASH_SPLIT[0], 100 - HASH_SPLIT[1])))} by a hash of "
          f"each title: {len(splits['train']):,} / {len(splits['val']):,} / {len(splits['test']):,}")
    return splits


@dataclass
class Tally:
    """What reading a dataset did: rows read per split and style, rows skipped per reason (first place named)."""

    source: str
    read: Counter = field(default_factory=Counter)  # split -> rows read
    kept: Counter = field(default_factory=Counter)  # split -> items kept
    styles: Counter = field(default_factory=Counter)  # style -> items kept
    skipped: Counter = field(default_factory=Counter)  # reason -> rows
    first: dict = field(default_factory=dict)  # reason -> "file, line N: detail"
    shortened: Counter = field(default_factory=Counter)  # split -> summaries the cut shortened (when prompts are made)
    repeats: int = 0  # kept rows whose text is also in another split

    def repeat(self, where: str) -> None:
        """A kept row whose text is also in another split."""
        self.repeats += 1
        self.first.setdefault("repeat", where)

    def skip(self, reason: str, where: str) -> None:
        self.skipped[reason] += 1
        self.first.setdefault(reason, where)

    def lines(self) -> list[str]:
        """The tally in words, one line each: read, kept by style, skipped by reason, shortened by the cut."""
        splits = " / ".join(f"{self.kept[s]:,}" for s in ("train", "val", "test"))
        styles = ", ".join(f"{n:,} {style}" for style, n in self.styles.most_common())
        out = [f"read {sum(self.read.values()):,} rows from {self.source}; kept {splits} (train / val / test)"
               + (f": {styles}" if styles else "")]
        out += [f"skipped {n:,} ({reason}); first: {self.first[reason]}" for reason, n in self.skipped.most_common()]
        if self.repeats:
            out.append(f"{self.repeats:,} rows have the same text as a row of another split (first: {self.first['repeat']})"
                       ": a test item seen in training scores memory; remove them if the test should be unseen")
        if self.shortened:
            total = sum(self.kept.values())
            out.append(f"the summary cut shortened {sum(self.shortened.values()):,} of {total:,} summaries "
                       f"({sum(self.shortened.values()) / max(1, total):.0%})")
        return out

    def print(self) -> None:
        for line in self.lines():
            print(f"pricer: {line}")
