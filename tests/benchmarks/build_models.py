"""Build untrained models of the real recipes and export them to ONNX, for the latency benchmarks.

Inference cost depends on the architecture, not on the weights, so an untrained seed180 / seed162 / logmel_cnn
model exported by the project's own ``ser-export`` code times the same as a trained one. Runs in its own process
(TensorFlow must never be imported into the benchmark process that measures the runtime)::

    python -m tests.benchmarks.build_models OUTDIR [RECIPE ...]

writes ``OUTDIR/RECIPE.onnx`` for each recipe and prints one JSON line ``{"RECIPE": "path", ...}``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

# Quiet TensorFlow before it is imported (inside build()).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

logger = logging.getLogger(__name__)

LABELS: tuple[str, ...] = ("angry", "disgust", "fearful", "happy", "neutral", "sad", "surprised")
# recipe -> the feature preset it was designed for
RECIPE_PRESETS: dict[str, str] = {"seed180": "seed180", "seed162": "seed162", "logmel_cnn": "logmel"}
WINDOW_S = 2.0  # the training/engine default window (ser_live.realtime.stages.pipeline.DEFAULT_WINDOW_S)
HOP_S = 0.5
MIN_SPEECH_S = 0.5
SEED = 0


def build(recipe: str, out_dir: Path) -> Path:
    """Build ``recipe`` (random init), save it, export it with ``ser_live.export.onnx_export.export_model``."""
    from ser_live.export.onnx_export import export_model
    from ser_live.realtime.stages.features import get_preset
    from ser_live.realtime.stages.pipeline import PipelineConfig
    from ser_live.train.models import build_model, model_input_shape

    preset = get_preset(RECIPE_PRESETS[recipe])
    pipeline = PipelineConfig(preset=preset, window_s=WINDOW_S, hop_s=HOP_S, min_speech_s=MIN_SPEECH_S)
    feature_shape = pipeline.feature_shape
    model = build_model(recipe, model_input_shape(feature_shape), len(LABELS), SEED)
    width = feature_shape[-1]
    config = {
        **pipeline.to_dict(),
        "labels": list(LABELS),
        "recipe": recipe,
        "normalization": {"mean": [0.0] * width, "std": [1.0] * width},
        "data": {"corpora": ["none: untrained, for latency benchmarks"]},
    }
    output = out_dir / f"{recipe}.onnx"
    with tempfile.TemporaryDirectory(prefix=f"bench-{recipe}-") as tmp:
        keras_path = Path(tmp) / "model.keras"
        model.save(keras_path)
        export_model(keras_path, output, config=config)
    return output


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m tests.benchmarks.build_models OUTDIR [RECIPE ...]", file=sys.stderr)
        return 2
    out_dir = Path(args[0])
    out_dir.mkdir(parents=True, exist_ok=True)
    recipes = args[1:] or list(RECIPE_PRESETS)
    paths = {recipe: str(build(recipe, out_dir)) for recipe in recipes}
    print(json.dumps(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
