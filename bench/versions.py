"""What a benchmark's figures were measured with (saved beside them): library versions, the CPU model."""

import platform
from pathlib import Path

LIBRARIES = ("torch", "transformers", "trl", "peft", "bitsandbytes")


def versions() -> dict:
    """name -> version of each library the figures depend on (None where it is not installed)."""
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = __import__(name).__version__
        except ImportError:
            found[name] = None
    return found


def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it, else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
