"""One resolved job: a preset's names, its data and the device, settled once at the edge and passed down.

    job = resolve_job(get_preset("tiny", items="my_items"))   # names resolved, your items made into prompts, rows read
    job.preset.prompts, job.device                             # a real folder (or Hub id); "cpu" or the GPU's name
    job.train_rows, job.val_rows, job.test_rows                # the preset's slices of the rows, read once
    train(job); evaluate ... job.test_rows                     # nothing below resolves a name or reads the data again

The CLI's `train` and `evaluate`, notebooks 3-5 (through `pricer.session.Lab.job`) and the
benchmarks build a Job and hand it on. With `items=` set (and `prompts=` left as the preset's),
the prompts are made from those items by `pricer.dataprep.prompts_for_items`: the very rows
`python -m pricer data --items` writes. Setting both is refused, since it isn't clear which to use.
"""

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path

from pricer.config import PRESETS
from pricer.errors import SettingError


@dataclass(frozen=True)
class Job:
    """A resolved preset, its prompt rows (read once) and the device they run on."""

    preset: object  # a resolved pricer.config.Preset: names point at real folders or Hub ids
    prompts: dict  # {"train", "val", "test"}: lists of {"prompt", "completion"} rows
    device: str  # "cpu", or the GPU's name

    @property
    def train_rows(self) -> list[dict]:
        """The first `train_rows` training rows (all of them when None): what a run trains on and is named by."""
        rows = self.prompts["train"]
        return rows[:self.preset.train_rows] if self.preset.train_rows else rows

    @property
    def val_rows(self) -> list[dict]:
        """The first `val_rows` validation rows, for the validation loss the course watches."""
        return self.prompts["val"][:self.preset.val_rows]

    @property
    def test_rows(self) -> list[dict]:
        return self.prompts["test"]


def items_set(preset) -> bool:
    """True when the prompts must be made from `items`: it was changed from its named preset's (not by an offline
    swap), and `prompts` was not (prompts already made from these very items count as not set)."""
    from pricer.sources import catalog_dir

    named = PRESETS.get(preset.name)
    if named is None:
        return False
    items = dict(preset.requested).get("items", preset.items)
    if items == named.items or Path(items) == catalog_dir() / "items" or made_from(preset.prompts, preset.items):
        return False
    prompts = dict(preset.requested).get("prompts", preset.prompts)
    if prompts != named.prompts and catalog_dir() not in Path(prompts).parents:
        raise SettingError(f"both items={preset.items!r} and prompts={preset.prompts!r} are set: give one. items= "
                           "makes the prompts from your products (python -m pricer data --items shows them); "
                           "prompts= trains on prompt rows as they are.")
    return True


def made_from(prompts: str, items: str) -> bool:
    """True when the prompts folder records that it was made from these items (pricer.dataprep, or lab 2's)."""
    from pricer.dataprep import RECORD
    from pricer.files import read_json
    from pricer.sources import describe, looks_like_path, resolve

    record_path = Path(prompts).expanduser() / RECORD
    if not looks_like_path(prompts) or not record_path.exists():
        return False
    record = read_json(record_path, "record of how these prompts were made", "delete it, or make them again")
    return record.get("items") == describe(resolve(items, "items"))


def with_prompts(preset):
    """The preset, resolved, its prompts made from its items when `items` was set (`items_set`)."""
    from pricer.dataprep import prompts_for_items
    from pricer.sources import resolve, resolve_preset

    if items_set(preset):
        made = prompts_for_items(preset.items, preset.summary_tokens, resolve(preset.base_model, "model"))
        preset = dataclasses.replace(preset, prompts=made)
    return resolve_preset(preset)


def resolve_job(preset, prompts: dict | None = None) -> "Job":
    """The job a preset makes: names resolved (items made into prompts), rows read once, the device named.

    `prompts` passes rows already read (they must be this preset's)."""
    if isinstance(preset, Job):
        return preset
    preset = with_prompts(preset)
    return Job(preset, prompts, device()) if prompts else read_job(preset)


def read_job(preset) -> "Job":
    """The job of a preset whose names are already resolved: its prompt rows read, nothing made."""
    from pricer.items import load_prompts

    return Job(preset, load_prompts(preset.prompts, preset.summary_tokens, preset.base_model), device())


@functools.cache
def device() -> str:
    """What trains and scores here: the GPU's name, else "cpu"."""
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
