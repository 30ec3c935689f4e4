"""An hour (or N minutes) of real speech for the whole-file benchmarks (BENCHMARKS.md): corpus clips from
``../shared/data`` (RAVDESS, TESS, ASED; every speaker and emotion, shuffled with a fixed seed) joined with short
pauses into one 16 kHz mono PCM WAV. Never committed: the corpora's licences travel with the audio.

    python benchmarks/make_long_audio.py ../shared/data /tmp/hour.wav --minutes 60
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 16_000
PAUSE_S = 0.4
SEED = 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="folder holding ravdess/, tess/, ased/")
    ap.add_argument("out", type=Path)
    ap.add_argument("--minutes", type=float, default=60.0)
    args = ap.parse_args()
    files = sorted(p for corpus in ("ravdess", "tess", "ased") for p in (args.data / corpus).rglob("*.flac"))
    if not files:
        print(f"no .flac files under {args.data}", file=sys.stderr)
        return 2
    random.Random(SEED).shuffle(files)
    target = int(args.minutes * 60 * RATE)
    pause = np.zeros(int(PAUSE_S * RATE), np.float32)
    with sf.SoundFile(args.out, "w", samplerate=RATE, channels=1, subtype="PCM_16") as out:
        written, i = 0, 0
        while written < target:
            audio, rate = sf.read(files[i % len(files)], dtype="float32")
            if rate != RATE:
                raise SystemExit(f"{files[i % len(files)]} is {rate} Hz, expected {RATE}")
            piece = np.concatenate([audio, pause])[: target - written]
            out.write(piece)
            written += len(piece)
            i += 1
    print(f"wrote {args.out}: {written / RATE / 60:.1f} min from {min(i, len(files))} clips")
    return 0


if __name__ == "__main__":
    sys.exit(main())
