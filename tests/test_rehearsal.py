"""The lab as Colab runs it: each notebook in its own runtime, state on "Drive", a disconnect mid-training."""

import json

import pytest

from pricer.lab import NOTEBOOKS


@pytest.mark.lab
def test_each_notebook_runs_in_a_fresh_runtime_and_training_survives_a_disconnect(tmp_path, monkeypatch):
    from pricer.rehearsal import rehearse
    from pricer.runs import RUN_FILE

    fake = "hf_FAKEcolabSecret1234567890abcd"
    monkeypatch.setenv("PRICER_OFFLINE", "1")
    drive = tmp_path / "drive"
    order = NOTEBOOKS[:4] + NOTEBOOKS[3:]  # notebook 4 killed after its first checkpoint, then run again
    # The runtime semantics, not the score (the lab test has that): a short run keeps CI's minutes for both.
    small = {"train_rows": 160, "save_steps": 8, "val_rows": 8, "eval_size": 40}
    report = rehearse("tiny", drive, tmp_path / "runtimes", settings=small, secrets={"HF_TOKEN": fake},
                      kill_after_checkpoint=True, notebooks=order)
    assert set(report["notebooks"]) == set(NOTEBOOKS)
    for name, figures in report["notebooks"].items():
        assert figures["error_cells"] == 0 and figures["failed"] is None, (name, figures)
    lab = drive / "pricer-lab"
    [run] = [p.parent for p in (lab / "outputs").glob(f"*/{RUN_FILE}")]  # the rerun resumed the same run
    record = json.loads((run / RUN_FILE).read_text())
    assert record["status"] == "finished"
    assert report["resumed_from_step"] >= report["killed_at_step"] > 0
    lab2 = (lab / "data" / "prompts" / "test.jsonl").read_text().splitlines()
    results = [json.loads(p.read_text()) for p in (lab / "results").glob("*.json")]
    assert any(str(run) in r["meta"].get("model", "") for r in results)  # lab 5 scored lab 4's adapter
    assert all(r["meta"].get("data") == str(lab / "data" / "prompts") for r in results if "data" in r["meta"])
    assert len(lab2) > 0
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix in (".ipynb", ".html", ".json", ".jsonl", ".txt", ".md"):
            assert fake not in path.read_text(errors="ignore"), path
    runtimes = [p for p in (tmp_path / "runtimes").iterdir() if not p.name.startswith(".")]  # .<name>-ipython: profiles
    assert len(runtimes) == len(NOTEBOOKS) + 1  # a fresh folder each, notebook 4 twice (killed, then resumed)
    executed = sorted(p.stem for p in (tmp_path / "runtimes").glob("*/*.ipynb"))
    assert executed == sorted(NOTEBOOKS)  # the killed runtime saved nothing; its rerun did
