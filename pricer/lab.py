"""The main job: execute the five lab notebooks in order and write a report.

    python -m pricer lab                 # tiny preset, embedded model + catalog, ~15 min on 2 cores
    python -m pricer lab --preset lite   # the course's sizes (a GPU and a Hub token)

Executed copies go to runs/<timestamp>/, with report.html beside them. Each notebook's
parameters cell is followed by an injected cell of overrides (as papermill does), so the
notebooks stay runnable by hand. Interrupted, a rerun continues the unfinished run: finished
notebooks are skipped, training resumes from its last checkpoint and evaluations from their
per-item caches.
"""

import json
import time
from datetime import datetime
from pathlib import Path

NOTEBOOKS = (
    "1_quantization_tour",
    "2_data_prep",
    "3_baselines_and_base_model",
    "4_qlora_training",
    "5_finetuned_eval",
)
NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
STATE = "lab.json"  # the run's progress: which notebooks finished, how long each took


def run_lab(preset: str = "tiny", runs_dir: str | Path = "runs", fresh: bool = False,
            timeout: int = 3600) -> Path:
    """Execute every notebook not yet done in the current run, then write its report."""
    from pricer.report import write_report

    run_dir = _run_dir(Path(runs_dir), preset, fresh)
    state = _state(run_dir)
    print(f"pricer lab: preset {preset!r} in {run_dir} "
          f"({len(state['done'])} of {len(NOTEBOOKS)} notebooks already done)")
    for name in NOTEBOOKS:
        if name in state["done"]:
            continue
        start = time.perf_counter()
        execute(NOTEBOOK_DIR / f"{name}.ipynb", run_dir / f"{name}.ipynb", overrides(preset), timeout)
        state["done"][name] = round(time.perf_counter() - start, 1)
        _save_state(run_dir, state)
        print(f"pricer lab: {name} done in {state['done'][name]:.0f} s")
    report = write_report(run_dir)
    print(f"pricer lab: finished in {sum(state['done'].values()) / 60:.1f} min; report: {report}")
    return run_dir


def overrides(preset: str) -> dict:
    """Parameters that tie the notebooks into one pipeline inside the run folder (each kernel runs there)."""
    return {
        "PRESET": preset,
        "DATA_DIR": "data",  # notebook 2 writes prompts here, 3 to 5 read them
        "OUTPUT_DIR": "outputs",  # checkpoints and the adapter
        "RESULTS_DIR": "results",  # every Tester run, for the leaderboard and the report
    }


def execute(source: Path, target: Path, params: dict, timeout: int = 3600) -> None:
    """Run one notebook with nbclient, showing per-cell progress; the executed copy is saved even on failure."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from tqdm.auto import tqdm

    from pricer.env import redact

    nb = nbformat.read(source, as_version=4)
    _inject(nb, params)
    code = sum(c.cell_type == "code" for c in nb.cells)
    with tqdm(total=code, desc=source.stem, unit="cell") as bar:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(target.parent)}},
                                on_cell_executed=lambda **_: bar.update())
        try:
            client.execute()
        except CellExecutionError as e:  # its message quotes the cell's printed output and traceback
            raise CellExecutionError(redact(e.traceback), e.ename, redact(e.evalue)) from None
        finally:
            for cell in nb.cells:
                for output in cell.get("outputs", []):
                    _redact_output(output, redact)
            nbformat.write(nb, target)


def _inject(nb, params: dict) -> None:
    import nbformat

    index = next((i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])), None)
    if index is None:
        raise ValueError("notebook has no cell tagged 'parameters' to override")
    lines = ["# Parameters injected by `python -m pricer lab`"] + [f"{k} = {v!r}" for k, v in params.items()]
    cell = nbformat.v4.new_code_cell("\n".join(lines), metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(index + 1, cell)


def _redact_output(output, redact) -> None:
    """No secret reaches an executed notebook: every string of an output goes through `redact`.

    Stream text, every mime type's data (JSON ones are nested), an error's ename, evalue and each
    (ANSI-coloured) traceback line, and metadata: a key printed by mistake becomes its name."""
    for key, value in list(output.items() if isinstance(output, dict) else enumerate(output)):
        if isinstance(value, str):
            output[key] = redact(value)
        elif isinstance(value, (dict, list)):
            _redact_output(value, redact)


def _run_dir(runs_dir: Path, preset: str, fresh: bool) -> Path:
    unfinished = [d for d in sorted(runs_dir.glob("*/")) if (d / STATE).exists()
                  and len(_state(d)["done"]) < len(NOTEBOOKS) and _state(d)["preset"] == preset]
    if unfinished and not fresh:
        return unfinished[-1]
    stamp = datetime.now().strftime("%Y-%m-%d_%H.%M.%S")
    run_dir = runs_dir / stamp
    for n in range(2, 100):  # two runs started in the same second get their own folders
        if not run_dir.exists():
            break
        run_dir = runs_dir / f"{stamp}-{n}"
    run_dir.mkdir(parents=True)
    _save_state(run_dir, {"preset": preset, "started": datetime.now().isoformat(), "done": {}})
    return run_dir


def _state(run_dir: Path) -> dict:
    return json.loads((run_dir / STATE).read_text())


def _save_state(run_dir: Path, state: dict) -> None:
    tmp = run_dir / (STATE + ".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(run_dir / STATE)
