"""QLoRA fine-tuning with TRL's SFTTrainer: the course's recipe, resumable, sized to the device.

    from pricer.config import get_preset
    from pricer.train import train
    result = train(get_preset("tiny"))      # outputs/tiny-2026-11-23_12.00.00/
    result.adapter, result.losses           # the adapter folder (PeftModel.from_pretrained), loss per log

    python -m pricer train --preset lite --push me/pricer-lite    # rerun the same line to resume

The math is the course's (loss on the completion only, paged AdamW, cosine schedule, warmup 1%
of the steps, grad norm 0.3). What it adds:
- bf16 where the GPU has it, else fp16 with the LoRA weights kept in fp32 (a T4), fp32 on CPU;
- a memory preflight that refuses, naming what fits, instead of running out of memory;
- the effective batch split into the largest micro-batch that fits, gradient checkpointing only
  when nothing fits without it; on a GPU each decoder layer compiled and replayed as a CUDA graph
  (batch lengths rounded up to 16), on a CPU batches grouped by length (little padding);
- no needless waits for the GPU: metrics read once per log, no synchronize per optimizer tensor
  (with the above, ~3.6x the course's tokens/s on an H200 in both bf16 and fp16: bench/README.md);
- a run folder that a rerun of the same command finds and resumes from its last checkpoint;
- a training model always loaded fresh: a 4-bit model that ran inference on CPU trains with zero
  gradients (bitsandbytes repacks its weights), so such a model is refused.
"""

import contextlib
import functools
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path

from pricer import distributed
from pricer.errors import PricerError, hub_errors
from pricer.memory import BatchPlan, ModelShape, plan_batches
from pricer.speed import (PAD_MULTIPLE, compile_layers, grouped_trainer, lazy_metrics_trainer, optimizer_without_syncs,
                          score_completions_only)

RUN_FILE = "pricer_run.json"  # the resolved config a rerun matches on, and the run's status


@dataclass
class TrainResult:
    """Where a run lives and how it went."""

    run_dir: Path
    adapter: Path
    losses: list[float]
    steps: int
    resumed_from: str | None = None
    setup: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Setup:
    """How a preset trains on this device: precision, batch split and speed switches."""

    precision: str  # "bf16", "fp16" (LoRA weights stay fp32) or "fp32" (CPU)
    plan: BatchPlan
    grouped: bool = True  # batches of similar lengths: little compute spent on padding
    compiled: bool = False  # decoder layers compiled and replayed as CUDA graphs (GPU only)


def choose_precision() -> str:
    """bf16 where the GPU supports it, fp16 on older GPUs (T4), fp32 on CPU (no fast bf16 here)."""
    import torch

    if not torch.cuda.is_available():
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def device_budget_gb() -> float:
    """Memory training may use: 90% of the GPU (context, fragmentation), or of RAM on CPU."""
    import os

    import torch

    if torch.cuda.is_available():
        return 0.9 * torch.cuda.mem_get_info()[1] / 1e9
    return 0.9 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9


def warmup_steps(total_steps: int, fraction: float) -> int:
    """The course's warmup_ratio as steps (transformers 5 dropped warmup_ratio)."""
    return math.ceil(total_steps * fraction)


def total_steps(rows: int, batch_size: int, epochs: float, max_steps: int | None = None) -> int:
    """Optimizer steps of a run: the same for any micro-batch split of the same effective batch."""
    return max_steps if max_steps else math.ceil(epochs * math.ceil(rows / batch_size))


def check_lengths(tokenizer, rows: list[dict], max_length: int) -> list[int]:
    """Token counts as TRL makes them; refuse rows whose completion would be truncated away."""
    texts = [r["prompt"] + r["completion"] + tokenizer.eos_token for r in rows]
    lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]
    longest = max(range(len(rows)), key=lengths.__getitem__)
    too_long = sum(n > max_length for n in lengths)
    if too_long:
        raise PricerError(
            f"{too_long} of {len(rows)} training rows are longer than max_length={max_length} tokens (the "
            f"longest, row {longest}, has {lengths[longest]}): TRL would cut their completions off, drop "
            f"them and fail with 'num_samples=0'. Raise max_length to {lengths[longest]} or shorten the "
            "prompts (a smaller summary_tokens).")
    return lengths


def check_fresh(model) -> None:
    """Refuse a 4-bit model whose weights bitsandbytes repacked for CPU inference: it trains with zero grads."""
    used = [name for name, module in model.named_modules()
            if getattr(getattr(getattr(module, "weight", None), "quant_state", None), "packing_format_for_cpu", False)]
    if used:
        raise PricerError(
            f"This 4-bit model has already run inference on CPU: bitsandbytes repacked {len(used)} layers "
            f"(e.g. {used[0]}) for its inference kernel, and LoRA training on them gets zero gradients, "
            "silently. Train from a freshly loaded model: train(preset) loads its own.")


def keep_weights_packed_for_training(model) -> None:
    """Stop bitsandbytes repacking 4-bit weights on a CPU eval forward, so training can't be broken later."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def plan_setup(shape: ModelShape, preset, lengths: list[int], budget_gb: float | None = None,
               micro_batch: int | None = None, checkpointing: bool | None = None, fast: bool = True) -> Setup:
    """Precision and batch split for this device, or a PricerError naming the micro-batch or preset that fits."""
    import torch

    precision = choose_precision()
    compiled = fast and torch.cuda.is_available()
    grouped = fast and not compiled  # each batch shape compiles once: length groups would make many
    world = distributed.world_size()
    if preset.batch_size % world:
        raise PricerError(f"batch_size {preset.batch_size} can't be split evenly over {world} processes")
    per_process = replace(preset, batch_size=preset.batch_size // world)  # the effective batch stays the preset's
    plan = plan_batches(shape, per_process, lengths, budget_gb or device_budget_gb(), precision,
                        padded=True, compiled=compiled, micro_batch=micro_batch, checkpointing=checkpointing)
    return Setup(precision, plan, grouped=grouped, compiled=compiled)


@functools.cache
def report_to() -> str:
    """"wandb" when a W&B key is set; otherwise say once that the run goes untracked."""
    from pricer.env import load_secrets

    if "WANDB_API_KEY" in load_secrets():
        return "wandb"
    if distributed.is_main():
        print("pricer: no WANDB_API_KEY set, so this run is not tracked on W&B (add the key to .env or Colab "
              "secrets to track runs); training goes on.")
    return "none"


def build_trainer(model, tokenizer, rows: list[dict], preset, setup: Setup, run_dir: Path,
                  max_steps: int | None = None, push: str | None = None, callbacks=(), seed: int = 42,
                  resuming: bool = False):
    """The course's SFTTrainer, on the given fresh model, with this device's precision and batch split."""
    import os

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    check_fresh(model)
    keep_weights_packed_for_training(model)
    score_completions_only()
    on_cpu = not torch.cuda.is_available()
    optimizer = "adamw_torch" if on_cpu and preset.optimizer.startswith("paged") else preset.optimizer
    steps = total_steps(len(rows), preset.batch_size, preset.epochs, max_steps)
    if report_to() == "wandb":
        os.environ.setdefault("WANDB_PROJECT", "pricer")
    args = SFTConfig(
        output_dir=str(run_dir), run_name=run_dir.name, seed=seed, report_to=report_to(),
        num_train_epochs=preset.epochs, max_steps=max_steps or -1,
        per_device_train_batch_size=setup.plan.micro_batch, gradient_accumulation_steps=setup.plan.accumulation,
        activation_checkpointing=setup.plan.checkpointing,  # transformers 5 renamed gradient_checkpointing
        learning_rate=preset.learning_rate, lr_scheduler_type=preset.lr_scheduler,
        warmup_steps=warmup_steps(steps, preset.warmup_fraction), weight_decay=preset.weight_decay,
        optim=optimizer, max_grad_norm=preset.max_grad_norm,
        logging_nan_inf_filter=False,  # a NaN loss is logged as NaN; checking cost a GPU wait per micro-batch
        bf16=setup.precision == "bf16", fp16=setup.precision == "fp16", use_cpu=on_cpu,
        max_length=preset.max_length, completion_only_loss=True,  # lengths were checked already
        pad_to_multiple_of=PAD_MULTIPLE if setup.compiled else None,  # a few shapes: each compiles once
        logging_steps=max(1, steps // 50), save_strategy="steps", save_steps=preset.save_steps, save_total_limit=3,
        push_to_hub=bool(push), hub_model_id=push, hub_private_repo=True, hub_strategy="checkpoint",
        ddp_find_unused_parameters=False,  # LoRA on a frozen base: DDP needn't search the graph
    )
    one_gpu_per_process(args)
    peft = LoraConfig(r=preset.lora_r, lora_alpha=preset.lora_alpha, lora_dropout=preset.lora_dropout,
                      target_modules=list(preset.target_modules), task_type="CAUSAL_LM")
    trainer_class = lazy_metrics_trainer(SFTTrainer)
    trainer_class = grouped_trainer(trainer_class) if setup.grouped else trainer_class
    trainer = trainer_class(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                            peft_config=peft, callbacks=list(callbacks),
                            optimizer_cls_and_kwargs=optimizer_without_syncs(args))
    settle_trainable_dtype(trainer.model, setup.precision)
    graphs = graphs_are_safe(setup, resuming)
    if setup.compiled and not compile_layers(trainer.model, graphs, accumulating=setup.plan.accumulation > 1):
        setup = replace(setup, compiled=False)
    trainer.pricer_setup = setup  # what was actually applied (compiling may have fallen back)
    return trainer


def one_gpu_per_process(args) -> None:
    """Train on one GPU when one process sees several: Trainer would wrap the model in nn.DataParallel, which
    TRL refuses ("does not support `nn.DataParallel`"; met on a 2-GPU H200). `--gpus N` runs data-parallel."""
    if distributed.world_size() == 1 and args.n_gpu > 1:
        print(f"pricer: {args.n_gpu} GPUs visible; training on the first (--gpus {args.n_gpu} trains on all of them)")
        args._n_gpu = 1  # what Trainer itself sets for a model placed with device_map


def graphs_are_safe(setup: Setup, resuming: bool) -> bool:
    """CUDA graphs only where they were proven on a GPU: one process, no activation checkpointing (it
    reruns forwards inside the backward), a fresh run (resuming in the same process after an interrupt
    failed on an H100: "accessing tensor output of CUDAGraphs that has been overwritten"). Elsewhere
    the layers are compiled without graphs: slower, same math."""
    return distributed.world_size() == 1 and not setup.plan.checkpointing and not resuming


def settle_trainable_dtype(model, precision: str) -> None:
    """LoRA weights in fp32 unless training in bf16: TRL casts them to bf16, which fp16 AMP can't unscale
    ("_amp_foreach_non_finite_check_and_unscale_cuda" not implemented for 'BFloat16') and a CPU runs slowly."""
    if precision != "bf16":
        for param in model.parameters():
            if param.requires_grad:
                param.data = param.data.float()


def training_rows(preset) -> list[dict]:
    """The preset's training rows (its `prompts` dataset, first `train_rows`)."""
    from pricer.items import load_prompts

    rows = load_prompts(preset.prompts)["train"]
    rows = rows[:preset.train_rows] if preset.train_rows else rows
    if not rows:
        raise PricerError(f"{preset.prompts!r} has no usable training rows (train_rows={preset.train_rows})")
    return rows


def run_identity(preset, rows: list[dict], max_steps: int | None) -> dict:
    """What makes two runs the same run: the resolved preset, the step cap and the data."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True).encode())
    return json.loads(json.dumps({"preset": preset.to_dict(), "max_steps": max_steps,
                                  "data": digest.hexdigest()[:16]}))  # compared as stored: lists, not tuples


def find_run(output_dir: Path, identity: dict) -> Path | None:
    """The newest run folder of this identity under output_dir, finished or not."""
    runs = [p.parent for p in Path(output_dir).glob(f"{identity['preset']['name']}-*/{RUN_FILE}")
            if json.loads(p.read_text())["identity"] == identity]
    return max(runs, default=None)


def last_checkpoint(run_dir: Path) -> str | None:
    """The checkpoint folder with the highest step, if any."""
    ckpts = [p for p in run_dir.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
    return str(max(ckpts, key=lambda p: int(p.name.split("-")[1]))) if ckpts else None


def _write_run(run_dir: Path, **fields) -> None:
    if not distributed.is_main():
        return
    path = run_dir / RUN_FILE
    record = {**(json.loads(path.read_text()) if path.exists() else {}), **fields}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1, default=str))
    tmp.replace(path)


def train(preset, output_dir: str | Path = "outputs", max_steps: int | None = None, push: str | None = None,
          micro_batch: int | None = None, checkpointing: bool | None = None, fast: bool = True,
          budget_gb: float | None = None, callbacks=()) -> TrainResult:
    """Fine-tune the preset's base model with QLoRA; a rerun resumes, a finished run is returned as is."""
    from pricer.models import load_model, load_tokenizer

    rows = training_rows(preset)
    identity = run_identity(preset, rows, max_steps)
    run_dir = find_run(output_dir, identity)
    if run_dir and json.loads((run_dir / RUN_FILE).read_text()).get("status") == "finished":
        record = json.loads((run_dir / RUN_FILE).read_text())
        print(f"pricer: {run_dir} already finished this run; returning it (delete the folder to train again)")
        return TrainResult(run_dir, run_dir, record["losses"], record["steps"], None, record["setup"])
    tokenizer = load_tokenizer(preset.base_model)
    lengths = check_lengths(tokenizer, rows, preset.max_length)
    setup = plan_setup(ModelShape.from_pretrained(preset.base_model), preset, lengths, budget_gb, micro_batch,
                       checkpointing, fast)
    with distributed.main_first():  # several GPUs: the main process makes the folder, the others find it
        run_dir = run_dir or find_run(output_dir, identity)
        if run_dir is None:
            run_dir = Path(output_dir) / f"{preset.name}-{datetime.now():%Y-%m-%d_%H.%M.%S}"
            run_dir.mkdir(parents=True)
            _write_run(run_dir, identity=identity, status="running", setup=asdict(setup))
    resume = last_checkpoint(run_dir)
    if distributed.is_main():
        print(f"pricer: training {preset.name} in {run_dir} ({setup.precision}, micro-batch {setup.plan.micro_batch}"
              f" x {setup.plan.accumulation}, checkpointing {'on' if setup.plan.checkpointing else 'off'}, "
              f"~{setup.plan.peak_gb} GB){'; resuming from ' + Path(resume).name if resume else ''}")
    model = load_model(preset.base_model, preset.quant)  # always fresh: see check_fresh
    with hub_errors(push, write=True) if push else contextlib.nullcontext():
        trainer = build_trainer(model, tokenizer, rows, preset, setup, run_dir, max_steps, push, callbacks,
                                resuming=bool(resume))
        _train_or_explain(trainer, resume, setup)
        trainer.save_model()  # the adapter in the run folder (and the Hub repo's root, when pushing)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    applied = asdict(trainer.pricer_setup)
    _write_run(run_dir, status="finished", losses=losses, steps=trainer.state.global_step, setup=applied)
    return TrainResult(run_dir, run_dir, losses, trainer.state.global_step, resume, applied)


def latest_adapter(output_dir: str | Path = "outputs", preset: str | None = None) -> Path | None:
    """The newest finished run's adapter folder under output_dir (of `preset`, if given)."""
    runs = [p.parent for p in Path(output_dir).glob(f"{preset or '*'}-*/{RUN_FILE}")
            if json.loads(p.read_text()).get("status") == "finished"]
    return max(runs, key=lambda p: p.name.split("-", 1)[1], default=None)


def _train_or_explain(trainer, resume: str | None, setup: Setup) -> None:
    """Run the trainer; out of GPU memory, or CUDA graphs failing, becomes a message saying how to go on."""
    import torch

    try:
        trainer.train(resume_from_checkpoint=resume)
    except torch.OutOfMemoryError:
        smaller = max(1, setup.plan.micro_batch // 2)
        raise PricerError(
            f"Out of GPU memory at micro-batch {setup.plan.micro_batch} (the preflight expected "
            f"~{setup.plan.peak_gb} GB of {setup.plan.budget_gb:.1f}). Rerun with micro_batch={smaller} "
            f"(--micro-batch {smaller}{'' if setup.plan.checkpointing else ' --checkpointing'}); the "
            "effective batch stays the same and the run resumes from its last checkpoint.") from None
    except RuntimeError as e:
        if "CUDAGraphs" not in str(e):
            raise
        raise PricerError(
            f"CUDA graphs failed mid-training ({str(e)[:90]}...). Rerun the same command: it resumes from "
            "the last checkpoint, and a resumed run compiles its layers without CUDA graphs.") from e
