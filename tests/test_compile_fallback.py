"""Compiling or CUDA graph capture failing: the code runs eagerly instead, said in one line.

A T4 (sm_75) or a broken Triton can't be had here, so the failures are forced: `torch.compile` is
replaced by one whose compiled function raises a real torch compile error (or a CUDA-graph-style
RuntimeError), or whose backward raises as a lazily compiled backward would.
"""

import pytest
import torch

from pricer.errors import PricerError
from pricer.patches import torch as torch_patch

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(autouse=True)
def fresh_fallbacks(monkeypatch):
    """Each test starts with nothing fallen back (a fallback holds for the process)."""
    monkeypatch.setattr(torch_patch, "_fallbacks", {}, raising=False)


def inductor_error(why="Triton: sm_75 has no bf16 for this kernel"):
    from torch._inductor.exc import InductorError

    return InductorError(RuntimeError(why), None)


def failing_compile(error, attempts):
    """A torch.compile whose compiled functions raise `error()` (recording each attempt)."""
    def compile(fn, **options):
        def run(*args, **kwargs):
            attempts.append(fn)
            raise error()

        return run

    return compile


GRAPH_FAILURES = [
    inductor_error,
    lambda: RuntimeError("CUDA error: operation not permitted when stream is capturing"),
    lambda: RuntimeError("Error: accessing tensor output of CUDAGraphs that has been overwritten by a subsequent run."),
]


@pytest.mark.parametrize("error", GRAPH_FAILURES, ids=["inductor", "capture", "cudagraphs"])
def test_a_failed_compile_runs_the_function_eagerly_saying_so_once(monkeypatch, capsys, error):
    attempts = []
    monkeypatch.setattr(torch, "compile", failing_compile(error, attempts))

    def scale(x, factor):
        return x * factor

    fast = torch_patch.compiled(scale, dynamic=False)
    x = torch.randn(5)
    assert torch.equal(fast(x, 2.0), scale(x, 2.0))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pricer: compiling ") and "scale" in lines[0]
    assert type(error()).__name__ in lines[0] and lines[0].endswith("running it eagerly")
    assert torch.equal(fast(x, 3.0), x * 3.0) and torch.equal(fast(x, -1.0), -x)
    assert len(attempts) == 1 and capsys.readouterr().out == ""  # once: later calls go straight to eager code
    other = torch_patch.compiled(scale, dynamic=False)  # the same code compiled again (each decoder layer's): eager
    assert torch.equal(other(x, 2.0), 2 * x) and len(attempts) == 1 and capsys.readouterr().out == ""


def test_real_compiler_failures_run_eagerly_backward_included(capsys):
    """torch's own compiler failing, unforced: inductor without a C++ compiler, and an AOTAutograd backend whose
    backward compiler fails. torch compiles a backward lazily, at `.backward()`; under our settings it compiles
    with the forward, inside the call that can fall back."""
    import torch._inductor.config as inductor_config
    from torch._dynamo.backends.common import aot_autograd
    from torch._functorch.aot_autograd import make_boxed_func

    def forward_compiler(graph, example_inputs):
        return make_boxed_func(graph.forward)

    def backward_compiler(graph, example_inputs):
        raise RuntimeError("ptxas fatal: Value 'sm_75' is not defined for option 'gpu-name'")

    def no_cxx(x):
        return torch.cos(x) * x - 3

    def no_backward(x):
        return torch.tanh(x) * x + 2

    for fn, options in ((no_cxx, {}), (no_backward, {"backend": aot_autograd(fw_compiler=forward_compiler,
                                                                              bw_compiler=backward_compiler)})):
        x = torch.randn(16, requires_grad=True)
        eager_x = x.detach().clone().requires_grad_()
        with inductor_config.patch({"cpp.cxx": ("/nonexistent/g++",), "fx_graph_cache": False}):
            torch_patch.compiled(fn, dynamic=False, **options)(x).sum().backward()
        fn(eager_x).sum().backward()
        assert torch.equal(x.grad, eager_x.grad)
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 1 and fn.__name__ in lines[0] and lines[0].endswith("running it eagerly")


def test_real_errors_are_raised_not_taken_for_compile_failures(monkeypatch, capsys):
    """The code's own error, raised by the eager rerun, is the one the caller sees; out of memory, an
    interrupt or pricer's own error from the compiled call are never retried."""
    eager_calls = []

    def check(x):
        eager_calls.append(x)
        raise ValueError("price must be positive")

    monkeypatch.setattr(torch, "compile", failing_compile(inductor_error, []))
    with pytest.raises(ValueError, match="positive"):
        torch_patch.compiled(check)(torch.ones(1))
    assert len(eager_calls) == 1 and capsys.readouterr().out == ""  # nothing said: the code failed, not the compiler

    def twice(x):
        eager_calls.append(x)
        return 2 * x

    wrapped_oom = torch._dynamo.exc.BackendCompilerFailed(twice, torch.OutOfMemoryError("CUDA out of memory"), None)
    for error in (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), wrapped_oom,
                  KeyboardInterrupt(), PricerError("CUDA graphs failed mid-training: rerun")):
        eager_calls.clear()
        monkeypatch.setattr(torch, "compile", failing_compile(lambda: error, []))
        with pytest.raises(type(error)):
            torch_patch.compiled(twice)(torch.ones(1))
        assert eager_calls == [] and capsys.readouterr().out == ""


def test_compile_failures_are_the_compilers_errors_and_cuda_graph_ones():
    """Which exceptions count: the compiler's own (dynamo, inductor, Triton) and CUDA graph capture failures."""
    from torch._dynamo.exc import BackendCompilerFailed, TorchRuntimeError, Unsupported
    from torch._inductor.exc import CppCompileError
    from torch._inductor.runtime.triton_heuristics import NoTritonConfigsError

    failures = [inductor_error(), BackendCompilerFailed(len, RuntimeError("ptxas error"), None),
                TorchRuntimeError("Dynamo failed to run FX node with fake tensors"),
                Unsupported("graph break in a hook"), CppCompileError(["g++"], "no compiler"),
                NoTritonConfigsError("No valid triton configs"), *(error() for error in GRAPH_FAILURES[1:])]
    genuine = [ValueError("bad price"), RuntimeError("mat1 and mat2 shapes cannot be multiplied"),
               torch.OutOfMemoryError("CUDA out of memory"), RuntimeError("CUDA error: out of memory (capturing)"),
               PricerError("CUDA graphs failed mid-training"), KeyboardInterrupt(),
               BackendCompilerFailed(len, torch.OutOfMemoryError("CUDA out of memory"), None)]
    assert [torch_patch.compile_failed(e) for e in failures] == [True] * len(failures)
    assert [torch_patch.compile_failed(e) for e in genuine] == [False] * len(genuine)


def test_fused_kernels_that_fail_to_compile_price_as_the_unfused_predictor(llama_tokenizer, monkeypatch, capsys):
    from test_predict import PROMPTS, tiny_llama  # tests/test_predict.py

    from pricer.predict import PricePredictor, number_tokens

    numbers = number_tokens(llama_tokenizer)
    plain = PricePredictor(tiny_llama(llama_tokenizer, numbers.ids), llama_tokenizer, batch_size=8)
    expected = plain.predict_batch(PROMPTS)
    attempts = []
    monkeypatch.setattr(torch_patch, "compiler_works", lambda device: True)  # the probe passed; the kernels fail
    monkeypatch.setattr(torch, "compile", failing_compile(inductor_error, attempts))
    model = tiny_llama(llama_tokenizer, numbers.ids)
    fused = PricePredictor(model, llama_tokenizer, batch_size=8, fused=True)
    assert fused.predict_batch(PROMPTS) == pytest.approx(expected, rel=1e-4)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(attempts) == 4  # RMSNorm, SwiGLU, rotary, number log-probs: each said once, tried once
    assert all("running it eagerly" in line for line in lines)
    assert fused.predict_batch(PROMPTS) == pytest.approx(expected, rel=1e-4) and len(attempts) == 4


# ----- training -----

class FailingBackward(torch.autograd.Function):
    """The identity, whose backward fails as a lazily compiled backward does on a GPU the compiler can't serve."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        raise inductor_error("backward: Triton compile failed for sm_75")


def failing_backward_compile(attempts):
    """A torch.compile whose first compiled function (the first decoder layer) runs eagerly but fails in its
    backward: the later layers' gradients are already summed when it fails, so they must be dropped."""
    def compile(fn, **options):
        first = not attempts

        def run(*args, **kwargs):
            out = fn(*args, **kwargs)
            if first and torch.is_grad_enabled():
                attempts.append(fn)
                return FailingBackward.apply(out)
            return out

        attempts.append(None) if first else None
        return run

    return compile


def train_losses(tiny_model, tmp_path, monkeypatch, compile, plan):
    """Three optimizer steps of the tiny model with its layers compiled by `compile` (None: compiling unavailable,
    the same padded batches run eagerly): the logged losses and the trainer."""
    from transformers import AutoModelForCausalLM

    from pricer import speed, train
    from pricer.config import get_preset
    from pricer.models import load_tokenizer
    from pricer.train import Options, Setup, build_trainer

    rows = [{"prompt": f"Title: a {'big ' * (i % 5)}lamp no. {i}\n\nPrice is $", "completion": f"{10 + i}.00"}
            for i in range(12)]
    preset = get_preset("tiny", base_model=tiny_model, batch_size=4, max_length=64, lora_dropout=0.0,
                        learning_rate=1e-2, warmup_fraction=0.0)
    with monkeypatch.context() as scope:
        scope.setattr(speed, "compiler_works", lambda device: compile is not None)
        scope.setattr(speed, "_graphed", speed._graphed)
        scope.setattr(train, "graphs_are_safe", lambda setup, resuming: False)  # CPU: compile_layers(graphs=False)
        if compile is not None:
            scope.setattr(torch, "compile", compile)
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
        trainer = build_trainer(model, load_tokenizer(tiny_model), rows, preset,
                                Setup("fp32", plan, grouped=False, compiled=True), tmp_path / str(id(compile)),
                                Options(max_steps=3))
        trainer.train()
    return [h["loss"] for h in trainer.state.log_history if "loss" in h], trainer


@pytest.mark.parametrize("where", ["forward", "backward"])
def test_training_whose_layers_fail_to_compile_goes_on_eagerly_with_the_same_losses(tiny_model, tmp_path,
                                                                                     monkeypatch, capsys, where):
    from pricer.memory import BatchPlan
    from pricer.speed import decoder_layers, is_compiled
    from pricer.train import applied_setup

    plan = BatchPlan(2, 2, False, 1.0, 10.0)  # two micro-batches per step: the failure is in the first
    eager, plain = train_losses(tiny_model, tmp_path, monkeypatch, None, plan)
    assert not applied_setup(plain).compiled
    capsys.readouterr()
    attempts = []
    compile = failing_compile(inductor_error, attempts) if where == "forward" else failing_backward_compile(attempts)
    losses, trainer = train_losses(tiny_model, tmp_path, monkeypatch, compile, plan)
    assert len(losses) == 3 and losses == eager
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("pricer: compil")]
    assert len(lines) == 1 and "InductorError" in lines[0] and "eager" in lines[0], lines
    assert len([a for a in attempts if a is not None]) == 1  # failed once, never compiled again
    assert not applied_setup(trainer).compiled and not is_compiled(trainer.model)
    if where == "backward":  # the layers' own forwards are back
        assert not any("forward" in vars(layer) for layer in decoder_layers(trainer.model))
