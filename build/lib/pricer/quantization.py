"""What quantization does to a model, in numbers and pictures (lab 1).

    wq, report = nf4_roundtrip(weight)             # one matrix through 4-bit NF4 and back
    lora_parameter_count(model.config, r=32, targets=ATTENTION)   # 18,350,080 for Llama-3.2-3B
    footprint_chart({"fp32": 0.54, "4-bit": 0.17}).show()
"""

# Llama-3.2-3B as the course measured it (GB): the bars students compare theirs with.
COURSE_FOOTPRINTS = {"fp32": 12.85, "bf16": 6.43, "8-bit": 3.61, "4-bit NF4": 2.20}


def nf4_roundtrip(weight, blocksize: int = 64, quant_type: str = "nf4"):
    """(dequantized weight, error report) after bitsandbytes 4-bit quantization, to see the loss."""
    import bitsandbytes.functional as F
    import torch

    weight = weight.detach().float().contiguous()
    # Blocks run over the flattened tensor; quantized flat, because bitsandbytes' CPU dequantize kernel
    # (0.50) misreads blocks that straddle rows (a 576-wide matrix at block 128: 62% error instead of 10%).
    packed, state = F.quantize_4bit(weight.flatten(), blocksize=blocksize, quant_type=quant_type,
                                    compress_statistics=True)  # compress_statistics = double quant
    restored = F.dequantize_4bit(packed, state).float().reshape(weight.shape)
    error = (restored - weight).abs()
    return restored, {
        "mean_abs_weight": weight.abs().mean().item(),
        "mean_abs_error": error.mean().item(),
        "max_abs_error": error.max().item(),
        "relative_error": (error.norm() / weight.norm()).item(),
        "bits_per_weight": 8 * (packed.numel() + _state_bytes(state)) / weight.numel(),
        "distinct_values_per_block": int(torch.unique(restored.flatten()[:blocksize]).numel()),
    }


def _state_bytes(state) -> int:
    """Bytes of quantization constants: fp32 absmax per block, or 8-bit + a second level (double quant)."""
    absmax = state.absmax.numel() * state.absmax.element_size()
    nested = state.state2.absmax.numel() * 4 if state.nested else 0
    return absmax + nested


def nf4_levels():
    """The 16 NF4 values: quantiles of a normal distribution, scaled to [-1, 1]."""
    import bitsandbytes.functional as F

    return F.get_4bit_type("nf4", device="cpu").tolist()


def lora_parameter_count(config, r: int, targets) -> int:
    """Trainable LoRA parameters: r x (in + out) for each targeted projection in every layer."""
    from pricer.memory import ModelShape

    return ModelShape.from_config(config).lora_params(r, targets)


def footprint_chart(footprints: dict, model_name: str = "this model"):
    """Bars of memory per precision, ours beside the course's Llama-3.2-3B figures."""
    import plotly.graph_objects as go

    fig = go.Figure([
        go.Bar(name=model_name, x=list(footprints), y=list(footprints.values()), texttemplate="%{y:.2f} GB"),
        go.Bar(name="Llama-3.2-3B (course)", x=list(COURSE_FOOTPRINTS), y=list(COURSE_FOOTPRINTS.values()),
               texttemplate="%{y:.2f} GB", marker_color="lightslategray"),
    ])
    fig.update_layout(barmode="group", yaxis_title="GB of weights", template="plotly_white", height=400,
                      title="Memory footprint by precision")
    return fig
