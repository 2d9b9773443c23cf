"""The training bench's Unsloth arm: one configuration per process, in Unsloth's own site folder.

    python bench/unsloth_arm.py --model DIR --config unsloth_padded_nockpt_bf16 --out result.json

`bench/train_throughput.py` starts one such process per configuration, with PYTHONPATH set to Unsloth's
site folder (bench/unsloth_env.py) and HF_HUB_OFFLINE=1, on the model folder it saved (Llama-3.2-3B-shaped
random weights, the real Llama 3.2 tokenizer beside them) and the same rows. A configuration's name says
what it sets, `unsloth_<padding>[_nockpt][_drop]_<bf16|fp16>`:

- padding `auto`: Unsloth's own choice (UNSLOTH_PADDING_CHOICE unset; padding-free on an H200, which it has not
  measured), `padded`: padded batches and its compiled blocks, `free`: padding-free forced;
- `_nockpt`: no gradient checkpointing (otherwise Unsloth's own, "unsloth", its recommended setting);
- `_drop`: LoRA dropout 0.1 as the course has it (otherwise 0, Unsloth's recommended setting, which its fast
  LoRA kernels need).

Everything else is the course's cell: 4-bit NF4 with double quantization, LoRA r=32 / alpha 64 on q,k,v,o,
TRL's SFTTrainer with batch 32, max_length 128, paged AdamW 32-bit, lr 1e-4 cosine, seed 42. Unsloth's trainer
logs no `num_tokens`, so real tokens are counted from the batches each step receives, along with how many
labels take part in the loss (4 per row when the completion mask is used, every real token when not).
Each process records Unsloth's versions, the attention it used and the padding the trainer chose.
`--stock` builds the same trainer with peft and TRL instead of Unsloth: the CPU smoke of this file.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

PADDING = {"auto": None, "padded": "padded", "free": "padding_free"}
LORA = dict(r=32, lora_alpha=64, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], bias="none")


def parse(name: str) -> dict:
    """What a configuration's name asks for, or a clear error naming the grammar."""
    parts = name.split("_")
    ok = (len(parts) >= 3 and parts[0] == "unsloth" and parts[1] in PADDING and parts[-1] in ("bf16", "fp16", "fp32")
          and set(parts[2:-1]) <= {"nockpt", "drop"})
    if not ok:
        raise SystemExit(f"unknown Unsloth configuration {name!r}: expected unsloth_<auto|padded|free>"
                         "[_nockpt][_drop]_<bf16|fp16>")
    return {"padding": parts[1], "checkpointing": "nockpt" not in parts, "dropout": 0.1 if "drop" in parts else 0.0,
            "precision": parts[-1]}


def run_in_own_process(name: str, model_dir: Path, rows_args: dict, site: str | None, timeout_s: float,
                       stock: bool = False) -> dict:
    """One configuration in a fresh interpreter whose path starts with `site`; its result, or why it failed."""
    settings = parse(name)
    out = model_dir.parent / f"{name}.json"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "UNSLOTH_PADDING_CHOICE")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", UNSLOTH_DISABLE_STATISTICS="1", PYTHONUNBUFFERED="1",
               UNSLOTH_COMPILE_LOCATION=str(model_dir.parent / "unsloth_compiled_cache"))  # not the working folder
    if site:
        env["PYTHONPATH"] = site
    if PADDING[settings["padding"]]:
        env["UNSLOTH_PADDING_CHOICE"] = PADDING[settings["padding"]]
    cmd = [sys.executable, __file__, "--model", str(model_dir), "--config", name, "--out", str(out),
           *[f"--{k}={v}" for k, v in rows_args.items()], *(["--stock"] if stock else [])]
    print(f"--- {name} (own process{', stock peft + TRL' if stock else ''})", flush=True)
    try:
        done = subprocess.run(cmd, env=env, timeout=timeout_s, capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        return {"precision": settings["precision"], "error": f"timed out after {timeout_s:.0f} s"}
    log = done.stdout + done.stderr
    if done.returncode or not out.exists():
        print(log[-4000:], flush=True)
        return {"precision": settings["precision"], "error": f"exit {done.returncode}: {log.strip()[-300:]}"}
    result = json.loads(out.read_text())
    result["log_tail"] = [line for line in log.splitlines() if "Unsloth" in line or "==((====))==" in line][:20]
    print(json.dumps({k: v for k, v in result.items() if k not in ("log_tail", "losses", "grad_norms")}), flush=True)
    return result


def fastest(results: dict, precision: str, limit_gb: float | None = None) -> str | None:
    """The Unsloth configuration of `precision` with the shortest step whose peak is within `limit_gb`."""
    fits = [(r["s_per_step"], n) for n, r in results.items() if n.startswith("unsloth") and "s_per_step" in r
            and r.get("precision") == precision and (limit_gb is None or (r.get("peak_gb") or 0) <= limit_gb)]
    return min(fits)[1] if fits else None


def count_inputs(trainer) -> list:
    """Per step, the real tokens and the labels in the loss, kept as device tensors (read after training:
    a read each step would make the CPU wait for the GPU and slow what is timed)."""
    import torch

    seen = []
    step = trainer.training_step

    def counted(model, inputs, *args, **kwargs):
        ids, mask, labels = inputs["input_ids"], inputs.get("attention_mask"), inputs.get("labels")
        real = mask.sum() if mask is not None else torch.tensor(ids.numel())
        seen.append((real, None if labels is None else (labels != -100).sum(), list(ids.shape)))
        return step(model, inputs, *args, **kwargs)

    trainer.training_step = counted
    return seen


def versions() -> dict:
    import importlib.metadata as md

    found = {}
    for name in ("unsloth", "unsloth_zoo", "torch", "transformers", "trl", "peft", "bitsandbytes", "datasets",
                 "accelerate", "triton", "xformers", "flash_attn"):
        try:
            found[name] = md.version(name)
        except md.PackageNotFoundError:
            found[name] = None
    return found


def attention(model) -> dict:
    """The attention the model runs: transformers' setting and Unsloth's view of xformers / flash-attention."""
    seen = {"attn_implementation": getattr(model.config, "_attn_implementation", None)}
    try:
        from unsloth.models import _utils

        seen.update(xformers=getattr(_utils, "xformers_version", None) or None,
                    flash_attention=getattr(_utils, "HAS_FLASH_ATTENTION", None))
    except ImportError:
        pass
    return seen


def build(args, settings: dict):
    """The model and trainer for one configuration: Unsloth's loader and LoRA, TRL's trainer as the course sets it."""
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[settings["precision"]]
    ckpt = "unsloth" if settings["checkpointing"] else False
    if args.stock:
        from peft import LoraConfig, get_peft_model
        from train_throughput import load_4bit

        model = load_4bit(Path(args.model), dtype)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.model)
        model = get_peft_model(model, LoraConfig(**LORA, lora_dropout=settings["dropout"], task_type="CAUSAL_LM"))
    else:
        from unsloth import FastLanguageModel

        model, tokenizer = FastLanguageModel.from_pretrained(model_name=args.model, max_seq_length=128, dtype=dtype,
                                                             load_in_4bit=True, local_files_only=True,
                                                             use_gradient_checkpointing=ckpt)
        model = FastLanguageModel.get_peft_model(model, **LORA, lora_dropout=settings["dropout"],
                                                 use_gradient_checkpointing=ckpt, random_state=42)
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from train_throughput import course_args, make_rows

    rows = make_rows(args.rows, args.top, args.eos)
    config = SFTConfig(**course_args(Path(args.out).parent / args.config, settings["precision"], args.warmup + args.steps))
    trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    return model, trainer


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="the folder train_throughput.py saved (weights + tokenizer)")
    p.add_argument("--config", required=True, help="unsloth_<auto|padded|free>[_nockpt][_drop]_<bf16|fp16>")
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--top", type=int, required=True, help="row token ids are drawn below this")
    p.add_argument("--eos", type=int, required=True)
    p.add_argument("--stock", action="store_true", help="peft + TRL instead of Unsloth (CPU smoke)")
    args = p.parse_args(argv)
    settings = parse(args.config)
    if not args.stock:
        import unsloth  # noqa: F401  before transformers, trl and peft, which it patches
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from train_throughput import measure

    model, trainer = build(args, settings)
    seen = count_inputs(trainer)
    per_step = lambda: [int(real) for real, _, _ in seen]  # noqa: E731
    result = {"precision": settings["precision"], **measure(trainer, args.warmup, per_step)}
    first = seen[0] if seen else None
    result.update(
        settings={**settings, "lora_dropout": settings["dropout"], "padding_choice_env": os.environ.get(
            "UNSLOTH_PADDING_CHOICE", "auto"), "stock": args.stock},
        padding_free=bool(getattr(trainer.args, "padding_free", False)),
        first_batch={"input_shape": first[2], "real_tokens": int(first[0]),
                     "loss_labels": None if first[1] is None else int(first[1]),
                     "completion_labels_expected": 4 * trainer.args.per_device_train_batch_size} if first else None,
        attention=attention(model), versions=versions())
    Path(args.out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
