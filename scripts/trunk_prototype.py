"""What a shared convolution trunk would give (BENCHMARKS.md, "Beyond the graph's ceiling"): the bundled graph's
convolutions run once over a long span of frames, against the same convolutions run on every 2 s window of that
span (0.5 s hop: each frame computed four times), one ONNX Runtime thread, pinned to one core.

The prototype graph is the bundled default.onnx cut after its last convolution block (relu_4) with a free time axis;
pooling and the dense head per window would be a few microseconds in numpy. It is a *timing* prototype: with the
model's `window` input normalisation every window is referenced to its own speech level, so the frames a window
sees differ from window to window and a shared trunk would need a per-frame reference (e.g. the `session` mode or a
causal running level), i.e. a retrained model.

    python scripts/trunk_prototype.py [--seconds 60] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ser_live.realtime.model import session_options  # noqa: E402

TRUNK_OUTPUT = "logmel_cnn_1/relu_4_1/Relu:0"
FRAMES_PER_S = 100  # logmel_wide: 10 ms hop
WINDOW_FRAMES = 197
HOP_FRAMES = 50


def trunk_model(path: Path, batch_dim: str = "batch", time_dim: str = "frames") -> bytes:
    proto = onnx.load(str(path))
    graph = proto.graph
    dims = graph.input[0].type.tensor_type.shape.dim
    dims[0].dim_param, dims[1].dim_param = batch_dim, time_dim
    del graph.output[:]
    graph.output.append(onnx.helper.make_tensor_value_info(TRUNK_OUTPUT, onnx.TensorProto.FLOAT, None))
    keep, needed = [], {TRUNK_OUTPUT}
    for node in reversed(graph.node):
        if set(node.output) & needed:
            keep.append(node)
            needed |= set(node.input)
    del graph.node[:]
    graph.node.extend(reversed(keep))
    return proto.SerializeToString()


def best_of(fn, rounds: int) -> float:
    fn()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "ser_live" / "models" / "default.onnx")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    sess = ort.InferenceSession(trunk_model(args.model), sess_options=session_options(1),
                                providers=["CPUExecutionProvider"])
    full = ort.InferenceSession(str(args.model), sess_options=session_options(1), providers=["CPUExecutionProvider"])
    frames = int(args.seconds * FRAMES_PER_S)
    x = np.random.default_rng(0).normal(-40, 15, size=(1, frames, 64)).astype(np.float32)
    starts = range(0, frames - WINDOW_FRAMES + 1, HOP_FRAMES)
    windows = np.stack([x[0, s : s + WINDOW_FRAMES] for s in starts])
    once = best_of(lambda: sess.run([TRUNK_OUTPUT], {"features": x}), args.rounds)
    per_window = best_of(lambda: sess.run([TRUNK_OUTPUT], {"features": windows}), args.rounds)
    graph = best_of(lambda: full.run(["probs"], {"features": windows}), args.rounds)
    n = len(windows)
    print(f"{args.seconds:g} s of frames, {n} windows of {WINDOW_FRAMES} frames every {HOP_FRAMES}")
    print(f"whole graph on the windows:      {1000 * graph:8.1f} ms  ({1000 * graph / n:.3f} ms a window, "
          f"{args.seconds / graph:,.0f}x real time)")
    print(f"trunk on the windows:            {1000 * per_window:8.1f} ms  ({1000 * per_window / n:.3f} ms a window)")
    print(f"trunk once over the span:        {1000 * once:8.1f} ms  ({1000 * once / n:.3f} ms a window, "
          f"{args.seconds / once:,.0f}x real time)")
    print(f"shared trunk / per-window trunk: {once / per_window:.2f} (ceiling x{per_window / once:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
