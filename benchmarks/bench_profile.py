"""Per-window cost of a personal profile (BENCHMARKS.md): the bundled model's graph call alone, against the graph
call that returns the embedding plus the profile's layer (numpy product + softmax), one window at a time as the
live engine calls it, one ONNX Runtime thread and numpy's BLAS at one thread, pinned to one core.

    python benchmarks/bench_profile.py [--rounds 3000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ser_live.realtime.model import load_model
from ser_live.realtime.profile import Base, Take, make_profile


def timings(fn, x: np.ndarray, rounds: int) -> np.ndarray:
    for _ in range(50):
        fn(x)
    out = np.empty(rounds)
    for i in range(rounds):
        t0 = time.perf_counter()
        fn(x)
        out[i] = time.perf_counter() - t0
    return out * 1000


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3000)
    args = ap.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, "blas")
    model = load_model(None, provider="cpu", threads=1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, *model.info.feature_shape)).astype(np.float32)
    base = Base.of(model)
    size = base.weights.shape[0]
    takes = [Take(label, np.abs(rng.normal(size=(4, size)))) for label in model.labels for _ in range(2)]
    profiled = model.with_profile(make_profile(model, takes, name="bench"))
    for name, m in (("model", model), ("model + profile", profiled)):
        t = timings(m.run, x, args.rounds)
        p50, p99 = np.percentile(t, 50), np.percentile(t, 99)
        print(f"{name:16s} p50 {p50:.3f} ms  p99 {p99:.3f} ms  ({args.rounds} rounds)")
    emb = model.embed(x)
    t = timings(lambda _: profiled.profile.probs(emb), x, args.rounds)
    print(f"{'profile layer':16s} p50 {np.percentile(t, 50):.3f} ms  p99 {np.percentile(t, 99):.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
