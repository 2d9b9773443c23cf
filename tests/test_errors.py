"""Known failures end in one clear message naming the problem and the fix."""

import importlib.metadata

import httpx
import pytest
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError

from pricer.errors import PricerError, hub_errors, require_bitsandbytes


def _http(status: int, cls=HfHubHTTPError):
    response = httpx.Response(status, request=httpx.Request("GET", "https://huggingface.co/x"))
    return cls(f"{status} Client Error", response=response)


def _wrapped(error):
    """As transformers raises it: an OSError whose cause is the Hub's error."""
    try:
        raise error
    except Exception as e:
        try:
            raise OSError("We couldn't load the files") from e
        except OSError as outer:
            return outer


@pytest.mark.parametrize("error, words", [
    (_http(401), ["401", "HF_TOKEN", "settings/tokens", "embedded"]),
    (_http(403), ["403", "permission", "embedded"]),
    (_http(403, GatedRepoError), ["gated", "accept its licence", "HF_TOKEN"]),
    (_wrapped(_http(401)), ["401", "HF_TOKEN"]),
    (OSError("You are trying to access a gated repo.\nMake sure..."), ["gated"]),
    (OSError("x is not a local folder and is not a valid model identifier listed"), ["neither a local folder"]),
    (_wrapped(LocalEntryNotFoundError("no cache")), ["Could not reach", "PRICER_OFFLINE=1"]),
])
def test_hub_failures_become_one_clear_message(error, words):
    with pytest.raises(PricerError) as info:
        with hub_errors("meta-llama/Llama-3.2-3B"):
            raise error
    message = str(info.value)
    assert all(w in message for w in words), message
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no 40-line chain


def test_write_token_is_asked_for_pushes():
    with pytest.raises(PricerError, match="write token"):
        with hub_errors("me/prompts", write=True):
            raise _http(403)


def test_unrelated_errors_pass_through():
    with pytest.raises(ZeroDivisionError):
        with hub_errors("x"):
            1 / 0
    with pytest.raises(OSError, match="disk full"):
        with hub_errors("x"):
            raise OSError("disk full")


def test_missing_bitsandbytes_says_what_to_install(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    with pytest.raises(PricerError, match=r"pip install 'bitsandbytes>=0.48'.*quant=None"):
        require_bitsandbytes()


def test_old_bitsandbytes_without_cuda_names_the_fix(monkeypatch):
    import torch

    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.45.5")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(PricerError, match=r"0.45.5 needs a CUDA GPU.*>=0.48.*T4 GPU"):
        require_bitsandbytes()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    require_bitsandbytes()  # an old version is fine on a GPU


def test_load_model_wraps_hub_errors(monkeypatch):
    import transformers

    from pricer import models

    def gated(*args, **kwargs):
        raise OSError("You are trying to access a gated repo.")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", gated)
    monkeypatch.setattr(models, "resolve_model", lambda name: name)
    with pytest.raises(PricerError, match="gated"):
        models.load_model("meta-llama/Llama-3.2-3B", quant=None)


def test_a_gpu_without_bf16_gets_fp16_said_once(monkeypatch, capsys):
    import torch

    from pricer import models

    models._say_fp16.cache_clear()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla T4")
    assert models.compute_dtype() == models.compute_dtype() == torch.float16
    assert capsys.readouterr().out.count("Tesla T4 has no bf16, so fp16") == 1
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert models.compute_dtype() == torch.bfloat16


def test_bad_input_sweep_has_no_crashes():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent.parent / "bench" / "bad_input_sweep.py"
    spec = importlib.util.spec_from_file_location("bad_input_sweep", path)
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    cases, by_api, problems, by_class = sweep.sweep()
    assert cases > 500 and problems == []
    assert sum(r["refused"] for r in by_api.values()) > 300  # most malformed rows and resources are refused
    assert {"resources", "files that are not files", "full and read-only disks", "destructive flags", "secrets",
            "records of the wrong shape"} <= set(by_class)


@pytest.mark.parametrize("value", ["9" * 400, float("inf"), float("nan"), "no number", None])
def test_non_numbers_and_infinities_are_unparsed(value):
    from pricer.evaluator import Tester

    assert Tester.post_process(value) is None
