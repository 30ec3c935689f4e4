"""What a model costs on one core: the graph alone (batch 1) and a whole file through ``predict_file``.

    python benchmarks/bench_model_cost.py OLD.onnx NEW.onnx [--audio ser_live/models/demo.wav] [--repeat 26]

One ONNX Runtime thread, numpy's BLAS pool at one thread, the process pinned to one core (Linux). The graph:
``model.predict`` on one window, 1000 rounds after 50 warm-up (p50, p99). The file: the audio tiled ``--repeat``
times, ``EmotionRecognizer(threads=1).predict_file``, median of 3 after a warm-up, as a real-time factor.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
from threadpoolctl import threadpool_limits

ROUNDS, WARMUP, FILE_RUNS = 1000, 50, 3


def timed(call: Callable[[], object], warmup: int, rounds: int) -> np.ndarray:
    """Seconds of each of ``rounds`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return np.array(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", type=Path)
    p.add_argument("--audio", type=Path, default=Path("ser_live/models/demo.wav"))
    p.add_argument("--repeat", type=int, default=26)
    args = p.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    threadpool_limits(1, "blas")
    from ser_live.realtime.api import EmotionRecognizer
    from ser_live.realtime.model import load_model

    x, rate = sf.read(args.audio, dtype="float32")
    with tempfile.TemporaryDirectory() as tmp:
        long = Path(tmp) / "long.wav"
        sf.write(long, np.tile(x, (args.repeat,) + (1,) * (x.ndim - 1)), rate)
        seconds = args.repeat * len(x) / rate
        for path in args.models:
            model = load_model(path, threads=1)
            window = np.random.default_rng(0).normal(-40, 10, size=(1, *model.info.feature_shape)).astype(np.float32)
            ms = timed(lambda m=model, w=window: m.predict(w), WARMUP, ROUNDS) * 1e3
            recognizer = EmotionRecognizer(model=path, threads=1)
            runs = timed(lambda r=recognizer: r.predict_file(long), 1, FILE_RUNS)
            wall = float(np.median(runs))
            print(f"{path}: graph p50 {np.percentile(ms, 50):.3f} ms p99 {np.percentile(ms, 99):.3f} ms; "
                  f"{seconds:.0f} s file {wall:.2f} s ({seconds / wall:.0f}x real time)")


if __name__ == "__main__":
    main()
