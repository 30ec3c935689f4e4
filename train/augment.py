"""Audio augmentation for training examples (never validation or test), after seed 2's Kaggle notebook.

Seed 2 gives the model three versions of every training clip: the clip, a noisy copy, and a copy that is time
stretched (rate 0.8, i.e. 25 % longer) and then pitch shifted (+0.7 semitone). :func:`augment_clip` returns the
augmented versions (not the original) for one clip of raw audio; the caller cuts them into live windows exactly as
it cuts the original.

Beyond the seed, two optional degradations (off by default) make a model less surprised by a real microphone:
a random gain (level changes, with clipping as a real input would) and a reverberation-like smearing by a
synthetic, exponentially decaying noise impulse response (a room).

Everything is deterministic given the ``numpy.random.Generator`` passed in, vectorised (no per-sample Python
loops) and returns new float32 arrays. ``librosa``'s phase vocoder and resampler are used for stretch and pitch:
the first call in a process costs about 1.5 s (numba's cached kernels load; in a brand-new environment numba
compiles them once, about 15 s, and caches them), later calls a few milliseconds per second of audio.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import librosa
import numpy as np

from realtime.errors import UserError

logger = logging.getLogger(__name__)

DEFAULT_NOISE_AMOUNT = 0.035
"""Seed 2: noise amplitude = 0.035 * uniform(0, 1) * peak of the clip."""
DEFAULT_PITCH_STEPS = 0.7
"""Seed 2: pitch shift of the stretched copy, in semitones."""
DEFAULT_STRETCH_RATE = 0.8
"""Seed 2: librosa time-stretch rate (< 1 slows down: the copy is 1 / 0.8 = 1.25 times longer)."""
DEFAULT_COPIES = 2
"""Augmented versions per clip; seed 2 makes two (a noisy one, a stretched + pitched one)."""
DEFAULT_GAIN_DB = 0.0
"""Extra, off: maximum random gain in dB (uniform in +/- this) applied to every augmented copy."""
DEFAULT_REVERB_PROBABILITY = 0.0
"""Extra, off: chance that an augmented copy is convolved with a synthetic room impulse response."""
DEFAULT_REVERB_RT60_S = (0.2, 0.8)
"""Range of the reverberation time (60 dB decay), seconds, drawn uniformly."""
DEFAULT_REVERB_DRR_DB = (0.0, 12.0)
"""Range of the direct-to-reverberant energy ratio, dB, drawn uniformly (lower = more reverberant)."""

STFT_N_FFT = 2048
"""librosa's default FFT size for stretch and pitch; shorter clips use the largest power of two that fits."""
MIN_N_FFT = 16
RT60_DECAY_DB = 60.0
CLIP_LEVEL = 1.0
MIN_STRETCH_RATE = 0.25
MAX_STRETCH_RATE = 4.0


STRONG_COPIES = 4
STRONG_GAIN_DB = 6.0
STRONG_REVERB_PROBABILITY = 0.5

KIND_NOISE = "noise"
KIND_STRETCH_PITCH = "stretch_pitch"
KIND_PLAIN = "plain"


@dataclass(frozen=True)
class AugmentConfig:
    """How to augment a training clip: :func:`augment_clip` returns exactly ``copies`` versions.

    The versions cycle through the enabled transforms, in this order:

    - ``noise``: a noisy copy when ``noise > 0`` (:func:`add_noise` with ``amount=noise``);
    - ``stretch_pitch``: a stretched, then pitched copy when ``stretch_rate != 1`` or ``pitch_steps != 0``. The
      first one uses the seed's exact values; later ones draw the pitch uniformly in ``+/- pitch_steps`` and the
      rate log-uniformly between ``stretch_rate`` and ``1 / stretch_rate``, so more copies add variety rather
      than duplicates;
    - ``plain``: when neither is enabled but an extra (gain, reverberation) is, copies with the extras only.

    Every augmented copy is then, optionally, reverberated (probability ``reverb_probability``; before the noise:
    a room, then the microphone) and gained (uniform in ``+/- gain_db``, last). ``copies=0`` turns augmentation
    off. The default is seed 2's: ``copies=2`` gives ``[noisy, stretched x1.25 + pitched +0.7 st]``.
    """

    noise: float = DEFAULT_NOISE_AMOUNT
    pitch_steps: float = DEFAULT_PITCH_STEPS
    stretch_rate: float = DEFAULT_STRETCH_RATE
    copies: int = DEFAULT_COPIES
    gain_db: float = DEFAULT_GAIN_DB
    reverb_probability: float = DEFAULT_REVERB_PROBABILITY
    reverb_rt60_s: tuple[float, float] = DEFAULT_REVERB_RT60_S
    reverb_drr_db: tuple[float, float] = DEFAULT_REVERB_DRR_DB

    def __post_init__(self) -> None:
        if not self.noise >= 0:
            raise UserError(f"noise amount must be >= 0, got {self.noise}; use e.g. 0.035 (0 = off)")
        if not MIN_STRETCH_RATE <= self.stretch_rate <= MAX_STRETCH_RATE:
            raise UserError(
                f"stretch rate must be in [{MIN_STRETCH_RATE}, {MAX_STRETCH_RATE}], got {self.stretch_rate}; "
                "use e.g. 0.8 (1 = off)"
            )
        if not np.isfinite(self.pitch_steps):
            raise UserError(f"pitch shift must be a number of semitones, got {self.pitch_steps}")
        if self.copies < 0:
            raise UserError(f"augmentation copies must be >= 0, got {self.copies}; use 0 to turn it off")
        if not self.gain_db >= 0:
            raise UserError(f"gain range must be >= 0 dB, got {self.gain_db}; use e.g. 6 (0 = off)")
        if not 0.0 <= self.reverb_probability <= 1.0:
            raise UserError(f"reverberation probability must be in [0, 1], got {self.reverb_probability}")
        low, high = self.reverb_rt60_s
        if not 0 < low <= high:
            raise UserError(f"reverberation time range must be 0 < low <= high seconds, got {self.reverb_rt60_s}")
        low, high = self.reverb_drr_db
        if not low <= high:
            raise UserError(f"direct-to-reverberant range must be low <= high dB, got {self.reverb_drr_db}")
        if self.copies > 0 and not self.kinds:
            raise UserError(
                f"augmentation asks for {self.copies} copies but every transform is off; "
                "enable noise, stretch, pitch, gain or reverberation, or use no augmentation"
            )

    @classmethod
    def strong(cls) -> AugmentConfig:
        """Seed 2's two copies plus two more with random stretch/pitch and fresh noise, all with random gain
        (+/- 6 dB) and, half of the time, reverberation: for a live microphone in a room."""
        return cls(copies=STRONG_COPIES, gain_db=STRONG_GAIN_DB, reverb_probability=STRONG_REVERB_PROBABILITY)

    @property
    def has_noise(self) -> bool:
        return self.noise > 0

    @property
    def has_stretch_pitch(self) -> bool:
        return self.stretch_rate != 1.0 or self.pitch_steps != 0.0

    @property
    def has_extras(self) -> bool:
        return self.gain_db > 0 or self.reverb_probability > 0

    @property
    def kinds(self) -> tuple[str, ...]:
        """The transforms the copies cycle through (empty when everything is off)."""
        kinds = tuple(
            kind
            for kind, enabled in ((KIND_NOISE, self.has_noise), (KIND_STRETCH_PITCH, self.has_stretch_pitch))
            if enabled
        )
        if not kinds and self.has_extras:
            return (KIND_PLAIN,)
        return kinds

    def to_dict(self) -> dict[str, object]:
        """JSON-ready copy (for ``config.json``)."""
        return {
            "noise": self.noise,
            "pitch_steps": self.pitch_steps,
            "stretch_rate": self.stretch_rate,
            "copies": self.copies,
            "gain_db": self.gain_db,
            "reverb_probability": self.reverb_probability,
            "reverb_rt60_s": list(self.reverb_rt60_s),
            "reverb_drr_db": list(self.reverb_drr_db),
        }


NO_AUGMENT = AugmentConfig(copies=0)
"""Augmentation off."""


def _as_audio(y: np.ndarray) -> np.ndarray:
    audio = np.asarray(y, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"augmentation takes mono audio of shape (n,), got shape {audio.shape}")
    if not np.isfinite(audio).all():
        raise ValueError("audio holds NaN or infinite samples")
    return audio


def _n_fft(n_samples: int) -> int:
    """librosa's 2048, or the largest power of two that fits a shorter clip (avoids a warning and edge effects)."""
    if n_samples >= STFT_N_FFT:
        return STFT_N_FFT
    return max(MIN_N_FFT, 1 << max(0, int(n_samples).bit_length() - 1))


def _pad_short(audio: np.ndarray) -> np.ndarray:
    """Zero-pad a clip shorter than one minimal STFT frame (the result is cut back afterwards)."""
    if audio.size >= MIN_N_FFT:
        return audio
    return np.pad(audio, (0, MIN_N_FFT - audio.size))


def add_noise(y: np.ndarray, rng: np.random.Generator, amount: float = DEFAULT_NOISE_AMOUNT) -> np.ndarray:
    """White Gaussian noise of amplitude ``amount * uniform(0, 1) * max|y|`` (seed 2; its notebook used max(y)).

    A silent clip stays silent.
    """
    audio = _as_audio(y)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    amplitude = amount * rng.uniform() * peak
    noise = rng.standard_normal(audio.size).astype(np.float32)
    return (audio + np.float32(amplitude) * noise).astype(np.float32)


def time_stretch(y: np.ndarray, rate: float) -> np.ndarray:
    """Phase-vocoder time stretch (``librosa.effects.time_stretch``): length ``round(len(y) / rate)``."""
    audio = _as_audio(y)
    if audio.size == 0 or rate == 1.0:
        return audio.copy()
    length = round(audio.size / rate)
    padded = _pad_short(audio)
    out = librosa.effects.time_stretch(padded, rate=rate, n_fft=_n_fft(padded.size))
    return librosa.util.fix_length(np.asarray(out, dtype=np.float32), size=length)


def pitch_shift(y: np.ndarray, sr: int, n_steps: float) -> np.ndarray:
    """Pitch shift by ``n_steps`` semitones keeping the length (``librosa.effects.pitch_shift``)."""
    audio = _as_audio(y)
    if audio.size == 0 or n_steps == 0:
        return audio.copy()
    padded = _pad_short(audio)
    out = librosa.effects.pitch_shift(padded, sr=sr, n_steps=n_steps, n_fft=_n_fft(padded.size))
    return np.asarray(out[: audio.size], dtype=np.float32)


def apply_gain(y: np.ndarray, gain_db: float) -> np.ndarray:
    """Scale by ``gain_db`` decibels and clip to [-1, 1] as a real input stage would."""
    audio = _as_audio(y)
    scaled = audio * np.float32(10.0 ** (gain_db / 20.0))
    return np.clip(scaled, -CLIP_LEVEL, CLIP_LEVEL).astype(np.float32)


def synthetic_impulse_response(sr: int, rng: np.random.Generator, rt60_s: float, drr_db: float) -> np.ndarray:
    """A unit direct path followed by exponentially decaying Gaussian noise (60 dB down at ``rt60_s``).

    The tail is scaled so that direct energy / tail energy = ``drr_db``.
    """
    n = max(1, round(rt60_s * sr))
    t = np.arange(n, dtype=np.float64) / sr
    tail = rng.standard_normal(n) * 10.0 ** (-(RT60_DECAY_DB / 20.0) * t / rt60_s)
    tail *= 10.0 ** (-drr_db / 20.0) / max(float(np.sqrt(np.sum(tail**2))), np.finfo(np.float64).tiny)
    response = np.concatenate(([1.0], tail))
    return response.astype(np.float32)


def add_reverb(y: np.ndarray, sr: int, rng: np.random.Generator, rt60_s: float, drr_db: float) -> np.ndarray:
    """Convolve with :func:`synthetic_impulse_response` (FFT), keep the length and the RMS level of ``y``."""
    audio = _as_audio(y)
    if audio.size == 0:
        return audio.copy()
    response = synthetic_impulse_response(sr, rng, rt60_s, drr_db)
    size = audio.size + response.size - 1
    n_fft = 1 << (size - 1).bit_length()
    wet = np.fft.irfft(np.fft.rfft(audio, n_fft) * np.fft.rfft(response, n_fft), n_fft)[: audio.size]
    rms_in = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    rms_out = float(np.sqrt(np.mean(np.square(wet))))
    if rms_out > 0:
        wet *= rms_in / rms_out
    return wet.astype(np.float32)


def _stretch_pitch_values(config: AugmentConfig, round_index: int, rng: np.random.Generator) -> tuple[float, float]:
    """(rate, semitones): the seed's values for the first such copy, random ones within the range afterwards."""
    if round_index == 0:
        return config.stretch_rate, config.pitch_steps
    log_rate = abs(np.log(config.stretch_rate))
    rate = float(np.exp(rng.uniform(-log_rate, log_rate))) if log_rate > 0 else 1.0
    steps = float(rng.uniform(-abs(config.pitch_steps), abs(config.pitch_steps))) if config.pitch_steps else 0.0
    return rate, steps


def _extras(y: np.ndarray, sr: int, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    if config.reverb_probability > 0 and rng.uniform() < config.reverb_probability:
        rt60 = float(rng.uniform(*config.reverb_rt60_s))
        drr = float(rng.uniform(*config.reverb_drr_db))
        y = add_reverb(y, sr, rng, rt60, drr)
    return y


def augment_clip(y: np.ndarray, sr: int, config: AugmentConfig, rng: np.random.Generator) -> list[np.ndarray]:
    """Exactly ``config.copies`` augmented versions of one clip (the original is not included).

    See :class:`AugmentConfig`; seed 2's default gives ``[noisy copy, stretched (x1.25 longer) and pitched
    (+0.7 semitone) copy]``. An empty clip gives ``copies`` empty arrays.
    """
    audio = _as_audio(y)
    if audio.size == 0:
        return [audio.copy() for _ in range(config.copies)]
    kinds = config.kinds
    versions: list[np.ndarray] = []
    for index in range(config.copies):
        kind, round_index = kinds[index % len(kinds)], index // len(kinds)
        if kind == KIND_NOISE:
            version = add_noise(_extras(audio, sr, config, rng), rng, config.noise)
        elif kind == KIND_STRETCH_PITCH:
            rate, steps = _stretch_pitch_values(config, round_index, rng)
            version = _extras(pitch_shift(time_stretch(audio, rate), sr, steps), sr, config, rng)
        else:
            version = _extras(audio.copy(), sr, config, rng)
        if config.gain_db > 0:
            version = apply_gain(version, float(rng.uniform(-config.gain_db, config.gain_db)))
        versions.append(version)
    return versions
