"""Secrets from the environment, a `.env` file or Colab's secrets: never printed, never saved.

    from pricer.env import load_secrets
    found = load_secrets()      # e.g. ["HF_TOKEN"]: names only, never values

Values already in the environment win over `.env`, which wins over Colab's userdata.
"""

import os

SECRETS = ("HF_TOKEN", "WANDB_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY")


def load_secrets(dotenv_path: str | None = None) -> list[str]:
    """Put known secrets into os.environ from .env / Colab; return the names that are set."""
    from dotenv import load_dotenv

    load_dotenv(dotenv_path, override=False)
    for name in SECRETS:
        if not os.environ.get(name):
            value = _colab_secret(name)
            if value:
                os.environ[name] = value
    return [name for name in SECRETS if os.environ.get(name)]


def _colab_secret(name: str) -> str | None:
    try:
        from google.colab import userdata  # only on Colab
    except ImportError:
        return None
    try:
        return userdata.get(name)
    except Exception:  # Colab raises its own SecretNotFoundError / NotebookAccessError
        return None


def secret(name: str) -> str | None:
    """A secret's value from the environment, else `.env`, else Colab's secrets; read, never written anywhere."""
    from dotenv import dotenv_values

    value = os.environ.get(name) or dotenv_values().get(name) or _colab_secret(name)
    return value.strip() if value and value.strip() else None


def has_secret(name: str) -> bool:
    """True when the secret is set (without revealing it)."""
    return bool(os.environ.get(name))


def redact(text: str) -> str:
    """The text with every known secret value replaced by its name, for logs and reports."""
    for name in SECRETS:
        value = os.environ.get(name)
        if value and len(value) >= 8:
            text = text.replace(value, f"<{name}>")
    return text


def describe_setup() -> str:
    """Versions and hardware in one block, so a notebook's output says what it ran on."""
    import importlib.metadata
    import platform

    import torch

    names = ("torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate", "datasets")
    versions = []
    for name in names:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_properties(0)
        bf16 = "bf16" if torch.cuda.is_bf16_supported() else "fp16 only (no bf16)"
        device = f"GPU {gpu.name}, {gpu.total_memory / 2**30:.0f} GiB, {bf16}"
    else:
        device = f"CPU only, {torch.get_num_threads()} threads"
    return f"Python {platform.python_version()} | {', '.join(versions)}\nDevice: {device}"
