"""Voice activity: webrtcvad on fixed frames, widened by onset padding and hangover, as per-sample flags.

Raw decisions come from webrtcvad on consecutive frames ``[k*F, (k+1)*F)`` of the stream (``F`` samples per
frame). A sample ``t`` is *speech* when a voiced raw frame lies within ``[t - hangover, t + pad]``, i.e. every
voiced frame marks ``[k*F - pad, (k+1)*F + hangover)`` as speech: onset padding so that word beginnings are not
clipped, hangover so that short pauses and word endings are kept.

To decide a sample the gate needs the frames up to ``pad`` samples after it, so ``process`` returns the samples
it has decided on, delayed by about ``pad`` (plus the partial frame), together with their flags. ``flush`` decides
the rest at the end of the stream. The output is identical whatever chunk sizes the input is fed in.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import webrtcvad

from ser_live.realtime.errors import UserError

logger = logging.getLogger(__name__)

DEFAULT_SAMPLE_RATE = 16000
DEFAULT_FRAME_MS = 30
DEFAULT_AGGRESSIVENESS = 2
DEFAULT_PAD_MS = 150
DEFAULT_HANGOVER_MS = 300
DEFAULT_NOISE_MARGIN_DB = 10.0
"""A voiced frame must also be this much above the noise floor (0 = off): webrtcvad alone takes stationary noise
at -30 to -20 dBFS (a fan, a hot microphone) for speech (docs/history/benchmarks-v1-v6.md, "Speech gate and
level")."""
DEFAULT_NOISE_WINDOW_S = 3.0
"""The noise floor is the quietest frame of the last this many seconds (minimum statistics)."""
DEFAULT_AGC = True
"""Level-normalise what webrtcvad sees: each frame is scaled so that the loudest frame of the last
``noise_window_s`` sits at ``AGC_TARGET_DBFS``. webrtcvad's decisions depend on the absolute level; after this they
depend only on the signal's shape, so a constant input gain (a quiet or a hot microphone) cuts the same windows."""
AGC_TARGET_DBFS = -20.0
AGC_MIN_PEAK_DBFS = -150.0  # below this the recent past is silence: no gain
SUPPORTED_RATES = (8000, 16000, 32000, 48000)
SUPPORTED_FRAME_MS = (10, 20, 30)
AGGRESSIVENESS_RANGE = (0, 3)
MS_PER_S = 1000
_INT16_SCALE = 32768.0
_INT16_MIN, _INT16_MAX = -32768, 32767
_NO_FRAME = -1


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


@dataclass(frozen=True)
class VadConfig:
    """Speech-gate settings. ``pad_ms``: speech starts this much before a voiced frame (and the output is
    delayed by it); ``hangover_ms``: speech lasts this much after a voiced frame."""

    sample_rate: int = DEFAULT_SAMPLE_RATE
    frame_ms: int = DEFAULT_FRAME_MS
    aggressiveness: int = DEFAULT_AGGRESSIVENESS
    pad_ms: float = DEFAULT_PAD_MS
    hangover_ms: float = DEFAULT_HANGOVER_MS
    noise_margin_db: float = DEFAULT_NOISE_MARGIN_DB
    noise_window_s: float = DEFAULT_NOISE_WINDOW_S
    agc: bool = DEFAULT_AGC

    def __post_init__(self) -> None:
        if not _is_int(self.sample_rate) or self.sample_rate not in SUPPORTED_RATES:
            raise UserError(
                f"VAD sample rate {self.sample_rate!r} is not supported by webrtcvad; "
                f"use one of {', '.join(map(str, SUPPORTED_RATES))} Hz"
            )
        if not _is_int(self.frame_ms) or self.frame_ms not in SUPPORTED_FRAME_MS:
            raise UserError(
                f"VAD frame length {self.frame_ms!r} ms is not supported by webrtcvad; "
                f"use one of {', '.join(map(str, SUPPORTED_FRAME_MS))} ms"
            )
        lo, hi = AGGRESSIVENESS_RANGE
        if not _is_int(self.aggressiveness) or not lo <= self.aggressiveness <= hi:
            raise UserError(f"VAD aggressiveness must be a whole number {lo}..{hi}, got {self.aggressiveness!r}")
        for name in ("pad_ms", "hangover_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < float("inf"):
                raise UserError(f"VAD {name} must be a number of milliseconds >= 0, got {value!r}")
        if isinstance(self.noise_margin_db, bool) or not 0 <= self.noise_margin_db < float("inf"):
            raise UserError(f"VAD noise margin must be a number of dB >= 0 (0 = off), got {self.noise_margin_db!r}")
        if not self.noise_window_s > 0:
            raise UserError(f"VAD noise window must be > 0 seconds, got {self.noise_window_s!r}")

    @property
    def frame_samples(self) -> int:
        return self.sample_rate * self.frame_ms // MS_PER_S

    @property
    def pad_samples(self) -> int:
        return round(self.pad_ms * self.sample_rate / MS_PER_S)

    @property
    def hangover_samples(self) -> int:
        return round(self.hangover_ms * self.sample_rate / MS_PER_S)

    @property
    def noise_window_frames(self) -> int:
        return max(1, round(self.noise_window_s * MS_PER_S / self.frame_ms))


def to_int16(samples: np.ndarray) -> np.ndarray:
    """float [-1, 1] -> int16, clipped (NaN -> 0) so that loud or broken input cannot wrap around."""
    x = np.asarray(samples, dtype=np.float64) * _INT16_SCALE
    if not np.all(np.isfinite(x)):
        x = np.nan_to_num(x, nan=0.0, posinf=_INT16_MAX, neginf=_INT16_MIN)
    np.rint(x, out=x)
    np.clip(x, _INT16_MIN, _INT16_MAX, out=x)
    return x.astype(np.int16)


class SpeechGate:
    """``process(samples) -> (samples, flags)``, ``flush() -> (samples, flags)``, ``reset()``.

    ``SpeechGate(VadConfig(...))`` or ``SpeechGate(sample_rate=16000, aggressiveness=3, ...)``; keywords
    override fields of a given config. After ``flush()`` the gate is ready for a new stream.
    """

    def __init__(self, config: VadConfig | None = None, /, **overrides: Any) -> None:
        base = config if config is not None else VadConfig()
        self.config = dataclasses.replace(base, **overrides) if overrides else base
        self._frame = self.config.frame_samples
        self._pad = self.config.pad_samples
        self._hang = self.config.hangover_samples
        self.reset()

    # -- state -------------------------------------------------------------------------------------------
    def reset(self) -> None:
        self._vad = webrtcvad.Vad(self.config.aggressiveness)
        self._audio = np.zeros(0, np.float32)  # stream samples [_decided, _received)
        self._decided = 0
        self._received = 0
        self._voiced: list[bool] = []  # raw decisions of frames _frame_base, _frame_base + 1, ...
        self._frame_base = 0
        self._last_voiced = _NO_FRAME  # last voiced frame index before _frame_base
        self.frames = 0
        self.speech_frames = 0
        self.last_raw = False
        # levels of the last noise_window_frames - 1 frames (silent frames: +inf for the floor, -inf for the peak),
        # what the sliding minimum / maximum of the next frames also looks at
        history = self.config.noise_window_frames - 1
        self._floor_history = np.full(history, np.inf)
        self._peak_history = np.full(history, -np.inf)
        self._floor_now: float | None = None

    @property
    def noise_floor_dbfs(self) -> float | None:
        """The current noise-floor estimate (quietest frame of the noise window), None before the first frame."""
        return self._floor_now

    @property
    def latest_voiced_frame(self) -> int:
        """Index of the most recent voiced raw frame (-1 if none yet)."""
        for i in range(len(self._voiced) - 1, -1, -1):
            if self._voiced[i]:
                return self._frame_base + i
        return self._last_voiced

    @property
    def is_speech(self) -> bool:
        """Live indicator: is the newest received sample within hangover of a voiced raw frame?"""
        k = self.latest_voiced_frame
        return k != _NO_FRAME and self._received - 1 < (k + 1) * self._frame + self._hang

    @property
    def delay_samples(self) -> int:
        """How many received samples are not decided yet."""
        return self._received - self._decided

    # -- streaming ---------------------------------------------------------------------------------------
    def _classify_frame(self, frame: np.ndarray) -> bool:
        """webrtcvad's decision for one int16 frame of exactly ``frame_samples`` samples (already level-normalised
        when ``agc`` is on)."""
        return bool(self._vad.is_speech(frame.tobytes(), self.config.sample_rate))

    def _sliding_extreme(self, levels: np.ndarray, largest: bool) -> np.ndarray:
        """The maximum (or minimum) level over the noise window ending at each frame of ``levels`` (silent frames
        already set to -inf / +inf, so they take no part), and the window history carried to the next block:
        one vectorised pass whatever the block length, the same numbers for any chunking."""
        history = self._peak_history if largest else self._floor_history
        dense = np.concatenate([history, levels])
        windows = np.lib.stride_tricks.sliding_window_view(dense, self.config.noise_window_frames)
        extreme = windows.max(axis=1) if largest else windows.min(axis=1)
        kept = dense[len(dense) - len(history) :] if len(history) else history
        if largest:
            self._peak_history = kept
        else:
            self._floor_history = kept
        return extreme

    def _frame_decisions(self, frames: np.ndarray) -> list[bool]:
        """Raw decisions for float frames ``(n, frame_samples)``: webrtcvad on each (level-normalised) frame, and the
        frame stands ``noise_margin_db`` above the noise floor. Digital silence is never speech and takes no part in
        the level statistics (which stay relative). Levels, scaling and the sliding peak / floor are computed for the
        whole block at once."""
        power = np.mean(np.square(frames, dtype=np.float64), axis=1)
        levels = 10.0 * np.log10(np.maximum(power, np.finfo(np.float64).tiny))
        silent = power == 0.0
        cfg = self.config
        gains_db = np.zeros(len(frames))
        loud_enough = np.ones(len(frames), dtype=bool)
        if cfg.agc:
            peak = self._sliding_extreme(np.where(silent, -np.inf, levels), largest=True)
            gains_db = np.where(~silent & (peak > AGC_MIN_PEAK_DBFS), AGC_TARGET_DBFS - peak, 0.0)
        if cfg.noise_margin_db > 0:
            floor = self._sliding_extreme(np.where(silent, np.inf, levels), largest=False)
            loud_enough = silent | (levels >= floor + cfg.noise_margin_db)
            sounding = np.flatnonzero(~silent)
            if len(sounding):
                self._floor_now = float(floor[sounding[-1]])
        scaled = frames * np.power(10.0, gains_db / 20.0)[:, None] if cfg.agc else frames
        pcm = to_int16(scaled)
        # webrtcvad sees every frame (it adapts to what it has seen), then the gate's own conditions apply
        voiced = [self._classify_frame(frame) for frame in pcm]
        return [bool(v and not silent[k] and loud_enough[k]) for k, v in enumerate(voiced)]

    def process(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(samples, dtype=np.float32)
        if x.ndim == 2 and x.shape[1] == 1:
            x = x[:, 0]
        if x.ndim != 1:
            raise ValueError(f"SpeechGate takes mono samples (n,), got shape {x.shape}")
        if x.size:
            self._audio = np.concatenate([self._audio, x])
            self._received += x.shape[0]
            self._run_frames(self._received // self._frame)
        target = max(self._decided, (self._frame_base + len(self._voiced)) * self._frame - self._pad)
        return self._decide(target, final=False)

    def flush(self) -> tuple[np.ndarray, np.ndarray]:
        """Decide every remaining sample (a partial last frame counts as non-speech), then reset."""
        n_frames = self._frame_base + len(self._voiced)
        if self._received > n_frames * self._frame:
            self._voiced.append(False)  # partial frame: too short for webrtcvad, treated as non-speech
            self.frames += 1
        out = self._decide(self._received, final=True)
        logger.debug("VAD flushed: %d frames, %d voiced", self.frames, self.speech_frames)
        self.reset()
        return out

    def _run_frames(self, n_frames: int) -> None:
        first = self._frame_base + len(self._voiced)
        if n_frames <= first:
            return
        offset = first * self._frame - self._decided
        block = self._audio[offset : offset + (n_frames - first) * self._frame]
        for voiced in self._frame_decisions(block.reshape(-1, self._frame)):
            self._voiced.append(voiced)
            self.frames += 1
            self.speech_frames += voiced
            self.last_raw = voiced

    def _decide(self, target: int, final: bool) -> tuple[np.ndarray, np.ndarray]:
        count = target - self._decided
        if count <= 0:
            return np.zeros(0, np.float32), np.zeros(0, bool)
        f, base = self._frame, self._frame_base
        n_frames = base + len(self._voiced)
        # every voiced frame k marks [k*F - pad, (k+1)*F + hangover) as speech: paint those intervals (clipped to the
        # samples decided now), merged into runs. Frames after the stream's last one do not exist, and the frames
        # needed up to `target` (t + pad) all exist, so this is exactly "a voiced frame within [t - hangover,
        # t + pad]" for every sample t.
        voiced = base + np.flatnonzero(np.asarray(self._voiced, dtype=bool))
        frames = voiced if self._last_voiced == _NO_FRAME else np.concatenate([[self._last_voiced], voiced])
        starts = np.clip(frames * f - self._pad - self._decided, 0, count)
        ends = np.clip((frames + 1) * f + self._hang - self._decided, 0, count)
        flags = np.zeros(count, dtype=bool)
        if len(frames):  # starts and ends both grow with k: a run breaks where a start passes the previous end
            breaks = starts[1:] > ends[:-1]
            for a, b in zip(starts[np.r_[True, breaks]], ends[np.r_[breaks, True]], strict=True):
                flags[a:b] = True
        out = self._audio[:count].copy()
        self._audio = self._audio[count:]
        self._decided = target
        # frames before the one needed by the next undecided sample are summarised by _last_voiced
        new_base = min((target + self._pad) // f, n_frames)
        if new_base > base:
            before = voiced[voiced < new_base]
            if len(before):
                self._last_voiced = int(before[-1])
            del self._voiced[: new_base - base]
            self._frame_base = new_base
        return out, flags
