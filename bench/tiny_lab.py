"""The tiny CPU lab's minutes: where a training's time goes, and what score each minute buys.

    nice -n 5 python bench/tiny_lab.py phases          # one tiny training timed by phase (+ a profile); ~3 min
    nice -n 5 python bench/tiny_lab.py calibrate       # s/step per prompt length, batch and rank, interleaved
    nice -n 5 python bench/tiny_lab.py grid            # train + score each configuration at the same wall time
    nice -n 5 python bench/tiny_lab.py grid --only cut80,cut48 --seed 7    # repeat some, another seed
    nice -n 5 python bench/tiny_lab.py eval-cost       # s/item of the lab's predictors at each prompt length
    python bench/tiny_lab.py smoke                     # 3 steps, 8 items: checks the script (~1 min)

Every job runs in its own process (a fresh torch, one training at a time) with `pricer.train.train`
and is scored with `PricePredictor` (expected price) through `evaluate(..., save=False)` on the
first 100 validation rows (what configurations are chosen by) and the first 100 test rows (what the
lab reports), each cut at the job's own summary length. Phases are timed by wrapping Trainer's
own methods, in every job: data (`get_batch_samples`), forward (`training_step` less its
backward), backward (`Accelerator.backward`), optimizer (clip + step + schedule + zero_grad, to
`on_step_end`), validation loss (`_evaluate`), checkpoints (`_save_checkpoint`), and the setup
before the first step. Tokens per step are counted from each batch (real, padded, completion).

"Same wall time" is a token budget: the 2 cores are shared and absolute seconds move with load,
but the cost of a step relative to another in the same run holds, so `calibrate` measures s/step
for each shape interleaved (ABCABC) and `grid` sizes every configuration's steps so that its
steps x s/step equals the tiny preset's 60 steps (each job's real seconds and load are recorded
beside it). Results merge into bench/results/tiny_lab.json (machine, load averages per figure).
"""

import argparse
import contextlib
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from versions import cpu_name, versions  # noqa: E402  (bench/, beside this script)
OUT = ROOT / "bench" / "results" / "tiny_lab.json"

RUNS = ("phases", "calibrate", "grid", "eval-cost", "smoke", "rescore")  # the commands that train or evaluate (in a scratch folder)
QUIET = {"wait_s": 0, "threads": None}  # set from the command line: wait for a quiet box, torch threads per job
CUTS = {48: 80, 64: 96, 80: 112}  # summary_tokens -> max_length (longest prompt + price + eos fits)
SCORE_ITEMS = 100


def machine() -> dict:
    import torch

    return {"cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "nice": os.nice(0),
            "python": platform.python_version(), **versions()}


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cpu_sample() -> tuple[int, int]:
    """(idle + iowait, total) jiffies of all CPUs since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return fields[3] + fields[4], sum(fields)


def busy(seconds: float = 3.0) -> float:
    """Share of the CPUs that other processes used over the next `seconds` (the driver itself sleeps)."""
    idle0, total0 = cpu_sample()
    time.sleep(seconds)
    idle1, total1 = cpu_sample()
    return round(1 - (idle1 - idle0) / max(1, total1 - total0), 2)


def others_during(before: tuple[int, int], after: tuple[int, int], own_cpu_s: float, wall_s: float) -> float:
    """Share of the CPUs that processes other than the job used while it ran: its timings' contamination."""
    hz = os.sysconf("SC_CLK_TCK")
    busy_s = ((after[1] - before[1]) - (after[0] - before[0])) / hz
    return round(max(0.0, busy_s - own_cpu_s) / (os.cpu_count() * wall_s), 2)


def wait_for_quiet(limit_s: float, threshold: float = 0.15) -> float:
    """Wait (up to `limit_s`) until others use under `threshold` of the CPUs: timings taken beside another
    2-thread torch job are worthless (OpenMP threads spin-wait on a descheduled partner: 10-20x slower steps)."""
    deadline = time.time() + limit_s
    while True:
        share = busy()
        if share < threshold or time.time() > deadline:
            return share
        time.sleep(20)


# ---------------------------------------------------------------- phase clock


class PhaseClock:
    """Seconds per phase of each optimizer step, by wrapping Trainer's own methods for one training.

    Each phase is timed twice: wall seconds and this process's CPU seconds. With one torch thread
    the CPU seconds are the work itself, whatever else the shared cores run; wall seconds are what a
    student waits on a quiet machine (and, beside another torch job, mostly a measure of that job)."""

    PHASES = ("data", "forward", "backward", "optimizer")

    def __init__(self, profile_steps: tuple[int, int] | None = None):
        self.steps: list[dict] = []  # one per optimizer step: phase -> [wall, cpu] seconds, and tokens
        self.other = {"validation": [0.0, 0.0], "checkpoint": [0.0, 0.0], "log": [0.0, 0.0]}
        self.marks = {}
        self.profile_steps, self.profile, self.profiled = profile_steps, None, None
        self._step = None
        self._last_end = None

    @staticmethod
    def now() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    @contextlib.contextmanager
    def installed(self):
        from accelerate import Accelerator
        from transformers import Trainer

        clock = self
        wrapped = {(Trainer, "get_batch_samples"), (Trainer, "training_step"), (Accelerator, "backward"),
                   (Trainer, "_evaluate"), (Trainer, "_save_checkpoint"), (Trainer, "log")}
        saved = {(cls, name): getattr(cls, name) for cls, name in wrapped}

        def timed(cls, name, record):
            original = saved[(cls, name)]

            @functools.wraps(original)
            def wrapper(*args, **kwargs):
                start = clock.now()
                try:
                    return original(*args, **kwargs)
                finally:
                    end = clock.now()
                    record([end[0] - start[0], end[1] - start[1]], args, kwargs)

            setattr(cls, name, wrapper)

        def data(spent, args, kwargs):
            clock._step = {**{p: [0.0, 0.0] for p in clock.PHASES}, "data": spent,
                           "real_tokens": 0, "padded_tokens": 0, "completion_tokens": 0, "rows": 0}
            clock.steps.append(clock._step)

        def training_step(spent, args, kwargs):
            inputs = args[2] if len(args) > 2 else kwargs.get("inputs")
            step = clock._step
            backward = clock.marks.pop("backward", [0.0, 0.0])
            for i in (0, 1):
                step["forward"][i] += spent[i] - backward[i]  # inputs to the device, the forward and the loss
                step["backward"][i] += backward[i]
            ids = inputs["input_ids"]
            step["rows"] += ids.shape[0]
            step["padded_tokens"] += ids.numel()
            step["real_tokens"] += int(inputs["attention_mask"].sum()) if "attention_mask" in inputs else ids.numel()
            mask = inputs.get("completion_mask")
            if mask is None and "labels" in inputs:
                mask = inputs["labels"] != -100
            step["completion_tokens"] += int(mask.sum()) if mask is not None else 0
            clock._last_end = clock.now()

        def backward(spent, args, kwargs):
            clock.marks["backward"] = spent

        def add(name):
            def record(spent, args, kwargs):
                for i in (0, 1):
                    clock.other[name][i] += spent[i]
            return record

        timed(Trainer, "get_batch_samples", data)
        timed(Trainer, "training_step", training_step)
        timed(Accelerator, "backward", backward)
        timed(Trainer, "_evaluate", add("validation"))
        timed(Trainer, "_save_checkpoint", add("checkpoint"))
        timed(Trainer, "log", add("log"))
        try:
            yield self
        finally:
            for (cls, name), fn in saved.items():
                setattr(cls, name, fn)

    def callback(self):
        from transformers import TrainerCallback

        clock = self

        class Marks(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                clock.marks["train_begin"] = clock.now()

            def on_step_begin(self, args, state, control, **kwargs):
                if clock.profile_steps and state.global_step == clock.profile_steps[0]:
                    import torch

                    clock.profile = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
                    clock.profile.__enter__()

            def on_step_end(self, args, state, control, **kwargs):
                end = clock.now()
                for i in (0, 1):
                    clock._step["optimizer"][i] += end[i] - clock._last_end[i]  # clip, step, schedule, zero_grad
                if clock.profile is not None:
                    clock._step["profiled"] = True
                    if state.global_step == clock.profile_steps[1]:
                        clock.profile.__exit__(None, None, None)
                        clock.profiled = categories(clock.profile, clock.profile_steps[1] - clock.profile_steps[0])
                        clock.profile = None

            def on_train_end(self, args, state, control, **kwargs):
                clock.marks["train_end"] = clock.now()

        return Marks()

    def summary(self, skip_first: int = 1) -> dict:
        """Median wall and CPU seconds per step by phase (the first and profiled steps left out), and totals."""
        steps = [s for s in self.steps[skip_first:] if not s.get("profiled")] or self.steps
        out = {}
        for i, kind in ((0, "wall"), (1, "cpu")):
            per_step = {p: round(statistics.median(s[p][i] for s in steps), 4) for p in self.PHASES}
            per_step["step"] = round(statistics.median(sum(s[p][i] for p in self.PHASES) for s in steps), 4)
            out[f"per_step_{kind}_s"] = per_step
            out[f"steps_total_{kind}_s"] = {p: round(sum(s[p][i] for s in self.steps), 2) for p in self.PHASES}
            out[f"other_{kind}_s"] = {k: round(v[i], 2) for k, v in self.other.items()}
            out[f"first_step_{kind}_s"] = round(sum(self.steps[0][p][i] for p in self.PHASES), 3) if self.steps else None
        out["tokens_per_step"] = {k: round(statistics.mean(s[k] for s in self.steps), 1)
                                  for k in ("rows", "real_tokens", "padded_tokens", "completion_tokens")}
        out["each_step_wall_cpu"] = [[round(sum(s[p][0] for p in self.PHASES), 2),
                                      round(sum(s[p][1] for p in self.PHASES), 2)] for s in self.steps]
        out["steps"] = len(self.steps)
        return out


def categories(profile, steps: int) -> dict:
    """A profile's self CPU time per step, in ms, grouped: 4-bit dequantize, matmuls, attention, the rest."""
    groups = {"4bit_dequantize": ("bitsandbytes", "dequant", "nf4"), "matmul": ("aten::mm", "aten::addmm", "aten::bmm"),
              "attention": ("scaled_dot_product", "flash_attention", "_efficient_attention"),
              "optimizer": ("_foreach", "adam", "aten::lerp", "aten::addcdiv")}
    totals, top = {g: 0.0 for g in (*groups, "other")}, []
    for event in profile.key_averages():
        ms = event.self_cpu_time_total / 1000 / steps
        name = event.key.lower()
        group = next((g for g, keys in groups.items() if any(k in name for k in keys)), "other")
        totals[group] += ms
        top.append((ms, event.key))
    top.sort(reverse=True)
    return {"ms_per_step": {g: round(v, 1) for g, v in totals.items()},
            "top_ops_ms_per_step": {name: round(ms, 1) for ms, name in top[:12]}}


# ---------------------------------------------------------------- one job (its own process)


def preset_for(values: dict):
    from pricer.config import get_preset

    values = dict(values)
    cut = values.get("summary_tokens")
    if cut and "max_length" not in values:
        values["max_length"] = CUTS[cut]
    return get_preset("tiny", **values)


def job(spec: dict) -> dict:
    """Train one configuration with the phase clock on, then score it: what every grid process runs."""
    import torch

    from pricer.sources import resolve_preset
    from pricer.train import train

    out = Path(spec["out"])
    os.environ["PRICER_RESULTS"] = str(out / "results")
    preset = resolve_preset(preset_for(spec["values"]))
    clock = PhaseClock(tuple(spec["profile"]) if spec.get("profile") else None)
    before = load()
    start = time.perf_counter()
    with clock.installed():
        result = train(preset, out / "outputs", callbacks=[clock.callback()], seed=spec.get("seed", 42),
                       max_steps=spec.get("max_steps"))
    train_s = time.perf_counter() - start
    record = {"values": spec["values"], "seed": spec.get("seed", 42), "train_rows": preset.train_rows,
              "adapter": str(result.run_dir),
              "steps": result.steps, "train_s": round(train_s, 1), "load_before": before, "load_after": load(),
              "setup_s": round(clock.marks["train_begin"][0] - start, 1),
              "after_s": round(start + train_s - clock.marks["train_end"][0], 1),
              "phases": clock.summary(), "losses": result.losses, "eval_losses": result.eval_losses,
              "torch_threads": torch.get_num_threads()}
    if clock.profiled:
        record["profile"] = clock.profiled
    if spec.get("score", True):
        record["scores"] = score(preset, result.run_dir, spec.get("items", SCORE_ITEMS))
    return record


def rescore(spec: dict) -> dict:
    """Score an adapter a grid job already trained (its folder still there) with today's `score`."""
    from pricer.sources import resolve_preset

    return score(resolve_preset(preset_for(spec["values"])), spec["adapter"], spec.get("items", SCORE_ITEMS))


class KeepDistributions:
    """The expected price, as `evaluate` calls it, keeping each item's whole distribution: the median, the bias
    and the mass on 1-, 2- and 3-digit prices come from the same forwards."""

    def __init__(self, predictor):
        self.predictor, self.batch_size, self.kept = predictor, predictor.batch_size, []
        self.__name__ = "expected_price"

    def predict_batch(self, rows):
        found = self.predictor.distributions(rows)
        self.kept += found
        return [d.mean for d in found]


def score(preset, adapter, items: int) -> dict:
    """The expected price's error on the first `items` validation and test rows (the headline, through
    `evaluate`), the median's, the bias, the digit mass, and seconds per item."""
    from pricer.evaluator import evaluate
    from pricer.items import load_prompts
    from pricer.models import load_finetuned, load_tokenizer
    from pricer.predict import PricePredictor

    prompts = load_prompts(preset.prompts, preset.summary_tokens, preset.base_model)
    model = load_finetuned(preset.base_model, str(adapter), preset.quant)
    predictor = PricePredictor(model, load_tokenizer(preset.base_model))
    scores = {}
    for split in ("val", "test"):
        before = load()
        keeper = KeepDistributions(predictor)
        result = evaluate(keeper, prompts[split], size=items, save=False, title=f"{split} {items}")
        truths = result.truths
        medians = [d.median for d in keeper.kept]
        digits = [[sum(q for p, q in zip(d.prices, d.probs) if lo <= p < hi) for lo, hi in ((0, 10), (10, 100),
                                                                                          (100, 10_000))]
                  for d in keeper.kept]
        scores[split] = {
            "error": round(result.metrics["error"], 2),
            "median_error": round(statistics.mean(abs(m - t) for m, t in zip(medians, truths)), 2),
            "bias": round(statistics.mean(result.guesses) - statistics.mean(truths), 2),
            "rmsle": round(result.metrics["rmsle"], 3), "hit_rate": round(result.metrics["hit_rate"], 3),
            "digit_mass": [round(statistics.mean(d[i] for d in digits), 3) for i in range(3)],
            "true_digit_share": [round(statistics.mean(lo <= t < hi for t in truths), 3)
                                 for lo, hi in ((0, 10), (10, 100), (100, 10_000))],
            "items": items, "s_per_item": round(result.metrics["seconds"] / items, 3), "load": before}
    return scores


def eval_cost(spec: dict) -> dict:
    """Seconds per item of the lab's predictors at each cut, interleaved: greedy on the base model (notebook 3)
    and, on a fine-tuned adapter of each cut when given, greedy and the expected price (notebook 5)."""
    from pricer.evaluator import evaluate
    from pricer.items import load_prompts
    from pricer.models import load_finetuned, load_model, load_tokenizer
    from pricer.predict import GenerationPredictor, PricePredictor

    from pricer.config import EMBEDDED
    from pricer.sources import resolve_preset

    base = resolve_preset(preset_for({}))
    tokenizer = load_tokenizer(base.base_model)
    items = spec.get("items", 32)
    rows = {cut: load_prompts(EMBEDDED, cut, base.base_model)["test"][:items] for cut in spec["cuts"]}
    out = {}
    models = {"base": load_model(base.base_model, base.quant)}
    for cut, adapter in (spec.get("adapters") or {}).items():
        models[f"tuned{cut}"] = load_finetuned(base.base_model, adapter, base.quant)
    for repeat in range(spec.get("repeats", 2)):
        for cut in spec["cuts"]:
            for label, model in models.items():
                if label.startswith("tuned") and label != f"tuned{cut}":
                    continue
                kinds = {"greedy": GenerationPredictor(model, tokenizer)}
                if label != "base":
                    kinds["expected"] = PricePredictor(model, tokenizer)
                for kind, predictor in kinds.items():
                    predictor.cache_key = None  # every repeat predicts: no resume cache
                    before = load()
                    t = time.perf_counter()
                    evaluate(predictor, rows[cut], size=items, save=False, title=f"{kind} {label} {cut}")
                    key = f"{kind}_{'base' if label == 'base' else 'tuned'}"
                    out.setdefault(key, {}).setdefault(str(cut), []).append(
                        {"s_per_item": round((time.perf_counter() - t) / items, 3), "load": before})
    return out


def reference(cuts=tuple(CUTS), items: int = SCORE_ITEMS) -> dict:
    """Constant and ridge on the same first `items` validation / test rows of each cut, fitted on every training
    row (as notebook 3 fits them) and on the tiny preset's 480: where the fine-tuned errors sit."""
    from pricer.baselines import fit_all
    from pricer.config import EMBEDDED
    from pricer.evaluator import evaluate
    from pricer.items import load_prompts
    from pricer.sources import embedded_model

    out = {}
    for cut in cuts:
        prompts = load_prompts(EMBEDDED, cut, str(embedded_model()))
        for rows_name, rows in (("all", prompts["train"]), ("480", prompts["train"][:480])):
            for name, model in fit_all(rows, names=["constant_mean", "constant_median", "ridge_bow"]).items():
                for split in ("val", "test"):
                    error = evaluate(model, prompts[split], size=items, save=False, title=name).metrics["error"]
                    out.setdefault(str(cut), {})[f"{name}_{rows_name}_{split}"] = round(error, 2)
    return out


def lab_times(folder: Path, top: int = 6) -> dict:
    """Seconds per notebook and its slowest cells, from the execution stamps of an executed lab run's notebooks
    (a run someone already made: this bench never runs the lab)."""
    from datetime import datetime

    out = {}
    for path in sorted(folder.glob("[0-9]_*.ipynb")):
        cells = []
        for cell in json.loads(path.read_text())["cells"]:
            stamps = cell.get("metadata", {}).get("execution", {})
            if "iopub.execute_input" in stamps and "shell.execute_reply" in stamps:
                t0, t1 = (datetime.fromisoformat(stamps[k].replace("Z", "+00:00"))
                          for k in ("iopub.execute_input", "shell.execute_reply"))
                source = "".join(cell["source"]).strip().splitlines()
                cells.append(((t1 - t0).total_seconds(), source[-1][:90] if source else ""))
        out[path.stem] = {"cells_s": round(sum(s for s, _ in cells), 1),
                          "slowest": [[round(s, 1), line] for s, line in sorted(cells, reverse=True)[:top]]}
    return out


# ---------------------------------------------------------------- driver


def run_job(spec: dict, work: Path, kind: str = "job") -> dict:
    """One job in its own process (nice and threads inherited); its record."""
    out = work / spec["name"]
    out.mkdir(parents=True, exist_ok=True)
    spec = {**spec, "out": str(out)}
    log_path = out / "log.txt"
    others = wait_for_quiet(QUIET["wait_s"]) if QUIET["wait_s"] else busy()
    print(f"[{time.strftime('%H:%M:%S')}] {spec['name']}: {spec.get('values', '')} load {load()}, others busy "
          f"{others:.0%}", flush=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if QUIET["threads"]:
        env["OMP_NUM_THREADS"] = str(QUIET["threads"])
    import resource

    own0, cpu0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), cpu_sample(), time.perf_counter()
    with log_path.open("w") as log:
        code = subprocess.call([sys.executable, __file__, f"--{kind}", json.dumps(spec)], stdout=log,
                               stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    own1, cpu1, wall = resource.getrusage(resource.RUSAGE_CHILDREN), cpu_sample(), time.perf_counter() - t0
    own = (own1.ru_utime + own1.ru_stime) - (own0.ru_utime + own0.ru_stime)
    if code:
        raise RuntimeError(f"{spec['name']} failed (exit {code}):\n{log_path.read_text()[-3000:]}")
    record = json.loads((out / "record.json").read_text())
    record["others_busy_before"] = others
    record["others_busy_during"] = others_during(cpu0, cpu1, own, wall)
    record["job_cpu_s"], record["job_wall_s"] = round(own, 1), round(wall, 1)
    brief = {k: record[k] for k in ("steps", "train_s", "others_busy_during") if k in record}
    if "phases" in record:
        brief["s/step"] = [record["phases"][f"per_step_{k}_s"]["step"] for k in ("wall", "cpu")]
    if "scores" in record:
        brief.update({s: v["error"] for s, v in record["scores"].items()})
    print(f"    -> {brief}", flush=True)
    return record


def merge(section: str, value, path: Path = OUT) -> None:
    from pricer.files import write_json

    report = json.loads(path.read_text()) if path.exists() else {}
    report.setdefault("machine", machine())
    report.setdefault("runs", {})
    if isinstance(value, dict) and isinstance(report.get(section), dict):
        report[section].update(value)
    else:
        report[section] = value
    report["updated"] = time.strftime("%Y-%m-%d %H:%M")
    write_json(path, report)


def calibrate(work: Path, repeats: int, steps: int) -> dict:
    """s/step of each shape the grid uses, interleaved so load drifts hit all alike; medians over repeats."""
    shapes = {f"cut{c}": {"summary_tokens": c} for c in CUTS}
    shapes.update({"cut48_b16": {"summary_tokens": 48, "batch_size": 16},
                   "cut48_r64": {"summary_tokens": 48, "lora_r": 64, "lora_alpha": 128},
                   "cut48_b4": {"summary_tokens": 48, "batch_size": 4}})
    samples = {name: [] for name in shapes}
    for r in range(repeats):
        for name, values in shapes.items():
            record = run_job({"name": f"cal{r}_{name}", "values": values, "max_steps": steps, "score": False}, work)
            kind = "cpu" if QUIET["threads"] == 1 else "wall"  # one thread: its CPU seconds are the work
            samples[name].append({"s_per_step": record["phases"][f"per_step_{kind}_s"]["step"], "timed": kind,
                                  "others_busy_during": record["others_busy_during"],
                                  "phases": {k: record["phases"][f"per_step_{k}_s"] for k in ("wall", "cpu")},
                                  "tokens": record["phases"]["tokens_per_step"], "load": record["load_before"]})
    base = statistics.median(s["s_per_step"] for s in samples["cut48"])
    return {name: {"s_per_step": round(statistics.median(s["s_per_step"] for s in runs), 3),
                   "relative_to_cut48": round(statistics.median(s["s_per_step"] for s in runs) / base, 3),
                   "samples": runs} for name, runs in samples.items()}


def grid_specs(relative: dict, seed: int, times: float = 1.0) -> list[dict]:
    """Every configuration at the tiny preset's training time (60 steps x the cost of a 48-token batch of 8),
    or `times` that budget."""
    budget = 60 * times  # in steps of the preset as it is

    def steps(shape: str, batch: int = 8) -> int:
        return max(1, round(budget / relative.get(shape, 1.0)))

    specs = []

    def add(name, shape, **values):
        values.setdefault("summary_tokens", 48)
        batch = values.get("batch_size", 8)
        n = round(values.pop("steps", 0) * times) or steps(shape)
        epochs = values.get("epochs", 1)
        values["train_rows"] = int(round(n * batch / epochs))
        specs.append({"name": name, "values": values, "seed": seed})

    add("cut48", "cut48")                                          # the preset as it is
    add("cut64", "cut64", summary_tokens=64)
    add("cut80", "cut80", summary_tokens=80)
    for lr in (2e-3, 4e-3, 5e-4):
        add(f"cut48_lr{lr:g}", "cut48", learning_rate=lr)
    add("cut48_b4", "cut48_b4", batch_size=4)                      # rows vs steps: more, smaller steps
    add("cut48_b16", "cut48_b16", batch_size=16)                   # fewer, bigger steps
    for r in (64, 4):
        add(f"cut48_r{r}", "cut48_r64" if r == 64 else "cut48", lora_r=r, lora_alpha=2 * r)
    add("cut80_same_steps", "cut80", summary_tokens=80, steps=60)  # what the longer cut is worth, cost aside
    return specs


def table(report: dict) -> str:
    """The grid as a markdown table: configuration, what it cost, what it scored."""
    from pricer.config import PRESETS

    tiny = PRESETS["tiny"]
    lines = ["| run | cut / max_length | batch x steps (rows) | r | lr | train s | s/step | val $ | test $ | "
             "s/item | others' CPU |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, run in report.get("runs", {}).items():
        if "scores" not in run:
            continue
        v = run["values"]
        cut = v.get("summary_tokens", tiny.summary_tokens)
        batch = v.get("batch_size", tiny.batch_size)
        kind = "cpu" if run.get("torch_threads") == 1 else "wall"
        lines.append(
            f"| {name} | {cut} / {v.get('max_length', CUTS.get(cut))} | {batch} x {run['steps']} ({run['train_rows']}) "
            f"| {v.get('lora_r', tiny.lora_r)} | {v.get('learning_rate', tiny.learning_rate):g} | {run['train_s']:.0f} "
            f"| {run['phases'][f'per_step_{kind}_s']['step']:.2f} | {run['scores']['val']['error']:.2f} "
            f"| {run['scores']['test']['error']:.2f} | {run['scores']['test']['s_per_item']:.2f} "
            f"| {run.get('others_busy_during', 0):.0%} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", nargs="?", choices=("phases", "calibrate", "grid", "eval-cost", "smoke", "specs",
                                               "lab-times", "table", "rescore", "reference"))
    p.add_argument("folder", nargs="?", help="lab-times: an executed lab run's folder")
    p.add_argument("--only", help="comma-separated grid names")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--set", action="append", default=[], help="key=value for every grid job (e.g. summary_tokens=80)")
    p.add_argument("--budget", type=float, default=1.0, help="grid: times the preset's training time")
    p.add_argument("--prefix", default="", help="a prefix for the names the grid records")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--calibration", default="calibration", help="grid: the calibration to size steps by")
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--wait-quiet", type=float, default=0, help="seconds to wait for other CPU use to stop before "
                   "each job (timings); 0: don't wait")
    p.add_argument("--threads", type=int, help="OMP_NUM_THREADS for each job (default: torch's, 2 here)")
    p.add_argument("--job", help=argparse.SUPPRESS)
    p.add_argument("--evaljob", help=argparse.SUPPRESS)
    p.add_argument("--rescorejob", help=argparse.SUPPRESS)
    args = p.parse_args()
    for flag, fn in (("job", job), ("evaljob", eval_cost), ("rescorejob", rescore)):
        if getattr(args, flag):
            spec = json.loads(getattr(args, flag))
            record = fn(spec)
            Path(spec["out"], "record.json").write_text(json.dumps(record, indent=1))
            return
    QUIET.update(wait_s=args.wait_quiet, threads=args.threads)
    out = Path(args.out)
    work = Path(tempfile.mkdtemp(prefix="pricer-tiny-lab-")) if args.what in RUNS else None
    started = time.perf_counter()
    if args.what == "smoke":
        out = work / "tiny_lab.json"
        record = run_job({"name": "smoke", "values": {"summary_tokens": 64}, "max_steps": 3, "items": 8,
                          "profile": [1, 2]}, work)
        merge("runs", {"smoke": record}, out)
        merge("eval_cost", run_job({"name": "evalsmoke", "cuts": [48, 64], "items": 4, "repeats": 1}, work,
                                   "evaljob"), out)
        print(json.dumps(json.loads(out.read_text())["runs"]["smoke"]["phases"], indent=1))
    elif args.what == "phases":
        record = run_job({"name": "phases", "values": {}, "profile": [40, 44]}, work)
        merge("phases", {f"cut48_seed{args.seed}": record}, out)
    elif args.what == "calibrate":
        key = "calibration" if args.threads == 1 else "calibration_wall"  # CPU seconds of 1 thread / wall of 2
        merge(key, calibrate(work, args.repeats, steps=12), out)
    elif args.what in ("grid", "specs"):
        report = json.loads(out.read_text()) if out.exists() else {}
        relative = {k: v["relative_to_cut48"] for k, v in report.get(args.calibration, {}).items()}
        if not relative and args.what == "grid":
            sys.exit("run `calibrate` first: the grid sizes each configuration's steps from it")
        from pricer.config import parse_settings

        extra = parse_settings(args.set)
        specs = grid_specs(relative, args.seed, args.budget)
        if args.only:
            wanted = args.only.split(",")
            specs = [s for s in specs if s["name"] in wanted]
        for spec in specs:
            spec["values"].update(extra)
            budget = f"_x{args.budget:g}" if args.budget != 1 else ""
            spec["name"] = f"{args.prefix}{spec['name']}{budget}_seed{args.seed}"
            if args.what == "specs":
                print(spec)
                continue
            merge("runs", {spec["name"]: run_job(spec, work)}, out)
    elif args.what == "eval-cost":
        report = json.loads(out.read_text()) if out.exists() else {}
        adapters = {}
        for cut in CUTS:  # a fine-tuned adapter of each cut from the grid, if its folder is still there
            run = report.get("runs", {}).get(f"cut{cut}_seed{args.seed}")
            folder = run and run.get("adapter")
            if folder and Path(folder).exists():
                adapters[cut] = folder
        merge("eval_cost", run_job({"name": "eval_cost", "cuts": list(CUTS), "items": 32, "repeats": args.repeats,
                                    "adapters": adapters}, work, "evaljob"), out)
    elif args.what == "rescore":  # grid runs scored before `score` kept the median and the digit mass
        report = json.loads(out.read_text())
        for name, run in report["runs"].items():
            if "scores" in run and "median_error" not in run["scores"]["test"] and Path(run["adapter"]).exists():
                scores = run_job({"name": f"rescore_{name}", "values": run["values"], "adapter": run["adapter"]},
                                 work, "rescorejob")
                scores = {k: v for k, v in scores.items() if k in ("val", "test")}
                merge("runs", {name: {**run, "scores": scores}}, out)
    elif args.what == "reference":
        merge("reference", reference(), out)
    elif args.what == "table":
        print(table(json.loads(out.read_text())))
        return
    elif args.what == "lab-times":
        times = lab_times(Path(args.folder))
        print(json.dumps(times, indent=1))
        merge("lab_times", {Path(args.folder).name: {"notebooks": times, "load": load()}}, out)
    else:
        p.print_help()
        return
    print(f"done in {time.perf_counter() - started:.0f} s; {out}")


if __name__ == "__main__":
    main()
