"""Secrets from the environment, a `.env` file or Colab's secrets: never printed, never saved.

    from pricer.env import load_secrets, redact, secret
    key = secret("OPENAI_API_KEY")   # the value or None; reads only, os.environ is left alone
    found = load_secrets()           # e.g. ["HF_TOKEN"]: names only; fills os.environ (see below)
    print(redact(text))              # every form of every secret in `text` becomes <NAME>

Values already in the environment win over `.env`, which wins over Colab's userdata. A value is
stripped of surrounding whitespace wherever it is read: a key pasted into `.env` or Colab often
ends in a line break, which an HTTP header refuses and `repr()` shows as `\\n`.

`secret` is what pricer's own code calls. `load_secrets` is the one function that writes
os.environ, and only when called, once at a program's start (the notebooks' setup cell does), so
that libraries which read the environment themselves (the Hub, W&B) find the keys.

`redact` replaces a secret verbatim, in its repr / bytes-repr, JSON, URL or HTML escaped form, and
cut off (`f"{e!r:.80}"`, a 200-character error message): any prefix of a form of at least
MIN_PREFIX characters. ANSI colour codes inside an IPython traceback don't hide it either.
"""

import html
import json
import os
import re
import urllib.parse

SECRETS = ("HF_TOKEN", "WANDB_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY")
MIN_PREFIX = 8  # a key cut to fewer characters identifies nothing; values this short are not keys
DOTENV = None  # the .env file to read; None: the nearest one, found as python-dotenv finds it
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")

_colab: dict[str, str] = {}  # values read from Colab this process: asking again can prompt the user


def secret(name: str, dotenv_path: str | None = None) -> str | None:
    """A secret's value, stripped, from the environment, .env or Colab (in that order); None if unset."""
    for value in (os.environ.get(name), _dotenv(dotenv_path).get(name)):
        if value and value.strip():
            return value.strip()
    if name not in _colab:
        value = _colab_secret(name)
        if not (value and value.strip()):
            return None
        _colab[name] = value.strip()
    return _colab[name]


def has_secret(name: str) -> bool:
    """True when the secret is set somewhere pricer looks (without revealing it)."""
    return secret(name) is not None


def load_secrets(dotenv_path: str | None = None, names=SECRETS) -> list[str]:
    """Put `.env` and the known secrets (stripped) into os.environ; return the names that are set.

    The explicit step for libraries that read the environment themselves; nothing calls it as a
    side effect. A value already in the environment stays (only its whitespace is stripped)."""
    from dotenv import load_dotenv

    load_dotenv(_dotenv_file(dotenv_path) or None, override=False)
    for name in names:
        value = secret(name, dotenv_path)
        if value and os.environ.get(name) != value:
            os.environ[name] = value
    return [name for name in names if os.environ.get(name)]


def _dotenv_file(dotenv_path: str | None) -> str:
    from dotenv import find_dotenv

    path = dotenv_path or DOTENV
    return str(path) if path else find_dotenv()


def _dotenv(dotenv_path: str | None = None) -> dict:
    from dotenv import dotenv_values

    path = _dotenv_file(dotenv_path)
    return dotenv_values(path) if path and os.path.isfile(path) else {}


def _colab_secret(name: str) -> str | None:
    try:
        from google.colab import userdata  # only on Colab
    except ImportError:
        return None
    try:
        return userdata.get(name)
    except Exception:  # Colab raises its own SecretNotFoundError / NotebookAccessError
        return None


def _known() -> list[tuple[str, str]]:
    """(name, value) of every secret this process can see, without asking Colab anew."""
    found = []
    for name in SECRETS:
        values = {os.environ.get(name), _dotenv().get(name), _colab.get(name)}
        found += [(name, v.strip()) for v in values if v and len(v.strip()) >= MIN_PREFIX]
    return found


def forms(value: str) -> set[str]:
    """The ways a value can be written in output: as is, and repr-, bytes-, JSON-, URL-, HTML-escaped."""
    written = {value, repr(value)[1:-1], ascii(value)[1:-1], repr(value.encode())[2:-1],
               json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
               urllib.parse.quote(value, safe=""), urllib.parse.quote(value), urllib.parse.quote_plus(value),
               html.escape(value)}
    written |= {w.replace("/", "\\/") for w in written}  # JSON writers that escape "/"
    written |= {w.replace("\\", "\\\\") for w in written if "\\" in w}  # escaped once more (a repr of a repr)
    return {w for w in written if len(w) >= MIN_PREFIX}


def redact(text: str) -> str:
    """The text with every form of every known secret, whole or cut off, replaced by <NAME>."""
    known = _known()
    if not known or not text:
        return text
    plain, where = _without_ansi(text)
    spans = sorted(span for name, value in known for form in forms(value) for span in _found(plain, form, name))
    if not spans:
        return text
    merged = []
    for start, end, name in spans:  # overlapping matches (two forms, two secrets) become one
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end, name])
    out, done = [], 0
    for start, end, name in merged:
        start, end = (where[start], where[end - 1] + 1) if where else (start, end)
        out += [text[done:start], f"<{name}>"]
        done = end
    return "".join(out) + text[done:]


def _found(text: str, form: str, name: str):
    """(start, end, name) of each place `text` holds `form` or a prefix of it of MIN_PREFIX or more."""
    head, start = form[:MIN_PREFIX], text.find(form[:MIN_PREFIX])
    while start >= 0:
        end = start + MIN_PREFIX
        while end < len(text) and end - start < len(form) and text[end] == form[end - start]:
            end += 1
        yield start, end, name
        start = text.find(head, start + 1)


def _without_ansi(text: str) -> tuple[str, list[int] | None]:
    """The text without ANSI escape codes, and where each of its characters was (None: unchanged)."""
    if "\x1b" not in text:
        return text, None
    plain, where, done = [], [], 0
    for match in ANSI.finditer(text):
        plain.append(text[done:match.start()])
        where += range(done, match.start())
        done = match.end()
    plain.append(text[done:])
    where += range(done, len(text))
    return "".join(plain), where


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
