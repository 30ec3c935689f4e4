"""What the engine reports: one ``WindowEvent`` per classified window, a ``SessionSummary`` at the end, and a
``JsonlWriter`` that writes them one JSON object per line, flushed as written."""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np

from ser_live.realtime.errors import UserError

logger = logging.getLogger(__name__)

TIME_DECIMALS = 3  # seconds -> millisecond resolution
PROB_DECIMALS = 4
RATIO_DECIMALS = 3
LATENCY_DECIMALS = 3  # milliseconds -> microsecond resolution
AFFECT_DECIMALS = 4
UNCERTAIN = "uncertain"  # what the dashboard and the summary show for an uncertain window
QUADRANTS = ("high_positive", "high_negative", "low_negative", "low_positive")
STDOUT_TARGET = "-"
WINDOW_TYPE = "window"
#: The version of the window and summary objects (JSONL, /ws, /stream, ser-batch rows); docs/events.md.
#: Raised whenever a field changes meaning or goes away; adding a field keeps it.
EVENT_SCHEMA = 1
SUMMARY_TYPE = "summary"


def _round(value: float, decimals: int) -> float | None:
    """A JSON-safe rounded float (NaN/inf become null rather than invalid JSON)."""
    v = float(value)
    return round(v, decimals) if math.isfinite(v) else None


def _round_map(values: Mapping[str, float], decimals: int) -> dict[str, float | None]:
    return {str(k): _round(v, decimals) for k, v in values.items()}


@dataclass(frozen=True)
class WindowEvent:
    """A classified window. Times are audio time of the stream in seconds; ``probs`` are smoothed,
    ``raw_probs`` are the model's output for this window alone; ``latency_ms`` holds at least ``features``,
    ``inference`` and ``total``. ``probs`` / ``confidence`` are calibrated when the model has a temperature.
    ``arousal`` / ``valence`` in [-1, 1] come from the smoothed probabilities before the temperature (None when
    the model's labels have no mapping), or from the model's trained head smoothed like the probabilities;
    ``raw_arousal`` / ``raw_valence`` are this window's alone (as ``raw_probs``); ``uncertain`` is set when
    ``confidence`` is below the model's (or ``--min-confidence``'s) threshold: the window keeps its label and
    probabilities, but the dashboard and the summary count it as uncertain."""

    start_s: float
    end_s: float
    label: str
    confidence: float
    probs: dict[str, float]
    raw_probs: dict[str, float]
    speech_ratio: float
    latency_ms: dict[str, float] = field(default_factory=dict)
    arousal: float | None = None
    valence: float | None = None
    uncertain: bool = False
    raw_arousal: float | None = None
    raw_valence: float | None = None
    profile: str | None = None  # the personal profile whose layer made the probabilities (None: the model's own)

    @property
    def shown_label(self) -> str:
        """What to show for this window: its label, or ``uncertain``."""
        return UNCERTAIN if self.uncertain else self.label

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": WINDOW_TYPE,
            "schema": EVENT_SCHEMA,
            "start_s": _round(self.start_s, TIME_DECIMALS),
            "end_s": _round(self.end_s, TIME_DECIMALS),
            "label": self.label,
            "confidence": _round(self.confidence, PROB_DECIMALS),
            "probs": _round_map(self.probs, PROB_DECIMALS),
            "raw_probs": _round_map(self.raw_probs, PROB_DECIMALS),
            "speech_ratio": _round(self.speech_ratio, RATIO_DECIMALS),
            "arousal": None if self.arousal is None else _round(self.arousal, AFFECT_DECIMALS),
            "valence": None if self.valence is None else _round(self.valence, AFFECT_DECIMALS),
            "raw_arousal": None if self.raw_arousal is None else _round(self.raw_arousal, AFFECT_DECIMALS),
            "raw_valence": None if self.raw_valence is None else _round(self.raw_valence, AFFECT_DECIMALS),
            "uncertain": bool(self.uncertain),
            "profile": self.profile,
            "latency_ms": _round_map(self.latency_ms, LATENCY_DECIMALS),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> WindowEvent:
        """Inverse of ``to_dict`` (up to rounding), e.g. for reading a JSONL file back."""
        if d.get("type", WINDOW_TYPE) != WINDOW_TYPE:
            raise ValueError(f"not a window event: type {d.get('type')!r}")
        schema = d.get("schema", EVENT_SCHEMA)  # files written before 0.2.0 carry none: the same fields
        if not isinstance(schema, int) or schema > EVENT_SCHEMA:
            raise ValueError(f"event schema {schema!r} is newer than this ser-live reads ({EVENT_SCHEMA}): upgrade "
                             "ser-live")
        return cls(
            start_s=float(d["start_s"]),
            end_s=float(d["end_s"]),
            label=str(d["label"]),
            confidence=float(d["confidence"]),
            probs={str(k): float(v) for k, v in d["probs"].items()},
            raw_probs={str(k): float(v) for k, v in d["raw_probs"].items()},
            speech_ratio=float(d["speech_ratio"]),
            latency_ms={str(k): float(v) for k, v in d.get("latency_ms", {}).items()},
            arousal=_optional_float(d.get("arousal")),
            valence=_optional_float(d.get("valence")),
            uncertain=bool(d.get("uncertain", False)),
            raw_arousal=_optional_float(d.get("raw_arousal")),
            raw_valence=_optional_float(d.get("raw_valence")),
            profile=None if d.get("profile") is None else str(d["profile"]),
        )


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def quadrant(arousal: float, valence: float) -> str:
    """The circumplex quadrant of a point: high/low arousal x positive/negative valence (0 counts as high/positive)."""
    return f"{'high' if arousal >= 0 else 'low'}_{'positive' if valence >= 0 else 'negative'}"


@dataclass
class SessionSummary:
    """Accumulates a session. ``add(event, hop_s)`` counts a classified window and credits its label with one
    hop of time (consecutive windows overlap, so a hop is the time each one newly accounts for); an uncertain
    window credits ``uncertain_s`` instead. Arousal and valence are averaged over every classified window that
    has them, and each such window credits its circumplex quadrant with one hop.

    ``audio_s`` / ``speech_s`` / ``windows_total`` / ``dropped_audio_s`` / ``overflows`` are set or incremented
    by whoever knows them (the engine, the capture).
    """

    labels: Sequence[str] = ()
    audio_s: float = 0.0
    speech_s: float = 0.0
    windows: int = 0  # classified windows (events)
    windows_total: int = 0  # all windows cut, classified or not
    counts: dict[str, int] = field(default_factory=dict)
    time_s: dict[str, float] = field(default_factory=dict)
    uncertain_windows: int = 0
    uncertain_s: float = 0.0
    affect_windows: int = 0
    arousal_sum: float = 0.0
    valence_sum: float = 0.0
    quadrant_s: dict[str, float] = field(default_factory=dict)
    dropped_audio_s: float = 0.0
    overflows: int = 0
    profile: str | None = None

    def __post_init__(self) -> None:
        self.labels = tuple(self.labels)
        for label in self.labels:
            self.counts.setdefault(label, 0)
            self.time_s.setdefault(label, 0.0)
        for name in QUADRANTS:
            self.quadrant_s.setdefault(name, 0.0)

    def add(self, event: WindowEvent, hop_s: float) -> None:
        self.windows += 1
        if event.uncertain:
            self.uncertain_windows += 1
            self.uncertain_s += float(hop_s)
        else:
            self.counts[event.label] = self.counts.get(event.label, 0) + 1
            self.time_s[event.label] = self.time_s.get(event.label, 0.0) + float(hop_s)
        if event.arousal is not None and event.valence is not None:
            self.affect_windows += 1
            self.arousal_sum += event.arousal
            self.valence_sum += event.valence
            name = quadrant(event.arousal, event.valence)
            self.quadrant_s[name] = self.quadrant_s.get(name, 0.0) + float(hop_s)

    def add_audio(self, audio_s: float = 0.0, speech_s: float = 0.0) -> None:
        self.audio_s += float(audio_s)
        self.speech_s += float(speech_s)

    @property
    def arousal_mean(self) -> float | None:
        return self.arousal_sum / self.affect_windows if self.affect_windows else None

    @property
    def valence_mean(self) -> float | None:
        return self.valence_sum / self.affect_windows if self.affect_windows else None

    @property
    def dominant(self) -> str | None:
        """The label with the most (certain) time (ties: the first in label order); None before any such window."""
        if self.windows == self.uncertain_windows:
            return None
        order = self._order()
        return max(order, key=lambda k: (self.time_s.get(k, 0.0), -order.index(k)))

    def _order(self) -> list[str]:
        extra = sorted(set(self.counts) - set(self.labels))
        return [*self.labels, *extra]

    def to_dict(self) -> dict[str, Any]:
        order = self._order()
        arousal, valence = self.arousal_mean, self.valence_mean
        return {
            "type": SUMMARY_TYPE,
            "schema": EVENT_SCHEMA,
            "audio_s": _round(self.audio_s, TIME_DECIMALS),
            "speech_s": _round(self.speech_s, TIME_DECIMALS),
            "windows": self.windows,
            "windows_total": self.windows_total,
            "counts": {k: self.counts.get(k, 0) for k in order},
            "time_per_emotion_s": {k: _round(self.time_s.get(k, 0.0), TIME_DECIMALS) for k in order},
            "uncertain_windows": self.uncertain_windows,
            "uncertain_s": _round(self.uncertain_s, TIME_DECIMALS),
            "dominant": self.dominant,
            "arousal_mean": None if arousal is None else _round(arousal, AFFECT_DECIMALS),
            "valence_mean": None if valence is None else _round(valence, AFFECT_DECIMALS),
            "time_per_quadrant_s": {k: _round(self.quadrant_s.get(k, 0.0), TIME_DECIMALS) for k in QUADRANTS},
            "dropped_audio_s": _round(self.dropped_audio_s, TIME_DECIMALS),
            "overflows": self.overflows,
            "profile": self.profile,
        }


def _json_default(obj: object) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _ends_mid_line(path: str) -> bool:
    """Whether a regular file's last byte is not a newline (its last line was cut); a pipe or device is never opened
    for reading."""
    if not os.path.isfile(path):
        return False
    try:
        with open(path, "rb") as fh:
            if fh.seek(0, os.SEEK_END) == 0:
                return False
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) != b"\n"
    except OSError:
        return False


class JsonlWriter:
    """One JSON object per line to a file (appended) or stdout (``"-"``), flushed after every line.

    Each line goes out in a single ``write`` call on a file opened in append mode, so a reader (``tail -f``)
    never sees half a line from us. ``close()`` is idempotent; stdout is flushed, never closed. If stdout's
    reader goes away (``ser-live --jsonl - | head``) further lines are dropped quietly.
    """

    def __init__(self, target: str | os.PathLike[str], append: bool = True) -> None:
        self.target = str(target)
        self.lines_written = 0
        self.broken = False
        self.failed = False  # a write failed (and was reported)
        self._closed = False
        self._file: IO[str] | None = None
        if self.target == STDOUT_TARGET:
            return
        try:
            self._file = open(self.target, "a" if append else "w", encoding="utf-8", newline="\n")  # noqa: SIM115
            if append and _ends_mid_line(self.target):  # an earlier run cut short (a full disk): start a new line
                self._file.write("\n")
        except OSError as err:
            raise self._error(err) from None

    def _error(self, err: OSError) -> UserError:
        reason = err.strerror or type(err).__name__
        return UserError(f"cannot write JSONL to {self.target}: {reason}; choose a writable path or '-'")

    @property
    def closed(self) -> bool:
        return self._closed

    def write(self, obj: Mapping[str, Any]) -> None:
        if self._closed:
            raise ValueError(f"JSONL writer for {self.target} is closed")
        if self.broken or self.failed:  # the reader went away, or a write failed and was reported
            return
        line = json.dumps(obj, ensure_ascii=False, default=_json_default) + "\n"
        stream = self._file if self._file is not None else sys.stdout
        try:
            stream.write(line)
            stream.flush()
        except BrokenPipeError:
            self._on_broken_pipe()
            return
        except OSError as err:
            self.failed = True
            raise self._error(err) from None
        self.lines_written += 1

    def _on_broken_pipe(self) -> None:
        logger.debug("JSONL reader went away; dropping further lines")
        self.broken = True
        if self._file is None:
            # As the Python docs advise: point stdout at devnull so the interpreter's final flush stays quiet.
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                os.close(devnull)
            except (OSError, ValueError):
                logger.debug("could not redirect stdout after a broken pipe")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._file is not None:
            try:
                self._file.close()
            except OSError as err:
                if not self.failed:
                    raise self._error(err) from None
                logger.debug("closing %s after a failed write: %s", self.target, err)
            finally:
                self._file = None
        elif not self.broken:
            try:
                sys.stdout.flush()
            except (BrokenPipeError, ValueError):
                self.broken = True

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
