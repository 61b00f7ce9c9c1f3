"""Prompt perturbations (typo, rephrase, format) that never change what is being asked.

A standalone package: it must not import `evalsuite`, so other projects can use it on its own.
Each variant is a pure function of (item id, kind, variant index, global seed, severity).
"""

__version__ = "0.1.0"
