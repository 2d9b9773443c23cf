"""Secrets from the environment, a `.env` file or Colab's secrets: never printed, never saved.

    from pricer.env import load_secrets, redact, secret
    key = secret("OPENAI_API_KEY")   # the value or None; reads only, os.environ is left alone
    found = load_secrets()           # e.g. ["HF_TOKEN"]: names only; fills os.environ (see below)
    print(redact(text))              # every form of every secret in `text` becomes <NAME>
    with redacted_output(): ...      # everything this process prints goes through redact (the CLI)

Values already in the environment win over `.env` (the nearest one from the working folder up),
which wins over Colab's userdata. A value is
stripped of surrounding whitespace wherever it is read: a key pasted into `.env` or Colab often
ends in a line break, which an HTTP header refuses and `repr()` shows as `\\n`. A `.env` that is
not UTF-8 text, or has a line its parser can't read (an unterminated quote), is refused naming
the file and line: python-dotenv would drop that key and every line after it with a warning.

`redact` hides every piece of MIN_PREFIX or more characters of a secret, wherever it sits: cut at
either end (`f"{e!r:.80}"`, an API that echoes the key without its first characters), repr /
bytes / JSON / URL / HTML escaped, base64 (a Basic-auth header's `user:key` included) or hex,
in any letter case, spaced out, or with ANSI colour codes inside (an IPython traceback).
"""

import base64
import binascii
import bisect
import functools
import html
import io
import json
import os
import re
import sys
import urllib.parse

from pricer.errors import DataError

SECRETS = ("HF_TOKEN", "WANDB_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY")
SECRET_NAME = re.compile(r"(?:^|_)(?:API_?KEY|TOKEN|SECRET|PASSWORD|PASSWD)$")  # others a .env may hold
MIN_PREFIX = 8  # a piece of a key shorter than this identifies nothing; values this short are not keys
DOTENV = None  # the .env file to read; None: the nearest one, found as python-dotenv finds it
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
HIDDEN = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]|\s+")

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

    path = _dotenv_file(dotenv_path)
    if path and os.path.isfile(path):
        load_dotenv(stream=io.StringIO(_dotenv_text(path)), override=False)
    for name in names:
        value = secret(name, dotenv_path)
        if value and os.environ.get(name) != value:
            os.environ[name] = value
    return [name for name in names if os.environ.get(name)]


def _dotenv_file(dotenv_path: str | None) -> str:
    from dotenv import find_dotenv

    path = dotenv_path or DOTENV
    return str(path) if path else find_dotenv(usecwd=True)  # from where the user runs, not where pricer is installed


def _dotenv(dotenv_path: str | None = None) -> dict:
    path = _dotenv_file(dotenv_path)
    return _dotenv_values(path, *_stamp(path)) if path and os.path.isfile(path) else {}


def _stamp(path: str) -> tuple:
    """What changes when the file does: a rewritten .env is read again, an unchanged one is not."""
    try:
        stat = os.stat(path)
        return stat.st_mtime_ns, stat.st_size
    except OSError:
        return None, None


@functools.lru_cache(maxsize=8)
def _dotenv_values(path: str, *stamp) -> dict:
    from dotenv import dotenv_values

    return dotenv_values(stream=io.StringIO(_dotenv_text(path)))


def _dotenv_text(path: str) -> str:
    """The .env file's text; a DataError naming it, the line and the fix if python-dotenv would drop any of it."""
    try:
        data = open(path, "rb").read()
    except OSError as e:
        raise DataError(f"{path}: the .env file can't be read ({e.strerror}); fix its permissions or remove it") from None
    try:
        text = data.decode("utf-8-sig")  # -sig: Notepad's byte-order mark is not part of the first name
    except UnicodeDecodeError as e:
        encoding = "UTF-16" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else "not UTF-8"
        raise DataError(f"{path}: the .env file is {encoding} text (byte {e.start}); save it as UTF-8 "
                        "(in Notepad: Save as, Encoding UTF-8)") from None
    from dotenv.parser import parse_stream

    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            raise DataError(f"{path}, line {binding.original.line}: the .env file can't be read from here on "
                            f"(an unterminated quote?); write NAME=value, one per line, quotes closed")
    return text


def _lenient_dotenv() -> dict:
    """The .env's values as far as they can be read at all, for redaction (which must never fail)."""
    try:
        return _dotenv()
    except Exception:
        pass
    try:
        path = _dotenv_file(None)
        data = open(path, "rb").read()
    except Exception:
        return {}
    for encoding in ("utf-8-sig", "utf-16", "cp1252", "latin-1"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeError:
            continue
    found = {}
    for line in text.splitlines():
        match = re.match(r"\s*(?:export\s+)?([\w.-]+)\s*=\s*(.*)$", line)
        if match:
            found[match.group(1)] = match.group(2).strip().strip("'\"")
    return found


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
    dotenv = _lenient_dotenv()
    names = set(SECRETS) | {n for n in list(os.environ) + list(dotenv) if SECRET_NAME.search(n.upper())}
    found = set()
    for name in names:
        values = {os.environ.get(name), dotenv.get(name), _colab.get(name)}
        found |= {(name, v.strip()) for v in values if isinstance(v, str) and len(v.strip()) >= MIN_PREFIX}
    return sorted(found)


def forms(value: str) -> set[str]:
    """The ways a value can be written in output: as is, repr-, bytes-, JSON-, URL-, HTML-escaped, base64, hex."""
    written = {value, repr(value)[1:-1], ascii(value)[1:-1], repr(value.encode())[2:-1],
               json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
               urllib.parse.quote(value, safe=""), urllib.parse.quote(value), urllib.parse.quote_plus(value),
               html.escape(value)}
    written |= {w.replace("/", "\\/") for w in written}  # JSON writers that escape "/"
    written |= {w.replace("\\", "\\\\") for w in written if "\\" in w}  # escaped once more (a repr of a repr)
    data = value.encode()
    written.add(binascii.hexlify(data).decode())
    for offset in range(3):  # base64 of a text holding the value ("user:key" in Basic auth) at any alignment
        coded = base64.b64encode(b"\0" * offset + data).decode().rstrip("=")
        middle = coded[4 if offset else 0:-4]  # the characters set by the value's bytes alone
        written |= {middle, middle.replace("+", "-").replace("/", "_")}
    return {w for w in written if len(w) >= MIN_PREFIX}


@functools.lru_cache(maxsize=4)
def _grams(known: tuple) -> tuple[dict, dict]:
    """Every MIN_PREFIX-long piece (and every half-piece) of every form of every secret, squeezed and lower case."""
    full, half = {}, set()
    for name, value in known:
        for form in forms(value):
            form = _squeeze(form)
            for i in range(len(form) - MIN_PREFIX + 1):
                full.setdefault(form[i:i + MIN_PREFIX], name)
                half.add(form[i:i + MIN_PREFIX // 2])
                half.add(form[i + MIN_PREFIX // 2:i + MIN_PREFIX])
    return full, half


def _squeeze(text: str) -> str:
    """The text as matching sees it: no ANSI codes, no whitespace, lower case (one character each)."""
    text = HIDDEN.sub("", text)
    lower = text.lower()
    return lower if len(lower) == len(text) else "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


def redact(text: str) -> str:
    """The text with every piece of every form of every known secret replaced by <NAME>."""
    if not text or not isinstance(text, str):
        return text
    known = tuple(_known())
    if not known:
        return text
    full, half = _grams(known)
    squeezed, starts, origins = _squeezed_with_origins(text)
    n, step = len(squeezed), MIN_PREFIX // 2
    spans = []
    for a in range(0, n - step + 1, step):  # any piece of 8+ holds an aligned half-piece: look closer only there
        if squeezed[a:a + step] in half:
            for j in range(max(0, a - step), min(a, n - MIN_PREFIX) + 1):
                name = full.get(squeezed[j:j + MIN_PREFIX])
                if name:
                    spans.append((j, j + MIN_PREFIX, name))
    if not spans:
        return text
    merged = []
    for start, end, name in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end, name])
    out, done = [], 0
    for start, end, name in merged:
        first, last = _origin(starts, origins, start), _origin(starts, origins, end - 1) + 1
        out += [text[done:first], f"<{name}>"]
        done = last
    return "".join(out) + text[done:]


def _squeezed_with_origins(text: str) -> tuple[str, list[int], list[int]]:
    """The squeezed text, and for each kept run of characters where it starts there and in `text`."""
    parts, starts, origins, length, done = [], [], [], 0, 0
    for match in [*HIDDEN.finditer(text), None]:
        end = match.start() if match else len(text)
        if end > done:
            starts.append(length)
            origins.append(done)
            parts.append(text[done:end])
            length += end - done
        done = match.end() if match else done
    squeezed = "".join(parts)
    lower = squeezed.lower()
    return (lower if len(lower) == len(squeezed) else
            "".join(c if len(c.lower()) != 1 else c.lower() for c in squeezed)), starts, origins


def _origin(starts: list[int], origins: list[int], index: int) -> int:
    """Where the squeezed text's character `index` was in the original text."""
    run = bisect.bisect_right(starts, index) - 1
    return origins[run] + index - starts[run]


class RedactedStream(io.TextIOBase):
    """A text stream that writes everything through `redact`, a line at a time (a key can't be cut in two)."""

    def __init__(self, stream):
        self.stream, self.pending = stream, ""

    def write(self, text: str) -> int:
        self.pending += text
        cut = max(self.pending.rfind("\n"), self.pending.rfind("\r")) + 1
        if cut:
            self.stream.write(redact(self.pending[:cut]))
            self.pending = self.pending[cut:]
        return len(text)

    def flush(self) -> None:
        if self.pending:
            self.stream.write(redact(self.pending))
            self.pending = ""
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    def __getattr__(self, name):
        return getattr(self.stream, name)


class redacted_output:
    """`with redacted_output():` everything printed to stdout and stderr passes through `redact`."""

    def __enter__(self):
        self.saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = RedactedStream(sys.stdout), RedactedStream(sys.stderr)
        return self

    def __exit__(self, *exc):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        sys.stdout, sys.stderr = self.saved
        return False
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
