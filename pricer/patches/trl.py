"""TRL: its fused loss scores only labelled positions on CPU too, and its metrics are read once per log.

- `score_completions_only(trainer_class)`: TRL's fused LM head (`add_fused_lm_head`) asks
  `trl.trainer.utils._use_triton(device)` whether to project only the positions that carry a label;
  it says no off Triton devices (Neuron compiles want fixed tile shapes), so on CPU every prompt
  position is projected onto the whole vocabulary and then masked away. The subclass says yes on
  CPU too, only while its compute_loss runs (the module keeps TRL's own function otherwise).
  Same loss; fewer rows through the head. Off: TRL projects every position on CPU, and the memory
  preflight counts every position's logits.
- `lazy_metrics_trainer(trainer_class)`: TRL's compute_loss reads entropy, token accuracy and the
  token count with `.item()` after every forward, each read a wait for the GPU. The subclass
  replays TRL's plain NLL path (the one pricer's settings take; anything else goes to TRL), keeps
  those sums on the device, and adds them to TRL's `_metrics` / `_total_train_tokens` at log time.
  Same loss, same logged values (tests/test_train.py). Trainer's FLOP estimate counts the parameters
  once, not for every micro-batch, and its per-step walks of the model (`model.train()`, `model.zero_grad()`,
  the gradient clip) read modules and trainable parameters listed once per `train()` (`walks_listed_once`).
  Off: TRL's compute_loss and Trainer's walks as they are.
- `positions_found_on_cpu(trainer)`: with lazy metrics, each batch also carries, found by the CPU as it
  collates, the positions its loss scores and whether its rows are right-padded. The loss then picks
  those positions by index (`pricer.patches.transformers.hidden_states_at`) and hands TRL's head only
  them, every one labelled (`shift_labels`; TRL scores every position it is given when `_use_triton` says
  no, so no boolean mask); and a right-padded batch runs without its attention mask, since causal
  attention already keeps each real token from the padding after it. Two waits for the GPU go (TRL's
  `hidden_states[mask]`, masked_scatter's backward) and two more (transformers checks whether the padding
  mask is all ones); attention runs its causal kernel. Same loss up to attention's rounding. Off: the batch
  as TRL collates it.
"""

import contextlib
import functools

from pricer.patches.fence import Fence
from pricer.patches.transformers import hidden_states_at, unpacked_rows

TESTED = ("1.16.0",)
COMPLETION_SCORING = Fence("trl.completion_scoring", "trl", TESTED,
                           "TRL's loss projects every position on CPU (more work; the preflight counts them all)")
LAZY_METRICS = Fence("trl.lazy_metrics", "trl", TESTED,
                     "TRL reads its metrics after every micro-batch (a wait for the GPU each)")


def score_completions_only(trainer_class):
    """`trainer_class` whose loss projects only labelled positions on CPU too; apply it outermost."""
    return _completions_only(trainer_class) if COMPLETION_SCORING.on else trainer_class


def compact_scoring():
    """While inside: TRL's fused head scores only labelled positions on CPU as on CUDA/XPU; TRL's own after."""
    return _use_triton_answering(_compact_on)


def every_position_scored():
    """While inside: TRL's fused head scores every position it is given (it is given only labelled ones)."""
    return _use_triton_answering(_never)


@contextlib.contextmanager
def _use_triton_answering(answer):
    """TRL's fused head asks `_use_triton(device)` whether to pick labelled positions with a boolean mask."""
    import trl.trainer.utils as trl_utils

    stock = trl_utils._use_triton
    trl_utils._use_triton = answer
    try:
        yield
    finally:
        trl_utils._use_triton = stock


def _compact_on(device) -> bool:
    return device.type in ("cuda", "xpu", "cpu")


def _never(device) -> bool:
    return False


POSITIONS, TARGETS, CAUSAL = "pricer_positions", "pricer_targets", "pricer_causal"  # keys the loss pops
PACKED = "pricer_packed"  # ... and the packed batch's: input ids, position ids, LAYOUT, SLOTS, scored positions


def positions_found_on_cpu(trainer) -> None:
    """Give `trainer` a collator whose batches also say, found on the CPU, where the loss scores and whether they
    are right-padded, if its loss is lazy_metrics_trainer's (the one that reads, and takes out, those keys)."""
    if getattr(trainer, "reads_found_positions", False) and not isinstance(trainer.data_collator, ScoredPositions):
        trainer.data_collator = ScoredPositions(trainer.data_collator)


class ScoredPositions:
    """A collator's batch plus POSITIONS (flat indices over batch x length of the tokens whose next token is
    labelled), TARGETS (those labels) and CAUSAL (every row is right-padded and nothing else says where
    its tokens sit, so causal attention alone keeps padding out of view). With `pack` (a size in tokens), a causal
    batch also carries PACKED: its rows' real tokens one after another, padded to that size (to its own padded
    size where they don't fit), for a model that attends through `pricer.patches.transformers.OURS`."""

    def __init__(self, collator, pack: int = 0):
        self.collator, self.pack = collator, pack

    def __call__(self, examples):
        batch = self.collator(examples)
        labels, mask = batch.get("labels"), batch.get("attention_mask")
        if labels is None or labels.ndim != 2:
            return batch
        rows, cols = (labels[:, 1:] != -100).nonzero(as_tuple=True)
        batch[POSITIONS] = rows * labels.shape[1] + cols
        batch[TARGETS] = labels[rows, cols + 1]
        batch[CAUSAL] = (mask is not None and mask.ndim == 2 and "position_ids" not in batch
                         and bool((mask[:, 1:] <= mask[:, :-1]).all()))
        if self.pack and batch[CAUSAL]:
            batch[PACKED] = packed(batch["input_ids"], mask, rows, cols, self.pack)
        return batch


def packed(ids, mask, rows, cols, size: int) -> dict:
    """A right-padded batch's real tokens one after another in one row of `size` (or of the padded batch's size
    where that is smaller or they don't fit: a shape for compiled code either way), padded with token 0 (no
    place in any row, never scored): input_ids and position_ids [1, tokens]; LAYOUT [rows, length], the packed
    token at each place (token 0 past a row's end: see `_our_attention`); SLOTS [tokens], each packed token's
    place (flat index over rows x length); POSITIONS of the scored (`rows`, `cols`) in the packed row."""
    import torch

    from pricer.patches.transformers import LAYOUT, SLOTS

    lengths, real = mask.sum(1), mask.flatten().bool()
    count = int(lengths.sum())
    size = size if count <= size < mask.numel() else mask.numel()  # never more than the padded batch
    places = real.nonzero().squeeze(1)
    layout = torch.zeros(mask.numel(), dtype=torch.long)
    layout[places] = torch.arange(count)
    tokens, positions, slots = (torch.zeros(size, dtype=torch.long) for _ in range(3))
    tokens[:count], slots[:count] = ids.flatten()[real], places
    positions[:count] = torch.arange(mask.shape[1]).repeat(mask.shape[0])[real]
    return {"input_ids": tokens[None], "position_ids": positions[None], LAYOUT: layout.view(mask.shape),
            SLOTS: slots, POSITIONS: (lengths.cumsum(0) - lengths)[rows] + cols}


@functools.cache
def _completions_only(trainer_class):
    class CompletionsOnly(trainer_class):
        def compute_loss(self, *args, **kwargs):
            with compact_scoring():
                return super().compute_loss(*args, **kwargs)

    return CompletionsOnly


def lazy_metrics_trainer(trainer_class):
    """`trainer_class` (TRL's SFTTrainer) keeping its per-micro-batch metrics on the device until it logs."""
    return _lazy_metrics(trainer_class) if LAZY_METRICS.on else trainer_class


@contextlib.contextmanager
def walks_listed_once(model):
    """While inside: `model.train()` and `model.zero_grad()`, which Trainer calls on every step, read the modules
    and trainable parameters listed here instead of walking every module of the model (milliseconds of Python a
    step for a 3B model with LoRA, the GPU waiting: `bench/host_walks.py`). The same effect: `train()` does
    nothing only where every module is already training and none has a `train` of its own (DoRA's clears a
    cache: those walk as stock); frozen parameters get no gradient to clear. Yields the trainable parameters;
    the model's own methods are back on the way out."""
    import torch
    from transformers import PreTrainedModel

    stock = (torch.nn.Module.train, PreTrainedModel.train)  # set `training` and nothing else when it is unchanged
    modules, cls = list(model.modules()), type(model)
    plain = all(type(m).train in stock for m in modules)
    trainable = [p for p in model.parameters() if p.requires_grad]

    def train(mode=True):
        if not (mode is True and plain and all(m.training for m in modules)):
            cls.train(model, mode)
        return model

    def zero_grad(set_to_none=True):
        if not set_to_none:
            return cls.zero_grad(model, set_to_none)
        for p in trainable:
            p.grad = None

    own = {name: vars(model)[name] for name in ("train", "zero_grad") if name in vars(model)}
    model.train, model.zero_grad = train, zero_grad
    try:
        yield trainable
    finally:
        for name in ("train", "zero_grad"):
            vars(model).pop(name, None)
        for name, method in own.items():
            setattr(model, name, method)


@functools.cache
def _lazy_metrics(trainer_class):
    import torch

    class LazyMetrics(trainer_class):  # also given to a made trainer (pricer.train.read_metrics_once_per_log)
        reads_found_positions = True  # positions_found_on_cpu's keys: taken out of every batch, used in training

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            found = {key: inputs.pop(key) for key in (POSITIONS, TARGETS, CAUSAL, PACKED) if key in inputs}
            if return_outputs or not model.training or "attention_mask" not in inputs or not self._plain_nll():
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            inputs["use_cache"] = False
            if all(key in found for key in (POSITIONS, TARGETS, CAUSAL)) and len(found[POSITIONS]):
                outputs = self._scored_where_found(model, inputs, found)
            else:
                outputs = model(**inputs, fused_lm_head=True)
            scored = outputs.label_mask.sum() if num_items_in_batch is None else num_items_in_batch
            loss = -outputs.log_probs.sum() / torch.as_tensor(scored).clamp(min=1)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * (self.accelerator.num_processes // self.get_tp_size())
            counts = [outputs.label_mask.sum(), outputs.entropy.detach().sum(), outputs.is_top1.sum(),
                      inputs["attention_mask"].sum()]
            pending = self.__dict__.setdefault("pending_metrics", [])  # per micro-batch: labelled tokens,
            pending.append(torch.stack([c.float() for c in counts]))  # entropy sum, top-1 hits, tokens
            return loss

        def _scored_where_found(self, model, inputs, found):
            """TRL's fused head on the hidden states at the positions the collator found, each with its label."""
            causal, pack = found[CAUSAL], found.get(PACKED, {})
            kwargs = {k: v for k, v in inputs.items() if k != "labels" and not (causal and k == "attention_mask")}
            kwargs.update({k: v for k, v in pack.items() if k != POSITIONS})  # the packed row, where there is one
            positions = pack.get(POSITIONS, found[POSITIONS])
            with hidden_states_at(self.accelerator.unwrap_model(model), positions, (1, len(positions))), \
                    every_position_scored(), unpacked_rows() if causal else contextlib.nullcontext():
                return model(**kwargs, fused_lm_head=True, shift_labels=found[TARGETS][None])

        def floating_point_ops(self, inputs):
            """Trainer's FLOP count, its formula, with the parameters counted once, not again for every
            micro-batch (~6 ms of Python per step for a 3B model, the GPU waiting)."""
            main = getattr(self.model, "main_input_name", "input_ids")
            if main not in inputs or not hasattr(self.model, "num_parameters"):
                return super().floating_point_ops(inputs)
            if "parameter_count" not in self.__dict__:
                self.parameter_count = self.model.num_parameters(exclude_embeddings=True)
            return 6 * inputs[main].numel() * self.parameter_count

        def train(self, *args, **kwargs):
            """Trainer's own, with the model's modules and trainable parameters listed once for its per-step
            walks (`walks_listed_once`, the clip below). One process only (DDP, FSDP and DeepSpeed wrap the model)."""
            if not self._one_process():
                return super().train(*args, **kwargs)
            with walks_listed_once(self.model) as self.trainable:
                return super().train(*args, **kwargs)

        def _clip_grad_norm(self, model):
            """Trainer's clip over the trainable parameters, listed once, not over a walk of every module of the
            model each step (~6 ms of Python for a 3B model, the GPU waiting). The same norm: frozen parameters
            have no gradient. One process only (FSDP and DeepSpeed clip their own way)."""
            mixed = getattr(self, "_has_mixed_mesh_grads", None)  # Trainer's DTensor check, where it has one
            if not self._one_process() or (mixed and mixed(model)):
                return super()._clip_grad_norm(model)
            if "trainable" not in self.__dict__:  # a clip outside train()
                self.trainable = [p for p in model.parameters() if p.requires_grad]
            return self.accelerator.clip_grad_norm_(self.trainable, self.args.max_grad_norm)

        def _one_process(self) -> bool:
            from accelerate.utils import DistributedType

            return self.accelerator.distributed_type == DistributedType.NO

        def _plain_nll(self) -> bool:
            """TRL's default loss path (the one this class replays); anything else goes to TRL itself."""
            return (self.compute_loss_func is None and self.label_smoother is None and self.args.loss_type == "nll"
                    and not self.aux_loss_enabled and self.get_tp_size() == 1)

        def log(self, logs, start_time=None):
            pending = self.__dict__.pop("pending_metrics", [])
            if pending:  # one read for all micro-batches since the last log
                totals = self.accelerator.gather(torch.stack(pending)[None]).sum(0).tolist()
                for valid, entropy, correct, tokens in totals:
                    self._metrics["train"]["entropy"].append(entropy / valid if valid > 0 else 0.0)
                    self._metrics["train"]["mean_token_accuracy"].append(correct / valid if valid > 0 else 0.0)
                    self._total_train_tokens += int(tokens)
                self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
            super().log(logs, start_time)

    return LazyMetrics
