"""A tiny ser-live ONNX model for tests, built with ``onnx.helper`` (no TensorFlow): fast, deterministic, valid.

>>> from tests.tiny_model import make_tiny_model
>>> path = make_tiny_model(tmp_path / "tiny.onnx", preset_name="logmel")
>>> model = ser_live.realtime.model.load_model(path)

The graph follows the model-file contract of ARCHITECTURE.md: input ``features`` ``[batch, *feature_shape]`` (raw
features), output ``probs`` ``[batch, n_labels]``, and the ``ser_live`` metadata JSON. Inside:

- vector presets (``seed180``, ``seed162``): ``x -> (x - mean) / std -> squash -> Gemm -> Softmax``;
- frames presets (``logmel``): ``x -> mean over time -> (x - mean) / std -> squash -> Gemm -> Softmax``;

where ``squash(z) = sign(z) * log(1 + |z|)`` keeps the very different feature scales (mel power, MFCC, chroma)
in a range where the output still depends on the input. The weights come from ``numpy.random.default_rng(seed)``;
:func:`tiny_reference` computes the same probabilities in numpy. The feature shape is derived from the preset and
the window exactly as the engine derives it (``realtime.stages.pipeline.PipelineConfig``), so the engine accepts the
model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ser_live.realtime.model import EMBEDDING_OUTPUT, FORMAT_VERSION, INPUT_NAME, METADATA_KEY, OUTPUT_NAME
from ser_live.realtime.stages.affect import AFFECT_OUTPUT
from ser_live.realtime.stages.features import FeaturePreset, get_preset
from ser_live.realtime.stages.pipeline import PipelineConfig

TINY_LABELS: tuple[str, ...] = ("angry", "disgust", "fearful", "happy", "neutral", "sad", "surprised")
DEFAULT_PRESET = "seed180"
DEFAULT_WINDOW_S = 2.048
DEFAULT_HOP_S = 0.512
DEFAULT_MIN_SPEECH_S = 0.5
DEFAULT_SEED = 0
# opset 15 / IR 8 load in every onnxruntime the project supports (>= 1.17).
OPSET = 15
IR_VERSION = 8
# Gemm weights ~ N(0, WEIGHT_GAIN / sqrt(inputs)): logits of order 1, so probabilities are not saturated.
WEIGHT_GAIN = 1.5
BIAS_GAIN = 0.1
RECIPE = "tiny-test"
CREATED = "2026-01-01T00:00:00+00:00"
PROJECT_VERSION = "0.0.0-test"


def tiny_feature_shape(preset_name: str | FeaturePreset = DEFAULT_PRESET, window_s: float = DEFAULT_WINDOW_S,
                       hop_s: float = DEFAULT_HOP_S) -> tuple[int, ...]:
    """The feature shape the engine computes for this preset and window (window rounded to the frame hop)."""
    return PipelineConfig(preset=_preset(preset_name), window_s=window_s, hop_s=hop_s).feature_shape


def _preset(preset: str | FeaturePreset) -> FeaturePreset:
    return get_preset(preset) if isinstance(preset, str) else preset


def tiny_weights(feature_shape: Sequence[int], n_labels: int, seed: int = DEFAULT_SEED) -> dict[str, np.ndarray]:
    """Parameters: ``mean``/``std`` per (pooled) input, Gemm ``w`` ``(width, n_labels)`` and ``b``."""
    width = int(feature_shape[-1]) if len(feature_shape) == 2 else math.prod(feature_shape)
    rng = np.random.default_rng(seed)
    return {
        "mean": np.zeros(width, dtype=np.float32),
        "std": np.ones(width, dtype=np.float32),
        "w": (rng.normal(size=(width, n_labels)) * WEIGHT_GAIN / math.sqrt(width)).astype(np.float32),
        "b": (rng.normal(size=n_labels) * BIAS_GAIN).astype(np.float32),
    }


def tiny_affect_weights(feature_shape: Sequence[int], seed: int = DEFAULT_SEED) -> dict[str, np.ndarray]:
    """Parameters of the optional affect head: Gemm ``wa`` ``(width, 2)`` and ``ba``, then tanh."""
    width = int(feature_shape[-1]) if len(feature_shape) == 2 else math.prod(feature_shape)
    rng = np.random.default_rng(seed + 1)
    return {
        "wa": (rng.normal(size=(width, 2)) * WEIGHT_GAIN / math.sqrt(width)).astype(np.float32),
        "ba": (rng.normal(size=2) * BIAS_GAIN).astype(np.float32),
    }


def _squashed(features: np.ndarray, feature_shape: Sequence[int], weights: Mapping[str, np.ndarray]) -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    if len(feature_shape) == 2:
        x = x.mean(axis=1)
    z = (x.reshape(len(x), -1) - weights["mean"]) / weights["std"]
    return np.sign(z) * np.log1p(np.abs(z))


def tiny_affect_reference(features: np.ndarray, feature_shape: Sequence[int], seed: int = DEFAULT_SEED) -> np.ndarray:
    """The affect head's output in numpy: ``[batch, *feature_shape] -> [batch, 2]`` (arousal, valence)."""
    weights = tiny_weights(feature_shape, len(TINY_LABELS), seed) | tiny_affect_weights(feature_shape, seed)
    return np.tanh(_squashed(features, feature_shape, weights) @ weights["wa"] + weights["ba"])


def tiny_reference(features: np.ndarray, feature_shape: Sequence[int], n_labels: int = len(TINY_LABELS),
                   seed: int = DEFAULT_SEED) -> np.ndarray:
    """The tiny model's probabilities in numpy: ``[batch, *feature_shape] -> [batch, n_labels]``."""
    weights = tiny_weights(feature_shape, n_labels, seed)
    logits = _squashed(features, feature_shape, weights) @ weights["w"] + weights["b"]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def tiny_metadata(preset: FeaturePreset, labels: Sequence[str], window_s: float, hop_s: float,
                  min_speech_s: float, feature_shape: Sequence[int], weights: Mapping[str, np.ndarray],
                  ) -> dict[str, Any]:
    """The ``ser_live`` metadata dict, with every key ``ser_live.realtime.model.load_model`` reads."""
    return {
        "format_version": FORMAT_VERSION,
        "labels": list(labels),
        "preset": preset.to_dict(),
        "sample_rate": preset.sample_rate,
        "window_s": float(window_s),
        "hop_s": float(hop_s),
        "min_speech_s": float(min_speech_s),
        "feature_shape": [int(d) for d in feature_shape],
        "normalization": {"mean": weights["mean"].tolist(), "std": weights["std"].tolist()},
        "recipe": RECIPE,
        "data": {"corpora": ["none: random weights for tests"]},
        "metrics": {},
        "project_version": PROJECT_VERSION,
        "created": CREATED,
    }


def _graph(feature_shape: tuple[int, ...], n_labels: int, weights: Mapping[str, np.ndarray],
           affect_head: bool = False, embedding: bool = False) -> onnx.GraphProto:
    nodes: list[onnx.NodeProto] = []
    source = INPUT_NAME
    if len(feature_shape) == 2:  # frames: mean over time
        nodes.append(helper.make_node("ReduceMean", [INPUT_NAME], ["pooled"], axes=[1], keepdims=0))
        source = "pooled"
    nodes += [
        helper.make_node("Sub", [source, "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "std"], ["scaled"]),
        helper.make_node("Abs", ["scaled"], ["magnitude"]),
        helper.make_node("Add", ["magnitude", "one"], ["shifted"]),
        helper.make_node("Log", ["shifted"], ["log_magnitude"]),
        helper.make_node("Sign", ["scaled"], ["sign"]),
        helper.make_node("Mul", ["sign", "log_magnitude"], ["squashed"]),
        helper.make_node("Gemm", ["squashed", "w", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], [OUTPUT_NAME], axis=-1),
    ]
    outputs = [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", n_labels])]
    if affect_head:
        nodes += [helper.make_node("Gemm", ["squashed", "wa", "ba"], ["affect_logits"]),
                  helper.make_node("Tanh", ["affect_logits"], [AFFECT_OUTPUT])]
        outputs.append(helper.make_tensor_value_info(AFFECT_OUTPUT, TensorProto.FLOAT, ["batch", 2]))
    if embedding:
        width = int(weights["w"].shape[0])
        nodes.append(helper.make_node("Identity", ["squashed"], [EMBEDDING_OUTPUT]))
        outputs.append(helper.make_tensor_value_info(EMBEDDING_OUTPUT, TensorProto.FLOAT, ["batch", width]))
    initializers = [numpy_helper.from_array(np.asarray(v), k) for k, v in weights.items()]
    initializers.append(numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"))
    return helper.make_graph(
        nodes,
        "ser_live_tiny",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", *feature_shape])],
        outputs,
        initializers,
    )


def make_tiny_model(
    path: str | Path,
    preset_name: str | FeaturePreset = DEFAULT_PRESET,
    labels: Sequence[str] = TINY_LABELS,
    window_s: float = DEFAULT_WINDOW_S,
    hop_s: float = DEFAULT_HOP_S,
    min_speech_s: float = DEFAULT_MIN_SPEECH_S,
    *,
    seed: int = DEFAULT_SEED,
    metadata_overrides: Mapping[str, Any] | None = None,
    affect_head: bool = False,
    embedding: bool = False,
) -> Path:
    """Write a tiny ser-live model to ``path`` and return the path.

    ``embedding``: the graph also has the ``embedding`` output (the squashed input of its Gemm) and the metadata
    carries that last layer (:class:`ser_live.realtime.model.EmbeddingInfo`), so the model can be personalised.

    ``affect_head``: the graph also has the ``affect`` output (tanh of a second Gemm, :func:`tiny_affect_reference`)
    and the metadata names it as the model's arousal/valence (``{"method": "head"}``).

    ``metadata_overrides`` replaces (or, with value ``None``, removes) keys of the ``ser_live`` metadata, for
    tests of bad model files. The file is a few kilobytes and takes milliseconds to write.
    """
    path = Path(path)
    preset = _preset(preset_name)
    feature_shape = tiny_feature_shape(preset_name, window_s, hop_s)
    weights = tiny_weights(feature_shape, len(labels), seed)
    meta = tiny_metadata(preset, labels, window_s, hop_s, min_speech_s, feature_shape, weights)
    if affect_head:
        meta["affect"] = {"method": "head", "output": AFFECT_OUTPUT}
    graph_weights = weights | tiny_affect_weights(feature_shape, seed) if affect_head else weights
    if embedding:
        meta["embedding"] = {"output": EMBEDDING_OUTPUT, "size": int(weights["w"].shape[0]),
                             "classifier": {"weights": weights["w"].astype(np.float64).tolist(),
                                            "bias": weights["b"].astype(np.float64).tolist()}}
    for key, value in (metadata_overrides or {}).items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    model = helper.make_model(_graph(feature_shape, len(labels), graph_weights, affect_head, embedding),
                              opset_imports=[helper.make_opsetid("", OPSET)], producer_name="ser-live-tests")
    model.ir_version = IR_VERSION
    helper.set_model_props(model, {METADATA_KEY: json.dumps(meta)})
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
