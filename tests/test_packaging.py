"""Packaging: `pip install .` gets every module, and the tested pins sit inside the declared ranges."""

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def pins() -> dict[str, str]:
    found = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            requirement = Requirement(line)
            exact = [s.version for s in requirement.specifier if s.operator == "=="]
            if exact:
                found[requirement.name.lower().replace("_", "-")] = exact[0]
    return found


def test_every_tested_pin_is_inside_the_range_the_package_declares():
    declared = {Requirement(r).name.lower().replace("_", "-"): Requirement(r)
                for r in PROJECT["project"]["dependencies"]}
    tested = pins()
    assert tested and set(declared) - {"torch"} <= set(tested), set(declared) - set(tested)  # torch: Colab keeps its own
    outside = [f"{name} {version} not in {declared[name].specifier}" for name, version in tested.items()
               if name in declared and not declared[name].specifier.contains(version)]
    assert not outside, outside


def test_the_colab_extra_pins_what_requirements_txt_pins():
    """An exact pin in the extra is the tested one; a range (what Colab may keep) is the package's declared range or
    narrower."""
    tested = pins()
    declared = {_name(r): Requirement(r) for r in PROJECT["project"]["dependencies"]}
    for line in PROJECT["project"]["optional-dependencies"]["colab"]:
        requirement = Requirement(line)
        exact = [s.version for s in requirement.specifier if s.operator == "=="]
        if exact:
            assert tested[_name(line)] == exact[0], line
        else:
            assert _name(line) in declared, line


# ----- pricer[colab] against Colab's own stack, offline -------------------------------------------------
# tests/data/colab_pip_freeze_gpu.txt: googlecolab/backend-info's pip-freeze.gpu.txt of 2026-08-19 (Python 3.13).
# tests/data/colab_requires.json: the Requires-Dist of what the extra may install and of Colab packages that
# constrain those (PyPI metadata, 2026-12-03). Resolving is with packaging's specifiers, no network.

DATA = ROOT / "tests" / "data"
COLAB_MARKERS = {"python_version": "3.13", "python_full_version": "3.13.7", "sys_platform": "linux",
                 "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
                 "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}


def _name(text: str) -> str:
    import re

    return re.sub(r"[-_.]+", "-", Requirement(text).name if " " in text or any(c in text for c in "<>=!~;[") else
                  text).lower()


def colab_freeze() -> dict[str, str]:
    found = {}
    for line in (DATA / "colab_pip_freeze_gpu.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            found[_name(name)] = version.strip()
    return found


def resolve_on_colab(requirements: list[str], freeze: dict, requires: dict) -> tuple[dict, list[str]]:
    """What installing `requirements` on Colab changes ({name: (Colab's version or None, new, why)}) and every
    conflict, with pip's rule that an installed version which satisfies a requirement stays."""
    from packaging.version import Version

    env, changes, conflicts, queue = dict(freeze), {}, [], [(r, "pricer[colab]") for r in requirements]
    while queue:
        text, who = queue.pop(0)
        requirement = Requirement(text)
        if requirement.marker and not requirement.marker.evaluate(COLAB_MARKERS):
            continue
        name = _name(requirement.name)
        have = env.get(name)
        if have is not None and requirement.specifier.contains(have, prereleases=True):
            continue
        candidates = sorted((v for v in requires.get(name, {}) if requirement.specifier.contains(v)), key=Version)
        if not candidates:
            conflicts.append(f"{who} needs {text}; Colab has {name} {have}, and no known release fits")
            continue
        env[name] = candidates[-1]
        changes[name] = (freeze.get(name), candidates[-1], f"{who} needs {text}")
        queue += [(r, f"{name} {candidates[-1]}") for r in requires[name][candidates[-1]]]
    for name, versions in requires.items():  # every package in the final environment that we hold metadata for
        for r in versions.get(env.get(name), []):
            requirement = Requirement(r)
            if requirement.marker and not requirement.marker.evaluate(COLAB_MARKERS):
                continue
            other = env.get(_name(requirement.name))
            if other is not None and not requirement.specifier.contains(other, prereleases=True):
                conflicts.append(f"{name} {env[name]} needs {r}, but it would be {other}")
    return changes, sorted(set(conflicts))


def _colab_requirements(extra: list[str]) -> list[str]:
    return [r for r in PROJECT["project"]["dependencies"] if _name(r) not in {_name(e) for e in extra}] + extra


def _requires() -> dict:
    import json

    return {_name(k): v for k, v in json.loads((DATA / "colab_requires.json").read_text())["requires"].items()}


def test_pricer_colab_changes_only_what_colab_lacks_or_must_change_and_conflicts_with_nothing():
    changes, conflicts = resolve_on_colab(_colab_requirements(PROJECT["project"]["optional-dependencies"]["colab"]),
                                          colab_freeze(), _requires())
    report = "\n".join(f"{n}: {old or 'absent'} -> {new} ({why})" for n, (old, new, why) in sorted(changes.items()))
    assert conflicts == [], conflicts
    # the fenced libraries, what transformers 5.23 and trl 1.16 need, and nothing of Colab's else
    assert set(changes) == {"transformers", "trl", "bitsandbytes", "gguf", "huggingface-hub", "datasets",
                            "tokenizers", "pyarrow"}, report
    kept = colab_freeze()
    assert all(n not in changes for n in ("torch", "peft", "accelerate", "numpy", "pandas", "fsspec")), report
    assert changes["huggingface-hub"][1].startswith("1.") and kept["gradio"], report  # gradio keeps hub < 2


def test_the_colab_check_reports_the_conflicts_of_the_old_extra():
    """The extra as it was (huggingface_hub 2.4.0, datasets 5.2.0, everything pinned): gradio and diffusers need
    huggingface_hub < 2, so the check must name them."""
    old = ["transformers==5.23.0", "peft==0.21.2", "trl==1.16.0", "bitsandbytes==0.50.2", "accelerate==1.15.0",
           "datasets==5.2.0", "huggingface_hub==2.4.0", "gguf==0.19.0"]
    changes, conflicts = resolve_on_colab(_colab_requirements(old), colab_freeze(), _requires())
    assert {"peft", "accelerate", "huggingface-hub"} <= set(changes)
    assert any(c.startswith("gradio 6.24.0 needs huggingface-hub<2.0") for c in conflicts), conflicts
    assert any(c.startswith("diffusers 0.39.0 needs huggingface-hub<2.0") for c in conflicts), conflicts


def test_every_package_folder_is_packed():
    packed = set(PROJECT["tool"]["setuptools"]["packages"])
    folders = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "pricer").rglob("*.py")
               if "__pycache__" not in p.parts}
    assert folders <= packed, folders - packed


def test_every_data_file_the_package_reads_is_packed():
    """A file inside pricer/ that isn't Python (the benchmark's reference figures) needs a package-data entry."""
    import fnmatch

    declared = PROJECT["tool"]["setuptools"].get("package-data", {})
    data = {p.relative_to(ROOT / "pricer").as_posix() for p in (ROOT / "pricer").rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts}
    unpacked = {f for f in data if not any(fnmatch.fnmatch(f, pattern) for pattern in declared.get("pricer", []))}
    assert data and not unpacked, unpacked
