"""The main job: execute the five lab notebooks in order and write a report.

    python -m pricer lab                                  # tiny preset, embedded model + catalog, ~15 min on 2 cores
    python -m pricer lab --preset lite --set prompts=data/my_prompts   # the course's sizes (a GPU and a token)
    python -m pricer lab --preset smol --t4               # rehearse a Colab T4 on a bigger GPU

Executed copies go to runs/<timestamp>/, which is also the lab folder every notebook reads and
writes (LAB_DIR), with report.html beside them. Each notebook's parameters cell is followed by
an injected cell (PRESET, SETTINGS, LAB_DIR), as papermill does, so the notebooks stay runnable
by hand. Interrupted, a rerun continues the unfinished run: finished notebooks are skipped,
training resumes from its last checkpoint and evaluations from their per-item caches. One lab
runs in a run folder at a time. A preset naming the Hub with no network is refused before any
kernel starts, unless PRICER_OFFLINE=1 asks for the embedded default. A notebook that fails
with an error the user can fix ends the lab with that error's message; any other names the
saved notebook, which holds its traceback (redacted, as every output, cell and lab.json is).

Why not papermill: it is nbclient (which this uses) plus parameter injection; what this runner
needs beside that is its own (redacting every output before the notebook is saved, a progress
line per cell, kernel environments, resuming a run), and papermill would add a dependency stack
to the lab runner for 20 lines of injection.
"""

import json
import os
import re
import time
from datetime import datetime
from pathlib import Path

from pricer.errors import DataError, PricerError, SavedBug, SettingError
from pricer.files import check_folder, folder_lock, read_json, write_json

NOTEBOOKS = (
    "1_quantization_tour",
    "2_data_prep",
    "3_baselines_and_base_model",
    "4_qlora_training",
    "5_finetuned_eval",
)
NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
STATE = "lab.json"  # the run's progress: which notebooks finished, how long each took
USER_ERRORS = ("PricerError", "SettingError", "DataError", "ResourceError", "KeyboardInterrupt")  # in a kernel


def run_lab(preset: str = "tiny", runs_dir: str | Path = "runs", fresh: bool = False, settings: dict | None = None,
            t4: bool = False, timeout: int = 3600) -> Path:
    """Execute every notebook not yet done in the current run, then write its report."""
    from pricer.config import get_preset
    from pricer.report import write_report

    settings = json.loads(json.dumps(dict(settings or {})))  # as lab.json holds them: lists, not tuples
    chosen = get_preset(preset, **settings)  # a bad preset or value is refused before any kernel starts
    check_folder(runs_dir, "--runs-dir")
    env = kernel_env(t4)
    _check_hub_names(chosen)
    run_dir = _run_dir(Path(runs_dir), preset, settings, fresh)
    with folder_lock(run_dir, "a lab run"):
        state = _state(run_dir)
        print(f"pricer lab: preset {preset!r} in {run_dir} "
              f"({len(state['done'])} of {len(NOTEBOOKS)} notebooks already done)")
        for name in NOTEBOOKS:
            if name in state["done"]:
                continue
            start = time.perf_counter()
            params = {"PRESET": preset, "SETTINGS": settings, "LAB_DIR": "."}  # each kernel runs in run_dir
            try:
                execute(NOTEBOOK_DIR / f"{name}.ipynb", run_dir / f"{name}.ipynb", params, timeout, env=env)
            except Exception as e:
                raise notebook_failure(name, run_dir / f"{name}.ipynb", e) from None
            state["done"][name] = round(time.perf_counter() - start, 1)
            write_json(run_dir / STATE, state)
            print(f"pricer lab: {name} done in {state['done'][name]:.0f} s")
        report = write_report(run_dir)
    print(f"pricer lab: finished in {sum(state['done'].values()) / 60:.1f} min; report: {report}")
    return run_dir


def kernel_env(t4: bool = False) -> dict:
    """What every notebook's kernel gets besides this process's environment."""
    env = {"PRICER_EXECUTED": "1"}  # no widgets here: libraries print plain progress (pricer.session)
    if t4:
        env["PRICER_T4"] = "1"
    return env


def _check_hub_names(preset) -> None:
    """Refuse, before any kernel starts, a preset that names the Hub when it can't be reached (README's promise)."""
    from pricer.config import EMBEDDED, flag
    from pricer.sources import hub_reachable, looks_like_path, offline_asked

    names = [(k, getattr(preset, k)) for k in ("base_model", "items", "prompts")]
    hub = [f"{k}={v}" for k, v in names if v != EMBEDDED and not looks_like_path(v)]
    if hub and not offline_asked() and not flag("HF_HUB_OFFLINE") and not hub_reachable():
        raise SettingError(f"preset {preset.name!r} names the Hugging Face Hub ({', '.join(hub)}), and the Hub can't "
                           "be reached (no network?): connect and rerun, give local folders with --set, or set "
                           "PRICER_OFFLINE=1 to run on the embedded default (SmolLM2-135M and the generated catalog)")


def notebook_failure(name: str, saved: Path, error: Exception) -> Exception:
    """A notebook's failure as the CLI reports it: the kernel's own message when the user can fix it (a pricer
    error, a full or read-only disk), else a bug that names the saved notebook holding the traceback."""
    from nbclient.exceptions import CellExecutionError

    from pricer.edge import explain

    if not isinstance(error, CellExecutionError):
        message = explain(error)
        return PricerError(f"{name}: {message}") if message else error
    message = None
    if error.ename in USER_ERRORS:
        message = error.evalue
    elif error.ename in OS_ERRORS:
        number = re.match(r"\[Errno (\d+)\] ([^:]*)(?:: '(.*)')?", error.evalue or "")
        message = explain(OSError(int(number[1]), number[2], number[3]) if number else OSError(error.evalue))
    if message:
        return PricerError(f"{message} (in {name}; the executed notebook is {saved})")
    return SavedBug(f"{name} failed: {error.ename}: {(error.evalue or '').strip()[:200]}", saved)


OS_ERRORS = ("OSError", "FileNotFoundError", "PermissionError", "NotADirectoryError", "IsADirectoryError",
             "FileExistsError")


def execute(source: Path, target: Path, params: dict, timeout: int = 3600, env: dict | None = None,
            cwd: Path | None = None, extra_cells=()) -> None:
    """Run one notebook with nbclient in `cwd` (default: the target's folder), showing per-cell progress;
    the executed copy is saved, redacted, even on failure. `extra_cells` are appended code (rehearsals)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from tqdm.auto import tqdm

    from pricer.env import redact

    nb = nbformat.read(source, as_version=4)
    inject(nb, params)
    nb.cells += [nbformat.v4.new_code_cell(text, metadata={"tags": ["injected"]}) for text in extra_cells]
    code = sum(c.cell_type == "code" for c in nb.cells)
    with tqdm(total=code, desc=source.stem, unit="cell") as bar:
        # The kernel app's own log at ERROR: ipykernel 7 warns at every start that its link to this process (on
        # localhost) is unencrypted TCP. Warnings of the notebook's code still land in its outputs. (Unix sockets
        # instead would take a path the kernel resolves from its own working folder, not ours.)
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                extra_arguments=["--IPKernelApp.log_level=ERROR"],
                                resources={"metadata": {"path": str(cwd or target.parent)}},
                                on_cell_executed=lambda **_: bar.update())
        try:
            client.execute(env={**os.environ, **(env or {})})
        except CellExecutionError as e:  # its message quotes the cell's printed output and traceback
            raise CellExecutionError(redact(e.traceback), e.ename, redact(e.evalue)) from None
        finally:
            for cell in nb.cells:
                cell.source = redact(cell.source)  # the injected parameters cell holds the settings as typed
                for output in cell.get("outputs", []):
                    _redact_output(output, redact)
            nbformat.write(nb, target)


def inject(nb, params: dict) -> None:
    """Insert a cell setting `params` right after the cell tagged 'parameters'."""
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


def _run_dir(runs_dir: Path, preset: str, settings: dict, fresh: bool) -> Path:
    """The unfinished run of this preset and settings to continue, else a new folder."""
    unfinished = []
    for folder in sorted(runs_dir.glob("*/")):
        state = _readable_state(folder)
        if state and len(state["done"]) < len(NOTEBOOKS) and state["preset"] == preset \
                and state.get("settings", {}) == settings:
            unfinished.append(folder)
    if unfinished and not fresh:
        return unfinished[-1]
    stamp = datetime.now().strftime("%Y-%m-%d_%H.%M.%S")
    for n in range(1, 100):  # two runs started in the same second get their own folders
        run_dir = runs_dir / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            run_dir.mkdir(parents=True)
            break
        except FileExistsError:
            continue
    write_json(run_dir / STATE, {"preset": preset, "settings": settings, "started": datetime.now().isoformat(),
                                 "done": {}})
    return run_dir


def _state(run_dir: Path) -> dict:
    state = read_json(run_dir / STATE, "lab record", "delete that run folder or start with --fresh")
    if not isinstance(state.get("done"), dict) or "preset" not in state:
        raise DataError(f"{run_dir / STATE}: the lab record lacks 'preset' or 'done'; delete that run folder or "
                        "start with --fresh")
    return state


def _readable_state(folder: Path) -> dict | None:
    """A run folder's record, or None, naming a damaged one (it is passed over, not fatal to every later run)."""
    if not (folder / STATE).exists():
        return None
    try:
        return _state(folder)
    except DataError as e:
        print(f"pricer lab: passing over {folder}: {e}")
        return None
