"""Training run folders: found again by what they train, checked when read, resumable from Drive or the Hub.

    run = open_run(preset, "outputs", rows, max_steps=None, push="me/pricer-lite")
    run.dir, run.resume, run.finished      # outputs/lite-2026-12-01_10.00.00/, its last good checkpoint
    latest_adapter("outputs", preset, rows)  # the newest finished full run of this preset, data and any seed
    choose_adapter("outputs", preset, rows, max_steps=20, seed=1)   # (folder or None, which and why)

A run is identified by the resolved preset (less where its data lives: the rows' digest stands
for them), the step cap, the seed and the data, so rerunning the same command, in a new Colab runtime
with the folder on Drive, finds the same folder and resumes it. Its record (`pricer_run.json`)
and checkpoints are validated when read: a damaged one is named and skipped for the previous
good one. One process trains in a folder at a time. With `push`, the record goes to the Hub repo
beside the checkpoints Trainer pushes (`last-checkpoint/`), so a run whose folder is gone
resumes from the Hub.
"""

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pricer import distributed
from pricer.errors import DataError, PricerError, hub_errors
from pricer.files import acquire_lock, read_json, write_json
from pricer.patches.bitsandbytes import cpu_4bit_path
from pricer.sources import embedded_model_dir

RUN_FILE = "pricer_run.json"  # the identity a rerun matches on, the status, the applied setup and the losses
ADAPTER_FILE = "adapter_model.safetensors"
NOT_TRAINING = ("items", "prompts", "requested", "eval_size")  # preset values that don't change what is trained


@dataclass
class Run:
    """A run folder and where it stands."""

    dir: Path
    identity: dict
    resume: str | None = None  # the checkpoint to resume from
    record: dict = field(default_factory=dict)
    push: str | None = None

    @property
    def finished(self) -> bool:
        return self.record.get("status") == "finished"


def identity(preset, rows: list[dict], max_steps: int | None, seed: int = 42) -> dict:
    """What makes two runs the same run: the resolved preset's training values, the step cap, the seed and the data."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True).encode())
    values = {k: v for k, v in preset.to_dict().items() if k not in NOT_TRAINING}
    if Path(values["base_model"]) == embedded_model_dir():
        values["base_model"] = "embedded"  # the same model in every runtime, wherever PRICER_HOME is
    return json.loads(json.dumps({"preset": values, "max_steps": max_steps, "seed": seed,
                                  "data": digest.hexdigest()[:16]}))


def identity_of(record: dict) -> dict:
    """A record's identity; one written before seeds were recorded trained with the default seed, 42."""
    return {"seed": 42, **record["identity"]}


def finished_at(run_dir: Path, record: dict) -> str:
    """When a run finished, as its record says (ISO time); an older record: its file's modification time."""
    return record.get("finished_at") or datetime.fromtimestamp((Path(run_dir) / RUN_FILE).stat().st_mtime).isoformat()


def read_record(run_dir: Path) -> dict | None:
    """The run's record, or None (said once) when it is missing or damaged."""
    try:
        record = read_json(run_dir / RUN_FILE, "run record", "that folder is skipped; delete it if it is not needed")
        problem = record_problem(record)
        if problem:
            raise DataError(f"{run_dir / RUN_FILE}: the run record {problem}; that folder is skipped (delete it if "
                            "it is not needed)")
        return record
    except DataError as e:
        _say(str(e))
        return None


def record_problem(record: dict) -> str | None:
    """What is wrong with a run record's shape (None when every field pricer reads is there, of its type)."""
    ident = record.get("identity")
    if not isinstance(ident, dict):
        return "has no identity"
    preset = ident.get("preset")
    if not isinstance(preset, dict) or not all(isinstance(preset.get(k), str) for k in ("name", "base_model")):
        return "has no preset name and base model in its identity"
    if not isinstance(ident.get("data"), str) or not (ident.get("max_steps") is None
                                                      or isinstance(ident.get("max_steps"), int)):
        return "has no data digest or a step cap that is not a whole number in its identity"
    if record.get("status", "running") not in ("running", "finished"):
        return f"has status {record.get('status')!r}, neither 'running' nor 'finished'"
    for key in ("losses", "eval_losses"):
        values = record.get(key, [])
        if not isinstance(values, list) or not all(isinstance(v, (int, float)) for v in values):
            return f"has {key} that are not a list of numbers"
    if not isinstance(record.get("steps", 0), int):
        return "has a step count that is not a whole number"
    return None


def adapter_problem(folder: str | Path) -> str | None:
    """Why `folder` holds no adapter peft can load (None when it does): adapter_config.json and the weights, read."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        return f"{folder} is a file, not an adapter folder" if folder.exists() else f"{folder} does not exist"
    try:
        config = read_json(folder / "adapter_config.json", "adapter config", "train the run again")
    except DataError as e:
        return str(e)
    if not isinstance(config.get("base_model_name_or_path", ""), str) or "r" in config and not isinstance(
            config["r"], int):
        return f"{folder / 'adapter_config.json'} is not a LoRA adapter's config"
    if not (folder / ADAPTER_FILE).exists() and zipfile.is_zipfile(folder / "adapter_model.bin"):
        return None  # the older torch format peft still loads
    return safetensors_problem(folder / ADAPTER_FILE)


def write_record(run_dir: Path, **fields) -> None:
    """Merge `fields` into the run's record, atomically (the main process only)."""
    if distributed.is_main():
        record = (read_record(run_dir) or {}) if (run_dir / RUN_FILE).exists() else {}
        write_json(run_dir / RUN_FILE, {**record, **fields})


def runs_of(output_dir: str | Path, name: str = "*") -> list[tuple[Path, dict]]:
    """(folder, record) of every readable run of preset `name` under output_dir, oldest first."""
    found = []
    for path in sorted(Path(output_dir).glob(f"{name}-*/{RUN_FILE}")):
        record = read_record(path.parent)
        if record is not None:
            found.append((path.parent, record))
    return found


def find_run(output_dir: str | Path, ident: dict) -> Path | None:
    """The newest run folder of this identity under output_dir, finished or not."""
    matches = [d for d, record in runs_of(output_dir, ident["preset"]["name"]) if identity_of(record) == ident]
    return matches[-1] if matches else None


def checkpoint_problem(folder: Path) -> str | None:
    """Why a checkpoint can't be resumed from (None when it can): each file it needs, read back."""
    try:
        state = read_json(folder / "trainer_state.json", "trainer state")
        if not isinstance(state.get("global_step"), int):
            return "trainer_state.json has no global_step"
    except DataError as e:
        return str(e)
    problem = safetensors_problem(folder / ADAPTER_FILE)
    if problem:
        return problem
    for name in ("optimizer.pt", "scheduler.pt"):  # torch.save writes zip archives: a cut one has no directory
        if not zipfile.is_zipfile(folder / name):
            return f"{name} is missing or truncated"
    return None


def safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file is unusable (missing, or shorter than its header says), else None."""
    try:
        with path.open("rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
        if path.stat().st_size < 8 + size + end:
            return f"{path.name} is truncated"
    except FileNotFoundError:
        return f"{path.name} is missing"
    except (ValueError, KeyError, TypeError, OSError, UnicodeDecodeError):
        return f"{path.name} is damaged"
    return None


def checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoint folders, in step order (checkpoint-10 before checkpoint-100); not checked."""
    def step(path):
        tail = path.name.rpartition("-")[2]
        return int(tail) if tail.isdigit() else -1

    return sorted(Path(run_dir).glob("checkpoint-*"), key=step)


def last_checkpoint(run_dir: Path) -> str | None:
    """The good checkpoint with the highest step; damaged ones are named and passed over."""
    for folder in reversed(checkpoints(run_dir)):
        problem = checkpoint_problem(folder)
        if problem is None:
            return str(folder)
        _say(f"pricer: {folder} can't be resumed from ({problem}); trying the one before it")
    return None


def open_run(preset, output_dir: str | Path, rows: list[dict], max_steps: int | None = None,
             push: str | None = None, seed: int = 42) -> Run:
    """The run this preset, data, step cap and seed make: found again (locally, else on the Hub) or created; held."""
    ident = identity(preset, rows, max_steps, seed)
    output_dir = Path(output_dir)
    with distributed.main_first():  # several GPUs: the main process makes the folder, the others find it
        run_dir = find_run(output_dir, ident) or (push and restore_from_hub(push, output_dir, ident))
        if run_dir is None:
            run_dir = _new_folder(output_dir, preset.name)
            write_record(run_dir, identity=ident, status="running", push=push, started_at=_now())
            _push_record(push, run_dir)
    if distributed.is_main():
        acquire_lock(run_dir, "training")
    run = Run(Path(run_dir), ident, record=read_record(Path(run_dir)) or {}, push=push)
    if run.finished and adapter_problem(run.dir):
        _say(f"pricer: {run.dir} is marked finished but its adapter is unusable "
             f"({adapter_problem(run.dir)}); finishing it again from its last checkpoint")
        run.record["status"] = "running"
    run.resume = None if run.finished else last_checkpoint(run.dir)
    return run


def _now() -> str:
    return datetime.now().isoformat(timespec="seconds")


def _new_folder(output_dir: Path, name: str) -> Path:
    stamp = f"{name}-{datetime.now():%Y-%m-%d_%H.%M.%S}"
    for n in range(1, 100):  # two runs started in the same second get their own folders
        run_dir = output_dir / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            run_dir.mkdir(parents=True)
            return run_dir
        except FileExistsError:
            continue
    raise PricerError(f"could not make a run folder under {output_dir}")


def restore_from_hub(repo: str, output_dir: Path, ident: dict) -> Path | None:
    """A run of this identity whose checkpoints were pushed to `repo`, downloaded into output_dir; else None."""
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    with hub_errors(repo):
        try:
            record = json.loads(Path(hf_hub_download(repo, RUN_FILE)).read_text())
        except (EntryNotFoundError, RepositoryNotFoundError):
            return None
        if not isinstance(record.get("identity"), dict) or identity_of(record) != ident:
            return None
        run_dir = output_dir / record.get("folder", f"{ident['preset']['name']}-from-hub")
        snapshot_download(repo, local_dir=run_dir, allow_patterns=["last-checkpoint/*"])
    write_json(run_dir / RUN_FILE, {**record, "status": "running"})
    checkpoint = run_dir / "last-checkpoint"
    if checkpoint.exists():
        state = read_json(checkpoint / "trainer_state.json", "trainer state pushed to the Hub")
        checkpoint.rename(run_dir / f"checkpoint-{state['global_step']}")
    print(f"pricer: {repo} holds this run's checkpoints; restored them into {run_dir} to resume")
    return run_dir


def _push_record(repo: str | None, run_dir: Path) -> None:
    """Put the run's record in its Hub repo, so a new runtime can find the run there (main process only)."""
    if not repo or not distributed.is_main():
        return
    from huggingface_hub import HfApi

    write_record(run_dir, folder=run_dir.name)
    with hub_errors(repo, write=True):
        api = HfApi()
        api.create_repo(repo, private=True, exist_ok=True)
        api.upload_file(path_or_fileobj=str(run_dir / RUN_FILE), path_in_repo=RUN_FILE, repo_id=repo)


def finish_run(run: Run, **fields) -> None:
    """Mark the run finished with its figures, locally and (with push) on the Hub."""
    write_record(run.dir, status="finished", finished_at=_now(), cpu_4bit=cpu_4bit_path(), **fields)  # + which CPU 4-bit kernels ran
    run.record = read_record(run.dir) or {}
    _push_record(run.push, run.dir)


def latest_adapter(output_dir: str | Path = "outputs", preset=None, rows: list[dict] | None = None,
                   max_steps: int | None = None, seed: int | None = None) -> Path | None:
    """The newest finished run's adapter folder under output_dir whose identity fits (see `choose_adapter`);
    `preset` may be a name (any run of it) or a resolved Preset; None when none fits (said why)."""
    if not hasattr(preset, "base_model"):
        name = preset or "*"
        found = [(finished_at(d, r), d) for d, r in runs_of(output_dir, name) if _usable(d, r)]
        return max(found, default=(None, None))[1]
    folder, why = choose_adapter(output_dir, preset, rows, max_steps, seed)
    _say(f"pricer: {why}")
    return folder


def _usable(run_dir: Path, record: dict) -> bool:
    return record.get("status") == "finished" and not adapter_problem(run_dir)


def choose_adapter(output_dir: str | Path, preset, rows: list[dict] | None = None, max_steps: int | None = None,
                   seed: int | None = None) -> tuple[Path | None, str]:
    """(the newest fitting finished run by its record's finish time, or None; which and why, in words).

    Fits: the same training values as `preset`, the same data digest (when `rows`, the training rows, are
    given), the same step cap (None: the preset's full run, not a trial) and, when given, the same seed."""
    if rows is None:
        from pricer.job import read_job

        rows = read_job(preset).train_rows  # what `identity` digests
    wanted = identity(preset, rows, max_steps)
    fitting, passed = [], []
    for run_dir, record in runs_of(output_dir, preset.name):
        if not _usable(run_dir, record):
            continue
        theirs = identity_of(record)
        why = _misfit(theirs, wanted, seed)
        (passed if why else fitting).append((finished_at(run_dir, record), run_dir, why or f"seed {theirs['seed']}"))
    steps = f"{max_steps}-step trial" if max_steps else "full run"
    if not fitting:
        others = "; ".join(f"{d.name}: {why}" for _, d, why in passed[-3:])
        return None, (f"no finished {preset.name} {steps} of these training values and data in {output_dir}"
                      + (f" (passed over {others})" if others else ""))
    at, run_dir, seeds = max(fitting)
    return run_dir, (f"adapter {run_dir} ({seeds}, finished {at}): the newest of {len(fitting)} finished "
                     f"{preset.name} {steps}(s) of these training values and data"
                     + (f"; passed over {len(passed)} that don't fit" if passed else ""))


def _misfit(theirs: dict, wanted: dict, seed: int | None) -> str | None:
    """Why a run's identity doesn't fit the one wanted (None when it does); any seed fits unless one is asked."""
    if theirs.get("max_steps") != wanted["max_steps"]:
        return (f"a {theirs['max_steps']}-step trial (--max-steps {theirs['max_steps']} picks it)"
                if theirs.get("max_steps") else "a full run, not the trial asked for")
    if seed is not None and theirs["seed"] != seed:
        return f"seed {theirs['seed']}, not {seed}"
    if theirs.get("data") != wanted["data"]:
        return "trained on other data"
    differ = sorted(k for k in set(theirs["preset"]) | set(wanted["preset"])
                    if theirs["preset"].get(k) != wanted["preset"].get(k))
    return f"other training values ({', '.join(differ)})" if differ else None


def adapter_folder(name: str, revision: str | None = None) -> str:
    """What `--adapter NAME` loads: an adapter folder (a finished run's, or a checkpoint), or a Hub repo id.

    A folder is checked before anything loads: missing, a file, a run with no adapter yet and a folder with
    no adapter_config.json are each refused by name with the way on; `revision` is only for a Hub repo."""
    from pricer.sources import environment_offline, looks_like_path

    path = Path(name).expanduser()
    if looks_like_path(name) or path.exists():
        where = path.resolve()
        if revision:
            raise PricerError(f"--revision {revision} is for an adapter on the Hub; {name} is a local folder.")
        if not where.exists():
            raise PricerError(f"--adapter {name}: no such folder ({where}). Give an adapter folder (it holds "
                              "adapter_config.json), a run folder under --output-dir, or a Hub repo (me/pricer-lite).")
        if where.is_file():
            raise PricerError(f"--adapter {name} is a file; give the folder that holds it (adapter_config.json and "
                              f"{ADAPTER_FILE}).")
        if not (where / "adapter_config.json").exists():
            kept = checkpoints(where)
            if (where / RUN_FILE).exists():
                raise PricerError(f"--adapter {name}: this run has no final adapter yet (it has not finished): rerun "
                                  "its train command to finish it" + (f", or give a checkpoint: {kept[-1]}" if kept else ""))
            raise PricerError(f"--adapter {name}: {where} has no adapter_config.json, so it holds no adapter.")
        problem = adapter_problem(where)
        if problem:
            raise PricerError(f"--adapter {name}: {problem}; give another run or checkpoint.")
        return str(where)
    if environment_offline():
        raise PricerError(f"--adapter {name} is a Hugging Face Hub repo, but the Hub can't be reached here (or "
                          "PRICER_OFFLINE=1): give a local adapter folder, or connect and rerun.")
    return name


def compatible(run_dir: str | Path, preset, train_rows: list[dict] | None = None) -> str | None:
    """Why the adapter in run_dir doesn't fit this preset's base model (or training data), else None."""
    run_dir = Path(run_dir)
    if not (run_dir / RUN_FILE).exists():
        return None  # not one of ours (an adapter folder, a checkpoint, a Hub download): only its shapes can tell
    record = read_record(run_dir)
    if record is None:
        return None
    trained = record["identity"]["preset"]["base_model"]
    wanted = "embedded" if Path(preset.base_model) == embedded_model_dir() else preset.base_model
    if trained != wanted:
        return f"it was trained on {trained}, not {wanted}"
    if train_rows is not None:
        rows = train_rows[:preset.train_rows] if preset.train_rows else train_rows
        if identity(preset, rows, None)["data"] != record["identity"]["data"]:
            return "it was trained on other data than this preset's training rows"
    return None


_SAID: set[str] = set()


def _say(message: str) -> None:
    """Print a notice once per process (a damaged file is named once, not at every look)."""
    if message not in _SAID and distributed.is_main():
        _SAID.add(message)
        print(message)
