"""Where the host holds the GPU back in a training step and an evaluation batch (a diagnostic, GPU only).

    python bench/diag_host.py --out $OUT/diag_host.json                 # GPU, ~2 min: both parts
    python bench/diag_host.py --only train --out $OUT/diag_host.json
    python bench/diag_host.py --only train --precision fp16 --out $OUT/diag_fp16.json   # --padded: not packed
    python bench/diag_host.py --budgets bf16:0.9,fp16:0.8 --out $OUT/budgets.json   # activation budgets
    python bench/diag_host.py --census bf16,fp16 --out $OUT/census.json             # what compiled layers save

Training (ours_bf16 at lite's T4 plan, the train bench's model and rows, steps 15-47): seconds per step;
Python's time per phase of the step without waiting on purpose (`host_ms_per_step`); every wait for the
GPU inside one step (CUDA sync debug mode: the Python line that waited); the step with a 20 ms GPU sleep
added (if it grows by less than 20 ms, the GPU had been idle that long); and, under the profiler, the
GPU's idle gaps and the phase Python was in during each. Evaluation (PricePredictor on the eval bench's
model, one-token prices and the digit tree): the same waits and gaps, and kernel tables beside the
results file. `--budgets`: ours at each precision:activation-budget, s/step and peak (the share
`pricer.patches.torch.ACTIVATION_BUDGET` keeps; too low recomputes matmuls, where depends on the graph;
arms share a process, so only the first arm's peak is clean). `--census`: what the compiled layers save for
the backward, by dtype and shape (a saved-tensors hook around one forward after 16 steps).
"""

import argparse
import collections
import functools
import json
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from pricer.models import torch_dtype  # noqa: E402

ON = {"timing": False}
HOST = collections.defaultdict(float)
CALLS = collections.Counter()


def phase(name, fn):
    @functools.wraps(fn)
    def wrapper(*a, **k):
        if not ON["timing"]:
            return fn(*a, **k)
        with torch.profiler.record_function("phase:" + name):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                HOST[name] += time.perf_counter() - t
                CALLS[name] += 1
    return wrapper


SYNCS = collections.Counter()


def capture_syncs(fn):
    """Run fn with CUDA sync debug on; count the Python stacks that synchronised."""
    old = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" in str(message):
            stack = [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in traceback.extract_stack()[:-1]
                     if "diag_host" not in f.filename and "warnings" not in f.filename][-7:]
            SYNCS[" <- ".join(reversed(stack)) + f" [{str(message)[:60]}]"] += 1
        else:
            old(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = show
            return fn()
    finally:
        torch.cuda.set_sync_debug_mode(0)
        warnings.showwarning = old


def gaps(prof) -> dict:
    """GPU idle gaps in the profiled window and the host phases they fall in."""
    events = prof.events()
    kernels = sorted((e.time_range.start, e.time_range.end, e.name) for e in events
                     if str(getattr(e, "device_type", "")).endswith("CUDA") and e.device_time_total > 0
                     and not e.cpu_children)
    phases = [(e.time_range.start, e.time_range.end, e.name[6:]) for e in events if e.name.startswith("phase:")]
    busy, idle = [], []
    for s, t, _ in kernels:
        if busy and s <= busy[-1][1]:
            busy[-1][1] = max(busy[-1][1], t)
        else:
            if busy and s - busy[-1][1] > 5:
                idle.append((busy[-1][1], s))
            busy.append([s, t])
    by_phase = collections.defaultdict(float)
    for a, b in idle:
        for s, t, name in phases:
            o = min(b, t) - max(a, s)
            if o > 0:
                by_phase[name] += o
    copies = collections.Counter()
    for s, t, name in kernels:
        low = name.lower()
        if any(k in low for k in ("copy", "cast", "cat", "fill", "memset", "memcpy")):
            copies[name[:120]] += t - s
    span = kernels[-1][1] - kernels[0][0] if kernels else 0
    big = sorted(((b - a), a) for a, b in idle)[-15:]
    return {"span_ms": span / 1e3, "busy_ms": sum(t - s for s, t in busy) / 1e3,
            "idle_ms": sum(b - a for a, b in idle) / 1e3, "idle_gaps": len(idle),
            "idle_over_50us_ms": sum(b - a for a, b in idle if b - a > 50) / 1e3,
            "idle_by_phase_ms": {k: round(v / 1e3, 2) for k, v in sorted(by_phase.items(), key=lambda kv: -kv[1])},
            "largest_gaps_us": [round(g) for g, _ in big],
            "copies_ms": {k: round(v / 1e3, 2) for k, v in copies.most_common(15)},
            "launches": dict(collections.Counter(e.name for e in events if e.name.startswith("cuda")
                                                 and ("Launch" in e.name or "Memcpy" in e.name
                                                      or "Synchronize" in e.name)).most_common(10))}


def train_diag(report, out, precision="bf16", padded=False):
    from transformers import TrainerCallback

    import train_throughput as tt

    sync = torch.cuda.synchronize
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        tokenizer = tt.save_random_model(tt.LLAMA_3B, folder, tt.llama_tokenizer_dir())
        rows = tt.make_rows(32 * 15, tokenizer.vocab_size, tokenizer.eos_token_id)
        model = tt.load_4bit(folder, torch_dtype(precision))
        total = 47
        trainer, setup = tt.our_trainer(model, tokenizer, rows, precision, total, Path(tmp) / "run", 14.0, None,
                                        padded=padded)
        for name in ("get_batch_samples", "training_step", "compute_loss", "_clip_grad_norm",
                     "_maybe_log_save_evaluate", "floating_point_ops"):
            setattr(trainer, name, phase(name, getattr(trainer, name)))
        trainer.accelerator.backward = phase("backward", trainer.accelerator.backward)
        cb = trainer.callback_handler
        for name in ("on_step_begin", "on_step_end"):
            setattr(cb, name, phase(name, getattr(cb, name)))
        marks, res = {}, {}
        cycles = {}
        prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                                  torch.profiler.ProfilerActivity.CUDA])

        class Diag(TrainerCallback):
            def on_train_begin(self, args, state, control, optimizer=None, lr_scheduler=None, model=None, **kw):
                trainer.optimizer.step = phase("optimizer", trainer.optimizer.step)
                trainer.model.zero_grad = phase("zero_grad", trainer.model.zero_grad)
                sync()
                t = time.perf_counter()
                torch.cuda._sleep(int(2e8))
                sync()
                cycles["per_ms"] = 2e8 / ((time.perf_counter() - t) * 1e3)

            def on_step_begin(self, args, state, control, **kw):
                g = state.global_step
                if g in (15, 25, 30, 36, 42):
                    sync()
                    marks[g] = time.perf_counter()
                if g == 25:
                    ON["timing"] = True
                if 31 <= g < 36:
                    torch.cuda._sleep(int(20 * cycles["per_ms"]))
                if g == 36:
                    prof.__enter__()
                if g == 42:
                    ON["timing"] = False
                    HOST.clear()
                    CALLS.clear()

            def on_step_end(self, args, state, control, **kw):
                g = state.global_step
                control.should_log = g == state.max_steps
                if g == 30:
                    sync()
                    marks[30] = time.perf_counter()
                    res["host_ms_per_step"] = {k: round(v * 1e3 / 5, 2) for k, v in HOST.items()}
                    res["calls"] = dict(CALLS)
                    HOST.clear()
                    CALLS.clear()
                if g == 31:
                    sync()
                    marks[31] = time.perf_counter()
                if g == 36:
                    sync()
                    marks["36e"] = time.perf_counter()
                if g == 41:
                    sync()
                    marks[41] = time.perf_counter()
                    prof.__exit__(None, None, None)
                    res["profile_host_ms_per_step"] = {k: round(v * 1e3 / 5, 2) for k, v in HOST.items()}
                if g == total:
                    sync()
                    marks["end"] = time.perf_counter()

        trainer.add_callback(Diag())
        orig_step = trainer.training_step

        def step_with_sync_capture(model, inputs, num_items_in_batch=None):
            if trainer.state.global_step == 30:
                return capture_syncs(lambda: orig_step(model, inputs, num_items_in_batch))
            return orig_step(model, inputs, num_items_in_batch)

        trainer.training_step = step_with_sync_capture
        trainer.train()
        res["s_per_step_15_25"] = (marks[25] - marks[15]) / 10
        res["s_per_step_25_30_timed_host"] = (marks[30] - marks[25]) / 5
        res["s_per_step_31_36_gpu_sleep_20ms"] = (marks["36e"] - marks[31]) / 5
        res["s_per_step_36_41_profiled"] = (marks[41] - marks[36]) / 5
        res["s_per_step_42_end"] = (marks["end"] - marks[42]) / (total - 42)
        res["syncs_step30_training_step"] = dict(SYNCS.most_common(20))
        res["gaps_5_steps"] = gaps(prof)
        (out.parent / f"diag_train_{precision}_table.txt").write_text(prof.key_averages().table(
            sort_by="self_device_time_total", row_limit=50, max_name_column_width=100))
        (out.parent / f"diag_train_{precision}_cpu_table.txt").write_text(prof.key_averages().table(
            sort_by="self_cpu_time_total", row_limit=50, max_name_column_width=100))
        res["plan"] = str(setup.plan)
        res["packed_tokens"] = getattr(trainer.data_collator, "pack", 0)
        res["peak_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 2)  # the first training in this process
        report["train"] = res
        print(json.dumps(res, indent=1), flush=True)
        out.write_text(json.dumps(report, indent=1))


def eval_diag(report, out):
    import eval_throughput as et
    from pricer.predict import PricePredictor

    with tempfile.TemporaryDirectory(dir="/dev/shm") as folder:
        model = et.random_llama(et.LLAMA_3_2_3B, Path(folder), "4bit")
    res = {}
    for label, numbers, batch, n in (("whole", "whole", None, 1024), ("tree", "digits", 128, 256)):
        tok = et.standin_tokenizer(numbers)
        rows = et.standin_prompts(tok, n)
        pred = PricePredictor(model, tok, batch_size=batch) if batch else PricePredictor(model, tok)
        run = et.tester_style(pred)
        run(rows)
        torch.cuda.synchronize()
        t = time.perf_counter()
        run(rows)
        torch.cuda.synchronize()
        res[f"{label}_items_per_s"] = n / (time.perf_counter() - t)
        SYNCS.clear()
        capture_syncs(lambda: run(rows))
        res[f"{label}_syncs"] = dict(SYNCS.most_common(15))
        prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                                  torch.profiler.ProfilerActivity.CUDA])
        with prof:
            run(rows)
            torch.cuda.synchronize()
        res[f"{label}_gaps"] = gaps(prof)
        table = prof.key_averages().table(sort_by="self_device_time_total", row_limit=40, max_name_column_width=100)
        (out.parent / f"diag_{label}_table.txt").write_text(table)
        prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                                  torch.profiler.ProfilerActivity.CUDA], with_stack=True,
                                      record_shapes=True)
        with prof:
            run(rows[:pred.batch_size])
            torch.cuda.synchronize()
        table = prof.key_averages(group_by_stack_n=8).table(sort_by="self_device_time_total", row_limit=30,
                                                            max_name_column_width=60)
        (out.parent / f"diag_{label}_stacks.txt").write_text(table)
        table = prof.key_averages(group_by_input_shape=True).table(sort_by="self_device_time_total", row_limit=40,
                                                                   max_name_column_width=60)
        (out.parent / f"diag_{label}_shapes.txt").write_text(table)
        res[f"{label}_batch_size"] = pred.batch_size
        print(json.dumps(res, indent=1), flush=True)
        report["eval"] = res
        out.write_text(json.dumps(report, indent=1))


def budgets(values, out):
    """ours_bf16 / ours_fp16 with the compiler's activation budget at each value: s/step and peak."""
    import pricer.patches.torch as pt
    import train_throughput as tt

    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        tokenizer = tt.save_random_model(tt.LLAMA_3B, folder, tt.llama_tokenizer_dir())
        rows = tt.make_rows(32 * 15, tokenizer.vocab_size, tokenizer.eos_token_id)
        args = argparse.Namespace(warmup=15, steps=10, budget_gb=40.0, micro_batch=None)  # the plan stays 32 x 1
        for value in values:
            precision, budget = value.split(":")
            pt.ACTIVATION_BUDGET = {**pt.ACTIVATION_BUDGET, precision: float(budget)}
            r = tt.run_one(f"ours_{precision}", folder, tokenizer, rows, precision, args, Path(tmp))
            res[value] = {k: r.get(k) for k in ("s_per_step", "tok_per_s", "peak_gb", "error")}
            print(value, res[value], flush=True)
            out.write_text(json.dumps(res, indent=1))


def census(precisions, out):
    """What the compiled layers keep for the backward, by dtype and shape: ours at each precision, after 16 steps
    (every length compiled), one more forward under a saved-tensors hook (its graphs replayed off the timed path)."""
    import train_throughput as tt

    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        tokenizer = tt.save_random_model(tt.LLAMA_3B, folder, tt.llama_tokenizer_dir())
        rows = tt.make_rows(32 * 15, tokenizer.vocab_size, tokenizer.eos_token_id)
        for precision in precisions:
            try:
                model = tt.load_4bit(folder, torch_dtype(precision))
                trainer, _ = tt.our_trainer(model, tokenizer, rows, precision, 16, Path(tmp) / precision, 40.0, None)
                trainer.train()
                batch = {k: v.to(trainer.args.device) if isinstance(v, torch.Tensor) else v
                         for k, v in next(iter(trainer.get_train_dataloader())).items()}
                kept = collections.Counter()
                count = collections.Counter()

                def pack(t):
                    kept[(str(t.dtype), tuple(t.shape))] += t.numel() * t.element_size()
                    count[(str(t.dtype), tuple(t.shape))] += 1
                    return t

                with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), trainer.compute_loss_context_manager():
                    loss = trainer.compute_loss(trainer.model, batch)
                del loss
                by_dtype = collections.Counter()
                for (dt, _), b in kept.items():
                    by_dtype[dt] += b
                res[precision] = {"gb_by_dtype": {k: round(v / 1e9, 3) for k, v in by_dtype.items()},
                                  "largest": [[k[0], list(k[1]), count[k], round(v / 1e9, 3)]
                                              for k, v in kept.most_common(12)],
                                  "lora_dtypes": sorted({str(p.dtype) for n, p in trainer.model.named_parameters()
                                                         if p.requires_grad})}
            except Exception:
                res[precision] = {"error": traceback.format_exc()[-1500:]}
            print(precision, json.dumps(res[precision], indent=1), flush=True)
            out.write_text(json.dumps(res, indent=1))
            model = trainer = None
            torch.cuda.empty_cache()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("/tmp/diag_host.json"))
    p.add_argument("--only", choices=("train", "eval"))
    p.add_argument("--precision", choices=("bf16", "fp16"), default="bf16", help="the training part's")
    p.add_argument("--padded", action="store_true", help="the training part's batches padded, not packed")
    p.add_argument("--budgets", help="precision:budget,... (e.g. bf16:0.9,fp16:0.8): time ours at each instead")
    p.add_argument("--census", help="precision,... (e.g. bf16,fp16): what the compiled layers keep, instead")
    args = p.parse_args()
    if args.budgets:
        return budgets(args.budgets.split(","), args.out)
    if args.census:
        return census(args.census.split(","), args.out)
    report = {}
    for part, fn in (("train", train_diag), ("eval", eval_diag)):
        if args.only in (None, part):
            try:
                fn(report, args.out, *([args.precision, args.padded] if part == "train" else []))
            except Exception:
                traceback.print_exc()
                report[part + "_error"] = traceback.format_exc()[-2000:]
                args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
