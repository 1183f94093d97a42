"""Synthetic AI4Arctic scenes in the exact dataset schema (the stand-in for the real data).

:func:`generate` writes ready-to-train (and optionally raw) files; the physics and the facts behind
it are in :mod:`.generator` and docs/synthetic.md. CLI: ``seaice synthetic --help``.
"""

from .generator import REGION_CATALOGUE, generate, main

__all__ = ["REGION_CATALOGUE", "generate", "main"]
