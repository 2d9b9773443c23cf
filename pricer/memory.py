"""The memory preflight: peak training memory estimated before any weight is loaded.

    shape = ModelShape.from_pretrained(preset.base_model)          # reads config.json only
    gb = estimate_peak_gb(shape, preset, micro_batch=16, tokens=16 * 128, checkpointing=False)
    plan = plan_batches(shape, preset, lengths, Device(budget_gb=14.0))    # or PricerError naming what fits

The estimate adds the weights (4-bit packed layers, 16-bit embeddings), the LoRA weights with
their gradients and AdamW state (fp32 moments; the weights and gradients in fp32 too wherever the
LoRA weights are: fp16 and fp32 runs, and bf16 ones where `Device.lora_fp32` says so), and the
activations autograd keeps for the backward pass. The
activation bytes per token and layer were measured with `torch.autograd.graph.saved_tensors_hooks`
on a Llama-3.2-3B-shaped layer (bf16, LoRA r=32), fitted as `a * hidden + b * intermediate`, and
scaled to the one GPU measurement we have: lite at batch 32 x 128 on an H100 peaked at 18.3 GB
without checkpointing (this reads 19.7 GB with the 5% headroom) and 3.98 GB with it (reads 4.5 GB):
a little on the safe side, which is the side a preflight should err on. Compiled layers (the GPU
path) keep less: fused kernels drop some intermediates, and the compiler is told to keep a share of
the rest, recomputing cheap elementwise work in the backward pass (`pricer.patches.torch`).

The estimate counts only what the patches in force give (`pricer.patches.status()`, or the
`patches` argument): the activation budget only when the compiler settings are on, and the loss
head's logits for the completions alone only when TRL's completion-only scoring is on (else for
every position). A patch that is off is never assumed.
"""

import math
from dataclasses import dataclass, replace

from pricer.config import MLP
from pricer.errors import PricerError
from pricer.patches import PatchStatus, status

GB = 1e9
# Saved-activation bytes per token and layer in 16-bit, as a * hidden + b * intermediate, keyed by
# (LoRA on the MLP, dropout > 0): measured on CPU, less the ~2 x hidden of attention probabilities
# that the GPU's fused attention kernels don't keep.
ACTIVATION_A = {(False, False): 27.6, (False, True): 31.6, (True, False): 35.7, (True, True): 47.7}
ACTIVATION_B = {(False, False): 6.0, (False, True): 6.0, (True, False): 10.0, (True, True): 14.0}
CALIBRATION = 0.94  # the H100's measured 18.3 GB (lite, 32 x 128, no checkpointing) over this table's figure
FUSED_SAVING = (8.0, 2.0)  # fused RMSNorm keeps its input only (-8 x hidden), fused SwiGLU drops silu(g) (-2 x inter)
HEADROOM = 1.05  # allocator rounding and fragmentation on top of what tensors hold
FIXED_GB = 0.3  # CUDA workspaces, optimizer scratch
SCORED_PER_ROW = 8  # a price and EOS take under 8 tokens: with completion-only scoring, the loss head sees only those


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a Llama-style decoder that memory depends on."""

    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool = True
    head_dim: int | None = None  # None: hidden // heads, as in Llama; some families set their own

    @classmethod
    def from_config(cls, config) -> "ModelShape":
        """From a transformers config (LlamaConfig and friends)."""
        return cls(config.hidden_size, config.num_hidden_layers, config.intermediate_size,
                   config.num_attention_heads, getattr(config, "num_key_value_heads", None)
                   or config.num_attention_heads, config.vocab_size,
                   bool(getattr(config, "tie_word_embeddings", False)), getattr(config, "head_dim", None))

    @classmethod
    def from_pretrained(cls, name: str) -> "ModelShape":
        """From a Hub name, folder or EMBEDDED: config.json only, no weights."""
        from transformers import AutoConfig

        from pricer.errors import hub_errors
        from pricer.models import resolve_model

        with hub_errors(name):
            return cls.from_config(AutoConfig.from_pretrained(resolve_model(name)))

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each projection in one layer."""
        head_dim = self.head_dim or self.hidden // self.heads
        q, kv = self.heads * head_dim, self.kv_heads * head_dim
        return {"q_proj": (self.hidden, q), "k_proj": (self.hidden, kv),
                "v_proj": (self.hidden, kv), "o_proj": (q, self.hidden),
                "gate_proj": (self.hidden, self.intermediate), "up_proj": (self.hidden, self.intermediate),
                "down_proj": (self.intermediate, self.hidden)}

    def lora_params(self, r: int, targets) -> int:
        """Trainable parameters of a LoRA adapter of rank r on the target projections."""
        shapes = self.linear_shapes()
        return self.layers * sum(r * (shapes[t][0] + shapes[t][1]) for t in targets if t in shapes)


@dataclass(frozen=True)
class Device:
    """How training runs here, as far as memory goes: the budget, the precision, and the speed-ups applied."""

    budget_gb: float = 14.0
    precision: str = "bf16"  # "bf16", "fp16" (LoRA weights fp32) or "fp32" (CPU)
    padded: bool = False  # batches padded to their longest row (else a high percentile of summed lengths)
    compiled: bool = False  # compiled decoder layers (GPU): fused kernels, the activation budget
    patches: PatchStatus | None = None  # the patches training applies (None: this process's status())
    lora_fp32: bool | None = None  # LoRA weights in fp32 (None: unless bf16, where TRL leaves them bf16)

    @property
    def lora_width(self) -> int:
        """Bytes per LoRA weight (and gradient): 4 in fp32, 2 where TRL's bf16 cast stands."""
        fp32 = self.precision != "bf16" if self.lora_fp32 is None else self.lora_fp32
        return 4 if fp32 else 2

    @property
    def applied(self) -> PatchStatus:
        return self.patches or status()


def weight_bytes(shape: ModelShape, quant: str | None, dtype_bytes: int) -> float:
    """Frozen weights: packed projections plus 16-bit (or 32-bit) embeddings and head."""
    linear = shape.layers * sum(i * o for i, o in shape.linear_shapes().values())
    per_param = {"4bit": 0.5 + 1 / 64, "8bit": 1.0 + 4 / 64, None: dtype_bytes}[quant]  # + absmax per block
    embeddings = shape.vocab * shape.hidden * (1 if shape.tied else 2)
    return linear * per_param + embeddings * dtype_bytes


def bytes_per_value(precision: str) -> int:
    """Bytes per activation and frozen weight: 4 in fp32 (CPU), else 2."""
    return 4 if precision == "fp32" else 2


def activation_bytes(shape: ModelShape, preset, tokens: int, checkpointing: bool, device: Device = Device()) -> float:
    """What autograd keeps for the backward pass of one micro-batch of `tokens` tokens."""
    precision, compiled = device.precision, device.compiled
    mlp = any(t in MLP for t in preset.target_modules)
    key = (mlp, preset.lora_dropout > 0)
    a, b = ACTIVATION_A[key], ACTIVATION_B[key]
    if compiled:
        a, b = a - FUSED_SAVING[0], b - FUSED_SAVING[1]
    width = bytes_per_value(precision)
    # fp32 LoRA weights (fp16) keep no fp32 copies of their inputs: under autocast peft leaves them 16-bit
    per_layer = CALIBRATION * (a * shape.hidden + b * shape.intermediate) * width / 2
    if compiled:
        per_layer *= device.applied.activation_budget(precision)
    if checkpointing:  # each layer keeps its input; one layer at a time is recomputed in full
        return tokens * (shape.layers * shape.hidden * width + per_layer)
    return tokens * shape.layers * per_layer


def estimate_peak_gb(shape: ModelShape, preset, micro_batch: int, tokens: int, checkpointing: bool,
                     device: Device = Device()) -> float:
    """Peak training memory in GB for one micro-batch holding `tokens` tokens in all."""
    patches, precision = device.applied, device.precision
    lora = shape.lora_params(preset.lora_r, preset.target_modules)
    width = bytes_per_value(precision)
    trainable = lora * (2 * device.lora_width + 8)  # weight + gradient, AdamW's two fp32 moments
    scored = micro_batch * SCORED_PER_ROW if patches.completion_scoring else tokens
    loss_chunk = scored * shape.vocab * 4 * 2  # fp32 logits and their gradient
    total = (weight_bytes(shape, preset.quant, width) + trainable + loss_chunk
             + activation_bytes(shape, preset, tokens, checkpointing, device))
    return total * HEADROOM / GB + FIXED_GB


def micro_batch_tokens(lengths: list[int], micro_batch: int, padded: bool) -> int:
    """Tokens in a large micro-batch: padded rows x longest, or a high-percentile sum of lengths."""
    longest = sorted(lengths, reverse=True)
    if padded:
        return micro_batch * longest[0]
    mean = sum(lengths) / len(lengths)
    spread = math.sqrt(sum((n - mean) ** 2 for n in lengths) / len(lengths))
    return int(min(sum(longest[:micro_batch]), micro_batch * mean + 4 * math.sqrt(micro_batch) * spread))


@dataclass(frozen=True)
class BatchPlan:
    """How the effective batch is split, and what that is expected to cost in memory."""

    micro_batch: int
    accumulation: int
    checkpointing: bool
    peak_gb: float
    budget_gb: float


def plan_batches(shape: ModelShape, preset, lengths: list[int], device: Device, micro_batch: int | None = None,
                 checkpointing: bool | None = None) -> BatchPlan:
    """The fastest split of preset.batch_size that fits the device, or a PricerError saying what fits.

    Preference: no gradient checkpointing (it recomputes the forward pass, ~1.3-1.9x slower) with
    the largest micro-batch; checkpointing only when no micro-batch fits without it. `micro_batch`
    and `checkpointing` force a choice.
    """
    device = replace(device, patches=device.applied)  # read once for every estimate below
    sizes = [m for m in range(preset.batch_size, 0, -1) if preset.batch_size % m == 0]
    if micro_batch is not None:
        if preset.batch_size % micro_batch:
            raise ValueError(f"micro_batch {micro_batch} must divide the batch size {preset.batch_size}")
        sizes = [micro_batch]
    modes = [False, True] if checkpointing is None else [checkpointing]

    def cost(m, ckpt):
        tokens = micro_batch_tokens(lengths, m, device.padded)
        return estimate_peak_gb(shape, preset, m, tokens, ckpt, device)

    for ckpt in modes:
        for m in sizes:
            if ckpt is False and checkpointing is None and micro_batch is None and m < min(8, preset.batch_size):
                break  # tiny micro-batches waste the GPU: better to recompute at a larger one (unless asked for)
            peak = cost(m, ckpt)
            if peak <= device.budget_gb:
                return BatchPlan(m, preset.batch_size // m, ckpt, round(peak, 2), device.budget_gb)
    raise PricerError(_refusal(shape, preset, lengths, device, micro_batch, checkpointing, cost))


def _refusal(shape, preset, lengths, device: Device, micro_batch, checkpointing, cost) -> str:
    """The message for a plan that does not fit: what was asked, and what would fit instead."""
    asked = micro_batch or 1
    need = cost(asked, True if checkpointing is None else checkpointing)
    text = (f"preset {preset.name!r} needs ~{need:.1f} GB at micro-batch {asked}"
            f"{' with' if checkpointing is not False else ' without'} gradient checkpointing, "
            f"but this device has ~{device.budget_gb:.1f} GB to give.")
    if micro_batch is not None or checkpointing is not None:
        try:
            fits = plan_batches(shape, preset, lengths, device)
            return (f"{text} Micro-batch {fits.micro_batch} with {fits.accumulation} accumulation steps "
                    f"{'and' if fits.checkpointing else 'without'} gradient checkpointing fits "
                    f"(~{fits.peak_gb:.1f} GB, same effective batch): leave micro_batch unset to get it.")
        except PricerError:
            pass
    smaller = [n for n in ("tiny", "lite") if n != preset.name]
    return (f"{text} Try a smaller preset ({' or '.join(smaller)}), a shorter max_length, "
            "or a GPU with more memory (Colab: Runtime > Change runtime type).")
