"""Where the time of a whole file goes (BENCHMARKS.md, "The whole-file path"): one core, numpy's BLAS at one
thread, one ONNX Runtime thread, the bundled model, in one process:

- the whole-signal ("offline") path: ``Engine.iter_batched`` over 30 s spans (what ser-batch, ser-live --fast and
  predict_file use), and the streaming path: ``Engine.feed`` in 0.1 s blocks, one model call per window;
- its floor, stage by stage on the same file: reading it, the speech gate alone (``SpeechGate``), the STFT + mel
  alone (``FrameFeatures``), and ONNX Runtime alone on the same windows (float and int8, batch 1 and 64).

    python scripts/make_long_audio.py ../shared/data /tmp/hour.wav --minutes 60
    python scripts/bench_offline.py /tmp/hour.wav
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ser_live.realtime.engine import OFFLINE_SPAN_S, Engine  # noqa: E402
from ser_live.realtime.model import bundled_model_path, load_model  # noqa: E402
from ser_live.realtime.sources.audio import audio_info, iter_audio_blocks  # noqa: E402
from ser_live.realtime.stages.features import FrameFeatures  # noqa: E402
from ser_live.realtime.stages.pipeline import FeaturePipeline  # noqa: E402
from ser_live.realtime.stages.vad import SpeechGate, VadConfig  # noqa: E402


def timed(label: str, fn, audio_s: float) -> float:
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    print(f"{label:44s} {dt:7.2f} s  {audio_s / dt:8,.0f}x real time", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("audio", type=Path)
    ap.add_argument("--skip-streaming", action="store_true")
    args = ap.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, "blas")
    info = audio_info(args.audio)
    rate, audio_s = info.sample_rate, info.frames / info.sample_rate
    span = int(OFFLINE_SPAN_S * rate)
    model = load_model(None, provider="cpu", threads=1)
    int8 = load_model(bundled_model_path().with_name("default.int8.onnx"), provider="cpu", threads=1)
    print(f"{args.audio}: {audio_s / 3600:.2f} h at {rate} Hz; one core")

    events = timed("offline path (iter_batched, 30 s spans)",
                   lambda: list(Engine(model, rate).iter_batched(iter_audio_blocks(args.audio, span))), audio_s)
    if not args.skip_streaming:
        def streaming() -> list:
            engine = Engine(model, rate)
            out = [e for b in iter_audio_blocks(args.audio, int(0.1 * rate)) for e in engine.feed(b)]
            return out + engine.flush()

        live = timed("streaming path (feed 0.1 s, a call per window)", streaming, audio_s)
        assert [e.label for e in live] == [e.label for e in events]
    timed("  read the file (30 s spans)", lambda: sum(len(b) for b in iter_audio_blocks(args.audio, span)), audio_s)
    config = Engine(model, rate).pipeline_config

    def gate() -> None:
        g = SpeechGate(VadConfig(sample_rate=config.sample_rate))
        for b in iter_audio_blocks(args.audio, span):
            g.process(b[:, 0] if b.ndim == 2 else b)
        g.flush()

    timed("  speech gate alone (webrtcvad + AGC/floor)", gate, audio_s)

    def frames() -> None:
        f = FrameFeatures(config.preset, capacity_frames=8192)
        for b in iter_audio_blocks(args.audio, span):
            for i in range(0, len(b), 4 * rate):
                f.process(b[i : i + 4 * rate, 0] if b.ndim == 2 else b[i : i + 4 * rate])

    timed("  STFT + log-mel alone", frames, audio_s)

    def features() -> np.ndarray:
        p = FeaturePipeline(config, rate, input_norm=model.info.input_norm)
        out = [w.features for b in iter_audio_blocks(args.audio, span) for w in p.process(b)]
        out += [w.features for w in p.flush()]
        return np.stack([x for x in out if x is not None])

    x = timed("  features of every window (no model)", features, audio_s)
    print(f"  {len(x)} windows")
    for name, m in (("float", model), ("int8", int8)):
        for batch in (1, 64):
            timed(f"  ONNX Runtime alone, {name}, batch {batch}",
                  lambda m=m, batch=batch: [m.predict(x[i : i + batch]) for i in range(0, len(x), batch)], audio_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
