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

STARTED = time.perf_counter()
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

    on_gpu = torch.cuda.is_available() and not args.smoke
    precision = "bf16" if on_gpu else "fp32"
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[precision]
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
            del trainer, model
            return {"wall_s": state["wall"], "plan": str(setup.plan),
                    "variants": variants(args, folder, tokenizer, rows, Path(tmp))}
        summary = kernel_summary(prof_ctx, state["wall"], "train_bf16", out_dir)
        summary.update(per=steps, plan=str(setup.plan), compiled=setup.compiled, grouped=setup.grouped)
        del trainer, model
        summary["variants"] = variants(args, folder, tokenizer, rows, Path(tmp))
        return summary


def variants(args, folder, tokenizer, rows, tmp) -> dict:
    """Trial switches, timed over the second epoch of the same rows (every batch shape seen once before)."""
    import gc

    import torch

    import pricer.speed as speed
    import train_throughput as tt
    from pricer.config import get_preset
    from pricer.memory import ModelShape
    from pricer.train import Options, build_trainer, plan_setup

    stock_compiled, out = speed.compiled, {}
    epoch = len(rows) // 32
    for name in [n for n in args.variants.split(",") if n]:
        if time.perf_counter() - STARTED > args.deadline_s:
            out[name] = "past the deadline"
            continue
        precision = "fp16" if "fp16" in name else "bf16"
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        dynamic = None if "dynamic" in name else False  # False: every shape compiled anew (the old way)
        speed.compiled = lambda fn, dynamic=dynamic, **o: stock_compiled(fn, **{**o, "dynamic": dynamic})
        try:
            model = tt.load_4bit(folder, dtype)
            preset = get_preset("lite", batch_size=32, warmup_fraction=0.01, save_steps=10**6,
                                optimizer="paged_adamw_32bit")
            setup = plan_setup(ModelShape.from_config(model.config), preset, [len(r["input_ids"]) for r in rows],
                               Options(budget_gb=14.0))
            from dataclasses import replace
            setup = replace(setup, precision=precision, grouped="grouped" in name)
            trainer = build_trainer(model, tokenizer, rows, preset, setup, tmp / name,
                                    Options(max_steps=epoch + 10))
            if "fusedadam" in name:
                for p in trainer.model.parameters():
                    if p.requires_grad:
                        p.data = p.data.float()
                trainer.optimizer_cls_and_kwargs = (torch.optim.AdamW, dict(
                    lr=preset.learning_rate, betas=(0.9, 0.999), eps=1e-8, weight_decay=preset.weight_decay,
                    fused=True))
            result = tt.measure(trainer, epoch)
            print(name, json.dumps(result), flush=True)
            out[name] = result
        except Exception as e:
            out[name] = f"{type(e).__name__}: {str(e)[:300]}"
            print(name, out[name], flush=True)
        model = trainer = None
        gc.collect()
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
    speed.compiled = stock_compiled
    return out


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
    ours.predict_batch(rows[:ours.batch_size])  # warm-up (compiles the fused kernels)
    et.tester_style(ours)(rows)
    results["whole_fused"] = profiled(lambda: et.tester_style(ours)(rows), "whole_fused", out_dir,
                                      per=max(1, len(rows) // ours.batch_size))
    def items_per_s(run, items):
        start = time.perf_counter()
        run(items)
        torch.cuda.synchronize() if on_gpu else None
        return round(len(items) / (time.perf_counter() - start), 1)

    # every row in one call: sorted over all of them, not per chunk
    results["whole_fused_one_call_items_per_s"] = items_per_s(ours.predict_batch, rows)
    results["whole_fused_tester_items_per_s"] = items_per_s(et.tester_style(ours), rows)
    tree_fused = PricePredictor(model, digit_tok, batch_size=128 if on_gpu else 4, fused=True)
    et.tester_style(tree_fused)(digit_rows)  # compiles every width it meets
    results["tree_fused_second_pass_items_per_s"] = items_per_s(et.tester_style(tree_fused), digit_rows)
    results["tree_eager_items_per_s"] = items_per_s(et.tester_style(tree), digit_rows)
    print(json.dumps({k: v for k, v in results.items() if not isinstance(v, dict)}, indent=1))
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--only", choices=("train", "eval"))
    parser.add_argument("--out-dir", type=Path, default=Path("/tmp"))
    parser.add_argument("--variants", default="base,fusedadam,grouped_dynamic,grouped_dynamic_fusedadam,"
                        "fp16,fp16_fusedadam,fp16_grouped_dynamic_fusedadam")
    parser.add_argument("--deadline-s", type=float, default=520)
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
