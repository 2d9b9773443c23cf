"""Colab T4 rehearsal on a bigger GPU: the lite notebooks, each in a fresh runtime, Drive as a surviving folder.

    python bench/colab_t4.py --model /dev/shm/llama-3b              # the five lite notebooks, 4 killed and rerun
    python bench/colab_t4.py --model /dev/shm/llama-3b --stage 1    # or in two calls: up to 4 killed after a checkpoint,
    python bench/colab_t4.py --model /dev/shm/llama-3b --stage 2    #   then 4 again (it resumes) and 5
    python bench/colab_t4.py --preset smol --stage all              # the five smol notebooks the same way
    python bench/colab_t4.py --smoke                                # CPU, tiny preset: checks the script (20+ min on
                                                                    #   2 cores, the straight run sharing them)

`--model` is a Llama-3.2-3B-shaped folder with random weights and the real Llama 3.2 tokenizer
(speed, memory and tokenization of the real model, not its accuracy). The catalog is written at
the lite preset's size (20k training rows). Every kernel rehearses a T4 (PRICER_T4=1: GPU memory
capped at 15 GB, bf16 reported unavailable, so fp16 and the T4's memory plan). Notebook 4 is
killed (SIGKILL, kernel and all) once its first checkpoint is on "Drive", and run again in a new
runtime, where it must resume; its adapter is compared with a straight `pricer train` of the same
preset on the same prompts, run alongside stage 1's notebooks on the same GPU (so their wall
times are upper bounds). Stages share --work, so they can run in two device calls. Writes bench/results/colab_t4.json:
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


def start_straight_run(preset: str, settings: dict, work: Path, t4: bool):
    """`pricer train` of the same preset on the prompts notebook 2 will make (made here the same way), uninterrupted."""
    from pricer.config import get_preset
    from pricer.sources import resolve_preset, write_prompts

    resolved = resolve_preset(get_preset(preset, **settings))
    items = {s: [json.loads(line) for line in (Path(resolved.items) / f"{s}.jsonl").open()]
             for s in ("train", "validation", "test")}
    write_prompts(work / "prompts", items, resolved.summary_tokens, resolved.base_model)
    sets = [f"{k}={v}" for k, v in settings.items()] + [f"prompts={work / 'prompts'}"]
    env = {**os.environ, **({"PRICER_T4": "1"} if t4 else {})}
    log = (work / "straight.log").open("w")
    command = [sys.executable, "-m", "pricer", "train", "--preset", preset, "--output-dir", str(work / "straight"),
               "--set", *sets]
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT), time.perf_counter(), work


def finish_straight_run(straight) -> float:
    process, started, work = straight
    if process.wait() != 0:
        raise RuntimeError(f"the straight run failed:\n{(work / 'straight.log').read_text()[-3000:]}")
    return round(time.perf_counter() - started, 1)


def compare_adapters(a: Path, b: Path) -> dict:
    """How far two adapters are apart: the largest relative difference of any LoRA tensor."""
    import torch
    from safetensors.torch import load_file

    x, y = load_file(str(a / "adapter_model.safetensors")), load_file(str(b / "adapter_model.safetensors"))
    worst = max(float((x[k].float() - y[k].float()).norm() / y[k].float().norm().clamp(min=1e-12)) for k in x)
    return {"equal": all(torch.equal(x[k], y[k]) for k in x), "max_relative_difference": round(worst, 5),
            "keys_match": x.keys() == y.keys()}


def compare_with_straight_run(drive: Path, work: Path) -> dict:
    """Notebook 4's adapter (killed, then resumed in a new runtime) against the uninterrupted `pricer train`."""
    from pricer.runs import RUN_FILE, read_record

    lab_prompts = drive / "pricer-lab" / "data" / "prompts"
    same_prompts = all((lab_prompts / f).read_bytes() == (work / "prompts" / f).read_bytes()
                       for f in ("train.jsonl", "val.jsonl"))
    [resumed] = [p.parent for p in (drive / "pricer-lab" / "outputs").glob(f"*/{RUN_FILE}")]
    [reference] = [p.parent for p in (work / "straight").glob(f"*/{RUN_FILE}")]
    steps = {name: read_record(run).get("steps") for name, run in (("resumed", resumed), ("straight", reference))}
    closeness = compare_adapters(resumed, reference)
    return {"notebook_2_prompts_equal_the_straight_runs": same_prompts, "steps": steps,
            "rows_trained": len((lab_prompts / "train.jsonl").read_text().splitlines()),
            "resumed_adapter_equal": closeness["equal"], "resumed_adapter": closeness}


def main() -> None:
    from pricer.lab import NOTEBOOKS
    from pricer.rehearsal import rehearse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="lite")
    p.add_argument("--model", help="a Llama-3.2-3B-shaped model folder (lite)")
    p.add_argument("--stage", default="all", choices=("1", "2", "all"))
    p.add_argument("--work", default="/tmp/pricer-colab-t4")
    p.add_argument("--smoke", action="store_true", help="CPU: the tiny preset, no T4 switch")
    p.add_argument("--no-straight", action="store_true", help="skip the uninterrupted run to compare with")
    p.add_argument("--skip", default="", help="notebooks not to rerun, e.g. 1 (their figures stay as --out has them)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "colab_t4.json"))
    args = p.parse_args()
    if args.smoke:
        args.preset = "tiny"
    os.environ["PRICER_OFFLINE"] = "1"  # the GPU box has no network; nothing here needs one
    work = Path(args.work) / args.preset
    drive, runtimes = work / "drive", work / "runtimes"
    settings = settings_for(args, work)
    t4 = not args.smoke
    skipped = {n for n in NOTEBOOKS if n.split("_")[0] in args.skip.split(",")}
    first, second = ([n for n in part if n not in skipped]  # 4 is killed at the end of stage 1, run again in stage 2
                     for part in (NOTEBOOKS[:4], NOTEBOOKS[3:]))
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    entry = results.setdefault(args.preset, {"notebooks": {}})
    entry["machine"] = machine()
    entry["date"] = time.strftime("%Y-%m-%d")
    straight = None
    if args.stage in ("1", "all") and not args.no_straight:  # on the same GPU, alongside the first notebooks
        straight = start_straight_run(args.preset, settings, work, t4)
    for stage, notebooks in (("1", first), ("2", second)):
        if args.stage not in (stage, "all"):
            continue
        report = rehearse(args.preset, drive, runtimes, settings, t4=t4, kill_after_checkpoint=stage == "1",
                          notebooks=notebooks)
        entry["notebooks"].update(report["notebooks"])
        entry.update({k: v for k, v in report.items() if k != "notebooks"})
    if straight is not None:
        entry["straight_train_s"] = finish_straight_run(straight)
        entry["straight_run_alongside"] = True  # its GPU time overlapped the notebooks': their wall_s are upper bounds
    if args.stage in ("2", "all") and (work / "straight").exists():  # notebook 4's adapter is finished: compare
        entry.update(compare_with_straight_run(drive, work))
    entry["all_under_15_gb"] = all(n.get("peak_reserved_gb", 0) <= 15.0 for n in entry["notebooks"].values())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(json.dumps(entry, indent=1))


if __name__ == "__main__":
    main()
