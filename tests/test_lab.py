"""The notebooks and the main job: stored clean, resumable, and (marked `lab`) executed end to end."""

import json
from pathlib import Path

import nbformat
import pytest

from pricer import lab
from test_notebooks import contradictions, load, output_problems  # executed-notebook checks (test_notebooks.py)

NOTEBOOKS = sorted(lab.NOTEBOOK_DIR.glob("*.ipynb"))


def test_every_notebook_is_stored_without_outputs_and_has_one_parameters_cell():
    assert [n.stem for n in NOTEBOOKS] == list(lab.NOTEBOOKS)
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), path.name
        tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1 and "PRESET = " in tagged[0].source, path.name
        assert sum(c.cell_type == "markdown" for c in nb.cells) >= len(code), path.name  # they teach


def test_injected_parameters_follow_the_parameters_cell():
    nb = nbformat.read(NOTEBOOKS[0], as_version=4)
    lab.inject(nb, {"PRESET": "lite", "OUTPUT_DIR": "/x"})
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    assert nb.cells[index + 1].source.splitlines()[1:] == ["PRESET = 'lite'", "OUTPUT_DIR = '/x'"]


def test_a_notebook_runs_in_its_target_folder_with_parameters_and_a_secret_redacted(tmp_path, monkeypatch):
    """A real kernel, started from another folder than the one the notebook runs in (as `pricer lab` does)."""
    fake = "hf_FAKEkernelSecret1234567890ab"
    monkeypatch.setenv("HF_TOKEN", fake)
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "source.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("PRESET = None", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import os\nprint(os.getcwd(), PRESET, os.environ['HF_TOKEN'])")]), source)
    target = tmp_path / "run" / "executed.ipynb"
    target.parent.mkdir()
    lab.execute(source, target, {"PRESET": "tiny"})
    [output] = nbformat.read(target, as_version=4).cells[-1].outputs
    assert output.text.split()[:2] == [str(target.parent), "tiny"] and fake not in target.read_text()


def test_an_interrupted_lab_resumes_with_the_unfinished_notebooks(tmp_path, monkeypatch):
    calls = []

    def execute(source, target, params, timeout, env=None):
        calls.append(source.stem)
        if len(calls) == 3:
            raise KeyboardInterrupt  # Colab disconnect during notebook 3
        target.write_text("{}")

    monkeypatch.setattr(lab, "execute", execute)
    monkeypatch.setattr("pricer.report.write_report", lambda run_dir: Path(run_dir) / "report.html")
    with pytest.raises(KeyboardInterrupt):
        lab.run_lab("tiny", tmp_path)
    first = list(tmp_path.iterdir())
    assert len(first) == 1 and json.loads((first[0] / lab.STATE).read_text())["done"].keys() == set(calls[:2])
    run_dir = lab.run_lab("tiny", tmp_path)
    assert run_dir == first[0] and calls == list(lab.NOTEBOOKS[:3]) + list(lab.NOTEBOOKS[2:])
    assert lab.run_lab("tiny", tmp_path) != run_dir  # a finished run is not redone: a new one starts


def test_what_the_notebooks_write_lands_in_the_run_folder_the_report_reads(tmp_path, monkeypatch):
    """As the README runs it: a relative runs folder, each kernel working inside its run folder."""
    def execute(source, target, params, timeout, env=None):
        results = target.parent / params["LAB_DIR"] / "results"  # the kernel's working directory is target.parent
        results.mkdir(exist_ok=True)
        (results / f"{source.stem}.json").write_text("{}")
        target.write_text("{}")

    read = []
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(lab, "execute", execute)
    monkeypatch.setattr("pricer.report.write_report", lambda run_dir: read.append(sorted(
        p.stem for p in (Path(run_dir) / "results").glob("*.json"))))
    lab.run_lab("tiny", "runs")
    assert read == [list(lab.NOTEBOOKS)]


@pytest.mark.lab
def test_the_whole_lab_runs_offline_and_reports_every_result(tmp_path, monkeypatch):
    """The README's first command (a relative runs folder), with a fake token that must never leak."""
    fake = "hf_FAKEtoken1234567890abcdef"
    monkeypatch.setenv("HF_TOKEN", fake)
    monkeypatch.setenv("PRICER_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    run_dir = lab.run_lab("tiny", "runs")
    report = (run_dir / "report.html").read_text()
    names = {json.loads(p.read_text())["name"] for p in (run_dir / "results").glob("*.json")}
    expected = {"Constant Mean", "Ridge Bow", "Deep Neural Network", "Base model", "Fine-tuned greedy",
                "Fine-tuned expected price"}
    assert expected <= names and all(name in report for name in names)
    per_item = {r["name"]: r["errors"] for r in map(json.loads, map(Path.read_text, (run_dir / "results").glob("*.json")))}
    size = len(per_item["Constant Mean"])
    error = {name: sum(e[:size]) / size for name, e in per_item.items()}  # on the same items
    assert error["Fine-tuned expected price"] < 0.95 * error["Constant Mean"]  # training helped
    assert error["Fine-tuned expected price"] < 0.9 * error["Base model"]
    problems = {path.name: output_problems(load(path)) for path in sorted(run_dir.glob("*.ipynb"))}
    assert len(problems) == len(lab.NOTEBOOKS) and not any(problems.values()), problems  # read cleanly once executed
    said = {path.name: contradictions(load(path)) for path in sorted(run_dir.glob("*.ipynb"))}
    assert not any(said.values()), said  # their words match their numbers
    sizes = {path.name: path.stat().st_size for path in run_dir.glob("*.ipynb")}
    assert max(sizes.values()) < 1.5e6, sizes  # no plotly.js inside: charts are JSON + a static SVG
    for path in run_dir.rglob("*"):
        if path.is_file() and path.suffix in (".ipynb", ".html", ".json", ".jsonl", ".txt", ".md"):
            assert fake not in path.read_text(errors="ignore"), path
