"""Per-window cost of the calibration and arousal/valence steps the engine adds (BENCHMARKS.md, issue 11).

Usage: python benchmarks/bench_affect.py [MODEL.onnx]   (default: the bundled model)
"""

from __future__ import annotations

import sys
import time

import numpy as np

from ser_live.realtime.model import load_model
from ser_live.realtime.stages.affect import Calibration

CALLS = 20_000
FITTED_T = 0.697  # what ser-calibrate fitted for the bundled model (it stores 1, which skips the step)


def main() -> None:
    model = load_model(sys.argv[1] if len(sys.argv) > 1 else None)
    probs = np.random.default_rng(0).dirichlet(np.ones(model.info.n_labels)).astype(np.float32)
    calibration = Calibration(temperature=FITTED_T)
    for name, step in (("temperature", lambda: calibration.apply(probs)), ("affect", lambda: model.affect(probs))):
        step()
        times = []
        for _ in range(CALLS):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        p50, p99 = np.percentile(times, [50, 99]) * 1e6
        print(f"{name:12s} p50 {p50:.1f} us  p99 {p99:.1f} us")


if __name__ == "__main__":
    main()
