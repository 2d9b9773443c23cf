"""Where a training step and an evaluation batch spend the GPU's time: kernel tables from torch.profiler.

    python bench/profile_gpu.py --out-dir $OUT          # GPU: Llama-3.2-3B-shaped 4-bit, ~5 min
    python bench/profile_gpu.py --smoke --out-dir /tmp  # CPU: the script runs

One process, the benches' own models and rows (bench/train_throughput.py, bench/eval_throughput.py):
pricer's training step at the T4 plan (bf16), PricePredictor at its default batch (one-token prices)
and the digit tree. For each: wall time per step or batch, the GPU's busy share (kernel time over
wall time: what is left is the GPU waiting for Python), and the kernels that take the time, grouped
(matmul, 4-bit dequantize, attention, optimizer, elementwise). Tables go to stdout and
`<out-dir>/profile_*.txt`; the summary to `<out-dir>/profile_gpu.json`. Not a benchmark: the
profiler's own overhead slows the step; read shares, not absolute times.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GROUPS = (  # first match wins: kernel-name fragments, lower case
    ("optimizer", ("adam", "optimizer", "multi_tensor", "foreach")),
    ("dequantize 4-bit", ("dequant", "kdequant", "bnb")),
    ("attention", ("fmha", "flash", "attention", "cutlass::fmha", "efficient")),
    ("matmul", ("gemm", "cutlass", "sm90_xmma", "nvjet", "cublas", "wgmma", "sgemm", "ampere")),
    ("softmax / loss", ("softmax", "nll", "cross_entropy", "logsumexp")),
    ("copies / casts", ("copy", "cast", "cat", "fill", "memset", "memcpy", "direct_copy")),
    ("compiled (triton)", ("triton",)),
)


def group(name: str) -> str:
    low = name.lower()
    return next((g for g, keys in GROUPS if any(k in low for k in keys)), "other elementwise")


def kernel_summary(prof, wall_s: float, label: str, out_dir: Path) -> dict:
    """Kernel time by group and the top kernels; GPU busy share of the wall time."""
    kernels = [e for e in prof.events() if getattr(e, "device_type", None) is not None
               and str(e.device_type).endswith("CUDA") and e.device_time_total > 0 and not e.cpu_children]
    by_name, by_group = {}, {}
    for e in kernels:
        us = e.device_time_total
        by_name[e.name] = by_name.get(e.name, 0.0) + us
        by_group[group(e.name)] = by_group.get(group(e.name), 0.0) + us
    busy = sum(by_name.values()) / 1e6
    table = prof.key_averages().table(sort_by="self_device_time_total", row_limit=30, max_name_column_width=90)
    (out_dir / f"profile_{label}.txt").write_text(table)
    print(f"===== {label}: wall {wall_s:.3f} s, kernels {busy:.3f} s ({100 * busy / wall_s:.0f}% busy)")
    for g, us in sorted(by_group.items(), key=lambda kv: -kv[1]):
        print(f"  {g:22s} {us / 1e3:9.1f} ms  {100 * us / 1e6 / busy:5.1f}%")
    top = sorted(by_name.items(), key=lambda kv: -kv[1])[:20]
    for name, us in top:
        print(f"    {us / 1e3:8.1f} ms  {name[:110]}")
    return {"wall_s": round(wall_s, 4), "kernel_s": round(busy, 4), "busy_share": round(busy / wall_s, 3),
            "groups_ms": {g: round(us / 1e3, 1) for g, us in by_group.items()},
            "top_kernels_ms": [[n[:160], round(us / 1e3, 2)] for n, us in top], "kernel_count": len(kernels)}


def profiled(fn, label: str, out_dir: Path, per: int = 1) -> dict:
    """Run fn() under the profiler (CUDA kernels recorded) and summarise per step/batch."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        fn()
        sync()
        wall = time.perf_counter() - start
    if not torch.cuda.is_available():
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))
        return {"wall_s": wall}
    summary = kernel_summary(prof, wall, label, out_dir)
    summary["per"] = per
    return summary


def train_profile(args, out_dir: Path) -> dict:
    """pricer's trainer at the T4 plan: warm up, then profile `args.train_steps` steps."""
    import torch
    from transformers import TrainerCallback

    import train_throughput as tt
    from pricer.models import torch_dtype

    on_gpu = torch.cuda.is_available() and not args.smoke
    precision = "bf16" if on_gpu else "fp32"
    dtype = torch_dtype(precision)
    warmup, steps = (6, args.train_steps) if on_gpu else (1, 2)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        tokenizer = tt.save_random_model(tt.LLAMA_3B if on_gpu else tt.SMOKE, folder,
                                         tt.llama_tokenizer_dir() if on_gpu else None)
        top = tokenizer.vocab_size if on_gpu else tt.SMOKE["vocab_size"]
        rows = tt.make_rows(32 * (warmup + steps), top, tokenizer.eos_token_id)
        model = tt.load_4bit(folder, dtype)
        trainer, setup = tt.our_trainer(model, tokenizer, rows, precision, warmup + steps, Path(tmp) / "run",
                                        14.0, None)
        state = {}

        class Window(TrainerCallback):
            def on_step_begin(self, a, s, c, **kw):
                if s.global_step == warmup:
                    sync()
                    state["prof"] = prof_ctx.__enter__()
                    state["start"] = time.perf_counter()

            def on_train_end(self, a, s, c, **kw):
                sync()
                state["wall"] = time.perf_counter() - state["start"]
                prof_ctx.__exit__(None, None, None)

        from torch.profiler import ProfilerActivity, profile

        sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
        prof_ctx = profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else []))
        trainer.add_callback(Window())
        trainer.train()
        if not on_gpu:
            return {"wall_s": state["wall"], "plan": str(setup.plan)}
        summary = kernel_summary(prof_ctx, state["wall"], "train_bf16", out_dir)
        summary.update(per=steps, plan=str(setup.plan), compiled=setup.compiled, grouped=setup.grouped)
        return summary


def eval_profile(args, out_dir: Path) -> dict:
    """PricePredictor on the eval bench's 3B-shaped 4-bit model: one-token prices and the digit tree."""
    import torch

    import eval_throughput as et
    from pricer.predict import PricePredictor

    on_gpu = torch.cuda.is_available() and not args.smoke
    config = et.LLAMA_3_2_3B if on_gpu else dict(et.LLAMA_3_2_3B, hidden_size=64, intermediate_size=128,
                                                   num_hidden_layers=2, num_attention_heads=4,
                                                   num_key_value_heads=2, head_dim=16)
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as folder:
        model = et.random_llama(config, Path(folder), "4bit" if on_gpu else None)
    results = {}
    digit_tok = et.standin_tokenizer("digits")
    digit_rows = et.standin_prompts(digit_tok, 256 if on_gpu else 8)
    tree = PricePredictor(model, digit_tok, batch_size=128 if on_gpu else 4, fused=False)
    tree.predict_batch(digit_rows[:tree.batch_size])  # warm-up
    results["tree_eager"] = profiled(lambda: et.tester_style(tree)(digit_rows), "tree_eager", out_dir,
                                     per=len(digit_rows) // tree.batch_size)
    whole_tok = et.standin_tokenizer("whole")
    rows = et.standin_prompts(whole_tok, 1024 if on_gpu else 8)
    ours = PricePredictor(model, whole_tok)
    et.tester_style(ours)(rows)  # warm-up: compiles the fused kernels for the lengths these rows bring
    results["whole_fused"] = profiled(lambda: et.tester_style(ours)(rows), "whole_fused", out_dir,
                                      per=max(1, len(rows) // ours.batch_size))
    tree_fused = PricePredictor(model, digit_tok, batch_size=128 if on_gpu else 4, fused=True)
    et.tester_style(tree_fused)(digit_rows)  # warm-up: compiles for the widths these rows bring
    results["tree_fused"] = profiled(lambda: et.tester_style(tree_fused)(digit_rows), "tree_fused", out_dir,
                                     per=len(digit_rows) // tree_fused.batch_size)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--only", choices=("train", "eval"))
    parser.add_argument("--out-dir", type=Path, default=Path("/tmp"))
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    import train_throughput

    report = {"machine": train_throughput.machine()}
    for part, fn in (("eval", eval_profile), ("train", train_profile)):
        if args.only in (None, part):
            try:
                report[part] = fn(args, args.out_dir)
            except Exception as e:  # keep the other part's figures
                import traceback
                traceback.print_exc()
                report[part] = f"{type(e).__name__}: {str(e)[:300]}"
            (args.out_dir / "profile_gpu.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1)[:4000])


if __name__ == "__main__":
    main()
