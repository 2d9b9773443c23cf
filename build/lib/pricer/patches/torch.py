"""torch: the compiler settings our compiled layers and kernels need, applied only while they run.

`compiled(fn)` is `torch.compile(fn)` whose calls (where compiling happens, lazily, per shape) run
with two settings, and the caller's settings back afterwards:
- a recompile limit of RECOMPILE_LIMIT: one graph per batch shape, and torch's default (8) would
  send later shapes to eager code (public: `torch.compiler.config.recompile_limit`);
- an activation budget of ACTIVATION_BUDGET: the partitioner keeps that share of the saved
  activations and recomputes cheap elementwise work in the backward instead, so the whole batch
  fits a smaller GPU at the same speed (bench/README.md). Private: `torch._functorch.config`,
  read by `torch._functorch.partitioners` when the forward and backward are split at compile time.
Off (torch outside TESTED): plain `torch.compile`, torch's defaults; the preflight then counts
every activation (`pricer.patches.status().activation_budget` is 1.0).
"""

import functools

from pricer.patches.fence import Fence

TESTED = ("2.11", "2.13")  # 2.11: the GPU box (H200); 2.13: the CPU machines
COMPILER_SETTINGS = Fence("torch.compiler_settings", "torch", TESTED,
                          "compiled layers keep all their activations (the memory preflight plans for that) and "
                          "shapes past torch's 8th compile run eagerly")
PAD_MULTIPLE = 16  # batch lengths rounded up to this for compiled code: a few shapes, each compiled once
ACTIVATION_BUDGET = 0.7  # 0.5 also recomputed matmuls: slower (bench/README.md)
RECOMPILE_LIMIT = 64  # a graph per batch shape: lengths rounded up to 16, a few batch sizes


class _Settings:
    """Our settings while a compiled function compiles or runs; the caller's back after. Nestable; like torch's
    own config (global on 2.11), not per thread."""

    def __init__(self):
        import torch
        import torch._functorch.config as functorch_config

        self.compiler, self.functorch, self.saved = torch.compiler.config, functorch_config, []

    def __enter__(self):
        limit, budget = self.compiler.recompile_limit, self.functorch.activation_memory_budget
        self.saved.append((limit, budget))
        self.compiler.recompile_limit = max(limit, RECOMPILE_LIMIT)
        self.functorch.activation_memory_budget = ACTIVATION_BUDGET

    def __exit__(self, *exc):
        self.compiler.recompile_limit, self.functorch.activation_memory_budget = self.saved.pop()


@functools.cache
def settings() -> _Settings:
    """The one context that applies our compiler settings (for tests and `compiled`)."""
    return _Settings()


def compiled(fn, **options):
    """`torch.compile(fn, **options)`, compiling and running under our settings when the fence is on."""
    import torch

    compiled_fn = torch.compile(fn, **options)
    if not COMPILER_SETTINGS.on:
        return compiled_fn
    scope = settings()

    @functools.wraps(fn)
    def run(*args, **kwargs):
        with scope:
            return compiled_fn(*args, **kwargs)

    return run


def compiler_works(device) -> bool:
    """Compile a small forward and backward on `device`: problems surface here, not mid-training."""
    import torch

    def silu_mul(gate, up):
        return torch.nn.functional.silu(gate) * up

    try:
        x = torch.randn(2, 37, 64, device=device, requires_grad=True)
        compiled(silu_mul, dynamic=False)(x, x).sum().backward()
    except Exception as e:  # inductor / Triton missing or broken: eager is still correct
        print(f"pricer: compiled kernels unavailable ({type(e).__name__}: {str(e)[:120]}); using eager ones")
        return False
    return True
