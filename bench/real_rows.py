"""Real product rows from the course's public repository, as a user would have them: an items folder.

    python bench/real_rows.py                          # finds the snapshot under /work/.mirror; writes /work/real-items
    python bench/real_rows.py --repo GITDIR --out DIR  # a snapshot's git dir (the `fetch` tool's), another folder
    python bench/real_rows.py --normalised             # also DIR-normalised: the four styles in one layout

Students of ed-donner/llm_engineering commit the JSONL files they fine-tune GPT on (week 6): real
Amazon listings with their prices. Each file listed in SOURCES is read in every version its
history holds (git show, no checkout); its rows come in one of four text styles, and each is
written back in the course's own format for that style, as a user of the course would have it:

- `course_2024`: the 2024 course's items (`title`, `price`, and its `prompt`: "How much does this
  cost to the nearest dollar?", the title on the first line, no label, the description, "Price is $N.00");
- `summary`: the 2025 course's items (`title`, `price`, `summary` of `Title: / Category: / Brand: /
  Description: / Details:` lines);
- `raw`: raw listings as the course loads them from Amazon Reviews 2023 (`title`, `description`,
  `features`, `price`);
- `stripped`: 2025 items whose summaries lost their punctuation (`title`, `category`, `weight`,
  `summary`: "Title Bose QuietComfort ... Category Electronics Brand Bose Description ...").

Rows are deduplicated by product (a normalised short title; the stripped style names its product
twice, as the raw title and inside the summary, and both count), prices outside the course's window
are dropped, and each product goes to train / val / test by a hash of its key (80 / 10 / 10), so no
title crosses splits. The folder gets train.jsonl, val.jsonl, test.jsonl and sources.json (each
source file's path, commit and blob, rows read and kept, the style and source of every row in
order). With --normalised a second folder holds the same products as plain items whose summaries
share one layout (title line, then the text without labels or list brackets). Turning either
folder into prompts is the package's job (`python -m pricer data --items`). The rows are never
committed and never shipped in the package.
"""

import argparse
import ast
import hashlib
import json
import re
import statistics
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from pricer.prompts import MAX_PRICE, MIN_PRICE, read_price  # noqa: E402

REPOSITORY = "ed-donner/llm_engineering"
MIRROR = Path("/work/.mirror")
DEFAULT_OUT = Path("/work/real-items")
SPLIT_SHARES = (80, 90)  # hash % 100 below 80: train, below 90: val, else test
STYLES = ("course_2024", "summary", "raw", "stripped")
# (path in the repository, style). Earlier sources win a duplicate: exact prices before rounded ones.
W6 = "week6/community-contributions/"
SOURCES = (
    ("week6/fine_tune_train.jsonl", "course_2024"),
    ("week6/fine_tune_validation.jsonl", "course_2024"),
    ("week6-Original/fine_tune_train.jsonl", "course_2024"),
    ("week6-Original/fine_tune_validation.jsonl", "course_2024"),
    (W6 + "Carbaz/fine_tune_train.jsonl", "course_2024"),
    (W6 + "Carbaz/fine_tune_validation.jsonl", "course_2024"),
    (W6 + "kwabena/fine_tune_train.jsonl", "course_2024"),
    (W6 + "kwabena/fine_tune_validation.jsonl", "course_2024"),
    (W6 + "emmy/fine_tune_train.jsonl", "course_2024"),
    (W6 + "emmy/fine_tune_validation.jsonl", "course_2024"),
    (W6 + "mt_week6/fine_tune_train.jsonl", "course_2024"),
    (W6 + "mt_week6/fine_tune_validation.jsonl", "course_2024"),
    (W6 + "nikhil_raut/fine_tune_train.jsonl", "course_2024"),
    (W6 + "nikhil_raut/fine_tune_validation.jsonl", "course_2024"),
    (W6 + "sanmi01/jsonl/fine_tune_train.jsonl", "summary"),
    (W6 + "sanmi01/jsonl/fine_tune_validation.jsonl", "summary"),
    (W6 + "codypharm/jsonl/fine_tune_train.jsonl", "summary"),
    (W6 + "codypharm/jsonl/fine_tune_validation.jsonl", "summary"),
    (W6 + "ebunilo_week_6/jsonl/fine_tune_train.jsonl", "summary"),
    (W6 + "ebunilo_week_6/jsonl/fine_tune_validation.jsonl", "summary"),
    (W6 + "temmyogunbo/jsonl/fine_tune_train.jsonl", "summary"),
    (W6 + "temmyogunbo/jsonl/fine_tune_validation.jsonl", "summary"),
    (W6 + "valoni/ft_train.jsonl", "summary"),
    (W6 + "valoni/ft_val.jsonl", "summary"),
    (W6 + "vishnu/jsonl/fine_tune_train.jsonl", "summary"),
    (W6 + "vishnu/jsonl/fine_tune_validation.jsonl", "summary"),
    (W6 + "jamal-ishaq/fine_tune_train.jsonl", "summary"),
    (W6 + "jamal-ishaq/fine_tune_validation.jsonl", "summary"),
    (W6 + "thomas_juma/fine_tune_train.jsonl", "summary"),
    (W6 + "thomas_juma/fine_tune_validation.jsonl", "summary"),
    (W6 + "tobenna/ft_train_Electronics.jsonl", "summary"),
    (W6 + "tobenna/ft_val_Electronics.jsonl", "summary"),
    (W6 + "elikeyz/train.jsonl", "raw"),
    (W6 + "elikeyz/validation.jsonl", "raw"),
    (W6 + "solisoma/training_data.jsonl", "raw"),
    (W6 + "solisoma/validation_data.jsonl", "raw"),
    (W6 + "osas/jsonl/fine_tune_train.jsonl", "stripped"),
    (W6 + "osas/jsonl/fine_tune_validation.jsonl", "stripped"),
)
# Looked at and left out: Collins (price buckets, no price), Wakanda-Michael-Ishola (price ranges),
# bharat_puri (its completions repeat the prompt: no price), aswamina/vishnu batches (listings, no price),
# ollama_*.jsonl (the course's fine_tune rows again), the Spanish version of week6/fine_tune_*.jsonl.
QUESTIONS = ("How much does this cost to the nearest dollar?", "How much does this cost?")
QUESTION_2024 = QUESTIONS[0]  # what the 2024 course's Item.prompt asks
# a raw listing's fields, each running to the next label
LISTING_FIELD = re.compile(r"^(Title|Description|Features|Details):[ \t]*(.*?)"
                           r"(?=^(?:Description|Features|Details):|\Z)", re.M | re.S)
LABELS = re.compile(r"^(Title|Category|Brand|Description|Details|Features|Summary|Weight):\s*", re.M)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", str(repo), *args], check=True, capture_output=True,
                          text=True, encoding="utf-8").stdout


def find_repo() -> Path:
    """The fetched snapshot's git dir under /work/.mirror (the `fetch` tool puts it there)."""
    found = sorted(MIRROR.glob("ed-donner+llm_engineering*/repo")) + sorted(MIRROR.glob("ed-donner+llm_engineering*"))
    for path in found:
        if (path / "HEAD").exists():
            return path
    raise SystemExit(f"no snapshot of {REPOSITORY} under {MIRROR}: fetch it (github:{REPOSITORY}) or pass --repo")


def versions(repo: Path, path: str) -> list[tuple[str, str]]:
    """(commit, blob) of every distinct content `path` has had, newest first, each with its newest commit."""
    seen, out = set(), []
    for commit in git(repo, "log", "--all", "--format=%H", "--", path).split():
        try:
            blob = git(repo, "rev-parse", f"{commit}:{path}").strip()
        except subprocess.CalledProcessError:
            continue  # the commit deleted it
        if blob not in seen:
            seen.add(blob)
            out.append((commit, blob))
    return out


def messages_of(row: dict) -> tuple[str, str]:
    """(user text, assistant text) of an OpenAI chat row."""
    turns = row.get("messages") or []
    user = [m.get("content") or "" for m in turns if m.get("role") == "user"]
    answer = [m.get("content") or "" for m in turns if m.get("role") == "assistant"]
    if not user or not answer:
        raise ValueError("not a chat row with a user and an assistant turn")
    return user[-1], answer[-1]


def price_in(answer: str) -> float:
    """The price an assistant turn gives: "Price is $71.99", "$84.95", "21.95", "64"."""
    return read_price(answer.strip().removeprefix("Price is").strip())


def labelled(text: str, label: str) -> str | None:
    match = re.search(rf"^{label}:\s*(.*?)\s*$", text, re.M)
    return match.group(1) if match else None


def parse(style: str, user: str) -> dict:
    """The Item fields (title, summary; category, weight) of one row's user text in `style`."""
    text = textwrap.dedent(user.replace("\r\n", "\n")).strip()
    if style == "course_2024":
        question = next((q for q in QUESTIONS if text.startswith(q)), None)
        if question is None:
            raise ValueError("no 'How much does this cost?' question")
        summary = text.removeprefix(question).strip().removesuffix("Price is $").strip()
        return {"title": summary.splitlines()[0].strip(), "summary": summary}
    start = text.find("Title:")
    if start < 0:
        raise ValueError("no 'Title:' line")
    text = text[start:]
    title = labelled(text, "Title")
    if style in ("summary", "raw"):
        return {"title": title, "summary": textwrap.dedent(text).strip()}
    summary, weight = labelled(text, "Summary"), labelled(text, "Weight")
    pounds = re.fullmatch(r"([\d.]+)\s*lbs?", weight or "")
    return {"title": title, "category": labelled(text, "Category"), "summary": summary,
            "weight": float(pounds.group(1)) if pounds else None}


def keys_of(item: dict, style: str) -> list[str]:
    """The product's names, normalised: the first is its split key; a duplicate matches any of them."""
    names = [item["title"]]
    if style == "stripped":  # the summary names the product with the summary style's short title
        match = re.match(r"Title (.*?) Category ", item["summary"] or "")
        names = ([match.group(1)] if match else []) + names
    keys = [re.sub(r"[^a-z0-9]", "", n.lower()) for n in names]
    return [k for k in keys if len(k) >= 8]


def split_of(key: str) -> str:
    bucket = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 100
    return "train" if bucket < SPLIT_SHARES[0] else "val" if bucket < SPLIT_SHARES[1] else "test"


def normalise(item: dict, style: str) -> str:
    """One layout for every style: the title on its own line, then the text without labels or list brackets.

    Raw listings are first cleaned as the package cleans them (pricer.listings: part numbers out)."""
    text = item["summary"]
    if style == "raw":
        from pricer.listings import listing_text

        text = listing_text(user_row(item, style))
    if style == "stripped":
        text = re.sub(r"^Title (.*?) (Category .*)$", r"\1\n\2", text, flags=re.S)
        text = re.sub(r"\b(Category|Brand|Description|Details) ", "", text)
    text = LABELS.sub("", text)
    text = re.sub(r"\[\s*'|'\s*\]|\[\s*\"|\"\s*\]|',\s*'|\",\s*\"|\[\]", " ", text)  # Python list reprs
    lines = [re.sub(r"[ \t\u00a0\u202f]+", " ", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    return "\n".join([lines[0], " ".join(lines[1:])]).strip() if lines else item["summary"]


def listing_value(text: str):
    """A listing field as the metadata holds it: a list where the text is a Python list, else the string."""
    text = text.strip()
    if text.startswith("["):  # students cut some lists off mid-string: close them as they were opened
        for ending in ("", "']", '"]', "]"):
            try:
                value = ast.literal_eval(text.rstrip(", ") + ending if ending == "]" else text + ending)
            except (ValueError, SyntaxError):
                continue
            if isinstance(value, list):
                return [str(v) for v in value]
    return text


def user_row(item: dict, style: str) -> dict:
    """The row as the course's format for its style writes it (see the module docstring)."""
    title, price, summary = item["title"], item["price"], item["summary"]
    if style == "course_2024":
        return {"title": title, "price": price,
                "prompt": f"{QUESTION_2024}\n\n{summary}\n\nPrice is ${round(price)}.00"}
    if style == "raw":
        fields = dict(LISTING_FIELD.findall(summary))
        row = {"title": title}
        for name in ("Description", "Features", "Details"):
            if fields.get(name, "").strip():
                row[name.lower()] = listing_value(fields[name])
        return row | {"price": price}
    return item  # summary and stripped: the 2025 course's Item fields already


def assemble(repo: Path) -> tuple[dict, list[dict]]:
    """({split: [(item, style, source index)]}, the sources with their counts), deduplicated."""
    splits, sources, seen = {"train": [], "val": [], "test": []}, [], set()
    for path, style in SOURCES:
        for commit, blob in versions(repo, path):
            source = {"path": path, "commit": commit, "blob": blob, "style": style,
                      "read": 0, "kept": 0, "skipped": Counter()}
            raw = git(repo, "cat-file", "blob", blob)
            for line in raw.splitlines():
                if not line.strip():
                    continue
                source["read"] += 1
                try:
                    user, answer = messages_of(json.loads(line))
                    item = {k: v for k, v in parse(style, user).items() if v is not None}
                    item["price"] = price_in(answer)
                except (ValueError, json.JSONDecodeError, AttributeError) as e:
                    source["skipped"][str(e).split(":")[0][:60]] += 1
                    continue
                if not (item.get("title") and item.get("summary")):
                    source["skipped"]["no title or text"] += 1
                    continue
                if not MIN_PRICE <= item["price"] <= MAX_PRICE:
                    source["skipped"]["price outside the course's window"] += 1
                    continue
                keys = keys_of(item, style)
                if not keys:
                    source["skipped"]["title too short to identify"] += 1
                    continue
                if seen & set(keys):
                    source["skipped"]["duplicate product"] += 1
                    continue
                seen.update(keys)
                splits[split_of(keys[0])].append((item, style, len(sources)))
                source["kept"] += 1
            source["skipped"] = dict(source["skipped"])
            sources.append(source)
    return splits, sources


def describe(splits: dict, sources: list[dict]) -> dict:
    """Counts by split, style and source, and the price range: what sources.json and the benchmark report."""
    rows = [entry for split in splits.values() for entry in split]
    prices = sorted(item["price"] for item, _, _ in rows)
    by_source = Counter(sources[s]["path"].removeprefix(W6) for _, _, s in rows)
    return {"repository": REPOSITORY, "rows": len(rows),
            "splits": {split: len(entries) for split, entries in splits.items()},
            "styles": {split: dict(Counter(style for _, style, _ in entries)) for split, entries in splits.items()},
            "by_style": dict(Counter(style for _, style, _ in rows)),
            "by_source": dict(by_source.most_common()),
            "price": {"min": prices[0], "median": statistics.median(prices), "max": prices[-1]} if prices else None}


def write(out: Path, splits: dict, sources: list[dict], normalised: bool = False) -> dict:
    """train / val / test JSONL of Item rows, and sources.json; returns the summary."""
    out.mkdir(parents=True, exist_ok=True)
    for split, entries in splits.items():
        rows = [{**item, "summary": normalise(item, style)} if normalised else user_row(item, style)
                for item, style, _ in entries]
        with (out / f"{split}.jsonl").open("w", encoding="utf-8") as f:
            f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    summary = describe(splits, sources) | {"normalised": normalised}
    record = summary | {"sources": [s for s in sources if s["read"]],
                        "row_sources": {split: [[style, s] for _, style, s in entries]
                                        for split, entries in splits.items()}}
    (out / "sources.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return summary


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repo", type=Path, help="the snapshot's git dir (default: found under /work/.mirror)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the items folder to write (outside git)")
    p.add_argument("--normalised", action="store_true", help="also write OUT-normalised: one layout for all styles")
    args = p.parse_args(argv)
    repo = args.repo or find_repo()
    splits, sources = assemble(repo)
    summary = write(args.out, splits, sources)
    print(json.dumps(summary, indent=1))
    print(f"wrote {args.out} from {REPOSITORY} at {git(repo, 'rev-parse', 'HEAD').strip()[:12]}")
    if args.normalised:
        folder = args.out.with_name(args.out.name + "-normalised")
        write(folder, splits, sources, normalised=True)
        print(f"wrote {folder}")


if __name__ == "__main__":
    main()
