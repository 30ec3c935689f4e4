"""Per-hop cost of model files in the live loop: features + graph for one 0.5 s hop (the `HopLoop` of
tests/benchmarks/test_latency.py), one ONNX Runtime thread, BLAS 1 thread, on the bundled demo resampled to 16 kHz.

    python benchmarks/bench_hop.py runs/v2.onnx ser_live/models/default.onnx [--hops 1000] [--repeats 2] [--profile]

The suite's own helpers pin the process to one core and limit BLAS to one thread. Prints p50/p99 of the whole hop
and of the graph call, per model and repeat (models interleaved, so a busy moment hits all of them). No figure here
is asserted anywhere: quote them in BENCHMARKS.md with the machine and date.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ser_live.realtime.model import EmotionModel  # noqa: E402
from ser_live.realtime.profile import Base, Take, make_profile  # noqa: E402
from tests.benchmarks.conftest import blas_threads, percentiles_ms, pinned_to_one_core  # noqa: E402
from tests.benchmarks.test_latency import HopLoop, _load  # noqa: E402

SAMPLE_RATE = 16_000
WARMUP_HOPS = 200


def demo_audio() -> np.ndarray:
    y, sr = sf.read(ROOT / "ser_live" / "models" / "demo.wav", dtype="float32", always_2d=True)
    return soxr.resample(y.mean(axis=1), sr, SAMPLE_RATE).astype(np.float32)


def with_profile(model: EmotionModel) -> EmotionModel:
    """The model with a profile fitted on random embeddings (two takes per label): its cost, not its accuracy."""
    rng = np.random.default_rng(0)
    size = Base.of(model).weights.shape[0]
    takes = [Take(label, np.abs(rng.normal(size=(4, size)))) for label in model.labels for _ in range(2)]
    return model.with_profile(make_profile(model, takes, name="bench"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--hops", type=int, default=1000, help="timed hops per model and repeat (after 200)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--profile", action="store_true",
                        help="also time each model with a personal profile (fitted on random embeddings)")
    args = parser.parse_args()
    audio = demo_audio()
    with pinned_to_one_core() as cpu, blas_threads(1):
        models = [(str(path), _load(path)) for path in args.models]
        if args.profile:
            models += [(f"{name} + profile", with_profile(model)) for name, model in models]
        for rep in range(args.repeats):
            for path, model in models:
                loop = HopLoop(model, audio)
                loop.prime()
                for _ in range(WARMUP_HOPS + args.hops):
                    loop.step()
                features, graph = loop.features_s[WARMUP_HOPS:], loop.inference_s[WARMUP_HOPS:]
                hop = percentiles_ms(np.add(features, graph))
                net = percentiles_ms(graph)
                print(f"{path} (repeat {rep + 1}, cpu {cpu}): hop p50 {hop['p50_ms']:.3f} / p99 {hop['p99_ms']:.3f} "
                      f"ms; graph p50 {net['p50_ms']:.3f} / p99 {net['p99_ms']:.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
