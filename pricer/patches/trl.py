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
  Same loss, same logged values (tests/test_train.py). Off: TRL's compute_loss as it is.
"""

import contextlib
import functools

from pricer.patches.fence import Fence

TESTED = ("1.16.0",)
COMPLETION_SCORING = Fence("trl.completion_scoring", "trl", TESTED,
                           "TRL's loss projects every position on CPU (more work; the preflight counts them all)")
LAZY_METRICS = Fence("trl.lazy_metrics", "trl", TESTED,
                     "TRL reads its metrics after every micro-batch (a wait for the GPU each)")


def score_completions_only(trainer_class):
    """`trainer_class` whose loss projects only labelled positions on CPU too; apply it outermost."""
    return _completions_only(trainer_class) if COMPLETION_SCORING.on else trainer_class


@contextlib.contextmanager
def compact_scoring():
    """While inside: TRL's fused head scores only labelled positions on CPU as on CUDA/XPU; TRL's own after."""
    import trl.trainer.utils as trl_utils

    stock = trl_utils._use_triton
    trl_utils._use_triton = _compact_on
    try:
        yield
    finally:
        trl_utils._use_triton = stock


def _compact_on(device) -> bool:
    return device.type in ("cuda", "xpu", "cpu")


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
            pending = self.__dict__.setdefault("pending_metrics", [])  # per micro-batch: labelled tokens,
            pending.append(torch.stack([c.float() for c in counts]))  # entropy sum, top-1 hits, tokens
            return loss

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
