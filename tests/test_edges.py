"""Failures at the edges, through the CLI: every resource checked before work, every error one named line
(exit 2) or a bug report (exit 1) with the traceback saved, nothing of the user's deleted, no secret shown."""

import base64
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pricer import cli, rehearsal
from pricer.errors import PricerError, SavedBug

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-proj-" + "Vb8nM3kL0jH6gF2dS4aQ" * 4


def run(capsys, args, module=cli, **env) -> tuple[int, str]:
    """The command in this process (imports once: fast); exit code and stderr."""
    os.environ.update({k: v for k, v in env.items() if v is not None})
    try:
        module.main(args)
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def named(code: int, err: str, *words) -> None:
    """A named refusal: exit 2, one or two lines, no traceback, the words in it."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in err and 1 <= len(lines) <= 2, (code, err)
    assert all(w in err for w in words), err


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("PRICER_OFFLINE", "1")
    monkeypatch.delenv("PRICER_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)  # ./results and the like land here


def shell(command: str, **env) -> subprocess.CompletedProcess:
    """A command in a shell of its own (a mount namespace, a patched interpreter), pricer importable from here."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PRICER_OFFLINE": "1", **env}
    return subprocess.run(command, shell=True, capture_output=True, text=True, env=env, timeout=300)


def can_mount() -> bool:
    return bool(shutil.which("unshare")) and shell("unshare -rm sh -c 'mount -t tmpfs tmpfs /mnt'").returncode == 0


# -- resources, checked before any work -------------------------------------------------------------------------

@pytest.mark.parametrize("args, words", [
    (["train", "--output-dir", "{file}"], ["--output-dir", "is a file"]),
    (["data", "--out", "{file}/sub"], ["--out", "is a file"]),
    (["lab", "--runs-dir", "{file}"], ["--runs-dir", "is a file"]),
    (["train", "--output-dir", "{long}"], ["--output-dir", "too long"]),
    (["train", "--gpus", "3"], ["--gpus 3", "GPU(s)"]),
    (["train", "--push", "bad name!!"], ["--push", "not a valid Hub repo name"]),
    (["train", "--push", "me/pricer-lite"], ["--push", "PRICER_OFFLINE=1"]),
    (["train", "--micro-batch", "3"], ["--micro-batch 3", "batch_size=8", "1, 2, 4, 8"]),
    (["train", "--set", "weight_decay=inf"], ["weight_decay", "finite"]),
    (["train", "--set", "lora_alpha=1e400"], ["lora_alpha", "finite"]),
    (["train", "--set", "batch_size=100000000"], ["batch_size=100000000", "train_rows=480"]),
    (["evaluate", "--base", "--adapter", "/no/such"], ["--base", "--adapter /no/such"]),
    (["evaluate", "--adapter", "/no/such"], ["--adapter /no/such", "no such folder"]),
    (["evaluate", "--adapter", "{tmp}"], ["adapter_config.json", "holds no adapter"]),
    (["human-template", "--out", "h.csv", "--size", "100000"], ["--size 100,000", "400 test items"]),
    (["human-template", "--out", "{tmp}"], ["--out", "is a folder"]),
])
def test_what_a_command_needs_is_refused_by_name_before_any_work(capsys, tmp_path, args, words):
    file = tmp_path / "a-file"
    file.write_text("mine")
    values = {"file": str(file), "tmp": str(tmp_path), "long": str(tmp_path / ("x" * 300))}
    code, err = run(capsys, [a.format(**values) for a in args])
    named(code, err, *words)
    assert file.read_text() == "mine"


def test_a_pricer_home_that_is_a_file_is_named(capsys, tmp_path, monkeypatch):
    (tmp_path / "home").write_text("")
    monkeypatch.setenv("PRICER_HOME", str(tmp_path / "home"))
    named(*run(capsys, ["data", "--out", str(tmp_path / "d")]), "PRICER_HOME", "is a file")


def test_debug_is_taken_after_any_command_and_its_traceback_is_redacted(capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    code, err = run(capsys, ["train", "--set", f"prompts=./{KEY}", "--debug"])
    assert code == 2 and "Traceback" in err and "SettingError" in err and "<OPENAI_API_KEY>" in err
    assert KEY[10:30] not in err


# -- full and read-only disks ------------------------------------------------------------------------------------

@pytest.mark.skipif(not can_mount(), reason="mounting a tmpfs (unshare -rm) is not allowed here")
@pytest.mark.parametrize("options, words", [("size=64k", ["catalog", "disk is full"]),
                                            ("ro,size=64k", ["--out", "read-only"])])
def test_a_real_full_or_read_only_disk_is_named(tmp_path, options, words):
    (tmp_path / "mnt").mkdir()
    done = shell(f"unshare -rm sh -c 'mount -t tmpfs -o {options} tmpfs {tmp_path}/mnt && exec {sys.executable} "
                 f"-m pricer data --out {tmp_path}/mnt/catalog'")
    named(done.returncode, done.stderr, *words)


@pytest.mark.skipif(not can_mount(), reason="mounting a tmpfs (unshare -rm) is not allowed here")
def test_torchs_own_error_on_a_full_disk_says_disk_full(tmp_path):
    """A real torch.save onto a full tmpfs: its 'inline_container.cc ... unexpected pos' becomes 'disk is full'."""
    (tmp_path / "mnt").mkdir()
    code = ("import torch, pricer.cli as c, pricer.checks as checks, pricer.train as t\n"
            "def train(*a, **k): torch.save({'w': torch.zeros(200000)}, a[1] + '/checkpoint.pt')\n"
            "t.train = train\nchecks.rows_and_room = lambda *a: None  # room is checked up front: fill it later\n"
            f"c.main(['train', '--output-dir', '{tmp_path}/mnt'])")
    (tmp_path / "save.py").write_text(code)
    done = shell(f"unshare -rm sh -c 'mount -t tmpfs -o size=256k tmpfs {tmp_path}/mnt && exec {sys.executable} "
                 f"{tmp_path}/save.py'")
    named(done.returncode, done.stderr, "unexpected pos", "disk is full", "resumes")


@pytest.mark.parametrize("number, words", [(errno.ENOSPC, ["disk is full", "free there"]),
                                           (errno.EROFS, ["read-only file system"]),
                                           (errno.ENAMETOOLONG, ["too long"])])
def test_os_errors_met_mid_write_are_named_in_a_process_of_their_own(tmp_path, number, words):
    """Always runs (no mount needed): every write raises the OS error, as a full or read-only disk does."""
    code = ("import errno, os, pathlib\n"
            "write_text, write_bytes = pathlib.Path.write_text, pathlib.Path.write_bytes\n"
            f"def fail(self, *a, **k): raise OSError({number}, os.strerror({number}), str(self))\n"
            "pathlib.Path.write_text = lambda s, *a, **k: (fail if 'out' in s.parts else write_text)(s, *a, **k)\n"
            "pathlib.Path.write_bytes = lambda s, *a, **k: (fail if 'out' in s.parts else write_bytes)(s, *a, **k)\n"
            f"from pricer.cli import main; main(['data', '--out', '{tmp_path}/out'])")
    done = shell(f"{sys.executable} -c \"{code}\"")
    named(done.returncode, done.stderr, "--out", str(tmp_path / "out"), *words)


def test_a_run_needing_more_disk_than_is_free_is_refused_before_training(capsys, tmp_path, monkeypatch):
    import shutil as shutil_module

    usage = shutil_module.disk_usage(tmp_path)
    monkeypatch.setattr(shutil_module, "disk_usage", lambda p: usage._replace(free=10_000_000))
    named(*run(capsys, ["train", "--output-dir", str(tmp_path / "out")]), "--output-dir", "10.0 MB free",
          "needs about")


# -- files that are not files, and .env files ---------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["folder", "loop"])
def test_a_data_file_that_is_not_a_file_is_named(capsys, tmp_path, kind):
    row = json.dumps({"prompt": "What?\n\nTitle: a\n\nPrice is $", "completion": "12.00"})
    for split in ("train", "val"):
        (tmp_path / f"{split}.jsonl").write_text(row + "\n")
    test = tmp_path / "test.jsonl"
    if kind == "folder":
        test.mkdir()
    else:
        test.symlink_to(tmp_path / "other")
        (tmp_path / "other").symlink_to(test)
    named(*run(capsys, ["evaluate", "--base", "--set", f"prompts={tmp_path}"]), "test.jsonl",
          "a folder" if kind == "folder" else "loop")


@pytest.mark.parametrize("data, words", [
    ("HF_TOKEN=caf\u00e9-0123456789\n".encode("cp1252"), ["not UTF-8"]),
    ("HF_TOKEN=hf_0123456789abcdef\n".encode("utf-16"), ["UTF-16"]),
    (b'HF_TOKEN="hf_0123456789abcdef\nOTHER=1\n', ["line 1", "unterminated quote"]),
])
def test_a_dotenv_that_cant_be_read_is_named_with_the_fix(tmp_path, data, words):
    (tmp_path / ".env").write_bytes(data)  # found from the working folder, where the user runs pricer
    done = subprocess.run([sys.executable, "-m", "pricer", "data", "--out", "x"], cwd=tmp_path, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    named(done.returncode, done.stderr, str(tmp_path / ".env"), "save it as UTF-8" if "quote" not in words[-1]
          else "NAME=value", *words)


# -- records of the wrong shape ----------------------------------------------------------------------------------

def test_runs_whose_record_or_adapter_is_wrong_are_passed_over_by_name(capsys, tmp_path):
    from pricer.runs import RUN_FILE, latest_adapter

    ident = {"preset": {"name": "tiny", "base_model": "embedded"}, "max_steps": None, "data": "ab"}
    for name, record in (("01", {"identity": {}}), ("02", {"identity": ident, "status": "finished"})):
        folder = tmp_path / "outputs" / f"tiny-2026-01-{name}_00.00.00"
        folder.mkdir(parents=True)
        (folder / RUN_FILE).write_text(json.dumps(record))
    (folder / "adapter_model.safetensors").write_bytes(b"\0" * 64)  # no adapter_config.json: peft can't load it
    assert latest_adapter(tmp_path / "outputs", "tiny") is None
    code, err = run(capsys, ["evaluate", "--output-dir", str(tmp_path / "outputs")])
    named(code, err, "no finished tiny full run")


# -- bugs, and the lab runner's notebooks --------------------------------------------------------------------------

def test_anything_else_is_called_a_bug_with_its_traceback_saved_redacted(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("PRICER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OPENAI_API_KEY", KEY)

    from pricer import sources

    def broken(*args, **kwargs):
        raise KeyError(base64.b64encode(f"user:{KEY}".encode()).decode())
    monkeypatch.setattr(sources, "write_catalog", broken)
    code, err = run(capsys, ["data", "--out", "x"])
    assert code == 1 and "bug" in err and "KeyError" in err and "Traceback" not in err
    saved = Path(err.split("saved in ")[1].split(". Please")[0])
    assert saved.parent == tmp_path / "home" / "errors" and "Traceback" in saved.read_text()
    assert base64.b64encode(f"user:{KEY}".encode()).decode()[8:40] not in err + saved.read_text()


def test_a_notebooks_failure_is_the_users_message_or_a_bug_naming_the_saved_notebook(tmp_path):
    from nbclient.exceptions import CellExecutionError

    from pricer.lab import notebook_failure

    saved = tmp_path / "4_qlora_training.ipynb"
    theirs = notebook_failure("4_qlora_training", saved, CellExecutionError("tb", "SettingError", "lora_r=0: no"))
    assert isinstance(theirs, PricerError) and "lora_r=0" in str(theirs) and str(saved) in str(theirs)
    full = CellExecutionError("tb", "OSError", "[Errno 28] No space left on device: '/content/drive/x'")
    assert "disk is full" in str(notebook_failure("4_qlora_training", saved, full))
    ours = notebook_failure("4_qlora_training", saved, CellExecutionError("tb", "KeyError", "'losses'"))
    assert isinstance(ours, SavedBug) and ours.saved == saved


def test_a_lab_naming_the_hub_offline_is_refused_before_any_kernel(capsys, monkeypatch, tmp_path):
    from pricer import sources

    monkeypatch.delenv("PRICER_OFFLINE")
    monkeypatch.setattr(sources, "hub_reachable", lambda: False)
    named(*run(capsys, ["lab", "--preset", "lite", "--runs-dir", str(tmp_path / "runs")]), "meta-llama/Llama-3.2-3B",
          "PRICER_OFFLINE=1")
    assert not list((tmp_path / "runs").glob("*/*.ipynb"))


def test_a_lab_rerun_with_list_settings_resumes_its_folder(tmp_path):
    from pricer.lab import _run_dir

    settings = json.loads(json.dumps({"target_modules": ("q_proj", "v_proj")}))
    first = _run_dir(tmp_path, "tiny", settings, fresh=False)
    assert _run_dir(tmp_path, "tiny", settings, fresh=False) == first


# -- destructive flags -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, words", [
    (["--drive", "{drive}", "--runtimes", "{drive}"], ["overlap"]),
    (["--drive", "{drive}", "--runtimes", "{drive}/runtimes"], ["overlap"]),
    (["--drive", "{tmp}/d", "--runtimes", "{mine}"], ["did not make", "nothing of yours is deleted"]),
    (["--preset", "huge", "--drive", "{tmp}/d", "--runtimes", "{mine}"], ["huge"]),
])
def test_a_rehearsal_deletes_nothing_it_did_not_make(capsys, tmp_path, args, words):
    drive, mine = tmp_path / "drive", tmp_path / "mine"
    checkpoint = drive / "pricer-lab" / "outputs" / "tiny-1" / "checkpoint-2" / "adapter_model.safetensors"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_text("weights")
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    values = {"drive": str(drive), "mine": str(mine), "tmp": str(tmp_path)}
    named(*run(capsys, [a.format(**values) for a in args], module=rehearsal), *words)
    assert checkpoint.read_text() == "weights" and (mine / "notes.txt").read_text() == "mine"


def test_a_rehearsal_clears_only_the_runtimes_it_made_and_fails_loudly(tmp_path):
    runtimes = tmp_path / "runtimes"
    rehearsal.prepare_folders(tmp_path / "drive", runtimes)
    made = rehearsal._new_runtime(runtimes, "1_quantization_tour")
    made.mkdir()
    (runtimes / "yours.txt").write_text("kept")
    rehearsal.prepare_folders(tmp_path / "drive", runtimes)
    assert not made.exists() and (runtimes / "yours.txt").read_text() == "kept"
    report = {"notebooks": {"1_quantization_tour": {"failed": None, "error_cells": 2}}}
    assert rehearsal.failures(report) == ["1_quantization_tour: 2 error cell(s)"]
    assert "did not say it resumed" in rehearsal.failures({"notebooks": {}}, kill=True)[0]


def test_a_notebooks_setup_names_a_lab_folder_it_cant_use(tmp_path):
    from pricer.session import start

    (tmp_path / "lab").write_text("")
    with pytest.raises(PricerError, match=r"LAB_DIR .*lab is a file, not a folder") as info:
        start(notebook=1, lab_dir=tmp_path / "lab", quiet=False)
    assert info.value.__cause__ is None and info.value.__context__ is None  # no chain of library tracebacks
