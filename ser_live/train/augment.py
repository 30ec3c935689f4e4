"""Audio augmentation for training examples (never validation or test), on ``audiomentations``.

Seed 2 gives the model three versions of every training clip: the clip, a noisy copy, and a copy that is time
stretched (rate 0.8, i.e. 25 % longer) and then pitch shifted (+0.7 semitone). :func:`augment_clip` returns the
augmented versions (not the original) for one clip of raw audio; the caller cuts them into live windows exactly as
it cuts the original. Seed 2's transforms are audiomentations' ``AddGaussianNoise`` (amplitude up to 0.035 x the
clip's peak), ``TimeStretch`` and ``PitchShift`` with librosa's phase vocoder — the same librosa calls the seed made
(tests prove them equal).

Beyond the seed, *channel* degradations (off by default; ``AugmentConfig.channel()`` turns them on) make a model
less surprised by a real microphone, room or phone line, each drawn per copy:

- random gain (uniform in +/- ``gain_db``; then clipped to [-1, 1], as a real input stage clips);
- EQ: a seven-band parametric equaliser (+/- ``eq_db``), a microphone's frequency response;
- telephone band: 300-3400 Hz band-pass, then down to 8 kHz and back (``soxr``);
- reverberation: a synthetic room impulse response (a direct path and an exponentially decaying noise tail with a
  drawn RT60 and direct-to-reverberant ratio: the statistical model of a diffuse late field). audiomentations'
  ``RoomSimulator`` (pyroomacoustics image sources) was measured here and not used: at a reflection order that
  runs in 0.1-0.6 s per clip its responses end after 60-80 ms, far short of a 0.5 s RT60; its
  ``ApplyImpulseResponse`` needs recorded responses on disk, which this project does not ship;
- noise at a random SNR (``noise_snr_db``), coloured from white to brown (``AddColorNoise``);
- codec: MP3 at 16-64 kbit/s (``Mp3Compression``).

audiomentations draws its parameters from Python's ``random`` and ``numpy.random`` modules; every call here seeds
both from the ``numpy.random.Generator`` passed in, so a copy is deterministic given that generator. Everything
returns new float32 arrays. librosa's first call in a process costs about 1.5 s (numba's cached kernels load; in a
brand-new environment numba compiles them once, about 15 s).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass

import audiomentations as am
import numpy as np
import soxr

from ser_live.realtime.errors import UserError

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
DEFAULT_NOISE_SNR_DB = (5.0, 30.0)
"""Range of the signal-to-noise ratio of the channel noise, dB."""
NOISE_COLOUR_DECAY_DB = (-6.0, 0.0)
"""Spectral decay of the channel noise per octave, dB: 0 white, -3 pink, -6 brown."""
TELEPHONE_BAND_HZ = (300.0, 3400.0)
"""The telephone band (ITU-T G.712 narrow band)."""
TELEPHONE_RATE = 8000
"""A narrow-band phone line's sample rate."""
CODEC_BITRATE_KBPS = (16, 64)
"""MP3 bitrates of the codec degradation."""
FILTER_ROLLOFF_DB = 24
"""Slope of the telephone band filters, dB per octave."""
RT60_DECAY_DB = 60.0

STFT_N_FFT = 2048
"""librosa's FFT size for stretch and pitch; shorter clips are zero-padded to it and cut back."""
CLIP_LEVEL = 1.0
MIN_STRETCH_RATE = 0.25
MAX_STRETCH_RATE = 4.0
SEED_BITS = 32
NOISE_MIN_FRACTION = 1e-9

STRONG_COPIES = 4
STRONG_GAIN_DB = 6.0
STRONG_REVERB_PROBABILITY = 0.5
CHANNEL_GAIN_DB = 20.0
CHANNEL_EQ_DB = 6.0
CHANNEL_EQ_PROBABILITY = 0.5
CHANNEL_TELEPHONE_PROBABILITY = 0.2
CHANNEL_REVERB_PROBABILITY = 0.3
CHANNEL_NOISE_PROBABILITY = 0.4
CHANNEL_CODEC_PROBABILITY = 0.1

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
    - ``plain``: when neither is enabled but a channel extra is, copies with the extras only.

    Every augmented copy then goes through the channel, each part with its own probability, in the order a
    recording meets them: room (reverberation), microphone (EQ), channel noise, phone line (telephone band),
    codec, and last the input gain with clipping. ``copies=0`` turns augmentation off. The default is seed 2's:
    ``copies=2`` gives ``[noisy, stretched x1.25 + pitched +0.7 st]``.
    """

    noise: float = DEFAULT_NOISE_AMOUNT
    pitch_steps: float = DEFAULT_PITCH_STEPS
    stretch_rate: float = DEFAULT_STRETCH_RATE
    copies: int = DEFAULT_COPIES
    gain_db: float = DEFAULT_GAIN_DB
    reverb_probability: float = DEFAULT_REVERB_PROBABILITY
    reverb_rt60_s: tuple[float, float] = DEFAULT_REVERB_RT60_S
    reverb_drr_db: tuple[float, float] = DEFAULT_REVERB_DRR_DB
    eq_db: float = 0.0
    eq_probability: float = 0.0
    telephone_probability: float = 0.0
    noise_snr_db: tuple[float, float] = DEFAULT_NOISE_SNR_DB
    noise_snr_probability: float = 0.0
    codec_probability: float = 0.0

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
        if not self.eq_db >= 0:
            raise UserError(f"EQ range must be >= 0 dB, got {self.eq_db}; use e.g. 6 (0 = off)")
        for name in ("reverb", "eq", "telephone", "noise_snr", "codec"):
            value = getattr(self, f"{name}_probability")
            if not 0.0 <= value <= 1.0:
                raise UserError(f"{name.replace('_', ' ')} probability must be in [0, 1], got {value}")
        low, high = self.reverb_rt60_s
        if not 0 < low <= high:
            raise UserError(f"reverberation time range must be 0 < low <= high seconds, got {self.reverb_rt60_s}")
        low, high = self.reverb_drr_db
        if not low <= high:
            raise UserError(f"direct-to-reverberant range must be low <= high dB, got {self.reverb_drr_db}")
        low, high = self.noise_snr_db
        if not low <= high:
            raise UserError(f"noise SNR range must be low <= high dB, got {self.noise_snr_db}")
        if self.copies > 0 and not self.kinds:
            raise UserError(
                f"augmentation asks for {self.copies} copies but every transform is off; "
                "enable noise, stretch, pitch, gain, EQ, telephone, reverberation or codec, or use no augmentation"
            )

    @classmethod
    def strong(cls) -> AugmentConfig:
        """Seed 2's two copies plus two more with random stretch/pitch and fresh noise, all with random gain
        (+/- 6 dB) and, half of the time, reverberation: for a live microphone in a room."""
        return cls(copies=STRONG_COPIES, gain_db=STRONG_GAIN_DB, reverb_probability=STRONG_REVERB_PROBABILITY)

    @classmethod
    def channel(cls) -> AugmentConfig:
        """Seed 2's two copies, each through a random channel: gain +/- 20 dB with clipping, EQ, telephone band,
        room, noise at 5-30 dB SNR and MP3, each with its own probability."""
        return cls(
            gain_db=CHANNEL_GAIN_DB,
            reverb_probability=CHANNEL_REVERB_PROBABILITY,
            eq_db=CHANNEL_EQ_DB,
            eq_probability=CHANNEL_EQ_PROBABILITY,
            telephone_probability=CHANNEL_TELEPHONE_PROBABILITY,
            noise_snr_probability=CHANNEL_NOISE_PROBABILITY,
            codec_probability=CHANNEL_CODEC_PROBABILITY,
        )

    @property
    def has_noise(self) -> bool:
        return self.noise > 0

    @property
    def has_stretch_pitch(self) -> bool:
        return self.stretch_rate != 1.0 or self.pitch_steps != 0.0

    @property
    def has_extras(self) -> bool:
        probabilities = (
            self.reverb_probability,
            self.eq_probability if self.eq_db > 0 else 0.0,
            self.telephone_probability,
            self.noise_snr_probability,
            self.codec_probability,
        )
        return self.gain_db > 0 or any(p > 0 for p in probabilities)

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
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


NO_AUGMENT = AugmentConfig(copies=0)
"""Augmentation off."""


def _as_audio(y: np.ndarray) -> np.ndarray:
    audio = np.asarray(y, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"augmentation takes mono audio of shape (n,), got shape {audio.shape}")
    if not np.isfinite(audio).all():
        raise ValueError("audio holds NaN or infinite samples")
    return audio


def _apply(
    transform: Callable[..., np.ndarray], audio: np.ndarray, sr: int, rng: np.random.Generator | None
) -> np.ndarray:
    """Run an audiomentations transform with its random modules seeded from ``rng`` (deterministic)."""
    if rng is not None:
        seed = int(rng.integers(2**SEED_BITS))
        random.seed(seed)
        np.random.seed(seed)  # audiomentations draws from the global generators
    return np.asarray(transform(audio, sample_rate=sr), dtype=np.float32)


def _padded(audio: np.ndarray, size: int = STFT_N_FFT) -> np.ndarray:
    """Zero-pad a clip shorter than one STFT frame (the result is cut back afterwards)."""
    return audio if audio.size >= size else np.pad(audio, (0, size - audio.size))


def add_noise(y: np.ndarray, rng: np.random.Generator, amount: float = DEFAULT_NOISE_AMOUNT) -> np.ndarray:
    """White Gaussian noise of amplitude ``amount * uniform(0, 1) * max|y|`` (seed 2; its notebook used max(y)).

    A silent clip stays silent.
    """
    audio = _as_audio(y)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak == 0.0 or amount == 0.0:
        return audio.copy()
    # audiomentations asserts a positive minimum; 1e-9 of the maximum is seed 2's uniform(0, 1) to float precision
    noise = am.AddGaussianNoise(min_amplitude=NOISE_MIN_FRACTION * amount * peak, max_amplitude=amount * peak, p=1.0)
    return _apply(noise, audio, 1, rng)


def time_stretch(y: np.ndarray, rate: float, sr: int = 16_000) -> np.ndarray:
    """Phase-vocoder time stretch (librosa's, through audiomentations): length ``round(len(y) / rate)``."""
    audio = _as_audio(y)
    if audio.size == 0 or rate == 1.0:
        return audio.copy()
    length = round(audio.size / rate)
    stretch = am.TimeStretch(
        min_rate=rate, max_rate=rate, leave_length_unchanged=False, method="librosa_phase_vocoder", p=1.0
    )
    out = _apply(stretch, _padded(audio), sr, None)
    return np.pad(out, (0, max(0, length - out.size)))[:length].astype(np.float32)


def pitch_shift(y: np.ndarray, sr: int, n_steps: float) -> np.ndarray:
    """Pitch shift by ``n_steps`` semitones keeping the length (librosa's, through audiomentations)."""
    audio = _as_audio(y)
    if audio.size == 0 or n_steps == 0:
        return audio.copy()
    shift = am.PitchShift(min_semitones=n_steps, max_semitones=n_steps, method="librosa_phase_vocoder", p=1.0)
    return _apply(shift, _padded(audio), sr, None)[: audio.size]


def apply_gain(y: np.ndarray, gain_db: float) -> np.ndarray:
    """Scale by ``gain_db`` decibels and clip to [-1, 1] as a real input stage would."""
    audio = _as_audio(y)
    gained = _apply(am.Gain(min_gain_db=gain_db, max_gain_db=gain_db, p=1.0), audio, 1, None)
    return _apply(am.Clip(a_min=-CLIP_LEVEL, a_max=CLIP_LEVEL, p=1.0), gained, 1, None)


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


def equalize(y: np.ndarray, sr: int, rng: np.random.Generator, max_db: float) -> np.ndarray:
    """A random seven-band parametric EQ (each band +/- ``max_db``): a microphone's frequency response."""
    return _apply(am.SevenBandParametricEQ(min_gain_db=-max_db, max_gain_db=max_db, p=1.0), _as_audio(y), sr, rng)


def telephone(y: np.ndarray, sr: int) -> np.ndarray:
    """The telephone band: 300-3400 Hz band-pass, then down to 8 kHz and back up to ``sr``."""
    audio = _as_audio(y)
    if audio.size == 0:
        return audio.copy()
    low, high = TELEPHONE_BAND_HZ
    band = am.Compose(
        [
            am.HighPassFilter(min_cutoff_freq=low, max_cutoff_freq=low, min_rolloff=FILTER_ROLLOFF_DB,
                              max_rolloff=FILTER_ROLLOFF_DB, p=1.0),
            am.LowPassFilter(min_cutoff_freq=high, max_cutoff_freq=high, min_rolloff=FILTER_ROLLOFF_DB,
                             max_rolloff=FILTER_ROLLOFF_DB, p=1.0),
        ]
    )
    narrow = _apply(band, audio, sr, None)
    if sr > TELEPHONE_RATE:
        narrow = soxr.resample(soxr.resample(narrow, sr, TELEPHONE_RATE), TELEPHONE_RATE, sr)
    out = np.pad(narrow, (0, max(0, audio.size - narrow.size)))[: audio.size]
    return out.astype(np.float32)


def add_noise_snr(y: np.ndarray, sr: int, rng: np.random.Generator, snr_db: tuple[float, float]) -> np.ndarray:
    """Coloured noise (white to brown) at an SNR drawn from ``snr_db`` (dB, relative to the clip's RMS)."""
    audio = _as_audio(y)
    if audio.size == 0 or not np.any(audio):
        return audio.copy()
    low, high = NOISE_COLOUR_DECAY_DB
    noise = am.AddColorNoise(min_snr_db=snr_db[0], max_snr_db=snr_db[1], min_f_decay=low, max_f_decay=high, p=1.0)
    return _apply(noise, audio, sr, rng)


def codec(y: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """MP3 round trip at a random bitrate in ``CODEC_BITRATE_KBPS``."""
    audio = _as_audio(y)
    if audio.size == 0:
        return audio.copy()
    low, high = CODEC_BITRATE_KBPS
    return _apply(am.Mp3Compression(min_bitrate=low, max_bitrate=high, p=1.0), audio, sr, rng)[: audio.size]


def _stretch_pitch_values(config: AugmentConfig, round_index: int, rng: np.random.Generator) -> tuple[float, float]:
    """(rate, semitones): the seed's values for the first such copy, random ones within the range afterwards."""
    if round_index == 0:
        return config.stretch_rate, config.pitch_steps
    log_rate = abs(np.log(config.stretch_rate))
    rate = float(np.exp(rng.uniform(-log_rate, log_rate))) if log_rate > 0 else 1.0
    steps = float(rng.uniform(-abs(config.pitch_steps), abs(config.pitch_steps))) if config.pitch_steps else 0.0
    return rate, steps


def _room(y: np.ndarray, sr: int, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    if config.reverb_probability > 0 and rng.uniform() < config.reverb_probability:
        rt60 = float(rng.uniform(*config.reverb_rt60_s))
        drr = float(rng.uniform(*config.reverb_drr_db))
        return add_reverb(y, sr, rng, rt60, drr)
    return y


def _channel(y: np.ndarray, sr: int, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Microphone, noise, line and codec (the room comes first, in :func:`_room`), then the input gain."""
    if config.eq_db > 0 and config.eq_probability > 0 and rng.uniform() < config.eq_probability:
        y = equalize(y, sr, rng, config.eq_db)
    if config.noise_snr_probability > 0 and rng.uniform() < config.noise_snr_probability:
        y = add_noise_snr(y, sr, rng, config.noise_snr_db)
    if config.telephone_probability > 0 and rng.uniform() < config.telephone_probability:
        y = telephone(y, sr)
    if config.codec_probability > 0 and rng.uniform() < config.codec_probability:
        y = codec(y, sr, rng)
    if config.gain_db > 0:
        y = apply_gain(y, float(rng.uniform(-config.gain_db, config.gain_db)))
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
            version = add_noise(_room(audio, sr, config, rng), rng, config.noise)
        elif kind == KIND_STRETCH_PITCH:
            rate, steps = _stretch_pitch_values(config, round_index, rng)
            version = _room(pitch_shift(time_stretch(audio, rate, sr), sr, steps), sr, config, rng)
        else:
            version = _room(audio.copy(), sr, config, rng)
        versions.append(_channel(version, sr, config, rng).astype(np.float32))
    return versions
