"""Baselines: fit time and test error of every traditional baseline on the embedded catalog, 2 cores.

    python bench/baselines.py            # 4,000 train, 400 test, twice (~1-3 min on 2 cores)
    python bench/baselines.py --smoke    # 300 train, 50 test: checks the script runs (~20 s)

Each baseline is fitted on the catalog's training Items and scored by the Tester on the test
Items (all 400, and the first 200 as the course reports) and on the same products' prompt rows,
whose summaries the tiny preset cuts at 48 tokens (what the fine-tuned model reads); then fitted
on the training prompt rows and scored on the test prompt rows (the same view in both).
Also the noise floor: the error of the generator's own noiseless value on the same test items
(the part of a price no model can learn), and ridge / constant and floor / ridge ratios.
Fit time excludes importing scikit-learn and torch (done once before the clock starts). The
process is pinned to 2 cores, the CI machine's, where the host has more. The machine (platform,
CPU model, cores, load average: other work on the cores slows every fit) goes into
bench/results/baselines.json.
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from versions import cpu_name  # noqa: E402  (bench/, beside this script)


def pin_cores(cores: int) -> int:
    """Run on `cores` CPUs (before numpy/torch start their thread pools); returns how many we got."""
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > cores:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:cores])
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(cores)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def machine(cores: int) -> dict:
    """The machine in words and numbers, for the results file."""
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu_name(),
            "cores_used": cores, "cores_on_host": os.cpu_count(),
            "load_average_before": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def warm_imports() -> None:
    """Import what the fits import, so their times are fitting, not loading libraries."""
    import sklearn.ensemble  # noqa: F401
    import sklearn.feature_extraction.text  # noqa: F401
    import sklearn.linear_model  # noqa: F401

    import pricer.neural  # noqa: F401  (torch)


def run(items, prompts, names) -> list[dict]:
    """Fit and score each baseline on Items and on prompt rows; one row of figures each.

    `items` and `prompts` are (train, test) pairs of the same products in the two views."""
    from pricer.baselines import fit_baseline
    from pricer.evaluator import evaluate

    def error(predictor, data):
        return evaluate(predictor, data, size=len(data), save=False)

    rows = []
    for name in names:
        on_items = fit_baseline(name, items[0])
        start = time.perf_counter()
        result = error(on_items, items[1])
        seconds = time.perf_counter() - start
        on_prompts = fit_baseline(name, prompts[0])
        rows.append({"name": name, "fit_seconds": round(on_items.fit_seconds, 2),
                     "predict_seconds": round(seconds, 2), "error": round(result.metrics["error"], 2),
                     "error_first_200": round(sum(result.errors[:200]) / len(result.errors[:200]), 2),
                     "rmsle": round(result.metrics["rmsle"], 3), "r2": round(result.metrics["r2"], 1),
                     "hit_rate": round(result.metrics["hit_rate"], 1),
                     "error_items_on_prompt_rows": round(error(on_items, prompts[1]).metrics["error"], 2),
                     "fit_seconds_prompt_rows": round(on_prompts.fit_seconds, 2),
                     "error_prompt_rows": round(error(on_prompts, prompts[1]).metrics["error"], 2)})
    return rows


def noise_floor(test) -> dict:
    """Error of the catalog's noiseless value on these test Items (checked to be the same products)."""
    from pricer.catalog import split_listings

    truth = split_listings()[2][: len(test)]
    if [x.item.summary for x in truth] != [item.summary for item in test]:
        raise SystemExit("bench: the embedded test split is not the catalog's default one (seed 42, SIZES): "
                         "delete the cached catalog under PRICER_HOME and rerun")
    errors = [abs(x.item.price - x.value) for x in truth]
    return {"error": round(sum(errors) / len(errors), 2),
            "error_first_200": round(sum(errors[:200]) / len(errors[:200]), 2)}


def ratios(rows, floor) -> dict:
    """ridge_bow / constant_mean (the course's bag of words is at 0.72) and floor / ridge_bow."""
    by = {r["name"]: r for r in rows}
    if not {"ridge_bow", "constant_mean"} <= set(by):
        return {}
    ridge, constant = by["ridge_bow"], by["constant_mean"]
    return {"ridge_over_constant": round(ridge["error"] / constant["error"], 3),
            "ridge_over_constant_prompt_rows": round(ridge["error_prompt_rows"] / constant["error_prompt_rows"], 3),
            "floor_over_ridge": round(floor["error"] / ridge["error"], 3)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="300 train / 50 test items: does it run?")
    parser.add_argument("--cores", type=int, default=2, help="CPUs to pin to (CI has 2)")
    parser.add_argument("--names", nargs="*", help="only these baselines (default: all)")
    parser.add_argument("--out", type=Path, help="results file (default bench/results/baselines.json)")
    args = parser.parse_args(argv)
    cores = pin_cores(args.cores)
    host = machine(cores)

    from pricer.baselines import BASELINES
    from pricer.items import Item, load_prompts

    warm_imports()
    train, _, test = Item.from_hub("embedded")
    rows = load_prompts("embedded")  # the same products as the LLM sees them: summary cut
    items, prompts = (train, test), (rows["train"], rows["test"])
    if args.smoke:
        items, prompts = (train[:300], test[:50]), (rows["train"][:300], rows["test"][:50])
    start = time.perf_counter()
    rows = run(items, prompts, args.names or list(BASELINES))
    floor = noise_floor(items[1])
    host["load_average_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    from pricer.catalog import VERSION
    from pricer.config import PRESETS

    results = {"bench": "baselines", "mode": "smoke" if args.smoke else "catalog", "machine": host,
               "data": {"items": f"embedded catalog v{VERSION}", "train": len(items[0]), "test": len(items[1]),
                        "prompt_rows": f"embedded catalog, summary cut at the tiny preset's "
                                       f"{PRESETS['tiny'].summary_tokens} tokens"},
               "total_seconds": round(time.perf_counter() - start, 1), "noise_floor": floor,
               **ratios(rows, floor), "baselines": rows}
    name = "baselines_smoke.json" if args.smoke else "baselines.json"
    out = args.out or ROOT / "bench" / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:{width}}  fit {r['fit_seconds']:6.2f}s  Items ${r['error']:7.2f} "
              f"(first 200 ${r['error_first_200']:7.2f})  "
              f"Items->prompts ${r['error_items_on_prompt_rows']:7.2f}  "
              f"prompts ${r['error_prompt_rows']:7.2f}")
    print(f"noise floor ${floor['error']:.2f} (first 200 ${floor['error_first_200']:.2f}); "
          + ", ".join(f"{k} {v}" for k, v in ratios(rows, floor).items()))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
