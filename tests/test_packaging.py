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
    tested = pins()
    for line in PROJECT["project"]["optional-dependencies"]["colab"]:
        requirement = Requirement(line)
        [spec] = requirement.specifier
        assert tested[requirement.name.lower().replace("_", "-")] == spec.version, line


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
