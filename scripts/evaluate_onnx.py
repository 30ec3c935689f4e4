"""Evaluate exported ONNX models on the held-out speakers of a ser-train speaker-split run.

Usage::

    python scripts/evaluate_onnx.py runs/x ser_live/models/default.onnx ser_live/models/small.onnx \\
        --data ravdess=PATH --data tess=PATH [--cache .cache/features]

The test clips are the run's held-out speakers (``metrics.json: test_speakers``); their windows are cut and
featurised exactly as in training (same pipeline, same cache), then each model is run through ONNX Runtime.
Prints clip-level (mean of window probabilities) and window-level accuracy and UAR per model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ser_live.realtime.model import load_model
from ser_live.realtime.stages.features import FeaturePreset
from ser_live.realtime.stages.pipeline import PipelineConfig
from ser_live.train import metrics as scores
from ser_live.train.cli import pool_by_clip
from ser_live.train.corpora import load_corpora, parse_data_spec
from ser_live.train.dataset import FeatureBuilder, stack_examples


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("models", type=Path, nargs="+")
    p.add_argument("--data", action="append", required=True)
    p.add_argument("--cache", type=Path, default=Path(".cache/features"))
    args = p.parse_args(argv)
    config = json.loads((args.run / "config.json").read_text())
    metrics = json.loads((args.run / "metrics.json").read_text())
    if metrics["split"] != "speaker":
        print("only speaker-split runs name their held-out clips", file=sys.stderr)
        return 2
    labels = tuple(config["labels"])
    test_speakers = set(metrics["test_speakers"])
    loaded = load_corpora([parse_data_spec(s) for s in args.data], keep_calm="calm" in labels)
    records = [r for r in loaded.records if r.speaker in test_speakers]
    pipe = PipelineConfig(
        preset=FeaturePreset.from_dict(config["preset"]),
        window_s=config["window_s"],
        hop_s=config["hop_s"],
        min_speech_s=config["min_speech_s"],
        vad_aggressiveness=config["vad"]["aggressiveness"],
    )
    clips = FeatureBuilder(pipe, cache_dir=args.cache).build(records)
    x, y, groups = stack_examples(clips, labels, pipe.feature_shape)
    ids = list(range(len(labels)))
    for path in args.models:
        model = load_model(path)
        probs = model.predict(x)
        clip_ids, pooled = pool_by_clip(probs, groups)
        truth = np.array([labels.index(clips[c].record.label) for c in clip_ids])
        clip = scores.metrics_dict(truth, pooled.argmax(axis=1), ids, labels)
        win = scores.metrics_dict(y, probs.argmax(axis=1), ids, labels)
        print(
            f"{path.name}: {len(clip_ids)} clips of {sorted(test_speakers)} — clip accuracy {clip['accuracy']:.4f} "
            f"UAR {clip['uar']:.4f} | window accuracy {win['accuracy']:.4f} UAR {win['uar']:.4f} "
            f"({path.stat().st_size / 1024:.0f} KiB)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
