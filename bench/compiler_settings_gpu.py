"""GPU check that compiler settings scoped to our compiled layers' calls act as the old global ones did.

    python bench/compiler_settings_gpu.py global   # the old way: activation_memory_budget set process-wide
    python bench/compiler_settings_gpu.py scoped   # pricer.patches.torch's way: set only while each layer runs
    python bench/compiler_settings_gpu.py none     # torch's defaults (what runs when the patch is off)

An 8-layer bf16 Llama (hidden 2048) trains every weight on batches of 32 x 256-288 tokens, each
decoder layer compiled with CUDA graphs. Prints, per shape, the memory the step added above what
was allocated before it and the step time (the first pass of a shape compiles and records; later
ones replay), and the two settings as the process sees them afterwards. Self-contained (torch and
transformers only), so it runs on a machine that has neither pricer's pins nor its wheels.
"""

import sys
import time

import torch
import torch._functorch.config as functorch_config
from transformers import LlamaConfig, LlamaForCausalLM

BUDGET, LIMIT = 0.9, 64  # pricer.patches.torch.ACTIVATION_BUDGET["bf16"], RECOMPILE_LIMIT


class Scoped:
    """pricer.patches.torch._Settings, inlined: our settings inside, the caller's back after."""

    def __enter__(self):
        self.saved = torch.compiler.config.recompile_limit, functorch_config.activation_memory_budget
        torch.compiler.config.recompile_limit, functorch_config.activation_memory_budget = LIMIT, BUDGET

    def __exit__(self, *exc):
        torch.compiler.config.recompile_limit, functorch_config.activation_memory_budget = self.saved


def scoped(fn):
    scope = Scoped()

    def run(*args, **kwargs):
        with scope:
            return fn(*args, **kwargs)

    return run


def main(way: str) -> None:
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=2048, intermediate_size=5632, num_hidden_layers=8, num_attention_heads=16,
                         num_key_value_heads=8, vocab_size=4096)
    model = LlamaForCausalLM(config).cuda().bfloat16()
    for layer in model.model.layers:
        if way == "global":
            functorch_config.activation_memory_budget = BUDGET
            layer.compile(mode="reduce-overhead", dynamic=False)
        else:
            forward = torch.compile(layer.forward, mode="reduce-overhead", dynamic=False)
            layer.forward = scoped(forward) if way == "scoped" else forward
    results = []
    for length in (256, 272, 288, 256, 272, 288, 256, 256, 256):
        ids = torch.randint(0, config.vocab_size, (32, length), device="cuda")
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        start = time.time()
        model(input_ids=ids, labels=ids, use_cache=False).loss.backward()
        torch.cuda.synchronize()
        results.append((length, round((torch.cuda.max_memory_allocated() - before) / 1e9, 2),
                        round(time.time() - start, 4)))
        for p in model.parameters():
            p.grad = None
    print(way, results, "after:", torch.compiler.config.recompile_limit, functorch_config.activation_memory_budget)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "scoped")
