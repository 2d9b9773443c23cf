"""The fence every patch stands behind: the versions it was tested with, on inside them, off (said once) outside."""

import importlib.metadata
import os
import sys
from dataclasses import dataclass

_verdicts: dict[str, bool] = {}  # patch name -> on/off, decided (and announced) once per process


def installed(library: str) -> str | None:
    """The installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(library)
    except importlib.metadata.PackageNotFoundError:
        return None


def covers(tested: tuple[str, ...], found: str) -> bool:
    """Whether `found` is a final release that one of the `tested` prefixes names ("2.11" is any 2.11.x)."""
    from packaging.version import InvalidVersion, Version

    try:
        version = Version(found)
    except InvalidVersion:
        return False
    if version.is_prerelease or version.is_devrelease:
        return False
    return any(version.release[:len(t.split("."))] == tuple(map(int, t.split("."))) for t in tested)


@dataclass(frozen=True)
class Fence:
    """A patch's name, the library it changes, the versions it was tested with, and what runs without it."""

    patch: str
    library: str  # the distribution's name, as pip knows it
    tested: tuple[str, ...]  # release prefixes: "1.16.0" is that release, "2.11" any 2.11.x
    stock: str  # what runs when the patch is off, for the announcement

    @property
    def on(self) -> bool:
        """True inside the tested versions; outside, False, said once in one line."""
        if self.patch not in _verdicts:
            found = installed(self.library)
            _verdicts[self.patch] = found is not None and covers(self.tested, found)
            if not _verdicts[self.patch] and os.environ.get("RANK", "0") == "0":
                print(f"pricer: patch {self.patch} is off: written for {self.library} {' or '.join(self.tested)}, "
                      f"found {found or 'none'}; {self.stock} (still correct).", file=sys.stderr)
        return _verdicts[self.patch]
