"""transformers: the training sampler, one GPU per process, and fused RMSNorm / SwiGLU / rotary kernels.

- `with_train_sampler(trainer_class, make_sampler)`: Trainer asks its private `_get_train_sampler`
  for the order of the training rows; the subclass answers with pricer's sampler. Off: Trainer's
  own random order (more padding per batch).
- `use_one_gpu(args)`: a process that sees several GPUs would have Trainer wrap the model in
  nn.DataParallel, which TRL refuses; Trainer reads `args.n_gpu`, backed by the private `_n_gpu`,
  and sets it to 1 itself for a model placed with device_map. Off: a PricerError naming the remedy.
- `fuse_kernels(model)`: RMSNorm, SwiGLU and rotary embeddings of this model compiled into single
  kernels, in place. A module is fused only if its class's forward is, to the character, the
  Llama code that was replicated (Qwen2, Mistral, SmolLM2 share it), so another family's variant is
  never given Llama's math; attention gets a copy of its forward that finds the compiled
  `apply_rotary_pos_emb`, so the modeling module and every other model keep the eager one. Off:
  eager kernels (evaluation is slower on a GPU).
- `unpacked_rows()`: with no attention mask, transformers checks whether the position ids pack several
  sequences into a row, reading the answer back from the GPU (a wait for all queued work). While inside,
  it takes each row for one sequence, as pricer's right-padded batches are. Off: the check runs (one wait).
- `hidden_states_at(model, positions, shape)`: not a patch (a forward hook, public API): while inside, the
  model's decoder hands its head only the final hidden states at `positions`, indices found on the CPU. A
  boolean mask would find them on the GPU, and reading its count is a wait for everything queued.
- `use_our_attention(model)`: the model attends through OURS, an attention function registered with transformers'
  public AttentionInterface: SDPA, with two shortcuts. A packed training batch (the rows' real tokens one after
  another, the padding gone; kwargs LAYOUT and SLOTS say where each token sits in its row) is laid out row by row
  for causal attention and gathered back, so every other matmul skips the padding. Under a mask (the digit
  tree's), grouped query heads are folded into the query length, so the keys and values are not repeated per
  head (transformers' `repeat_kv` copies the whole cache three times for Llama 3.2). Only for attention and
  decoder layers whose forwards are, to the character, Llama's (they pass those kwargs on). Off: training
  batches keep their padding, and the tree's attention repeats the cache.
- `roomy_cache(room)`: not a patch (a DynamicCache of public cache layers, `DynamicLayer` subclassed as the
  cache docs invite): each layer keeps room for `room` more tokens after its first update, so the digit tree's
  later forwards write their few tokens into that room instead of copying the whole cache to grow it.
"""

import contextlib
import functools
import hashlib
import inspect
import textwrap
import types
import weakref

from pricer.errors import PricerError
from pricer.patches.fence import Fence

TESTED = ("5.23.0",)
TRAIN_SAMPLER = Fence("transformers.train_sampler", "transformers", TESTED,
                      "Trainer's own random batches (more padding, so slower)")
ONE_GPU = Fence("transformers.one_gpu", "transformers", TESTED,
                "a process that sees several GPUs is refused (Trainer would use nn.DataParallel, which TRL refuses)")
UNPACKED_ROWS = Fence("transformers.unpacked_rows", "transformers", TESTED,
                      "transformers checks each unmasked batch for packed sequences (a wait for the GPU)")
OUR_ATTENTION = Fence("transformers.our_attention", "transformers", TESTED,
                      "SDPA as transformers runs it: training batches keep their padding (the matmuls run on it "
                      "too) and the digit tree repeats its cache per head (both slower on a GPU)")
FUSED_KERNELS = Fence("transformers.fused_kernels", "transformers", TESTED,
                      "eager RMSNorm, SwiGLU and rotary embeddings (slower evaluation on a GPU)")
# sha256 of the dedented source of the forwards the fused kernels replicate (LlamaRMSNorm, LlamaMLP, 5.23.0)
RMS_NORM_FORWARD = "d676bfe9af0e"
MLP_FORWARD = "b4e9c2637c7f"
# ... and of the forwards that carry a model's kwargs down to its attention function (LlamaDecoderLayer, LlamaAttention)
LAYER_FORWARD, ATTENTION_FORWARD = "461ed20abeb5", "c0fd8e0b732b"
OURS = "pricer_sdpa"  # the attention implementation use_our_attention registers
LAYOUT, SLOTS = "pricer_layout", "pricer_slots"  # the kwargs it reads: see _our_attention

_fused = weakref.WeakKeyDictionary()  # models already fused (fusing twice would wrap twice)


def with_train_sampler(trainer_class, make_sampler):
    """`trainer_class` drawing its training rows in the order `make_sampler(trainer, dataset)` gives."""
    return _with_sampler(trainer_class, make_sampler) if TRAIN_SAMPLER.on else trainer_class


@functools.cache
def _with_sampler(trainer_class, make_sampler):
    class Sampled(trainer_class):
        def _get_train_sampler(self, train_dataset=None):
            return make_sampler(self, train_dataset if train_dataset is not None else self.train_dataset)

    return Sampled


def use_one_gpu(args) -> None:
    """Make Trainer train on one GPU, as it does itself for a model placed with device_map."""
    if not ONE_GPU.on:
        raise PricerError(f"This process sees {args.n_gpu} GPUs and pricer can't make this transformers version train "
                          "on one: set CUDA_VISIBLE_DEVICES=0 before starting Python, or train on all of them with "
                          f"--gpus {args.n_gpu}.")
    args._n_gpu = 1


def source_digest(function) -> str:
    """The first 12 hex digits of sha256 over a function's dedented source: which code it is, to the character."""
    return hashlib.sha256(textwrap.dedent(inspect.getsource(function)).encode()).hexdigest()[:12]


@functools.cache
def _digest_of(cls) -> str | None:
    try:
        return source_digest(cls.forward)
    except (OSError, TypeError):  # no source to read (a compiled or builtin forward): not code we replicate
        return None


def _rms_norm(x, weight, eps: float):
    import torch

    dtype = x.dtype
    x = x.to(torch.float32)
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)).to(dtype)


def _silu_mul(gate, up):
    import torch

    return torch.nn.functional.silu(gate) * up


def fuse_kernels(model) -> bool:
    """Compile this model's RMSNorm, SwiGLU and rotary embeddings into single kernels (same math, less memory
    moved), in place; False when the fence is off, the compiler is unavailable, or nothing matched."""
    from pricer.patches.torch import compiled, compiler_works

    if model in _fused:
        return True
    if not FUSED_KERNELS.on or not compiler_works(next(model.parameters()).device):
        return False
    # dynamic=None: the first shape compiles as it is, the next once more with its sizes symbolic, which
    # then serves every batch length and tree width: no padding for the compiler, no compile per shape
    norm, swiglu = compiled(_rms_norm, dynamic=None), compiled(_silu_mul, dynamic=None)
    rotary = {}  # modeling module -> its apply_rotary_pos_emb, compiled once
    fused = 0
    silu = getattr(model.config, "hidden_act", None) == "silu"
    for module in model.modules():  # weights are arguments, not constants: one graph serves every layer
        forward = type(module).forward
        if _digest_of(type(module)) == RMS_NORM_FORWARD:
            module.forward = types.MethodType(lambda self, x: norm(x, self.weight, self.variance_epsilon), module)
        elif _digest_of(type(module)) == MLP_FORWARD and silu:
            module.forward = types.MethodType(
                lambda self, x: self.down_proj(swiglu(self.gate_proj(x), self.up_proj(x))), module)
        elif _reads_global(forward, "apply_rotary_pos_emb"):
            scope = forward.__globals__
            if scope["__name__"] not in rotary:
                rotary[scope["__name__"]] = compiled(scope["apply_rotary_pos_emb"], dynamic=None)
            module.forward = types.MethodType(_rebound(forward, "apply_rotary_pos_emb", rotary[scope["__name__"]]),
                                              module)
        else:
            continue
        fused += 1
    if fused:
        _fused[model] = True
    return bool(fused)


@contextlib.contextmanager
def unpacked_rows():
    """While inside: transformers' mask builder takes every row for one sequence (`find_packed_sequence_indices`
    answers None, as it does itself for unpacked rows, without reading the position ids back)."""
    import transformers.masking_utils as masking

    if not UNPACKED_ROWS.on:
        yield
        return
    stock = masking.find_packed_sequence_indices
    masking.find_packed_sequence_indices = _one_sequence_per_row
    try:
        yield
    finally:
        masking.find_packed_sequence_indices = stock


def _one_sequence_per_row(position_ids):
    return None


def use_our_attention(model) -> bool:
    """Make `model` attend through OURS (SDPA with packed rows and unrepeated grouped heads); False, the model
    unchanged, when the fence is off, the model attends otherwise than with SDPA, or a layer is not Llama's."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    if not OUR_ATTENTION.on or model.config._attn_implementation not in ("sdpa", OURS):
        return False
    layers = [module for module in model.modules() if hasattr(module, "self_attn")]
    if not layers or any(_digest_of(type(layer)) != LAYER_FORWARD or _digest_of(type(layer.self_attn)) !=
                         ATTENTION_FORWARD for layer in layers):
        return False
    AttentionInterface.register(OURS, _our_attention)
    AttentionMaskInterface.register(OURS, sdpa_mask)  # unpacked batches get SDPA's masks, as before
    model.set_attn_implementation(OURS)
    return True


def _our_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """SDPA. For a packed batch, [1, heads, tokens, dim] laid out as [rows, heads, length, dim] by LAYOUT
    ([rows, length]: which packed token sits at each place; a place past a row's end holds any token, since
    causal attention shows it only to places past the end too, whose outputs are dropped), attended causally
    row by row, and each packed token's output gathered back from its place, SLOTS ([tokens]: flat index).
    Under a mask shared by the heads, with grouped heads and several queries: each key/value head's group of
    query heads as one longer query ([batch, kv heads, group x queries, dim], the mask repeated to match), so
    SDPA's masked kernel reads the keys and values once instead of transformers' copy per query head."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    layout, slots = kwargs.pop(LAYOUT, None), kwargs.pop(SLOTS, None)
    batch, heads, queries, dim = query.shape
    group = heads // key.shape[1]
    if layout is not None:
        rows, length = layout.shape

        def laid_out(states):
            return states[0][:, layout.flatten()].unflatten(1, (rows, length)).transpose(0, 1)

        out = torch.nn.functional.scaled_dot_product_attention(
            laid_out(query), laid_out(key), laid_out(value), dropout_p=dropout, scale=scaling, is_causal=True,
            enable_gqa=group > 1)
        return out.transpose(1, 2).flatten(0, 1)[slots].unsqueeze(0), None
    if (attention_mask is None or attention_mask.ndim != 4 or attention_mask.shape[1] != 1 or group == 1
            or queries == 1 or kwargs.get("position_bias") is not None):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    folded = query.reshape(batch, heads // group, group * queries, dim)
    mask = attention_mask.repeat(1, 1, group, 1)  # row g x queries + q: query q's mask
    out = torch.nn.functional.scaled_dot_product_attention(folded, key, value, attn_mask=mask, dropout_p=dropout,
                                                           scale=scaling)
    return out.reshape(batch, heads, queries, dim).transpose(1, 2).contiguous(), None


@contextlib.contextmanager
def hidden_states_at(model, positions, shape: tuple[int, ...]):
    """While inside: `model`'s decoder (`get_decoder()`) returns only its final hidden states at `positions`
    (flat indices over batch x length, a device tensor), shaped `shape` + (hidden size,), so the head that
    follows projects those alone (each row's last token, or the tokens a loss scores)."""
    def pick(module, args, output):
        hidden = output.last_hidden_state
        output.last_hidden_state = hidden.reshape(-1, hidden.shape[-1]).index_select(0, positions).view(
            *shape, hidden.shape[-1])
        return output

    handle = model.get_decoder().register_forward_hook(pick)
    try:
        yield
    finally:
        handle.remove()


def _reads_global(function, name: str) -> bool:
    """Whether `function` looks `name` up in its module (as attention does apply_rotary_pos_emb)."""
    return inspect.isfunction(function) and name in function.__code__.co_names and name in function.__globals__


def _rebound(function, name: str, value):
    """A copy of `function` that finds the global `name` as `value`; its module keeps its own."""
    copy = types.FunctionType(function.__code__, {**function.__globals__, name: value}, function.__name__,
                              function.__defaults__, function.__closure__)
    copy.__kwdefaults__, copy.__qualname__ = function.__kwdefaults__, function.__qualname__
    return copy


ROOM_LIMIT = 256  # tokens per row a roomy cache reserves at most; past them it grows by copying, as DynamicLayer does


def roomy_cache(room: int):
    """A DynamicCache whose layers reserve `room` more tokens (at most ROOM_LIMIT) at their first update:
    later updates write into the reserve, returning views of it, where DynamicLayer copies the whole cache
    (torch.cat) at every update. An update past the reserve grows by copying, as DynamicLayer does."""
    from transformers.cache_utils import DynamicCache

    cache = DynamicCache()
    cache.layer_class_to_replicate = functools.partial(_roomy_layer(), min(room, ROOM_LIMIT))
    return cache


@functools.cache
def _roomy_layer():
    from transformers.cache_utils import DynamicLayer

    class RoomyLayer(DynamicLayer):
        def __init__(self, room: int):
            super().__init__()
            self.room = room

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
                self.reserve = tuple(t.new_empty((*t.shape[:-2], t.shape[-2] + self.room, t.shape[-1]))
                                     for t in (key_states, value_states))
                held = 0
            else:
                held = self.keys.shape[-2]
                if held + key_states.shape[-2] > self.reserve[0].shape[-2]:
                    return super().update(key_states, value_states, *args, **kwargs)
            end = held + key_states.shape[-2]
            for buffer, new in zip(self.reserve, (key_states, value_states)):
                buffer[..., held:end, :] = new
            self.keys, self.values = (buffer[..., :end, :] for buffer in self.reserve)
            return self.keys, self.values

    return RoomyLayer
