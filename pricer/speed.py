"""Speed switches for training: same math, less waste. Used by pricer.train (and pricer.predict).

- `grouped_trainer`: batches of rows of similar length (little padding), in random order (CPU);
- `compile_layers`: each decoder layer compiled and replayed as a CUDA graph (training, GPU); `eager_layers`
  undoes it when compiling or graph capture fails mid-run (`pricer.train` falls back with it);
- `fuse_kernels`: RMSNorm, SwiGLU and rotary embeddings compiled into single kernels (GPU), for
  `pricer.predict.PricePredictor`, for any length; compiled layers round training batch lengths up to
  PAD_MULTIPLE (a few shapes, each compiled once and replayed from its own CUDA graph);
- `score_completions_only`: TRL's loss projects only the completion's positions on CPU too;
- `optimizer_for_lora`: torch's fused AdamW (one kernel for all tensors, no wait for the GPU in fp16 either)
  where the configured bitsandbytes 32-bit AdamW would page nothing and LoRA weights are fp32 anyway (fp16,
  CPU); else `optimizer_without_syncs`: the configured optimizer, minus bitsandbytes' wait for the GPU after
  each tensor;
- `pack_rows`: where layers are graphed, each batch's rows packed one after another without their padding, and
  attended row by row (`pricer.patches.transformers.use_our_attention`): the matmuls skip the padding (GPU);
- `lazy_metrics_trainer`: TRL's metrics read once per log, not after every micro-batch's forward;
  `positions_found_on_cpu`: the loss's positions found by the CPU as it collates, and right-padded batches
  attended causally without their mask (no wait for the GPU in the step).

What changes a library's behaviour lives in `pricer.patches` (one module per library, each fenced by
the versions it was tested with, off with one line outside them); this module decides where to use
it. Measured effects: bench/README.md.
"""

import functools
import weakref

from pricer.patches.bitsandbytes import TORCH_ADAMW, pages_any, paged_waits_only
from pricer.patches.torch import PAD_MULTIPLE, compile_failed, compiled, compiler_works, runs_eagerly
from pricer.patches.transformers import fuse_kernels, use_our_attention, with_train_sampler
from pricer.patches.trl import ScoredPositions, lazy_metrics_trainer, positions_found_on_cpu, score_completions_only

__all__ = ["PAD_MULTIPLE", "LengthGroupedBatches", "compile_failed", "compile_layers", "decoder_layers",
           "eager_layers", "fuse_kernels", "graphs_used", "grouped_trainer", "is_compiled", "lazy_metrics_trainer",
           "optimizer_for_lora", "optimizer_without_syncs", "pack_rows", "positions_found_on_cpu",
           "score_completions_only", "torch_adamw_replaces"]

PACK_ROUND = 128  # a packed batch's size (tokens) is rounded up to this
_compiled = weakref.WeakKeyDictionary()  # model compile_layers compiled -> (its layers' own forwards, hook handles)
_graphed = False  # True once layers were compiled for CUDA graphs here: their pools live as long as the process


def decoder_layers(model):
    """The model's stack of transformer blocks (`model.layers` in Llama-style families, under any wrapper)."""
    import torch

    stacks = [m for name, m in model.named_modules() if isinstance(m, torch.nn.ModuleList) and name.endswith("layers")]
    if not stacks:
        raise ValueError(f"no decoder layers found in {type(model).__name__}")
    return stacks[0]


def compile_layers(model, graphs: bool = True, accumulating: bool = False) -> bool:
    """Compile every decoder layer (LoRA and 4-bit matmuls included) and, with `graphs`, replay it as a CUDA graph.

    Compiling whole layers, not just their elementwise kernels, stops the GPU waiting while Python
    launches thousands of small kernels; CUDA graphs cut the launches further. The compiler keeps
    `pricer.patches.torch.ACTIVATION_BUDGET` of the saved activations while our layers compile (see
    there). One compiled graph serves all layers (weights are its inputs). With `graphs`, each batch shape
    compiles once (padded batches: a shape or two); without, the first shape compiles as it is and the
    next once more with its sizes symbolic (`dynamic=None`: automatic dynamic shapes), which then serves
    every length grouped batches bring.
    `accumulating`: gradients are summed over micro-batches, so they must leave the graphs' memory pool.
    A layer whose compiling or graph capture fails at a call runs eagerly from then on (`pricer.patches.torch`)."""
    global _graphed
    if model in _compiled:
        return True
    if not compiler_works(next(model.parameters()).device):
        return False
    layers = decoder_layers(model)
    own = [vars(layer).get("forward") for layer in layers]  # an instance's own forward (a hook's), else the class's
    for layer in layers:  # the layer's own forward, compiled: hooks and checkpointing stay outside
        layer.forward = compiled(layer.forward, mode="reduce-overhead" if graphs else None,
                                 dynamic=False if graphs else None)
    if graphs:
        _graphed = True
    _compiled[model] = (own, _own_gradients(model) if graphs and accumulating else [])
    return True


def eager_layers(model) -> bool:
    """Undo compile_layers: each layer's own forward back, gradients no longer copied out of the graphs' pool;
    False when there was nothing to undo. Graphs already recorded keep their pool (graphs_used stays True)."""
    if model not in _compiled:
        return False
    own, hooks = _compiled.pop(model)
    for layer, forward in zip(decoder_layers(model), own):
        if forward is None:
            del layer.forward
        else:
            layer.forward = forward
    for hook in hooks:
        hook.remove()
    return True


def graphs_used() -> bool:
    """Whether this process has compiled layers for CUDA graphs (an interrupted run's graphs are still here)."""
    return _graphed


def is_compiled(model) -> bool:
    """Whether this model's layers run compiled: compile_layers compiled them and they haven't fallen back to eager."""
    return model in _compiled and not any(runs_eagerly(layer.forward) for layer in decoder_layers(model))


def _own_gradients(model) -> list:
    """Copy each gradient out of the CUDA graphs' memory pool as soon as autograd stores it.

    Autograd adopts a graphed layer's gradient as the parameter's .grad without copying; the next
    micro-batch's replay reuses that memory, so gradient accumulation would fail ("accessing tensor
    output of CUDAGraphs that has been overwritten"). Without accumulation the optimizer has used the
    gradients before the next replay, and the copies (one per LoRA tensor) are skipped. Returns the hooks' handles."""
    return [param.register_post_accumulate_grad_hook(lambda p: setattr(p, "grad", p.grad.clone()))
            for param in model.parameters() if param.requires_grad]


def pack_rows(trainer) -> bool:
    """Train on packed batches: each batch's real tokens one after another in a row of `packed_size` tokens, so
    the matmuls skip most of the ~20% of a padded batch that is padding, while attention still sees each row on
    its own. Needs the collator positions_found_on_cpu gives (it packs) and a model use_our_attention can serve;
    False, batches padded as before, otherwise. Same math: the loss's tokens, positions and attention are a
    padded batch's (tests/test_patches.py)."""
    collator = trainer.data_collator
    if not isinstance(collator, ScoredPositions) or not use_our_attention(trainer.model):
        return False
    collator.pack = packed_size(_row_lengths(trainer.train_dataset), trainer.args.per_device_train_batch_size,
                                trainer.args.seed)
    return True


def packed_size(lengths: list[int], batch_size: int, seed: int = 0, draws: int = 1000) -> int:
    """Tokens a packed batch holds: the most that `draws` random batches of these row lengths carried, rounded up
    to PACK_ROUND, at most the longest rows' sum. One size serves (nearly) every batch, so compiled layers replay
    one CUDA graph; a batch with more tokens is packed into its padded size instead (a second shape, compiled
    once if it ever comes). Fixed sizes, not a size per batch: switching graphs every step cost an H200 what
    less padding saved (bench/README.md)."""
    import random

    rng, size = random.Random(seed), min(batch_size, len(lengths))
    most = max(sum(rng.sample(lengths, size)) for _ in range(draws))
    return min(-(-most // PACK_ROUND) * PACK_ROUND, sum(sorted(lengths)[-size:]))


class LengthGroupedBatches:
    """A sampler: rows sorted by length within chunks of 50 batches, then the batches shuffled.

    transformers' own group_by_length keeps each chunk's batches in long-to-short order: on a
    short run that is a curriculum by length (and, here, by product kind), which we measured to
    hurt the tiny preset badly (bench/README.md). Shuffling the batches keeps the
    padding saving without it. Deterministic for a seed and epoch, so a resumed run sees the same order."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int):
        self.lengths, self.batch_size, self.seed, self.epoch = lengths, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        import torch

        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        chunk = 50 * self.batch_size
        batches = []
        for start in range(0, len(order), chunk):
            rows = sorted(order[start:start + chunk], key=self.lengths.__getitem__)
            batches += [rows[i:i + self.batch_size] for i in range(0, len(rows), self.batch_size)]
        for b in torch.randperm(len(batches), generator=generator).tolist():
            yield from batches[b]


def _row_lengths(dataset) -> list[int]:
    """Each tokenized row's length in tokens."""
    return [len(ids) for ids in dataset["input_ids"]]


def _length_grouped(trainer, dataset) -> LengthGroupedBatches:
    return LengthGroupedBatches(_row_lengths(dataset), trainer.args.per_device_train_batch_size, trainer.args.seed)


def grouped_trainer(trainer_class):
    """`trainer_class` drawing its batches from LengthGroupedBatches (Trainer's own order when its patch is off)."""
    return with_train_sampler(trainer_class, _length_grouped)


def optimizer_without_syncs(args):
    """(class, kwargs) of the optimizer `args.optim` names; a 32-bit bitsandbytes one waits only for paged states.

    bitsandbytes synchronizes with the GPU after updating each tensor, paged or not; LoRA tensors are
    too small to be paged, so each wait only idles the GPU. The update kernels are bitsandbytes' own."""
    from transformers import Trainer

    cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args)
    if cls.__module__.startswith("bitsandbytes") and kwargs.get("optim_bits") == 32:
        cls = paged_waits_only(cls)
    return cls, kwargs


FUSED_DEVICES = ("cuda", "cpu")  # where torch's AdamW has a fused kernel for fp32 weights; elsewhere: foreach
BITSANDBYTES_ADAMW_32BIT = ("paged_adamw_32bit",)  # transformers' `optim` names for it (tests/test_optimizer.py)


def torch_adamw_replaces(optim: str, sizes, bf16: bool) -> bool:
    """Whether torch's AdamW stands in for the optimizer `optim` names on tensors of these sizes (element
    counts): a bitsandbytes 32-bit AdamW, paged or not, that would page none of them, on LoRA weights that
    are fp32 anyway (fp16 and fp32 training). In bf16 (LoRA weights bf16, as TRL leaves them) bitsandbytes'
    stays: on an H200 torch's fused AdamW bought no speed there (nothing waits on the optimizer in bf16) and
    the fp32 LoRA weights it needs cost ~1.5 GB at lite's T4 plan (bench/README.md). So the memory
    preflight's LoRA weights follow the precision alone.
    By name, as transformers maps it: its own mapping needs a TrainingArguments, whose making resets accelerate."""
    return (TORCH_ADAMW.on and not bf16 and optim in BITSANDBYTES_ADAMW_32BIT
            and not pages_any(sizes, paged="paged" in optim))


def optimizer_for_lora(args, params):
    """(class, kwargs) for training `params` with `args.optim`: torch's AdamW where `torch_adamw_replaces`,
    else `optimizer_without_syncs(args)`.

    Paging pays for large states only; the LoRA tensors of lite are all under bitsandbytes' threshold, so
    its paged AdamW updates them as plain fp32 tensors, one kernel launch each (224 for lite). torch's
    fused AdamW updates them all in a few kernels, with the hyper-parameters Trainer reads from `args`
    (weight decay per parameter group, as Trainer sets it). The math is bitsandbytes' (tests/test_optimizer.py),
    on condition that the weights are fp32: its state is in the weights' dtype, and bitsandbytes' 32-bit
    state is fp32; pricer.train makes them fp32 before choosing (TRL leaves them bf16, fp16 runs too). In fp16
    it also spares a wait per step: torch's GradScaler reads `found_inf` (`.item()`) before stepping an
    optimizer that can't skip a step itself, and hands it to a fused one (`_step_supports_amp_scaling`). One
    difference: a step skipped for an overflow still advances the learning-rate schedule (accelerate sees no
    skip without that read)."""
    import torch
    from transformers import Trainer

    params = list(params)
    if not torch_adamw_replaces(args.optim, [p.numel() for p in params], args.bf16):
        return optimizer_without_syncs(args)
    _, kwargs = Trainer.get_optimizer_cls_and_kwargs(args)
    fused = all(p.device.type in FUSED_DEVICES and p.dtype == torch.float32 for p in params)
    return resumable_adamw(), dict(lr=kwargs["lr"], betas=kwargs["betas"], eps=kwargs["eps"],
                                   weight_decay=args.weight_decay, **({"fused": True} if fused else {"foreach": True}))


@functools.cache
def resumable_adamw():
    """torch's AdamW that also resumes from a checkpoint bitsandbytes' 32-bit AdamW wrote (a run begun before
    pricer chose torch's): the same moments under other names (`state1`, `state2`), the step an int, and
    parameter groups with bitsandbytes' keys, which give way to this optimizer's own (`fused` stays)."""
    import torch

    class AdamW(torch.optim.AdamW):
        def load_state_dict(self, state_dict):
            state = {key: _torch_moments(value) for key, value in state_dict["state"].items()}
            groups = [{**ours, **{k: v for k, v in saved.items()
                                  if k in ours and k not in TORCH_ONLY or k in SCHEDULER_KEYS}}
                      for ours, saved in zip(self.param_groups, state_dict["param_groups"])]
            if len(groups) != len(state_dict["param_groups"]):
                groups = state_dict["param_groups"]  # torch's own error names the mismatch
            super().load_state_dict({**state_dict, "state": state, "param_groups": groups})

    return AdamW


TORCH_ONLY = ("fused", "foreach", "capturable", "differentiable")  # how this optimizer runs, never the saved run's
SCHEDULER_KEYS = ("params", "initial_lr")


def _torch_moments(state: dict) -> dict:
    import torch

    packed = state.get("__bnb_optimizer_quant_state__", state)  # bitsandbytes' state_dict nests its tensors here
    if "state1" not in packed:
        return state
    return {"step": torch.tensor(float(state["step"])), "exp_avg": packed["state1"], "exp_avg_sq": packed["state2"]}

