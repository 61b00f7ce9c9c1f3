"""Where evalsuite keeps things on disk."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

CACHE_ENV = "EVALSUITE_CACHE_DIR"
UMASK = os.umask(0o022)  # read once, at import (reading it means setting it), and put straight back
os.umask(UMASK)


def cache_dir() -> Path:
    """Root of evalsuite's cache: $EVALSUITE_CACHE_DIR, else $XDG_CACHE_HOME/evalsuite, else ~/.cache/evalsuite."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "evalsuite"


def models_cache_dir() -> Path:
    return cache_dir() / "models"


@contextmanager
def staged_dir(dest: Path) -> Iterator[Path]:
    """Build a directory beside `dest` and move it into place only if the block succeeds: readers see
    either no `dest` or a complete one, and a crash leaves no half-written directory behind."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        yield staging
        if dest.exists():
            shutil.rmtree(dest)
        staging.rename(dest)  # atomic on one filesystem
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def dir_lock(dest: Path) -> Iterator[None]:
    """An exclusive advisory lock (flock) for building `dest`, held for the block: processes that would
    build the same directory take turns, so the later ones find it built. The lock file lives in the
    cache (`locks/`), not beside `dest`."""
    import fcntl

    locks = cache_dir() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(str(dest.expanduser().resolve()).encode()).hexdigest()[:24]
    with open(locks / f"{key}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def atomic_output(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """A file handle whose contents appear at `path` only when the block succeeds: written to a temporary file
    beside it, flushed to disk and renamed over `path` (atomic on one filesystem). Readers see the old file or
    the new one, never a half-written one; a failure leaves `path` as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp makes the file private; the result is an ordinary file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write(path: Path, data: str | bytes) -> Path:
    """`data` written to `path` atomically (see `atomic_output`)."""
    with atomic_output(path, "wb" if isinstance(data, bytes) else "w") as fh:
        fh.write(data)
    return Path(path)


def json_safe(value: Any) -> Any:
    """`value` with NaN and infinities as None (JSON has neither; e.g. a standard error over one item)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def to_json(value: Any, indent: int | None = None) -> str:
    """Valid JSON for records evalsuite writes: NaN and infinities as null, never the `NaN` token."""
    return json.dumps(json_safe(value), indent=indent, ensure_ascii=False, allow_nan=False)


def write_json(path: Path, value: Any, indent: int = 2) -> Path:
    """`value` as JSON (see `to_json`) at `path`, atomically."""
    return atomic_write(path, to_json(value, indent) + "\n")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fingerprint_dir(path: Path, suffixes: tuple[str, ...], head_bytes: int | None = None) -> str:
    """sha256 over the names, sizes and contents (the first `head_bytes` of each, or all of it, streamed)
    of the files in `path` with the given suffixes, in name order."""
    digest = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.is_file() and f.suffix in suffixes:
            digest.update(f"{f.name}\0{f.stat().st_size}\0".encode())
            if head_bytes:
                with f.open("rb") as fh:
                    digest.update(fh.read(head_bytes))
            else:
                digest.update(sha256_file(f).encode())
    return digest.hexdigest()


def ensure_output_dir(path: Path, what: str = "--out") -> Path:
    """`path` as a folder evalsuite can write into, created if need be, checked before any work is done: a
    path that is a file, cannot be created or is read-only is a one-line error instead of results lost at the
    end of a run."""
    from evalsuite.errors import ConfigError

    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {path} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ConfigError(f"{what} {path} is not a folder evalsuite can write to ({exc.strerror or exc})") from None
    return path


def ensure_output_file(path: Path, what: str = "--out") -> Path:
    """`path` as a file evalsuite can (over)write, checked before any work is done (see `ensure_output_dir`)."""
    from evalsuite.errors import ConfigError

    path = Path(path).expanduser()
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder, not a file")
    ensure_output_dir(path.parent if str(path.parent) else Path("."), f"{what} folder")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{what} {path} is not writable")
    return path
