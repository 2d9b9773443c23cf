"""Host time of Trainer's per-step walks over lite's model: stock, and listed once (`walks_listed_once`).

    python bench/host_walks.py                    # lite's shape (Llama-3.2-3B, lite's LoRA), ~30 s on one core
    python bench/host_walks.py --preset standard  # another preset's LoRA on the same shape

Each optimizer step, Trainer calls `model.train()` (in training_step) and `model.zero_grad()`, and clips
over `model.parameters()`: each a Python walk of every module of the 3B model while the GPU may wait. This
times those calls on the CPU that runs them, which is the GPU host's job too: a Python cost, so no GPU is
needed and the model is built on the meta device (plain Linear where lite has bitsandbytes' Linear4bit:
the same modules and parameters to walk). The CPU model goes into bench/results/host_walks.json.
"""

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from train_throughput import LLAMA_3B  # noqa: E402  (bench/, beside this script)
from versions import cpu_name, versions  # noqa: E402


def lite_shaped(preset_name: str):
    """Llama-3.2-3B's modules on the meta device with the preset's LoRA adapters, as Trainer walks them."""
    import torch
    from peft import get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from pricer.config import get_preset
    from pricer.train import lora_config

    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**LLAMA_3B))
    return get_peft_model(model, lora_config(get_preset(preset_name)))


def ms_per_call(call, repeats: int, rounds: int = 5) -> float:
    """The median over rounds of the mean time of one call, in ms."""
    call()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            call()
        times.append((time.perf_counter() - start) / repeats * 1e3)
    return round(statistics.median(times), 4)


def measure(model, repeats: int) -> dict:
    """ms per call of each walk: Trainer's stock calls, then the same calls with the walks listed once."""
    import torch

    from pricer.patches.trl import walks_listed_once

    trainable = [p for p in model.parameters() if p.requires_grad]
    grads = [torch.empty_like(p) for p in trainable]

    def grads_only():
        for p, grad in zip(trainable, grads):
            p.grad = grad

    def zero_grad():  # with gradients to clear, as after a backward
        grads_only()
        model.zero_grad()

    model.train()
    stock = {"train": ms_per_call(model.train, repeats),
             "zero_grad": ms_per_call(zero_grad, repeats),  # includes giving each trainable parameter a gradient
             "clip_parameter_list": ms_per_call(lambda: [p for p in model.parameters() if p.requires_grad], repeats)}
    with walks_listed_once(model) as listed:
        ours = {"train": ms_per_call(model.train, repeats), "zero_grad": ms_per_call(zero_grad, repeats),
                "clip_parameter_list": ms_per_call(lambda: listed, repeats)}
    return {"stock_ms": stock, "ours_ms": ours, "gradients_set_ms": ms_per_call(grads_only, repeats),
            "stock_ms_per_step": round(sum(stock.values()), 3), "ours_ms_per_step": round(sum(ours.values()), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="lite")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "host_walks.json")
    args = parser.parse_args()

    model = lite_shaped(args.preset)
    report = {"machine": f"{cpu_name()}, {platform.system()} {platform.machine()}, Python {platform.python_version()}",
              "what": "bench/host_walks.py: ms of host time per optimizer step in Trainer's walks of the model "
                      "(model.train(), model.zero_grad() after a backward, the clip's parameter list), stock "
                      "and listed once, on the meta device (a Python cost: the CPU is the measure); zero_grad's "
                      "figures include giving each trainable parameter a gradient first (gradients_set_ms of it)",
              "preset": args.preset, "modules": sum(1 for _ in model.modules()),
              "parameters": sum(1 for _ in model.parameters()),
              "trainable_parameters": sum(1 for p in model.parameters() if p.requires_grad),
              "versions": versions(), **measure(model, args.repeats)}
    report["saved_ms_per_step"] = round(report["stock_ms_per_step"] - report["ours_ms_per_step"], 3)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{report['modules']:,} modules, {report['trainable_parameters']} trainable of {report['parameters']} "
          f"parameters ({args.preset}); ms per step on {cpu_name()}:")
    for walk in report["stock_ms"]:
        print(f"  {walk:20} stock {report['stock_ms'][walk]:7.3f}   listed once {report['ours_ms'][walk]:7.3f}")
    print(f"  {'all':20} stock {report['stock_ms_per_step']:7.3f}   listed once {report['ours_ms_per_step']:7.3f}"
          f"   ({report['saved_ms_per_step']:.3f} ms a step saved) -> {args.out}")


if __name__ == "__main__":
    main()
