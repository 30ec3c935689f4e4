"""Keras run -> one self-describing ONNX model file (standardisation folded in, metadata, parity-checked, atomic).

``export_model(source, output)`` takes a run directory made by ``ser-train`` (``model.keras`` + ``config.json``,
optionally ``val_features.npy``) or a ``.keras`` file plus its config, and writes ``output`` (and, with
``quantize="int8"``, ``NAME.int8.onnx``). The graph takes raw features ``features [batch, *feature_shape]``, applies
``(x - mean) / std``, reshapes to the Keras input and returns ``probs [batch, n_labels]``; batch normalisation is
folded into the convolutions before it (:mod:`export.fold`), so the parity check covers that too. The ser-live metadata
(``metadata_props["ser_live"]``, see ARCHITECTURE.md) is read back by :func:`ser_live.realtime.model.load_model`.

TensorFlow / Keras / tf2onnx are imported lazily inside the functions that need them.
"""

from __future__ import annotations

import json
import logging
import math
import os
import stat
import tempfile
import time
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ser_live import __version__ as PROJECT_VERSION  # noqa: N812
from ser_live.export import DEFAULT_OPSET, PARITY_TOLERANCE, QUANTIZE_CHOICES
from ser_live.export.embedding import add_embedding_output, add_output_by_name, check_embedding, run_graph
from ser_live.export.fold import fold_batchnorm
from ser_live.realtime.errors import UserError
from ser_live.realtime.model import (
    EMBEDDING_KEY,
    EMBEDDING_OUTPUT,
    ENCODER_KEY,
    FORMAT_VERSION,
    INPUT_NAME,
    METADATA_KEY,
    OUTPUT_NAME,
    SESSION_NORM_KEY,
    labels_are_valid,
)
from ser_live.realtime.stages.affect import AFFECT_KEY, AFFECT_OUTPUT, DIMENSIONS, AffectMap
from ser_live.realtime.stages.normalize import InputNormConfig

if TYPE_CHECKING:  # pragma: no cover
    import onnx

logger = logging.getLogger(__name__)

MIN_OPSET = 13
GENERATED_PARITY_ROWS = 64
MAX_PARITY_ROWS = 1024
PARITY_SEED = 0
# Keras outputs must be probabilities: non-negative rows summing to 1 within this tolerance.
PROBABILITY_SUM_TOLERANCE = 1e-3
BATCH_DIM_NAME = "batch"
ERROR_DETAIL_CHARS = 200
DEFAULT_FILE_MODE = 0o666
PRODUCER_NAME = "ser-live"

MODEL_FILENAME = "model.keras"
CONFIG_FILENAME = "config.json"
VAL_FEATURES_FILENAME = "val_features.npy"
KERAS_SUFFIXES: tuple[str, ...] = (".keras", ".h5")
ONNX_SUFFIX = ".onnx"
INT8_SUFFIX = ".int8.onnx"
RUN_DIR_HINT = "pass a run directory made by ser-train, or a .keras file with --config"
REQUIRED_CONFIG_KEYS: tuple[str, ...] = (
    "labels",
    "preset",
    "feature_shape",
    "sample_rate",
    "window_s",
    "hop_s",
    "min_speech_s",
    "normalization",
)


class ExportError(UserError):
    """The export ran but its result is not trustworthy (parity failed, conversion failed): nothing was written."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message, exit_code)


@dataclass(frozen=True)
class ParityReport:
    """Keras vs ONNX Runtime on the same raw features."""

    rows: int
    source: str  # "val_features.npy" or "generated"
    max_abs_diff: float
    argmax_agreement: float  # fraction of rows with the same argmax, 0..1

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= PARITY_TOLERANCE and self.argmax_agreement == 1.0


@dataclass(frozen=True)
class QuantizedReport:
    path: Path
    size_bytes: int
    parity: ParityReport
    embedding_max_rel_diff: float | None = None  # int8 vs float embedding, relative to its largest value


@dataclass(frozen=True)
class ExportReport:
    source: Path
    output: Path
    size_bytes: int
    opset: int
    labels: tuple[str, ...]
    feature_shape: tuple[int, ...]
    parity: ParityReport
    quantized: QuantizedReport | None
    seconds: float
    embedding_size: int | None = None  # the graph's embedding output (None: not found, cannot be personalised)
    embedding_max_rel_diff: float | None = None  # Keras vs ONNX embedding, relative to its largest value


@dataclass(frozen=True)
class _RunConfig:
    """The validated parts of config.json the export needs."""

    raw: Mapping[str, Any]
    labels: tuple[str, ...]
    feature_shape: tuple[int, ...]
    mean: np.ndarray  # float32, broadcastable to feature_shape
    std: np.ndarray


def _one_line(err: BaseException) -> str:
    """``Type: first line of the message`` (bounded), for one-line user messages."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:ERROR_DETAIL_CHARS]}" if lines else type(err).__name__


def model_input_shape(feature_shape: Sequence[int]) -> tuple[int, ...]:
    """The Keras input shape for a feature shape: vector ``(D,)`` -> ``(D, 1)``; frames ``(T, M)`` -> ``(T, M)``."""
    shape = tuple(int(d) for d in feature_shape)
    return (shape[0], 1) if len(shape) == 1 else shape


def keras_input_shape(model: Any, feature_shape: Sequence[int]) -> tuple[int, ...]:
    """The input shape the Keras model takes for ``feature_shape``: the CNNs' (``model_input_shape``), or the
    feature shape itself for a network built on it (the head of a two-graph model takes ``(D,)``)."""
    shape = tuple(int(d) for d in feature_shape)
    got = tuple(model.inputs[0].shape[1:])
    return shape if got == shape else model_input_shape(shape)


def int8_path(output: Path) -> Path:
    """``models/NAME.onnx`` -> ``models/NAME.int8.onnx``."""
    name = output.name[: -len(ONNX_SUFFIX)] if output.name.endswith(ONNX_SUFFIX) else output.stem
    return output.with_name(name + INT8_SUFFIX)


def load_config(path: Path) -> dict[str, Any]:
    """Read a run's config.json (UserError when missing or not a JSON object)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config {path} not found: {RUN_DIR_HINT}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"config {path} is not readable JSON ({err}): {RUN_DIR_HINT}") from None
    if not isinstance(config, dict):
        raise UserError(f"config {path} is not a JSON object: {RUN_DIR_HINT}")
    return config


def _resolve_source(source: Path, config: Mapping[str, Any] | None) -> tuple[Path, dict[str, Any], Path | None]:
    """-> (Keras model path, config, directory that may hold val_features.npy)."""
    if not source.exists():
        raise UserError(f"{source} not found: {RUN_DIR_HINT}")
    if source.is_dir():
        keras_path = source / MODEL_FILENAME
        if not keras_path.is_file():
            raise UserError(f"{source} has no {MODEL_FILENAME}: {RUN_DIR_HINT}")
        if config is None:
            if not (source / CONFIG_FILENAME).is_file():
                raise UserError(f"{source} has no {CONFIG_FILENAME}: {RUN_DIR_HINT}")
            config = load_config(source / CONFIG_FILENAME)
        return keras_path, dict(config), source
    if source.suffix.lower() not in KERAS_SUFFIXES:
        raise UserError(
            f"{source} is not a Keras model (expected a {' or '.join(KERAS_SUFFIXES)} file): {RUN_DIR_HINT}"
        )
    if config is None:
        sibling = source.parent / CONFIG_FILENAME
        if not sibling.is_file():
            raise UserError(f"no {CONFIG_FILENAME} for {source}: {RUN_DIR_HINT}")
        logger.info("using %s for %s", sibling, source)
        config = load_config(sibling)
    return source, dict(config), source.parent


def _validate_config(config: Mapping[str, Any]) -> _RunConfig:
    fix = "re-run ser-train or fix the config"
    missing = [key for key in REQUIRED_CONFIG_KEYS if key not in config]
    if missing:
        raise UserError(f"the run config lacks {', '.join(missing)}: {fix}")
    labels = config["labels"]
    if not labels_are_valid(labels):
        raise UserError(f"the run config labels must be a list of distinct names, not {labels!r}: {fix}")
    if not isinstance(config["preset"], Mapping):
        raise UserError(f"the run config preset must be a JSON object: {fix}")
    shape_value = config["feature_shape"]
    if (
        not isinstance(shape_value, list)
        or len(shape_value) not in (1, 2)
        or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape_value)
    ):
        raise UserError(f"the run config feature_shape must be [D] or [T, M], not {shape_value!r}: {fix}")
    feature_shape = tuple(shape_value)
    for key in ("sample_rate", "window_s", "hop_s"):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise UserError(f"the run config {key} must be a positive number, not {value!r}: {fix}")
    norm = config["normalization"]
    if not isinstance(norm, Mapping) or "mean" not in norm or "std" not in norm:
        raise UserError(f"the run config normalization must have mean and std: {fix}")
    mean = _normalization_array(norm["mean"], feature_shape, "mean")
    std = _normalization_array(norm["std"], feature_shape, "std")
    if not np.all(std > 0):
        raise UserError(f"the run config normalization std has zero or negative values: {fix}")
    return _RunConfig(raw=config, labels=tuple(labels), feature_shape=feature_shape, mean=mean, std=std)


def _normalization_array(values: Any, feature_shape: tuple[int, ...], name: str) -> np.ndarray:
    """Flattened full-shape values -> feature_shape; per-last-axis values stay ``(M,)`` (they broadcast)."""
    try:
        arr = np.asarray(values, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError):
        raise UserError(f"the run config normalization {name} is not a list of numbers") from None
    if not np.all(np.isfinite(arr)):
        raise UserError(f"the run config normalization {name} has NaN or infinite values: re-run ser-train")
    if arr.size == math.prod(feature_shape):
        return arr.reshape(feature_shape)
    if arr.size == feature_shape[-1]:
        return arr
    raise UserError(
        f"the run config normalization {name} has {arr.size} values; feature_shape {list(feature_shape)} needs "
        f"{math.prod(feature_shape)} (one per feature) or {feature_shape[-1]} (one per last axis)"
    )


def _check_output(output: Path) -> None:
    if not output.name.endswith(ONNX_SUFFIX):
        raise UserError(f"output {output} must end in {ONNX_SUFFIX}: choose e.g. -o models/NAME.onnx")
    if output.is_dir():
        raise UserError(f"output {output} is a directory: give a file name such as {output / 'model.onnx'}")
    parent = output.parent
    if not parent.is_dir():
        raise UserError(f"cannot write {output}: directory {parent} does not exist; create it or choose another -o")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {output}: directory {parent} is not writable; choose another -o")


def supported_opsets() -> tuple[int, int]:
    """(lowest, highest) opset this install's tf2onnx can target."""
    from tf2onnx import constants

    return MIN_OPSET, max(constants.OPSET_TO_IR_VERSION)


def _check_opset(opset: int) -> None:
    import tf2onnx

    low, high = supported_opsets()
    if isinstance(opset, bool) or not isinstance(opset, int) or not low <= opset <= high:
        raise UserError(f"opset {opset} is not supported by tf2onnx {tf2onnx.__version__}; use {low}–{high}")


def _load_keras(path: Path) -> Any:
    """Load a Keras model (UserError when it is not one)."""
    not_keras = f"{path} is not a Keras model: pass {MODEL_FILENAME} from a ser-train run"
    if path.suffix.lower() == ".keras" and not zipfile.is_zipfile(path):
        raise UserError(not_keras)
    import keras

    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as err:  # Keras raises many types for bad files: report them as one line
        logger.debug("keras could not load %s: %r", path, err)
        raise UserError(f"{not_keras} ({_one_line(err)})") from None
    if not isinstance(model, keras.Model):
        raise UserError(not_keras)
    return model


def has_affect_head(model: Any) -> bool:
    """Whether a Keras model has the trained arousal/valence output (``ser-train --affect-weight``)."""
    return AFFECT_OUTPUT in list(getattr(model, "output_names", None) or [])


def split_outputs(outputs: Any) -> tuple[Any, Any]:
    """``(probs, affect or None)`` of a Keras model call: one tensor, or the dict of a model with a head."""
    if isinstance(outputs, Mapping):
        return outputs[OUTPUT_NAME], outputs[AFFECT_OUTPUT]
    return outputs, None


def _check_model_shapes(model: Any, run: _RunConfig) -> None:
    head = has_affect_head(model)
    if len(model.inputs) != 1 or len(model.outputs) != 1 + head:
        raise UserError(
            f"the Keras model has {len(model.inputs)} inputs and {len(model.outputs)} outputs; ser-live needs "
            f"one input and one output (probs), or two (probs and {AFFECT_OUTPUT})"
        )
    if head:
        names = list(model.output_names)
        if sorted(names) != sorted([OUTPUT_NAME, AFFECT_OUTPUT]):
            raise UserError(f"the Keras model's outputs are {names}, not {OUTPUT_NAME} and {AFFECT_OUTPUT}")
        width = model.outputs[names.index(AFFECT_OUTPUT)].shape[-1]
        if width != len(DIMENSIONS):
            raise UserError(f"the model's {AFFECT_OUTPUT} output has {width} values, not {len(DIMENSIONS)}")
    expected = keras_input_shape(model, run.feature_shape)
    got = tuple(model.inputs[0].shape[1:])
    if len(got) != len(expected) or any(g is not None and g != e for g, e in zip(got, expected, strict=True)):
        raise UserError(
            f"the Keras model takes input {got} but feature_shape {list(run.feature_shape)} gives "
            f"{expected}: the model and config.json are from different runs"
        )
    probs_index = list(model.output_names).index(OUTPUT_NAME) if head else 0
    n_out = model.outputs[probs_index].shape[-1]
    if n_out != len(run.labels):
        raise UserError(
            f"the Keras model has {n_out} outputs but config.json lists {len(run.labels)} labels: "
            "the model and config.json are from different runs"
        )


def build_metadata(
    config: Mapping[str, Any], feature_shape: Sequence[int], affect_head: bool = False
) -> dict[str, Any]:
    """The ``ser_live`` metadata dict (ARCHITECTURE.md "Model file (ONNX)"); ``affect_head``: the graph has the
    trained ``affect`` output, which the metadata then names as the model's arousal/valence."""
    metrics = dict(config.get("metrics") or {})
    if "split" in config and "split" not in metrics:
        metrics["split"] = config["split"]
    norm = config["normalization"]
    extra: dict[str, Any] = {}
    input_norm = InputNormConfig.from_dict(config.get("input_normalization"))
    if input_norm.enabled:  # models without it stay byte-for-byte what they were
        extra["input_normalization"] = input_norm.to_dict()
    for key in (ENCODER_KEY, SESSION_NORM_KEY):  # a two-graph model's head: its frame encoder and normaliser
        if key in config:
            extra[key] = config[key]
    if affect_head:
        trained = dict(config.get("affect_head") or {})
        extra[AFFECT_KEY] = AffectMap.head(config["labels"]).to_dict() | {"loss_weight": trained.get("weight")}
    return {
        "format_version": FORMAT_VERSION,
        "labels": list(config["labels"]),
        "preset": dict(config["preset"]),
        "sample_rate": int(config["sample_rate"]),
        "window_s": float(config["window_s"]),
        "hop_s": float(config["hop_s"]),
        "min_speech_s": float(config["min_speech_s"]),
        "feature_shape": [int(d) for d in feature_shape],
        "normalization": {
            "mean": np.asarray(norm["mean"], dtype=np.float64).reshape(-1).tolist(),
            "std": np.asarray(norm["std"], dtype=np.float64).reshape(-1).tolist(),
        },
        **extra,
        "recipe": str(config.get("recipe", "")),
        "data": dict(config.get("data") or {}),
        "metrics": metrics,
        "project_version": PROJECT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _convert(model: Any, run: _RunConfig, opset: int) -> onnx.ModelProto:
    """tf2onnx.from_function on standardise -> reshape -> model (from_keras fails on Keras 3 models)."""
    import tensorflow as tf
    import tf2onnx

    input_shape = [-1, *keras_input_shape(model, run.feature_shape)]

    @tf.function(input_signature=[tf.TensorSpec([None, *run.feature_shape], tf.float32, name=INPUT_NAME)])
    def serve(features: Any) -> dict[str, Any]:
        # Constants made inside the function become graph initializers (outside ones would be graph inputs).
        x = tf.reshape((features - tf.constant(run.mean)) / tf.constant(run.std), input_shape)
        probs, affect = split_outputs(model(x, training=False))
        out = {OUTPUT_NAME: tf.identity(probs, name=OUTPUT_NAME)}
        if affect is not None:
            out[AFFECT_OUTPUT] = tf.identity(affect, name=AFFECT_OUTPUT)
        return out

    try:
        proto, _ = tf2onnx.convert.from_function(serve, input_signature=serve.input_signature, opset=opset)
    except Exception as err:  # tf2onnx raises arbitrary types: one line for the user
        raise ExportError(f"tf2onnx could not convert the model at opset {opset}: {_one_line(err)}") from None
    inputs = [i.name for i in proto.graph.input]
    outputs = [o.name for o in proto.graph.output]
    expected = sorted([OUTPUT_NAME, AFFECT_OUTPUT] if has_affect_head(model) else [OUTPUT_NAME])
    if inputs != [INPUT_NAME] or sorted(outputs) != expected:
        raise ExportError(
            f"the converted graph has inputs {inputs} and outputs {outputs}, expected "
            f"['{INPUT_NAME}'] and {expected}"
        )
    for value in (proto.graph.input[0], *proto.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = BATCH_DIM_NAME
    return proto


def set_metadata(proto: onnx.ModelProto, metadata_json: str) -> None:
    """Put ``metadata_json`` in the model's ``ser_live`` entry, replacing any previous one (other entries kept)."""
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key != METADATA_KEY]
    del proto.metadata_props[:]
    for key, value in [*kept, (METADATA_KEY, metadata_json)]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def _describe(proto: onnx.ModelProto, metadata_json: str, metadata: Mapping[str, Any]) -> None:
    """Set the ser-live metadata, producer and doc string (replacing any previous ``ser_live`` entry)."""
    import tf2onnx

    set_metadata(proto, metadata_json)
    proto.producer_name = PRODUCER_NAME
    proto.producer_version = PROJECT_VERSION
    shape = ", ".join(str(d) for d in metadata["feature_shape"])
    proto.doc_string = (
        f"ser-live speech-emotion model (recipe {metadata.get('recipe') or '?'}, preset "
        f"{metadata['preset'].get('name', '?')}): raw features [batch, {shape}] "
        f"-> probs over {', '.join(metadata['labels'])}. Converted with tf2onnx {tf2onnx.__version__}."
    )


def _parity_features(run: _RunConfig, run_dir: Path | None) -> tuple[np.ndarray, str]:
    """The run's validation features (at most MAX_PARITY_ROWS, evenly spread) or generated ones."""
    path = run_dir / VAL_FEATURES_FILENAME if run_dir is not None else None
    if path is not None and path.is_file():
        try:
            features = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise UserError(f"{path} is not a readable .npy array ({err}): delete it or re-run ser-train") from None
        if features.ndim != len(run.feature_shape) + 1 or features.shape[1:] != run.feature_shape:
            raise UserError(
                f"{path} has shape {features.shape}, expected (n, {', '.join(map(str, run.feature_shape))})"
                ": delete it or re-run ser-train"
            )
        features = features.astype(np.float32, copy=False)
        finite = np.all(np.isfinite(features.reshape(len(features), -1)), axis=1)
        if not np.all(finite):
            logger.warning("%s: ignoring %d rows with NaN/inf", path, int(np.sum(~finite)))
            features = features[finite]
        if len(features) > MAX_PARITY_ROWS:
            features = features[np.linspace(0, len(features) - 1, MAX_PARITY_ROWS).astype(int)]
        if len(features):
            return features, VAL_FEATURES_FILENAME
    rng = np.random.default_rng(PARITY_SEED)
    noise = rng.standard_normal((GENERATED_PARITY_ROWS, *run.feature_shape)).astype(np.float32)
    return (noise * run.std + run.mean).astype(np.float32), "generated"


Outputs = tuple[np.ndarray, "np.ndarray | None"]
"""A model's probabilities and, with a trained head, its arousal/valence."""


def _keras_embedding(model: Any, run: _RunConfig, features: np.ndarray) -> np.ndarray | None:
    """The Keras model's input to its softmax layer (the reference for the ``embedding`` output)."""
    import keras

    probs_tensor = model.outputs[list(model.output_names).index(OUTPUT_NAME)] if has_affect_head(model) else (
        model.outputs[0])
    layer = probs_tensor._keras_history.operation
    try:
        sub = keras.Model(model.inputs[0], layer.input)
    except Exception as err:  # a layer with several inputs, or none: no single embedding
        logger.debug("no Keras embedding: %r", err)
        return None
    x = ((features - run.mean) / run.std).astype(np.float32)
    x = x.reshape((len(features), *keras_input_shape(model, run.feature_shape)))
    return np.asarray(sub(x, training=False), dtype=np.float32)


def _embedding_parity(reference: np.ndarray | None, model_bytes: bytes, features: np.ndarray) -> float:
    """Largest |Keras - ONNX| of the embedding, relative to the embedding's largest value (ExportError above the
    parity tolerance)."""
    if reference is None:
        raise ExportError("the graph ends in Softmax(x @ W + b) but Keras gives no single input to that layer")
    got = run_graph(model_bytes, features, [EMBEDDING_OUTPUT])[0]
    if got.shape != reference.shape:
        raise ExportError(f"ONNX Runtime embedding shape {got.shape} differs from Keras {reference.shape}")
    diff = float(np.max(np.abs(got - reference)) / max(1.0, float(np.max(np.abs(reference)))))
    if diff > PARITY_TOLERANCE:
        raise ExportError(f"embedding parity failed: max relative |Keras - ONNX| {diff:.3g} (limit "
                          f"{PARITY_TOLERANCE:g}); nothing written")
    return diff


def _keras_predict(model: Any, run: _RunConfig, features: np.ndarray) -> Outputs:
    """The reference: numpy standardisation, reshape to the model input, Keras forward pass."""
    x = ((features - run.mean) / run.std).astype(np.float32)
    x = x.reshape((len(features), *keras_input_shape(model, run.feature_shape)))
    probs, affect = split_outputs(model(x, training=False))
    return np.asarray(probs, dtype=np.float32), None if affect is None else np.asarray(affect, dtype=np.float32)


def _onnx_predict(model_bytes: bytes, features: np.ndarray, affect_head: bool = False) -> Outputs:
    out = run_graph(model_bytes, features, [OUTPUT_NAME, AFFECT_OUTPUT] if affect_head else [OUTPUT_NAME])
    return out[0], out[1] if affect_head else None


def _compare(reference: Outputs, got: Outputs, rows: int, source: str) -> ParityReport:
    """Largest difference over every output; argmax agreement of the probabilities."""
    diffs = []
    for ref, out in zip(reference, got, strict=True):
        if ref is None:
            continue
        if out is None or out.shape != ref.shape:
            shape = None if out is None else out.shape
            raise ExportError(f"ONNX Runtime output shape {shape} differs from Keras {ref.shape}")
        diffs.append(float(np.max(np.abs(ref - out))))
    return ParityReport(
        rows=rows,
        source=source,
        max_abs_diff=max(diffs),
        argmax_agreement=float(np.mean(np.argmax(reference[0], axis=1) == np.argmax(got[0], axis=1))),
    )


def _check_probabilities(reference: np.ndarray) -> None:
    sums = reference.sum(axis=1)
    if np.any(reference < 0) or np.any(np.abs(sums - 1.0) > PROBABILITY_SUM_TOLERANCE):
        raise ExportError(
            "the Keras model's outputs are not probabilities (rows must sum to 1): its last layer must be a softmax"
        )


def _file_mode(target: Path) -> int:
    """The existing file's permissions, else 0666 minus the umask (what open() would give)."""
    if target.exists():
        return stat.S_IMODE(target.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    return DEFAULT_FILE_MODE & ~umask


@contextmanager
def _temporary_sibling(target: Path) -> Iterator[Path]:
    """A temp file path next to ``target`` (same filesystem, so os.replace is atomic); removed unless consumed."""
    try:
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as err:
        raise UserError(f"cannot write {target}: {err.strerror}; choose another -o") from None
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, _file_mode(target))  # mkstemp makes 0600; the model should get the usual permissions
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _quantize(float_path: Path, int8_file: Path) -> None:
    """Dynamic int8 quantisation (weights int8, activations quantised at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(model_input=float_path, model_output=int8_file, weight_type=QuantType.QInt8)


def export_model(
    source: Path | str,
    output: Path | str,
    opset: int = DEFAULT_OPSET,
    quantize: str | None = None,
    config: Mapping[str, Any] | None = None,
) -> ExportReport:
    """Export a ser-train run (or a .keras file + config) to ``output``; see the module docstring.

    Raises UserError for bad input and ExportError (a UserError) when the parity check fails; in both cases no
    output file is created or changed.
    """
    started = time.perf_counter()
    source, output = Path(source).expanduser(), Path(output).expanduser()
    if quantize is not None and quantize not in QUANTIZE_CHOICES:
        raise UserError(f"unknown quantisation {quantize!r}: use {' or '.join(QUANTIZE_CHOICES)}")
    keras_path, raw_config, run_dir = _resolve_source(source, config)
    run = _validate_config(raw_config)
    _check_output(output)
    _check_opset(opset)

    model = _load_keras(keras_path)
    _check_model_shapes(model, run)
    head = has_affect_head(model)
    metadata = build_metadata(run.raw, run.feature_shape, affect_head=head)
    metadata_json = json.dumps(metadata, allow_nan=False)

    proto = _convert(model, run, opset)
    folded = fold_batchnorm(proto)  # checked with the rest by the parity check below
    logger.debug("batch normalisation folded into %d convolutions", folded)
    classifier = add_embedding_output(proto)
    if classifier is not None:
        metadata[EMBEDDING_KEY] = classifier.info().to_dict()
        metadata_json = json.dumps(metadata, allow_nan=False)
    else:
        logger.warning("the model's last layer is not Softmax(x @ W + b): no embedding output, so it cannot be "
                       "personalised")
    _describe(proto, metadata_json, metadata)
    model_bytes = proto.SerializeToString()

    features, parity_source = _parity_features(run, run_dir)
    reference = _keras_predict(model, run, features)
    _check_probabilities(reference[0])
    parity = _compare(reference, _onnx_predict(model_bytes, features, head), len(features), parity_source)
    logger.info(
        "parity on %d %s rows: max |diff| %.3g, argmax agreement %.1f%%",
        parity.rows,
        parity.source,
        parity.max_abs_diff,
        100 * parity.argmax_agreement,
    )
    embedding_diff = None
    if classifier is not None:
        embedding_diff = _embedding_parity(_keras_embedding(model, run, features), model_bytes, features)
        logger.info("embedding parity: max relative |diff| %.3g", embedding_diff)
        check_embedding(model_bytes, classifier, run.feature_shape, run.mean, run.std)
    if not parity.passed:
        raise ExportError(
            f"parity check failed: max |Keras - ONNX| {parity.max_abs_diff:.3g} (limit {PARITY_TOLERANCE:g}), "
            f"argmax agreement {100 * parity.argmax_agreement:.1f}% on {parity.rows} {parity.source} rows; "
            f"nothing written (try another --opset)"
        )

    quantized: QuantizedReport | None = None
    with _temporary_sibling(output) as float_tmp:
        try:
            _write_bytes(float_tmp, model_bytes)
        except OSError as err:
            raise UserError(f"cannot write {output}: {err.strerror}; choose another -o") from None
        if quantize is None:
            os.replace(float_tmp, output)
        else:
            quantized_path = int8_path(output)
            with _temporary_sibling(quantized_path) as int8_tmp:
                quantized = _export_int8(
                    float_tmp, int8_tmp, quantized_path, metadata_json, metadata, reference, features, parity_source,
                    head,
                )
                os.replace(float_tmp, output)
                os.replace(int8_tmp, quantized_path)
    report = ExportReport(
        source=keras_path,
        output=output,
        size_bytes=output.stat().st_size,
        opset=opset,
        labels=run.labels,
        feature_shape=run.feature_shape,
        parity=parity,
        quantized=quantized,
        seconds=time.perf_counter() - started,
        embedding_size=None if classifier is None else int(classifier.weights.shape[0]),
        embedding_max_rel_diff=embedding_diff,
    )
    logger.info(
        "wrote %s (%d bytes)%s",
        output,
        report.size_bytes,
        f" and {quantized.path} ({quantized.size_bytes} bytes)" if quantized else "",
    )
    return report


def _export_int8(
    float_tmp: Path,
    int8_tmp: Path,
    final_path: Path,
    metadata_json: str,
    metadata: Mapping[str, Any],
    reference: Outputs,
    features: np.ndarray,
    parity_source: str,
    affect_head: bool = False,
) -> QuantizedReport:
    """Quantise ``float_tmp`` into ``int8_tmp`` (metadata re-added) and measure its parity against Keras."""
    import onnx

    try:
        _quantize(float_tmp, int8_tmp)
        proto = onnx.load(str(int8_tmp))
    except Exception as err:  # the quantiser and onnx raise many types: one line for the user
        raise ExportError(f"int8 quantisation failed ({_one_line(err)}); nothing written") from None
    if EMBEDDING_KEY in metadata:  # the quantised graph keeps the float graph's tensor names
        from ser_live.export.embedding import find_classifier

        float_classifier = find_classifier(onnx.load(str(float_tmp)))
        if float_classifier is not None:
            add_output_by_name(proto, float_classifier.tensor, int(float_classifier.weights.shape[0]))
    _describe(proto, metadata_json, metadata)  # quantize_dynamic may drop metadata_props
    data = proto.SerializeToString()
    parity = _compare(reference, _onnx_predict(data, features, affect_head), len(features), parity_source)
    embedding_diff = None
    if EMBEDDING_KEY in metadata:
        float_emb = run_graph(float_tmp.read_bytes(), features, [EMBEDDING_OUTPUT])[0]
        int8_emb = run_graph(data, features, [EMBEDDING_OUTPUT])[0]
        embedding_diff = float(np.max(np.abs(int8_emb - float_emb)) / max(1.0, float(np.max(np.abs(float_emb)))))
    _write_bytes(int8_tmp, data)
    logger.info(
        "int8 parity: max |diff| %.3g, argmax agreement %.1f%%", parity.max_abs_diff, 100 * parity.argmax_agreement
    )
    return QuantizedReport(path=final_path, size_bytes=len(data), parity=parity, embedding_max_rel_diff=embedding_diff)
