"""Training: resume, the 4-bit CPU trap, the checks that run before training, and the batch plan.

Runs on a tiny random Llama (2 layers, hidden 64) with the embedded tokenizer and short prompts, so
each training test takes seconds on 2 CPU cores.
"""

import json

import pytest

from pricer.config import get_preset
from pricer.errors import PricerError
from pricer.memory import Device, ModelShape, estimate_peak_gb, plan_batches

LITE_SHAPE = ModelShape(hidden=3072, layers=28, intermediate=8192, heads=24, kv_heads=8, vocab=128256)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def short_prompts(tmp_path_factory, catalog):
    """A prompts folder of short rows (title only): the real format, a quarter of the tokens."""
    from pricer.items import Item
    from pricer.prompts import make_completion, make_prompt

    def rows(items, do_round):
        return [Item(title=i.title, category=i.category, price=i.price, prompt=make_prompt(i.title),
                     completion=make_completion(i.price, do_round)) for i in items]

    train, val, test = catalog
    folder = tmp_path_factory.mktemp("prompts")
    Item.save_prompts(folder, rows(train[:48], True), rows(val[:4], True), rows(test[:4], False))
    return str(folder)


def tiny_preset(tiny_model, short_prompts, **overrides):
    settings = dict(base_model=tiny_model, prompts=short_prompts, train_rows=24, batch_size=4, save_steps=2,
                    lora_r=8, lora_alpha=16, learning_rate=1e-2, warmup_fraction=0.0)
    return get_preset("tiny", **{**settings, **overrides})


def adapter_weights(adapter_dir):
    from safetensors.torch import load_file

    return load_file(str(adapter_dir / "adapter_model.safetensors"))


def test_warmup_is_one_percent_of_steps_and_steps_ignore_the_micro_batch_split():
    from pricer.train import total_steps, warmup_steps

    steps = total_steps(rows=20_000, batch_size=32, epochs=1)
    assert steps == 625 and warmup_steps(steps, 0.01) == 7  # ceil(6.25)
    assert warmup_steps(total_steps(800_000, 256, 3), 0.01) == 94
    assert total_steps(20_000, 32, 1, max_steps=50) == 50


def test_precision_is_bf16_where_the_gpu_has_it_else_fp16_and_fp32_on_cpu(monkeypatch):
    import torch

    from pricer.models import compute_dtype, precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert (precision(), compute_dtype()) == ("fp32", torch.float32)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla T4")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # a T4
    assert (precision(), compute_dtype()) == ("fp16", torch.float16)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert (precision(), compute_dtype()) == ("bf16", torch.bfloat16)


def test_lora_weights_stay_fp32_unless_training_in_bf16():
    import torch

    from pricer.train import settle_trainable_dtype

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    model[0].requires_grad_(False)
    for precision, expected in (("fp16", torch.float32), ("fp32", torch.float32), ("bf16", torch.bfloat16)):
        model.to(torch.bfloat16)  # what TRL does to the LoRA weights of a quantized model
        settle_trainable_dtype(model, precision)
        assert model[1].weight.dtype == expected, precision
        assert model[0].weight.dtype == torch.bfloat16  # frozen weights are left alone


def test_rows_too_long_are_refused_before_training_naming_the_cap_and_the_longest(tokenizer):
    from pricer.train import check_lengths

    rows = [{"prompt": "What does this cost?\n\nPrice is $", "completion": "12.00"},
            {"prompt": "What does this cost?\n\n" + "A very long summary. " * 20 + "\n\nPrice is $",
             "completion": "99.00"}]
    lengths = check_lengths(tokenizer, rows, max_length=200)
    assert lengths[1] > lengths[0]
    with pytest.raises(PricerError, match=rf"1 of 2 .*max_length=40 .*row 1, has {lengths[1]}"):
        check_lengths(tokenizer, rows, max_length=40)


def test_missing_wandb_key_is_said_once_and_training_goes_on(monkeypatch, tmp_path, capsys):
    from pricer import train

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("PRICER_OFFLINE", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.setattr(train, "_SAID", set())
    assert [train.report_to(), train.report_to()] == ["none", "none"]
    assert capsys.readouterr().out.count("WANDB_API_KEY") == 1
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setattr(train, "_reachable", lambda host: True)
    assert train.report_to() == "wandb"


def test_a_wandb_key_while_offline_is_skipped_with_one_line_not_a_hang(monkeypatch, tmp_path, capsys):
    from pricer import train

    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setattr(train, "_SAID", set())
    monkeypatch.setenv("PRICER_OFFLINE", "1")
    assert train.report_to() == "none" and "W&B can't be reached" in capsys.readouterr().out
    monkeypatch.delenv("PRICER_OFFLINE")
    monkeypatch.setattr(train, "_reachable", lambda host: False)  # no network
    assert train.report_to() == "none"


def test_preflight_refuses_an_impossible_batch_and_names_the_one_that_fits():
    lite = get_preset("lite")
    lengths = [100 + i % 28 for i in range(1000)]
    with pytest.raises(PricerError, match=r"micro-batch 32 without .* Micro-batch (\d+) with (\d+) accumulation"):
        plan_batches(LITE_SHAPE, lite, lengths, Device(14.0), micro_batch=32, checkpointing=False)
    with pytest.raises(PricerError, match=r"'full' needs .* smaller preset \(tiny or lite\)"):
        plan_batches(LITE_SHAPE, get_preset("full"), lengths, Device(4.0))


def test_plan_keeps_the_effective_batch_and_checkpoints_only_when_it_must():
    lite, lengths = get_preset("lite"), [120] * 500
    roomy = plan_batches(LITE_SHAPE, lite, lengths, Device(70.0))
    t4 = plan_batches(LITE_SHAPE, lite, lengths, Device(14.0))
    small = plan_batches(LITE_SHAPE, lite, lengths, Device(6.0))
    assert (roomy.micro_batch, roomy.checkpointing) == (32, False)
    assert t4.micro_batch < 32 and not t4.checkpointing and t4.peak_gb <= 14.0
    assert small.checkpointing and small.peak_gb <= 6.0
    asked = plan_batches(LITE_SHAPE, lite, lengths, Device(14.0), micro_batch=4)
    assert (asked.micro_batch, asked.checkpointing) == (4, False)  # a chosen small micro-batch fits as it is
    for plan in (roomy, t4, small):
        assert plan.micro_batch * plan.accumulation == lite.batch_size
    assert estimate_peak_gb(LITE_SHAPE, lite, 32, 4096, False) > estimate_peak_gb(LITE_SHAPE, lite, 32, 4096, True)


def test_compiled_layers_fit_the_whole_lite_batch_on_a_t4_in_either_dtype():
    """Compiled layers keep 90% (bf16) or 80% (fp16) of the activations (measured on an H200 at 32 x 128, each the
    first training of its process: 11.08 GB for bf16, 11.12 for fp16), so a T4 runs lite's batch of 32 at once;
    the estimate stays on the safe side of both, and under a T4's 14 GB plan."""
    lite, lengths = get_preset("lite"), [128] * 500
    bf16, fp16 = (plan_batches(LITE_SHAPE, lite, lengths, Device(14.0, precision, padded=True, compiled=True))
                  for precision in ("bf16", "fp16"))
    eager = plan_batches(LITE_SHAPE, lite, lengths, Device(14.0, "fp16", padded=True))
    assert (bf16.micro_batch, fp16.micro_batch, eager.micro_batch) == (32, 32, 16)
    assert 11.08 <= bf16.peak_gb <= 14.0 and 11.12 <= fp16.peak_gb <= 14.0  # on the safe side of the GPU's


def test_length_grouped_batches_waste_less_on_padding(tiny_model, tmp_path):
    """Grouped batches hold rows of similar length, so padding to the longest costs little."""
    import random

    import torch
    from transformers import AutoModelForCausalLM

    from pricer.memory import BatchPlan
    from pricer.models import load_tokenizer
    from pricer.train import Options, Setup, build_trainer

    rng = random.Random(0)
    rows = [{"prompt": "Title: " + " ".join(["word"] * rng.randint(2, 60)) + "\n\nPrice is $",
             "completion": "12.00"} for _ in range(320)]
    preset = get_preset("tiny", base_model=tiny_model, batch_size=8, max_length=128)
    plan = BatchPlan(8, 1, False, 1.0, 10.0)

    def padding(grouped):
        model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
        trainer = build_trainer(model, load_tokenizer(tiny_model), rows, preset, Setup("fp32", plan, grouped),
                                tmp_path / str(grouped), Options(max_steps=1))
        masks = [batch["attention_mask"] for batch in trainer.get_train_dataloader()]
        return sum((1 - m).sum().item() for m in masks) / sum(m.numel() for m in masks)

    grouped, shuffled = padding(True), padding(False)
    assert grouped < 0.5 * shuffled, (grouped, shuffled)


def test_a_4bit_model_that_ran_inference_on_cpu_is_refused(tiny_model):
    """bitsandbytes repacks 4-bit weights on a CPU eval forward (where the CPU has avx512_bf16)."""
    import torch

    from pricer.models import load_model
    from pricer.train import check_fresh, keep_weights_packed_for_training

    for guarded in (False, True):
        model = load_model(tiny_model, "4bit").eval()
        for module in model.modules():
            if hasattr(module, "support_avx512bf16_for_cpu"):
                module.support_avx512bf16_for_cpu = True  # behave as on a CPU with avx512_bf16
        if guarded:
            keep_weights_packed_for_training(model)
        with torch.no_grad():
            model(input_ids=torch.tensor([[1, 2, 3]]))
        if guarded:
            check_fresh(model)  # the guard train() applies: no repacking, nothing to refuse
        else:
            with pytest.raises(PricerError, match="already run inference on CPU.*freshly loaded"):
                check_fresh(model)


def test_fresh_4bit_model_trains_with_nonzero_lora_grads_and_falling_loss(short_prompts, tmp_path):
    """The embedded SmolLM2 in 4-bit, as the tiny preset trains it: the model the CPU trap was measured on."""
    from transformers import TrainerCallback

    from pricer.train import train

    grads = []

    class LoraGrads(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            grads.append(sum(float(p.grad.norm()) for n, p in model.named_parameters()
                             if "lora_" in n and p.grad is not None))

    preset = get_preset("tiny", prompts=short_prompts, train_rows=8, batch_size=4, save_steps=100)
    result = train(preset, tmp_path, max_steps=5, callbacks=[LoraGrads()])
    assert json.loads((result.run_dir / "pricer_run.json").read_text())["setup"]["precision"] == "fp32"
    assert len(grads) == 5 and min(grads) > 0
    assert result.losses[-1] < 0.7 * result.losses[0], result.losses


def test_interrupted_run_resumes_to_the_same_adapter_and_a_finished_run_is_not_retrained(
        tiny_model, short_prompts, tmp_path, capsys):
    import torch
    from transformers import TrainerCallback

    from pricer.train import train

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise KeyboardInterrupt  # the Colab disconnect

    preset = tiny_preset(tiny_model, short_prompts)
    reference = train(preset, tmp_path / "straight", max_steps=5)
    with pytest.raises(KeyboardInterrupt):
        train(preset, tmp_path / "broken", max_steps=5, callbacks=[Crash()])
    resumed = train(preset, tmp_path / "broken", max_steps=5)  # the same command again
    assert resumed.resumed_from and resumed.resumed_from.endswith("checkpoint-2")
    assert len(list((tmp_path / "broken").iterdir())) == 1  # the same run folder, not a new one
    expected, got = adapter_weights(reference.run_dir), adapter_weights(resumed.run_dir)
    assert expected.keys() == got.keys()
    assert all(torch.allclose(expected[k], got[k], atol=1e-6) for k in expected)
    again = train(preset, tmp_path / "broken", max_steps=5)
    assert again.run_dir == resumed.run_dir and "already finished" in capsys.readouterr().out
    other = train(preset, tmp_path / "broken", max_steps=4)  # another step cap is another run
    assert other.run_dir != resumed.run_dir


def test_out_of_gpu_memory_names_a_micro_batch_that_fits():
    import torch

    from pricer.memory import BatchPlan
    from pricer.train import Setup, train_or_explain

    class Trainer:
        def train(self, resume_from_checkpoint=None):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    setup = Setup("fp16", BatchPlan(micro_batch=16, accumulation=2, checkpointing=False, peak_gb=12.3, budget_gb=14.2))
    expected = r"micro-batch 16 .*micro_batch=8 \(--micro-batch 8 --checkpointing\).*resumes"
    with pytest.raises(PricerError, match=expected):
        train_or_explain(Trainer(), None, setup)


def test_cuda_graphs_only_where_proven_and_a_graph_failure_says_how_to_go_on(monkeypatch):
    """One process, no checkpointing, not resuming where graphs already ran: else no graphs. A failure says: rerun."""
    from pricer import speed
    from pricer.memory import BatchPlan
    from pricer.train import Setup, train_or_explain, graphs_are_safe

    plan = BatchPlan(micro_batch=16, accumulation=2, checkpointing=False, peak_gb=8.7, budget_gb=14.2)
    setup = Setup("bf16", plan, grouped=False, compiled=True)
    monkeypatch.setattr(speed, "_graphed", False)  # a new process (a new Colab runtime)
    assert graphs_are_safe(setup, resuming=False)
    assert graphs_are_safe(setup, resuming=True)
    monkeypatch.setattr(speed, "_graphed", True)  # this process graphed the run it now resumes
    assert graphs_are_safe(setup, resuming=False)
    assert not graphs_are_safe(setup, resuming=True)
    assert not graphs_are_safe(Setup("bf16", BatchPlan(8, 4, True, 5.0, 14.2)), resuming=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert not graphs_are_safe(setup, resuming=False)

    class Trainer:
        def train(self, resume_from_checkpoint=None):
            raise RuntimeError("Error: accessing tensor output of CUDAGraphs that has been overwritten by a "
                               "subsequent run. Stack trace: ...")

    with pytest.raises(PricerError, match="CUDA graphs failed.*Rerun the training cell in this runtime.*without CUDA graphs.*--plain"):
        train_or_explain(Trainer(), None, setup)


def test_compiling_for_cuda_graphs_is_remembered_for_the_process(monkeypatch):
    """What graphs_are_safe asks: layers compiled without graphs leave no mark, with graphs they do."""
    import torch

    from pricer import speed

    monkeypatch.setattr(speed, "_graphed", False)
    monkeypatch.setattr(speed, "compiler_works", lambda device: True)
    modes = []
    monkeypatch.setattr(speed, "compiled", lambda forward, mode, dynamic: modes.append(mode) or forward)

    def model():
        wrapper = torch.nn.Module()
        wrapper.layers = torch.nn.ModuleList([torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)])
        return wrapper

    assert speed.compile_layers(model(), graphs=False) and not speed.graphs_used()
    assert speed.compile_layers(model(), graphs=True) and speed.graphs_used()
    assert modes == [None, None, "reduce-overhead", "reduce-overhead"]


def test_cli_trains_a_preset_with_overrides_and_a_chosen_micro_batch(tiny_model, short_prompts, tmp_path):
    from pricer.cli import main
    from pricer.runs import RUN_FILE, latest_adapter

    main(["train", "--preset", "tiny", "--max-steps", "2", "--output-dir", str(tmp_path), "--micro-batch", "2",
          "--set", f"base_model={tiny_model}", "--set", f"prompts={short_prompts}", "--set", "train_rows=8",
          "batch_size=4"])  # repeated --set flags all count, as do several values after one
    run_dir = latest_adapter(tmp_path, "tiny")
    record = json.loads((run_dir / RUN_FILE).read_text())
    assert record["steps"] == 2 and (run_dir / "adapter_model.safetensors").exists()
    assert record["identity"]["preset"]["train_rows"] == 8 and record["identity"]["preset"]["base_model"] == tiny_model
    assert (record["setup"]["plan"]["micro_batch"], record["setup"]["plan"]["accumulation"]) == (2, 2)
    assert run_dir.name.startswith("tiny-20")  # <preset>-<YYYY-MM-DD_HH.MM.SS>, as the course names runs


def test_cli_rehearses_a_t4_before_the_command_runs_when_asked(monkeypatch):
    """`PRICER_T4=1 pricer train` must train as a notebook kernel would under the switch (fp16, 15 GB)."""
    from pricer import cli, session

    order = []
    monkeypatch.setattr(session, "rehearse_t4", lambda: order.append("t4"))
    monkeypatch.setattr(cli, "train", lambda args: order.append("train"))
    monkeypatch.setenv("PRICER_T4", "1")
    cli.main(["train"])
    monkeypatch.setenv("PRICER_T4", "0")
    cli.main(["train"])
    assert order == ["t4", "train", "train"]


def test_cli_evaluates_the_newest_adapter_on_the_test_split(tiny_model, short_prompts, tmp_path, monkeypatch,
                                                             capsys):
    from pricer.cli import main
    from pricer.evaluator import Result

    monkeypatch.setenv("PRICER_RESULTS", str(tmp_path / "results"))
    settings = ["--set", f"base_model={tiny_model}", f"prompts={short_prompts}", "train_rows=8", "batch_size=4"]
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", "--output-dir", str(tmp_path), *settings])
    assert exit_.value.code == 2 and "no finished tiny full run" in capsys.readouterr().err
    main(["train", "--max-steps", "1", "--output-dir", str(tmp_path), *settings])
    with pytest.raises(SystemExit):  # a 1-step trial is not the preset's finished run: named, not scored
        main(["evaluate", "--output-dir", str(tmp_path), *settings])
    err = capsys.readouterr().err
    assert "passed over tiny-20" in err and "1-step trial (--max-steps 1 picks it)" in err
    main(["evaluate", "--output-dir", str(tmp_path), "--size", "3", "--max-steps", "1", *settings])
    assert "the newest of 1 finished tiny 1-step trial" in capsys.readouterr().out
    [saved] = (tmp_path / "results").glob("*.json")
    result = Result.load(saved)
    assert result.name == "Fine-tuned mean price (tiny)" and len(result.guesses) == 3
    assert tiny_model in result.meta["model"] and "tiny-20" in result.meta["model"]


def test_lora_count_matches_the_course_and_peft(tiny_model):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    from pricer.quantization import lora_parameter_count

    attention = ("q_proj", "k_proj", "v_proj", "o_proj")
    assert LITE_SHAPE.lora_params(32, attention) == 18_350_080  # the course's figure for Llama-3.2-3B lite
    targets = get_preset("full").target_modules
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                           LoraConfig(r=8, target_modules=list(targets), task_type="CAUSAL_LM"))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert lora_parameter_count(AutoConfig.from_pretrained(tiny_model), 8, targets) == trainable


def test_lora_count_follows_a_head_dim_of_its_own():
    """Families like Qwen3 and Gemma set head_dim apart from hidden / heads: q and o change size."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from pricer.quantization import lora_parameter_count

    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=32, vocab_size=256)
    targets = get_preset("full").target_modules
    model = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=4, target_modules=list(targets),
                                                                 task_type="CAUSAL_LM"))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert lora_parameter_count(config, 4, targets) == trainable


def fp32_trainer(tiny_model, rows, preset, folder, grouped: bool, compiled: bool, steps: int):
    """pricer's trainer for the tiny model in fp32 on CPU, the whole batch in one micro-batch, from seed 0."""
    import torch
    from transformers import AutoModelForCausalLM

    from pricer.memory import BatchPlan
    from pricer.models import load_tokenizer
    from pricer.train import Options, Setup, build_trainer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    setup = Setup("fp32", BatchPlan(preset.batch_size, 1, False, 1.0, 10.0), grouped=grouped, compiled=compiled)
    return build_trainer(model, load_tokenizer(tiny_model), rows, preset, setup, folder, Options(max_steps=steps))


def test_compiled_layers_train_with_the_same_loss_and_gradients(tiny_model, tmp_path):
    """The GPU path compiles every decoder layer (LoRA included); same math, padded to a multiple of 16.

    On a CPU the CUDA graphs are skipped, but the compiled layers and their backward are the same code."""
    import torch

    from pricer.speed import decoder_layers, is_compiled
    from pricer.train import applied_setup

    rows = [{"prompt": f"Title: a {'big ' * i}lamp\n\nPrice is $", "completion": f"{10 + i}.00"} for i in range(8)]
    preset = get_preset("tiny", base_model=tiny_model, batch_size=8, max_length=64, lora_dropout=0.0)

    def loss_and_grads(compiled):
        trainer = fp32_trainer(tiny_model, rows, preset, tmp_path / str(compiled), grouped=False, compiled=compiled,
                               steps=1)
        assert applied_setup(trainer).compiled == compiled == is_compiled(trainer.model)
        assert all("forward" in vars(layer) for layer in decoder_layers(trainer.model)) == compiled  # compiled forward
        batch = next(iter(trainer.get_train_dataloader()))
        loss = trainer.compute_loss(trainer.model, batch)
        loss.backward()
        grads = {n: p.grad for n, p in trainer.model.named_parameters() if p.requires_grad}
        return batch["input_ids"].shape[1], loss.item(), grads

    width, loss, grads = loss_and_grads(compiled=True)
    plain_width, plain_loss, plain_grads = loss_and_grads(compiled=False)
    assert width % 16 == 0 and width >= plain_width
    assert loss == pytest.approx(plain_loss, rel=1e-4)
    assert grads.keys() == plain_grads.keys() and any(g.abs().sum() > 0 for g in grads.values())
    for name, grad in grads.items():
        torch.testing.assert_close(grad, plain_grads[name], rtol=1e-3, atol=1e-6, msg=name)


def test_metrics_read_once_per_log_match_trls_own(tiny_model, short_prompts, tmp_path, monkeypatch):
    """Entropy, token accuracy and the token count are kept on the device and read at log time; the losses
    and every logged value are those of TRL's own compute_loss, which reads them after each forward."""
    import pricer.train
    from pricer.train import train

    def history(lazy):
        if not lazy:
            monkeypatch.setattr(pricer.train, "lazy_metrics_trainer", lambda cls: cls)
        result = train(tiny_preset(tiny_model, short_prompts, batch_size=8), tmp_path / str(lazy), max_steps=3,
                       micro_batch=4)
        state = json.loads((result.run_dir / "checkpoint-3" / "trainer_state.json").read_text())
        return [h for h in state["log_history"] if "loss" in h]

    lazy, eager = history(True), history(False)
    assert len(lazy) == len(eager) == 3
    for a, b in zip(lazy, eager):
        assert a["num_tokens"] == b["num_tokens"] > 0
        for key in ("loss", "grad_norm", "entropy", "mean_token_accuracy"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key


def test_bitsandbytes_optimizer_without_per_tensor_waits_updates_identically():
    """Only bitsandbytes' synchronize after each tensor is gone: its update kernels give bit-identical weights."""
    from dataclasses import replace

    import bitsandbytes as bnb
    import torch
    from transformers import TrainingArguments

    from pricer.speed import optimizer_without_syncs

    args = TrainingArguments(output_dir="unused", optim="paged_adamw_32bit", learning_rate=1e-2, weight_decay=0.001,
                             use_cpu=True, report_to="none")
    cls, kwargs = optimizer_without_syncs(args)
    assert issubclass(cls, bnb.optim.AdamW) and cls is not bnb.optim.AdamW and kwargs["is_paged"]

    def weights_after_steps(optimizer_class):
        torch.manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(shape)) for shape in [(32, 300), (400, 300), (7,)]]
        optimizer = optimizer_class(params, **kwargs)
        for _ in range(3):
            for p in params:
                p.grad = torch.randn_like(p)
            optimizer.step()
        return params

    for ours, theirs in zip(weights_after_steps(cls), weights_after_steps(bnb.optim.AdamW)):
        assert torch.equal(ours, theirs)
    assert optimizer_without_syncs(replace(args, optim="adamw_torch"))[0] is torch.optim.AdamW


def test_one_process_seeing_several_gpus_trains_on_one(monkeypatch, capsys):
    """Trainer would wrap the model in nn.DataParallel, which TRL refuses; one process gets one GPU."""
    from transformers import TrainingArguments

    from pricer.train import one_gpu_per_process

    def args_seeing(gpus):
        args = TrainingArguments(output_dir="unused", report_to="none")
        args._n_gpu = gpus  # as Trainer's device setup leaves it on a machine with `gpus` GPUs
        return args

    alone = args_seeing(2)
    one_gpu_per_process(alone)
    assert alone.n_gpu == 1 and "--gpus 2" in capsys.readouterr().out
    monkeypatch.setenv("WORLD_SIZE", "2")  # a data-parallel process already has its own GPU
    launched = args_seeing(2)
    one_gpu_per_process(launched)
    assert launched.n_gpu == 2


def test_compiled_layers_take_grouped_lengths_without_a_compile_each(tiny_model, tmp_path):
    """Grouped batches on compiled layers (no CUDA graphs: what a GPU run with grouped lengths compiles):
    lengths rounded up to 16 give a few shapes, and the compiler makes the length symbolic at the second one
    instead of compiling each anew. Same losses as the same grouped batches run eagerly (fp32 on CPU)."""
    from torch._dynamo.utils import counters

    rows = [{"prompt": f"Title: a {'big ' * (12 * (i % 6))}lamp\n\nPrice is $", "completion": f"{10 + i}.00"}
            for i in range(24)]  # six lengths ~12 tokens apart: five or six batch shapes once grouped
    preset = get_preset("tiny", base_model=tiny_model, batch_size=4, max_length=128, lora_dropout=0.0)

    def run(compiled):
        trainer = fp32_trainer(tiny_model, rows, preset, tmp_path / str(compiled), grouped=True, compiled=compiled,
                               steps=6)
        widths = {batch["input_ids"].shape[1] for batch in trainer.get_train_dataloader()}
        before = counters["stats"]["unique_graphs"]
        trainer.train()
        return widths, counters["stats"]["unique_graphs"] - before, [h["loss"] for h in trainer.state.log_history
                                                                     if "loss" in h]

    widths, graphs, losses = run(compiled=True)
    _, _, eager_losses = run(compiled=False)
    assert len(widths) >= 5 and all(w % 16 == 0 for w in widths), widths
    # per kind of input (layer 0's does not require grad, the others' do): the first length, then a symbolic one
    assert graphs <= 4, f"{graphs} compiled graphs for {len(widths)} lengths"
    assert losses == pytest.approx(eager_losses, rel=1e-4)
