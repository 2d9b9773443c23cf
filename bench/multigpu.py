"""Data-parallel scaling: the full preset's training on 1 GPU vs N, same effective batch, one run.

    python bench/multigpu.py --gpus 2            # GPU box: Llama-3.2-3B-shaped random weights, 4-bit
    python bench/multigpu.py --gpus 2 --smoke    # CPU, 2 processes (gloo), tiny model: checks the script

For each process count it launches `accelerate launch` on this script's worker, which trains the
`full` preset's LoRA (r=256, every projection) on the same rows from the same seed with the
effective batch kept at the preset's (micro-batch x accumulation x processes), and reports real
tokens/s (all processes together), s/step and the losses. Writes bench/results/multigpu.json with
`machine`, `tok_s_1gpu`, `tok_s_<N>gpu`, `scaling_<N>gpu` and both loss curves.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def worker(args) -> None:
    """One process of a data-parallel run; the main one writes the figures to args.result."""
    import torch

    import train_throughput as tt
    from pricer import distributed
    from pricer.config import get_preset
    from pricer.memory import ModelShape
    from pricer.train import Options, build_trainer, plan_setup

    distributed.init()
    shape = tt.SMOKE if args.smoke else tt.LLAMA_3B
    folder = Path(args.model_dir)
    with distributed.main_first():  # the main process saves the random model; the others load it
        if not (folder / "config.json").exists():
            tt.save_random_model(shape, folder)
    rows = tt.make_rows(args.rows, shape["vocab_size"])
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    model = tt.load_4bit(folder, dtype) if torch.cuda.is_available() else _fp32(folder)
    preset = get_preset("full", batch_size=args.batch, save_steps=10**6,
                        optimizer="paged_adamw_32bit" if torch.cuda.is_available() else "adamw_torch")
    setup = plan_setup(ModelShape.from_config(model.config), preset, [len(r["input_ids"]) for r in rows],
                       Options(budget_gb=args.budget_gb, micro_batch=args.micro_batch))
    trainer = build_trainer(model, tt.tiny_tokenizer(), rows, preset, setup, Path(args.out_dir),
                            Options(max_steps=args.warmup + args.steps))
    start = time.perf_counter()
    figures = tt.measure(trainer, args.warmup)
    if distributed.is_main():
        figures.update(processes=distributed.world_size(), wall_s=round(time.perf_counter() - start, 1),
                       plan={"micro_batch": setup.plan.micro_batch, "accumulation": setup.plan.accumulation,
                             "checkpointing": setup.plan.checkpointing})
        Path(args.result).write_text(json.dumps(figures))


def _fp32(folder: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder)


def launch(n: int, args, tmp: Path) -> dict:
    """Run the worker on n processes through accelerate; its figures."""
    from pricer.distributed import SAFE_ENV, accelerate_launch

    result = tmp / f"result{n}.json"
    command = [*accelerate_launch(n), "--main_process_port", str(29500 + n),  # gloo without GPUs (smoke)
               __file__, "--worker", "--result", str(result), "--model-dir", str(tmp / "model"),
               "--out-dir", str(tmp / f"out{n}"), "--rows", str(args.rows), "--batch", str(args.batch),
               "--steps", str(args.steps), "--warmup", str(args.warmup), "--budget-gb", str(args.budget_gb)]
    command += ["--smoke"] if args.smoke else []
    command += ["--micro-batch", str(args.micro_batch)] if args.micro_batch else []
    print(f"--- {n} process(es)", flush=True)
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))  # keep carried packages
    code = subprocess.call(command, env={**os.environ, **SAFE_ENV, "PYTHONPATH": path})
    return json.loads(result.read_text()) if code == 0 else {"error": f"exit code {code}"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpus", type=int, default=2, help="processes to compare with one")
    p.add_argument("--smoke", action="store_true", help="CPU, tiny model, gloo: checks the script")
    p.add_argument("--rows", type=int, default=2048)
    p.add_argument("--batch", type=int, default=256, help="effective batch (the full preset's)")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--budget-gb", type=float, default=120.0, help="per-GPU memory the plan may use")
    p.add_argument("--micro-batch", type=int)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "multigpu.json"))
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--model-dir", help=argparse.SUPPRESS)
    p.add_argument("--out-dir", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.smoke:
        args.rows, args.batch, args.steps, args.warmup = 64, 16, 3, 1
    if args.worker:
        return worker(args)

    import torch

    have = args.gpus if args.smoke else torch.cuda.device_count()
    with tempfile.TemporaryDirectory() as tmp:
        runs = {n: launch(n, args, Path(tmp)) if n <= have else {"error": f"this machine has {have} GPU(s)"}
                for n in (1, args.gpus)}
    one, many = runs[1], runs[args.gpus]
    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU (gloo)"
    summary = {"machine": f"{have} x {name}", "tok_s_1gpu": one.get("tok_per_s"),
               f"tok_s_{args.gpus}gpu": many.get("tok_per_s"),
               f"scaling_{args.gpus}gpu": round(many["tok_per_s"] / one["tok_per_s"], 2)
               if "tok_per_s" in one and "tok_per_s" in many else None,
               "effective_batch": args.batch, "runs": runs}
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=1))
    Path(args.out).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
