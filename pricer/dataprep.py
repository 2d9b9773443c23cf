"""Your own products in, the prompts a preset trains on out: one function for the command line, notebook 2 and `train`.

    python -m pricer data --items my_items --out data/mine --preset smol
    tally = prepare("my_items", "data/mine/prompts", summary_tokens=80, tokenizer=model_folder)
    folder = prompts_for_items("my_items", 80, model_folder)   # the same rows, made once into PRICER_HOME

`prepare` reads a folder in any of the course's formats (pricer.formats), cuts each summary at
the preset's `summary_tokens` tokens of the preset's tokenizer (never inside a character), and
writes train / val / test prompt rows with `made_with.json` beside them: where the items came
from, their digest, the tokenizer, the cut and the tally (rows read, skipped by reason with file
and line, summaries the cut shortened). Completions are rounded for train and val and exact for
test, as in the course. `train --set items=FOLDER` and the lab's `items=` use `prompts_for_items`,
which calls `prepare` once per folder content, tokenizer and cut, so they train on exactly the
rows `pricer data --items` writes.
"""

import hashlib
from pathlib import Path

from pricer.config import pricer_home
from pricer.errors import DataError
from pricer.files import atomic_folder, read_json, write_json
from pricer.formats import Tally
from pricer.items import Item, read_items
from pricer.sources import _tokenizer_label, describe, resolve

RECORD = "made_with.json"  # the name lab 2's saved prompts use too (pricer.session)
VERSION = 1  # bump when reading or cutting changes: cached prompts are keyed by it


def items_digest(source: str) -> str:
    """A digest of a local items folder's JSONL bytes (names included), or of a Hub name."""
    digest = hashlib.sha256(f"v{VERSION}".encode())
    folder = Path(source)
    if folder.is_dir():
        for f in sorted(folder.glob("*.jsonl")):
            digest.update(f.name.encode())
            digest.update(f.read_bytes())
    else:
        digest.update(source.encode())
    return digest.hexdigest()[:16]


def prepare(items: str, out: str | Path, summary_tokens: int, tokenizer: str) -> Tally:
    """Write the prompt rows of `items` (cut at `summary_tokens` tokens of `tokenizer`, a model name) to `out`.

    `out` is replaced when it holds prompts made earlier (a `made_with.json`); any other folder with files
    in it is refused, never emptied."""
    from transformers import AutoTokenizer

    source = resolve(items, "items")
    out = Path(out).expanduser()
    if out.resolve() == Path(source).resolve():
        raise DataError(f"--out {out} is the items folder itself: give another folder for the prompts.")
    if out.is_file() or (out.is_dir() and any(out.iterdir()) and not (out / RECORD).exists()):
        raise DataError(f"{out} is {'a file' if out.is_file() else 'a folder with other files in it'}: give a new "
                        "or empty folder for the prompts (one pricer made earlier is replaced).")
    found, tally = read_items(source)
    tok = AutoTokenizer.from_pretrained(resolve(tokenizer, "model"))
    for split, do_round in (("train", True), ("val", True), ("test", False)):
        for item in found[split]:
            tally.shortened[split] += item.count_tokens(tok) > summary_tokens
            item.make_prompts(tok, summary_tokens, do_round)
    with atomic_folder(out) as tmp:  # whole or not at all: a cache that is there is complete
        Item.save_prompts(tmp, found["train"], found["val"], found["test"])
        write_json(Path(tmp) / RECORD, {"items": describe(source), "items_digest": items_digest(source),
                                        "tokenizer": describe(resolve(tokenizer, "model")),
                                        "summary_tokens": summary_tokens, "tally": tally.lines()})
    return tally


def prompts_for_items(items: str, summary_tokens: int, tokenizer: str) -> str:
    """The prompts folder made from `items` for this tokenizer and cut: made on first use (said), then reused."""
    source = resolve(items, "items")
    label = _tokenizer_label(resolve(tokenizer, "model"))
    folder = pricer_home() / "prompts" / f"{items_digest(source)}-{label}-{summary_tokens}"
    if (folder / RECORD).exists():
        record = read_json(folder / RECORD, "record of prompts made from items", "delete that folder to remake it")
        print(f"pricer: prompts from {describe(source)} (cut at {summary_tokens} tokens), made earlier: {folder}")
        for line in record.get("tally", []):
            print(f"pricer:   {line}")
        return str(folder)
    print(f"pricer: making prompts from {describe(source)} (cut at {summary_tokens} tokens) into {folder}")
    prepare(source, folder, summary_tokens, tokenizer).print()
    return str(folder)
