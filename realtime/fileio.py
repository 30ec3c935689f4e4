"""Atomic file writes for run outputs and the feature cache: a temporary file beside the target, then a rename, so an
interrupted run never leaves a truncated file where a good one (or none) was."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

HASH_CHUNK = 1 << 20
FILE_MODE = 0o666  # before the umask, as open() would create it (mkstemp alone makes 0600)


@functools.cache
def _umasked_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return FILE_MODE & ~umask


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(fh)`` on a temporary file in ``path``'s folder, then rename it onto ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.chmod(tmp, _umasked_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    text = json.dumps(data, indent=2) + "\n"
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def save_npy(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda fh: np.save(fh, array, allow_pickle=False))


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes (what a model's identity is: ser-batch's resume key, a profile's binding)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
