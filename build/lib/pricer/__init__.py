"""pricer: turn a small Llama into a product price predictor with QLoRA, and measure it.

    import pricer
    train, val, test = pricer.Item.from_hub("embedded")       # or "ed-donner/items_lite"
    pricer.evaluate(my_predictor, test, size=200)

Names are imported lazily, so `import pricer` needs no GPU, token or network, and no torch.
"""

import importlib

__version__ = "0.1.0"

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
