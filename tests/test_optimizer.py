"""The optimizer: torch's fused AdamW where bitsandbytes' 32-bit AdamW would page nothing, with its math.

bitsandbytes (0.50) steps its 32-bit optimizers on CPU, so both update rules run here on the same
weights and gradients; paging itself needs a GPU, so its threshold is read, and lowered, by name.
"""

import pytest

from pricer.config import get_preset

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def args_for(optim: str, **overrides):
    from transformers import TrainingArguments

    settings = dict(output_dir="unused", optim=optim, learning_rate=3e-3, adam_beta1=0.8, adam_beta2=0.95,
                    adam_epsilon=1e-7, weight_decay=0.05, use_cpu=True, report_to="none")
    return TrainingArguments(**{**settings, **overrides})


def lora_params(r: int = 4) -> list:
    """The trainable tensors of a tiny Llama with LoRA on q, k, v, o: all far under bitsandbytes' threshold."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, vocab_size=97))
    lora = LoraConfig(r=r, lora_alpha=2 * r, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    return [p for p in get_peft_model(model, lora).parameters() if p.requires_grad]


def test_unpaged_bitsandbytes_adamw_becomes_torch_adamw_with_the_arguments_hyperparameters(monkeypatch):
    """Only bitsandbytes' 32-bit AdamW is replaced: other optimizers, and another bitsandbytes, run as configured."""
    import bitsandbytes as bnb
    import torch
    from transformers import Trainer

    from pricer.patches import fence
    from pricer.speed import optimizer_for_lora

    params = lora_params()
    cls, kwargs = optimizer_for_lora(args_for("paged_adamw_32bit"), params)
    assert issubclass(cls, torch.optim.AdamW) and kwargs.get("fused") is True  # CPU, fp32: torch has a fused kernel
    defaults = cls(params, **kwargs).defaults
    assert (defaults["lr"], defaults["betas"], defaults["eps"], defaults["weight_decay"]) == (3e-3, (0.8, 0.95), 1e-7, 0.05)
    half = [p.detach().to(torch.bfloat16).requires_grad_() for p in params]
    assert optimizer_for_lora(args_for("paged_adamw_32bit"), half)[1].get("foreach") is True  # not fp32: foreach
    for optim in ("adamw_torch", "paged_adamw_8bit", "paged_lion_32bit"):
        args = args_for(optim)
        cls, kwargs = optimizer_for_lora(args, params)
        theirs, their_kwargs = Trainer.get_optimizer_cls_and_kwargs(args)
        assert issubclass(cls, theirs) and kwargs == their_kwargs, optim
    monkeypatch.setattr(fence, "installed", lambda library: "9.9.9")  # a bitsandbytes whose threshold we haven't read
    monkeypatch.setattr(fence, "_verdicts", {})
    assert optimizer_for_lora(args_for("paged_adamw_32bit"), params)[0] is bnb.optim.AdamW


def test_a_tensor_bitsandbytes_would_page_keeps_its_paged_optimizer(monkeypatch):
    import bitsandbytes as bnb

    from pricer.patches import bitsandbytes as ours
    from pricer.speed import optimizer_for_lora

    params = lora_params()
    largest = max(p.numel() for p in params)
    monkeypatch.setattr(ours, "PAGING_THRESHOLD", largest + 1)
    assert not issubclass(optimizer_for_lora(args_for("paged_adamw_32bit"), params)[0], bnb.optim.AdamW)
    monkeypatch.setattr(ours, "PAGING_THRESHOLD", largest)  # the largest tensor would now be paged
    cls, kwargs = optimizer_for_lora(args_for("paged_adamw_32bit"), params)
    assert issubclass(cls, bnb.optim.AdamW) and kwargs["is_paged"] and kwargs["optim_bits"] == 32
    assert cls.step is not bnb.optim.AdamW.step  # still without a wait after every tensor


def test_the_names_read_as_bitsandbytes_32bit_adamw_are_transformers_own():
    """torch_adamw_replaces reads `optim` by name (transformers' mapping wants a TrainingArguments, and making
    one resets accelerate mid-training): the names it takes are every one transformers maps to that optimizer."""
    import bitsandbytes as bnb
    from transformers import Trainer
    from transformers.training_args import OptimizerNames

    from pricer.speed import BITSANDBYTES_ADAMW_32BIT

    mapped = set()
    for name in OptimizerNames:
        try:
            cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args_for(name.value))
        except (ImportError, ValueError, TypeError):  # needs a package or a model this test doesn't have
            continue
        if cls is bnb.optim.AdamW and kwargs.get("optim_bits") == 32:
            mapped.add(name.value)
            assert kwargs["is_paged"] == ("paged" in name.value)
    assert mapped == set(BITSANDBYTES_ADAMW_32BIT)


def test_torch_adamw_takes_the_same_steps_as_bitsandbytes_32bit_adamw():
    """Same fp32 weights, gradients and schedule, two parameter groups (decay and none), as Trainer makes them."""
    import bitsandbytes as bnb
    import torch
    from transformers import Trainer

    from pricer.speed import optimizer_for_lora

    args = args_for("paged_adamw_32bit")
    _, bnb_kwargs = Trainer.get_optimizer_cls_and_kwargs(args)

    def after_steps(make):
        torch.manual_seed(0)
        params = [torch.nn.Parameter(0.1 * torch.randn(shape)) for shape in [(8, 96), (96, 8), (8, 32), (32,)]]
        optimizer = make([{"params": params[:3], "weight_decay": args.weight_decay},
                          {"params": params[3:], "weight_decay": 0.0}], params)
        for step in range(6):
            for group in optimizer.param_groups:
                group["lr"] = args.learning_rate * (step + 1) / 6  # a warmup, as the scheduler sets it
            for p in params:
                p.grad = torch.randn_like(p)
            optimizer.step()
        return params

    def ours(groups, params):
        cls, kwargs = optimizer_for_lora(args, params)
        assert issubclass(cls, torch.optim.AdamW)
        return cls(groups, **kwargs)

    theirs = after_steps(lambda groups, params: bnb.optim.AdamW(groups, **bnb_kwargs))
    for a, b in zip(after_steps(ours), theirs):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert max(float((p - q).detach().abs().max()) for p, q in zip(after_steps(lambda g, p: torch.optim.SGD(g, lr=0.1)),
                                                          theirs)) > 1e-3  # a different optimizer is told apart


def test_in_fp16_the_grad_scaler_steps_without_reading_found_inf(monkeypatch):
    """GradScaler reads found_inf with .item() (a wait for the GPU) before stepping an optimizer that can't skip
    a step itself; torch's fused AdamW gets it as a tensor and skips an overflowing step on the device."""
    import torch

    from pricer.speed import optimizer_for_lora

    params = lora_params()
    cls, kwargs = optimizer_for_lora(args_for("paged_adamw_32bit"), params)
    optimizer, scaler = cls(params, **kwargs), torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
    for overflow in (False, True):
        scaler.scale(sum((p * (float("inf") if overflow else 1.0)).sum() for p in params)).backward()
        scaler.unscale_(optimizer)  # as Trainer's gradient clipping does first
        before = [p.detach().clone() for p in params]
        with monkeypatch.context() as scope:
            scope.setattr(torch.Tensor, "item", lambda self: pytest.fail("GradScaler waited for found_inf"))
            scaler.step(optimizer)
        scaler.update()
        unchanged = all(torch.equal(b, p) for b, p in zip(before, params))
        assert unchanged == overflow and int(optimizer.state[params[0]]["step"]) == 1
        optimizer.zero_grad()


@pytest.fixture(scope="module")
def short_rows():
    return [{"prompt": f"Title: a {'big ' * (i % 5)}lamp\n\nPrice is $", "completion": f"{10 + i}.00"} for i in range(8)]


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_lora_weights_stay_as_trl_leaves_them_in_bf16_and_train_fp32_under_torch_adamw(precision, tiny_model,
                                                                                      short_rows, tmp_path,
                                                                                      monkeypatch):
    """TRL leaves a quantized model's LoRA weights in bf16. In a bf16 run they stay so, under bitsandbytes'
    AdamW (fp32 LoRA weights cost memory there and bought no speed); where they are fp32 anyway, torch's
    fused AdamW trains them with fp32 state (on CPU here; the course's paged AdamW is kept as on a GPU)."""
    import bitsandbytes as bnb
    import torch

    import pricer.train
    from pricer.memory import BatchPlan
    from pricer.models import load_model, load_tokenizer
    from pricer.train import Options, Setup, build_trainer

    monkeypatch.setattr(pricer.train, "optimizer_for", lambda preset: preset.optimizer)  # paged AdamW, as on a GPU
    preset = get_preset("tiny", base_model=tiny_model, batch_size=4, max_length=64, lora_r=8, lora_alpha=16,
                        optimizer="paged_adamw_32bit", learning_rate=1e-2)
    setup = Setup(precision, BatchPlan(4, 1, False, 1.0, 10.0), grouped=False)
    trainer = build_trainer(load_model(tiny_model, "4bit"), load_tokenizer(tiny_model), short_rows, preset, setup,
                            tmp_path, Options(max_steps=2))
    lora = {n: p for n, p in trainer.model.named_parameters() if p.requires_grad}
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    assert lora and {p.dtype for p in lora.values()} == {dtype}
    before = {n: p.detach().clone() for n, p in lora.items()}
    trainer.train()
    optimizer = trainer.optimizer.optimizer  # accelerate's wrapper around the one Trainer created, lazily
    if precision == "bf16":
        assert isinstance(optimizer, bnb.optim.AdamW) and not isinstance(optimizer, torch.optim.AdamW)
    else:
        assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["fused"]
        assert [g["weight_decay"] for g in optimizer.param_groups if g["params"]] == [preset.weight_decay]
        assert {optimizer.state[p]["exp_avg"].dtype for p in lora.values()} == {torch.float32}
    assert {p.dtype for p in lora.values()} == {dtype}
    assert all(not torch.equal(before[n], p) for n, p in lora.items() if "lora_B" in n)
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in trainer.state.log_history if "loss" in h)


def test_the_preflight_counts_fp32_lora_weights_wherever_they_train(monkeypatch):
    """LoRA weights in fp32 cost 16 bytes a parameter (weight, gradient, two moments): in fp16, and in bf16 were
    they made fp32. plan_setup foresees bf16 LoRA weights in a bf16 run, where bitsandbytes' AdamW stays (for lite
    and full alike)."""
    import torch

    import pricer.models
    from pricer.memory import FIXED_GB, GB, HEADROOM, Device, ModelShape, estimate_peak_gb, weight_bytes
    from pricer.train import Options, plan_setup

    lite, shape = get_preset("lite"), ModelShape(hidden=3072, layers=28, intermediate=8192, heads=24, kv_heads=8,
                                                 vocab=128256)
    lora = shape.lora_params(lite.lora_r, lite.target_modules)

    def peak(precision, tokens=0, **device):
        return estimate_peak_gb(shape, lite, micro_batch=0, tokens=tokens, checkpointing=False,
                                device=Device(precision=precision, **device))

    for precision in ("fp16", "bf16"):  # no tokens: weights, LoRA weights and their optimizer only
        fp32_lora = peak(precision, lora_fp32=True if precision == "bf16" else None)
        expected = (weight_bytes(shape, lite.quant, 2) + 16 * lora) * HEADROOM / GB
        assert fp32_lora == pytest.approx(expected + FIXED_GB, rel=1e-9), precision
    assert peak("bf16", 4096, lora_fp32=True) == peak("fp16", 4096) > peak("bf16", 4096)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a bf16 GPU
    monkeypatch.setattr(pricer.models, "precision", lambda: "bf16")
    lengths = [120] * 64
    for preset in (lite, get_preset("full")):
        planned = plan_setup(shape, preset, lengths, Options(budget_gb=80.0, micro_batch=8)).plan.peak_gb

        def estimate(lora_fp32):
            device = Device(80.0, "bf16", padded=True, compiled=True, lora_fp32=lora_fp32)
            return round(estimate_peak_gb(shape, preset, 8, 8 * 120, False, device), 2)

        assert planned == estimate(None) < estimate(True), preset.name


def test_a_run_begun_with_bitsandbytes_adamw_resumes_under_torch_adamw():
    """A checkpoint written by bitsandbytes' 32-bit AdamW (a run begun before pricer chose torch's) loads into
    torch's AdamW: the next steps are the ones bitsandbytes would have taken, and the kernel stays fused."""
    import copy

    import bitsandbytes as bnb
    import torch
    from transformers import Trainer

    from pricer.speed import optimizer_for_lora

    args = args_for("paged_adamw_32bit")
    _, bnb_kwargs = Trainer.get_optimizer_cls_and_kwargs(args)
    torch.manual_seed(0)
    start = [0.1 * torch.randn(shape) for shape in [(8, 96), (96, 8), (32,)]]
    grads = [[torch.randn_like(p) for p in start] for _ in range(5)]

    def run(optimizer, params, steps):
        for step in steps:
            for p, g in zip(params, grads[step]):
                p.grad = g.clone()
            optimizer.step()

    def groups(params):
        return [{"params": params[:2], "weight_decay": args.weight_decay}, {"params": params[2:], "weight_decay": 0.0}]

    bnb_params = [torch.nn.Parameter(p.clone()) for p in start]
    bnb_opt = bnb.optim.AdamW(groups(bnb_params), **bnb_kwargs)
    run(bnb_opt, bnb_params, range(3))
    checkpoint = copy.deepcopy(bnb_opt.state_dict())  # as saved to disk: its tensors go on changing in place
    resumed = [torch.nn.Parameter(p.detach().clone()) for p in bnb_params]
    run(bnb_opt, bnb_params, range(3, 5))  # bitsandbytes going on

    cls, kwargs = optimizer_for_lora(args, resumed)
    ours = cls(groups(resumed), **kwargs)
    ours.load_state_dict(checkpoint)
    assert ours.param_groups[0]["fused"] and "optim_bits" not in ours.param_groups[0]
    run(ours, resumed, range(3, 5))
    for a, b in zip(resumed, bnb_params):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
