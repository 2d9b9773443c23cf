"""pricer: turn a small Llama into a product price predictor with QLoRA, and measure it.

    import pricer
    train, val, test = pricer.Item.from_hub("embedded")       # or "ed-donner/items_lite"
    pricer.evaluate(my_predictor, test, size=200)

Names are imported lazily, so `import pricer` needs no GPU, token or network, and no torch.
"""

import importlib
import warnings

__version__ = "0.1.0"

# Jupyter without ipywidgets (executed labs, plain installs): tqdm draws text bars, and says so in a warning.
warnings.filterwarnings("ignore", message="IProgress not found")
# peft 0.21 and TRL 1.16 read `model.is_gradient_checkpointing`, which transformers 5.23 deprecates with a
# FutureWarning at every read; pricer never calls it, and there is nothing a student can change about it.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
# torch 2.13's own torch.utils.mkldnn still uses torch.jit.script_method, deprecated by torch 2.13 itself; generation
# imports it on a CPU. Not ours to change, and not a student's.
warnings.filterwarnings("ignore", message="`torch.jit.script_method` is deprecated", category=DeprecationWarning)

_EXPORTS = {
    "Item": "pricer.items",
    "load_prompts": "pricer.items",
    "get_preset": "pricer.config",
    "EMBEDDED": "pricer.config",
    "load_model": "pricer.models",
    "load_tokenizer": "pricer.models",
    "Tester": "pricer.evaluator",
    "evaluate": "pricer.evaluator",
    "leaderboard": "pricer.leaderboard",
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pricer' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))
