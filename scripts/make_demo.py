"""Make ``ser_live/models/demo.wav``: a short demo recording synthesised with espeak-ng at several prosodies.

The project ships this file so that ``ser-live --file ser_live/models/demo.wav`` works on a fresh machine without a
microphone. It is synthetic speech made here, never corpus audio: four English utterances spoken by espeak-ng with
different speed, pitch, loudness and voice — calm (slow, low), excited (fast, high, loud), sad (slow, low, quiet)
and angry (fast, loud) — separated by pauses of silence, 16 kHz mono 16-bit PCM, about 20 s and under 1 MB.

Usage (from the repository root)::

    python scripts/make_demo.py                   # writes ser_live/models/demo.wav
    python scripts/make_demo.py -o /tmp/demo.wav  # anywhere else
    ser-live --file ser_live/models/demo.wav               # then replay it

The espeak-ng parameters are fixed, so the same espeak-ng version gives the same file, byte for byte. The file is
written atomically (a temporary file in the same directory, then renamed). Needs the ``espeak-ng`` program
(``apt-get install espeak-ng``) and the runtime's soundfile + soxr (no librosa).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "ser_live" / "models" / "demo.wav"
SAMPLE_RATE = 16_000
SUBTYPE = "PCM_16"
ESPEAK = "espeak-ng"
ESPEAK_TIMEOUT_S = 60
LEAD_SILENCE_S = 1.0
TAIL_SILENCE_S = 0.8
PEAK_DBFS = -1.0  # the loudest sample of the whole file; the segments keep their relative loudness
EXIT_USER_ERROR = 2


@dataclass(frozen=True)
class Segment:
    """One utterance: espeak-ng voice, speed (words per minute), pitch (0-99), amplitude (0-200), pause after."""

    name: str
    text: str
    voice: str
    speed_wpm: int
    pitch: int
    amplitude: int
    pause_after_s: float


SEGMENTS: tuple[Segment, ...] = (
    Segment("calm", "Good morning. Everything feels quiet and peaceful by the lake today.",
            voice="en-us+m3", speed_wpm=130, pitch=30, amplitude=80, pause_after_s=1.2),
    Segment("excited", "Wow! We actually won the championship! This is amazing!",
            voice="en-us+f3", speed_wpm=215, pitch=85, amplitude=140, pause_after_s=1.2),
    Segment("sad", "I miss her so much. Nothing is the same since she left.",
            voice="en-us+m1", speed_wpm=115, pitch=18, amplitude=40, pause_after_s=1.2),
    Segment("angry", "Stop it right now! I told you not to touch my things!",
            voice="en-us+m7", speed_wpm=185, pitch=45, amplitude=130, pause_after_s=0.0),
)


class DemoError(Exception):
    """A problem the user can fix (one line)."""


def synthesize(segment: Segment, workdir: Path) -> np.ndarray:
    """One utterance as float32 samples at :data:`SAMPLE_RATE` (espeak-ng writes 22.05 kHz; resampled with soxr)."""
    if shutil.which(ESPEAK) is None:
        raise DemoError(f"{ESPEAK} is not installed: apt-get install espeak-ng")
    wav = workdir / f"{segment.name}.wav"
    cmd = [ESPEAK, "-v", segment.voice, "-s", str(segment.speed_wpm), "-p", str(segment.pitch),
           "-a", str(segment.amplitude), "-w", str(wav), segment.text]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=ESPEAK_TIMEOUT_S, check=False)
    if proc.returncode != 0 or not wav.is_file():
        raise DemoError(f"{ESPEAK} failed on segment {segment.name!r}: {proc.stderr.strip()[:200]}")
    samples, rate = sf.read(wav, dtype="float32", always_2d=False)
    if samples.ndim > 1:
        samples = samples.mean(axis=1)
    return np.asarray(soxr.resample(samples, rate, SAMPLE_RATE, quality="HQ"), dtype=np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * SAMPLE_RATE), dtype=np.float32)


def build_demo(segments: Sequence[Segment] = SEGMENTS) -> np.ndarray:
    """The whole recording: lead silence, utterances with their pauses, tail silence; peak at PEAK_DBFS."""
    parts = [silence(LEAD_SILENCE_S)]
    with tempfile.TemporaryDirectory(prefix="ser-live-demo-") as tmp:
        for segment in segments:
            parts.append(synthesize(segment, Path(tmp)))
            parts.append(silence(segment.pause_after_s))
    parts.append(silence(TAIL_SILENCE_S))
    audio = np.concatenate(parts)
    peak = float(np.max(np.abs(audio)))
    if peak == 0.0:
        raise DemoError(f"{ESPEAK} produced only silence: check the espeak-ng installation")
    return (audio * (10 ** (PEAK_DBFS / 20) / peak)).astype(np.float32)


def write_atomically(path: Path, audio: np.ndarray) -> None:
    """Write 16-bit PCM WAV to a temporary sibling, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".wav", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        sf.write(tmp, audio, SAMPLE_RATE, subtype=SUBTYPE)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def make_demo(output: Path = DEFAULT_OUTPUT) -> Path:
    audio = build_demo()
    write_atomically(output, audio)
    logger.info("wrote %s: %.1f s at %d Hz", output, len(audio) / SAMPLE_RATE, SAMPLE_RATE)
    return output


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Synthesise the ser-live demo recording with espeak-ng.")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT, help="WAV file to write")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        path = make_demo(args.output)
    except (DemoError, OSError, subprocess.TimeoutExpired) as err:
        print(f"make_demo: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    info = sf.info(path)
    print(f"{path}: {info.duration:.1f} s, {info.samplerate} Hz, {info.channels} channel, "
          f"{path.stat().st_size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
