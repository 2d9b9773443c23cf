"""Every change pricer makes to a library's behaviour, one module per library, each behind a fence.

    from pricer import patches
    patches.status()                      # PatchStatus(completion_scoring=True, ...): what this process applies
    patches.status().activation_budget("bf16")    # what the memory preflight counts on for compiled layers

A patch declares the library versions it was written and tested against (its `Fence`). Outside
them it turns itself off, says so once in one line (the patch, the version found, what runs
instead), and the library's stock behaviour runs: still correct, only slower or hungrier. A patch
is on or announced off, never silently skipped; `pricer.memory.plan_batches` reads `status()` so
the preflight never counts on a patch that is off. Nothing here changes global state on import:
each patch applies to pricer's own model, trainer or optimizer class, or for the length of a call
(bitsandbytes' Hub-kernel guard is installed by `pricer.session.start` and `pricer.cli.main`, the edges).
These modules import only `pricer.errors` from pricer, so predictors (`pricer.predict`) and training
(`pricer.speed`, `pricer.memory`) both build on them without importing upwards.

    trl.py           the fused loss scores only labelled positions on CPU too; metrics read once per log; the
                     loss's positions found on the CPU; Trainer's per-step walks of the model listed once
    transformers.py  the training sampler; one GPU per process; RMSNorm / SwiGLU / rotary fused; no packing
                     check on unmasked right-padded batches
    bitsandbytes.py  32-bit optimizers that wait for the GPU only after a paged state; torch's fused AdamW where
                     nothing would be paged; no Hub kernel at import
    torch.py         compiler settings (recompile limit, activation budget, the backward compiled with the
                     forward) while our compiled code runs; eager code, said once, when compiling fails

tests/test_patches.py holds a canary per patch: it fails when the upstream code a patch relies on
changes (source, signature, attribute or key names), so a version bump is caught in CI, not in a
student's notebook. To admit a new version: pin it, run tests/test_patches.py, re-read the upstream
code each failing canary names, adjust the patch and the canary, then add the version to `tested`.

Private names the package touches. Before: 9 underscore names, none guarded:
trl.trainer.utils._use_triton, torch._dynamo.config.recompile_limit, torch._functorch.config.activation_memory_budget,
Trainer._get_train_sampler (overridden), SFTTrainer._metrics, SFTTrainer._total_train_tokens,
TrainingArguments._n_gpu, PretrainedConfig._commit_hash, PretrainedConfig._name_or_path; plus internals
without an underscore (a copy of Optimizer8bit.step, the `is_paged` mark, TRL's fused-head outputs, a
process-wide rebinding of transformers' apply_rotary_pos_emb). Now 8, all in this package, each fenced,
each with its canary in tests/test_patches.py:

    trl.trainer.utils._use_triton (trl.score_completions_only)
        test_trl_fused_head_asks_use_triton_for_compaction
    SFTTrainer._metrics, SFTTrainer._total_train_tokens (trl.lazy_metrics_trainer)
        test_trl_metrics_bookkeeping_is_what_lazy_metrics_replays
    Trainer._get_train_sampler, overridden (transformers.with_train_sampler)
        test_transformers_train_sampler_hook
    TrainingArguments._n_gpu (transformers.use_one_gpu)
        test_transformers_n_gpu_is_what_trainer_reads
    torch._functorch.config.activation_memory_budget (torch.compiled)
        test_torch_activation_budget_is_read_at_compile
    torch._functorch.config.force_non_lazy_backward_lowering (torch.compiled)
        test_torch_backward_compiles_with_the_forward_under_our_settings
    PretrainedConfig._attn_implementation, read (transformers.our_attention; no public getter in 5.23)
        test_transformers_use_our_attention_serves_only_llamas_layers_and_answers_as_sdpa_otherwise

Since issue 25 also (no underscore): transformers.masking_utils.find_packed_sequence_indices, rebound while
an unmasked batch runs (transformers.unpacked_rows; test_transformers_unpacked_rows_answers_as_the_check_would),
and TRL's fused head given `shift_labels` with `_use_triton` saying no (trl.positions_found_on_cpu;
test_trl_fused_head_scores_given_labels_without_a_mask_when_triton_says_no).

The internals without an underscore have theirs: Optimizer8bit.step and its helpers
(test_bitsandbytes_step_is_the_one_we_copy), `is_paged` (test_bitsandbytes_marks_paged_states_is_paged),
SFTTrainer's NLL path and FusedCausalLMOutput's fields
(test_trl_plain_nll_path_is_the_one_lazy_metrics_replays),
the RMSNorm / SwiGLU / attention code the fused kernels replace or rebind
(test_transformers_fused_modules_are_llamas), bitsandbytes' CPU repacking that pricer.train guards
against (test_bitsandbytes_cpu_repacking_is_what_train_guards_against), bitsandbytes' CPU probe and
Hub-kernel fetch at import (test_bitsandbytes_cpu_backend_probe_is_what_the_guard_expects), bitsandbytes'
paging threshold that decides where torch's AdamW stands in (test_bitsandbytes_paging_threshold_is_ours),
Trainer calling `model.train()` and `model.zero_grad()` on the model it was given, which `walks_listed_once`
answers with instance attributes for the length of `train()`
(test_lazy_metrics_trains_to_trainers_weights_without_walking_the_model_each_step).
Gone: torch._dynamo (the public torch.compiler.config.recompile_limit instead, scoped like the budget);
_commit_hash (transformers 5 no longer sets it, so the prediction fingerprint always read None: the
revision now comes from huggingface_hub.resolve_revision); _name_or_path (the public name_or_path).
"""

from dataclasses import dataclass

from pricer.patches.fence import Fence, covers, installed  # noqa: F401  (the fence: re-exported)


@dataclass(frozen=True)
class PatchStatus:
    """Which patches this process applies; each is on, or was announced off."""

    completion_scoring: bool  # trl: the loss projects only labelled positions (on CPU too)
    lazy_metrics: bool  # trl: metrics read once per log
    train_sampler: bool  # transformers: length-grouped batches
    one_gpu: bool  # transformers: one process seeing several GPUs trains on the first
    fused_kernels: bool  # transformers: fused RMSNorm, SwiGLU, rotary (evaluation)
    unpacked_rows: bool  # transformers: unmasked right-padded batches are not checked for packing (no GPU read)
    our_attention: bool  # transformers: SDPA attending packed rows row by row, grouped heads unrepeated under a mask
    paged_waits_only: bool  # bitsandbytes: no GPU wait after updating an unpaged state
    compiler_settings: bool  # torch: recompile limit, activation budget, backward compiled with the forward
    cpu_repacking_guard: bool  # bitsandbytes: a 4-bit model repacked by CPU inference is refused for training
    no_hub_kernel: bool  # bitsandbytes: no Hub download (nor its warning) at import on AVX512-BF16 CPUs
    torch_adamw: bool  # bitsandbytes: its 32-bit AdamW, where it would page nothing, run as torch's fused AdamW

    def activation_budget(self, precision: str) -> float:
        """Share of saved activations compiled layers keep in this precision: all of them without the setting."""
        from pricer.patches.torch import ACTIVATION_BUDGET

        return ACTIVATION_BUDGET[precision] if self.compiler_settings else 1.0


def fences() -> list[Fence]:
    """Every patch's fence, in PatchStatus order."""
    from pricer.patches import bitsandbytes, torch, transformers, trl

    return [trl.COMPLETION_SCORING, trl.LAZY_METRICS, transformers.TRAIN_SAMPLER, transformers.ONE_GPU,
            transformers.FUSED_KERNELS, transformers.UNPACKED_ROWS, transformers.OUR_ATTENTION,
            bitsandbytes.PAGED_WAITS_ONLY,
            torch.COMPILER_SETTINGS, bitsandbytes.CPU_REPACKING, bitsandbytes.NO_HUB_KERNEL, bitsandbytes.TORCH_ADAMW]


def status() -> PatchStatus:
    """What this process applies (reading installed versions only: nothing is imported)."""
    return PatchStatus(*(fence.on for fence in fences()))
