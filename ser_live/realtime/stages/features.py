"""Audio features, defined once for training and live use.

Three named presets with frozen parameters:

``seed180``
    Means over frames of 40 MFCC, 12 chroma and 128 mel bands (180 values), as seed notebook 1.
``seed162``
    Means over frames of zero-crossing rate (1), chroma (12), MFCC (20), RMS (1) and mel (128) = 162 values,
    as seed notebook 2.
``logmel``
    The log-mel time-frequency map of the window itself, ``(frames, n_mels)``, for the CNN that keeps the shape
    of prosody instead of averaging it away.

Everything is computed from one shared STFT per frame (periodic Hann window, ``center=False``: only frames that
lie fully inside the window count). Chroma uses a fixed tuning (0 cents) — no per-window tuning estimate, which
costs more than the rest and makes the same sound give different numbers. The seeds computed chroma from the STFT
magnitude (``chroma_stft(S=np.abs(stft))``) and MFCC/mel from the power spectrogram; so do we.

This module is plain numpy: the mel and chroma filterbanks and the DCT are built once per preset with the same
formulas as librosa (tests prove equality with ``librosa.filters`` and ``librosa.feature``), so the runtime needs
neither librosa nor numba and has no JIT delay before its first prediction.

:class:`FeatureExtractor` computes one window from its samples (the reference). :class:`FrameFeatures` is the
streaming form: it computes each frame once, keeps a ring of recent frames, and returns exactly the same window
features from cached frames, so that sliding windows cost only their new frames.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from ser_live.realtime.errors import UserError

logger = logging.getLogger(__name__)

# Parameters shared by the seed presets (librosa's defaults, which the seed notebooks used).
DEFAULT_SAMPLE_RATE = 16_000
SEED_N_FFT = 2048
SEED_HOP_LENGTH = 512
SEED_N_MELS = 128
N_CHROMA = 12
TOP_DB = 80.0
# log-mel preset: 32 ms frames every 10 ms at 16 kHz, 64 bands over the speech range.
LOGMEL_N_FFT = 512
LOGMEL_HOP_LENGTH = 160
LOGMEL_N_MELS = 64
LOGMEL_FMIN = 20.0
# power_to_db floor (librosa's ``amin``) and the zero-crossing threshold (librosa's default).
AMIN = 1e-10
WIDE_AMIN = 1e-20  # logmel_wide's floor: -200 dB
ZCR_THRESHOLD = 1e-10
# webrtcvad works only at these rates; the model rate is the VAD rate.
SUPPORTED_SAMPLE_RATES = (8000, 16000, 32000, 48000)

COMPONENT_SIZES_FIXED = {"zcr": 1, "rms": 1, "chroma": N_CHROMA}
MEAN_COMPONENTS = ("zcr", "chroma", "mfcc", "rms", "mel")
KINDS = ("mean", "frames", "encoder")  # encoder: a window's pooled frames of a frame-encoder graph


@dataclass(frozen=True)
class FeaturePreset:
    """Frozen description of a feature set. Stored in config.json and in the ONNX model's metadata."""

    name: str
    kind: str  # "mean": one vector per window (means over frames); "frames": a (frames, n_mels) map
    components: tuple[str, ...] = ()
    sample_rate: int = DEFAULT_SAMPLE_RATE
    n_fft: int = SEED_N_FFT
    hop_length: int = SEED_HOP_LENGTH
    n_mels: int = SEED_N_MELS
    n_mfcc: int = 0
    n_chroma: int = N_CHROMA
    fmin: float = 0.0
    fmax: float | None = None  # None = sample_rate / 2
    top_db: float | None = TOP_DB  # MFCC dB range per window (librosa.power_to_db's top_db)
    amin: float = AMIN  # log floor of the frames kind (power); models from before this field have AMIN
    dim: int = 0  # the encoder kind: the frame encoder's width (the window's embedding is mean + std: 2 * dim)

    @property
    def floor_db(self) -> float:
        """The log-mel value of digital silence for this preset."""
        return 10.0 * float(np.log10(self.amin))

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UserError(f"feature preset {self.name!r}: kind {self.kind!r} is not one of {KINDS}")
        unknown = [c for c in self.components if c not in MEAN_COMPONENTS]
        if unknown:
            raise UserError(
                f"feature preset {self.name!r}: unknown components {unknown}; supported: {MEAN_COMPONENTS}"
            )
        if self.sample_rate not in SUPPORTED_SAMPLE_RATES:
            raise UserError(
                f"feature preset {self.name!r}: sample rate {self.sample_rate} Hz is not supported "
                f"(WebRTC VAD runs at the model rate; use one of {SUPPORTED_SAMPLE_RATES})"
            )
        if self.hop_length <= 0 or self.n_fft < self.hop_length:
            raise UserError(f"feature preset {self.name!r}: need 0 < hop_length <= n_fft")
        if not 0 < self.amin < 1:
            raise UserError(f"feature preset {self.name!r}: amin must be in (0, 1), got {self.amin}")

    @property
    def f_max(self) -> float:
        return float(self.sample_rate) / 2 if self.fmax is None else float(self.fmax)

    def component_size(self, component: str) -> int:
        if component == "mfcc":
            return self.n_mfcc
        if component == "mel":
            return self.n_mels
        return COMPONENT_SIZES_FIXED[component]

    @property
    def vector_size(self) -> int:
        return sum(self.component_size(c) for c in self.components)

    def n_frames(self, window_samples: int) -> int:
        """Frames that lie fully inside a window of this many samples."""
        if window_samples < self.n_fft:
            raise UserError(
                f"window of {window_samples} samples is shorter than one {self.n_fft}-sample frame of preset "
                f"{self.name!r}; use a longer window"
            )
        return 1 + (window_samples - self.n_fft) // self.hop_length

    def feature_shape(self, window_samples: int) -> tuple[int, ...]:
        if self.kind == "mean":
            return (self.vector_size,)
        if self.kind == "encoder":
            return (2 * self.dim,)
        return (self.n_frames(window_samples), self.n_mels)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["components"] = list(self.components)
        if not d["dim"]:
            del d["dim"]  # the presets of the CNNs are written as they always were
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeaturePreset:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise UserError(
                f"feature preset has unknown fields {sorted(unknown)}: it was made by a newer ser-live; upgrade"
            )
        kwargs = dict(d)
        kwargs["components"] = tuple(kwargs.get("components", ()))
        return cls(**kwargs)


_LOGMEL = FeaturePreset(
    name="logmel",
    kind="frames",
    n_fft=LOGMEL_N_FFT,
    hop_length=LOGMEL_HOP_LENGTH,
    n_mels=LOGMEL_N_MELS,
    fmin=LOGMEL_FMIN,
    top_db=None,
)

PRESETS: dict[str, FeaturePreset] = {
    "seed180": FeaturePreset(
        name="seed180", kind="mean", components=("mfcc", "chroma", "mel"), n_mfcc=40
    ),
    "seed162": FeaturePreset(
        name="seed162", kind="mean", components=("zcr", "chroma", "mfcc", "rms", "mel"), n_mfcc=20
    ),
    "logmel": _LOGMEL,
    # logmel with a floor 100 dB deeper: quiet recordings at -20 dB gain stay above it, so a level reference
    # (realtime/stages/normalize.py) removes a gain exactly; digital silence still reads as the floor
    "logmel_wide": replace(_LOGMEL, name="logmel_wide", amin=WIDE_AMIN),
}


def get_preset(name: str) -> FeaturePreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise UserError(f"unknown feature preset {name!r}; choose one of {sorted(PRESETS)}") from None


# --- filterbanks (librosa's formulas, plain numpy) ---------------------------------------------------------

_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0
_A440 = 440.0


def hz_to_mel(freqs: np.ndarray) -> np.ndarray:
    """Slaney mel scale (librosa ``htk=False``)."""
    freqs = np.asarray(freqs, dtype=np.float64)
    mels = freqs / _F_SP
    log_t = freqs >= _MIN_LOG_HZ
    return np.where(log_t, _MIN_LOG_MEL + np.log(np.maximum(freqs, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP, mels)


def mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    freqs = _F_SP * mels
    log_t = mels >= _MIN_LOG_MEL
    return np.where(log_t, _MIN_LOG_HZ * np.exp(_LOGSTEP * (mels - _MIN_LOG_MEL)), freqs)


def mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Slaney-normalised triangular mel filters, shape (n_mels, 1 + n_fft // 2) — as ``librosa.filters.mel``."""
    fftfreqs = np.fft.rfftfreq(n_fft, d=1.0 / sr)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(np.array(fmin)), hz_to_mel(np.array(fmax)), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    lower = -ramps[:n_mels] / fdiff[:n_mels, None]
    upper = ramps[2 : n_mels + 2] / fdiff[1 : n_mels + 1, None]
    weights = np.maximum(0.0, np.minimum(lower, upper)).astype(np.float32)
    enorm = 2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels])
    return weights * enorm[:, None].astype(np.float32)


def chroma_filterbank(sr: int, n_fft: int, n_chroma: int = N_CHROMA) -> np.ndarray:
    """Chroma filters at tuning 0, shape (n_chroma, 1 + n_fft // 2) — as ``librosa.filters.chroma``."""
    ctroct, octwidth = 5.0, 2.0
    frequencies = np.linspace(0, sr, n_fft, endpoint=False)[1:]
    frqbins = n_chroma * np.log2(frequencies / (_A440 / 16))
    frqbins = np.concatenate(([frqbins[0] - 1.5 * n_chroma], frqbins))
    binwidthbins = np.concatenate((np.maximum(frqbins[1:] - frqbins[:-1], 1.0), [1]))
    d = np.subtract.outer(frqbins, np.arange(0, n_chroma, dtype="d")).T
    n_chroma2 = np.round(float(n_chroma) / 2)
    d = np.remainder(d + n_chroma2 + 10 * n_chroma, n_chroma) - n_chroma2
    wts = np.exp(-0.5 * (2 * d / np.tile(binwidthbins, (n_chroma, 1))) ** 2)
    wts = wts / np.maximum(np.sqrt(np.sum(wts**2, axis=0, keepdims=True)), np.finfo(wts.dtype).tiny)
    wts *= np.tile(np.exp(-0.5 * (((frqbins / n_chroma - ctroct) / octwidth) ** 2)), (n_chroma, 1))
    wts = np.roll(wts, -3 * (n_chroma // 12), axis=0)
    return np.ascontiguousarray(wts[:, : 1 + n_fft // 2], dtype=np.float32)


def dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Orthonormal DCT-II basis, shape (n_out, n_in): ``scipy.fft.dct(x, type=2, norm='ortho')[:n_out]``."""
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    basis[0] /= np.sqrt(2.0)
    return basis.astype(np.float32)


def hann_window(n: int) -> np.ndarray:
    """Periodic Hann window (``scipy.signal.get_window('hann', n)``, librosa's STFT default)."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float32)


# --- computation -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Banks:
    window: np.ndarray
    mel: np.ndarray
    chroma: np.ndarray | None
    dct: np.ndarray | None


def _build_banks(preset: FeaturePreset) -> _Banks:
    uses = set(preset.components)
    return _Banks(
        window=hann_window(preset.n_fft),
        mel=mel_filterbank(preset.sample_rate, preset.n_fft, preset.n_mels, preset.fmin, preset.f_max),
        chroma=chroma_filterbank(preset.sample_rate, preset.n_fft, preset.n_chroma) if "chroma" in uses else None,
        dct=dct_matrix(preset.n_mels, preset.n_mfcc) if "mfcc" in uses else None,
    )


def frame_signal(samples: np.ndarray, n_fft: int, hop_length: int) -> np.ndarray:
    """View of the frames that lie fully inside ``samples``: shape (n_frames, n_fft)."""
    n_frames = 1 + (len(samples) - n_fft) // hop_length
    if n_frames <= 0:
        return np.zeros((0, n_fft), dtype=samples.dtype)
    return np.lib.stride_tricks.sliding_window_view(samples, n_fft)[::hop_length][:n_frames]


@dataclass
class _FrameBlock:
    """Per-frame quantities; which ones are filled depends on the preset."""

    mel: np.ndarray  # power mel (mean kind) or log-mel dB (frames kind), (n, n_mels)
    chroma: np.ndarray | None = None  # normalised chroma, (n, 12)
    zcr: np.ndarray | None = None  # (n,)
    rms: np.ndarray | None = None  # (n,)


def _compute_frames(preset: FeaturePreset, banks: _Banks, frames: np.ndarray) -> _FrameBlock:
    """Features of each frame (rows of ``frames``), from one STFT."""
    frames = np.asarray(frames, dtype=np.float32)
    mag = np.abs(np.fft.rfft(frames * banks.window, axis=-1)).astype(np.float32)
    mel_power = (mag * mag) @ banks.mel.T
    if preset.kind == "frames":
        return _FrameBlock(mel=10.0 * np.log10(np.maximum(mel_power, preset.amin)))
    block = _FrameBlock(mel=mel_power)
    uses = set(preset.components)
    if "chroma" in uses and banks.chroma is not None:
        raw = mag @ banks.chroma.T
        norm = np.max(np.abs(raw), axis=1, keepdims=True)
        norm[norm < np.finfo(np.float32).tiny] = 1.0
        block.chroma = raw / norm
    if "zcr" in uses:
        clean = np.where(np.abs(frames) <= ZCR_THRESHOLD, 0.0, frames)
        sign = np.signbit(clean)
        crossings = np.count_nonzero(sign[:, 1:] != sign[:, :-1], axis=1)
        block.zcr = (crossings / preset.n_fft).astype(np.float32)
    if "rms" in uses:
        block.rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1)).astype(np.float32)
    return block


def _pool_window(preset: FeaturePreset, banks: _Banks, block: _FrameBlock) -> np.ndarray:
    """Window features from the frames inside it."""
    if preset.kind == "frames":
        return np.ascontiguousarray(block.mel, dtype=np.float32)
    parts: list[np.ndarray] = []
    for component in preset.components:
        if component == "mel":
            parts.append(block.mel.mean(axis=0))
        elif component == "mfcc":
            assert banks.dct is not None
            db = 10.0 * np.log10(np.maximum(block.mel, AMIN))
            if preset.top_db is not None:
                db = np.maximum(db, db.max() - preset.top_db)
            parts.append((db @ banks.dct.T).mean(axis=0))
        elif component == "chroma":
            assert block.chroma is not None
            parts.append(block.chroma.mean(axis=0))
        elif component == "zcr":
            assert block.zcr is not None
            parts.append(np.array([block.zcr.mean()]))
        elif component == "rms":
            assert block.rms is not None
            parts.append(np.array([block.rms.mean()]))
    return np.concatenate(parts).astype(np.float32)


class FeatureExtractor:
    """Reference computation: the features of one window of audio at ``preset.sample_rate``."""

    def __init__(self, preset: FeaturePreset) -> None:
        self.preset = preset
        self._banks = _build_banks(preset)

    def frame_count(self, n_samples: int) -> int:
        return self.preset.n_frames(n_samples)

    def window_features(self, samples: np.ndarray) -> np.ndarray:
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 1:
            raise UserError(f"window_features expects mono samples (1-D), got shape {samples.shape}")
        self.preset.n_frames(len(samples))  # validates the length
        frames = frame_signal(samples, self.preset.n_fft, self.preset.hop_length)
        return _pool_window(self.preset, self._banks, _compute_frames(self.preset, self._banks, frames))


class FrameFeatures:
    """Streaming frame features on the global grid ``k * hop_length`` (stream positions).

    ``lead_in`` zero samples precede the stream (the windower's padding), so windows that start before the
    stream (negative positions) are served too. ``process()`` carries leftover samples between calls; each frame
    is computed once. ``window(start, end)`` equals ``FeatureExtractor.window_features(stream[start:end])``.
    """

    def __init__(self, preset: FeaturePreset, lead_in: int = 0, capacity_frames: int = 1024) -> None:
        if lead_in % preset.hop_length:
            raise UserError(f"lead_in {lead_in} must be a multiple of hop_length {preset.hop_length}")
        self.preset = preset
        self.lead_in = lead_in
        self.capacity = capacity_frames
        self._banks = _build_banks(preset)
        self.reset()

    def reset(self) -> None:
        p = self.preset
        self._pending = np.zeros(self.lead_in, dtype=np.float32)  # samples not yet consumed by a frame
        self._pending_start = -self.lead_in  # stream position of _pending[0]
        self._first_frame = 0  # index (on the grid from -lead_in) of the oldest cached frame
        self._n_frames = 0  # frames computed so far
        self._mel = np.zeros((self.capacity, p.n_mels), dtype=np.float32)
        self._chroma = np.zeros((self.capacity, p.n_chroma), dtype=np.float32)
        self._zcr = np.zeros(self.capacity, dtype=np.float32)
        self._rms = np.zeros(self.capacity, dtype=np.float32)

    @property
    def position(self) -> int:
        """Stream position just after the last sample received."""
        return self._pending_start + len(self._pending)

    def process(self, samples: np.ndarray) -> None:
        p = self.preset
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        buf = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        frames = frame_signal(buf, p.n_fft, p.hop_length)
        n_new = len(frames)
        if n_new:
            block = _compute_frames(p, self._banks, frames)
            self._store(block, n_new)
        consumed = n_new * p.hop_length
        self._pending = buf[consumed:].copy()
        self._pending_start += consumed

    def _store(self, block: _FrameBlock, n_new: int) -> None:
        if n_new > self.capacity:  # keep only the newest frames
            drop = n_new - self.capacity
            self._n_frames += drop
            block = _FrameBlock(
                mel=block.mel[drop:],
                chroma=None if block.chroma is None else block.chroma[drop:],
                zcr=None if block.zcr is None else block.zcr[drop:],
                rms=None if block.rms is None else block.rms[drop:],
            )
            n_new = self.capacity
        idx = (np.arange(self._n_frames, self._n_frames + n_new)) % self.capacity
        self._mel[idx] = block.mel
        if block.chroma is not None:
            self._chroma[idx] = block.chroma
        if block.zcr is not None:
            self._zcr[idx] = block.zcr
        if block.rms is not None:
            self._rms[idx] = block.rms
        self._n_frames += n_new
        self._first_frame = max(self._first_frame, self._n_frames - self.capacity)

    def window(self, start: int, end: int) -> np.ndarray:
        """Features of stream samples ``[start, end)`` (positions may be negative inside the lead-in)."""
        p = self.preset
        n = p.n_frames(end - start)
        offset = start + self.lead_in
        if offset < 0 or offset % p.hop_length:
            raise ValueError(f"window start {start} is not on the frame grid (hop {p.hop_length}, lead-in)")
        first = offset // p.hop_length
        last = first + n  # exclusive
        if first < self._first_frame:
            raise ValueError(f"frames for window [{start}, {end}) are no longer cached; raise capacity_frames")
        if last > self._n_frames:
            raise ValueError(f"window [{start}, {end}) ends after the samples received ({self.position})")
        idx = np.arange(first, last) % self.capacity
        uses = set(p.components)  # gather only what this preset pools (log-mel: the mel frames alone)
        block = _FrameBlock(
            mel=self._mel[idx],
            chroma=self._chroma[idx] if "chroma" in uses else None,
            zcr=self._zcr[idx] if "zcr" in uses else None,
            rms=self._rms[idx] if "rms" in uses else None,
        )
        return _pool_window(p, self._banks, block)
