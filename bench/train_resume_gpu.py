"""GPU check of resume in the same process: a run stopped by KeyboardInterrupt (a notebook cell's stop
button) and resumed from its last checkpoint ends where an uninterrupted run ends.

    python bench/train_resume_gpu.py          # GPU, carry [".whl"]; ~2 min on an H200
    python bench/train_resume_gpu.py --smoke  # CPU, tiny model, ~20 s: checks the script

A fresh run replays its compiled layers as CUDA graphs; one resumed in the same process compiles them
without graphs (`pricer.train.graphs_are_safe`). Lite LoRA on the benchmark's 3B-shaped random 4-bit model, 6 steps,
checkpoint every 3, stopped after step 4. The adapters are compared by their lora_B weights (zero at
the start, so all of it is what training wrote): the resumed run's gap to the uninterrupted one should
be no larger than that between two uninterrupted runs (bf16 on a GPU is not bit-reproducible).
Writes bench/results/train_resume_gpu.json.
"""

import gc
import json
import sys
import tempfile
from pathlib import Path
from statistics import mean

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_throughput as tt  # noqa: E402

from pricer.config import get_preset  # noqa: E402


def main(out: Path, smoke: bool = False) -> dict:
    import torch
    from transformers import TrainerCallback

    from pricer.memory import ModelShape
    from pricer.runs import last_checkpoint
    from pricer.train import Options, applied_setup, build_trainer, plan_setup

    shape = tt.SMOKE if smoke else tt.LLAMA_3B
    rows = tt.make_rows(32 * 6, shape["vocab_size"])
    tmp = Path(tempfile.mkdtemp())
    tt.save_random_model(shape, tmp / "model")
    preset = get_preset("lite", batch_size=32, warmup_fraction=0.01, save_steps=3)

    def trainer(run: str, resuming: bool = False):
        model = tt.load_4bit(tmp / "model", torch.float32 if smoke else torch.bfloat16)
        setup = plan_setup(ModelShape.from_config(model.config), preset, [len(r["input_ids"]) for r in rows],
                           Options(budget_gb=14.0))
        return build_trainer(model, tt.tiny_tokenizer(), rows, preset, setup, tmp / run, Options(max_steps=6),
                             resuming=resuming)

    def finish(t) -> tuple[dict, list[float]]:
        lora = {n: p.detach().float().cpu() for n, p in t.model.named_parameters() if p.requires_grad}
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return lora, [h["loss"] for h in t.state.log_history if "loss" in h]

    class StopAfterStep4(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 4:
                raise KeyboardInterrupt

    straight = trainer("straight")
    straight.train()
    straight_lora, straight_losses = finish(straight)
    again = trainer("again")  # the same run twice: how far two uninterrupted runs drift apart (bf16, GPU)
    again.train()
    again_lora, _ = finish(again)
    stopped = trainer("stopped")
    stopped.add_callback(StopAfterStep4())
    try:
        stopped.train()
    except KeyboardInterrupt:
        pass
    del stopped
    resumed = trainer("stopped", resuming=True)
    resumed.train(resume_from_checkpoint=last_checkpoint(tmp / "stopped"))
    resumed_lora, resumed_losses = finish(resumed)

    def gaps(lora):  # lora_B starts at zero, so it holds only what training wrote: the part that can disagree
        return [((straight_lora[n] - lora[n]).norm() / straight_lora[n].norm()).item()
                for n in straight_lora if "lora_B" in n]

    report = {"machine": tt.machine(), "steps": resumed.state.global_step,
              "resumed_compiled": applied_setup(resumed).compiled, "straight_losses": straight_losses,
              "resumed_losses": resumed_losses,
              "lora_B_relative_gap_resumed": {"max": max(gaps(resumed_lora)), "mean": mean(gaps(resumed_lora))},
              "lora_B_relative_gap_rerun": {"max": max(gaps(again_lora)), "mean": mean(gaps(again_lora))}}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    smoke = "--smoke" in sys.argv
    main(Path("/tmp/train_resume_smoke.json") if smoke else Path(__file__).parent / "results" / "train_resume_gpu.json",
         smoke)
