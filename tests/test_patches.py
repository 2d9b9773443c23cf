"""The fenced patches: a canary per patch, the fence itself, and no process-wide side effects.

A canary fails when the upstream code a patch relies on changes: the source of what it copies or
wraps (compared by `source_digest`), the signature it overrides, the attribute or key names it reads.
When one fails after a version bump: re-read the upstream function it names, adjust the patch in
pricer/patches/, update the expected digest here, and add the version to the patch's TESTED.
"""

import contextlib
import dataclasses
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from pricer import patches
from pricer.patches import fence as fence_module
from pricer.errors import PricerError
from pricer.patches.transformers import source_digest

sys.path.insert(0, str(Path(__file__).parent))
from device_reads import device_reads  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture
def versions(monkeypatch):
    """Pretend other library versions are installed: `versions("9.9.9")`; verdicts are decided afresh."""
    def pretend(version: str | None):
        monkeypatch.setattr(fence_module, "installed", lambda library: version)
        monkeypatch.setattr(fence_module, "_verdicts", {})

    return pretend


def head_rows(monkeypatch) -> list[int]:
    """Rows TRL's fused head projects onto the vocabulary, call by call."""
    import trl.trainer.utils as trl_utils

    rows, function = [], trl_utils._ChunkedLogProbFunction

    class Recorder:
        @staticmethod
        def apply(hidden, *args):
            rows.append(hidden.shape[0])
            return function.apply(hidden, *args)

    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", Recorder)
    return rows


def build(tiny_model, tmp_path, max_steps=1):
    """pricer's trainer for the tiny model (CPU, fp32, not grouped) and one training batch."""
    import torch
    from transformers import AutoModelForCausalLM

    from pricer.config import get_preset
    from pricer.memory import BatchPlan
    from pricer.models import load_tokenizer
    from pricer.train import Options, Setup, build_trainer

    rows = [{"prompt": f"Title: a {'big ' * i}lamp\n\nPrice is $", "completion": f"{10 + i}.00"} for i in range(4)]
    preset = get_preset("tiny", base_model=tiny_model, batch_size=4, max_length=64)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    trainer = build_trainer(model, load_tokenizer(tiny_model), rows, preset,
                            Setup("fp32", BatchPlan(4, 1, False, 1.0, 10.0), grouped=False), tmp_path,
                            Options(max_steps=max_steps))
    return trainer, next(iter(trainer.get_train_dataloader()))


# ----- trl -----

def test_trl_fused_head_asks_use_triton_for_compaction(monkeypatch):
    """score_completions_only swaps the function TRL's fused head calls to decide whether to compact."""
    import torch
    import trl.kernels.chunked_logprob as kernels
    import trl.trainer.utils as trl_utils

    from pricer.patches.trl import compact_scoring

    assert trl_utils._use_triton is kernels._use_triton  # the name the head looks up, imported from the kernels
    assert list(inspect.signature(trl_utils._use_triton).parameters) == ["device"]
    head = inspect.getsource(trl_utils.add_fused_lm_head)
    assert "compact = _use_triton(hidden_states.device)" in head and "hidden_states[mask] if compact" in head
    assert trl_utils._use_triton(torch.device("cpu")) is False  # stock: every position on CPU, hence the patch
    assert source_digest(trl_utils.add_fused_lm_head) == "422d009f04b6"

    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, vocab_size=97))
    trl_utils.add_fused_lm_head(model)
    ids = torch.randint(0, 97, (2, 12))
    labels = ids.clone()
    labels[:, :9] = -100  # the prompt: no label
    rows = head_rows(monkeypatch)
    stock = model(input_ids=ids, labels=labels, fused_lm_head=True).log_probs
    with compact_scoring():
        compact = model(input_ids=ids, labels=labels, fused_lm_head=True).log_probs
    assert rows == [2 * 11, 2 * 3]  # every shifted position, then only the labelled ones
    torch.testing.assert_close(compact, stock)
    assert trl_utils._use_triton is kernels._use_triton  # TRL's own function is back


def test_trl_completion_scoring_applies_to_the_trainer_pricer_builds(tiny_model, tmp_path, monkeypatch):
    """score_completions_only wraps the outermost class, so the lazy-metrics loss under it compacts too."""
    trainer, batch = build(tiny_model, tmp_path)
    rows = head_rows(monkeypatch)
    trainer.compute_loss(trainer.model, batch)
    assert rows == [int((batch["labels"][:, 1:] != -100).sum())]


def test_trl_loss_at_positions_found_on_cpu_is_trls_loss_with_nothing_read_back(tiny_model, tmp_path):
    """The collator finds the scored positions on the CPU and marks the right-padded batch causal: the loss and
    gradients are TRL's own on the same batch, the decoder runs without an attention mask, and neither the
    forward nor the backward reads anything back (TRL's own does: the detector works)."""
    import torch
    from trl import SFTTrainer

    from pricer.patches.trl import CAUSAL, POSITIONS, TARGETS

    trainer, batch = build(tiny_model, tmp_path)
    assert batch[CAUSAL] is True  # TRL pads on the right
    labels = batch["labels"]
    assert len(batch[POSITIONS]) == int((labels[:, 1:] != -100).sum()) > 0
    assert batch[TARGETS].tolist() == labels[:, 1:][labels[:, 1:] != -100].tolist()
    stock_batch = {k: v for k, v in batch.items() if k not in (POSITIONS, TARGETS, CAUSAL)}
    masks = []
    trainer.model.get_decoder().register_forward_pre_hook(
        lambda module, args, kwargs: masks.append(kwargs.get("attention_mask")), with_kwargs=True)

    def loss_and_grads(compute, inputs):
        trainer.model.zero_grad(set_to_none=True)
        torch.manual_seed(0)  # the same LoRA dropout draws for both
        out = {}
        reads = device_reads(lambda: out.setdefault("loss", compute(trainer.model, dict(inputs))).backward())
        grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
        return out["loss"].item(), grads, reads

    ours, our_grads, our_reads = loss_and_grads(trainer.compute_loss, batch)
    stock, stock_grads, stock_reads = loss_and_grads(lambda m, i: SFTTrainer.compute_loss(trainer, m, i), stock_batch)
    assert our_reads == [] and stock_reads  # TRL's boolean mask, its metrics' .item(), the padding-mask check
    assert masks[0] is None and masks[1] is not None
    assert ours == pytest.approx(stock, rel=1e-5)
    for name, grad in our_grads.items():
        torch.testing.assert_close(grad, stock_grads[name], rtol=1e-4, atol=1e-7, msg=name)


def test_packed_rows_train_as_the_padded_batch_with_nothing_read_back(tiny_model, tmp_path):
    """pack_rows: the collator packs each causal batch's real tokens into one row and the model attends to them
    row by row (pricer_sdpa): the loss and every LoRA gradient are the padded batch's, the decoder sees the packed
    row, and neither forward nor backward reads the device. A batch too long for the packed size keeps its own."""
    import torch

    from pricer.patches.transformers import LAYOUT, OURS
    from pricer.patches.trl import PACKED, POSITIONS
    from pricer.speed import pack_rows

    trainer, padded = build(tiny_model, tmp_path)
    assert trainer.data_collator.pack == 0 and PACKED not in padded  # a CPU run: not graphed, so not packed
    assert pack_rows(trainer) and trainer.model.config._attn_implementation == OURS
    examples = [trainer.train_dataset[i] for i in range(4)]
    batch = trainer.data_collator(examples)
    pack, real = batch[PACKED], int(batch["attention_mask"].sum())
    assert pack["input_ids"].shape == (1, trainer.data_collator.pack) and real <= trainer.data_collator.pack
    assert trainer.data_collator.pack < batch["input_ids"].numel()
    assert pack["input_ids"][0, :real].tolist() == batch["input_ids"][batch["attention_mask"].bool()].tolist()
    assert pack[LAYOUT].shape == batch["input_ids"].shape and len(pack[POSITIONS]) == len(batch[POSITIONS])
    seen = []
    trainer.model.get_decoder().register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["input_ids"].shape), with_kwargs=True)

    def loss_and_grads(inputs):
        trainer.model.zero_grad(set_to_none=True)
        out = {}
        reads = device_reads(lambda: out.setdefault("loss", trainer.compute_loss(trainer.model, dict(inputs)))
                             .backward())
        return out["loss"].item(), {n: p.grad.clone() for n, p in trainer.model.named_parameters()
                                    if p.requires_grad}, reads

    for module in trainer.model.modules():  # no LoRA dropout: the two layouts would draw different masks
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    for name, param in trainer.model.named_parameters():  # LoRA B starts at zero: give A's gradients a path
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.02)
    ours, our_grads, our_reads = loss_and_grads(batch)
    stock, stock_grads, _ = loss_and_grads({k: v for k, v in batch.items() if k != PACKED})
    assert seen == [pack["input_ids"].shape, batch["input_ids"].shape], seen
    assert our_reads == [], our_reads
    assert ours == pytest.approx(stock, rel=1e-5)
    for name, grad in our_grads.items():
        torch.testing.assert_close(grad, stock_grads[name], rtol=1e-4, atol=1e-7, msg=name)
    trainer.data_collator.pack = real - 1  # too small for this batch: it packs into its padded size
    assert trainer.data_collator(examples)[PACKED]["input_ids"].shape == (1, batch["input_ids"].numel())


def test_packed_batches_collated_in_a_worker_are_the_main_process_ones(tiny_model, tmp_path, monkeypatch):
    """A GPU run collates (and packs) in a DataLoader worker (device_settings): the worker, forked after pack_rows,
    hands over the batches the main process would make, in order."""
    import torch

    import pricer.train
    from pricer.patches.trl import PACKED
    from pricer.speed import pack_rows

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    settings = pricer.train.device_settings(pricer.train.Setup("bf16", None, grouped=False, compiled=True))
    monkeypatch.undo()
    assert settings["dataloader_num_workers"] == 1 and settings["dataloader_persistent_workers"]
    trainer, _ = build(tiny_model, tmp_path)
    assert pack_rows(trainer)

    def batches(workers):
        trainer.args.dataloader_num_workers, trainer.args.dataloader_persistent_workers = workers, workers > 0
        torch.manual_seed(0)
        return list(trainer.get_train_dataloader())

    here, there = batches(0), batches(1)
    assert len(here) == len(there) > 0
    for a, b in zip(here, there):
        assert PACKED in b and b[PACKED].keys() == a[PACKED].keys()
        for key in a[PACKED]:
            assert torch.equal(a[PACKED][key], b[PACKED][key]), key
        assert torch.equal(a["input_ids"], b["input_ids"])

def test_packed_size_holds_the_biggest_batch_seen_and_never_more_than_the_longest_rows():
    from pricer.speed import PACK_ROUND, packed_size

    lengths = [90 + i % 39 for i in range(600)]
    size = packed_size(lengths, 32)
    assert size % PACK_ROUND == 0 and 32 * sum(lengths) / len(lengths) < size < 32 * 128
    assert packed_size([128] * 64, 32) == 32 * 128  # nothing to save: the padded size
    assert packed_size([10, 20], 32) == 30  # fewer rows than a batch


def test_trl_found_positions_mark_only_right_padded_batches_causal():
    """A batch whose padding comes first (or that carries its own positions) keeps its attention mask."""
    import torch

    from pricer.patches.trl import CAUSAL, POSITIONS, ScoredPositions

    def collate(mask, **extra):
        mask = torch.tensor(mask)
        labels = torch.where(mask.bool(), 7, -100)
        return ScoredPositions(lambda examples: {"input_ids": mask, "attention_mask": mask, "labels": labels,
                                                 **extra})([])

    right = collate([[1, 1, 1, 0], [1, 1, 1, 1]])
    assert right[CAUSAL] is True and right[POSITIONS].tolist() == [0, 1, 4, 5, 6]
    assert collate([[0, 1, 1, 1], [1, 1, 1, 1]])[CAUSAL] is False
    assert collate([[1, 1, 1, 0], [1, 1, 1, 1]], position_ids=torch.zeros(2, 4))[CAUSAL] is False


def test_trl_fused_head_scores_given_labels_without_a_mask_when_triton_says_no():
    """What the loss at found positions relies on in TRL's fused head: `shift_labels` are used as given (no shift),
    and with `_use_triton` false every position is scored through reshape, not a boolean index."""
    import trl.trainer.utils as trl_utils

    head = inspect.getsource(trl_utils.add_fused_lm_head)
    for line in ("if shift_labels is None:", "hidden_states = backbone_outputs.last_hidden_state\n",
                 "labels = shift_labels", "compact = _use_triton(hidden_states.device)",
                 "hidden_states[mask] if compact else hidden_states.reshape(-1, hidden_states.size(-1))",
                 "labels[mask] if compact else labels.clamp(min=0).reshape(-1)",
                 "backbone_outputs = getattr(self, backbone_attr)(*args, **kwargs)"):
        assert line.replace("\n", "") in head, line


def test_trl_plain_nll_path_is_the_one_lazy_metrics_replays():
    """LazyMetrics.compute_loss replays this path of SFTTrainer.compute_loss line for line."""
    from trl import SFTTrainer
    from trl.trainer.utils import FusedCausalLMOutput

    source = inspect.getsource(SFTTrainer.compute_loss)
    for line in ('inputs["use_cache"] = False',
                 "outputs = model(**inputs, fused_lm_head=True)",
                 "per_token_loss = -outputs.log_probs",
                 "num_tokens = outputs.label_mask.sum() if num_items_in_batch is None else num_items_in_batch",
                 "loss = per_token_loss.sum() / torch.as_tensor(num_tokens).clamp(min=1)",
                 "if self.args.average_tokens_across_devices and num_items_in_batch is not None:",
                 "loss = loss * (self.accelerator.num_processes // self.get_tp_size())",
                 "if self.compute_loss_func is not None:",
                 'elif self.label_smoother is not None and self.args.loss_type == "nll":',
                 "if self.aux_loss_enabled:"):
        assert line in source, line
    fields = {f.name for f in dataclasses.fields(FusedCausalLMOutput)}
    assert {"log_probs", "entropy", "is_top1", "label_mask"} <= fields
    assert list(inspect.signature(SFTTrainer.compute_loss).parameters) == [
        "self", "model", "inputs", "return_outputs", "num_items_in_batch"]
    assert source_digest(SFTTrainer.compute_loss) == "fc5223add31c"


def test_trl_metrics_bookkeeping_is_what_lazy_metrics_replays():
    """LazyMetrics.log adds to `_metrics["train"]` and `_total_train_tokens` as TRL's compute_loss does, then
    lets TRL's log average them."""
    from trl import SFTTrainer

    init, loss, log = (inspect.getsource(f) for f in (SFTTrainer.__init__, SFTTrainer.compute_loss, SFTTrainer.log))
    assert 'self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}' in init
    assert "self._total_train_tokens = 0" in init
    for line in ('self._metrics[mode]["entropy"].append((entropy_sum / num_valid).item() if num_valid > 0 else 0.0)',
                 'self._metrics[mode]["mean_token_accuracy"].append((num_correct / num_valid).item() if num_valid > 0',
                 'inputs["attention_mask"].sum()',
                 "self._total_train_tokens += num_tokens_in_batch // self._tp_size",
                 'self._metrics[mode]["num_tokens"] = [self._total_train_tokens]'):
        assert line in loss, line
    assert "metrics = {key: sum(val) / len(val) for key, val in self._metrics[mode].items()}" in log
    assert source_digest(SFTTrainer.log) == "aa94fde9ecf0"


def test_lazy_metrics_clips_the_trainable_gradients_as_trainer_does_without_walking_the_model_again(
        tiny_model, tmp_path, monkeypatch):
    """The clip's norm and clipped gradients are Trainer's own; after the first step the model is not walked."""
    import torch
    from transformers import Trainer

    trainer, _ = build(tiny_model, tmp_path)
    model, trainer.args.max_grad_norm = trainer.model, 0.5
    trainable = [p for p in model.parameters() if p.requires_grad]
    torch.manual_seed(0)
    grads = [torch.randn_like(p) for p in trainable]

    def clipped(clip):
        for p, g in zip(trainable, grads):
            p.grad = g.clone()
        return clip(model), [p.grad.clone() for p in trainable]

    theirs, their_grads = clipped(lambda m: Trainer._clip_grad_norm(trainer, m))
    ours, our_grads = clipped(trainer._clip_grad_norm)
    assert theirs > 0.5 and torch.equal(ours, theirs)  # it clipped, and to the same norm
    for a, b in zip(our_grads, their_grads):
        assert torch.equal(a, b)
    monkeypatch.setattr(type(model), "parameters", lambda *a, **k: pytest.fail("walked the model again"))
    assert torch.equal(clipped(trainer._clip_grad_norm)[0], theirs)


def test_walks_listed_once_keep_train_and_zero_grad_effects_without_walking_the_model(monkeypatch):
    """train() walks only where a module is out of training (or has a train() of its own), eval() and
    zero_grad(set_to_none=False) are stock, zero_grad() clears every gradient without listing parameters."""
    import torch

    from pricer.patches.trl import walks_listed_once

    class OwnTrain(torch.nn.Linear):  # as DoRA's layer: train() does more than set `training`
        def train(self, mode=True):
            self.calls = getattr(self, "calls", 0) + 1
            return super().train(mode)

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5), torch.nn.Linear(2, 1)).eval()
    model[0].weight.requires_grad_(False)
    walked = []
    children = torch.nn.Module.children
    monkeypatch.setattr(torch.nn.Module, "children", lambda self: walked.append(self) or children(self))
    with walks_listed_once(model) as trainable:
        assert [id(p) for p in trainable] == [id(model[0].bias), id(model[2].weight), id(model[2].bias)]
        assert model.train() is model and all(m.training for m in model.modules()) and walked
        walked.clear()
        model.train()
        assert not walked  # every module already training: nothing to set
        model[1].eval()
        model.train()
        assert model[1].training and walked  # one module out of training: walked as stock
        model.eval()
        assert not any(m.training for m in model.modules())
        for p in trainable:
            p.grad = torch.ones_like(p)
        model.zero_grad(set_to_none=False)
        assert all(p.grad is not None and not p.grad.any() for p in trainable)  # stock: zeroed in place
        monkeypatch.setattr(torch.nn.Module, "parameters", lambda *a, **k: pytest.fail("walked the parameters"))
        model.zero_grad()
        assert all(p.grad is None for p in trainable)
    assert "train" not in vars(model) and "zero_grad" not in vars(model)  # the model's own methods again

    monkeypatch.undo()
    own = torch.nn.Sequential(OwnTrain(2, 2))
    with walks_listed_once(own):
        own.train()
        own.train()
    assert own[0].calls == 2  # a module with a train() of its own is walked every time


def test_lazy_metrics_trains_to_trainers_weights_without_walking_the_model_each_step(tiny_model, tmp_path,
                                                                                        monkeypatch):
    """The canary for `walks_listed_once`: Trainer's loop calls train() and zero_grad() on the model it was
    given, and with them listed once three steps reach the weights of Trainer's own walks."""
    import torch
    from transformers import Trainer

    stock_train, stock_zero_grad, walked = torch.nn.Module.train, torch.nn.Module.zero_grad, []
    monkeypatch.setattr(torch.nn.Module, "train",
                        lambda self, mode=True: walked.append(self) or stock_train(self, mode))

    def trained(name, train, zero_grad_walks: bool):
        torch.manual_seed(0)
        trainer, _ = build(tiny_model, tmp_path / name, max_steps=3)
        model = trainer.model
        if not zero_grad_walks:
            monkeypatch.setattr(torch.nn.Module, "zero_grad", lambda self, *a, **k: pytest.fail(
                "walked the model to zero grads") if self is model else stock_zero_grad(self, *a, **k))
        walked.clear()
        train(trainer)
        assert "train" not in vars(model) and "zero_grad" not in vars(model)
        return [p.detach().clone() for p in model.parameters() if p.requires_grad], sum(m is model for m in walked)

    theirs, their_walks = trained("stock", Trainer.train, True)  # Trainer's walks: train() every step
    ours, our_walks = trained("ours", lambda trainer: trainer.train(), False)
    assert their_walks >= 3 and our_walks == 1  # ours: only the first step, the model coming in eval mode
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)

# ----- transformers -----

def test_transformers_use_our_attention_serves_only_llamas_layers_and_answers_as_sdpa_otherwise():
    """The canary: Llama's decoder layer and attention still pass a model's kwargs on (digests), a packed row attends
    as its padded rows do, an unpacked batch as SDPA, and another family (Qwen2) keeps its attention."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM
    from transformers.models.llama import modeling_llama

    from pricer.patches.transformers import ATTENTION_FORWARD, LAYER_FORWARD, OURS, use_our_attention, unpacked_rows
    from pricer.patches.trl import PACKED, POSITIONS, ScoredPositions

    assert source_digest(modeling_llama.LlamaDecoderLayer.forward) == LAYER_FORWARD
    assert source_digest(modeling_llama.LlamaAttention.forward) == ATTENTION_FORWARD
    shape = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=97)
    torch.manual_seed(0)
    model, stock = LlamaForCausalLM(LlamaConfig(**shape)), LlamaForCausalLM(LlamaConfig(**shape))
    stock.load_state_dict(model.state_dict())
    qwen = Qwen2ForCausalLM(Qwen2Config(**shape))
    assert use_our_attention(model) and model.config._attn_implementation == OURS
    assert not use_our_attention(qwen) and qwen.config._attn_implementation == "sdpa"
    mask = torch.tensor([[1] * 5 + [0] * 7, [1] * 12, [1] * 3 + [0] * 9])
    ids = torch.randint(1, 97, mask.shape) * mask
    labels = torch.where(mask.bool(), ids, -100)
    batch = ScoredPositions(lambda examples: {"input_ids": ids, "attention_mask": mask, "labels": labels},
                            pack=24)([])
    pack = batch[PACKED]
    with unpacked_rows():
        ours = model(**{k: v for k, v in pack.items() if k != POSITIONS}).logits[0, pack[POSITIONS]]
    expected = stock(input_ids=ids).logits.flatten(0, 1)[batch[POSITIONS]]
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).logits,
                               stock(input_ids=ids, attention_mask=mask).logits)
    tree = torch.zeros(3, 1, 12, 12).masked_fill(torch.rand(3, 1, 12, 12) < 0.3, torch.finfo(torch.float32).min)
    tree[..., 0] = 0  # a 4D mask as the digit tree's (any pattern; each query sees one key at least)
    ours_repeats, stock_repeats = [], []
    with patch_repeat_kv(ours_repeats):
        ours = model(input_ids=ids, attention_mask=tree).logits
    with patch_repeat_kv(stock_repeats):
        expected = stock(input_ids=ids, attention_mask=tree).logits
    torch.testing.assert_close(ours, expected)
    assert ours_repeats == [] and stock_repeats == [True] * 4  # transformers copies keys and values in each layer


@contextlib.contextmanager
def patch_repeat_kv(calls):
    """Record each call of transformers' repeat_kv in its SDPA path (True: it copied keys for grouped heads)."""
    from transformers.integrations import sdpa_attention

    stock = sdpa_attention.repeat_kv

    def recorded(hidden_states, n_rep):
        calls.append(n_rep > 1)
        return stock(hidden_states, n_rep)

    sdpa_attention.repeat_kv = recorded
    try:
        yield
    finally:
        sdpa_attention.repeat_kv = stock


def test_transformers_unpacked_rows_answers_as_the_check_would():
    """transformers checks an unmasked batch for packed sequences through the module-level name we rebind; for
    rows that each hold one sequence its answer is None, ours too, without reading the positions back."""
    import torch
    import transformers.masking_utils as masking

    from pricer.patches.transformers import unpacked_rows

    assert "packed_sequence_mask = find_packed_sequence_indices(position_ids)" in inspect.getsource(
        masking._preprocess_mask_arguments)
    stock = masking.find_packed_sequence_indices
    positions = torch.arange(6).expand(2, 6)
    assert stock(positions) is None and stock(torch.tensor([[0, 1, 2, 0, 1, 2]])) is not None
    assert device_reads(lambda: stock(positions)) != []  # the stock check reads the device
    with unpacked_rows():
        assert device_reads(lambda: masking.find_packed_sequence_indices(positions)) == []
        assert masking.find_packed_sequence_indices(positions) is None
    assert masking.find_packed_sequence_indices is stock


def test_transformers_roomy_cache_writes_in_place_and_answers_as_dynamic_cache():
    """Each update returns what DynamicCache's would; within the room the layer's keys are views of one reserve
    (no copy of the cache), past it the layer grows by copying as DynamicLayer does. The model builds the cache's
    layers from `layer_class_to_replicate`, which the roomy cache sets."""
    import torch
    from transformers.cache_utils import DynamicCache, DynamicLayer

    from pricer.patches.transformers import roomy_cache

    assert DynamicCache().layer_class_to_replicate is DynamicLayer
    roomy, stock = roomy_cache(3), DynamicCache()
    torch.manual_seed(0)
    for length in (5, 2, 1, 2):  # the prompt, two updates inside the room of 3, then one past it
        keys, values = torch.randn(2, 4, length, 8), torch.randn(2, 4, length, 6)
        got, want = roomy.update(keys, values, 0), stock.update(keys, values, 0)
        assert all(torch.equal(g, w) for g, w in zip(got, want))
        layer = roomy.layers[0]
        inside = layer.keys.shape[-2] <= 8
        assert (layer.keys.data_ptr() == layer.reserve[0].data_ptr()) == inside
        assert (layer.values.data_ptr() == layer.reserve[1].data_ptr()) == inside
    assert roomy.get_seq_length() == stock.get_seq_length() == 10


def test_transformers_train_sampler_hook():
    """Trainer builds its training DataLoader from `_get_train_sampler(train_dataset)`, which we override."""
    from transformers import Trainer

    assert list(inspect.signature(Trainer._get_train_sampler).parameters) == ["self", "train_dataset"]
    assert inspect.signature(Trainer._get_train_sampler).parameters["train_dataset"].default is None
    assert "sampler_fn=self._get_train_sampler" in inspect.getsource(Trainer.get_train_dataloader)


def test_transformers_n_gpu_is_what_trainer_reads():
    """`args.n_gpu` is `_n_gpu`, which decides whether Trainer wraps the model in nn.DataParallel."""
    from transformers import Trainer, TrainingArguments

    from pricer.patches.transformers import use_one_gpu

    assert "return self._n_gpu" in inspect.getsource(TrainingArguments.n_gpu.fget)
    wrap = inspect.getsource(Trainer._wrap_model)
    assert "self.args.n_gpu > 1" in wrap and "model = nn.DataParallel(model)" in wrap
    args = TrainingArguments(output_dir="unused", report_to="none")
    args._n_gpu = 3  # as Trainer's device setup leaves it on a machine with 3 GPUs
    use_one_gpu(args)
    assert args.n_gpu == 1


def test_transformers_fused_modules_are_llamas():
    """The fused kernels replicate these forwards; attention finds apply_rotary_pos_emb by its global name."""
    import torch
    from transformers.models.llama import modeling_llama as llama

    from pricer.patches import transformers as ours

    assert source_digest(llama.LlamaRMSNorm.forward) == ours.RMS_NORM_FORWARD
    assert source_digest(llama.LlamaMLP.forward) == ours.MLP_FORWARD
    assert ours._reads_global(llama.LlamaAttention.forward, "apply_rotary_pos_emb")
    assert not any(ours._reads_global(c.forward, "apply_rotary_pos_emb")
                   for c in (llama.LlamaDecoderLayer, llama.LlamaModel, llama.LlamaMLP))
    norm = llama.LlamaRMSNorm(8, eps=1e-5)
    norm.weight.data.uniform_()
    x = torch.randn(3, 8, dtype=torch.bfloat16)
    torch.testing.assert_close(ours._rms_norm(x, norm.weight, norm.variance_epsilon), norm(x), rtol=0, atol=0)


# ----- bitsandbytes -----

def test_bitsandbytes_step_is_the_one_we_copy():
    """PagedWaitsOnly.step is Optimizer8bit.step minus the unconditional sync_gpu: same helpers, same order."""
    from bitsandbytes.optim.optimizer import Optimizer8bit
    from bitsandbytes.utils import sync_gpu

    assert source_digest(Optimizer8bit.step) == "20ba860eb768"
    step = inspect.getsource(Optimizer8bit.step)
    for line in ("self.check_overrides()", "self.to_gpu()", "self.initialized = True",
                 "self.init_state(group, p, gindex, pindex)", "self.prefetch_state(p)",
                 "self.update_step(group, p, gindex, pindex)", "sync_gpu(p)"):
        assert line in step, line
    for name, params in (("init_state", ["self", "group", "p", "gindex", "pindex"]),
                         ("update_step", ["self", "group", "p", "gindex", "pindex"]),
                         ("prefetch_state", ["self", "p"]), ("check_overrides", ["self"]), ("to_gpu", ["self"])):
        assert list(inspect.signature(getattr(Optimizer8bit, name)).parameters) == params, name
    assert "self.initialized = False" in inspect.getsource(Optimizer8bit.__init__)
    assert "torch.cuda.synchronize()" in inspect.getsource(sync_gpu)


def test_bitsandbytes_marks_paged_states_is_paged():
    """Paged states carry `is_paged = True` (set by get_paged only); bitsandbytes itself reads it with getattr."""
    import bitsandbytes.functional as F
    from bitsandbytes.optim.optimizer import Optimizer8bit

    assert "out.is_paged = True" in inspect.getsource(F.get_paged)
    assert "F.get_paged(" in inspect.getsource(Optimizer8bit.get_state_buffer)
    assert 'is_paged = getattr(s1, "is_paged", False)' in inspect.getsource(Optimizer8bit.prefetch_state)


def test_bitsandbytes_paging_threshold_is_ours():
    """pricer.speed runs torch's AdamW where bitsandbytes would page no state: it pages from this size up only."""
    import re

    from bitsandbytes.optim.optimizer import Optimizer8bit

    from pricer.patches.bitsandbytes import PAGING_THRESHOLD

    source = inspect.getsource(Optimizer8bit.get_state_buffer)
    unpaged = re.search(r"if not self\.is_paged or p\.numel\(\) < ([0-9.e+]+):\n\s+return torch\.zeros_like", source)
    assert unpaged and float(unpaged.group(1)) == PAGING_THRESHOLD


def test_bitsandbytes_cpu_repacking_is_what_train_guards_against():
    """pricer.patches.bitsandbytes.keep_weights_packed_for_training / check_fresh (the CPU-repacking guard) read these."""
    import bitsandbytes.functional as F
    from bitsandbytes.nn import Linear4bit

    forward = inspect.getsource(Linear4bit.forward)
    assert "and self.support_avx512bf16_for_cpu" in forward and "_convert_weight_packed_for_cpu(" in forward
    assert 'not getattr(quant_state, "packing_format_for_cpu", False)' in forward
    assert "self.support_avx512bf16_for_cpu = has_avx512bf16()" in inspect.getsource(Linear4bit.__init__)
    assert "quant_state.packing_format_for_cpu = True" in inspect.getsource(F._convert_weight_packed_for_cpu)


def test_bitsandbytes_cpu_backend_probe_is_what_the_guard_expects():
    """pricer.patches.bitsandbytes.without_hub_kernel: bitsandbytes' CPU backend probes the CPU at import and, with
    AVX512-BF16, imports `kernels` and logs one warning when that fails; the guard makes the import fail, drops
    that line, and cpu_4bit_path reads `gemm_4bit_forward_kernel`. A change to that block changes the digest."""
    import hashlib

    import bitsandbytes
    import bitsandbytes.functional as F
    from bitsandbytes.backends.cpu import ops

    from pricer.patches.bitsandbytes import CPU_BACKEND, HUB_KERNEL, HUB_KERNEL_WARNING

    source = inspect.getsource(ops)
    block = source[source.index("    if has_avx512bf16():"):source.index('@register_kernel("bitsandbytes::gemv_4bit"')]
    assert hashlib.sha256(block.encode()).hexdigest()[:12] == "218162bf3336", block
    assert ops.__name__ == CPU_BACKEND and "logger = logging.getLogger(__name__)" in source
    assert "from bitsandbytes.functional import get_ptr, has_avx512bf16" in source
    assert "gemm_4bit_forward_kernel = None\n        try:\n            from kernels import get_kernel\n" in block
    assert f'"{HUB_KERNEL}", version=1' in block and f'"{HUB_KERNEL_WARNING}: %s.' in block
    assert "from .backends.cpu import ops as cpu_ops" in inspect.getsource(bitsandbytes)  # loaded with the package
    assert "lib.has_avx512bf16_cpu()" in inspect.getsource(F.has_avx512bf16)


def test_bitsandbytes_hub_kernel_guard_waits_for_the_import_and_is_off_outside_its_versions(versions, monkeypatch,
                                                                                          capsys):
    from pricer.patches import bitsandbytes as ours

    def finders():
        return [f for f in sys.meta_path if isinstance(f, ours._CPUBackendFinder)]

    monkeypatch.setattr(sys, "meta_path", [f for f in sys.meta_path if not isinstance(f, ours._CPUBackendFinder)])
    monkeypatch.delitem(sys.modules, ours.CPU_BACKEND, raising=False)  # as before bitsandbytes is imported
    versions("9.9.9")
    ours.without_hub_kernel()
    assert finders() == [] and "pricer: patch bitsandbytes.no_hub_kernel is off: " in capsys.readouterr().err
    versions("0.50.2")
    ours.without_hub_kernel()
    ours.without_hub_kernel()
    assert len(finders()) == 1 and sys.meta_path.index(finders()[0]) == 0  # once, ahead of the path finder
    assert finders()[0].find_spec("bitsandbytes.functional") is None  # only the CPU backend is its business


# ----- torch -----

def test_torch_activation_budget_is_read_at_compile():
    """Compiled under our settings, a function saves fewer activations for its backward than plain torch.compile."""
    import torch
    import torch._functorch.config as functorch_config
    import torch._functorch.partitioners as partitioners

    from pricer.patches.torch import compiled

    assert functorch_config.activation_memory_budget == 1.0  # torch's default, untouched outside our calls
    assert "activation_memory_budget" in inspect.getsource(partitioners)

    def plain_fn(x, w):
        h = x @ w
        return (torch.nn.functional.silu(h) * h.sin() * h.cos()).sum()

    def budget_fn(x, w):  # the same code in another function: compiled graphs are cached per code object
        h = x @ w
        return (torch.nn.functional.silu(h) * h.sin() * h.cos()).sum()

    def saved(fn) -> int:
        sizes = []
        x, w = torch.randn(64, 64, requires_grad=True), torch.randn(64, 64, requires_grad=True)
        with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.numel()) or t, lambda t: t):
            out = fn(x, w)
        out.backward()
        return sum(sizes)

    assert saved(compiled(budget_fn, dynamic=False)) < saved(torch.compile(plain_fn, dynamic=False))
    assert functorch_config.activation_memory_budget == 1.0


def test_torch_recompile_limit_is_public_and_scoped():
    """torch.compiler.config.recompile_limit is what dynamo reads; our settings hold only inside their scope."""
    import torch
    import torch._dynamo.config as dynamo_config
    import torch._functorch.config as functorch_config

    from pricer.patches.torch import ACTIVATION_BUDGET, RECOMPILE_LIMIT, settings

    before = torch.compiler.config.recompile_limit
    with settings():
        with settings():  # nested: a compiled kernel inside a compiled layer
            assert dynamo_config.recompile_limit == max(before, RECOMPILE_LIMIT)
        assert functorch_config.activation_memory_budget == ACTIVATION_BUDGET["fp32"]  # no autocast
        for dtype, precision in ((torch.bfloat16, "bf16"), (torch.float16, "fp16")):
            with torch.autocast("cpu", dtype=dtype), settings():  # as the layers compile inside a training step
                assert functorch_config.activation_memory_budget == ACTIVATION_BUDGET[precision]
    assert torch.compiler.config.recompile_limit == dynamo_config.recompile_limit == before
    assert functorch_config.activation_memory_budget == 1.0


def test_torch_backward_compiles_with_the_forward_under_our_settings():
    """torch._functorch.config.force_non_lazy_backward_lowering is what AOTAutograd reads when it compiles a
    forward: under our settings the backward compiles in the same call, where `compiled` can fall back."""
    import torch
    import torch._functorch.config as functorch_config
    from torch._dynamo.backends.common import aot_autograd
    from torch._functorch.aot_autograd import make_boxed_func

    from pricer.patches.torch import settings

    def run(fn, scoped: bool) -> list[str]:
        compiles = []

        def recording(kind):
            def compile(graph, example_inputs):
                compiles.append(kind)
                return make_boxed_func(graph.forward)
            return compile

        backend = aot_autograd(fw_compiler=recording("forward"), bw_compiler=recording("backward"))
        x = torch.randn(8, requires_grad=True)
        with settings() if scoped else contextlib.nullcontext():
            out = torch.compile(fn, backend=backend, dynamic=False)(x)
        seen = list(compiles)
        out.sum().backward()
        return seen

    def lazy(x):
        return torch.sin(x) * x

    def eager(x):  # the same code in another function: compiled graphs are cached per code object
        return torch.sin(x) * x

    assert run(lazy, scoped=False) == ["forward"]  # torch's default: the backward compiles at .backward()
    assert run(eager, scoped=True) == ["forward", "backward"]
    assert functorch_config.force_non_lazy_backward_lowering is False


# ----- the fence -----

def test_tested_versions_are_release_prefixes():
    from pricer.patches import covers

    assert covers(("2.11", "2.13"), "2.11.0+cu130") and covers(("2.11", "2.13"), "2.13.1")
    assert not covers(("2.11", "2.13"), "2.12.0") and not covers(("2.11",), "2.1.1")
    assert covers(("1.16.0",), "1.16.0") and not covers(("1.16.0",), "1.16.1")
    assert not covers(("2.13",), "2.13.0rc1") and not covers(("2.13",), "2.13.0.dev20261201")
    assert not covers(("1.16.0",), "not-a-version")


def test_installed_versions_are_inside_every_fence():
    """The pinned versions (requirements.txt) are the tested ones: in CI every patch is on."""
    assert all(patches.status().__dict__.values()), patches.status()


def test_outside_its_versions_each_patch_is_off_with_one_line(versions, capsys):
    versions("9.9.9")
    assert patches.status() == patches.PatchStatus(*[False] * len(patches.fences()))
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == len(patches.fences())
    for fence, line in zip(patches.fences(), lines):
        assert line.startswith(f"pricer: patch {fence.patch} is off: ") and "found 9.9.9" in line
        assert fence.library in line and "still correct" in line
    patches.status()
    assert capsys.readouterr().err == ""  # said once per process
    assert all(patches.status().activation_budget(p) == 1.0 for p in ("bf16", "fp16", "fp32"))


def test_outside_its_versions_the_library_runs_as_it_ships(versions, monkeypatch):
    import torch
    import torch._functorch.config as functorch_config
    from bitsandbytes.optim import AdamW
    from transformers import TrainingArguments
    from trl import SFTTrainer

    from pricer.patches.torch import compiled
    from pricer.speed import grouped_trainer, lazy_metrics_trainer, optimizer_without_syncs, score_completions_only

    versions("9.9.9")
    assert lazy_metrics_trainer(SFTTrainer) is score_completions_only(SFTTrainer) is grouped_trainer(SFTTrainer) \
        is SFTTrainer
    args = TrainingArguments(output_dir="unused", optim="paged_adamw_32bit", use_cpu=True, report_to="none")
    assert optimizer_without_syncs(args)[0] is AdamW

    def double(x):
        return 2 * x

    def in_force():
        return torch.compiler.config.recompile_limit, functorch_config.activation_memory_budget, \
            functorch_config.force_non_lazy_backward_lowering

    stock = in_force()
    with monkeypatch.context() as scope:  # torch.compile under torch's own settings (only the fallback around it)
        scope.setattr(torch, "compile", lambda fn, **options: lambda x: (in_force(), fn(x), options))
        assert compiled(double, dynamic=False)(3) == (stock, 6, {"dynamic": False})
    args._n_gpu = 2
    with pytest.raises(PricerError, match="CUDA_VISIBLE_DEVICES=0 .*--gpus 2"):
        from pricer.patches.transformers import use_one_gpu
        use_one_gpu(args)
    assert torch.compiler.config.recompile_limit == 8


def test_fused_kernels_off_leave_the_model_eager(versions):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from pricer.speed import fuse_kernels

    model = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, vocab_size=97))
    versions("9.9.9")
    assert fuse_kernels(model) is False
    assert not any("forward" in vars(m) for m in model.modules())
    model(input_ids=torch.tensor([[1, 2, 3]]))


def test_training_with_every_patch_off_is_trl_stock_and_trains(tiny_model, tmp_path, versions, monkeypatch):
    """Off, the trainer is TRL's own SFTTrainer (every position through the head on CPU), and it still trains."""
    from trl import SFTTrainer

    versions("9.9.9")
    trainer, batch = build(tiny_model, tmp_path)
    assert type(trainer) is SFTTrainer
    rows = head_rows(monkeypatch)
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    B, L = batch["input_ids"].shape
    assert rows == [B * (L - 1)] and loss.item() > 0


def test_preflight_counts_only_the_patches_in_force():
    """Off, the compiler keeps every activation and TRL's head scores every position: the plan must say so."""
    from pricer.config import get_preset
    from pricer.memory import Device, ModelShape, estimate_peak_gb, plan_batches

    lite, lengths = get_preset("lite"), [128] * 500
    shape = ModelShape(hidden=3072, layers=28, intermediate=8192, heads=24, kv_heads=8, vocab=128256)
    on = patches.PatchStatus(*[True] * len(patches.fences()))
    no_budget = dataclasses.replace(on, compiler_settings=False)
    no_compaction = dataclasses.replace(on, completion_scoring=False)

    def peak(status):
        return estimate_peak_gb(shape, lite, 32, 32 * 128, False, Device(precision="bf16", compiled=True, patches=status))

    assert peak(on) < peak(no_budget) and peak(on) < peak(no_compaction)
    assert plan_batches(shape, lite, lengths, Device(14.0, padded=True, compiled=True, patches=on)).micro_batch == 32
    for status in (no_budget, no_compaction):
        plan = plan_batches(shape, lite, lengths, Device(14.0, padded=True, compiled=True, patches=status))
        assert plan.micro_batch < 32 and plan.peak_gb <= 14.0


# ----- no process-wide side effects -----

def run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_import_pricer_changes_no_global_state():
    out = run_python("import sys, warnings; filters = list(warnings.filters); import pricer, pricer.speed, "
                     "pricer.patches; print(warnings.filters == filters, 'torch' in sys.modules, 'trl' in sys.modules)")
    assert out == "True False False"


def test_tqdm_is_imported_without_its_warning_in_a_kernel_without_ipywidgets():
    """In a Jupyter kernel (ipykernel.zmqshell loaded) without ipywidgets, tqdm.auto warns when first imported;
    pricer silences that one warning at its own import, and leaves the warning filters as they were."""
    out = run_python("import sys, warnings; import ipykernel.zmqshell; sys.modules['ipywidgets'] = None\n"
                     "import numpy, plotly.graph_objects  # numpy installs filters of its own on import\n"
                     "with warnings.catch_warnings(record=True) as caught:\n"
                     "    warnings.simplefilter('always'); filters = list(warnings.filters)\n"
                     "    import pricer.evaluator\n"
                     "    same = warnings.filters == filters\n"
                     "print(same, [str(w.message)[:20] for w in caught if 'IProgress' in str(w.message)])")
    assert out == "True []"


def test_training_leaves_library_globals_as_they_were(tiny_model, tmp_path):
    import torch
    import torch._functorch.config as functorch_config
    import trl.kernels.chunked_logprob as kernels
    import trl.trainer.utils as trl_utils

    from pricer.patches.torch import compiled

    limit = torch.compiler.config.recompile_limit
    trainer, batch = build(tiny_model, tmp_path)
    trainer.compute_loss(trainer.model, batch).backward()
    compiled(lambda x: x * 2, dynamic=False)(torch.ones(3))
    assert trl_utils._use_triton is kernels._use_triton
    assert torch.compiler.config.recompile_limit == limit and functorch_config.activation_memory_budget == 1.0
    assert functorch_config.force_non_lazy_backward_lowering is False


def test_model_revision_comes_from_the_hub_cache(tmp_path, monkeypatch):
    """transformers 5 no longer sets `config._commit_hash`; the fingerprint reads the commit the cache recorded."""
    import huggingface_hub.constants
    from transformers import PretrainedConfig

    from pricer.predict import model_revision

    assert "_commit_hash" not in PretrainedConfig().__dict__
    sha = "0123456789abcdef0123456789abcdef01234567"
    (tmp_path / "models--me--pricer-lite" / "refs").mkdir(parents=True)
    (tmp_path / "models--me--pricer-lite" / "refs" / "main").write_text(sha)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    assert model_revision("me/pricer-lite") == sha
    assert model_revision("me/never-downloaded") == "unresolved"
    assert model_revision(str(tmp_path)) is None  # a folder has no revision
