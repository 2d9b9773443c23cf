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
  once, not for every micro-batch. Off: TRL's compute_loss as it is.
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


def positions_found_on_cpu(trainer) -> None:
    """Give `trainer` a collator whose batches also say, found on the CPU, where the loss scores and whether they
    are right-padded, if its loss is lazy_metrics_trainer's (the one that reads, and takes out, those keys)."""
    if getattr(trainer, "reads_found_positions", False) and not isinstance(trainer.data_collator, ScoredPositions):
        trainer.data_collator = ScoredPositions(trainer.data_collator)


class ScoredPositions:
    """A collator's batch plus POSITIONS (flat indices over batch x length of the tokens whose next token is
    labelled), TARGETS (those labels) and CAUSAL (every row is right-padded and nothing else says where
    its tokens sit, so causal attention alone keeps padding out of view)."""

    def __init__(self, collator):
        self.collator = collator

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
        return batch


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


@functools.cache
def _lazy_metrics(trainer_class):
    import torch

    class LazyMetrics(trainer_class):  # also given to a made trainer (pricer.train.read_metrics_once_per_log)
        reads_found_positions = True  # positions_found_on_cpu's keys: taken out of every batch, used in training

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            found = {key: inputs.pop(key) for key in (POSITIONS, TARGETS, CAUSAL) if key in inputs}
            if return_outputs or not model.training or "attention_mask" not in inputs or not self._plain_nll():
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            inputs["use_cache"] = False
            if len(found) == 3 and len(found[POSITIONS]):
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
            causal = found[CAUSAL]
            kwargs = {k: v for k, v in inputs.items() if k != "labels" and not (causal and k == "attention_mask")}
            positions = found[POSITIONS]
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
