"""Presets, the offline switch, and loading the embedded model from its wheel."""

import dataclasses

import pytest

from pricer import config
from pricer.config import EMBEDDED, HUB_MODEL, get_preset


def test_lite_and_full_are_the_course_values():
    lite, full = get_preset("lite"), get_preset("full")
    assert (lite.base_model, lite.quant, lite.lora_r, lite.lora_alpha, lite.lora_dropout) == \
        (HUB_MODEL, "4bit", 32, 64, 0.1)
    assert lite.target_modules == ("q_proj", "k_proj", "v_proj", "o_proj")
    assert (lite.epochs, lite.batch_size, lite.learning_rate, lite.train_rows) == (1, 32, 1e-4, 20_000)
    assert (lite.optimizer, lite.max_grad_norm, lite.weight_decay, lite.warmup_fraction) == \
        ("paged_adamw_32bit", 0.3, 0.001, 0.01)
    assert (full.lora_r, full.lora_alpha, full.epochs, full.batch_size, full.train_rows) == \
        (256, 512, 3, 256, 800_000)
    assert set(full.target_modules) == set(lite.target_modules) | {"gate_proj", "up_proj", "down_proj"}
    assert (lite.summary_tokens, lite.max_length) == (110, 128)


def test_overrides_apply_and_unknown_keys_are_rejected():
    assert get_preset("lite", train_rows=5).train_rows == 5
    assert get_preset("lite").train_rows == 20_000  # presets are not mutated
    with pytest.raises(ValueError, match="unknown preset setting.*lora_rank"):
        get_preset("lite", lora_rank=8)
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        get_preset("huge")
    assert dataclasses.asdict(get_preset("tiny"))["base_model"] == EMBEDDED


def test_offline_switch_resolves_hub_names_to_embedded_and_says_so_once(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("PRICER_OFFLINE", "1")
    config._announce.cache_clear()
    assert config.resolve(HUB_MODEL) == EMBEDDED
    assert config.resolve("ed-donner/items_lite") == EMBEDDED
    config.resolve(HUB_MODEL)
    assert capsys.readouterr().out.count(repr(HUB_MODEL)) == 1
    assert config.resolve(str(tmp_path)) == str(tmp_path)  # local folders always win


def test_online_names_pass_through(monkeypatch):
    monkeypatch.setenv("PRICER_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(config, "hub_reachable", lambda: True)
    assert config.resolve(HUB_MODEL) == HUB_MODEL


def test_import_pricer_is_light():
    import subprocess
    import sys

    code = "import sys, pricer; pricer.Item; print(sorted(m for m in ('torch', 'transformers', 'peft', " \
           "'trl', 'bitsandbytes', 'datasets') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_embedded_model_converts_from_the_wheel_reloads_and_generates(tmp_path, monkeypatch):
    import torch

    from pricer import models

    monkeypatch.setenv("PRICER_HOME", str(tmp_path))
    folder = models.embedded_model_path()
    assert folder.parent.parent == tmp_path and (folder / "config.json").exists()
    assert not (folder.parent / (folder.name + ".partial")).exists()
    tokenizer = models.load_tokenizer(EMBEDDED)
    model = models.load_model(str(folder), quant=None)  # a plain local folder, like a Hub name
    assert tokenizer.pad_token == tokenizer.eos_token == "<|im_end|>"
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    assert models.footprint_gb(model) == pytest.approx(0.54, abs=0.02)
    inputs = tokenizer("The capital of France is", return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, inputs.input_ids.shape[1]:])
    again = models.load_model(EMBEDDED, quant=None)  # second call reuses the folder
    assert torch.equal(again.lm_head.weight, model.lm_head.weight)


@pytest.mark.parametrize("quant, max_gb", [("8bit", 0.25), ("4bit", 0.2)])
def test_quantized_embedded_model_is_smaller(quant, max_gb):
    from pricer.models import footprint_gb, load_model

    assert footprint_gb(load_model(EMBEDDED, quant=quant)) < max_gb


def test_bad_quant_is_rejected():
    from pricer.models import quant_config

    with pytest.raises(ValueError, match="quant must be one of"):
        quant_config("3bit")


def test_four_bit_config_is_the_courses():
    import torch

    from pricer.models import quant_config

    q = quant_config("4bit")
    assert (q.load_in_4bit, q.bnb_4bit_use_double_quant, q.bnb_4bit_quant_type) == (True, True, "nf4")
    assert q.bnb_4bit_compute_dtype == torch.float32  # CPU; bf16 / fp16 on GPUs


@pytest.mark.parametrize("width", [576, 1024])  # 576 = SmolLM2's hidden size: blocks of 128 straddle its rows
def test_nf4_roundtrip_loses_more_with_bigger_blocks_and_stores_fewer_bits(width):
    """Notebook 1's lesson, on a matrix whose rows don't hold whole blocks as well as on one whose rows do."""
    import torch

    from pricer.quantization import nf4_roundtrip

    weight = torch.randn(width, width, generator=torch.Generator().manual_seed(0))
    reports = [nf4_roundtrip(weight, blocksize=size)[1] for size in (64, 128, 256)]
    errors = [r["relative_error"] for r in reports]
    assert errors == sorted(errors) and all(0.05 < e < 0.15 for e in errors), errors
    bits = [r["bits_per_weight"] for r in reports]
    assert bits == sorted(bits, reverse=True) and 4 < bits[-1] < bits[0] < 4.3, bits
