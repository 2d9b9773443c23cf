"""Rehearse the lab as Colab runs it: every notebook in a runtime of its own, state only on "Drive".

    stats = rehearse("tiny", Path("/tmp/drive"), Path("/tmp/runtimes"), kill_after_checkpoint=True)
    python -m pricer.rehearsal --preset smol --t4 --drive /tmp/drive --runtimes /tmp/runtimes

Each notebook runs in its own kernel process, in an empty working folder (a new Colab runtime's
/content), with Colab's `google.colab` stood in (`pricer/standin`: `drive.mount` prints what
Colab prints, `userdata.get` answers from a dict and raises Colab's errors). The lab folder is a
folder that survives between runtimes, as Drive does, so lab 3 must find lab 2's prompts and
lab 5 lab 4's adapter there. With `kill_after_checkpoint`, notebook 4's runtime is killed
(SIGKILL, kernel included) once its first checkpoint is on Drive, and the notebook is run again
in a new runtime: it must resume from that checkpoint. With `t4`, every kernel rehearses a T4
(PRICER_T4=1). Each runtime's GPU peaks are written by a last injected cell.

Nothing is deleted that the rehearsal did not make: the runtimes folder must be new, empty, or
one an earlier rehearsal made (its `.pricer-rehearsal` marker lists the runtimes it made, and
only those are cleared); it may not overlap the Drive folder. A notebook that fails, an error
cell, or a kill that found no checkpoint makes the command exit non-zero.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from pricer.env import redact
from pricer.errors import ResourceError
from pricer.files import check_folder, read_json, write_json
from pricer.lab import NOTEBOOK_DIR, NOTEBOOKS, execute

STANDIN = Path(__file__).resolve().parent / "standin"
MARKER = ".pricer-rehearsal"  # in a runtimes folder this module made: the runtimes it made there
STATS_CELL = """\
# Injected by pricer.rehearsal: this runtime's GPU peaks
import json, torch
_peaks = {"peak_allocated_gb": torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available() else 0.0,
          "peak_reserved_gb": torch.cuda.max_memory_reserved() / 1e9 if torch.cuda.is_available() else 0.0}
with open("runtime_stats.json", "w") as _f:
    _f.write(json.dumps(_peaks))"""


def runtime_env(runtime: Path, drive: Path, secrets: dict, t4: bool, extra: dict | None = None) -> dict:
    """A new Colab runtime's environment: google.colab importable and imported at kernel start, Drive, secrets."""
    ipython = runtime.parent / f".{runtime.name}-ipython"
    startup = ipython / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    (startup / "00-colab-standin.py").write_text(
        f"import sys\nsys.path.insert(0, {str(STANDIN)!r})\nimport google.colab  # as a Colab kernel has it\n")
    env = {"IPYTHONDIR": str(ipython), "PRICER_LAB_DIR": str(drive / "pricer-lab"), "PRICER_EXECUTED": "1",
           "PRICER_STANDIN_SECRETS": json.dumps(secrets)}
    for name in secrets:  # a runtime starts with no secrets in its environment: only Colab's Secrets panel
        env[name] = ""
    if t4:
        env["PRICER_T4"] = "1"
    return {**env, **(extra or {})}


def run_notebook(name: str, runtime: Path, env: dict, params: dict, timeout: int = 3600) -> dict:
    """One notebook in a fresh runtime folder; its wall time, GPU peaks and error cells."""
    import nbformat

    runtime.mkdir(parents=True, exist_ok=False)
    target = runtime / f"{name}.ipynb"
    start = time.perf_counter()
    failed = None
    try:
        execute(NOTEBOOK_DIR / f"{name}.ipynb", target, params, timeout, env=env, cwd=runtime, extra_cells=[STATS_CELL])
    except Exception as e:  # the executed copy is saved either way: count its error cells
        failed = f"{type(e).__name__}: {str(e)[-300:]}"
    wall = time.perf_counter() - start
    nb = nbformat.read(target, as_version=4)
    errors = sum(any(o.get("output_type") == "error" for o in c.get("outputs", [])) for c in nb.cells)
    stats = json.loads((runtime / "runtime_stats.json").read_text()) if (runtime / "runtime_stats.json").exists() else {}
    return {"wall_s": round(wall, 1), **{k: round(v, 2) for k, v in stats.items()}, "error_cells": errors,
            "failed": failed}


def _kill_after_checkpoint(name: str, runtime: Path, env: dict, params: dict, outputs: Path, timeout: int) -> int:
    """Run the notebook in a child process; SIGKILL it (and its kernel) once a checkpoint is on Drive."""
    runtime.mkdir(parents=True, exist_ok=False)
    code = ("import json, sys; from pathlib import Path; from pricer.lab import NOTEBOOK_DIR, execute; "
            "a = json.loads(sys.argv[1]); execute(NOTEBOOK_DIR / (a['name'] + '.ipynb'), Path(a['target']), "
            "a['params'], env=a['env'], cwd=Path(a['cwd']))")
    job = json.dumps({"name": name, "target": str(runtime / f"{name}.ipynb"), "params": params, "env": env,
                      "cwd": str(runtime)})
    log = runtime / "runtime.log"  # what the killed runtime printed: the reason, if it ended early
    with log.open("w") as out:
        child = subprocess.Popen([sys.executable, "-c", code, job], start_new_session=True,
                                 env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and child.poll() is None:
            states = list(outputs.glob("*/checkpoint-*/trainer_state.json"))
            if states:
                time.sleep(2)  # let the checkpoint's other files land, as a real disconnect might not
                return min(json.loads(p.read_text())["global_step"] for p in states)
            time.sleep(1)
        raise RuntimeError(f"{name} wrote no checkpoint before it {'ended' if child.poll() is not None else 'timed out'}"
                           f":\n{redact(log.read_text(errors='ignore')[-4000:])}")
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)  # the runtime and its kernel, as a Colab disconnect does
            child.wait()


def rehearse(preset: str, drive: Path, runtimes: Path, settings: dict | None = None, secrets: dict | None = None,
             t4: bool = False, kill_after_checkpoint: bool = False, params: dict | None = None,
             notebooks=NOTEBOOKS, timeout: int = 3600) -> dict:
    """The notebooks, each in a new runtime; notebook 4 optionally killed after a checkpoint (and rerun, if the
    notebooks to run go on past it: a rehearsal may stop there and continue in a later call)."""
    drive, runtimes = Path(drive), Path(runtimes)
    (drive / "pricer-lab").mkdir(parents=True, exist_ok=True)
    params = {"PRESET": preset, "SETTINGS": dict(settings or {}), "LAB_DIR": None, **(params or {})}
    report = {"notebooks": {}}
    for name in notebooks:
        runtime = _new_runtime(runtimes, name)
        env = runtime_env(runtime, drive, secrets or {}, t4)
        if kill_after_checkpoint and name.startswith("4_") and "killed_at_step" not in report:
            outputs = drive / "pricer-lab" / "outputs"
            report["killed_at_step"] = _kill_after_checkpoint(name, runtime, env, params, outputs, timeout)
            continue
        report["notebooks"][name] = run_notebook(name, runtime, env, params, timeout)
        if name.startswith("4_"):
            report["resumed_from_step"] = _resumed_from(runtime / f"{name}.ipynb")
    return report


def _new_runtime(runtimes: Path, name: str) -> Path:
    """An unused folder for a new runtime of `name` (a rerun after a disconnect gets its own), listed as ours."""
    for n in range(1, 100):
        runtime = runtimes / (name if n == 1 else f"{name}-runtime{n}")
        if not runtime.exists() and not (runtimes / f".{runtime.name}-ipython").exists():
            _made(runtimes, runtime.name, f".{runtime.name}-ipython")
            return runtime
    raise ResourceError(f"too many runtimes of {name} in {runtimes}: give a new --runtimes folder")


def _made(runtimes: Path, *names: str) -> None:
    """Note in the marker that the rehearsal made these entries of `runtimes` (the only ones it may remove)."""
    marker = runtimes / MARKER
    made = read_json(marker, "rehearsal marker").get("made", []) if marker.exists() else []
    write_json(marker, {"made_by": "pricer.rehearsal", "made": sorted(set(made) | set(names))})


def prepare_folders(drive: Path, runtimes: Path) -> None:
    """Refuse overlapping folders and a runtimes folder pricer did not make; clear the runtimes it made before."""
    drive, runtimes = Path(drive).expanduser().resolve(), Path(runtimes).expanduser().resolve()
    if drive == runtimes or drive in runtimes.parents or runtimes in drive.parents:
        raise ResourceError(f"--drive {drive} and --runtimes {runtimes} overlap: a new runtime must not see (or "
                            "clear) what Drive keeps. Give two separate folders")
    check_folder(drive, "--drive")
    marker = runtimes / MARKER
    if runtimes.is_dir() and not marker.is_file() and any(runtimes.iterdir()):
        raise ResourceError(f"--runtimes {runtimes} holds files a rehearsal did not make, and nothing of yours is "
                            "deleted: give a new or empty folder")
    check_folder(runtimes, "--runtimes")
    if marker.is_file():
        made = read_json(marker, "rehearsal marker", f"delete {marker} and the runtimes by hand").get("made", [])
        for name in made:
            path = runtimes / name
            if path.parent == runtimes and path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)  # a runtime this module made: a new rehearsal starts from empty runtimes
    write_json(marker, {"made_by": "pricer.rehearsal", "made": []})


def failures(report: dict, kill: bool = False) -> list[str]:
    """What went wrong in a rehearsal: failed notebooks, error cells, a kill that found no checkpoint."""
    found = [f"{name}: {r['failed'] or str(r['error_cells']) + ' error cell(s)'}"
             for name, r in report["notebooks"].items() if r.get("failed") or r.get("error_cells")]
    if kill and report.get("resumed_from_step") is None:
        found.append("notebook 4 did not say it resumed from a checkpoint")
    return found


def _resumed_from(executed: Path) -> int | None:
    """The checkpoint step notebook 4 says it resumed from, read from its executed output."""
    import re

    text = executed.read_text(errors="ignore")
    match = re.search(r"resum\w* from \S*checkpoint-(\d+)", text)
    return int(match.group(1)) if match else None


def main(argv=None) -> None:
    import argparse

    p = argparse.ArgumentParser(prog="python -m pricer.rehearsal", description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--drive", required=True, help="a folder that survives between runtimes (Drive)")
    p.add_argument("--runtimes", required=True, help="where each runtime's empty working folder is made")
    p.add_argument("--t4", action="store_true", help="every kernel rehearses a T4 (15 GB, no bf16)")
    p.add_argument("--kill", action="store_true", help="kill notebook 4 after its first checkpoint and rerun it")
    p.add_argument("--out", help="write the figures to this JSON file")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    args = p.parse_args(argv)
    from pricer.edge import run_at_edge

    code = run_at_edge(lambda: _main(args), debug=args.debug)
    if code:
        raise SystemExit(code)


def _main(args) -> None:
    from pricer.config import get_preset

    get_preset(args.preset)  # a bad name is refused before anything is touched
    prepare_folders(Path(args.drive), Path(args.runtimes))
    notebooks = NOTEBOOKS[:4] + NOTEBOOKS[3:] if args.kill else NOTEBOOKS  # killed, then rerun in a new runtime
    report = rehearse(args.preset, Path(args.drive), Path(args.runtimes), t4=args.t4, kill_after_checkpoint=args.kill,
                      notebooks=notebooks)
    text = json.dumps(report, indent=1)
    if args.out:
        write_json(args.out, report)
    print(text)
    failed = failures(report, args.kill)
    if failed:
        print(f"pricer.rehearsal: failed: {'; '.join(failed)}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
