"""QLoRA fine-tuning with TRL's SFTTrainer: the course's recipe, resumable, sized to the device.

    from pricer.config import get_preset
    from pricer.train import train
    result = train(get_preset("tiny"))      # outputs/tiny-2026-11-23_12.00.00/
    result.run_dir, result.losses           # the adapter folder (PeftModel.from_pretrained), loss per log

    python -m pricer train --preset lite --push me/pricer-lite    # rerun the same line to resume

The math is the course's (loss on the completion only, paged AdamW, cosine schedule, warmup 1%
of the steps, grad norm 0.3, a validation loss at each checkpoint). Notebook 4 builds the same
run step by step from the pieces below (`lora_config`, `sft_config`, then the course's
`SFTTrainer(...)` and the speed-ups applied to it one line each, ending with `speed_up`):
- bf16 where the GPU has it, else fp16 with the LoRA weights kept in fp32 (a T4), fp32 on CPU;
- a memory preflight that refuses, naming what fits, instead of running out of memory;
- the effective batch split into the largest micro-batch that fits, gradient checkpointing only
  when nothing fits without it; on a GPU each decoder layer compiled and replayed as a CUDA graph,
  each batch's rows packed one after another (no padding in the matmuls), on a CPU batches grouped
  by length (little padding); where
  compiling or graph capture fails mid-run (an older GPU), the layers run eagerly from that
  micro-batch on, said in one line, and the run records compiled=False;
- no needless waits for the GPU: metrics read once per log; where paged AdamW would page nothing (lite)
  and LoRA weights are fp32 anyway (fp16, CPU), torch's fused AdamW (bitsandbytes' math, one kernel for
  all tensors, no GradScaler read per step), elsewhere bitsandbytes' without its synchronize per tensor;
- a run folder (`pricer.runs`) that a rerun of the same command finds and resumes from its last
  good checkpoint, on Drive or, with `push`, from the Hub;
- a training model always loaded fresh: a 4-bit model that ran inference on CPU trains with zero
  gradients (bitsandbytes repacks its weights), so such a model is refused.
"""

import contextlib
import functools
import math
import weakref
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from pricer import distributed
from pricer.errors import PricerError, hub_errors
from pricer.memory import BatchPlan, Device, ModelShape, plan_batches
from pricer.patches import status as patch_status
from pricer.patches.transformers import use_one_gpu
from pricer.patches.bitsandbytes import check_fresh, keep_weights_packed_for_training  # noqa: F401
from pricer.runs import Run, finish_run, open_run
from pricer.speed import (PAD_MULTIPLE, compile_failed, compile_layers, eager_layers, graphs_used, grouped_trainer,
                          is_compiled, lazy_metrics_trainer, optimizer_for_lora, pack_rows, positions_found_on_cpu,
                          score_completions_only, torch_adamw_replaces)

SAVE_LIMIT = 3  # checkpoints kept: enough to step back over a damaged one
_APPLIED = weakref.WeakKeyDictionary()  # trainer -> the Setup actually applied (compiling may fall back)


@dataclass(frozen=True)
class Options:
    """How to run a training, beside the preset's what: a trial step cap, a Hub repo, forced splits, speed."""

    max_steps: int | None = None  # stop after N optimizer steps (a short trial run)
    push: str | None = None  # also push checkpoints and the adapter to this private Hub repo
    micro_batch: int | None = None  # rows per forward pass (default: the largest that fits)
    checkpointing: bool | None = None  # force gradient checkpointing on or off (default: only when needed)
    fast: bool = True  # compiled layers / length-grouped batches; False: the course's plain padded batches
    budget_gb: float | None = None  # memory training may use (default: 90% of the GPU, or of RAM)
    seed: int = 42

    def __post_init__(self):
        for name in ("max_steps", "micro_batch"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise PricerError(f"{name} must be a whole number of at least 1 (or unset), not {value!r}")


@dataclass
class TrainResult:
    """Where a run lives (the adapter folder) and how it went."""

    run_dir: Path
    losses: list[float]
    steps: int
    resumed_from: str | None = None
    setup: dict = field(default_factory=dict)
    eval_losses: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Setup:
    """How a preset trains on this device: precision, batch split and speed switches."""

    precision: str  # "bf16", "fp16" (LoRA weights stay fp32) or "fp32" (CPU)
    plan: BatchPlan
    grouped: bool = True  # batches of similar lengths: little compute spent on padding
    compiled: bool = False  # decoder layers compiled and replayed as CUDA graphs (GPU only)


def device_budget_gb() -> float:
    """Memory training may use: 90% of the GPU (context, fragmentation; a T4's under PRICER_T4), or of RAM on CPU."""
    import os

    import torch

    from pricer.models import gpu_memory_gb

    if torch.cuda.is_available():
        return 0.9 * gpu_memory_gb()[1]
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


def plan_setup(shape: ModelShape, preset, lengths: list[int], options: Options = Options()) -> Setup:
    """Precision and batch split for this device, or a PricerError naming the micro-batch or preset that fits."""
    import torch

    from pricer.models import precision

    compiled = options.fast and torch.cuda.is_available()
    world = distributed.world_size()
    # On a GPU, padded batches replayed from one CUDA graph: grouped lengths took a graph each, and on an H200
    # switching between them every step cost what the padding saved (bench/README.md). A CPU groups them.
    grouped = options.fast and patch_status().train_sampler and not compiled
    if preset.batch_size % world:
        raise PricerError(f"batch_size {preset.batch_size} can't be split evenly over {world} processes")
    per_process = replace(preset, batch_size=preset.batch_size // world)  # the effective batch stays the preset's
    device = Device(options.budget_gb or device_budget_gb(), precision(), padded=True, compiled=compiled)
    plan = plan_batches(shape, per_process, lengths, device, options.micro_batch, options.checkpointing)
    return Setup(precision(), plan, grouped=grouped, compiled=compiled)


def report_to() -> str:
    """"wandb" when a W&B key is set and W&B can be reached; otherwise "none", said once."""
    from pricer.env import secret
    from pricer.sources import offline_asked

    if not secret("WANDB_API_KEY"):
        return _untracked("no WANDB_API_KEY set (add it to .env or Colab secrets to track runs)")
    if offline_asked() or not _reachable("api.wandb.ai"):
        return _untracked("W&B can't be reached (offline)")
    return "wandb"


_SAID: set[str] = set()


def _untracked(why: str) -> str:
    if why not in _SAID and distributed.is_main():
        _SAID.add(why)
        print(f"pricer: this run is not tracked on W&B: {why}; training goes on.")
    return "none"


def _reachable(host: str) -> bool:
    import socket

    try:
        socket.create_connection((host, 443), timeout=3).close()
        return True
    except OSError:
        return False


def optimizer_for(preset) -> str:
    """The preset's optimizer, or plain AdamW on CPU for a paged one (paging moves state to GPU memory)."""
    import torch

    paged = preset.optimizer.startswith("paged")
    return "adamw_torch" if paged and not torch.cuda.is_available() else preset.optimizer


def lora_config(preset):
    """The course's LoraConfig for this preset (notebook 4 writes the same call out)."""
    from peft import LoraConfig

    return LoraConfig(r=preset.lora_r, lora_alpha=preset.lora_alpha, lora_dropout=preset.lora_dropout,
                      target_modules=list(preset.target_modules), task_type="CAUSAL_LM")


def sft_config(preset, setup: Setup, run_dir: Path, steps: int, options: Options = Options(), evaluating: bool = True):
    """The course's SFTConfig for this preset on this device (notebook 4 writes the same call out)."""
    from trl import SFTConfig

    args = SFTConfig(
        output_dir=str(run_dir), run_name=Path(run_dir).name, seed=options.seed, report_to=report_to(),
        num_train_epochs=preset.epochs, max_steps=options.max_steps or -1,
        per_device_train_batch_size=setup.plan.micro_batch, gradient_accumulation_steps=setup.plan.accumulation,
        activation_checkpointing=setup.plan.checkpointing,
        learning_rate=preset.learning_rate, lr_scheduler_type=preset.lr_scheduler,
        warmup_steps=warmup_steps(steps, preset.warmup_fraction), weight_decay=preset.weight_decay,
        optim=optimizer_for(preset), max_grad_norm=preset.max_grad_norm,
        bf16=setup.precision == "bf16", fp16=setup.precision == "fp16",
        max_length=preset.max_length, completion_only_loss=True,
        logging_steps=max(1, steps // 50), save_steps=preset.save_steps, save_total_limit=SAVE_LIMIT,
        eval_strategy="steps" if evaluating else "no", eval_steps=preset.eval_steps or preset.save_steps,
        per_device_eval_batch_size=setup.plan.micro_batch,
        push_to_hub=bool(options.push), hub_model_id=options.push, hub_private_repo=True, hub_strategy="checkpoint",
        **device_settings(setup),
    )
    one_gpu_per_process(args)
    return args


def device_settings(setup: Setup) -> dict:
    """What pricer adds to the course's SFTConfig: CPU use, padding for compiled shapes, no per-step waits, and on a
    GPU batches collated in a worker process while the step runs."""
    import torch

    return dict(
        use_cpu=not torch.cuda.is_available(),
        pad_to_multiple_of=PAD_MULTIPLE if setup.compiled else None,  # a few shapes: each compiles once
        logging_nan_inf_filter=False,  # a NaN loss is logged as NaN; checking cost a GPU wait per micro-batch
        # batches reach the GPU from pinned memory without a wait for the work queued before them
        accelerator_config={"non_blocking": True} if torch.cuda.is_available() else None,
        # a GPU step is as short as Python's part of it: collating (and packing) in a worker takes it off that path
        dataloader_num_workers=1 if torch.cuda.is_available() else 0,
        dataloader_persistent_workers=torch.cuda.is_available(),
        ddp_find_unused_parameters=False,  # LoRA on a frozen base: DDP needn't search the graph
    )


def read_metrics_once_per_log(trainer) -> None:
    """TRL reads entropy and token accuracy after every forward (a wait for the GPU each): once per log instead;
    and the positions its loss scores are found by the CPU as it collates, not by a boolean mask on the GPU."""
    _extend(trainer, lazy_metrics_trainer)
    positions_found_on_cpu(trainer)


def optimizer_without_gpu_waits(trainer) -> None:
    """Where paged AdamW would page no LoRA tensor and the LoRA weights are fp32 anyway (fp16, CPU): torch's
    fused AdamW (its state takes their dtype; bitsandbytes' 32-bit state is fp32), which in fp16 also spares
    GradScaler's wait for the GPU each step. Else (bf16 too) bitsandbytes' own without its wait after every
    tensor (pricer.speed.optimizer_for_lora). Read when training creates the optimizer."""
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    if torch_adamw_replaces(trainer.args.optim, [p.numel() for p in params], trainer.args.bf16):
        _trainable_in_fp32(trainer.model)  # before the choice: the fused kernel wants fp32 tensors, here all of them
    trainer.optimizer_cls_and_kwargs = optimizer_for_lora(trainer.args, params)


def group_rows_by_length(trainer, setup: Setup) -> None:
    """With `setup.grouped` (a CPU): batches of rows of similar length, in random order, so little padding."""
    if setup.grouped:
        _extend(trainer, grouped_trainer)


def loss_on_completions_only(trainer) -> None:
    """TRL's loss projects only the completion's positions on a CPU too; apply it after the two above
    (its scope must cover their loss)."""
    _extend(trainer, score_completions_only)


def _extend(trainer, wrap) -> None:
    """Give a made trainer the methods `wrap` adds to its class: the course's `SFTTrainer(...)` call stays
    as it is written, and each speed-up is one named line after it."""
    trainer.__class__ = wrap(type(trainer))


@functools.cache
def _eager_evaluation(trainer_class):
    class EagerEvaluation(trainer_class):
        def evaluate(self, *args, **kwargs):
            import torch

            with torch.compiler.set_stance("force_eager"):
                return super().evaluate(*args, **kwargs)

    return EagerEvaluation


@functools.cache
def _eager_on_compile_failure(trainer_class):
    class EagerOnCompileFailure(trainer_class):
        """A micro-batch whose compiled layers fail to compile or replay, in the forward or in a backward that
        torch compiles lazily (outside the layers' calls), is rerun with the layers' own eager forwards."""

        def training_step(self, model, inputs, num_items_in_batch=None):
            first = getattr(self, "_step_seen", None) != self.state.global_step  # first micro-batch of its step
            self._step_seen = self.state.global_step
            try:
                return super().training_step(model, inputs, num_items_in_batch)
            except Exception as error:
                if not compile_failed(error) or not eager_layers(self.model):
                    raise
                why = " ".join(f"{type(error).__name__}: {error}".split())[:110]
            # rerun outside the handler: the failed step's traceback (and the activations it holds) is freed
            if first:  # a failed backward may have summed some layers' gradients: this step has no others
                self.model.zero_grad(set_to_none=True)
            _APPLIED[self] = replace(_APPLIED[self], compiled=False)
            kept = "" if first else "; the gradients of this step's earlier micro-batches are kept"
            print(f"pricer: compiled layers failed mid-training ({why}); training on with eager layers from "
                  f"step {self.state.global_step + 1}, this micro-batch rerun{kept}")
            return super().training_step(model, inputs, num_items_in_batch)

    return EagerOnCompileFailure


def prepare_model(model) -> None:
    """Before training: refuse a 4-bit model that ran CPU inference, and keep this one trainable."""
    check_fresh(model)
    keep_weights_packed_for_training(model)  # bitsandbytes' CPU repacking, guarded: pricer.patches.bitsandbytes


def speed_up(trainer, setup: Setup, resuming: bool = False) -> Setup:
    """After building the trainer: LoRA weights in fp32 for fp16, and compiled (graphed) decoder layers on a GPU."""
    settle_trainable_dtype(trainer.model, setup.precision)
    graphs = graphs_are_safe(setup, resuming) and not setup.grouped  # grouped lengths: compiled, not graphed
    if setup.compiled and graphs:  # the padding a graphed layer's fixed shapes need: none of it reaches the matmuls
        pack_rows(trainer)
    if setup.compiled and not compile_layers(trainer.model, graphs, accumulating=setup.plan.accumulation > 1):
        setup = replace(setup, compiled=False)
    if setup.compiled:  # validation runs the layers eagerly: a no-grad pass must not replay training's CUDA graphs
        _extend(trainer, _eager_evaluation)
        _extend(trainer, _eager_on_compile_failure)  # compiling failing mid-run: eager layers, not a crash
    _APPLIED[trainer] = setup
    return setup


def applied_setup(trainer) -> Setup:
    """The Setup `speed_up` applied to this trainer, compiled=False once its layers fell back to eager code."""
    setup = _APPLIED[trainer]
    return replace(setup, compiled=False) if setup.compiled and not is_compiled(trainer.model) else setup


def build_trainer(model, tokenizer, rows: list[dict], preset, setup: Setup, run_dir: Path,
                  options: Options = Options(), val_rows=(), callbacks=(), resuming: bool = False):
    """The course's SFTTrainer on the given fresh model, with this device's precision, batch split and speed-ups."""
    from datasets import Dataset
    from trl import SFTTrainer

    prepare_model(model)
    steps = total_steps(len(rows), preset.batch_size, preset.epochs, options.max_steps)
    args = sft_config(preset, setup, run_dir, steps, options, evaluating=bool(val_rows))
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                         eval_dataset=Dataset.from_list(list(val_rows)) if val_rows else None,
                         processing_class=tokenizer, peft_config=lora_config(preset), callbacks=list(callbacks))
    read_metrics_once_per_log(trainer)  # notebook 4 writes these same lines after its SFTTrainer(...)
    optimizer_without_gpu_waits(trainer)
    group_rows_by_length(trainer, setup)
    loss_on_completions_only(trainer)
    speed_up(trainer, setup, resuming)
    return trainer


def one_gpu_per_process(args) -> None:
    """Train on one GPU when one process sees several: Trainer would wrap the model in nn.DataParallel, which
    TRL refuses ("does not support `nn.DataParallel`"; met on a 2-GPU H200). `--gpus N` runs data-parallel."""
    if distributed.world_size() == 1 and args.n_gpu > 1:
        print(f"pricer: {args.n_gpu} GPUs visible; training on the first (--gpus {args.n_gpu} trains on all of them)")
        use_one_gpu(args)  # what Trainer itself sets for a model placed with device_map


def graphs_are_safe(setup: Setup, resuming: bool) -> bool:
    """CUDA graphs only where they were proven on a GPU: one process, no activation checkpointing (it
    reruns forwards inside the backward), and not a resume in the process whose graphs were interrupted
    (that failed on an H100: "accessing tensor output of CUDAGraphs that has been overwritten"). A resume
    in a new process (a new Colab runtime, the command run again) starts as fresh as any run and keeps
    them: it ends at an uninterrupted run's loss, not bit for bit (GPU runs differ across processes, bench/README.md).
    Elsewhere the layers compile without graphs: slower, the same math up to dropout's random draws."""
    return distributed.world_size() == 1 and not setup.plan.checkpointing and not (resuming and graphs_used())


def settle_trainable_dtype(model, precision: str) -> None:
    """LoRA weights in fp32 unless training in bf16: TRL casts them to bf16, which fp16 AMP can't unscale
    ("_amp_foreach_non_finite_check_and_unscale_cuda" not implemented for 'BFloat16') and a CPU runs slowly.
    In bf16 they stay as TRL leaves them, bf16 (bitsandbytes' AdamW keeps fp32 state for them)."""
    if precision != "bf16":
        _trainable_in_fp32(model)


def _trainable_in_fp32(model) -> None:
    for param in model.parameters():
        if param.requires_grad:
            param.data = param.data.float()


def training_rows(preset) -> list[dict]:
    """The preset's training rows (its `prompts` dataset, first `train_rows`: `Job.train_rows`)."""
    from pricer.job import read_job

    return read_job(preset).train_rows


def validation_rows(preset) -> list[dict]:
    """The first `val_rows` validation rows, for the validation loss the course watches (`Job.val_rows`)."""
    from pricer.job import read_job

    return read_job(preset).val_rows


def train(job, output_dir: str | Path = "outputs", callbacks=(), **options) -> TrainResult:
    """Fine-tune the job's base model with QLoRA; a rerun resumes, a finished run is returned as is.

    `job` is a `pricer.job.Job`, or a preset (resolved into one here). `options` are `Options` fields
    (max_steps, push, micro_batch, checkpointing, fast, budget_gb, seed); another seed is another run."""
    from pricer.job import resolve_job
    from pricer.memory import ModelShape
    from pricer.models import load_model, load_tokenizer
    from pricer.sources import describe

    options = Options(**options)
    job = resolve_job(job)
    preset, rows, val = job.preset, job.train_rows, job.val_rows
    run = open_run(preset, output_dir, rows, options.max_steps, options.push, options.seed)
    if run.finished:
        print(f"pricer: {run.dir} already finished this run; returning it (delete the folder to train again)")
        return _result(run)
    tokenizer = load_tokenizer(preset.base_model)
    lengths = check_lengths(tokenizer, rows + val, preset.max_length)[:len(rows)]
    setup = plan_setup(ModelShape.from_pretrained(preset.base_model), preset, lengths, options)
    if distributed.is_main():
        print(f"pricer: training {describe(preset.base_model)} on {len(rows):,} rows in {run.dir} ({setup.precision}, "
              f"micro-batch {setup.plan.micro_batch} x {setup.plan.accumulation}, checkpointing "
              f"{'on' if setup.plan.checkpointing else 'off'}, ~{setup.plan.peak_gb} GB)"
              f"{'; resuming from ' + Path(run.resume).name if run.resume else ''}")
    model = load_model(preset.base_model, preset.quant)  # always fresh: see check_fresh
    with hub_errors(options.push, write=True) if options.push else contextlib.nullcontext():
        trainer = build_trainer(model, tokenizer, rows, preset, setup, run.dir, options, val, callbacks,
                                resuming=bool(run.resume))
        train_or_explain(trainer, run.resume, setup)
        trainer.save_model()  # the adapter in the run folder (and the Hub repo's root, when pushing)
    finish(trainer, run)
    return _result(run)


def finish(trainer, run: Run) -> None:
    """Record the finished run: steps, losses, validation losses and the setup applied."""
    history = trainer.state.log_history
    finish_run(run, steps=trainer.state.global_step, setup=asdict(applied_setup(trainer)),
               losses=[h["loss"] for h in history if "loss" in h],
               eval_losses=[h["eval_loss"] for h in history if "eval_loss" in h])


def _result(run: Run) -> TrainResult:
    record = run.record
    return TrainResult(run.dir, record.get("losses", []), record.get("steps", 0), run.resume, record.get("setup", {}),
                       record.get("eval_losses", []))


def train_or_explain(trainer, resume: str | None, setup: Setup) -> None:
    """Run the trainer; out of GPU memory, or CUDA graphs failing where the layers can't fall back to eager code
    (outside a training step, or after they already have), becomes a message saying how to go on."""
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
            f"CUDA graphs failed mid-training ({str(e)[:90]}...). Rerun the training cell in this runtime: it "
            "resumes from the last checkpoint, compiling its layers without CUDA graphs (from the command line: "
            "the same command with --plain).") from e
