"""Feed malformed rows, bad settings, damaged files, broken resources and secrets through the API and the CLI.

    python bench/bad_input_sweep.py        # writes bench/results/bad_input_sweep.json (~2 min on 2 cores)

Each case ends one of four ways. "handled": a correct result (an unparsed answer counted, a
damaged checkpoint passed over for the good one before it, a secret hidden in every form).
"refused": a named refusal, that is a PricerError (DataError, SettingError, ResourceError) or
a `raise` of pricer's own check, naming what it must (the setting, file or resource); through
the CLI, exit code 2 with one or two lines and no traceback. "vague": such a refusal that
doesn't name it. "crash": anything else: a library's exception, a traceback, a bug report
from the CLI, a secret in the output, a file of the user's deleted, a silent wrong result.
Cases are grouped in classes (rows, settings, resources, files that are not files, full and
read-only disks, destructive flags, secrets, records of the wrong shape, ...); the counts are
saved by class and by API. The goal: zero crashes and zero vague errors.
"""

import base64
import contextlib
import errno
import io
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pricer.errors import PricerError
from pricer.evaluator import Result, Tester, evaluate
from pricer.human import load_human_guesses
from pricer.items import DataError, Item, check_prompt_row, load_prompts, read_items

GOOD = {"title": "Acme 20W Speaker", "category": "Electronics", "price": 49.99,
        "summary": "Title: Acme 20W Speaker\nCategory: Electronics", "id": 1}
ODD_VALUES = [None, "", "   ", 0, -3, 0.49, 999.5, 1e9, float("nan"), float("inf"), "49.99", "cheap",
              [], {}, ["a"], True, "💰", "x" * 5000, b"bytes", 12]
ODD_OUTPUTS = ["", "   ", "N/A", "no idea", "$1,234.50", "349.99 what is", "-5", "1e309", "∞", "١٢٣",
               "$$$", "Price is $", "12.34.56", "0", "0.00", "9" * 400, "\x00\x01", "$ 3 4 9", None,
               float("nan"), float("inf"), -1.0, 0.0, 1e12, 12, "🙂 42", "forty-two", "[349]"]


OUTCOMES = ("handled", "refused", "vague", "crash")


def outcome(case) -> str:
    """Run one case and classify it; a case is a function, or (function, words its refusal must name)."""
    from pricer.edge import _raised_by_pricer

    fn, names = case if isinstance(case, tuple) else (case, ())
    try:
        result = fn()  # a CLI case returns "refused" for a named refusal, "vague: ..." for one that names too little
        return result if isinstance(result, str) and result.startswith(("refused", "vague")) else "handled"
    except (PricerError, ValueError) as e:
        if not isinstance(e, PricerError) and not _raised_by_pricer(e):
            return f"crash: {type(e).__name__} from a library: {e}"[:200]  # a library's check is no named refusal
        text = str(e)
        return "refused" if text.strip() and all(n in text for n in names) else f"vague: {text[:150]}"
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
    """Corrupt results files, bad human CSVs, a dataset folder of bad rows, and damaged or odd product files."""
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
    yield from product_files(tmp / "products")


PRODUCT_FILES = {  # a train file of a user's products, as written: suffix and content
    "semicolons, decimal commas": (".csv", "title;price\nAcme Lamp;12,99\nBolt Kit;3.50\n"),
    "an unclosed quote": (".csv", 'title,price\n"Acme Lamp,12.99\nBolt Kit,3.50\n'),
    "text after a closing quote": (".csv", 'title,price\n"Acme" Lamp,12.99\nBolt Kit,3.50\n'),
    "a 200,000-character cell": (".csv", "title,price\n" + "A" * 200_000 + ",12.99\nBolt Kit,3.50\n"),
    "a NUL byte": (".csv", "title,price\nAc\x00me Lamp,12.99\nBolt Kit,3.50\n"),
    "too many and too few cells": (".csv", "title,price\nAcme Lamp,12.99,x\nBolt\nBolt Kit,3.50\n"),
    "a column named twice": (".csv", "title,price,Title\nAcme Lamp,12.99,x\n"),
    "no header line": (".csv", "Acme Lamp,12.99\nBolt Kit,3.50\n"),
    "only a header": (".csv", "title,price\n"),
    "nothing": (".csv", ""),
    "Windows-1252 bytes": (".csv", "title,price\nCaf\xe9 Lamp,12.99\n".encode("cp1252")),
    "an Excel workbook renamed": (".csv", b"PK\x03\x04\x14\x00\x00\x00\x08\x00\xff\xfe"),
    "tabs, prices with $ and thousands": (".tsv", "title\tprice\nAcme Lamp\t$12.99\nBolt Kit\t\"$1,299.00\"\n"),
    "a JSON array cut short": (".json", '[{"title": "Acme Lamp", "price": 12.99},\n{"title": ]'),
    "one JSON object of metadata": (".json", '{"made": "by me"}'),
    "JSON lines with a bad one": (".json", '{"title": "Acme Lamp", "price": 12.99}\n{bad\n'),
    "a JSON array of numbers": (".json", "[1, 2, null]"),
    "a JSON string with U+2028": (".json", '{"title": "Acme\u2028Lamp", "price": 12.99}\n'
                                           '{"title": "Bolt Kit", "price": 3.5}'),
}


def product_files(tmp: Path):
    """A folder of products whose train file is damaged or odd: read (bad rows counted, only prices as written
    kept) or refused naming the file."""
    good = "title,price\nAcme Lamp,12.99\nBolt Kit,3.50\n"
    for i, (name, (suffix, content)) in enumerate(PRODUCT_FILES.items()):
        folder = tmp / f"case{i}"
        folder.mkdir(parents=True)
        for split in ("val", "test"):
            (folder / f"{split}.csv").write_text(good)
        (folder / f"train{suffix}").write_bytes(content if isinstance(content, bytes) else content.encode())

        def read(folder=folder):
            items, _ = read_items(str(folder))
            prices = {item.price for split in items.values() for item in split}
            assert prices <= {12.99, 3.5}, f"prices read that were not written: {sorted(prices)}"

        yield (f"read_items ({name})", (read, ("train.",)))


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
        yield ("python -m pricer (bad input, own process)", lambda args=args: _cli(args))


def _cli(args: list[str]) -> None:
    env = {**os.environ, "PRICER_OFFLINE": "1", "PRICER_DEBUG": ""}
    done = subprocess.run([sys.executable, "-m", "pricer", *args], capture_output=True, text=True, env=env,
                          timeout=300)
    return _judge(done.returncode, done.stderr, ())


def _judge(code: int, err: str, names) -> None:
    """A named refusal through the CLI: exit 2, one or two lines, no traceback, naming `names`."""
    lines = [line for line in err.splitlines() if line.strip()]
    if code != 2 or "Traceback" in err or not 1 <= len(lines) <= 2:
        raise RuntimeError(f"exit {code}, {len(lines)} lines: {err[-300:]!r}")
    missing = [n for n in names if n not in err]
    return f"vague: does not name {missing}: {err[:150]!r}" if missing else "refused"


@contextlib.contextmanager
def environment(**values):
    """Environment variables set (None: unset) for a block, restored after."""
    saved = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    try:
        yield
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def run_cli(args: list[str], module: str = "pricer.cli", **env) -> tuple[int, str, str]:
    """`python -m pricer ARGS` in this process (fast: imports once): exit code, stdout, stderr."""
    import importlib

    main = importlib.import_module(module).main
    out, err = io.StringIO(), io.StringIO()
    with environment(**{"PRICER_OFFLINE": "1", "PRICER_DEBUG": None, **env}), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        try:
            main(args)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 2
    return code, out.getvalue(), err.getvalue()


def refused(args, *names, module="pricer.cli", **env):
    """A case: the CLI refuses `args` by name (exit 2, the names in its message)."""
    def case():
        code, _, err = run_cli(args, module, **env)
        return _judge(code, err, names)
    return case


def resources(tmp: Path):
    """Output folders that are files or too long, PRICER_HOME a file, GPUs that aren't there, a bad or offline
    --push, a micro-batch that doesn't divide the batch, adapters that aren't there or are incomplete."""
    file = tmp / "a-file"
    file.write_text("mine")
    long = str(tmp / ("x" * 300))
    no_config = tmp / "adapter-without-config"
    no_config.mkdir()
    (no_config / "adapter_model.safetensors").write_bytes(b"\0" * 16)
    cut = tmp / "adapter-cut"
    cut.mkdir()
    (cut / "adapter_config.json").write_text(json.dumps({"r": 8, "base_model_name_or_path": "x"}))
    (cut / "adapter_model.safetensors").write_bytes((100).to_bytes(8, "little") + b"{")
    cases = [(["train", "--output-dir", str(file)], "--output-dir", "a-file"),
             (["data", "--out", str(file)], "--out", "a-file"),
             (["lab", "--runs-dir", str(file)], "--runs-dir", "a-file"),
             (["data", "--out", str(file / "sub")], "--out", "a-file"),
             (["train", "--output-dir", long], "--output-dir", "too long"),
             (["data", "--out", long], "--out", "too long"),
             (["train", "--gpus", "3"], "--gpus 3"),
             (["evaluate", "--gpus", "2"], "--gpus 2"),
             (["train", "--push", "bad name!!"], "--push", "bad name!!"),
             (["train", "--push", "me/repo"], "--push", "PRICER_OFFLINE"),
             (["train", "--micro-batch", "3"], "--micro-batch 3", "batch_size=8"),
             (["evaluate", "--base", "--adapter", "/no/such"], "--base", "--adapter"),
             (["evaluate", "--adapter", "/no/such"], "--adapter", "/no/such"),
             (["evaluate", "--adapter", str(no_config)], "--adapter", "adapter_config.json"),
             (["evaluate", "--adapter", str(cut)], "--adapter", "adapter_model.safetensors"),
             (["evaluate", "--revision", "main"], "--revision"),
             (["human-template", "--out", str(tmp / "h.csv"), "--size", "100000"], "--size", "test items"),
             (["human-template", "--out", str(tmp)], "--out", "folder")]
    for args, *names in cases:
        yield ("resources: python -m pricer", (refused(args, *names), ()))
    yield ("resources: PRICER_HOME", (refused(["data", "--out", str(tmp / "d")], "PRICER_HOME", "a-file",
                                              PRICER_HOME=str(file)), ()))
    yield ("resources: PRICER_HOME", (refused(["data", "--out", str(tmp / "d")], "PRICER_HOME",
                                              PRICER_HOME=str(file / "home")), ()))

    def kept():
        assert file.read_text() == "mine", "a file of the user's was changed"
    yield ("resources: the user's file kept", kept)


def not_files(tmp: Path):
    """A data file that is a folder, a symbolic-link loop or a pipe; .env files in other encodings or broken."""
    from pricer.env import load_secrets
    from pricer.files import read_jsonl
    from pricer.human import load_human_guesses

    row = json.dumps({"prompt": "What?\n\nTitle: a\n\nPrice is $", "completion": "12.00"})
    for kind in ("folder", "loop", "fifo", "unreadable"):
        folder = tmp / f"prompts-{kind}"
        folder.mkdir()
        for split in ("train", "val"):
            (folder / f"{split}.jsonl").write_text(row + "\n")
        test = folder / "test.jsonl"
        if kind == "folder":
            test.mkdir()
        elif kind == "loop":
            test.symlink_to(folder / "loop.link")
            (folder / "loop.link").symlink_to(test)
        elif kind == "fifo":
            os.mkfifo(test)
        else:
            test.write_bytes(b"\xff\xfe" + row.encode("utf-16-le"))
        yield ("not files: load_prompts", (lambda folder=folder: load_prompts(str(folder)), ("test.jsonl",)))
        yield ("not files: python -m pricer evaluate", (refused(["evaluate", "--base", "--set",
                                                                 f"prompts={folder}"], "test.jsonl"), ()))
    yield ("not files: read_jsonl", (lambda: read_jsonl(tmp), (str(tmp),)))
    yield ("not files: load_human_guesses", (lambda: load_human_guesses(tmp), (str(tmp),)))
    for name, data in (("cp1252", "HF_TOKEN=caf\xe9-token-value\n".encode("cp1252")),
                       ("utf-16", "HF_TOKEN=hf_token_value_123\n".encode("utf-16")),
                       ("quote", b'HF_TOKEN="hf_token_value_123\nOTHER=1\n'), ("folder", None)):
        path = tmp / f"env-{name}"
        if data is None:
            path.mkdir()
            path = path / ".env"
            path.mkdir()
        else:
            path.write_bytes(data)

        def read(path=path):
            import pricer.env as env

            saved, env.DOTENV = env.DOTENV, path
            env._dotenv_values.cache_clear()
            try:
                load_secrets()
            finally:
                env.DOTENV = saved
        yield ("not files: .env", (read, (str(path),)) if name != "folder" else read)


def full_and_read_only(tmp: Path):
    """A disk that fills up mid-write (a real small tmpfs where mounting is allowed, else simulated), a read-only
    folder, and torch's own words for a full disk while it saves a checkpoint."""
    import pathlib

    from pricer import train

    def raising(number, write):
        def fail(self, *args, **kwargs):
            if "sweep-out" not in str(self):
                return write(self, *args, **kwargs)  # PRICER_HOME and the rest: as they are
            raise OSError(number, os.strerror(number), str(self))
        return fail

    for number, words in ((errno.ENOSPC, "disk is full"), (errno.EROFS, "read-only"), (errno.EACCES, "permission"),
                          (errno.EDQUOT, "quota")):
        def case(number=number, words=words):
            saved = pathlib.Path.write_bytes, pathlib.Path.write_text
            pathlib.Path.write_bytes, pathlib.Path.write_text = (raising(number, w) for w in saved)
            try:
                return refused(["data", "--out", str(tmp / f"sweep-out-{number}")], "--out", "sweep-out", words)()
            finally:
                pathlib.Path.write_bytes, pathlib.Path.write_text = saved
        yield ("full and read-only disks: simulated", case)

    def torch_disk_full():
        saved = train.train

        def full(*args, **kwargs):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 8613376 vs 8613264")
        train.train = full
        try:
            return refused(["train", "--output-dir", str(tmp / "outputs")], "disk is full")()
        finally:
            train.train = saved
    yield ("full and read-only disks: torch checkpoint save", torch_disk_full)
    if shutil.which("unshare") and _can_mount():
        for options, words in (("size=64k", "disk is full"), ("ro,size=64k", "read-only")):
            script = (f"mount -t tmpfs -o {options} tmpfs {tmp / 'mnt'} && exec {sys.executable} -m pricer data "
                      f"--out {tmp / 'mnt' / 'catalog'}")

            def mounted(script=script, words=words):
                (tmp / "mnt").mkdir(exist_ok=True)
                done = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True,
                                      env={**os.environ, "PRICER_OFFLINE": "1"}, timeout=300)
                return _judge(done.returncode, done.stderr, ["--out" if "ro" in words else "catalog", words])
            yield ("full and read-only disks: a real tmpfs", mounted)


def _can_mount() -> bool:
    try:
        return subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def destructive_flags(tmp: Path):
    """The rehearsal's folders: overlapping, holding the user's files, or a bad preset: refused, nothing deleted."""
    drive = tmp / "drive"
    checkpoint = drive / "pricer-lab" / "outputs" / "checkpoint-2" / "adapter_model.safetensors"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_text("weights")
    mine = tmp / "my-runtimes"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    cases = [(["--drive", str(drive), "--runtimes", str(drive)], "overlap"),
             (["--drive", str(drive), "--runtimes", str(drive / "rt")], "overlap"),
             (["--drive", str(mine / "d"), "--runtimes", str(mine)], "overlap"),
             (["--drive", str(tmp / "d2"), "--runtimes", str(mine)], "did not make"),
             (["--preset", "huge", "--drive", str(tmp / "d3"), "--runtimes", str(mine)], "huge")]
    for args, *names in cases:
        yield ("destructive flags: python -m pricer.rehearsal",
               (refused(args, *names, module="pricer.rehearsal"), ()))

    def kept():
        assert checkpoint.read_text() == "weights" and (mine / "notes.txt").read_text() == "mine", "data lost"
    yield ("destructive flags: the user's files kept", kept)


KEY = "sk-proj-" + "Q7wErT9yUi2oPa5sDf" * 4


class Echo(BaseHTTPRequestHandler):
    """An API that echoes the credential it was sent, in the form given by the path, in its body and headers."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        key = self.headers.get("Authorization", "").removeprefix("Bearer ")
        form = ECHOES[self.path.strip("/").split("/")[0]](key)
        status = int(self.path.strip("/").split("/")[1])
        body = json.dumps({"error": {"type": "invalid_request_error", "message": f"Incorrect API key: {form}",
                                     "param": form}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Echo", form[:200].encode("ascii", "replace").decode())
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ECHOES = {"tail": lambda k: k[5:], "head": lambda k: k[:-7], "middle": lambda k: k[9:25],
          "base64": lambda k: base64.b64encode(k.encode()).decode(),
          "basic": lambda k: base64.b64encode(f"user:{k}".encode()).decode(),
          "basic-urlsafe": lambda k: base64.urlsafe_b64encode(f"api:{k}".encode()).decode(),
          "upper": lambda k: k.upper(), "spaced": lambda k: " ".join(k), "hex": lambda k: k.encode().hex(),
          "json": lambda k: json.dumps({"k": k}).replace("/", "\\/"), "lower": lambda k: k.lower()}


def leaked(text: str, key: str = KEY) -> str | None:
    """Which form of the key is in the text, if any (a piece of 8+ characters of it, in any of the echoed forms)."""
    squeezed = "".join(text.split()).lower()
    for name, form in ECHOES.items():
        coded = "".join(form(key).split()).lower()
        pieces = [coded[i:i + 12] for i in range(0, len(coded) - 12, 3)]
        if name.startswith("basic") or name == "base64":
            pieces = pieces[2:-2]  # the ends of a base64 text mix in the bytes around the key
        if any(p in squeezed for p in pieces):
            return name
    return None


def secrets(tmp: Path):
    """A secret in every form output can hold it: redacted in each; an API echoing the key in any encoding;
    a setting holding the key under PRICER_DEBUG=1; a bug's saved traceback; files pricer writes."""
    from urllib.parse import quote

    from pricer.env import redact
    from pricer.files import write_json
    from pricer.frontier import FrontierPredictor

    os.environ["OPENAI_API_KEY"] = KEY
    texts = {"verbatim": KEY, "repr with newline": repr(KEY + "\n"), "json": json.dumps({"k": KEY}),
             "url": quote(KEY, safe=""), "cut at 80 in an error": f"{RuntimeError('Bearer ' + KEY)!r:.80}",
             "ansi coloured": f"\x1b[31m{KEY[:20]}\x1b[0m{KEY[20:]}", **{k: f(KEY) for k, f in ECHOES.items()}}
    for name, text in texts.items():
        def check(text=text):
            form = leaked(redact(f"error: {text} (end)"))
            assert form is None, f"the key, {form}, in {redact(text)!r:.100}"
        yield (f"secrets: redact ({name})", check)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for form in ECHOES:
        for status in (400, 401, 500):
            def ask(form=form, status=status):
                predictor = FrontierPredictor("gpt-x", f"http://127.0.0.1:{server.server_port}/{form}/{status}",
                                              "OPENAI_API_KEY")
                import pricer.frontier as frontier

                retries, frontier.RETRIES = frontier.RETRIES, 0
                try:
                    predictor({"prompt": "Title: a\n", "completion": "1.00"})
                except PricerError as e:
                    assert str(status) in str(e) and leaked(str(e)) is None, f"leaked: {e}"
                    return
                finally:
                    frontier.RETRIES = retries
                raise AssertionError("an API error was not raised")
            yield ("secrets: an API echoing the key", ask)

    def debug_setting():
        code, out, err = run_cli(["train", "--set", f"prompts=./{KEY}"], PRICER_DEBUG="1")
        assert code == 2 and leaked(out + err) is None and "<OPENAI_API_KEY>" in err, (code, err[-300:])
    yield ("secrets: PRICER_DEBUG=1 and a setting holding the key", debug_setting)

    def bug_traceback():
        from pricer.edge import report

        try:
            raise KeyError(f"user:{KEY}".encode().hex())
        except KeyError as e:
            shown = io.StringIO()
            assert report(e, debug=True, out=shown) == 1
        saved = shown.getvalue().split("saved in ")[1].split(". Please")[0]
        assert leaked(shown.getvalue()) is None and leaked(Path(saved).read_text()) is None
        Path(saved).unlink()
    yield ("secrets: a bug's traceback, shown and saved", bug_traceback)

    def saved_json():
        path = write_json(tmp / "lab.json", {"settings": {"prompts": base64.b64encode(f"u:{KEY}".encode()).decode()}})
        assert leaked(path.read_text()) is None
    yield ("secrets: a JSON file pricer writes", saved_json)


def records(tmp: Path):
    """Run records of the wrong shape and a finished run whose adapter is incomplete: passed over by name."""
    from pricer import runs
    from pricer.config import get_preset

    out = tmp / "shapes"
    shapes = [{"identity": {}}, {"identity": {"preset": {}}}, {"identity": {"preset": {"name": "tiny"}}},
              {"identity": {"preset": {"name": "tiny", "base_model": "embedded"}, "data": 3}},
              {"identity": {"preset": {"name": "tiny", "base_model": "embedded"}, "data": "ab"}, "status": "done"},
              {"identity": {"preset": {"name": "tiny", "base_model": "embedded"}, "data": "ab"}, "losses": "low"}]
    for i, record in enumerate(shapes):
        folder = out / f"tiny-2026-01-0{i + 1}_00.00.00"
        folder.mkdir(parents=True)
        (folder / runs.RUN_FILE).write_text(json.dumps({**record, "status": record.get("status", "finished")}))
        yield ("records: runs.read_record (wrong shape)", lambda folder=folder: _check_none(runs.read_record(folder)))
    for i, missing in enumerate(("adapter_config.json", "adapter_model.safetensors")):
        folder = out / f"tiny-2026-02-0{i + 1}_00.00.00"
        folder.mkdir(parents=True)
        ident = {"preset": {"name": "tiny", "base_model": "embedded"}, "max_steps": None, "data": "ab"}
        (folder / runs.RUN_FILE).write_text(json.dumps({"identity": ident, "status": "finished"}))
        if missing != "adapter_config.json":
            (folder / "adapter_config.json").write_text(json.dumps({"r": 8}))

    def none_finished():
        assert runs.latest_adapter(out, "tiny") is None, "a run without a loadable adapter was chosen"
    yield ("records: latest_adapter", none_finished)
    yield ("records: python -m pricer evaluate", (refused(["evaluate", "--output-dir", str(out)], "no finished"), ()))

    def same_settings_resume():
        from pricer.lab import _run_dir

        runs_dir = tmp / "labs-resume"
        settings = json.loads(json.dumps({"target_modules": get_preset("tiny", target_modules=("q_proj",
                                                                                                "v_proj")).target_modules}))
        first = _run_dir(runs_dir, "tiny", settings, fresh=False)
        assert _run_dir(runs_dir, "tiny", settings, fresh=False) == first, "a rerun started a new folder"
    yield ("records: lab --set target_modules resumes", same_settings_resume)


def finite_settings():
    """Infinite, NaN and overflowing numbers, and settings that bound each other: refused by name."""
    from pricer.config import get_preset, parse_settings

    for pair in ("weight_decay=inf", "lora_alpha=1e400", "epochs=nan", "learning_rate=-inf", "max_grad_norm=inf",
                 "lora_dropout=nan", "warmup_fraction=nan", "batch_size=100000000", "weight_decay=5"):
        yield ("settings: finite and related", (lambda pair=pair: get_preset("tiny", **parse_settings([pair])),
                                                (pair.partition("=")[0],)))
    yield ("settings: finite and related", (lambda: get_preset("tiny", lora_alpha=float("inf")), ("lora_alpha",)))
    yield ("settings: python -m pricer train", (refused(["train", "--set", "batch_size=100000000"], "batch_size"),
                                                ()))


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


CLASSES = {"Item.from_row": "rows", "check_prompt_row": "rows", "Tester": "model outputs", "Result.load": "files",
           "load_human_guesses": "files", "load_prompts": "files", "read_items": "files", "settings": "settings",
           "sources": "names", "runs.": "damaged files", "lab record": "damaged files",
           "lab settings": "damaged files",
           "python -m pricer (bad": "command line", "a second process": "locks", "resources": "resources",
           "not files": "files that are not files", "full and read-only": "full and read-only disks",
           "destructive": "destructive flags", "secrets": "secrets", "records": "records of the wrong shape"}


def class_of(api: str) -> str:
    """The class a case's API belongs to (its table row in the results)."""
    return next((c for prefix, c in sorted(CLASSES.items(), key=lambda kv: -len(kv[0])) if api.startswith(prefix)),
                "other")


def sweep() -> tuple[int, dict, list, dict]:
    """(number of cases, outcome counts per API, crash and vague descriptions, outcome counts per class)."""
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp, environment(OPENAI_API_KEY=None, PRICER_OFFLINE=None):
        tmp = Path(tmp)
        (tmp / "work").mkdir()
        cases = [*item_rows(rng), *prompt_rows(rng), *model_outputs(tmp / "results"), *files(tmp), *settings(),
                 *finite_settings(), *names(tmp), *damaged_files(tmp), *command_line(tmp), *secrets(tmp),
                 *locks(tmp), *resources(tmp / "work"), *not_files(tmp), *full_and_read_only(tmp),
                 *destructive_flags(tmp), *records(tmp)]
        table = Counter()
        problems = []
        cwd = os.getcwd()
        os.chdir(tmp / "work")  # the CLI writes ./results and the like here, not in the repository
        try:
            for api, case in cases:
                result = outcome(case)
                kind = result.split(":")[0]
                table[(api, kind)] += 1
                if kind in ("crash", "vague"):
                    problems.append(f"{api}: {result}")
        finally:
            os.chdir(cwd)
    apis = sorted({api for api, _ in table})
    rows = {api: {k: table[(api, k)] for k in OUTCOMES} for api in apis}
    by_class = {}
    for api, counts in rows.items():
        row = by_class.setdefault(class_of(api), Counter())
        row.update(counts)
    return len(cases), rows, problems, {c: {k: row[k] for k in OUTCOMES} for c, row in sorted(by_class.items())}


def main() -> None:
    from versions import cpu_name, versions

    start = time.perf_counter()
    n, rows, problems, by_class = sweep()
    totals = {k: sum(r[k] for r in rows.values()) for k in OUTCOMES}
    print(f"{'class':<30}{'handled':>9}{'refused':>9}{'vague':>7}{'crash':>7}")
    for name, r in by_class.items():
        print(f"{name:<30}{r['handled']:>9}{r['refused']:>9}{r['vague']:>7}{r['crash']:>7}")
    print(f"{'total (' + str(n) + ' cases)':<30}{totals['handled']:>9}{totals['refused']:>9}"
          f"{totals['vague']:>7}{totals['crash']:>7}")
    for line in problems[:30]:
        print("  ", line)
    out = Path(__file__).parent / "results" / "bad_input_sweep.json"
    out.write_text(json.dumps({"machine": cpu_name(), "versions": versions(), "date": time.strftime("%Y-%m-%d"),
                               "seconds": round(time.perf_counter() - start), "cases": n, "totals": totals,
                               "by_class": by_class, "by_api": rows, "problems": problems}, indent=1) + "\n")
    sys.exit(1 if problems else 0)  # crashes and vague errors alike


if __name__ == "__main__":
    main()
