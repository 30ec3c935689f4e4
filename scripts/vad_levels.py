"""How the speech gate's decisions move with the input level and with stationary noise (BENCHMARKS.md).

    python scripts/vad_levels.py            # needs espeak-ng

Prints two Markdown tables: the share of espeak-ng speech samples flagged as speech at -70 ... -10 dBFS, and the
share of noise-only samples (white, pink) flagged at -50 ... -10 dBFS, each with the noise-floor margin off
(webrtcvad alone) and at its default. Pad and hangover are as the engine uses them.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from realtime.vad import DEFAULT_NOISE_MARGIN_DB, SpeechGate

RATE = 16_000
TEXT = "Hello there. This is a short test of the emotion monitor, spoken for a few seconds."
SPEECH_LEVELS_DBFS = (-70, -60, -50, -45, -40, -30, -20, -10)
NOISE_LEVELS_DBFS = (-50, -40, -30, -20, -10)
NOISE_SECONDS = 5
LOUD_FRACTION = 0.01  # of the peak: what counts as the speech part of the espeak clip
SEED = 0


def flagged(x: np.ndarray, margin: float) -> np.ndarray:
    gate = SpeechGate(noise_margin_db=margin)
    _, flags = gate.process(np.clip(x, -1.0, 1.0))
    _, tail = gate.flush()
    return np.concatenate([flags, tail])


def pink(n: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n)) / np.sqrt(np.maximum(np.arange(n // 2 + 1), 1))
    y = np.fft.irfft(spectrum, n)
    return (y / np.std(y)).astype(np.float32)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        try:
            subprocess.run(["espeak-ng", "-w", str(wav), TEXT], check=True, capture_output=True, timeout=30)
        except (OSError, subprocess.CalledProcessError) as err:
            print(f"vad_levels: espeak-ng is needed ({err}): apt-get install espeak-ng", file=sys.stderr)
            return 2
        raw, rate = sf.read(wav, dtype="float32")
    voice = soxr.resample(raw, rate, RATE).astype(np.float32)
    loud = np.abs(voice) > LOUD_FRACTION * np.max(np.abs(voice))
    rms = float(np.sqrt(np.mean(voice[loud].astype(np.float64) ** 2)))
    margins = (0.0, DEFAULT_NOISE_MARGIN_DB)
    print("| speech level (dBFS) | " + " | ".join(f"flagged, margin {m:g} dB" for m in margins) + " |")
    print("|---|" + "---|" * len(margins))
    for level in SPEECH_LEVELS_DBFS:
        x = voice * np.float32(10 ** (level / 20) / rms)
        print(f"| {level} | " + " | ".join(f"{flagged(x, m)[loud].mean():.2f}" for m in margins) + " |")
    rng = np.random.default_rng(SEED)
    noises = {"white": rng.standard_normal(NOISE_SECONDS * RATE).astype(np.float32),
              "pink": pink(NOISE_SECONDS * RATE, rng)}
    print()
    print("| noise | level (dBFS) | " + " | ".join(f"flagged, margin {m:g} dB" for m in margins) + " |")
    print("|---|---|" + "---|" * len(margins))
    for name, noise in noises.items():
        for level in NOISE_LEVELS_DBFS:
            x = noise * np.float32(10 ** (level / 20))
            print(f"| {name} | {level} | " + " | ".join(f"{flagged(x, m).mean():.2f}" for m in margins) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
