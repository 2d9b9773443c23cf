"""Feed malformed rows, bad settings, damaged files and odd outputs through the public API and the CLI.

    python bench/bad_input_sweep.py        # writes bench/results/bad_input_sweep.json (~1-2 min on 2 cores)

Each case ends one of four ways: "handled" (a sensible result, e.g. an unparsed answer counted,
a damaged checkpoint passed over for the good one before it), "clear error" (a DataError /
ValueError / PricerError that names what it must: the setting, file or value), "vague error"
(such an error that doesn't), or "crash" (anything else: a TypeError deep in a library, a
traceback from the CLI, a secret in the output, a silent wrong result). The goal: zero crashes
and zero vague errors.
"""

import json
import math
import os
import platform
import random
import subprocess
import sys
import tempfile
import zipfile
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


OUTCOMES = ("handled", "clear error", "vague error", "crash")


def outcome(case) -> str:
    """Run one case and classify it; a case is a function, or (function, words its error must name)."""
    fn, names = case if isinstance(case, tuple) else (case, ())
    try:
        fn()
        return "handled"
    except (DataError, ValueError, PricerError) as e:
        text = str(e)
        return "clear error" if text.strip() and all(n in text for n in names) else "vague error"
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


def settings():
    """Every setting's bad values, through get_preset and --set parsing: refused naming the setting."""
    from pricer.config import get_preset, parse_settings

    bad = {"batch_size": ["abc", "0", "-8", "1.5", "1e2"], "train_rows": ["0", "-8", "1e2", "x"],
           "epochs": ["0", "-1", "many"], "quant": ["3bit", "4"], "name": ["x y", "", "../up"],
           "learning_rate": ["0", "-1e-4", "2", "fast"], "lora_r": ["0", "none", "r"],
           "lora_dropout": ["1", "-0.1"], "target_modules": ["qkv", "q_proj,foo", ""],
           "optimizer": ["adam"], "lr_scheduler": ["cosinus"], "max_length": ["8"], "summary_tokens": ["0"],
           "warmup_fraction": ["2"], "save_steps": ["0"], "eval_size": ["0"], "val_rows": ["-1"]}
    for key, values in bad.items():
        for value in values:
            yield ("settings: --set key=value", (lambda key=key, value=value: get_preset(
                "lite", **parse_settings([f"{key}={value}"])), (key,)))
    for pair in ("lora_rank=8", "train_rows", "=5"):
        yield ("settings: --set key=value", (lambda pair=pair: parse_settings([pair]), (pair.partition("=")[0] or "key",)))


def names(tmp: Path):
    """Names that look like paths but aren't there, a file for a folder, a Hub name offline without asking."""
    from pricer import sources

    os.environ["PRICER_OFFLINE"] = "1"
    for name in ("./dta/prompts", "~/no/such/folder", "/no/such/folder", "data/prompts/test.jsonl"):
        yield ("sources.resolve (offline)", (lambda name=name: sources.resolve(name, "prompts"), (name,)))
    (tmp / "rows.jsonl").write_text("{}\n")
    yield ("sources.resolve (offline)", (lambda: sources.resolve(str(tmp / "rows.jsonl"), "prompts"), ("is a file",)))
    del os.environ["PRICER_OFFLINE"]
    reachable, sources.hub_reachable = sources.hub_reachable, lambda: False
    yield ("sources.resolve (no network)", (lambda: sources.resolve("ed-donner/items_lite", "items"),
                                            ("ed-donner/items_lite", "PRICER_OFFLINE=1")))
    sources.hub_reachable = reachable


def damaged_files(tmp: Path):
    """Run records, checkpoints, lab records, lab settings, evaluator caches and data files, damaged."""
    from pricer import runs, session
    from pricer.lab import _readable_state

    out = tmp / "outputs"
    for i, text in enumerate(["{", "[]", '{"identity": 3}', ""]):
        run = out / f"tiny-2026-01-0{i}"
        run.mkdir(parents=True)
        (run / runs.RUN_FILE).write_text(text)

        def check(run=run):
            assert runs.read_record(run) is None  # named and passed over, not a crash for every later run
        yield ("runs.read_record (damaged)", check)
    run = out / "tiny-2026-02-01"
    for step, truncate in ((2, None), (4, "adapter_model.safetensors"), (6, "optimizer.pt"), (8, "trainer_state.json")):
        folder = run / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
        (folder / "adapter_model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 16)
        for name in ("optimizer.pt", "scheduler.pt"):
            with zipfile.ZipFile(folder / name, "w") as z:
                z.writestr("data", "x")
        if truncate:
            data = (folder / truncate).read_bytes()
            (folder / truncate).write_bytes(data[: len(data) // 2])

    def resume():
        assert runs.last_checkpoint(run).endswith("checkpoint-2"), "the newest good checkpoint is the one to resume"
    yield ("runs.last_checkpoint (damaged newer ones)", resume)
    for i, text in enumerate(["{", '{"done": {}}', '{"preset": "tiny", "done": 3}']):
        folder = tmp / "runs" / f"r{i}"
        folder.mkdir(parents=True)
        (folder / "lab.json").write_text(text)
        yield ("lab record (damaged)", lambda folder=folder: _check_none(_readable_state(folder)))
    for i, text in enumerate(["{", '{"preset": "huge"}', "[1]"]):
        folder = tmp / "labs" / f"l{i}"
        folder.mkdir(parents=True)
        (folder / session.SETTINGS_FILE).write_text(text)
        yield ("lab settings file (damaged)", (lambda folder=folder: session.read_settings(folder), (session.SETTINGS_FILE,)))
    data = tmp / "data"
    data.mkdir()
    for split in ("train", "val", "test"):
        rows = [{"prompt": "What?\n\nTitle: a\n\nPrice is $", "completion": c} for c in ("$899.00", 64.3, "12")]
        (data / f"{split}.jsonl").write_text("\ufeff" + "\n".join(map(json.dumps, rows)) + "\n{broken\n",
                                             encoding="utf-8")

    def bom_and_broken_line():
        loaded = load_prompts(str(data))
        assert [r["completion"] for r in loaded["test"]] == ["899.00", "64.3", "12"], loaded["test"]
    yield ("load_prompts (BOM, a broken line, $ prices)", bom_and_broken_line)
    empty = tmp / "all_bad"
    empty.mkdir()
    for split in ("train", "val", "test"):
        (empty / f"{split}.jsonl").write_text('{"prompt": "", "completion": "x"}\n')
    yield ("load_prompts (every row invalid)", (lambda: load_prompts(str(empty)), ("train split has no usable rows",)))


def _check_none(value) -> None:
    assert value is None, f"a damaged record was used: {value!r}"


def command_line(tmp: Path):
    """The CLI with bad input: exit code 2, the message in one or two lines, no traceback."""
    cases = [["train", "--set", "batch_size=abc"], ["train", "--set", "train_rows=1e2"],
             ["train", "--set", "quant=3bit"], ["train", "--set", "prompts=./no/such/folder"],
             ["evaluate", "--output-dir", str(tmp / "empty")], ["lab", "--set", "lora_r=0"],
             ["train", "--preset", "huge"]]
    for args in cases:
        yield ("python -m pricer (bad input)", lambda args=args: _cli(args))


def _cli(args: list[str]) -> None:
    env = {**os.environ, "PRICER_OFFLINE": "1", "PRICER_DEBUG": ""}
    done = subprocess.run([sys.executable, "-m", "pricer", *args], capture_output=True, text=True, env=env,
                          timeout=300)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    if done.returncode != 2 or "Traceback" in done.stderr or not 1 <= len(lines) <= 3:
        raise RuntimeError(f"exit {done.returncode}, {len(lines)} lines: {done.stderr[-300:]!r}")


def secrets():
    """A secret in every form output can hold it: redacted in each, even cut short or escaped."""
    from urllib.parse import quote

    from pricer.env import redact

    key = "sk-proj-" + "AbC123xYz" * 8
    forms = {"verbatim": key, "repr with newline": repr(key + "\n"), "json": json.dumps({"k": key}),
             "url": quote(key, safe=""), "cut at 80 in an error": f"{RuntimeError('Bearer ' + key)!r:.80}",
             "ansi coloured": f"\x1b[31m{key[:20]}\x1b[0m{key[20:]}"}
    os.environ["OPENAI_API_KEY"] = key
    for name, text in forms.items():
        def check(text=text):
            shown = redact(text)
            assert not any(key[i:i + 12] in shown for i in range(len(key) - 12)), f"a piece of the key: {shown!r}"
        yield (f"redact ({name})", check)


def locks(tmp: Path):
    """Two processes on one run folder: the second is refused, naming the first."""
    from pricer.files import acquire_lock, release_lock

    folder = tmp / "locked"
    code = f"from pricer.files import acquire_lock; acquire_lock({str(folder)!r}, 'training')"

    def second():
        acquire_lock(folder, "training")
        try:
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        finally:
            release_lock(folder)
        assert done.returncode != 0 and "in use for training by process" in done.stderr, done.stderr[-200:]
    yield ("a second process on a held folder", second)


def sweep() -> tuple[int, dict, list]:
    """(number of cases, outcome counts per API, crash and vague-error descriptions)."""
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cases = [*item_rows(rng), *prompt_rows(rng), *model_outputs(tmp / "results"), *files(tmp), *settings(),
                 *names(tmp), *damaged_files(tmp), *command_line(tmp), *secrets(), *locks(tmp)]
        table = Counter()
        problems = []
        for api, case in cases:
            result = outcome(case)
            table[(api, result if not result.startswith("crash") else "crash")] += 1
            if result.startswith("crash") or result == "vague error":
                problems.append(f"{api}: {result}")
    apis = sorted({api for api, _ in table})
    rows = {api: {k: table[(api, k)] for k in OUTCOMES} for api in apis}
    return len(cases), rows, problems


def main() -> None:
    n, rows, crashes = sweep()
    totals = {k: sum(r[k] for r in rows.values()) for k in OUTCOMES}
    print(f"{'API':<44}{'handled':>9}{'clear error':>13}{'vague':>7}{'crash':>7}")
    for api, r in rows.items():
        print(f"{api:<44}{r['handled']:>9}{r['clear error']:>13}{r['vague error']:>7}{r['crash']:>7}")
    print(f"{'total (' + str(n) + ' cases)':<44}{totals['handled']:>9}{totals['clear error']:>13}"
          f"{totals['vague error']:>7}{totals['crash']:>7}")
    for line in crashes[:20]:
        print("  ", line)
    out = Path(__file__).parent / "results" / "bad_input_sweep.json"
    machine = f"{platform.node()} {platform.machine()} Python {platform.python_version()}"
    out.write_text(json.dumps({"machine": machine, "cases": n, "totals": totals, "by_api": rows,
                               "crashes": crashes}, indent=1))
    sys.exit(1 if crashes else 0)  # crashes and vague errors alike


if __name__ == "__main__":
    main()
