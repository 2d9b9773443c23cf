"""bitsandbytes: 32-bit optimizers that wait for the GPU only after updating a paged state.

bitsandbytes' `Optimizer8bit.step` synchronizes with the GPU after updating every tensor, paged or
not. Only paged states (managed memory, which the GPU updates asynchronously) need that wait: a
tensor under the paging threshold (1e5 elements: every LoRA tensor of lite) is an ordinary CUDA
tensor, whose updates are ordered on the stream. `paged_waits_only(cls)` is `cls` with a copy of that
step keeping the wait where the state is paged (bitsandbytes marks those `is_paged = True` in
`functional.get_paged`; an unpaged state has no such attribute, as bitsandbytes' own
`prefetch_state` reads it). The update kernels are bitsandbytes' own: bit-identical weights
(tests/test_train.py). Off: bitsandbytes' own step, a wait after every tensor.

The CPU-repacking guard: once a 4-bit model runs an inference forward on CPU, bitsandbytes repacks
its weights (`quant_state.packing_format_for_cpu`) for a faster kernel, and LoRA training afterwards
gets zero gradients, silently. `keep_weights_packed_for_training` turns the repacking off on our
model (`support_avx512bf16_for_cpu = False`) and `check_fresh` refuses a model already repacked.
Off (another bitsandbytes): neither can be checked, so training says it can't vouch for the model.
"""

import functools

from pricer.errors import PricerError

from pricer.patches.fence import Fence

TESTED = ("0.50.2",)
PAGED_WAITS_ONLY = Fence("bitsandbytes.paged_waits_only", "bitsandbytes", TESTED,
                         "bitsandbytes' optimizer waits for the GPU after updating every tensor")


CPU_REPACKING = Fence("bitsandbytes.cpu_repacking_guard", "bitsandbytes", TESTED,
                      "a 4-bit model that ran inference on CPU is not detected (train from a freshly loaded one)")


def paged_waits_only(optimizer_class):
    """`optimizer_class` (a bitsandbytes optimizer) whose step waits for the GPU only after a paged state."""
    return _paged_waits_only(optimizer_class) if PAGED_WAITS_ONLY.on else optimizer_class


@functools.cache
def _paged_waits_only(optimizer_class):
    import torch
    from bitsandbytes.utils import sync_gpu

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
                    if getattr(self.state[p]["state1"], "is_paged", False):  # set on paged tensors only
                        sync_gpu(p)  # managed memory: bitsandbytes' own wait, kept where it matters
            return loss

    PagedWaitsOnly.__name__ = PagedWaitsOnly.__qualname__ = f"{optimizer_class.__name__}PagedWaitsOnly"
    return PagedWaitsOnly


def check_fresh(model) -> None:
    """Refuse a 4-bit model whose weights bitsandbytes repacked for CPU inference: it trains with zero grads."""
    if not CPU_REPACKING.on:
        return
    used = [name for name, module in model.named_modules()  # quant_state exists on 4-bit weights only
            if getattr(getattr(getattr(module, "weight", None), "quant_state", None), "packing_format_for_cpu", False)]
    if used:
        raise PricerError(
            f"This 4-bit model has already run inference on CPU: bitsandbytes repacked {len(used)} layers "
            f"(e.g. {used[0]}) for its inference kernel, and LoRA training on them gets zero gradients, "
            "silently. Train from a freshly loaded model: train(preset) loads its own.")


def keep_weights_packed_for_training(model) -> None:
    """Stop bitsandbytes repacking 4-bit weights on a CPU eval forward, so training can't be broken later."""
    if not CPU_REPACKING.on:
        return
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
