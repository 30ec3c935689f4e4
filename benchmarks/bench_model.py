"""Speed and size of a bundled (or any) model, as BENCHMARKS.md's "Current models" table reports them.

    python benchmarks/bench_model.py default small [--seconds 240]

Per model, on one core (ONNX Runtime and BLAS limited to one thread):
- live per-hop compute: the demo fed in 0.5 s blocks (one hop each) through Engine.feed; p50 / p99 of the feeds
  that produced a window (the compute a live session spends per hop);
- files: a --seconds long recording (the demo repeated) through the whole-file path, as x real time;
- start to first event: `ser-live --file ONE_SECOND.wav --fast --jsonl -` in a fresh process, spawn to first line
  (the median of seven processes), and their largest peak RSS;
- the model files' sizes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import soundfile as sf

from ser_live.realtime.config import EngineConfig
from ser_live.realtime.engine import Engine
from ser_live.realtime.model import bundled_demo_path, load_model, resolve_model_path

HOP_S = 0.5


def per_hop(name: str, audio: np.ndarray, rate: int) -> tuple[float, float, int]:
    engine = Engine(load_model(name, provider="cpu", threads=1), rate, EngineConfig())
    block = int(HOP_S * rate)
    times = []
    for i in range(0, len(audio), block):
        t0 = time.perf_counter()
        out = engine.feed(audio[i : i + block])
        if out:
            times.append((time.perf_counter() - t0) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99)), len(times)


def files(name: str, audio: np.ndarray, rate: int, seconds: float) -> float:
    from ser_live.realtime.engine import OFFLINE_SPAN_S

    reps = int(np.ceil(seconds * rate / len(audio)))
    long = np.tile(audio, reps)[: int(seconds * rate)]
    engine = Engine(load_model(name, provider="cpu", threads=1), rate, EngineConfig())
    span = int(OFFLINE_SPAN_S * rate)
    t0 = time.perf_counter()
    for _ in engine.iter_batched(long[i : i + span] for i in range(0, len(long), span)):
        pass
    return seconds / (time.perf_counter() - t0)


FIRST_EVENT_RUNS = 7  # fresh processes: the median (one start-up alone varies by 0.2 s here)


def first_event(name: str, audio: np.ndarray, rate: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        one = Path(tmp) / "one.wav"
        start = int(np.argmax(np.abs(audio) > 0.05))
        sf.write(one, audio[start : start + rate], rate)
        code = ("import resource, runpy, sys; sys.argv = ['ser-live'] + sys.argv[1:]; "
                "import atexit; atexit.register(lambda: sys.stderr.write('RSS %d\\n' % "
                "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)); "
                "runpy.run_module('ser_live.realtime.faces.cli', run_name='__main__')")
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", code, "--file", str(one), "--fast", "--jsonl", "-",
                                 "--no-dashboard", "--model", name, "--threads", "1"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        proc.stdout.readline()
        first = time.perf_counter() - t0
        _, err = proc.communicate()
        rss = [int(line.split()[1]) for line in err.splitlines() if line.startswith("RSS ")]
        return first, (rss[-1] / 1024 if rss else float("nan"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--seconds", type=float, default=240.0)
    args = ap.parse_args()
    audio, rate = sf.read(bundled_demo_path(), dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    print("| model | files on disk | live per-hop compute p50 / p99 | files (× real time, 1 core) | "
          "start to first event (1 s file) | peak RSS |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        path = resolve_model_path(name)
        size = sum(p.stat().st_size for p in path.parent.glob(f"{path.stem}*.onnx")
                   if p.stem in (path.stem, f"{path.stem}.encoder"))
        p50, p99, n = per_hop(name, audio, rate)
        rtf = files(name, audio, rate, args.seconds)
        starts = [first_event(name, audio, rate) for _ in range(FIRST_EVENT_RUNS)]
        first = float(np.median([s[0] for s in starts]))
        rss = max(s[1] for s in starts)
        print(f"| {name} | {size / 2**20:.1f} MiB | {p50:.1f} / {p99:.1f} ms ({n} hops) | {rtf:.0f}× | "
              f"{first:.2f} s (median of {FIRST_EVENT_RUNS}) | {rss:.0f} MiB |", flush=True)


if __name__ == "__main__":
    main()
