"""Loading models: the embedded one from its wheel, quantized, and the course's 4-bit config."""

import pytest

from pricer.config import EMBEDDED
from pricer.errors import SettingError


def test_import_pricer_is_light():
    import subprocess
    import sys

    code = "import sys, pricer; pricer.Item; print(sorted(m for m in ('torch', 'transformers', 'peft', " \
           "'trl', 'bitsandbytes', 'datasets') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_embedded_model_converts_from_the_wheel_reloads_and_generates(tmp_path, monkeypatch):
    import torch

    from pricer import models, sources

    monkeypatch.setenv("PRICER_HOME", str(tmp_path))
    folder = sources.embedded_model()
    assert folder.parent.parent == tmp_path and (folder / "config.json").exists()
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temporary folder left behind
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

    with pytest.raises(SettingError, match="quant='3bit': choose 4bit, 8bit or None"):
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
