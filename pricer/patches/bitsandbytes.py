"""bitsandbytes: 32-bit optimizers that wait for the GPU only after updating a paged state.

bitsandbytes' `Optimizer8bit.step` synchronizes with the GPU after updating every tensor, paged or
not. Only paged states (managed memory, which the GPU updates asynchronously) need that wait: a
tensor under the paging threshold (1e5 elements: every LoRA tensor of lite) is an ordinary CUDA
tensor, whose updates are ordered on the stream. `paged_waits_only(cls)` is `cls` with a copy of that
step keeping the wait where the state is paged (bitsandbytes marks those `is_paged = True` in
`functional.get_paged`; an unpaged state has no such attribute, as bitsandbytes' own
`prefetch_state` reads it). The update kernels are bitsandbytes' own: bit-identical weights
(tests/test_train.py). Off: bitsandbytes' own step, a wait after every tensor.

Where a paged 32-bit AdamW would page nothing, it needn't run at all: a state is paged only from
PAGING_THRESHOLD elements up (`p.numel() < 1e5` in `Optimizer8bit.get_state_buffer`; every LoRA
tensor of lite, r * 3072 = 98,304, is under it), and below that its states are ordinary fp32 tensors
updated one kernel launch per tensor. `pages_any(sizes, paged)` says whether it would page one of
them; `pricer.speed` runs torch's fused AdamW, the same math, where it wouldn't. Off (another
bitsandbytes, whose threshold we haven't read): bitsandbytes' optimizer runs, paged or not.

The CPU-repacking guard: once a 4-bit model runs an inference forward on CPU, bitsandbytes repacks
its weights (`quant_state.packing_format_for_cpu`) for a faster kernel, and LoRA training afterwards
gets zero gradients, silently. `keep_weights_packed_for_training` turns the repacking off on our
model (`support_avx512bf16_for_cpu = False`) and `check_fresh` refuses a model already repacked.
Off (another bitsandbytes): neither can be checked, so training says it can't vouch for the model.

No Hub kernel unless asked: where the CPU has AVX512-BF16, importing bitsandbytes (peft, TRL and
transformers' quantizer all do) runs `kernels.get_kernel("kernels-community/quantization-bitsandbytes")`,
a download of native code from the Hub, and logs "Failed to load CPU gemm_4bit_forward from
kernels-community: ..." when it can't (no `kernels` package, no network). `without_hub_kernel()`,
called at the edges before bitsandbytes loads (`pricer.session.start`, `pricer.cli.main`), imports
its CPU backend with `kernels` out of reach and that one line dropped: bitsandbytes then uses its own
AVX512-BF16 kernel, which it ships. PRICER_HUB_KERNELS=1 lets it fetch the Hub kernel (stock
behaviour, its warning included); bench/README.md says why that is off by default. `cpu_4bit_path()`
says which path this process set up (the run record and the report carry it). Off: stock behaviour.
"""

import functools
import importlib.machinery
import logging
import os
import sys

from pricer.errors import PricerError

from pricer.patches.fence import Fence

TESTED = ("0.50.2",)
PAGED_WAITS_ONLY = Fence("bitsandbytes.paged_waits_only", "bitsandbytes", TESTED,
                         "bitsandbytes' optimizer waits for the GPU after updating every tensor")


PAGING_THRESHOLD = 100_000  # elements: bitsandbytes pages a state from this size up (Optimizer8bit.get_state_buffer)
TORCH_ADAMW = Fence("bitsandbytes.torch_adamw_where_unpaged", "bitsandbytes", TESTED,
                    "bitsandbytes' 32-bit AdamW updates the LoRA tensors one kernel launch each")


CPU_REPACKING = Fence("bitsandbytes.cpu_repacking_guard", "bitsandbytes", TESTED,
                      "a 4-bit model that ran inference on CPU is not detected (train from a freshly loaded one)")


CPU_BACKEND = "bitsandbytes.backends.cpu.ops"  # where bitsandbytes probes the CPU and tries the Hub kernel
HUB_KERNEL = "kernels-community/quantization-bitsandbytes"
HUB_KERNEL_WARNING = "Failed to load CPU gemm_4bit_forward from kernels-community"  # the start of its log line
OPT_IN = "PRICER_HUB_KERNELS"  # =1: let bitsandbytes download its CPU kernel from the Hub (code, run natively)
NO_HUB_KERNEL = Fence("bitsandbytes.no_hub_kernel", "bitsandbytes", TESTED,
                      "on a CPU with AVX512-BF16, bitsandbytes tries to fetch a Hub kernel when imported "
                      "and logs a warning when it can't")


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


def pages_any(sizes, paged: bool) -> bool:
    """Whether a bitsandbytes optimizer (`paged` or not) would page the state of a tensor of one of these
    sizes (element counts). Read only where TORCH_ADAMW is on: the threshold is this bitsandbytes' own."""
    return paged and any(n >= PAGING_THRESHOLD for n in sizes)


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


def hub_kernel_asked() -> bool:
    """Whether the user asked for bitsandbytes' Hub kernel (PRICER_HUB_KERNELS=1): only then is code downloaded."""
    return os.environ.get(OPT_IN, "").strip().lower() not in ("", "0", "false", "no")


def without_hub_kernel() -> None:
    """Before bitsandbytes loads: its CPU backend uses its own kernels, fetches none from the Hub, says nothing."""
    if not NO_HUB_KERNEL.on or CPU_BACKEND in sys.modules:
        return  # another bitsandbytes (said), or loaded already: too late to change
    if not any(isinstance(finder, _CPUBackendFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _CPUBackendFinder())


class _CPUBackendFinder:
    """Finds bitsandbytes' CPU backend as the path finder does, and has it run without the `kernels` package."""

    def find_spec(self, name, path=None, target=None):
        if name != CPU_BACKEND or hub_kernel_asked():
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is None or not hasattr(spec.loader, "exec_module"):
            return None  # not an ordinary install: the import goes on as it ships
        run = spec.loader.exec_module
        spec.loader.exec_module = lambda module: _without_kernels(run, module)
        return spec


def _without_kernels(exec_module, module) -> None:
    """Run the backend with `from kernels import get_kernel` failing at once and its one warning dropped."""
    absent = object()
    found = sys.modules.get("kernels", absent)
    sys.modules["kernels"] = None  # an ImportError before any download; put back right after
    log = logging.getLogger(CPU_BACKEND)
    log.addFilter(_not_the_hub_kernel_warning)
    try:
        exec_module(module)
    finally:
        log.removeFilter(_not_the_hub_kernel_warning)
        if found is absent:
            sys.modules.pop("kernels", None)
        else:
            sys.modules["kernels"] = found


def _not_the_hub_kernel_warning(record) -> bool:
    return not str(record.msg).startswith(HUB_KERNEL_WARNING)


def cpu_4bit_path() -> str | None:
    """Which kernels run 4-bit layers on CPU in this process, in words (None: bitsandbytes not loaded, or a GPU)."""
    backend = sys.modules.get(CPU_BACKEND)
    if backend is None or not NO_HUB_KERNEL.on:
        return None
    import torch  # loaded already, with bitsandbytes

    if torch.cuda.is_available():
        return None
    if not hasattr(backend, "gemm_4bit_forward_kernel"):  # set only where bitsandbytes found AVX512-BF16
        return "bitsandbytes dequantizes each 4-bit weight and multiplies with torch (no AVX512-BF16 on this CPU)"
    if backend.gemm_4bit_forward_kernel is not None:
        inference = f"the Hub kernel {HUB_KERNEL} (downloaded: {OPT_IN}=1)"
    elif hub_kernel_asked():
        inference = f"bitsandbytes' own AVX512-BF16 kernel ({OPT_IN}=1, but the Hub kernel did not load)"
    else:
        inference = f"bitsandbytes' own AVX512-BF16 kernel (the Hub kernel is fetched only with {OPT_IN}=1)"
    return (f"inference: {inference}, in bf16; training: bitsandbytes dequantizes each 4-bit weight and multiplies "
            "with torch (pricer keeps the repacking for that kernel off)")
