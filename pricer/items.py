"""The course's `Item`: one product with a price, and the datasets made of them.

    train, val, test = Item.from_hub("ed-donner/items_lite")   # or a local folder, or "embedded"
    for item in train: item.make_prompts(tokenizer, max_tokens=110, do_round=True)
    Item.save_prompts("data/prompts", train, val, test)         # offline twin of push_prompts_to_hub
    prompts = load_prompts("data/prompts")                      # {"train": [...], "val": [...], "test": [...]}

Two dataset shapes, as on the Hub: items (every field, splits train / validation / test) and
prompts ({"prompt", "completion"} rows, splits train / val / test). Either split spelling is
accepted everywhere. A malformed row in a bulk load is skipped and counted (one line says how
many and why); a malformed single `Item` raises a `DataError` naming the field.
"""

import json
import math
import os
from pathlib import Path
from typing import Optional, Self

from pydantic import BaseModel, ValidationError, field_validator

from pricer.config import EMBEDDED, resolve
from pricer.prompts import make_completion, make_prompt, truncate

MIN_PRICE, MAX_PRICE = 0.5, 999.49  # the course's price window
SPLITS = ("train", "val", "test")
ALIASES = {"validation": "val", "valid": "val", "dev": "val"}


class DataError(ValueError):
    """A row or dataset that can't be used, with where and why in the message."""


class Item(BaseModel):
    """A data-point of a product with a price."""

    title: str
    category: str
    price: float
    full: Optional[str] = None
    weight: Optional[float] = None
    summary: Optional[str] = None
    prompt: Optional[str] = None
    completion: Optional[str] = None
    id: Optional[int] = None

    @field_validator("title", "category")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("summary")
    @classmethod
    def _summary_not_blank(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("price")
    @classmethod
    def _price_in_window(cls, value: float) -> float:
        if not (math.isfinite(value) and MIN_PRICE <= value <= MAX_PRICE):
            raise ValueError(f"must be between {MIN_PRICE} and {MAX_PRICE}")
        return value

    @classmethod
    def from_row(cls, row: dict, where: str = "row") -> Self:
        """An Item from a dataset row, or a DataError naming the row, field and value."""
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

    def count_tokens(self, tokenizer) -> int:
        """Tokens in the summary: what the 110-token cap is measured against."""
        return len(tokenizer.encode(self._require_summary(), add_special_tokens=False))

    def make_prompts(self, tokenizer, max_tokens: int = 110, do_round: bool = True) -> None:
        """Set prompt (summary cut at max_tokens) and completion (rounded for training)."""
        self.prompt = make_prompt(truncate(tokenizer, self._require_summary(), max_tokens))
        self.completion = make_completion(self.price, do_round)

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
        """(train, val, test) Items from a Hub dataset, a local folder, or EMBEDDED."""
        splits = read_splits(resolve(name), kind="items")
        items = {split: _valid_items(cls, rows, split) for split, rows in splits.items()}
        return items["train"], items["val"], items["test"]

    @staticmethod
    def save_items(path: str | Path, train: list[Self], val: list[Self], test: list[Self]) -> Path:
        """Write Items as train / validation / test JSONL, the Hub items layout."""
        splits = {"train": train, "validation": val, "test": test}
        return _write_jsonl(path, {s: [i.model_dump() for i in items] for s, items in splits.items()})

    @staticmethod
    def save_prompts(path: str | Path, train: list[Self], val: list[Self], test: list[Self]) -> Path:
        """Write prompt rows as train / val / test JSONL: push_prompts_to_hub without a network."""
        splits = {"train": train, "val": val, "test": test}
        return _write_jsonl(path, {s: [i.to_datapoint() for i in items] for s, items in splits.items()})

    @staticmethod
    def push_prompts_to_hub(name: str, train: list[Self], val: list[Self], test: list[Self],
                            private: bool = True) -> None:
        """Push prompt rows to the Hub, private unless asked; needs a write token (HF_TOKEN)."""
        from datasets import Dataset, DatasetDict

        splits = {"train": train, "val": val, "test": test}
        DatasetDict({s: Dataset.from_list([i.to_datapoint() for i in items])
                     for s, items in splits.items()}).push_to_hub(name, private=private)


def make_all_prompts(tokenizer, train, val, test, max_tokens: int = 110) -> None:
    """Prompts for every split: rounded completions for train and val, exact ones for test."""
    for items, do_round in ((train, True), (val, True), (test, False)):
        for item in items:
            item.make_prompts(tokenizer, max_tokens, do_round)


def load_prompts(name: str) -> dict[str, list[dict]]:
    """{"train", "val", "test"} lists of {"prompt", "completion"} rows; bad rows skipped, counted."""
    splits = read_splits(resolve(name), kind="prompts")
    return {split: _valid_prompt_rows(rows, split) for split, rows in splits.items()}


def read_splits(name: str, kind: str) -> dict[str, list[dict]]:
    """Raw rows per split from EMBEDDED, a folder of JSONL / save_to_disk files, or the Hub."""
    if name == EMBEDDED:
        from pricer.catalog import embedded_dataset

        name = str(embedded_dataset(kind))
    folder = Path(name).expanduser()
    if folder.is_dir() and any(folder.glob("*.jsonl")):
        raw = {f.stem: [json.loads(line) for line in f.open(encoding="utf-8") if line.strip()]
               for f in sorted(folder.glob("*.jsonl"))}
    else:
        raw = _load_with_datasets(name, folder)
    splits = {ALIASES.get(split, split): rows for split, rows in raw.items()}
    missing = [s for s in SPLITS if s not in splits]
    if missing:
        raise DataError(f"{name}: no {'/'.join(missing)} split (found {', '.join(raw) or 'nothing'}); "
                        "expected train, val (or validation) and test")
    return {s: splits[s] for s in SPLITS}


def _load_with_datasets(name: str, folder: Path) -> dict[str, list[dict]]:
    from datasets import load_dataset, load_from_disk

    ds = load_from_disk(str(folder)) if (folder / "dataset_dict.json").exists() else load_dataset(name)
    return {split: ds[split].to_list() for split in ds}


def _valid_items(cls, rows: list[dict], split: str) -> list:
    items, problems = [], []
    for i, row in enumerate(rows):
        try:
            items.append(cls.from_row(row, where=f"{split} row {i}"))
        except DataError as e:
            problems.append(str(e))
    _report_skips(split, len(rows), problems)
    return items


def _valid_prompt_rows(rows: list[dict], split: str) -> list[dict]:
    valid, problems = [], []
    for i, row in enumerate(rows):
        try:
            valid.append(check_prompt_row(row, where=f"{split} row {i}"))
        except DataError as e:
            problems.append(str(e))
    _report_skips(split, len(rows), problems)
    return valid


def check_prompt_row(row, where: str = "row") -> dict:
    """The row if it has a non-empty prompt and a completion that is a price, else DataError."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a dict with prompt and completion, got {type(row).__name__}")
    prompt, completion = row.get("prompt"), row.get("completion")
    if not isinstance(prompt, str) or not prompt.strip():
        raise DataError(f"{where}: prompt is missing or empty (got {prompt!r:.60})")
    try:
        price = float(completion)
    except (TypeError, ValueError):
        raise DataError(f"{where}: completion is not a price (got {completion!r:.60})") from None
    if not (math.isfinite(price) and 0 <= price <= MAX_PRICE):  # round(0.5) is 0: still a price
        raise DataError(f"{where}: completion {price} is outside 0-{MAX_PRICE}")
    return {"prompt": prompt, "completion": completion}


def _report_skips(split: str, total: int, problems: list[str]) -> None:
    if problems:
        print(f"pricer: skipped {len(problems)} of {total} malformed {split} rows; first: {problems[0]}")


def _write_jsonl(path: str | Path, splits: dict[str, list[dict]]) -> Path:
    folder = Path(path).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        tmp = folder / f".{split}.jsonl.{os.getpid()}.tmp"  # processes writing the same folder don't collide
        with tmp.open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        tmp.replace(folder / f"{split}.jsonl")  # whole files only: an interrupted write leaves none
    return folder


def lab_prompts(data_dir: str | Path, fallback: str) -> str:
    """Lab 2's saved prompts (data_dir/prompts) when they exist, else `fallback` (a Hub name)."""
    folder = Path(data_dir).expanduser() / "prompts"
    return str(folder) if (folder / "test.jsonl").exists() else fallback
