"""The course's `Item`: one product with a price, and the datasets made of them.

    train, val, test = Item.from_hub("ed-donner/items_lite")   # or a local folder, or "embedded"
    for item in train: item.make_prompts(tokenizer, max_tokens=110, do_round=True)
    Item.save_prompts("data/prompts", train, val, test)         # offline twin of push_prompts_to_hub
    prompts = load_prompts("data/prompts")                      # {"train": [...], "val": [...], "test": [...]}

Two dataset shapes, as on the Hub: items (splits train / validation / test) and prompts
({"prompt", "completion"} rows, splits train / val / test). Either split spelling is accepted
everywhere, both at once refused. Items are read as people have them: in any of the course's
formats (pricer.formats: its Item rows, 2024 prompts, prompt rows, chat rows, raw listings),
UTF-8 with or without a byte-order mark, prices written "$1,299.00", no `category`. A line
that isn't JSON or a row that isn't valid is skipped and counted by reason, the first of each
named by file and line; a split where nothing survives is an error. A malformed single `Item`
raises a `DataError` naming the field.
"""

import math
from pathlib import Path
from typing import Optional, Self

from pydantic import BaseModel, ValidationError, field_validator

from pricer.errors import DataError, hub_errors
from pricer.files import read_jsonl, write_jsonl
from pricer.formats import RowProblem, Tally, folder_rows, item_row
from pricer.prompts import MAX_PRICE, MIN_PRICE, datapoint, make_completion, read_price
from pricer.sources import resolve

SPLITS = ("train", "val", "test")
ALIASES = {"validation": "val", "valid": "val", "dev": "val"}
__all__ = ["Item", "DataError", "MIN_PRICE", "MAX_PRICE", "load_prompts", "make_all_prompts", "read_splits",
           "check_prompt_row"]


class Item(BaseModel):
    """A data-point of a product with a price."""

    title: str
    category: Optional[str] = None  # prompts never use it; the charts group by it when it is there
    price: float
    full: Optional[str] = None
    weight: Optional[float] = None
    summary: Optional[str] = None
    prompt: Optional[str] = None
    completion: Optional[str] = None
    id: Optional[int] = None

    @field_validator("title")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("category", "summary")
    @classmethod
    def _optional_not_blank(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("price", mode="before")
    @classmethod
    def _price_as_written(cls, value):
        return read_price(value) if isinstance(value, (str, bool)) else value  # true is no price, not $1.00

    @field_validator("price")
    @classmethod
    def _price_in_window(cls, value: float) -> float:
        if not (math.isfinite(value) and MIN_PRICE <= value <= MAX_PRICE):
            raise ValueError(f"must be between {MIN_PRICE} and {MAX_PRICE}")
        return value

    @classmethod
    def from_row(cls, row: dict, where: str = "row") -> Self:
        """An Item from a dataset row, or a DataError naming the row, field and value."""
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object with title and price, got {type(row).__name__}")
        try:
            return cls.model_validate(row)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(map(str, err['loc'])) or 'row'} {err['msg']} (got {err.get('input')!r:.60})"
                for err in e.errors()
            )
            raise DataError(f"{where}: {problems}") from None

    def __repr__(self) -> str:
        return f"<{self.title} = ${self.price}>"

    __str__ = __repr__  # print(item) shows what the course shows, not every field

    def count_tokens(self, tokenizer) -> int:
        """Tokens in the summary: what the 110-token cap is measured against."""
        return len(tokenizer.encode(self._require_summary(), add_special_tokens=False))

    def make_prompts(self, tokenizer, max_tokens: int = 110, do_round: bool = True) -> None:
        """Set prompt (summary cut at max_tokens) and completion (rounded for training)."""
        row = datapoint(tokenizer, self._require_summary(), self.price, max_tokens, do_round)
        self.prompt, self.completion = row["prompt"], row["completion"]

    def count_prompt_tokens(self, tokenizer) -> int:
        """Tokens in prompt + completion: must fit the training max_length."""
        return len(tokenizer.encode(self.prompt + self.completion, add_special_tokens=False))

    def to_datapoint(self) -> dict:
        """The {"prompt", "completion"} row SFT training and the Tester read."""
        if self.prompt is None or self.completion is None:
            raise DataError(f"{self!r} has no prompt yet: call make_prompts(tokenizer) first")
        return {"prompt": self.prompt, "completion": self.completion}

    def _require_summary(self) -> str:
        if self.summary is None:
            raise DataError(f"{self!r} has no summary to build a prompt from")
        return self.summary

    @classmethod
    def from_hub(cls, name: str) -> tuple[list[Self], list[Self], list[Self]]:
        """(train, val, test) Items from a Hub dataset, a local folder, or "embedded"."""
        items, tally = read_items(name)
        tally.print()
        return items["train"], items["val"], items["test"]

    @staticmethod
    def save_items(path: str | Path, train: list[Self], val: list[Self], test: list[Self]) -> Path:
        """Write Items as train / validation / test JSONL, the Hub items layout."""
        splits = {"train": train, "validation": val, "test": test}
        return _write_splits(path, {s: [i.model_dump() for i in items] for s, items in splits.items()})

    @staticmethod
    def save_prompts(path: str | Path, train: list[Self], val: list[Self], test: list[Self]) -> Path:
        """Write prompt rows as train / val / test JSONL: push_prompts_to_hub without a network."""
        splits = {"train": train, "val": val, "test": test}
        return _write_splits(path, {s: [i.to_datapoint() for i in items] for s, items in splits.items()})

    @staticmethod
    def push_prompts_to_hub(name: str, train: list[Self], val: list[Self], test: list[Self],
                            private: bool = True) -> None:
        """Push prompt rows to the Hub, private unless asked; needs a write token (HF_TOKEN)."""
        from datasets import Dataset, DatasetDict

        splits = {"train": train, "val": val, "test": test}
        with hub_errors(name, write=True):
            DatasetDict({s: Dataset.from_list([i.to_datapoint() for i in items])
                         for s, items in splits.items()}).push_to_hub(name, private=private)


def make_all_prompts(tokenizer, train, val, test, max_tokens: int = 110) -> None:
    """Prompts for every split: rounded completions for train and val, exact ones for test."""
    for items, do_round in ((train, True), (val, True), (test, False)):
        for item in items:
            item.make_prompts(tokenizer, max_tokens, do_round)


def read_items(name: str) -> tuple[dict[str, list[Item]], Tally]:
    """Items per split from a folder in any of the course's formats (pricer.formats), a Hub dataset or "embedded",
    and the tally of what was read and skipped (by reason, with file and line). Raw listings are deduplicated as
    week 6 does (pricer.listings); other rows are kept as written, and a text that repeats one of another split
    is counted and said (a test item seen in training scores memory, not pricing)."""
    source = resolve(name, "items")
    if Path(source).is_dir() and not (Path(source) / "dataset_dict.json").exists():
        splits = folder_rows(source)
    else:
        splits = {s: [(f"{s} row {i}", row) for i, row in enumerate(rows)]
                  for s, rows in read_splits(source, kind="items").items()}
    tally, items, seen = Tally(source), {}, {}
    for split, rows in splits.items():
        items[split] = []
        for where, row in rows:
            tally.read[split] += 1
            try:
                if isinstance(row, RowProblem):
                    raise row
                fields, style = item_row(row)
                item = Item.from_row(fields, where)
            except RowProblem as e:
                tally.skip(e.reason, f"{where}: {e}")
                continue
            except DataError as e:
                tally.skip("unusable price" if ": price " in str(e) else "invalid item", str(e))
                continue
            key = " ".join(item.summary.lower().split())
            if key in seen and style == "raw listings":
                tally.skip("duplicate", f"{where}: the same text as {seen[key][1]}")
                continue
            if key in seen and seen[key][0] != split:
                tally.repeat(f"{where} repeats {seen[key][1]}")
            seen.setdefault(key, (split, where))
            items[split].append(item)
            tally.kept[split] += 1
            tally.styles[style] += 1
    empty = [s for s in SPLITS if not items[s]]
    if empty:
        raise DataError(f"{source}: the {'/'.join(empty)} split has no usable rows; " + "; ".join(tally.lines()))
    return items, tally


def load_prompts(name: str, summary_tokens: int | None = None, tokenizer: str | None = None) -> dict[str, list[dict]]:
    """{"train", "val", "test"} lists of {"prompt", "completion"} rows; bad rows skipped, counted.

    `summary_tokens` and `tokenizer` say how the embedded catalog's prompts are cut (pricer.sources)."""
    source = resolve(name, "prompts", summary_tokens, tokenizer)
    splits = read_splits(source, kind="prompts")
    _not_items(source, splits["train"][:1])
    return {split: _valid(rows, f"{source}: {split}", check_prompt_row) for split, rows in splits.items()}


def _not_items(source: str, rows: list) -> None:
    """Refuse a folder of products given where prompts belong, saying what it is and how to go on."""
    row = rows[0] if rows else None
    if isinstance(row, dict) and not isinstance(row.get("completion"), (str, int, float)):
        try:
            style = item_row(row)[1]
        except DataError:
            return  # not products either: the row checks say what is wrong
        raise DataError(f"{source} holds products ({style}: {', '.join(sorted(row))[:60]}), not prompt rows "
                        "({\"prompt\", \"completion\"}). Give it as items (--set items=FOLDER, or items= in "
                        "SETTINGS), or make prompts from it: python -m pricer data --items FOLDER --out DIR.")


def read_splits(name: str, kind: str) -> dict[str, list[dict]]:
    """Raw rows per split from a folder of JSONL / save_to_disk files, or a Hub dataset (a resolved name)."""
    folder = Path(name)
    skipped = {}
    if folder.is_dir() and any(folder.glob("*.jsonl")):
        raw = {}
        for f in sorted(folder.glob("*.jsonl")):
            raw[f.stem], skipped[f.stem] = read_jsonl(f)
    else:
        raw = _load_with_datasets(name, folder)
    splits = {}
    for split, rows in raw.items():
        same = [s for s in raw if ALIASES.get(s, s) == ALIASES.get(split, split)]
        if len(same) > 1:
            raise DataError(f"{name}: {' and '.join(same)} are both the val split; keep one (rename or move the "
                            "other), so it is clear which rows are which.")
        splits[ALIASES.get(split, split)] = rows
    missing = [s for s in SPLITS if s not in splits]
    if missing:
        raise DataError(f"{name}: no {'/'.join(missing)} split (found {', '.join(raw) or 'nothing'}); "
                        f"expected train, val (or validation) and test {kind}")
    for split, problems in skipped.items():
        if problems:
            print(f"pricer: skipped {len(problems)} unreadable line(s) of {folder / (split + '.jsonl')}; "
                  f"first: {problems[0]}")
    return {s: splits[s] for s in SPLITS}


def _load_with_datasets(name: str, folder: Path) -> dict[str, list[dict]]:
    from datasets import load_dataset, load_from_disk

    if (folder / "dataset_dict.json").exists():
        ds = load_from_disk(str(folder))
    else:
        with hub_errors(name):
            ds = load_dataset(name)
    return {split: ds[split].to_list() for split in ds}


def _valid(rows: list, where: str, check) -> list:
    """The rows `check` accepts; the rest counted in one line; none at all is an error naming the split."""
    split = where.rpartition(": ")[2]
    valid, problems = [], []
    for i, row in enumerate(rows):
        try:
            valid.append(check(row, f"{split} row {i}"))
        except DataError as e:
            problems.append(str(e))
    if problems:
        print(f"pricer: skipped {len(problems)} of {len(rows)} malformed {split} rows; first: {problems[0]}")
    if not valid:
        raise DataError(f"{where.rpartition(': ')[0]}: the {split} split has no usable rows ({len(rows)} read"
                        f"{'; first problem: ' + problems[0] if problems else ''}).")
    return valid


def check_prompt_row(row, where: str = "row") -> dict:
    """The row as {"prompt", "completion"} with the completion a plain price string, else DataError.

    A completion written "$1,299.00" or stored as a JSON number is read as the price it says."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a dict with prompt and completion, got {type(row).__name__}")
    prompt, completion = row.get("prompt"), row.get("completion")
    if not isinstance(prompt, str) or not prompt.strip():
        raise DataError(f"{where}: prompt is missing or empty (got {prompt!r:.60})")
    try:
        price = read_price(completion)
    except ValueError:
        raise DataError(f"{where}: completion is not a price (got {completion!r:.60})") from None
    if not 0 <= price <= MAX_PRICE:  # round(0.5) is 0: still a price
        raise DataError(f"{where}: completion {price} is outside 0-{MAX_PRICE}")
    if not isinstance(completion, str):
        completion = make_completion(price, do_round=False)
    return {"prompt": prompt, "completion": completion.strip().lstrip("$").strip().replace(",", "")}


def _write_splits(path: str | Path, splits: dict[str, list[dict]]) -> Path:
    folder = Path(path).expanduser()
    for split, rows in splits.items():
        write_jsonl(folder / f"{split}.jsonl", rows)  # whole files only: an interrupted write leaves none
    return folder
