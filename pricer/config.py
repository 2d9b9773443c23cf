"""Presets: every value a run is configured by, typed and range-checked in one place.

    from pricer.config import get_preset, parse_settings
    preset = get_preset("tiny")                                  # embedded SmolLM2 + catalog, 2 CPU cores
    preset = get_preset("lite", train_rows=5_000)                # the course's lite run, fewer rows
    preset = get_preset("lite", **parse_settings(["lora_r=16", "target_modules=q_proj,v_proj"]))

`lite` and `full` are the course's values; `tiny` (CPU, CI) and `smol` (any GPU, no token) are
ours, on the embedded model and catalog. A value is checked against its field's type and range
when the preset is made, by pydantic (already the lab's validator for `Item`; transformers'
`HfArgumentParser` types from fields too, but checks no ranges): a bad one is refused with
the setting's name, the value and what is allowed, before anything loads. Numbers must be
finite (`weight_decay=inf` would train to an all-NaN adapter marked finished), and settings
that bound each other are checked together (a batch no larger than the training rows). Strings from the
command line are typed from the field they set, never by trying casts, so a folder
named `1e5` stays a string and `train_rows=1e2` is refused.

Names (`base_model`, `items`, `prompts`) are resolved to real folders or Hub ids by
`pricer.sources.resolve_preset`, once, at the edge (the CLI, a notebook's setup, `train`).
"""

import dataclasses
import os
import re
import typing
from pathlib import Path
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from pydantic.dataclasses import dataclass

from pricer.errors import SettingError

HUB_MODEL = "meta-llama/Llama-3.2-3B"
EMBEDDED = "embedded"  # the SmolLM2-135M model or the generated catalog (pricer.sources makes them)

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")

Projection = Literal["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
Scheduler = Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                    "inverse_sqrt", "cosine_with_min_lr", "warmup_stable_decay"]  # transformers' SchedulerType
Optimizer = Literal["paged_adamw_32bit", "paged_adamw_8bit", "adamw_torch", "adamw_torch_fused", "adamw_8bit",
                    "adafactor", "sgd", "lion_8bit", "lion_32bit", "paged_lion_8bit", "paged_lion_32bit"]
Positive = Annotated[int, Field(ge=1)]
Name = Annotated[str, Field(min_length=1)]


@dataclass(frozen=True, config={"extra": "forbid", "allow_inf_nan": False})
class Preset:
    """One training + evaluation configuration; saved with every run's results."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]  # run folders are named after it
    base_model: Name  # Hub name, local folder, or "embedded"
    items: Name  # Hub name or folder of Items (train / validation / test), or "embedded"
    prompts: Name  # Hub name or folder of {"prompt", "completion"} rows (train / val / test), or "embedded"
    quant: Literal["4bit", "8bit"] | None = "4bit"  # "4bit" NF4 is QLoRA; "8bit" or None for the quantization tour
    lora_r: Positive = 32
    lora_alpha: Annotated[float, Field(gt=0, le=1e5)] = 64  # alpha / r = 2 keeps the update scale the course used
    lora_dropout: Annotated[float, Field(ge=0, lt=1)] = 0.1
    target_modules: Annotated[tuple[Projection, ...], Field(min_length=1)] = ATTENTION
    epochs: Annotated[float, Field(gt=0, le=1000)] = 1
    batch_size: Positive = 32  # effective batch: micro-batch x gradient accumulation
    learning_rate: Annotated[float, Field(gt=0, le=1)] = 1e-4
    lr_scheduler: Scheduler = "cosine"
    warmup_fraction: Annotated[float, Field(ge=0, le=1)] = 0.01  # of total steps; transformers 5 has no warmup_ratio
    weight_decay: Annotated[float, Field(ge=0, le=1)] = 0.001  # AdamW's decoupled decay: above 1 it erases weights
    optimizer: Optimizer = "paged_adamw_32bit"
    max_grad_norm: Annotated[float, Field(gt=0, le=1e6)] = 0.3  # clips the rare huge step QLoRA takes on an outlier batch
    train_rows: Positive | None = 20_000  # None: every training row
    summary_tokens: Positive = 110  # summary cut, in tokens of the base model's tokenizer
    max_length: Annotated[int, Field(ge=16)] = 128  # prompt + completion must fit, or TRL drops the row
    save_steps: Positive = 100  # checkpoint cadence: what a disconnect can cost
    eval_steps: Positive | None = None  # validation loss every N steps (None: at each checkpoint)
    val_rows: Annotated[int, Field(ge=0)] = 200  # validation rows for that loss (0: none)
    eval_size: Positive = 200  # test items the Tester scores, as in the course
    requested: tuple[tuple[str, str], ...] = ()  # (setting, name typed) where resolution used another (offline)

    @model_validator(mode="after")
    def _settings_agree(self):
        """Settings that bound each other: each named, with the value that would fit."""
        if self.train_rows is not None and self.batch_size > self.train_rows:
            raise ValueError(f"batch_size={self.batch_size} is more than train_rows={self.train_rows}: a batch "
                             f"can't hold more rows than there are; set batch_size to at most {self.train_rows}")
        return self

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
        val_rows=40,  # a validation loss costs forwards: few rows on 2 cores
        eval_size=100,  # items each predictor scores: generation is the slowest part on 2 cores
    ),
    "smol": Preset(
        name="smol",
        base_model=EMBEDDED,
        items=EMBEDDED,
        prompts=EMBEDDED,
        quant="4bit",
        lora_r=64,
        lora_alpha=128,
        lora_dropout=0.0,
        target_modules=ATTENTION + MLP,
        epochs=3,
        batch_size=16,
        learning_rate=5e-4,
        warmup_fraction=0.03,
        optimizer="adamw_torch",  # 135M: the optimizer state is small, nothing to page
        train_rows=None,  # the whole catalog
        summary_tokens=80,  # the catalog's condition, battery and bundle lines mostly survive an 80-token cut
        max_length=112,
        save_steps=100,
        eval_size=400,  # every test item: a 135M model scores them in seconds
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
        eval_steps=500,
        val_rows=1000,
    ),
}
FIELDS = {f.name: f for f in dataclasses.fields(Preset) if f.name != "requested"}  # what a user may set
NULLS = ("none", "null")  # how a command line says None


def _problem(error: ValidationError) -> str:
    """pydantic's complaints as 'setting=value: what is allowed', one per bad setting."""
    parts = []
    for err in error.errors():
        if not err["loc"]:  # settings that disagree with each other: the message names them
            parts.append(err["msg"].removeprefix("Value error, "))
            continue
        key = ".".join(str(p) for p in err["loc"][:1])
        allowed = err["msg"][0].lower() + err["msg"][1:]
        if key in FIELDS and type(None) in typing.get_args(FIELDS[key].type):
            allowed += " (or none)"
        parts.append(f"{key}={err.get('input')!r}: {allowed}")
    return "; ".join(parts)


def get_preset(name: str, **settings) -> Preset:
    """The named preset with `settings` applied; an unknown name, key or bad value raises SettingError."""
    if name not in PRESETS:
        raise SettingError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    unknown = sorted(set(settings) - set(FIELDS))
    if unknown:
        raise SettingError(f"unknown setting(s) {', '.join(unknown)}: valid ones are {', '.join(FIELDS)}")
    try:
        return dataclasses.replace(PRESETS[name], **settings)
    except ValidationError as e:
        raise SettingError(f"preset {name!r}: {_problem(e)}") from None


def parse_settings(pairs) -> dict:
    """`key=value` strings typed from the Preset field each one sets (a later key wins over an earlier one)."""
    settings = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SettingError(f"--set takes key=value, got {pair!r}")
        if key not in FIELDS:
            raise SettingError(f"unknown setting {key!r} in --set {pair!r}: valid ones are {', '.join(FIELDS)}")
        settings[key] = parse_value(key, text)
    return settings


def parse_value(key: str, text: str):
    """One setting's value from text: 'none' for an optional one, commas for a list, else its field's type."""
    annotation = FIELDS[key].type
    text = text.strip()
    if text.lower() in NULLS and type(None) in typing.get_args(annotation):
        return None
    origin = typing.get_origin(typing.get_args(annotation)[0] if typing.get_origin(annotation) is Annotated
                               else annotation)
    value = tuple(v.strip() for v in text.split(",") if v.strip()) if origin is tuple else text
    try:
        return TypeAdapter(annotation, config=ConfigDict(allow_inf_nan=False)).validate_python(value)
    except ValidationError as e:
        allowed = "; ".join(err["msg"][0].lower() + err["msg"][1:] for err in e.errors())
        raise SettingError(f"--set {key}={text!r}: {allowed}") from None


def settings_of(preset: Preset) -> dict:
    """The values of `preset` that differ from its named preset's: what a user set."""
    base = PRESETS.get(preset.name)
    return {k: v for k, v in preset.to_dict().items() if base is None or getattr(base, k) != getattr(preset, k)}


def pricer_home() -> Path:
    """Where converted models, the catalog and caches live (`PRICER_HOME`, else ~/.cache/pricer)."""
    return Path(os.environ.get("PRICER_HOME", Path.home() / ".cache" / "pricer")).expanduser()


def flag(name: str) -> bool:
    """An environment switch: set to anything but '', '0', 'false' or 'no'."""
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def slug(text: str) -> str:
    """A name safe in file names: 'meta-llama/Llama-3.2-3B' -> 'meta-llama-llama-3-2-3b'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"
