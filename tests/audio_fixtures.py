"""Generated audio for the engine, API, CLI and training tests: espeak-ng speech, synthetic voiced tones, silence,
format conversions, and a tiny RAVDESS-named corpus. Nothing here reads ``../shared``.

>>> clip = speech_clip(tmp_path)            # espeak-ng speech between stretches of silence, at 22,050 Hz
>>> clip.samples, clip.sample_rate, clip.speech_start_s, clip.speech_end_s
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

ESPEAK = "espeak-ng"
ESPEAK_TIMEOUT_S = 30
SPEECH_TEXT = "Hello there. This is a short test of the emotion monitor, spoken for a few seconds."
SHORT_TEXT = "Hello there, how are you today?"
# Around the speech: long enough that a window lying wholly in silence exists on both sides.
LEAD_SILENCE_S = 3.0
TAIL_SILENCE_S = 3.0
# |sample| above this counts as sound when finding where espeak-ng's speech begins and ends.
SOUND_THRESHOLD = 0.01

# A tiny RAVDESS corpus: emotion code -> (f0 Hz, amplitude, syllable rate Hz), clearly different per emotion.
RAVDESS_EMOTIONS: Mapping[str, tuple[float, float, float]] = {
    "01": (110.0, 0.15, 3.0),  # neutral
    "03": (220.0, 0.40, 5.0),  # happy
    "04": (95.0, 0.08, 2.0),  # sad
    "05": (180.0, 0.60, 6.0),  # angry
    "06": (260.0, 0.30, 7.0),  # fearful
    "07": (130.0, 0.35, 3.5),  # disgust
    "08": (300.0, 0.50, 4.5),  # surprised
}
CORPUS_RATE = 16000
HARMONICS = 8
HARMONIC_DECAY = 0.6
VIBRATO_DEPTH = 0.03
VIBRATO_HZ = 5.0
NOISE_LEVEL = 0.003
SPEAKER_PITCH_STEP = 0.05  # each actor's pitch differs by 5 %


@dataclass(frozen=True)
class SpeechClip:
    """Mono float32 samples, their rate, and where the speech lies (seconds from the start)."""

    samples: np.ndarray
    sample_rate: int
    speech_start_s: float
    speech_end_s: float

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


def have_espeak() -> bool:
    return shutil.which(ESPEAK) is not None


def espeak_wav(path: Path, text: str = SPEECH_TEXT, *, voice: str | None = None, speed: int | None = None,
               pitch: int | None = None) -> Path:
    """Speech synthesised by espeak-ng into a 22,050 Hz mono 16-bit WAV."""
    cmd = [ESPEAK, "-w", str(path)]
    if voice is not None:
        cmd += ["-v", voice]
    if speed is not None:
        cmd += ["-s", str(speed)]
    if pitch is not None:
        cmd += ["-p", str(pitch)]
    subprocess.run([*cmd, text], check=True, capture_output=True, timeout=ESPEAK_TIMEOUT_S)
    return path


def sound_bounds(samples: np.ndarray, sample_rate: int, threshold: float = SOUND_THRESHOLD) -> tuple[float, float]:
    """First and last time (s) where ``|samples|`` exceeds ``threshold``."""
    loud = np.flatnonzero(np.abs(samples) > threshold)
    return float(loud[0]) / sample_rate, float(loud[-1] + 1) / sample_rate


def speech_clip(tmp_dir: Path, text: str = SPEECH_TEXT, lead_s: float = LEAD_SILENCE_S,
                tail_s: float = TAIL_SILENCE_S) -> SpeechClip:
    """espeak-ng speech with ``lead_s`` of silence before and ``tail_s`` after."""
    raw, rate = sf.read(str(espeak_wav(tmp_dir / "espeak_raw.wav", text)), dtype="float32")
    samples = np.concatenate([np.zeros(int(lead_s * rate), np.float32), raw, np.zeros(int(tail_s * rate), np.float32)])
    start, end = sound_bounds(samples, rate)
    return SpeechClip(samples, rate, start, end)


def convert(samples: np.ndarray, rate: int, out_rate: int, channels: int = 1) -> np.ndarray:
    """Mono ``samples`` resampled to ``out_rate`` (soxr) and spread over ``channels`` (different gains)."""
    y = samples if out_rate == rate else soxr.resample(samples, rate, out_rate)
    y = np.asarray(y, dtype=np.float32)
    if channels == 1:
        return y
    gains = np.linspace(1.0, 0.5, channels, dtype=np.float32)
    return np.ascontiguousarray(y[:, None] * gains[None, :])


def voiced_tone(f0: float, duration_s: float, amplitude: float, syllable_hz: float, seed: int,
                sample_rate: int = CORPUS_RATE) -> np.ndarray:
    """A voice-like signal: harmonics of ``f0`` with vibrato, a syllable-rate envelope and a little noise.

    WebRTC VAD takes it for speech, and its pitch, level and rhythm are easy features to tell apart.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration_s * sample_rate)) / sample_rate
    phase = 2 * np.pi * np.cumsum(f0 * (1 + VIBRATO_DEPTH * np.sin(2 * np.pi * VIBRATO_HZ * t))) / sample_rate
    x = sum(HARMONIC_DECAY**k * np.sin((k + 1) * phase) for k in range(HARMONICS))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * syllable_hz * t)
    x = amplitude * x * envelope / np.max(np.abs(x))
    return (x + NOISE_LEVEL * rng.standard_normal(len(t))).astype(np.float32)


def ravdess_name(emotion: str, actor: int, intensity: int = 1) -> str:
    """``03-01-EE-II-01-01-AA.wav``: audio-only speech, statement 1, repetition 1."""
    return f"03-01-{emotion}-{intensity:02d}-01-01-{actor:02d}.wav"


def write_ravdess_tree(root: Path, actors: int = 4, unreadable: bool = True) -> tuple[list[Path], Path | None]:
    """``root/Actor_NN/<ravdess name>.wav`` for ``actors`` x 7 emotions (2.0-2.4 s clips at 16 kHz).

    With ``unreadable``, one more correctly named file holds bytes that are not audio. Returns the good files
    and the unreadable one.
    """
    good: list[Path] = []
    for actor in range(1, actors + 1):
        folder = root / f"Actor_{actor:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i, (code, (f0, amplitude, rate)) in enumerate(RAVDESS_EMOTIONS.items()):
            pitch = f0 * (1 + SPEAKER_PITCH_STEP * (actor - (actors + 1) / 2))
            x = voiced_tone(pitch, 2.0 + 0.2 * (actor % 3), amplitude, rate, seed=100 * actor + i)
            path = folder / ravdess_name(code, actor)
            sf.write(path, x, CORPUS_RATE)
            good.append(path)
    bad = None
    if unreadable:
        bad = root / "Actor_01" / ravdess_name("05", 1, intensity=2)
        bad.write_bytes(b"RIFF\x00\x00\x00\x00this is not a wave file" * 8)
    return good, bad


ASED_CODES = {"n1": ("01Neutral", "01"), "f2": ("02Fearful", "06"), "h3": ("03Happy", "03"), "s4": ("04Sad", "04"),
              "a5": ("05Angry", "05")}
"""ASED emotion code -> (folder, the RAVDESS code of the same emotion, whose synthetic voice it borrows)."""


def write_ased_tree(root: Path, speakers: Sequence[int] = (3, 7, 12)) -> list[Path]:
    """``root/0NEmotion/xN-01-01-GG-PP.wav`` for each speaker x the five ASED emotions (voiced tones, 16 kHz)."""
    out: list[Path] = []
    for k, speaker in enumerate(speakers):
        for i, (code, (folder, ravdess_code)) in enumerate(ASED_CODES.items()):
            f0, amplitude, rate = RAVDESS_EMOTIONS[ravdess_code]
            x = voiced_tone(f0 * (1.1 + 0.05 * k), 2.2, amplitude, rate, seed=1000 + 10 * speaker + i)
            path = root / folder / f"{code}-01-01-{1 + speaker % 2:02d}-{speaker:02d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, x, CORPUS_RATE)
            out.append(path)
    return out
