"""Atomic file writes for run outputs and the feature cache: a temporary file beside the target, then a rename, so an
interrupted run never leaves a truncated file where a good one (or none) was; and JSON read from anyone
(:func:`loads_json`)."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from ser_live.realtime.errors import UserError

logger = logging.getLogger(__name__)

HASH_CHUNK = 1 << 20
FILE_MODE = 0o666  # before the umask, as open() would create it (mkstemp alone makes 0600)


@functools.cache
def _umasked_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return FILE_MODE & ~umask


class JsonTooDeepError(ValueError):
    """JSON nested deeper than the parser goes (a RecursionError inside :func:`json.loads`)."""

    def __init__(self) -> None:
        super().__init__("nested too deep")


def loads_json(text: str | bytes, **kwargs: Any) -> Any:
    """:func:`json.loads` for text from users and the network: every malformed input is a ValueError, deep nesting
    included (:class:`JsonTooDeepError`), so one ``except ValueError`` covers them all."""
    try:
        return json.loads(text, **kwargs)
    except RecursionError:
        raise JsonTooDeepError() from None


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
    """``data`` as JSON, atomically. JSON has no NaN or Infinity: a non-finite number is written as null (and
    logged with where it was), so that every file the project writes parses everywhere."""
    text = json.dumps(finite_json(data, path.name), indent=2, allow_nan=False) + "\n"
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def save_json(path: Path, data: Any, what: str) -> Path:
    """A small JSON document (a profile, deployment statistics) written atomically; a UserError naming ``what`` and
    the path when it cannot be. The caller has checked that ``path`` may be written."""
    text = json.dumps(data, indent=1, allow_nan=False) + "\n"
    try:
        atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))
    except OSError as err:
        raise UserError(f"cannot write {what} {path}: {err.strerror}; choose another path") from None
    return path


def finite_json(data: Any, where: str = "") -> Any:
    """``data`` with every non-finite float replaced by None (a warning names its place)."""
    if isinstance(data, float) and not math.isfinite(data):
        logger.warning("%s is %s; written as null", where or "a JSON value", data)
        return None
    if isinstance(data, dict):
        return {k: finite_json(v, f"{where}.{k}") for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [finite_json(v, f"{where}[{i}]") for i, v in enumerate(data)]
    if isinstance(data, np.floating | np.integer):
        return finite_json(data.item(), where)
    return data


def save_npy(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda fh: np.save(fh, array, allow_pickle=False))


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes (what a model's identity is: ser-batch's resume key, a profile's binding)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two paths name one file (links and relative spellings included; paths that do not exist yet are
    compared resolved)."""
    pa, pb = Path(a), Path(b)
    try:
        if pa.exists() and pb.exists():
            return os.path.samefile(pa, pb)
    except OSError:
        pass
    return pa.resolve() == pb.resolve()


def check_folder_writable(path: Path, flag: str) -> None:
    """UserError unless ``path``'s folder exists and a file can be created there (tried, not guessed from the mode
    bits: root passes those, a read-only mount does not)."""
    folder = path.parent
    if not folder.is_dir():
        raise UserError(f"cannot write {flag} {path}: folder {folder} does not exist; create it or choose another")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise UserError(
            f"cannot write {flag} {path}: {err.strerror or err} in {folder}; choose a writable place"
        ) from None


def check_outputs(
    outputs: Mapping[str, Path],
    inputs: Mapping[str, Path] | None = None,
    overwrite: bool = False,
    replace_hint: str | Mapping[str, str] = "pass --overwrite to replace it",
) -> None:
    """Before any work: every output (``{flag: path}``) is no input and no other output, goes to a writable folder,
    and is not a file with content unless ``overwrite`` (else a UserError that says ``replace_hint``, one for all
    or one per flag). Devices and pipes (``/dev/null``) are fine."""
    named = [(flag, Path(path)) for flag, path in outputs.items()]
    for i, (flag, path) in enumerate(named):
        for other_flag, other in named[:i]:
            if same_file(path, other):
                raise UserError(f"{other_flag} and {flag} both name {path}: give each output its own path")
        for in_flag, source in (inputs or {}).items():
            if same_file(path, source):
                raise UserError(f"{flag} {path} is the input {in_flag}: an input is never an output; choose "
                                "another path")
    for flag, path in named:
        if path.is_dir():
            raise UserError(f"{flag} {path} is a folder: give a file path")
        if path.exists() and not path.is_file():
            continue  # a device or a pipe (/dev/null, a FIFO a reader waits on): written to, nothing to lose
        if path.exists() and path.stat().st_size > 0 and not overwrite:
            hint = replace_hint if isinstance(replace_hint, str) else replace_hint.get(flag, "pass --overwrite to "
                                                                                        "replace it")
            raise UserError(f"{flag} {path} exists: {hint}, or choose another path")
        check_folder_writable(path, flag)
