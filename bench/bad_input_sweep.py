"""Feed malformed rows and odd model outputs through the public API; count the outcomes.

    python bench/bad_input_sweep.py        # writes bench/results/bad_input_sweep.json

Each case ends one of three ways: "handled" (a sensible result, e.g. an unparsed answer
counted), "clear error" (a DataError / ValueError / PricerError naming the problem), or
"crash" (anything else: a TypeError deep in a library, a wrong silent $0...). The goal is
zero crashes.
"""

import json
import math
import platform
import random
import sys
import tempfile
from collections import Counter
from pathlib import Path

from pricer.errors import PricerError
from pricer.evaluator import Result, Tester, evaluate
from pricer.human import load_human_guesses
from pricer.items import DataError, Item, check_prompt_row, load_prompts

GOOD = {"title": "Acme 20W Speaker", "category": "Electronics", "price": 49.99,
        "summary": "Title: Acme 20W Speaker\nCategory: Electronics", "id": 1}
ODD_VALUES = [None, "", "   ", 0, -3, 0.49, 999.5, 1e9, float("nan"), float("inf"), "49.99", "cheap",
              [], {}, ["a"], True, "💰", "x" * 5000, b"bytes", 12]
ODD_OUTPUTS = ["", "   ", "N/A", "no idea", "$1,234.50", "349.99 what is", "-5", "1e309", "∞", "١٢٣",
               "$$$", "Price is $", "12.34.56", "0", "0.00", "9" * 400, "\x00\x01", "$ 3 4 9", None,
               float("nan"), float("inf"), -1.0, 0.0, 1e12, 12, "🙂 42", "forty-two", "[349]"]


def outcome(fn) -> str:
    """Run one case and classify it."""
    try:
        fn()
        return "handled"
    except (DataError, ValueError, PricerError) as e:
        return "clear error" if str(e).strip() else "crash"
    except Exception as e:  # anything else is a crash: the point of the sweep
        return f"crash: {type(e).__name__}: {e}"[:200]


def item_rows(rng: random.Random):
    """Item rows with one or two fields replaced by odd values, or missing."""
    for _ in range(200):
        row = dict(GOOD)
        for field in rng.sample(sorted(GOOD), rng.choice((1, 2))):
            if rng.random() < 0.2:
                row.pop(field)
            else:
                row[field] = rng.choice(ODD_VALUES)
        yield ("Item.from_row", lambda row=row: Item.from_row(row, where="sweep row"))


def prompt_rows(rng: random.Random):
    """Prompt rows with odd prompts and completions, and non-dict rows."""
    for _ in range(100):
        row = {"prompt": rng.choice(ODD_VALUES + ["What does this cost?"] * 5),
               "completion": rng.choice(ODD_VALUES + ["12.00"] * 3)}
        if rng.random() < 0.1:
            row = rng.choice(ODD_VALUES)
        yield ("check_prompt_row", lambda row=row: check_prompt_row(row))


def model_outputs(results: Path):
    """Odd predictor answers through a whole Tester run: parsed, or counted as unparsed."""
    rows = [{"prompt": f"Title: thing {i}\n", "completion": f"{10 + i}.00"} for i in range(len(ODD_OUTPUTS))]

    def run():
        result = evaluate(lambda row: ODD_OUTPUTS[rows.index(row)], rows, size=len(rows), save=False,
                          results_dir=results)
        assert all(math.isfinite(g) for g in result.guesses), "a guess that is not a number"
        assert result.metrics["unparsed"] > 0, "answers with no number must be counted"

    yield ("Tester.run on odd outputs", run)
    for value in ODD_OUTPUTS:
        yield ("Tester.post_process", lambda value=value: _parse(value))


def _parse(value) -> None:
    guess = Tester.post_process(value)
    if guess is not None and not isinstance(guess, (int, float)):
        raise TypeError(f"post_process gave {guess!r}")


def files(tmp: Path):
    """Corrupt results files, bad human CSVs, and a dataset folder of bad rows."""
    for i, text in enumerate(["{", "[]", '{"kind": "other"}', '{"kind": "pricer.result", "schema": 0}',
                              '{"kind": "pricer.result", "schema": 1}', ""]):
        path = tmp / f"result{i}.json"
        path.write_text(text)
        yield ("Result.load", lambda path=path: Result.load(path))
    for i, text in enumerate(["id,title,text,guess\n1,a,b,\n", "id,title,text,guess\n1,a,b,abc\n",
                              "title\nx\n", "", "id,title,text,guess\n1,a,b,-4\n"]):
        path = tmp / f"human{i}.csv"
        path.write_text(text)
        yield ("load_human_guesses", lambda path=path: load_human_guesses(path))
    folder = tmp / "prompts"
    folder.mkdir()
    bad = [{"prompt": "", "completion": "1"}, {"prompt": "p"}, {"prompt": "p", "completion": "x"}, "row"]
    for split in ("train", "val", "test"):
        lines = [json.dumps(r) for r in bad] + [json.dumps({"prompt": "p", "completion": "5.00"})]
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")

    def bulk():
        loaded = load_prompts(str(folder))
        assert all(len(rows) == 1 for rows in loaded.values()), "bad rows must be skipped, good kept"

    yield ("load_prompts (bulk, skips counted)", bulk)


def sweep() -> tuple[int, dict, list]:
    """(number of cases, outcome counts per API, crash descriptions)."""
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cases = [*item_rows(rng), *prompt_rows(rng), *model_outputs(tmp / "results"), *files(tmp)]
        table = Counter()
        crashes = []
        for api, case in cases:
            result = outcome(case)
            table[(api, result if not result.startswith("crash") else "crash")] += 1
            if result.startswith("crash"):
                crashes.append(f"{api}: {result}")
    apis = sorted({api for api, _ in table})
    rows = {api: {k: table[(api, k)] for k in ("handled", "clear error", "crash")} for api in apis}
    return len(cases), rows, crashes


def main() -> None:
    n, rows, crashes = sweep()
    totals = {k: sum(r[k] for r in rows.values()) for k in ("handled", "clear error", "crash")}
    print(f"{'API':<36}{'handled':>9}{'clear error':>13}{'crash':>7}")
    for api, r in rows.items():
        print(f"{api:<36}{r['handled']:>9}{r['clear error']:>13}{r['crash']:>7}")
    print(f"{'total (' + str(n) + ' cases)':<36}{totals['handled']:>9}{totals['clear error']:>13}"
          f"{totals['crash']:>7}")
    for line in crashes[:20]:
        print("  ", line)
    out = Path(__file__).parent / "results" / "bad_input_sweep.json"
    machine = f"{platform.node()} {platform.machine()} Python {platform.python_version()}"
    out.write_text(json.dumps({"machine": machine, "cases": n, "totals": totals, "by_api": rows,
                               "crashes": crashes}, indent=1))
    sys.exit(1 if crashes else 0)


if __name__ == "__main__":
    main()
