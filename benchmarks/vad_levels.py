"""How the speech gate's decisions move with the input level and with stationary noise (BENCHMARKS.md).

    python benchmarks/vad_levels.py                                   # needs espeak-ng
    python benchmarks/vad_levels.py --corpus ../shared/data/ravdess/Actor_08   # + real clips, -20 dB vs as recorded

Prints two Markdown tables: the share of espeak-ng speech samples flagged as speech at -70 ... -10 dBFS, and the
share of noise-only samples (white, pink) flagged at -50 ... -10 dBFS, for webrtcvad alone (v1), with the
noise-floor margin, and with the AGC and the margin (the default). Pad and hangover are as the engine uses them.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ser_live.realtime.stages.vad import DEFAULT_NOISE_MARGIN_DB, SpeechGate

RATE = 16_000
TEXT = "Hello there. This is a short test of the emotion monitor, spoken for a few seconds."
SPEECH_LEVELS_DBFS = (-70, -60, -50, -45, -40, -30, -20, -10)
NOISE_LEVELS_DBFS = (-50, -40, -30, -20, -10)
NOISE_SECONDS = 5
LOUD_FRACTION = 0.01  # of the peak: what counts as the speech part of the espeak clip
SEED = 0
CORPUS_CLIPS = 60


CONFIGS = {  # name -> (agc, noise margin dB)
    "webrtcvad alone (v1)": (False, 0.0),
    "margin, no AGC": (False, DEFAULT_NOISE_MARGIN_DB),
    "AGC + margin (default)": (True, DEFAULT_NOISE_MARGIN_DB),
}


def flagged(x: np.ndarray, config: tuple[bool, float]) -> np.ndarray:
    agc, margin = config
    gate = SpeechGate(noise_margin_db=margin, agc=agc)
    _, flags = gate.process(np.clip(x, -1.0, 1.0))
    _, tail = gate.flush()
    return np.concatenate([flags, tail])


def pink(n: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n)) / np.sqrt(np.maximum(np.arange(n // 2 + 1), 1))
    y = np.fft.irfft(spectrum, n)
    return (y / np.std(y)).astype(np.float32)


def corpus_agreement(folder: Path, limit: int) -> None:
    """Per configuration: how many clips of ``folder`` get other speech flags at -20 dB than as recorded."""
    from ser_live.realtime.sources.audio import read_audio

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".wav", ".flac"))[:limit]
    print()
    print(f"| {len(files)} clips of {folder} at -20 dB | clips with other flags | samples flagged otherwise |")
    print("|---|---|---|")
    for name, config in CONFIGS.items():
        changed, shares = 0, []
        for path in files:
            samples, _ = read_audio(path)
            mono = samples.mean(axis=1)
            a, b = flagged(mono, config), flagged(mono * np.float32(0.1), config)
            changed += not np.array_equal(a, b)
            shares.append(float(np.mean(a != b)))
        print(f"| {name} | {changed} | {100 * np.mean(shares):.1f} % |")


def main() -> int:
    corpus = Path(sys.argv[sys.argv.index("--corpus") + 1]) if "--corpus" in sys.argv else None
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
    configs = list(CONFIGS.values())
    print("| speech level (dBFS) | " + " | ".join(CONFIGS) + " |")
    print("|---|" + "---|" * len(configs))
    reference = {name: flagged(voice * np.float32(10 ** (-30 / 20) / rms), c) for name, c in CONFIGS.items()}
    for level in SPEECH_LEVELS_DBFS:
        x = voice * np.float32(10 ** (level / 20) / rms)
        cells = []
        for name, c in CONFIGS.items():
            f = flagged(x, c)
            cells.append(f"{f[loud].mean():.2f} (same as at -30: {np.mean(f == reference[name]):.3f})")
        print(f"| {level} | " + " | ".join(cells) + " |")
    rng = np.random.default_rng(SEED)
    noises = {"white": rng.standard_normal(NOISE_SECONDS * RATE).astype(np.float32),
              "pink": pink(NOISE_SECONDS * RATE, rng)}
    print()
    print("| noise | level (dBFS) | " + " | ".join(CONFIGS) + " |")
    print("|---|---|" + "---|" * len(configs))
    for name, noise in noises.items():
        for level in NOISE_LEVELS_DBFS:
            x = noise * np.float32(10 ** (level / 20))
            print(f"| {name} | {level} | " + " | ".join(f"{flagged(x, c).mean():.2f}" for c in configs) + " |")
    if corpus is not None:
        corpus_agreement(corpus, CORPUS_CLIPS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
