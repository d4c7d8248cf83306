"""Kept for the modules that still import the atomic writes from here; they live in :mod:`avatarstudio_ns.atomic`."""

from avatarstudio_ns.atomic import atomic_write_bytes, atomic_write_text

__all__ = ["atomic_write_bytes", "atomic_write_text"]
