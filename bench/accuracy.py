"""Accuracy: the smol preset's fine-tuned SmolLM2 against every traditional baseline, same rows, same items.

    python bench/accuracy.py                      # GPU: sweep on the validation split, then 2 seeds of the best
    python bench/accuracy.py --no-sweep           # the smol preset as it is, 2 seeds
    python bench/accuracy.py --smoke              # CPU, a few steps: checks the script runs (~3 min)

For each training seed the preset is trained with `pricer.train.train` (its own run folder), and
the adapter is scored on every test item with the batched expected price and median
(`PricePredictor`) and greedy generation (the course's `model_predict`, batched); every baseline
in `pricer.baselines` is fitted on the same training prompt rows and scored on the same items.
The sweep trains a few nearby configurations on seed 0 at once (a 135M model leaves an H200 mostly
idle, so they run as parallel processes) and picks the best by the expected price's error on the
validation split, never the test split. Writes bench/results/accuracy.json: `machine`, `preset`,
`seeds`: seed -> {`errors`: predictor -> dollars, `train_s`}, and `sweep` when one ran.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from versions import versions  # noqa: E402  (bench/, beside this script)

SEEDS = (0, 1)
DEFAULT_OUT = ROOT / "bench" / "results" / "accuracy.json"
# Nearby configurations for the sweep: (label, preset values). The smol preset itself is the first.
SWEEP = (
    ("preset", {}),
    ("lr 1e-3", {"learning_rate": 1e-3}),
    ("lr 3e-4, 4 epochs", {"learning_rate": 3e-4, "epochs": 4}),
    ("r 128", {"lora_r": 128, "lora_alpha": 256}),
    ("5 epochs", {"epochs": 5}),
    ("summary cut at 48", {"summary_tokens": 48, "max_length": 80}),
    ("summary cut at 110", {"summary_tokens": 110, "max_length": 144}),
)


def machine() -> dict:
    import torch

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {"gpu": gpu, "cpu_cores": os.cpu_count(), "platform": platform.platform(), **versions()}


def one(settings: dict, seed: int, out: Path, max_steps: int | None) -> dict:
    """Train one configuration; score it on validation (what the sweep chooses by) and on test (what is reported)."""
    from pricer.config import get_preset
    from pricer.evaluator import evaluate
    from pricer.items import load_prompts
    from pricer.models import load_finetuned, load_tokenizer
    from pricer.predict import GenerationPredictor, PricePredictor
    from pricer.sources import resolve_preset
    from pricer.train import train

    os.environ["PRICER_RESULTS"] = str(out / "results")  # each job's evaluation cache of its own
    preset = resolve_preset(get_preset("smol", **settings))
    start = time.perf_counter()
    result = train(preset, out / "outputs", seed=seed, max_steps=max_steps)
    train_s = time.perf_counter() - start
    prompts = load_prompts(preset.prompts, preset.summary_tokens, preset.base_model)
    model = load_finetuned(preset.base_model, str(result.run_dir), preset.quant)
    tokenizer = load_tokenizer(preset.base_model)
    expected = PricePredictor(model, tokenizer, stat="mean")
    predictors = {"fine_tuned_expected": expected,
                  "fine_tuned_median": PricePredictor(model, tokenizer, stat="median"),
                  "fine_tuned_greedy": GenerationPredictor(model, tokenizer)}
    limit = 20 if max_steps else None
    test, val = prompts["test"][:limit], prompts["val"][:limit]
    errors = {name: evaluate(predictor, test, size=len(test), save=False, title=name).metrics["error"]
              for name, predictor in predictors.items()}
    val_error = evaluate(expected, val, size=len(val), save=False, title="validation").metrics["error"]
    return {"settings": settings, "seed": seed, "val_error": val_error, "errors": errors,
            "train_s": round(train_s, 1), "steps": result.steps,
            "final_loss": result.losses[-1] if result.losses else None, "eval_losses": result.eval_losses}


def baselines(settings: dict, smoke: bool = False) -> dict:
    """Every traditional baseline fitted on the preset's training prompt rows, scored on all test rows."""
    from pricer.baselines import fit_all
    from pricer.config import get_preset
    from pricer.evaluator import evaluate
    from pricer.items import load_prompts
    from pricer.sources import resolve_preset

    preset = resolve_preset(get_preset("smol", **settings))
    prompts = load_prompts(preset.prompts, preset.summary_tokens, preset.base_model)
    train_rows = prompts["train"][:preset.train_rows] if preset.train_rows else prompts["train"]
    fitted = fit_all(train_rows[:300] if smoke else train_rows)
    test = prompts["test"][:20] if smoke else prompts["test"]
    return {name: evaluate(p, test, size=len(test), save=False, title=name).metrics["error"]
            for name, p in fitted.items()}


def start_jobs(jobs: list[tuple[dict, int]], work: Path, max_steps: int | None) -> list:
    """Start each (settings, seed) job as its own process on the one GPU (a 135M model leaves an H200 mostly idle)."""
    procs = []
    for i, (settings, seed) in enumerate(jobs):
        out = work / f"job{i}"
        out.mkdir(parents=True, exist_ok=True)
        spec = json.dumps({"settings": settings, "seed": seed, "out": str(out), "max_steps": max_steps})
        log = (out / "log.txt").open("w")
        procs.append((subprocess.Popen([sys.executable, __file__, "--job", spec], stdout=log, stderr=subprocess.STDOUT),
                      out))
    return procs


def finish_jobs(procs: list, deadline: float) -> list[dict | None]:
    """Each job's result, or None for one that failed or was still running at the deadline (then stopped)."""
    results = []
    for proc, out in procs:
        try:
            proc.wait(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            proc.kill()
            print(f"job in {out} still running at the deadline: stopped")
        if proc.wait() == 0 and (out / "result.json").exists():
            results.append(json.loads((out / "result.json").read_text()))
        else:
            print(f"job in {out} failed:\n{(out / 'log.txt').read_text()[-3000:]}")
            results.append(None)
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--no-sweep", action="store_true", help="only the smol preset as it is")
    p.add_argument("--smoke", action="store_true", help="CPU check: 6 steps, the preset only, 1 seed")
    p.add_argument("--deadline-s", type=float, default=None, help="stop jobs still running after this many seconds")
    p.add_argument("--job", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args()
    if args.job:
        job = json.loads(args.job)
        result = one(job["settings"], job["seed"], Path(job["out"]), job["max_steps"])
        Path(job["out"], "result.json").write_text(json.dumps(result))
        return
    from pricer.config import get_preset, settings_of

    started = time.time()
    deadline = started + args.deadline_s if args.deadline_s else float("inf")
    max_steps = 6 if args.smoke else None
    configs = SWEEP[:1] if (args.no_sweep or args.smoke) else SWEEP
    seeds = SEEDS[:1] if args.smoke else SEEDS
    work = Path(tempfile.mkdtemp(prefix="pricer-accuracy-"))
    report = {"machine": machine(), "date": time.strftime("%Y-%m-%d")}
    # Every configuration on every seed at once: the choice is made on validation, the chosen one's test
    # scores are reported, so no second round of training is needed.
    jobs = [(settings, seed) for _, settings in configs for seed in seeds]
    procs = start_jobs(jobs, work, max_steps)
    traditional = baselines({}, args.smoke)  # on the CPU while the jobs train; prompt cut of the preset itself
    results = finish_jobs(procs, deadline)
    sweep = []
    for label, settings in configs:
        mine = [r for (s, _), r in zip(jobs, results) if s is settings and r is not None]
        if mine:
            mean = round(sum(r["val_error"] for r in mine) / len(mine), 2)
            sweep.append({"label": label, "settings": settings, "val_error_mean": mean, "runs": mine})
    if not sweep:
        raise SystemExit("no job finished")
    best = min(sweep, key=lambda c: c["val_error_mean"])
    if len(configs) > 1:
        report["sweep"] = [{k: c[k] for k in ("label", "settings", "val_error_mean")} | {
            "test_expected": [r["errors"]["fine_tuned_expected"] for r in c["runs"]]} for c in sweep]
        print(f"sweep: best on validation is {best['label']!r} (${best['val_error_mean']:.2f})")
    if best["settings"].get("summary_tokens"):  # the baselines read the same prompt cut as the chosen model
        traditional = baselines(best["settings"], args.smoke)
    chosen = get_preset("smol", **best["settings"])
    report["preset"] = {"name": "smol", "changed": best["settings"], "settings": settings_of(chosen), **chosen.to_dict()}
    report["seeds"] = {str(r["seed"]): {"errors": {**r["errors"], **traditional}, "val_error": r["val_error"],
                                        "train_s": r["train_s"], "steps": r["steps"], "eval_losses": r["eval_losses"]}
                       for r in best["runs"]}
    best_name = min(traditional, key=traditional.get)
    report["best_traditional"] = {"name": best_name, "error": traditional[best_name]}
    report["lead_over_best_traditional"] = {
        seed: round(1 - s["errors"]["fine_tuned_expected"] / traditional[best_name], 3)
        for seed, s in report["seeds"].items()}
    report["wall_s"] = round(time.time() - started, 1)
    text = json.dumps(report, indent=1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    if args.out == DEFAULT_OUT:  # the copy the package ships for notebook 5's reference rows
        (ROOT / "pricer" / "reference_accuracy.json").write_text(text)
    print(json.dumps({k: report[k] for k in ("best_traditional", "lead_over_best_traditional", "wall_s")}, indent=1))
    for seed, s in report["seeds"].items():
        print(seed, {k: round(v, 2) for k, v in sorted(s["errors"].items(), key=lambda kv: kv[1])})


if __name__ == "__main__":
    main()
