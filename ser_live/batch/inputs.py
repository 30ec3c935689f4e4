"""What to score: audio files, folders (recursive), globs, or a CSV/TXT manifest with a ``path`` column."""

from __future__ import annotations

import csv
import glob
import io
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from ser_live.realtime.errors import UserError
from ser_live.realtime.sources.audio import audio_extensions

logger = logging.getLogger(__name__)

MANIFEST_SUFFIXES = (".csv", ".txt")
PATH_COLUMN = "path"
GLOB_CHARS = set("*?[")
def _is_audio(path: Path, extensions: frozenset[str]) -> bool:
    return path.is_file() and path.suffix.lower().lstrip(".") in extensions and not path.name.startswith(".")


def _walk(folder: Path) -> Iterable[Path]:
    """Every file under ``folder``; a sub-folder that cannot be read is named in a warning, never skipped
    silently."""
    def unreadable(err: OSError) -> None:
        logger.warning("cannot read the folder %s (%s): the files in it are not scored", err.filename,
                       err.strerror or err)

    for root, _, names in os.walk(folder, onerror=unreadable):
        for name in names:
            yield Path(root) / name


def read_manifest(path: Path) -> list[Path]:
    """Paths from a manifest: CSV with a ``path`` column, or TXT with one path per line; relative paths are taken
    relative to the manifest's folder."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read the manifest {path} ({err}): pass a UTF-8 CSV or TXT file") from None
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))  # quoted fields may hold newlines (files.csv's do)
        try:
            rows = list(reader)
        except csv.Error as err:
            raise UserError(f"the manifest {path} is not valid CSV ({err}): check its quoting") from None
        if PATH_COLUMN not in (reader.fieldnames or ()):
            raise UserError(f"the manifest {path} has no '{PATH_COLUMN}' column: add a header row with '{PATH_COLUMN}'")
        entries = [row[PATH_COLUMN].strip() for row in rows if (row.get(PATH_COLUMN) or "").strip()]
        if not entries:
            raise UserError(f"the manifest {path} lists no files (a '{PATH_COLUMN}' header and no paths under it)")
    else:
        entries = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(path.parent / e) if not Path(e).is_absolute() else Path(e) for e in entries]


def expand_inputs(inputs: Sequence[str]) -> list[Path]:
    """Every audio file named by ``inputs``, resolved, deduplicated, in a stable order (the order given; a folder's
    and a glob's files sorted). A manifest's entries are taken as given (a bad one becomes an error row later)."""
    extensions = audio_extensions()
    out: list[Path] = []
    seen: set[Path] = set()

    def add(paths: Iterable[Path]) -> None:
        for p in paths:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                out.append(key)

    for raw in inputs:
        path = Path(raw).expanduser()
        if any(c in raw for c in GLOB_CHARS) and not path.exists():
            matches = sorted(Path(m) for m in glob.glob(str(path), recursive=True))
            files = [m for m in matches if _is_audio(m, extensions)]
            if not files:
                raise UserError(f"the pattern {raw!r} matches no audio file: check it (quote it for the shell)")
            add(files)
        elif path.is_dir():
            files = sorted(p for p in _walk(path) if _is_audio(p, extensions))
            if not files:
                raise UserError(f"the folder {path} holds no audio file soundfile can read")
            add(files)
        elif path.suffix.lower() in MANIFEST_SUFFIXES and path.is_file():
            add(read_manifest(path))
        elif path.exists():
            add([path])
        else:
            raise UserError(f"input {raw} does not exist: pass audio files, folders, globs or a CSV/TXT manifest")
    if not out:
        raise UserError("no input files: pass audio files, folders, globs or a CSV/TXT manifest")
    return out
