"""The library versions a benchmark's figures were measured with (saved beside them)."""

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
