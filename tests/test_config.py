"""Presets and their settings: typed from the field they set, range-checked, refused by name."""

import pytest

from pricer.config import PRESETS, get_preset, parse_settings, settings_of
from pricer.errors import SettingError


def test_settings_apply_without_changing_the_named_preset():
    assert get_preset("lite", train_rows=50).train_rows == 50
    assert get_preset("lite").train_rows == PRESETS["lite"].train_rows != 50
    assert settings_of(get_preset("lite", lora_r=8, train_rows=50)) == {"lora_r": 8, "train_rows": 50}


@pytest.mark.parametrize("pair, words", [
    ("batch_size=abc", ["batch_size", "'abc'", "integer"]),
    ("train_rows=1e2", ["train_rows", "'1e2'", "integer"]),
    ("train_rows=0", ["train_rows", "greater than or equal to 1"]),
    ("train_rows=-8", ["train_rows", "greater than or equal to 1"]),
    ("epochs=0", ["epochs", "greater than 0"]),
    ("quant=3bit", ["quant", "'4bit' or '8bit'"]),
    ("name=x y", ["name", "pattern"]),
    ("target_modules=q_proj,qkv", ["target_modules", "'o_proj'"]),
    ("lora_dropout=1.5", ["lora_dropout", "less than 1"]),
    ("optimizer=adamw", ["optimizer", "paged_adamw_32bit"]),
    ("lora_rank=8", ["unknown setting 'lora_rank'", "lora_r"]),
    ("train_rows", ["key=value"]),
])
def test_a_bad_value_is_refused_naming_the_setting_the_value_and_what_is_allowed(pair, words):
    with pytest.raises(SettingError) as info:
        get_preset("lite", **parse_settings([pair]))
    assert all(w in str(info.value) for w in words), str(info.value)


def test_values_are_typed_from_their_field_not_by_trying_casts():
    settings = parse_settings(["items=1e5", "prompts=data/a,b", "train_rows=none", "quant=none", "lora_r=16",
                               "learning_rate=1e-4", "target_modules=q_proj, v_proj", "lora_alpha=8"])
    assert settings == {"items": "1e5", "prompts": "data/a,b", "train_rows": None, "quant": None, "lora_r": 16,
                        "learning_rate": 1e-4, "target_modules": ("q_proj", "v_proj"), "lora_alpha": 8.0}
    preset = get_preset("tiny", **settings)
    assert preset.items == "1e5" and preset.target_modules == ("q_proj", "v_proj")


def test_a_required_value_is_not_made_none():
    with pytest.raises(SettingError, match="lora_r"):
        parse_settings(["lora_r=none"])


def test_python_values_are_checked_too():
    with pytest.raises(SettingError, match=r"preset 'tiny': epochs=0: input should be greater than 0"):
        get_preset("tiny", epochs=0)
    with pytest.raises(SettingError, match="unknown preset 'huge'.*tiny, smol, lite, full"):
        get_preset("huge")


def test_the_course_names_for_schedulers_and_optimizers_are_transformers_own():
    """A canary: every scheduler and optimizer a preset may name is one transformers knows."""
    import typing

    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    from pricer.config import FIELDS

    schedulers = typing.get_args(FIELDS["lr_scheduler"].type)
    optimizers = typing.get_args(FIELDS["optimizer"].type)
    assert set(schedulers) <= {s.value for s in SchedulerType}
    assert set(optimizers) <= {o.value for o in OptimizerNames}
    for preset in PRESETS.values():
        assert preset.lr_scheduler in schedulers and preset.optimizer in optimizers
