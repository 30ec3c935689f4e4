"""The resume journal and the outputs: ``files.csv``, ``windows.parquet``, ``run.json`` (all written atomically).

The journal (``DIR/.ser-batch/journal.jsonl``) gets one JSON line per scored file, flushed as it is written, after
a header naming the model (sha256) and the settings. A re-run with the same header skips every file whose path,
size and modification time are unchanged; a different model or settings is refused unless ``--fresh``. The
outputs are rebuilt from the journal at the end of every run, interrupted or not: the inputs in the order given,
then the files earlier runs into the same folder scored. One run at a time holds the folder (a lock).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from array import array
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ser_live.realtime.errors import UserError
from ser_live.realtime.events import EVENT_SCHEMA
from ser_live.realtime.fileio import atomic_write, loads_json, write_json

logger = logging.getLogger(__name__)

STATE_DIR = ".ser-batch"
JOURNAL_NAME = "journal.jsonl"
FILES_CSV = "files.csv"
WINDOWS_PARQUET = "windows.parquet"
RUN_JSON = "run.json"
BASE_FILE_COLUMNS = (
    "path", "channel", "status", "error", "duration_s", "speech_s", "windows", "label", "confidence", "arousal",
    "valence", "uncertain_windows", "profile", "note",
)  # fmt: skip
BASE_WINDOW_COLUMNS = (
    "path", "channel", "start_s", "end_s", "label", "confidence", "uncertain", "arousal", "valence", "speech_ratio",
)  # fmt: skip
STRING_WINDOW_COLUMNS = ("path", "channel", "label")
BOOL_WINDOW_COLUMNS = ("uncertain",)
PARQUET_SCHEMA_KEY = "ser_live_event_schema"  # windows.parquet's key-value metadata: the rows' schema version
PYARROW_HINT = "pip install 'ser-live[batch]' (pyarrow writes windows.parquet)"


def file_columns(labels: Sequence[str]) -> list[str]:
    return [*BASE_FILE_COLUMNS, *(f"prob_{label}" for label in labels)]


def window_columns(labels: Sequence[str]) -> list[str]:
    return [*BASE_WINDOW_COLUMNS, *(f"prob_{label}" for label in labels), *(f"raw_{label}" for label in labels)]


def require_pyarrow() -> None:
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise UserError(f"ser-batch needs pyarrow: {PYARROW_HINT}") from None


LOCK_NAME = "lock"
FRESH_HINT = "pass --fresh to start over (the outputs there are replaced), or choose another --out"


class Journal:
    """Append-only record of finished files; ``done`` maps path -> result (as :meth:`FileScorer.score` gives).

    Holds an exclusive lock on ``DIR/.ser-batch/lock`` while open (the OS drops it when the process dies, so a
    killed run leaves no stale lock). A journal of another model or other settings, one that is damaged, or a
    folder with ser-batch outputs but no journal is refused unless ``fresh``; a cut last line (a run killed
    mid-write) is dropped and the rest kept."""

    def __init__(self, out_dir: Path, header: Mapping[str, Any], fresh: bool = False) -> None:
        self.path = out_dir / STATE_DIR / JOURNAL_NAME
        self.header = dict(header)
        self.done: dict[str, dict[str, Any]] = {}
        self._fh: Any = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"cannot create {self.path.parent}: {err.strerror}; pass a writable --out") from None
        self._lock = _lock(self.path.parent / LOCK_NAME, out_dir)
        try:
            if self.path.is_dir():
                raise UserError(f"the journal {self.path} is a folder: remove it, or choose another --out")
            if not fresh and self.path.exists():
                self._load()
            elif not fresh and (out_dir / FILES_CSV).exists():
                raise UserError(f"--out {out_dir} holds a {FILES_CSV} but no ser-batch journal: {FRESH_HINT}")
            if not self.done:
                self._start()
            self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        except OSError as err:
            self._lock.close()
            raise UserError(f"cannot use the journal {self.path}: {err.strerror or err}; {FRESH_HINT}") from None
        except BaseException:
            self._lock.close()
            raise

    def _load(self) -> None:
        raw = self.path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(f"the journal {self.path} is not text (damaged or not ser-batch's): {FRESH_HINT}") \
                from None
        lines = text.split("\n")
        cut = lines.pop() if lines else ""  # after the last newline: "" or a line a killed run left half-written
        header = _json_object(lines[0]) if lines else None
        if header is None or "header" not in header:
            raise UserError(f"the journal {self.path} has no ser-batch header (damaged or foreign): {FRESH_HINT}")
        if header != {"header": self.header}:
            raise UserError(f"--out {self.path.parent.parent} holds a run with another model or other settings: "
                            f"{FRESH_HINT}")
        for number, line in enumerate(lines[1:], start=2):
            result = _json_object(line)
            path = result.get("key", {}).get("path") if result is not None else None
            if not isinstance(path, str) or not isinstance(result.get("rows"), list):  # type: ignore[union-attr]
                raise UserError(f"the journal {self.path} is damaged at line {number}: {FRESH_HINT}")
            self.done[path] = result  # type: ignore[assignment]
        if cut:  # keep the whole lines, drop the half one, so that the next append starts a line of its own
            logger.warning("%s: dropping a cut last line (a run was stopped mid-write)", self.path)
            kept = "".join(line + "\n" for line in lines).encode("utf-8")
            atomic_write(self.path, lambda fh: fh.write(kept))

    def _start(self) -> None:
        text = json.dumps({"header": self.header}) + "\n"
        atomic_write(self.path, lambda fh: fh.write(text.encode("utf-8")))

    def is_done(self, key: Mapping[str, Any]) -> bool:
        prev = self.done.get(str(key["path"]))
        return prev is not None and prev["key"] == dict(key)

    def append(self, result: Mapping[str, Any]) -> None:
        line = json.dumps(result, allow_nan=False, default=json_default) + "\n"
        try:
            self._fh.write(line)
            self._fh.flush()
        except OSError as err:
            raise UserError(f"cannot write the journal {self.path}: {err.strerror or err}; free space or fix the "
                            "folder and re-run (files done so far are kept)") from None
        self.done[result["key"]["path"]] = dict(result)

    def close(self) -> None:
        try:
            if self._fh is not None:
                self._fh.close()
        except OSError as err:  # the last flush on a full disk: the next run drops the cut line
            logger.warning("closing %s: %s", self.path, err.strerror or err)
        finally:
            self._lock.close()


def _json_object(line: str) -> dict[str, Any] | None:
    try:
        value = loads_json(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _lock(path: Path, out_dir: Path) -> Any:
    """An open file holding an exclusive ``flock`` on ``path``; UserError when another process holds it."""
    import fcntl
    import os

    try:
        fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - closed by Journal.close
    except OSError as err:
        raise UserError(f"cannot create {path}: {err.strerror}; pass a writable --out") from None
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.seek(0)
        holder = fh.read().strip() or "?"
        fh.close()
        raise UserError(f"another ser-batch (pid {holder}) is writing to --out {out_dir}: wait for it to end, or "
                        "choose another --out") from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    return fh


def _csv_value(value: Any) -> Any:
    return "" if value is None else value


def write_files_csv(path: Path, labels: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=file_columns(labels), extrasaction="ignore", lineterminator="\n",
                            restval="")  # rows of older journals have no note
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(v) for k, v in row.items()})
    data = buffer.getvalue().encode("utf-8")
    atomic_write(path, lambda fh: fh.write(data))


class WindowColumns:
    """A file's window rows as columns: numbers in ``array('d')`` (8 bytes a value, NaN = null), labels and flags in
    lists. Ten hours of windows (70 k rows) take ~13 MB instead of ~130 MB of row dicts; they cross process
    boundaries as they are and go into the journal as ``{"columns": {name: [values]}}``."""

    def __init__(self, labels: Sequence[str]) -> None:
        self.names = window_columns(labels)
        self.data: dict[str, Any] = {
            n: [] if n in STRING_WINDOW_COLUMNS or n in BOOL_WINDOW_COLUMNS else array("d") for n in self.names
        }

    def __len__(self) -> int:
        return len(self.data[self.names[0]])

    def append(self, row: Mapping[str, Any]) -> None:
        for name, column in self.data.items():
            value = row.get(name)
            column.append(math.nan if value is None and isinstance(column, array) else value)

    def extend(self, other: WindowColumns) -> None:
        for name, column in self.data.items():
            column.extend(other.data[name])

    def to_json(self) -> dict[str, Any]:
        return {"columns": {n: [None if isinstance(v, float) and math.isnan(v) else v for v in c]
                            for n, c in self.data.items()}}

    @classmethod
    def of(cls, value: Any, labels: Sequence[str]) -> WindowColumns:
        """From a result's ``windows``: columns (this format), a journal's JSON of them, or row dicts (older)."""
        if isinstance(value, WindowColumns):
            return value
        out = cls(labels)
        if isinstance(value, Mapping):
            for name, column in out.data.items():
                values = value["columns"].get(name, [])
                column.extend([math.nan if v is None else v for v in values] if isinstance(column, array) else values)
        else:
            for row in value:
                out.append(row)
        return out


def json_default(obj: object) -> Any:
    """``json.dumps(default=...)`` for results: window columns as JSON."""
    if isinstance(obj, WindowColumns):
        return obj.to_json()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def write_windows_parquet(path: Path, labels: Sequence[str], windows: WindowColumns) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = []
    for name in windows.names:
        values = windows.data[name]
        if name in STRING_WINDOW_COLUMNS:
            arrays.append(pa.array(values, type=pa.string()))
        elif name in BOOL_WINDOW_COLUMNS:
            arrays.append(pa.array(values, type=pa.bool_()))
        else:
            x = np.frombuffer(values, dtype=np.float64) if len(values) else np.zeros(0)
            arrays.append(pa.array(x, type=pa.float64(), mask=np.isnan(x)))
    table = pa.Table.from_arrays(arrays, names=list(windows.names))
    table = table.replace_schema_metadata({PARQUET_SCHEMA_KEY: str(EVENT_SCHEMA)})  # docs/events.md
    atomic_write(path, lambda fh: pq.write_table(table, fh))


def write_outputs(
    out_dir: Path,
    labels: Sequence[str],
    order: Sequence[str],
    journal: Journal,
    run_info: Mapping[str, Any],
) -> dict[str, int]:
    """files.csv, windows.parquet and run.json for the inputs in ``order`` that are done; returns the counts."""
    rows: list[Mapping[str, Any]] = []
    windows = WindowColumns(labels)
    given = set(order)
    order = [*order, *(p for p in journal.done if p not in given)]  # earlier runs' files stay in the outputs
    for path in order:
        result = journal.done.get(path)
        if result is not None:
            rows += result["rows"]
            windows.extend(WindowColumns.of(result["windows"], labels))
    counts = {"inputs": len(given), "files_done": sum(p in journal.done for p in given),
              "files_in_outputs": sum(p in journal.done for p in order), "rows": len(rows), "windows": len(windows)}
    for status in ("ok", "no_speech", "error"):
        counts[status] = sum(r["status"] == status for r in rows)
    audio_s = sum(r["duration_s"] or 0.0 for r in rows if r["channel"] in ("mix", "0", "all"))
    target = out_dir / FILES_CSV
    try:
        write_files_csv(target, labels, rows)
        target = out_dir / WINDOWS_PARQUET
        write_windows_parquet(target, labels, windows)
        target = out_dir / RUN_JSON
        write_json(target, {**run_info, "counts": counts, "audio_hours": round(audio_s / 3600, 4)})
    except OSError as err:
        raise UserError(f"cannot write {target}: {err.strerror or err}; the scores are kept in the journal: fix "
                        "that and re-run to write the outputs") from None
    return counts


def check_outputs_writable(out_dir: Path) -> None:
    """Before scoring: --out's outputs can be written there (not folders; the folder takes a new file)."""
    from ser_live.realtime.fileio import check_folder_writable

    for name in (FILES_CSV, WINDOWS_PARQUET, RUN_JSON):
        if (out_dir / name).is_dir():
            raise UserError(f"{out_dir / name} is a folder: remove it, or choose another --out")
    check_folder_writable(out_dir / FILES_CSV, "--out")


def stat_key(path: str) -> dict[str, Any] | None:
    """``batch.score.file_key`` of ``path``, or None when it cannot be read (it is scored, and reported, then)."""
    from ser_live.batch.score import file_key

    try:
        return file_key(path)
    except OSError:
        return None
