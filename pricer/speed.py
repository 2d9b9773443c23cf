"""Speed switches for training: same math, less waste. Used by pricer.train.

- `grouped_trainer`: batches of rows of similar length (little padding), in random order;
- `compile_layers`: each decoder layer compiled and replayed as a CUDA graph (training, GPU);
- `fuse_kernels`: RMSNorm, SwiGLU and rotary embeddings compiled into single kernels (GPU), for
  `pricer.predict.PricePredictor`; with either, batch lengths are rounded up to PAD_MULTIPLE;
- `score_completions_only`: TRL's loss projects only the completion's positions on CPU too;
- `optimizer_without_syncs`: the configured optimizer, minus bitsandbytes' wait for the GPU after each tensor;
- `lazy_metrics_trainer`: TRL's metrics read once per log, not after every micro-batch's forward.
"""

import functools
import sys
import types

PAD_MULTIPLE = 16  # batch lengths rounded up to this: a few shapes, each compiled once
# Saved activations compiled training layers keep, as a share of what they'd keep by default: the compiler
# recomputes cheap elementwise work in the backward instead. Measured on an H200 (lite, 32 x 128):
# 0.7 kept the speed and cut the peak from 15.0 to 11.1 GB; 0.5 recomputed matmuls, 17% slower.
ACTIVATION_BUDGET = 0.7


def score_completions_only() -> None:
    """Let TRL's fused loss project only labelled positions on CPU too (it does on GPU): ~20% less work."""
    import trl.trainer.utils as trl_utils

    if hasattr(trl_utils, "_use_triton"):  # TRL 1.16's switch; it keeps every position only for Neuron compiles
        trl_utils._use_triton = lambda device: device.type in ("cuda", "xpu", "cpu")


def _rms_norm(x, weight, eps: float):
    import torch

    dtype = x.dtype
    x = x.to(torch.float32)
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)).to(dtype)


def _silu_mul(gate, up):
    import torch

    return torch.nn.functional.silu(gate) * up


def _compiler_works(device) -> bool:
    """Compile a small forward and backward on `device`: problems surface here, not mid-training."""
    import torch

    try:
        x = torch.randn(2, 37, 64, device=device, requires_grad=True)
        torch.compile(_silu_mul, dynamic=False)(x, x).sum().backward()
    except Exception as e:  # inductor / Triton missing or broken: eager is still correct
        print(f"pricer: compiled kernels unavailable ({type(e).__name__}: {str(e)[:120]}); using eager ones")
        return False
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)  # a graph per shape
    return True


def decoder_layers(model):
    """The model's stack of transformer blocks (`model.layers` in Llama-style families, under any wrapper)."""
    import torch

    stacks = [m for name, m in model.named_modules() if isinstance(m, torch.nn.ModuleList) and name.endswith("layers")]
    if not stacks:
        raise ValueError(f"no decoder layers found in {type(model).__name__}")
    return stacks[0]


def compile_layers(model, graphs: bool = True, accumulating: bool = False) -> bool:
    """Compile every decoder layer (LoRA and 4-bit matmuls included) and, with `graphs`, replay it as a CUDA graph.

    Measured on an H100 (3B 4-bit, lite LoRA, batch 32): with only RMSNorm, SwiGLU and rotary compiled,
    the GPU waited while Python launched thousands of small kernels (0.39 s/step); whole layers
    compiled, 0.30 s; compiled and replayed as CUDA graphs, 0.19 s. The compiler keeps ACTIVATION_BUDGET
    of the saved activations (a process-wide setting), so the whole batch of 32 fits a T4 as one micro-batch.
    One compiled graph serves all layers (weights are its inputs); each batch shape compiles once.
    `accumulating`: gradients are summed over micro-batches, so they must leave the graphs' memory pool."""
    if getattr(model, "pricer_compiled", False):
        return True
    import torch

    if not _compiler_works(next(model.parameters()).device):
        return False
    torch._functorch.config.activation_memory_budget = ACTIVATION_BUDGET  # read when the layers first compile
    for layer in decoder_layers(model):
        layer.compile(mode="reduce-overhead" if graphs else None, dynamic=False)
    if graphs and accumulating:
        _own_gradients(model)
    model.pricer_compiled = True
    return True


def _own_gradients(model) -> None:
    """Copy each gradient out of the CUDA graphs' memory pool as soon as autograd stores it.

    Autograd adopts a graphed layer's gradient as the parameter's .grad without copying; the next
    micro-batch's replay reuses that memory, so gradient accumulation would fail ("accessing tensor
    output of CUDAGraphs that has been overwritten"). Without accumulation the optimizer has used the
    gradients before the next replay, and the 224 copies a micro-batch (lite) are skipped."""
    for param in model.parameters():
        if param.requires_grad:
            param.register_post_accumulate_grad_hook(lambda p: setattr(p, "grad", p.grad.clone()))


def fuse_kernels(model) -> bool:
    """Compile RMSNorm, SwiGLU and rotary embeddings into single kernels (same math; less memory moved).

    Measured on an H100 (3B, 4-bit, batch of 128 prompts): half the GPU time went to these
    elementwise ops, not to matmuls; fused, evaluation runs ~1.3x faster."""
    import torch

    if getattr(model, "pricer_fused", False):
        return True
    if not _compiler_works(next(model.parameters()).device):
        return False
    norm, swiglu = torch.compile(_rms_norm, dynamic=False), torch.compile(_silu_mul, dynamic=False)
    for module in model.modules():  # weights are arguments, not constants: one graph serves every layer
        if hasattr(module, "variance_epsilon") and type(module).__name__.endswith("RMSNorm"):
            module.forward = types.MethodType(lambda self, x: norm(x, self.weight, self.variance_epsilon), module)
        elif hasattr(module, "gate_proj") and getattr(model.config, "hidden_act", "") == "silu":
            module.forward = types.MethodType(
                lambda self, x: self.down_proj(swiglu(self.gate_proj(x), self.up_proj(x))), module)
        elif type(module).__name__.endswith("Attention"):
            _fuse_rotary(sys.modules[type(module).__module__])
    model.pricer_fused = True
    return True


def _fuse_rotary(modeling) -> None:
    """The model family's apply_rotary_pos_emb, compiled (once per family: attention calls it by name)."""
    import torch

    rotary = getattr(modeling, "apply_rotary_pos_emb", None)
    if rotary is not None and not hasattr(rotary, "pricer_fused"):
        fused = torch.compile(rotary, dynamic=False)
        fused.pricer_fused = True
        modeling.apply_rotary_pos_emb = fused


class LengthGroupedBatches:
    """A sampler: rows sorted by length within chunks of 50 batches, then the batches shuffled.

    transformers' own group_by_length keeps each chunk's batches in long-to-short order: on a
    short run that is a curriculum by length (and, here, by product kind), which we measured to
    hurt the tiny preset badly ($108 vs $92 on 48 test items). Shuffling the batches keeps the
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


def optimizer_without_syncs(args):
    """(class, kwargs) of the optimizer `args.optim` names; a 32-bit bitsandbytes one waits only for paged states.

    bitsandbytes synchronizes with the GPU after updating each tensor, paged or not: with lite's 224
    LoRA tensors (each under its 1e5-element paging threshold, so none is paged) that is 224 waits a
    step, during which the GPU idles. The update kernels are bitsandbytes' own: same math."""
    from transformers import Trainer

    cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args)
    if cls.__module__.startswith("bitsandbytes") and kwargs.get("optim_bits") == 32:
        cls = _paged_waits_only(cls)
    return cls, kwargs


@functools.cache
def _paged_waits_only(optimizer_class):
    """`optimizer_class` whose step synchronizes only after updating a paged state, as bitsandbytes needs."""
    import torch

    class PagedWaitsOnly(optimizer_class):
        @torch.no_grad()
        def step(self, closure=None):
            loss = torch.enable_grad()(closure)() if closure is not None else None
            if not self.initialized:
                self.check_overrides()
                self.to_gpu()
                self.initialized = True
            for gindex, group in enumerate(self.param_groups):
                for pindex, p in enumerate(group["params"]):
                    if p.grad is None:
                        continue
                    if not self.state[p]:
                        self.init_state(group, p, gindex, pindex)
                    self.prefetch_state(p)
                    self.update_step(group, p, gindex, pindex)
                    if getattr(self.state[p]["state1"], "is_paged", False):
                        torch.cuda.synchronize()  # managed memory: bitsandbytes' own wait, kept where it matters
            return loss

    PagedWaitsOnly.__name__ = PagedWaitsOnly.__qualname__ = f"{optimizer_class.__name__}PagedWaitsOnly"
    return PagedWaitsOnly


@functools.cache
def lazy_metrics_trainer(trainer_class):
    """`trainer_class` (TRL's SFTTrainer) keeping its per-micro-batch metrics on the GPU until it logs.

    TRL reads entropy, token accuracy and the token count with `.item()` after every forward: each
    read makes the CPU wait for the GPU, which then idles while Python prepares the next launch.
    Here they are stacked as tensors and read once per log. Same loss, same logged values."""
    import torch

    class LazyMetrics(trainer_class):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if return_outputs or not model.training or "attention_mask" not in inputs or not self._plain_nll():
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            inputs["use_cache"] = False
            outputs = model(**inputs, fused_lm_head=True)
            scored = outputs.label_mask.sum() if num_items_in_batch is None else num_items_in_batch
            loss = -outputs.log_probs.sum() / torch.as_tensor(scored).clamp(min=1)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * (self.accelerator.num_processes // self.get_tp_size())
            counts = [outputs.label_mask.sum(), outputs.entropy.detach().sum(), outputs.is_top1.sum(),
                      inputs["attention_mask"].sum()]
            self._pending_metrics = [*getattr(self, "_pending_metrics", []), torch.stack([c.float() for c in counts])]
            return loss

        def _plain_nll(self) -> bool:
            """TRL's default loss path (the one this class replays); anything else goes to TRL itself."""
            return (self.compute_loss_func is None and self.label_smoother is None and self.args.loss_type == "nll"
                    and not self.aux_loss_enabled and self.get_tp_size() == 1)

        def log(self, logs, start_time=None):
            pending = getattr(self, "_pending_metrics", [])
            if pending:  # one read for all micro-batches since the last log
                self._pending_metrics = []
                totals = self.accelerator.gather(torch.stack(pending)[None]).sum(0).tolist()
                for valid, entropy, correct, tokens in totals:
                    self._metrics["train"]["entropy"].append(entropy / valid if valid > 0 else 0.0)
                    self._metrics["train"]["mean_token_accuracy"].append(correct / valid if valid > 0 else 0.0)
                    self._total_train_tokens += int(tokens)
                self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
            super().log(logs, start_time)

    return LazyMetrics


@functools.cache
def grouped_trainer(trainer_class):
    """`trainer_class` drawing its batches from LengthGroupedBatches."""
    class Grouped(trainer_class):
        def _get_train_sampler(self, train_dataset=None):
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            lengths = [len(ids) for ids in dataset["input_ids"]]
            return LengthGroupedBatches(lengths, self.args.per_device_train_batch_size, self.args.seed)

    return Grouped
