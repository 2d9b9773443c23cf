"""Colab T4 rehearsal on a bigger GPU: the lite notebooks, each in a fresh runtime, Drive as a surviving folder.

    python bench/colab_t4.py --model /dev/shm/llama-3b --stage 1    # notebooks 1-3, notebook 4 killed after a checkpoint
    python bench/colab_t4.py --model /dev/shm/llama-3b --stage 2    # notebook 4 again (resumes), 5, and a straight run
    python bench/colab_t4.py --preset smol --stage all              # the five smol notebooks the same way
    python bench/colab_t4.py --smoke                                # CPU, tiny preset: checks the script (~10 min)

`--model` is a Llama-3.2-3B-shaped folder with random weights and the real Llama 3.2 tokenizer
(speed, memory and tokenization of the real model, not its accuracy). The catalog is written at
the lite preset's size (20k training rows). Every kernel rehearses a T4 (PRICER_T4=1: GPU memory
capped at 15 GB, bf16 reported unavailable, so fp16 and the T4's memory plan). Notebook 4 is
killed (SIGKILL, kernel and all) once its first checkpoint is on "Drive", and run again in a new
runtime, where it must resume; its adapter is compared with a straight `pricer train` of the same
preset. Stages share --work, so they can run in two device calls. Writes bench/results/colab_t4.json:
`machine`, `notebooks`: name -> {wall_s, peak_allocated_gb, peak_reserved_gb, error_cells},
`resumed_from_step`, `resumed_adapter_equal` (and how close), per preset.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

LITE_SIZES = {"train": 20_000, "val": 1_000, "test": 1_000}


def machine() -> dict:
    import torch


    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    return {"gpu": gpu, "torch": torch.__version__, "rehearsed": "T4: 15 GB cap, no bf16 (PRICER_T4=1)"}


def settings_for(args, work: Path) -> dict:
    """The preset's values pointing at this machine's model and catalog."""
    if args.preset != "lite":
        return {}
    catalog = work / "catalog"
    if not (catalog / "items" / "test.jsonl").exists():
        from pricer.sources import write_catalog

        sizes = {"train": 600, "val": 60, "test": 60} if args.smoke else LITE_SIZES
        write_catalog(catalog, sizes=sizes)
    return {"base_model": args.model, "items": str(catalog / "items")}


def compare_adapters(a: Path, b: Path) -> dict:
    """How far two adapters are apart: the largest relative difference of any LoRA tensor."""
    import torch
    from safetensors.torch import load_file

    x, y = load_file(str(a / "adapter_model.safetensors")), load_file(str(b / "adapter_model.safetensors"))
    worst = max(float((x[k].float() - y[k].float()).norm() / y[k].float().norm().clamp(min=1e-12)) for k in x)
    return {"equal": all(torch.equal(x[k], y[k]) for k in x), "max_relative_difference": round(worst, 5),
            "keys_match": x.keys() == y.keys()}


def main() -> None:
    from pricer.lab import NOTEBOOKS
    from pricer.rehearsal import rehearse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="lite")
    p.add_argument("--model", help="a Llama-3.2-3B-shaped model folder (lite)")
    p.add_argument("--stage", default="all", choices=("1", "2", "all"))
    p.add_argument("--work", default="/tmp/pricer-colab-t4")
    p.add_argument("--smoke", action="store_true", help="CPU: the tiny preset, no T4 switch")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "colab_t4.json"))
    args = p.parse_args()
    if args.smoke:
        args.preset = "tiny"
    os.environ["PRICER_OFFLINE"] = "1"  # the GPU box has no network; nothing here needs one
    work = Path(args.work) / args.preset
    drive, runtimes = work / "drive", work / "runtimes"
    settings = settings_for(args, work)
    t4 = not args.smoke
    first, second = NOTEBOOKS[:4], NOTEBOOKS[3:]  # 4 is killed at the end of stage 1, run again in stage 2
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    entry = results.setdefault(args.preset, {"notebooks": {}})
    entry["machine"] = machine()
    entry["date"] = time.strftime("%Y-%m-%d")
    for stage, notebooks in (("1", first), ("2", second)):
        if args.stage not in (stage, "all"):
            continue
        report = rehearse(args.preset, drive, runtimes, settings, t4=t4, kill_after_checkpoint=stage == "1",
                          notebooks=notebooks)
        entry["notebooks"].update(report["notebooks"])
        entry.update({k: v for k, v in report.items() if k != "notebooks"})
    if args.stage in ("2", "all"):
        [resumed] = [p.parent for p in (drive / "pricer-lab" / "outputs").glob("*/pricer_run.json")]
        straight = work / "straight"
        start = time.perf_counter()
        sets = [f"{k}={v}" for k, v in settings.items()] + [f"prompts={drive / 'pricer-lab' / 'data' / 'prompts'}"]
        env = {**os.environ, **({"PRICER_T4": "1"} if t4 else {})}
        subprocess.run([sys.executable, "-m", "pricer", "train", "--preset", args.preset, "--output-dir", str(straight),
                        "--set", *sets], check=True, env=env)
        [reference] = [p.parent for p in straight.glob("*/pricer_run.json")]
        entry["straight_train_s"] = round(time.perf_counter() - start, 1)
        closeness = compare_adapters(resumed, reference)
        entry["resumed_adapter_equal"] = closeness["equal"]
        entry["resumed_adapter"] = closeness
    entry["all_under_15_gb"] = all(n.get("peak_reserved_gb", 0) <= 15.0 for n in entry["notebooks"].values())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(json.dumps(entry, indent=1))


if __name__ == "__main__":
    main()
