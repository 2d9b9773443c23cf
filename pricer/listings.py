"""Raw product listings made into priced product text, the way the course's week 6 cleans them.

    text = listing_text(row)           # title, description, features, details: boilerplate and part numbers out
    kept, skipped = clean_listings(rows, tokenizer, max_tokens=110)   # deduplicated, priced, cut; skips counted

A raw listing is a row of the Amazon Reviews 2023 metadata the course loads
(`McAuley-Lab/Amazon-Reviews-2023`, `raw_meta_<Category>`): `title`, `price` (a number, a
string, or missing), `description` and `features` (lists of strings, or those lists written out
as a CSV cell holds them) and `details` (a dict, or that dict as a JSON string). Week 6 keeps a
listing when its price is usable and inside the course's window, drops the details that say
nothing about value (ranks, part and model numbers, battery questions), removes part-number-like
words (7+ capitals and digits, both present), and fits what is left to a token cap. Duplicates
(the same text twice) are dropped: a product seen in training and again in the test split would
score memory, not pricing.
"""

import ast
import contextlib
import json
import re
from collections import Counter

from pricer.prompts import MAX_PRICE, MIN_PRICE, read_price, truncate

# details that carry no price signal, as in the course's week 6 parser (and the 2024 one's "Date First")
BOILERPLATE = ("Part Number", "Best Sellers Rank", "Batteries Included?", "Batteries Required?", "Item model number",
               "Date First Available", "Manufacturer Part Number", "Customer Reviews", "ASIN", "UPC")
PART_NUMBER = re.compile(r"\b(?=[A-Z0-9-]*\d)(?=[A-Z0-9-]*[A-Z])[A-Z0-9][A-Z0-9-]{6,}\b")
MAX_CHARS = 4000  # the course's MAX_TEXT_TOTAL: longer text is cut by the token cap anyway


def is_listing(row: dict) -> bool:
    """True for a raw listing: a title and at least one of description / features / details."""
    return isinstance(row.get("title"), str) and any(k in row for k in ("description", "features", "details"))


def _lines(value) -> str:
    """A description or features field as text: a list of strings, or one string. A string that is such a list
    written out (JSON, or Python's repr as pandas' to_csv writes a list cell) is that list."""
    if isinstance(value, str):
        written = value.strip()
        for parse in (json.loads, ast.literal_eval) if written.startswith("[") and written.endswith("]") else ():
            with contextlib.suppress(ValueError, SyntaxError, MemoryError, RecursionError):
                written = parse(written)
                break
        value = written if isinstance(written, list) else [value]
    if not isinstance(value, list):
        return ""
    return " ".join(" ".join(str(v).split()) for v in value if str(v).strip())


def _details(value) -> str:
    """The details dict (or its JSON string) as 'Key: value' pairs, boilerplate keys left out."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return " ".join(value.split())
    if not isinstance(value, dict):
        return ""
    return "; ".join(f"{k}: {' '.join(str(v).split())}" for k, v in value.items()
                     if k not in BOILERPLATE and str(v).strip())


def strip_part_numbers(text: str) -> str:
    """The text without part-number-like words (B07XJ8C8F5, SX-KC611): they name one product, not a price."""
    return re.sub(r"[ \t]{2,}", " ", PART_NUMBER.sub("", text)).strip()


def listing_text(row: dict) -> str:
    """The product text of a raw listing: title line, then description, features and details, cleaned."""
    parts = [" ".join(row["title"].split()), _lines(row.get("description")), _lines(row.get("features")),
             _details(row.get("details"))]
    return "\n".join(strip_part_numbers(p) for p in parts if p)[:MAX_CHARS]


def listing_price(row: dict) -> float:
    """The listing's price, or ValueError when it is missing, unreadable or outside the course's window."""
    price = read_price(row.get("price"))  # None, "None", "", true: ValueError
    if not MIN_PRICE <= price <= MAX_PRICE:
        raise ValueError(f"price {price} is outside ${MIN_PRICE}-${MAX_PRICE}")
    return price


def clean_listings(rows: list[dict], tokenizer=None, max_tokens: int | None = None,
                   min_chars: int = 0) -> tuple[list[dict], Counter]:
    """Week 6's cleaning: (item rows with title, price, category, summary; skips counted by reason).

    `min_chars` drops listings with too little text to price (the course uses 600); with a tokenizer,
    each summary is cut at `max_tokens` tokens, never inside a character."""
    kept, skipped, seen = [], Counter(), set()
    for row in rows:
        if not isinstance(row, dict) or not is_listing(row) or not row["title"].strip():
            skipped["not a listing (no title with description, features or details)"] += 1
            continue
        try:
            price = listing_price(row)
        except ValueError:
            skipped["unusable price"] += 1
            continue
        text = listing_text(row)
        key = " ".join(text.lower().split())
        if key in seen:
            skipped["duplicate"] += 1
            continue
        seen.add(key)
        if len(text) < min_chars:
            skipped[f"under {min_chars} characters"] += 1
            continue
        if tokenizer is not None and max_tokens:
            text = truncate(tokenizer, text, max_tokens)
        category = row.get("main_category")
        kept.append({"title": row["title"].strip(), "price": price, "summary": text,
                     "category": category.strip() if isinstance(category, str) and category.strip() else None})
    return kept, skipped
