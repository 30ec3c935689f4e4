"""Sliding windows over the speech-flagged stream: where they lie and whether they hold enough speech.

The stream is preceded by ``window - hop`` zero samples (non-speech), so the first window ends one hop after the
stream starts. A window ends at every hop boundary ``hop, 2*hop, ...`` (stream positions, counted from the real
start); its start ``end - window`` may be negative (padding). A window is *classified* when it holds at least
``min_speech_s`` of speech. ``flush()`` zero-pads the stream to the next hop boundary (only when samples lie past
the last one) and emits that last window.

Only speech counts are kept, not audio: the features of a window are computed elsewhere from its positions.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ser_live.realtime.errors import UserError

logger = logging.getLogger(__name__)

DEFAULT_SAMPLE_RATE = 16000
DEFAULT_WINDOW_SAMPLES = 32000
DEFAULT_HOP_SAMPLES = 8000
DEFAULT_MIN_SPEECH_S = 0.5
DEFAULT_ALIGN = 1
_EPS = 1e-9


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def round_to_multiple(seconds: float, sample_rate: int, multiple: int) -> int:
    """``seconds`` as a whole number of samples that is a multiple of ``multiple`` (at least one multiple)."""
    if not _is_int(sample_rate) or sample_rate <= 0:
        raise UserError(f"sample rate must be a positive whole number of Hz, got {sample_rate!r}")
    if not _is_int(multiple) or multiple <= 0:
        raise ValueError(f"multiple must be a positive whole number of samples, got {multiple!r}")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds < math.inf:
        raise UserError(f"window and hop lengths must be positive numbers of seconds, got {seconds!r}")
    return max(1, round(seconds * sample_rate / multiple)) * multiple


@dataclass(frozen=True)
class WindowConfig:
    """Window geometry in samples at ``sample_rate``; ``align``: window and hop must be multiples of it (the
    feature hop length, so that cached frames are reused)."""

    sample_rate: int = DEFAULT_SAMPLE_RATE
    window_samples: int = DEFAULT_WINDOW_SAMPLES
    hop_samples: int = DEFAULT_HOP_SAMPLES
    min_speech_s: float = DEFAULT_MIN_SPEECH_S
    align: int = DEFAULT_ALIGN

    def __post_init__(self) -> None:
        for name in ("sample_rate", "window_samples", "hop_samples", "align"):
            value = getattr(self, name)
            if not _is_int(value) or value <= 0:
                raise UserError(f"{name} must be a positive whole number, got {value!r}")
        if self.hop_samples > self.window_samples:
            raise UserError(
                f"hop ({self.hop_samples} samples) is longer than the window ({self.window_samples}); "
                "choose a hop no longer than the window"
            )
        for name in ("window_samples", "hop_samples"):
            if getattr(self, name) % self.align:
                raise UserError(
                    f"{name} {getattr(self, name)} is not a multiple of the feature hop length {self.align}; "
                    "round it with round_to_multiple()"
                )
        m = self.min_speech_s
        if isinstance(m, bool) or not isinstance(m, int | float) or not 0 <= m <= self.window_s + _EPS:
            raise UserError(
                f"min speech {m!r} s must be between 0 and the window length ({self.window_s:g} s); "
                "lower --min-speech or lengthen the window"
            )

    @property
    def window_s(self) -> float:
        return self.window_samples / self.sample_rate

    @property
    def hop_s(self) -> float:
        return self.hop_samples / self.sample_rate

    @property
    def padding_samples(self) -> int:
        """Zero samples that precede the stream."""
        return self.window_samples - self.hop_samples

    @property
    def min_speech_samples(self) -> int:
        """``speech_s >= min_speech_s`` in whole samples."""
        return max(0, math.ceil(self.min_speech_s * self.sample_rate - _EPS))


@dataclass(frozen=True)
class Window:
    """One window in stream samples (``start`` may be negative: padding); ``speech_s`` seconds of it are speech."""

    start: int
    end: int
    speech_s: float
    speech_ratio: float
    classify: bool


class Windower:
    """``process(samples, flags) -> list[Window]``, ``flush() -> list[Window]``, ``reset()``.

    ``Windower(WindowConfig(...))`` or ``Windower(sample_rate=..., window_samples=..., ...)``; keywords override
    fields of a given config. Only ``len(samples)`` is used from the audio. After ``flush()`` it is ready for a
    new stream.
    """

    def __init__(self, config: WindowConfig | None = None, /, **overrides: Any) -> None:
        base = config if config is not None else WindowConfig()
        self.config = dataclasses.replace(base, **overrides) if overrides else base
        self.reset()

    def reset(self) -> None:
        self._pos = 0  # stream samples received
        self._speech = 0  # speech samples in [0, _pos)
        self._next = 1  # index m of the next window to end: it ends at m * hop
        self._next_start = 1  # index of the next window whose start count is still to be recorded
        self._start_counts: dict[int, int] = {}  # window index -> speech samples before its start

    @property
    def position(self) -> int:
        """Stream samples received so far."""
        return self._pos

    @property
    def next_end(self) -> int:
        """Where the next window ends (stream samples)."""
        return self._next * self.config.hop_samples

    def process(self, samples: np.ndarray | int, flags: np.ndarray) -> list[Window]:
        """``samples``: the decided audio (only its length is used) or that length; ``flags``: per-sample speech."""
        f = np.asarray(flags, dtype=bool).reshape(-1)
        n = samples if _is_int(samples) else len(np.asarray(samples))
        if n != len(f):
            raise ValueError(f"got {n} samples but {len(f)} speech flags")
        if n == 0:
            return []
        cum = np.cumsum(f, dtype=np.int64)  # cum[i]: speech in [_pos, _pos + i + 1)
        base_pos, base_speech = self._pos, self._speech

        def count_at(p: int) -> int:  # speech samples in [0, p) for base_pos <= p <= base_pos + n
            return base_speech + (int(cum[p - base_pos - 1]) if p > base_pos else 0)

        self._pos += n
        self._speech += int(cum[-1])
        cfg = self.config
        while self._next_start * cfg.hop_samples - cfg.window_samples <= self._pos:
            s = self._next_start * cfg.hop_samples - cfg.window_samples
            self._start_counts[self._next_start] = 0 if s <= 0 else count_at(s)
            self._next_start += 1
        out: list[Window] = []
        while self._next * cfg.hop_samples <= self._pos:
            out.append(self._emit(count_at(self._next * cfg.hop_samples)))
        return out

    def flush(self) -> list[Window]:
        """Zero-pad to the next hop boundary (if samples lie past the last one) and emit that window; reset."""
        out: list[Window] = []
        if self._pos > (self._next - 1) * self.config.hop_samples:  # samples past the last boundary
            pad = self.next_end - self._pos
            out = self.process(pad, np.zeros(pad, bool))  # non-speech zeros up to the boundary: one window
        logger.debug("windower flushed at %d samples", self._pos)
        self.reset()
        return out

    def _emit(self, speech_before_end: int) -> Window:
        cfg = self.config
        m = self._next
        end = m * cfg.hop_samples
        count = speech_before_end - self._start_counts.pop(m)
        self._next += 1
        return Window(
            start=end - cfg.window_samples,
            end=end,
            speech_s=count / cfg.sample_rate,
            speech_ratio=count / cfg.window_samples,
            classify=count >= cfg.min_speech_samples,
        )
