"""torch: the compiler settings our compiled layers and kernels need, applied only while they run; eager code
when compiling fails.

`compiled(fn)` is `torch.compile(fn)` whose calls (where compiling happens, lazily, per shape) run
with three settings, and the caller's settings back afterwards:
- a recompile limit of RECOMPILE_LIMIT: one graph per batch shape, and torch's default (8) would
  send later shapes to eager code (public: `torch.compiler.config.recompile_limit`);
- an activation budget, ACTIVATION_BUDGET for the precision autocast computes in as the layers compile:
  the partitioner keeps that share of the saved activations and recomputes cheap elementwise work in
  the backward instead, so the whole batch fits a smaller GPU at the same speed (bench/README.md).
  Too low a share recomputes matmuls too (slower), and where that starts depends on the graph, so
  each precision has the share measured for it. Private: `torch._functorch.config`,
  read by `torch._functorch.partitioners` when the forward and backward are split at compile time;
- the backward compiled with the forward (private: `torch._functorch.config.force_non_lazy_backward_lowering`,
  read by AOTAutograd at the same time): torch otherwise compiles it at the first `loss.backward()`,
  outside our calls, where a compile failure would end the run instead of falling back.
Off (torch outside TESTED): plain `torch.compile`, torch's defaults; the preflight then counts
every activation (`pricer.patches.status().activation_budget` is 1.0).

Fenced or not, a call that fails because compiling or CUDA graph capture failed (`compile_failed`:
an older GPU such as a T4's sm_75 that Triton serves badly, a broken compiler) reruns eagerly, and
the function stays eager for the process, said in one line. `compiler_works` probes up front.
"""

import contextlib
import functools

from pricer.patches.fence import Fence

TESTED = ("2.11", "2.13")  # 2.11: the GPU box (H200); 2.13: the CPU machines
COMPILER_SETTINGS = Fence("torch.compiler_settings", "torch", TESTED,
                          "compiled layers keep all their activations (the memory preflight plans for that) and "
                          "shapes past torch's 8th compile run eagerly")
PAD_MULTIPLE = 16  # batch lengths rounded up to this for compiled code: a few shapes, each compiled once
# Share of saved activations kept, by the precision the layers compile in (bench/README.md, swept on an H200 at
# lite's T4 plan): the fastest share whose peak stays well under a T4's 15 GB (0.7 recomputed matmuls).
ACTIVATION_BUDGET = {"bf16": 0.9, "fp16": 0.8, "fp32": 0.7}
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
        self.saved.append((limit, budget, self.functorch.force_non_lazy_backward_lowering))
        self.compiler.recompile_limit = max(limit, RECOMPILE_LIMIT)
        self.functorch.activation_memory_budget = ACTIVATION_BUDGET[autocast_precision()]
        self.functorch.force_non_lazy_backward_lowering = True  # a backward that can't compile fails in our call

    def __exit__(self, *exc):
        (self.compiler.recompile_limit, self.functorch.activation_memory_budget,
         self.functorch.force_non_lazy_backward_lowering) = self.saved.pop()


def autocast_precision() -> str:
    """"bf16" or "fp16" where autocast is on (CUDA, else CPU), else "fp32"."""
    import torch

    for device in ("cuda", "cpu"):
        if torch.is_autocast_enabled(device):
            return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(torch.get_autocast_dtype(device), "fp32")
    return "fp32"


@functools.cache
def settings() -> _Settings:
    """The one context that applies our compiler settings (for tests and `compiled`)."""
    return _Settings()


# Exceptions whose class is the compiler's own: dynamo (BackendCompilerFailed, Unsupported, TorchRuntimeError...),
# inductor (InductorError, CppCompileError, NoTritonConfigsError...), AOTAutograd, Triton (OutOfResources...).
COMPILER_MODULES = ("torch._dynamo", "torch._inductor", "torch._functorch", "triton")
# Words of a RuntimeError from CUDA graphs or generated kernels: "CUDAGraphs ... overwritten", "operation not
# permitted when stream is capturing", "cudaErrorStreamCaptureInvalidated", "Triton Error [CUDA]: ...".
COMPILER_WORDS = ("cudagraph", "cuda graph", "captur", "triton", "inductor")


def compile_failed(error: BaseException) -> bool:
    """Whether `error` says compiling or CUDA graph capture failed, so eager code may still run: an exception of
    the compiler's own classes, or a RuntimeError naming CUDA graphs, capture, Triton or inductor. Never out of
    memory (anywhere in its chain: eager code would need the memory too), an interrupt, or a PricerError.
    A compiled call's own errors (a ValueError the code raises) pass through torch.compile as they are."""
    import torch

    from pricer.errors import PricerError

    if not isinstance(error, Exception):  # KeyboardInterrupt, SystemExit
        return False
    seen, chain = set(), [error]
    while chain:
        e = chain.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, (torch.OutOfMemoryError, PricerError)) or "out of memory" in str(e):
            return False
        chain += [e.__cause__, e.__context__, getattr(e, "inner_exception", None)]
    if type(error).__module__.startswith(COMPILER_MODULES):
        return True
    return isinstance(error, RuntimeError) and any(word in str(error).lower() for word in COMPILER_WORDS)


class _Fallback:
    """Whether a compiled code has fallen back to eager: shared by every function compiled from the same code
    with the same options (each decoder layer's forward), as torch's compiled graphs are."""

    __slots__ = ("eager",)

    def __init__(self):
        self.eager = False


_fallbacks: dict = {}  # (code, options) -> _Fallback


def compiled(fn, **options):
    """`torch.compile(fn, **options)`, compiling and running under our settings when the fence is on; eager, said
    once, from the first call that compiling or graph capture fails (`compile_failed`). The eager rerun of that
    call raises the code's own error if it has one (then nothing is said and the next call compiles again)."""
    import torch

    code = getattr(getattr(fn, "__func__", fn), "__code__", fn)
    fallback = _fallbacks.setdefault((code, repr(sorted(options.items()))), _Fallback())
    compiled_fn, scope = torch.compile(fn, **options), _scope()
    name = getattr(fn, "__qualname__", type(fn).__name__)

    @functools.wraps(fn)
    def run(*args, **kwargs):
        if fallback.eager:
            return fn(*args, **kwargs)
        try:
            with scope:
                return compiled_fn(*args, **kwargs)
        except Exception as error:
            if not compile_failed(error):
                raise
            result = fn(*args, **kwargs)
            if not fallback.eager:
                fallback.eager = True
                why = " ".join(f"{type(error).__name__}: {error}".split())
                print(f"pricer: compiling {name} failed ({why[:110]}); running it eagerly")
            return result

    run.fallback = fallback
    return run


def runs_eagerly(fn) -> bool:
    """Whether a function `compiled` made has fallen back to eager code."""
    fallback = getattr(fn, "fallback", None)
    return isinstance(fallback, _Fallback) and fallback.eager


def _scope():
    """Our settings, or torch's own when the fence is off."""
    return settings() if COMPILER_SETTINGS.on else contextlib.nullcontext()


def compiler_works(device) -> bool:
    """Compile a small forward and backward on `device`: problems surface here, not mid-training."""
    import torch

    def silu_mul(gate, up):
        return torch.nn.functional.silu(gate) * up

    try:
        x = torch.randn(2, 37, 64, device=device, requires_grad=True)
        with _scope():
            y = torch.compile(silu_mul, dynamic=False)(x, x)
        y.sum().backward()
    except Exception as e:  # inductor / Triton missing or broken: eager is still correct
        print(f"pricer: compiled kernels unavailable ({type(e).__name__}: {str(e)[:120]}); using eager ones")
        return False
    return True
