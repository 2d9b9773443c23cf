"""Presets, names and the offline switch: everything a run is configured by.

Three presets, picked by name and overridden explicitly:

    from pricer.config import get_preset
    preset = get_preset("tiny")                     # embedded SmolLM2 + catalog, 2 CPU cores
    preset = get_preset("lite", train_rows=5_000)   # the course's lite run, fewer rows

`lite` and `full` are the course's values. `tiny` is ours, sized so the whole lab runs on a
2-core CPU in CI. Unknown override keys are rejected loudly rather than silently ignored.

Offline: `PRICER_OFFLINE=1` (or an unreachable Hub) swaps Hub names for the embedded default
(`EMBEDDED`), announced once. A local folder works wherever a Hub name works.
"""

import dataclasses
import functools
import os
import socket
from dataclasses import dataclass
from pathlib import Path

HUB_MODEL = "meta-llama/Llama-3.2-3B"
EMBEDDED = "embedded"  # the SmolLM2-135M model or the generated catalog, resolved to a local folder

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Preset:
    """One training + evaluation configuration; saved with every run's results."""

    name: str
    base_model: str
    items: str  # Hub name or folder of Items (train / validation / test)
    prompts: str  # Hub name or folder of {"prompt", "completion"} rows (train / val / test)
    quant: str | None = "4bit"  # "4bit" NF4 is QLoRA; "8bit" or None for the quantization tour
    lora_r: int = 32
    lora_alpha: int = 64  # alpha / r = 2 keeps the update scale the course used
    lora_dropout: float = 0.1
    target_modules: tuple[str, ...] = ATTENTION
    epochs: float = 1
    batch_size: int = 32  # effective batch: micro-batch x gradient accumulation
    learning_rate: float = 1e-4
    lr_scheduler: str = "cosine"
    warmup_fraction: float = 0.01  # of total steps; transformers 5 has no warmup_ratio
    weight_decay: float = 0.001
    optimizer: str = "paged_adamw_32bit"
    max_grad_norm: float = 0.3  # clips the rare huge step QLoRA takes on an outlier batch
    train_rows: int | None = 20_000  # None: every training row
    summary_tokens: int = 110  # summary cut, in tokens of the base model's tokenizer
    max_length: int = 128  # prompt + completion must fit, or TRL drops the row
    save_steps: int = 100  # checkpoint cadence: what a disconnect can cost
    eval_size: int = 200  # test items the Tester scores, as in the course

    def to_dict(self) -> dict:
        """Plain JSON-able values, for results files and run names."""
        return dataclasses.asdict(self)


PRESETS = {
    "tiny": Preset(
        name="tiny",
        base_model=EMBEDDED,
        items=EMBEDDED,
        prompts=EMBEDDED,
        quant="4bit",
        lora_r=16,
        lora_alpha=32,
        lora_dropout=0.0,  # 60-odd steps: nothing to regularise yet
        target_modules=ATTENTION + MLP,
        batch_size=8,
        learning_rate=1e-3,  # a 135M model and a few dozen steps need a bigger step than 3B
        warmup_fraction=0.05,
        optimizer="adamw_torch",  # paged optimizers page to GPU memory; on CPU there is none
        train_rows=480,
        summary_tokens=48,
        max_length=80,
        save_steps=20,
        eval_size=200,
    ),
    "lite": Preset(
        name="lite",
        base_model=HUB_MODEL,
        items="ed-donner/items_lite",
        prompts="ed-donner/items_prompts_lite",
    ),
    "full": Preset(
        name="full",
        base_model=HUB_MODEL,
        items="ed-donner/items_full",
        prompts="ed-donner/items_prompts_full",
        lora_r=256,
        lora_alpha=512,
        target_modules=ATTENTION + MLP,
        epochs=3,
        batch_size=256,
        train_rows=800_000,
        save_steps=500,
    ),
}


def get_preset(name: str, **overrides) -> Preset:
    """The named preset with explicit overrides; unknown names or keys raise ValueError."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(Preset)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown preset setting(s) {unknown}: valid ones are {sorted(fields)}")
    if "target_modules" in overrides:
        overrides["target_modules"] = tuple(overrides["target_modules"])
    return dataclasses.replace(PRESETS[name], **overrides)


def pricer_home() -> Path:
    """Where converted models, the catalog and caches live (`PRICER_HOME`, else ~/.cache/pricer)."""
    return Path(os.environ.get("PRICER_HOME", Path.home() / ".cache" / "pricer")).expanduser()


@functools.cache
def hub_reachable() -> bool:
    """True when huggingface.co answers; checked once per process, in well under a second offline."""
    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
        return True
    except OSError:
        return False


def offline() -> bool:
    """True when the Hub must not be used: PRICER_OFFLINE=1, HF_HUB_OFFLINE=1, or no network."""
    forced = any(os.environ.get(v, "0") not in ("", "0") for v in ("PRICER_OFFLINE", "HF_HUB_OFFLINE"))
    return forced or not hub_reachable()


@functools.cache
def _announce(name: str) -> None:
    print(f"pricer: the Hugging Face Hub is not available (offline), so {name!r} is replaced by "
          "the embedded default (SmolLM2-135M-Instruct / the generated catalog).")


def resolve(name: str) -> str:
    """`name` itself when usable, else EMBEDDED: a local folder or, online, a Hub name."""
    if name == EMBEDDED or Path(name).expanduser().is_dir():
        return name
    if offline():
        _announce(name)
        return EMBEDDED
    return name


def parse_overrides(pairs: list[str]) -> dict:
    """`key=value` strings as typed preset overrides (ints, floats, none, comma-separated lists)."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--set takes key=value, got {pair!r}")
        if value.lower() == "none":
            overrides[key] = None
        elif "," in value or key == "target_modules":
            overrides[key] = tuple(v for v in value.split(",") if v)
        else:
            for cast in (int, float, str):
                try:
                    overrides[key] = cast(value)
                    break
                except ValueError:
                    continue
    return overrides
