"""What a notebook shows while it works: progress, training logs and charts that read well once saved.

    from pricer.progress import loss_chart, training_progress
    trainer.remove_callback(NotebookProgressCallback)   # its live table leaves one row per log in a saved notebook
    trainer.add_callback(training_progress())          # one line per checkpoint; a live bar where widgets exist
    loss_chart(trainer.state.log_history).show()        # training and validation loss, one chart

A notebook executed by `python -m pricer lab` (PRICER_EXECUTED=1, no widgets) is read later, on
disk, on GitHub or nbviewer. `for_executed_notebooks` (called by `pricer.session.start`) makes it
read cleanly there: text progress bars print one line when they end instead of redrawing
themselves with carriage returns (nested ones, which move the cursor with `ESC[A`, print nothing),
library loading bars are off, and plotly charts carry a static SVG beside their JSON (pricer.charts),
so they show without a kernel and without plotly.js. In Colab nothing changes: widgets draw
the bars, Colab's renderer the charts.
"""

import os
import sys
import time

from pricer.config import flag


def known_warnings_off() -> None:
    """Silence warnings a student can do nothing about, each named with its source (pricer.session.start calls it)."""
    import warnings

    # tqdm.auto in a Jupyter kernel without ipywidgets (the lab runner's) draws text bars and says so in a
    # TqdmWarning; executed notebooks get plain one-line bars instead (plain_bars). pricer.evaluator does the same.
    warnings.filterwarnings("ignore", message="IProgress not found")
    # peft 0.21 and TRL 1.16 read `model.is_gradient_checkpointing`, which transformers 5.23 deprecates with a
    # FutureWarning at every read (three times per training); pricer never reads it.
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    # torch 2.13's own torch.utils.mkldnn still uses torch.jit.script_method, which torch 2.13 deprecates; text
    # generation on a CPU imports it.
    warnings.filterwarnings("ignore", message="`torch.jit.script_method` is deprecated", category=DeprecationWarning)
    # On a GPU, lab 4's decoder layers are compiled and replayed as CUDA graphs, one compiled function for all
    # layers (pricer.speed.compile_layers). Running layer 2 while layer 1's outputs still wait for the backward
    # pass is that design, and torch warns once that it leaves its fast path; bench/README.md's speed-up has it.
    warnings.filterwarnings("ignore", message="Unable to hit fast path of CUDAGraphs")
    # Not filtered here: bitsandbytes' "Failed to load CPU gemm_4bit_forward from kernels-community" on CPUs with
    # AVX512-BF16. It follows a Hub download tried at import; pricer.patches.bitsandbytes.without_hub_kernel
    # (start() installs it next) keeps that download, and so the line, from happening.


def executed() -> bool:
    """True in a notebook the lab runner executes (no one watching, read afterwards)."""
    return flag("PRICER_EXECUTED")


def for_executed_notebooks() -> None:
    """Plain one-line progress, no loading bars, charts that show without a kernel (call before loading models)."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # per-file download bars
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"  # "Tokenizing train dataset" and friends
    plain_bars()
    charts_without_kernel()


def plain_bars() -> None:
    """Text progress bars print one final line (to stdout) instead of redrawing themselves.

    tqdm's text bar rewrites its line with "\\r" every update and moves the cursor up ("ESC[A")
    for nested bars; a saved notebook keeps every one of those writes. Here its display is a no-op
    and closing prints `desc: n/total in mm:ss`; bars that clear themselves (leave=False) print
    nothing. Only in executed notebooks: tqdm's own class is changed, for every module that uses it."""
    from tqdm import std

    if getattr(std.tqdm, "pricer_plain", False):
        return
    original_close = std.tqdm.close

    def close(bar):
        if getattr(bar, "disable", True):
            return original_close(bar)
        leave = abs(getattr(bar, "pos", 0)) == 0 if bar.leave is None else bar.leave
        line = _final_line(bar) if leave and bar.n else None
        bar.sp = None  # tqdm then closes without writing (its "GUI mode" path)
        original_close(bar)
        if line:
            print(line, file=sys.stdout, flush=True)

    std.tqdm.display = lambda bar, msg=None, pos=None: True
    std.tqdm.close = close
    std.tqdm.pricer_plain = True


def _final_line(bar) -> str:
    from tqdm import std

    elapsed = time.time() - bar.start_t
    total = f"/{bar.total:,.0f}" if bar.total else ""
    per_second = bar.n / elapsed if elapsed > 0 else 0
    rate = (f", {per_second:,.1f} {bar.unit}/s" if per_second >= 1 else
            f", {1 / per_second:,.1f} s/{bar.unit}" if per_second else "")
    desc = (bar.desc or "done").rstrip(": ")
    postfix = f", {bar.postfix}" if getattr(bar, "postfix", None) else ""
    return f"{desc}: {bar.n:,.0f}{total} in {std.tqdm.format_interval(elapsed)}{rate}{postfix}"


def charts_without_kernel() -> None:
    """plotly's renderer for saved notebooks: its JSON (JupyterLab, VS Code draw it interactive) and a static
    SVG (GitHub, nbviewer, any viewer without scripts: pricer.charts). No plotly.js is embedded: 4.9 MB a
    notebook, and blank wherever scripts are stripped."""
    import plotly.io as pio

    from pricer.charts import register

    register()
    pio.renderers.default = "plotly_mimetype+pricer_svg"


def training_progress(live: bool | None = None):
    """A compact training log (a TrainerCallback): a line at each validation and at the end, or a live
    bar with the latest losses where widgets exist (`live`, default: not in an executed notebook)."""
    from transformers import TrainerCallback

    class TrainingProgress(TrainerCallback):
        def __init__(self):
            self.live = not executed() if live is None else live
            self.bar, self.start, self.first_step, self.last = None, time.perf_counter(), 0, {}

        def on_train_begin(self, args, state, control, **kwargs):
            self.start, self.first_step = time.perf_counter(), state.global_step
            if self.live:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="training", unit="step")
            elif state.global_step:
                print(f"resuming at step {state.global_step} of {state.max_steps}")

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            self.last.update({k: v for k, v in (logs or {}).items() if k in ("loss", "eval_loss")})
            if self.bar is not None and self.last:
                self.bar.set_postfix({k: f"{v:.3f}" for k, v in self.last.items()}, refresh=False)
            if not self.live and "eval_loss" in (logs or {}):
                print(self.line(state))

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()
            print(f"finished: {self.line(state)}")

        def line(self, state) -> str:
            seconds = time.perf_counter() - self.start
            done = state.global_step - self.first_step
            pace = f", {seconds / done:.2f} s/step" if done else ""
            losses = "".join(f", {k.replace('_', ' ')} {v:.3f}" for k, v in self.last.items())
            return f"step {state.global_step}/{state.max_steps}{losses} ({seconds:.0f} s{pace})"

    return TrainingProgress()


def loss_chart(log_history: list[dict], title: str = "Loss on the price tokens"):
    """Training loss per logged step and validation loss at each evaluation, on one chart."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for key, name in (("loss", "training"), ("eval_loss", "validation")):
        points = [(h["step"], h[key]) for h in log_history if key in h]
        if points:
            fig.add_trace(go.Scatter(x=[s for s, _ in points], y=[v for _, v in points], name=name,
                                     mode="lines+markers" if key == "eval_loss" else "lines"))
    fig.update_layout(title=title, xaxis_title="optimizer step", yaxis_title="cross-entropy (nats per token)",
                      template="plotly_white", height=380, width=900)
    return fig


def loss_verdict(eval_losses: list[float], rows: int) -> str:
    """What the validation loss did from the first check to the last, a change inside its noise called that.

    Only the average over `rows` validation rows is logged, not each row's loss, so the noise is
    estimated as if the rows' losses spread as widely as their mean (per-row cross-entropy often
    does): a 95% margin of 1.96 * loss / sqrt(rows). On 40 rows that is about 30% of the loss."""
    first, last = eval_losses[0], eval_losses[-1]
    margin = 1.96 * max(first, last) / max(rows, 1) ** 0.5
    said = (f"validation loss at each check: {', '.join(f'{v:.3f}' for v in eval_losses)} ({rows} rows); "
            f"first to last {last - first:+.3f}, noise about ±{margin:.3f}")
    if abs(last - first) <= margin:
        return (f"{said}: within noise, so not evidence either way. Whether the adapter learned prices or rows "
                "shows in lab 5, on test items it never saw.")
    if last < first:
        return f"{said}: it fell beyond noise, on rows the adapter never trained on: it learned prices, not rows."
    return f"{said}: it rose beyond noise while training loss fell: the adapter memorises rows; try fewer epochs."
