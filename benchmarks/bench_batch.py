"""Throughput of scoring an archive (BENCHMARKS.md, issue 12): audio hours per wall-minute, one run each, of

- a shell-style loop of ``ser-live --file F --fast --no-dashboard --jsonl OUT`` (one process per file),
- ``ser-batch --workers 1``, ``--workers 2`` and ``--ray --workers 2`` (a local Ray started by the run),

on the same files: espeak-ng speech joined into ``--files`` recordings of ``--minutes`` minutes each.

    python benchmarks/bench_batch.py --files 60 --minutes 1 [--model M] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

TEXT = ("The meeting moved to Thursday, and nobody told me. I waited for an hour, then I went home. "
        "Next time, please send a message before you change the plan.")
VOICES = ("en-us", "en-gb", "en-us+f3", "en-gb+m3")
RATE = 22_050
PAUSE_S = 0.4


def make_archive(folder: Path, files: int, minutes: float) -> float:
    """``files`` WAVs of espeak-ng speech (voices and speeds vary), ``minutes`` long each; returns audio hours."""
    folder.mkdir(parents=True, exist_ok=True)
    pieces = []
    for i, voice in enumerate(VOICES):
        wav = folder / f"_piece{i}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(150 + 15 * i), "-w", str(wav), TEXT], check=True,
                       capture_output=True)
        audio, rate = sf.read(wav, dtype="float32")
        assert rate == RATE, rate
        pieces.append(np.concatenate([audio, np.zeros(int(PAUSE_S * RATE), np.float32)]))
        wav.unlink()
    target = int(minutes * 60 * RATE)
    for k in range(files):
        order = np.random.default_rng(k).permutation(len(pieces))
        one = np.concatenate([pieces[j] for j in order])
        sf.write(folder / f"call{k:04d}.wav", np.tile(one, -(-target // len(one)))[:target], RATE, subtype="PCM_16")
    return files * minutes / 60


def timed(cmd: list[str]) -> float:
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.monotonic() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=60)
    p.add_argument("--minutes", type=float, default=1.0)
    p.add_argument("--model", default=None)
    p.add_argument("--workdir", type=Path, default=None)
    args = p.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-batch-"))
    archive = work / "archive"
    if archive.exists():
        shutil.rmtree(archive)
    hours = make_archive(archive, args.files, args.minutes)
    files = sorted(archive.glob("*.wav"))
    bin_dir = Path(sys.executable).parent
    model = ["--model", args.model] if args.model else []
    results: dict[str, float] = {}

    def loop() -> None:
        for f in files:
            subprocess.run([str(bin_dir / "ser-live"), "--file", str(f), "--fast", "--no-dashboard", "--jsonl",
                            str(work / "loop.jsonl"), *model], check=True, capture_output=True)

    t0 = time.monotonic()
    loop()
    results["ser-live --file --fast, a loop"] = time.monotonic() - t0
    for name, extra in (("ser-batch --workers 1", ["--workers", "1"]), ("ser-batch --workers 2", ["--workers", "2"]),
                        ("ser-batch --ray --workers 2", ["--ray", "--workers", "2"])):
        out = work / name.replace(" ", "_").replace("-", "")
        shutil.rmtree(out, ignore_errors=True)
        results[name] = timed([str(bin_dir / "ser-batch"), str(archive), "--out", str(out), "-q", *model, *extra])
    print(f"{len(files)} files, {hours:.2f} h of audio")
    print("| run | wall s | audio h per wall-minute | vs the loop |")
    print("|---|---|---|---|")
    base = results["ser-live --file --fast, a loop"]
    for name, wall in results.items():
        print(f"| {name} | {wall:.1f} | {hours / (wall / 60):.2f} | {base / wall:.2f}× |")
    print(json.dumps({"files": len(files), "audio_hours": hours, "wall_s": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
