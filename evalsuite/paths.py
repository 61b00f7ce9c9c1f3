"""Where evalsuite keeps things on disk."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "EVALSUITE_CACHE_DIR"


def cache_dir() -> Path:
    """Root of evalsuite's cache: $EVALSUITE_CACHE_DIR, else $XDG_CACHE_HOME/evalsuite, else ~/.cache/evalsuite."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "evalsuite"


def models_cache_dir() -> Path:
    return cache_dir() / "models"
