"""Downmix to mono and resample with a streaming soxr resampler (chunk-size invariant)."""

from __future__ import annotations

import logging

import numpy as np
import soxr

from ser_live.realtime.errors import UserError

logger = logging.getLogger(__name__)

DEFAULT_QUALITY = "HQ"
_QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ")


def downmix(block: np.ndarray) -> np.ndarray:
    """``(n,)`` or ``(n, channels)`` -> float32 ``(n,)``: the mean of the channels."""
    arr = np.asarray(block)
    if arr.ndim == 1:
        return arr.astype(np.float32, copy=False)
    if arr.ndim != 2:
        raise ValueError(f"audio block must be (n,) or (n, channels), got shape {arr.shape}")
    if arr.shape[1] == 1:
        return arr[:, 0].astype(np.float32, copy=False)
    return arr.mean(axis=1, dtype=np.float64).astype(np.float32)


def _check_rate(name: str, rate: object) -> int:
    if isinstance(rate, bool) or not isinstance(rate, int | np.integer) or rate <= 0:
        raise UserError(f"{name} sample rate must be a positive whole number of Hz, got {rate!r}")
    return int(rate)


class Resampler:
    """``process(block) -> float32 (m,)`` at ``out_rate``; ``flush()`` returns the tail; ``reset()``.

    Feeding the same audio in any chunking gives the same output (soxr's streaming mode is exact).
    After ``flush()`` the resampler is ready for a new stream.
    """

    def __init__(self, in_rate: int, out_rate: int, quality: str = DEFAULT_QUALITY) -> None:
        self.in_rate = _check_rate("input", in_rate)
        self.out_rate = _check_rate("output", out_rate)
        if quality not in _QUALITIES:
            raise ValueError(f"soxr quality must be one of {_QUALITIES}, got {quality!r}")
        self.quality = quality
        self.passthrough = self.in_rate == self.out_rate
        self._stream: soxr.ResampleStream | None = None
        if not self.passthrough:
            self._stream = soxr.ResampleStream(self.in_rate, self.out_rate, 1, dtype="float32", quality=quality)
        self.samples_in = 0
        self.samples_out = 0

    def process(self, block: np.ndarray) -> np.ndarray:
        mono = np.ascontiguousarray(downmix(block))
        self.samples_in += mono.shape[0]
        if self._stream is None:
            out = mono.copy()
        elif mono.shape[0] == 0:
            out = np.zeros(0, np.float32)
        else:
            out = self._stream.resample_chunk(mono)
        self.samples_out += out.shape[0]
        return out

    def flush(self) -> np.ndarray:
        """The samples still held in the filter (the stream's end), then start afresh."""
        if self._stream is None:
            tail = np.zeros(0, np.float32)
        else:
            tail = self._stream.resample_chunk(np.zeros(0, np.float32), last=True)
            self._stream.clear()
        self.samples_out += tail.shape[0]
        logger.debug("resampler flushed: %d in, %d out", self.samples_in, self.samples_out)
        self.samples_in = 0
        self.samples_out = 0
        return tail

    def reset(self) -> None:
        if self._stream is not None:
            self._stream.clear()
        self.samples_in = 0
        self.samples_out = 0
