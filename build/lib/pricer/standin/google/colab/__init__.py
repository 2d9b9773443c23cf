"""A stand-in for Colab's `google.colab` (pricer.rehearsal): Drive and Secrets as Colab has them, on any machine."""

from . import drive, userdata  # noqa: F401
