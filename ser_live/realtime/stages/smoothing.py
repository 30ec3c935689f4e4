"""Exponential moving average of probability vectors across classified windows.

``smoothed = alpha * probs + (1 - alpha) * previous``; ``alpha = 1`` (or ``enabled=False``) passes the raw
probabilities through. The average starts afresh when more than ``reset_after_s`` passed since the previous
classified window (a pause in speech: the next utterance should not inherit the last one's mood), or when time
goes backwards (a new stream).
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

DEFAULT_ALPHA = 0.5
DEFAULT_RESET_AFTER_S = 2.0
_TIME_EPS = 1e-9  # seconds: window times are sample counts / rate, so allow rounding


@dataclass(frozen=True)
class SmoothingConfig:
    alpha: float = DEFAULT_ALPHA
    reset_after_s: float = DEFAULT_RESET_AFTER_S
    enabled: bool = True

    def __post_init__(self) -> None:
        a = self.alpha
        if isinstance(a, bool) or not isinstance(a, int | float) or not 0 < a <= 1:
            raise UserError(f"smoothing alpha must be in (0, 1] (1 = off), got {a!r}")
        r = self.reset_after_s
        if isinstance(r, bool) or not isinstance(r, int | float) or math.isnan(r) or r <= 0:
            raise UserError(f"smoothing reset time must be a positive number of seconds, got {r!r}")

    @property
    def active(self) -> bool:
        return self.enabled and self.alpha < 1


class Smoother:
    """``process(probs, time_s) -> smoothed``, ``flush()``, ``reset()``.

    ``time_s``: the window's time in the stream (its end), used to notice gaps between classified windows.
    """

    def __init__(self, config: SmoothingConfig | None = None, /, **overrides: Any) -> None:
        base = config if config is not None else SmoothingConfig()
        self.config = dataclasses.replace(base, **overrides) if overrides else base
        self.reset()

    def reset(self) -> None:
        self._state: np.ndarray | None = None
        self._last_time: float | None = None

    def flush(self) -> None:
        """End of stream: nothing is held back; forget the average."""
        self.reset()

    @property
    def state(self) -> np.ndarray | None:
        """The current smoothed vector (None before the first window or after a reset)."""
        return None if self._state is None else self._state.copy()

    def process(self, probs: np.ndarray, time_s: float) -> np.ndarray:
        p = np.asarray(probs, dtype=np.float64).reshape(-1)
        t = float(time_s)
        if self._state is not None and self._state.shape != p.shape:
            raise ValueError(f"probability vector changed size from {self._state.size} to {p.size}")
        gap_reset = (
            self._last_time is not None
            and not -_TIME_EPS <= t - self._last_time <= self.config.reset_after_s + _TIME_EPS
        )
        if gap_reset:
            logger.debug("smoothing restarts: %.3f s since the last classified window", t - (self._last_time or 0))
        if self._state is None or gap_reset or not self.config.active:
            self._state = p.copy()
        else:
            a = self.config.alpha
            self._state = a * p + (1 - a) * self._state
        self._last_time = t
        return self._state.astype(np.float32)
