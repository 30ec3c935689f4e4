"""ONNX Runtime model loading: a ser-live model file, its metadata (ModelInfo) and inference (EmotionModel).

A ser-live model is one ONNX file (written by ``ser-export``) whose input ``features`` takes *raw* features
``[batch, *feature_shape]`` (the standardisation is inside the graph) and whose output ``probs`` is
``[batch, n_labels]`` softmax probabilities (a model with a trained arousal/valence head has a second output
``affect``, ``[batch, 2]``). Everything else the runtime needs (labels, feature preset, window, hop,
...) is JSON in ``metadata_props["ser_live"]``. This module never imports TensorFlow, Keras, librosa or scipy.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import onnxruntime as ort

from ser_live.realtime.errors import UserError
from ser_live.realtime.fileio import file_sha256, loads_json
from ser_live.realtime.stages.affect import (
    AFFECT_KEY,
    AFFECT_OUTPUT,
    CALIBRATION_KEY,
    DIMENSIONS,
    AffectMap,
    Calibration,
)
from ser_live.realtime.stages.encoder import EncoderSpec, SessionNormConfig, cache_names
from ser_live.realtime.stages.normalize import InputNormConfig

if TYPE_CHECKING:  # pragma: no cover
    from ser_live.realtime.stages.features import FeaturePreset

logger = logging.getLogger(__name__)

METADATA_KEY = "ser_live"
FORMAT_VERSION = 1
INPUT_NAME = "features"
OUTPUT_NAME = "probs"
EMBEDDING_OUTPUT = "embedding"  # optional graph output: the layer that feeds the classifier (personal profiles)
EMBEDDING_KEY = "embedding"  # metadata: {"output", "size", "classifier": {"weights" [size][n_labels], "bias"}}
# metadata: sha256s of earlier files this graph computes the same function as (ser-export's batch-norm fold and
# ser-calibrate re-write a file with the same weights); a personal profile made for one of them fits this file too
SAME_FUNCTION_KEY = "same_function_as"


def with_predecessor(meta: dict[str, Any], sha256: str) -> dict[str, Any]:
    """``meta`` (a ser_live metadata dict) naming the file of hash ``sha256`` among those it computes the same
    function as (``SAME_FUNCTION_KEY``), after any it named already."""
    earlier = meta.get(SAME_FUNCTION_KEY)
    names = [str(h) for h in earlier] if isinstance(earlier, list) else []
    return meta | {SAME_FUNCTION_KEY: names if sha256 in names else [*names, sha256]}
BUNDLED_PACKAGE = "ser_live.models"
BUNDLED_MODEL_NAME = "default.onnx"
#: The bundled models, by the name that picks them (``--model small``, ``EmotionRecognizer(model="small")``).
BUNDLED_NAMES: tuple[str, ...] = ("default", "small")
BUNDLED_DEMO_NAME = "demo.wav"
DEFAULT_PROVIDER = "auto"
DEFAULT_THREADS = 1
# Rows per ONNX Runtime call: bounds memory for very large batches without slowing small ones.
MAX_BATCH_ROWS = 1024
# ONNX Runtime log severity: 3 = errors only (no provider fallback chatter on stderr).
ORT_LOG_SEVERITY = 3

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
PROVIDER_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda")
GPU_INSTALL_HINT = "pip install onnxruntime-gpu (the ser-live[gpu] extra)"

NO_BUNDLED_MODEL_MESSAGE = (
    "no bundled model in this install: train one with ser-train and export it with ser-export, then pass --model PATH"
)

NO_BUNDLED_DEMO_MESSAGE = "no bundled demo recording in this install: reinstall ser-live, or pass --file PATH"

REQUIRED_METADATA_KEYS: tuple[str, ...] = (
    "format_version",
    "labels",
    "preset",
    "sample_rate",
    "window_s",
    "hop_s",
    "min_speech_s",
)


def labels_are_valid(labels: object) -> bool:
    """Labels are a non-empty list of distinct, non-empty names (as in config.json and the model metadata)."""
    return (
        isinstance(labels, list)
        and bool(labels)
        and all(isinstance(label, str) and label for label in labels)
        and len(set(labels)) == len(labels)
    )


def _ort_load_errors() -> tuple[type[BaseException], ...]:
    """The exception types ONNX Runtime raises for files it cannot load (they vary a little across versions)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = (
        "Fail",
        "InvalidArgument",
        "InvalidGraph",
        "InvalidProtobuf",
        "NoModel",
        "NoSuchFile",
        "NotImplemented",
        "RuntimeException",
    )
    found = tuple(getattr(state, name) for name in names if isinstance(getattr(state, name, None), type))
    return (*found, RuntimeError, ValueError)


@dataclass(frozen=True)
class EmbeddingInfo:
    """The graph's ``embedding`` output (the input of its last layer) and that last layer: ``probs =
    softmax(embedding @ weights + bias)``. What a personal profile (``ser_live.realtime.profile``) re-fits."""

    size: int
    weights: np.ndarray = field(hash=False, compare=False)  # float64 (size, n_labels)
    bias: np.ndarray = field(hash=False, compare=False)  # float64 (n_labels,)
    output: str = EMBEDDING_OUTPUT

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "size": self.size,
            "classifier": {"weights": self.weights.tolist(), "bias": self.bias.tolist()},
        }

    @classmethod
    def from_metadata(
        cls, meta: Any, n_labels: int, source: str, graph_outputs: Sequence[str]
    ) -> EmbeddingInfo | None:
        """None when the metadata has no ``embedding`` entry (models exported before it existed)."""
        if meta is None:
            return None
        fix = "re-export it with ser-export"
        if not isinstance(meta, Mapping):
            raise UserError(f"{source}: the metadata embedding is not a JSON object: {fix}")
        output = meta.get("output", EMBEDDING_OUTPUT)
        if output != EMBEDDING_OUTPUT or output not in graph_outputs:
            raise UserError(f"{source}: the metadata names an embedding output the graph does not have: {fix}")
        classifier = meta.get("classifier")
        try:
            size = int(meta["size"])
            weights = np.asarray(classifier["weights"], dtype=np.float64)  # type: ignore[index]
            bias = np.asarray(classifier["bias"], dtype=np.float64)  # type: ignore[index]
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{source}: the metadata embedding lacks a valid size and classifier: {fix}") from None
        if size < 1 or weights.shape != (size, n_labels) or bias.shape != (n_labels,):
            raise UserError(
                f"{source}: the metadata embedding classifier has shape {weights.shape} / {bias.shape}, not "
                f"({size}, {n_labels}) / ({n_labels},): {fix}"
            )
        if not (np.all(np.isfinite(weights)) and np.all(np.isfinite(bias))):
            raise UserError(f"{source}: the metadata embedding classifier has NaN or infinite values: {fix}")
        return cls(size=size, weights=weights, bias=bias, output=output)


@dataclass(frozen=True)
class ModelInfo:
    """What a model file says about itself (``metadata_props["ser_live"]``) plus its input shape."""

    labels: tuple[str, ...]
    preset_config: Mapping[str, Any] = field(hash=False)
    sample_rate: int
    window_s: float
    hop_s: float
    min_speech_s: float
    feature_shape: tuple[int, ...]
    recipe: str = ""
    metrics: Mapping[str, Any] = field(default_factory=dict, hash=False)
    data: Mapping[str, Any] = field(default_factory=dict, hash=False)
    normalization: Mapping[str, Any] = field(default_factory=dict, hash=False)
    input_norm: InputNormConfig = field(default_factory=InputNormConfig, hash=False)
    calibration: Calibration = field(default_factory=Calibration, hash=False)
    affect: AffectMap | None = field(default=None, hash=False)
    embedding: EmbeddingInfo | None = field(default=None, hash=False)
    project_version: str = ""
    created: str = ""
    format_version: int = FORMAT_VERSION
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, hash=False)

    @property
    def n_labels(self) -> int:
        return len(self.labels)

    @property
    def preset_name(self) -> str:
        return str(self.preset_config.get("name", ""))

    @cached_property
    def preset(self) -> FeaturePreset:
        """The feature preset as a ``ser_live.realtime.stages.features.FeaturePreset`` (converted on first use)."""
        from ser_live.realtime.stages.features import FeaturePreset

        return FeaturePreset.from_dict(dict(self.preset_config))

    @classmethod
    def from_metadata(
        cls,
        meta: Mapping[str, Any],
        feature_shape: Sequence[int],
        source: str = "model",
        graph_outputs: Sequence[str] = (OUTPUT_NAME,),
    ) -> ModelInfo:
        """Validate the ``ser_live`` metadata dict; raise UserError naming ``source`` when it is unusable."""
        fix = "re-export it with ser-export"
        if not isinstance(meta, Mapping):
            raise UserError(f"{source}: the 'ser_live' metadata is not a JSON object: {fix}")
        version = meta.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise UserError(f"{source}: the 'ser_live' metadata has no valid format_version: {fix}")
        if version > FORMAT_VERSION:
            raise UserError(
                f"{source} was made by a newer ser-live (model format {version}, this install reads up to "
                f"{FORMAT_VERSION}): upgrade ser-live"
            )
        missing = [key for key in REQUIRED_METADATA_KEYS if key not in meta]
        if missing:
            raise UserError(f"{source}: the 'ser_live' metadata lacks {', '.join(missing)}: {fix}")
        labels = meta["labels"]
        if not labels_are_valid(labels):
            raise UserError(f"{source}: the metadata labels must be a list of distinct names: {fix}")
        preset = meta["preset"]
        if not isinstance(preset, Mapping):
            raise UserError(f"{source}: the metadata preset is not a JSON object: {fix}")
        try:
            sample_rate = int(meta["sample_rate"])
            window_s = float(meta["window_s"])
            hop_s = float(meta["hop_s"])
            min_speech_s = float(meta["min_speech_s"])
        except (TypeError, ValueError) as err:
            raise UserError(f"{source}: the metadata has a non-numeric rate/window/hop ({err}): {fix}") from None
        if sample_rate <= 0 or not (window_s > 0 and hop_s > 0 and min_speech_s >= 0):
            raise UserError(f"{source}: the metadata sample_rate/window_s/hop_s must be positive: {fix}")
        if not all(math.isfinite(v) for v in (window_s, hop_s, min_speech_s)):
            raise UserError(f"{source}: the metadata window/hop values are not finite: {fix}")
        shape = tuple(int(d) for d in feature_shape)
        raw_norm = meta.get("input_normalization")
        if raw_norm is not None and not isinstance(raw_norm, Mapping):
            raise UserError(f"{source}: the metadata input_normalization is not a JSON object: {fix}")
        try:
            input_norm = InputNormConfig.from_dict(raw_norm)
        except (TypeError, ValueError) as err:
            raise UserError(f"{source}: the metadata input_normalization is invalid ({err}): {fix}") from None
        except UserError as err:
            raise UserError(f"{source}: {err}") from None
        calibration = Calibration.from_metadata(meta.get(CALIBRATION_KEY), source)
        affect = AffectMap.for_model(labels, meta.get(AFFECT_KEY), source, graph_head=AFFECT_OUTPUT in graph_outputs)
        embedding = EmbeddingInfo.from_metadata(meta.get(EMBEDDING_KEY), len(labels), source, graph_outputs)
        declared = meta.get("feature_shape")
        if declared is not None and tuple(declared) != shape:
            raise UserError(
                f"{source}: the metadata feature_shape {tuple(declared)} differs from the graph input {shape}: {fix}"
            )
        return cls(
            labels=tuple(labels),
            preset_config=dict(preset),
            sample_rate=sample_rate,
            window_s=window_s,
            hop_s=hop_s,
            min_speech_s=min_speech_s,
            feature_shape=shape,
            recipe=str(meta.get("recipe", "")),
            metrics=dict(meta.get("metrics") or {}),
            data=dict(meta.get("data") or {}),
            normalization=dict(meta.get("normalization") or {}),
            input_norm=input_norm,
            calibration=calibration,
            affect=affect,
            embedding=embedding,
            project_version=str(meta.get("project_version", "")),
            created=str(meta.get("created", "")),
            format_version=version,
            raw=dict(meta),
        )


class PersonalLayer(Protocol):
    """What can replace a model's last layer: a personal profile (:class:`ser_live.realtime.profile.Profile`)."""

    name: str

    def check_model(self, model: EmotionModel) -> None: ...

    def probs(self, embedding: np.ndarray) -> np.ndarray: ...


def no_embedding_message(model: EmotionModel) -> str:
    return (
        f"model {model.path.name} has no embedding output, so it cannot be personalised: add one with "
        f"ser-export {model.path.name} -o NEW.onnx (same weights), or use the bundled model"
    )


class EmotionModel:
    """An ONNX Runtime session on a ser-live model. Use :func:`load_model` to make one."""

    def __init__(
        self, session: ort.InferenceSession, info: ModelInfo, path: Path, profile: PersonalLayer | None = None,
        encoder: EncoderSpec | None = None,
    ) -> None:
        self._session = session
        self.info = info
        self.path = path
        self.provider: str = session.get_providers()[0]
        self._feature_shape = info.feature_shape
        self._n_labels = info.n_labels
        self.graph_has_head = AFFECT_OUTPUT in [o.name for o in session.get_outputs()]
        self.profile = profile
        self.encoder = encoder  # the frame encoder of a two-graph model (None: the features are computed in numpy)

    @cached_property
    def sha256(self) -> str:
        """The model file's sha256 (what a personal profile is bound to)."""
        from ser_live.realtime.fileio import file_sha256

        return file_sha256(self.path)

    @property
    def profile_sha256s(self) -> frozenset[str]:
        """The file hashes a personal profile may name for this model: its own and those of the earlier files it
        computes the same function as (``same_function_as`` in the metadata)."""
        same = self.info.raw.get(SAME_FUNCTION_KEY)
        earlier = [str(h) for h in same] if isinstance(same, list) else []
        return frozenset([self.sha256, *earlier])

    @property
    def can_personalise(self) -> bool:
        """Whether the graph gives the embedding its last layer reads (``ser-export`` adds it)."""
        return self.info.embedding is not None

    def with_profile(self, profile: PersonalLayer | None) -> EmotionModel:
        """The same session with ``profile``'s last layer instead of the model's (None: the model's own).
        UserError when the profile was made for another model file or this model has no embedding output."""
        if profile is None:
            return self if self.profile is None else self._variant(None, self.encoder)
        if not self.can_personalise:
            raise UserError(no_embedding_message(self))
        profile.check_model(self)  # (hashes the file: the variant keeps the hash)
        return self._variant(profile, self.encoder)

    def _variant(self, profile: PersonalLayer | None, encoder: EncoderSpec | None) -> EmotionModel:
        """The same sessions with another last layer or frame-encoder spec; the file's hash carried over if known."""
        model = EmotionModel(self._session, self.info, self.path, profile, encoder)
        if "sha256" in self.__dict__:
            model.__dict__["sha256"] = self.sha256
        return model

    @property
    def session_norm(self) -> SessionNormConfig | None:
        """The session normaliser of a two-graph model (None: the model has none)."""
        return None if self.encoder is None else self.encoder.session_norm

    def require_session_norm(self) -> tuple[EncoderSpec, SessionNormConfig]:
        """The frame encoder and its session normaliser; UserError (deployment statistics do not apply) without."""
        if self.encoder is None or self.encoder.session_norm is None:
            raise UserError(f"model {self.path.name} has no session normaliser, so deployment statistics do not apply "
                            "to it: use them with an encoder model (the bundled default)")
        return self.encoder, self.encoder.session_norm

    def with_session_prior(self, mean: Sequence[float], std: Sequence[float]) -> EmotionModel:
        """The same graphs with the session normaliser's prior statistics replaced (deployment statistics:
        :mod:`ser_live.realtime.deployment`); its weight and memory stay the model's. UserError when the model has
        no session normaliser or the statistics do not fit it."""
        encoder, norm = self.require_session_norm()
        if len(mean) != len(norm.mean) or len(std) != len(norm.std):
            raise UserError(f"the deployment statistics hold {len(mean)} values, model {self.path.name}'s "
                            f"normaliser {len(norm.mean)}: compute them for this model with ser-stats")
        prior = replace(norm, mean=tuple(map(float, mean)), std=tuple(map(float, std)))
        return self._variant(self.profile, replace(encoder, session_norm=prior))

    def without_session_norm(self) -> EmotionModel:
        """The same graphs with no session normaliser: the pipeline then gives raw pooled embeddings (what
        deployment statistics are computed over)."""
        encoder, _ = self.require_session_norm()
        return self._variant(self.profile, replace(encoder, session_norm=None))

    def embed(self, features: np.ndarray) -> np.ndarray:
        """The ``embedding`` output ``[batch, size]`` for raw features (UserError: the model has none)."""
        if not self.can_personalise:
            raise UserError(no_embedding_message(self))
        return self._run(features, [EMBEDDING_OUTPUT])[0]

    @property
    def has_head(self) -> bool:
        """Whether arousal/valence come from the graph's trained head (the metadata says so)."""
        return self.info.affect is not None and self.info.affect.from_graph

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def labels(self) -> tuple[str, ...]:
        return self.info.labels

    def __repr__(self) -> str:
        profile = f", profile={self.profile.name!r}" if self.profile is not None else ""
        return f"EmotionModel({str(self.path)!r}, provider={self.provider!r}, labels={list(self.labels)}{profile})"

    def affect(self, probs: np.ndarray, head: np.ndarray | None = None) -> np.ndarray | None:
        """Arousal and valence ``[..., 2]`` in [-1, 1] (None: the model has no mapping): for a model with a trained
        head, its output ``head`` (as :meth:`run` gives it, or averaged like the probabilities); otherwise the
        model's map of the probabilities ``[..., n_labels]``."""
        return None if self.info.affect is None else self.info.affect.values(probs, head)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Probabilities for raw features ``[batch, *feature_shape]`` -> ``[batch, n_labels]`` (float32): the
        graph's own softmax (the model's temperature, if any, is applied by the engine to the smoothed output).

        A single example ``[*feature_shape]`` gives ``[n_labels]``.
        """
        if self.profile is not None:
            return self.profile.probs(self.embed(features))
        return self._run(features, [OUTPUT_NAME])[0]

    def run(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`predict` and, for a model with a trained affect head, its ``[batch, 2]`` output (else None), in
        one graph call."""
        if not self.has_head:
            return self.predict(features), None
        if self.profile is not None:
            embedding, head = self._run(features, [EMBEDDING_OUTPUT, AFFECT_OUTPUT])
            return self.profile.probs(embedding), head
        probs, head = self._run(features, [OUTPUT_NAME, AFFECT_OUTPUT])
        return probs, head

    def _run(self, features: np.ndarray, names: list[str]) -> list[np.ndarray]:
        x = np.asarray(features, dtype=np.float32)
        given = x.shape
        single = given == self._feature_shape
        if single:
            x = x[np.newaxis]
        if x.ndim != len(self._feature_shape) + 1 or x.shape[1:] != self._feature_shape:
            expected = ", ".join(str(d) for d in self._feature_shape)
            raise UserError(
                f"features have shape {given} but model {self.name} expects "
                f"(batch, {expected}) [preset {self.info.preset_name or '?'}]: compute them with that preset"
            )
        n = x.shape[0]
        if n == 0:
            size = 0 if self.info.embedding is None else self.info.embedding.size
            widths = {OUTPUT_NAME: self._n_labels, AFFECT_OUTPUT: len(DIMENSIONS), EMBEDDING_OUTPUT: size}
            return [np.zeros((0, widths[name]), dtype=np.float32) for name in names]
        x = np.ascontiguousarray(x)
        parts = [self._session.run(names, {INPUT_NAME: x[i : i + MAX_BATCH_ROWS]}) for i in range(0, n, MAX_BATCH_ROWS)]
        out = [np.asarray(np.concatenate([p[k] for p in parts]) if len(parts) > 1 else parts[0][k], dtype=np.float32)
               for k in range(len(names))]
        if not all(np.isfinite(o).all() for o in out):
            what = "features that hold NaN or infinite values" if not np.isfinite(x).all() else "finite features"
            raise UserError(
                f"model {self.name} gave NaN or infinite outputs on {what}: the model file is broken "
                "(re-export it with ser-export) or pass another --model"
            )
        return [o[0] for o in out] if single else out


def _package_file(name: str, missing: str) -> Path:
    """A file of the ``models`` package data; UserError(``missing``) when this install has none."""
    try:
        resource = resources.files(BUNDLED_PACKAGE).joinpath(name)
    except ModuleNotFoundError:
        raise UserError(missing) from None
    if not resource.is_file():
        raise UserError(missing)
    return Path(str(resource))


def resolve_model_path(path: str | os.PathLike[str] | None) -> Path:
    """The model file ``path`` names. ``None``: the bundled default. A bare bundled name (``default``, ``small``: no
    folder, no suffix) is that bundled model; anything else is a path (a file of such a name: ``./small``)."""
    if path is None:
        return bundled_model_path()
    text = os.fspath(path)
    if text in BUNDLED_NAMES:
        return _package_file(f"{text}.onnx", NO_BUNDLED_MODEL_MESSAGE)
    return Path(text).expanduser()


def bundled_model_path() -> Path:
    """Path of ``ser_live/models/default.onnx`` shipped with the package; UserError when this install has none."""
    return _package_file(BUNDLED_MODEL_NAME, NO_BUNDLED_MODEL_MESSAGE)


def bundled_demo_path() -> Path:
    """Path of ``ser_live/models/demo.wav`` shipped with the package (``ser-live --demo``); UserError when absent."""
    return _package_file(BUNDLED_DEMO_NAME, NO_BUNDLED_DEMO_MESSAGE)


def resolve_providers(provider: str) -> list[str]:
    """ONNX Runtime provider list for ``auto`` / ``cpu`` / ``cuda`` (UserError for cuda without onnxruntime-gpu)."""
    choice = str(provider).lower()
    if choice not in PROVIDER_CHOICES:
        raise UserError(f"unknown provider {provider!r}: use one of {', '.join(PROVIDER_CHOICES)}")
    available = ort.get_available_providers()
    if choice == "cpu":
        return [CPU_PROVIDER]
    if choice == "cuda":
        if CUDA_PROVIDER not in available:
            raise UserError(
                f"the CUDA provider is not available in this onnxruntime ({', '.join(available)}): "
                f"{GPU_INSTALL_HINT}, or use --provider cpu"
            )
        return [CUDA_PROVIDER, CPU_PROVIDER]
    return [CUDA_PROVIDER, CPU_PROVIDER] if CUDA_PROVIDER in available else [CPU_PROVIDER]


def session_options(threads: int = DEFAULT_THREADS) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = ORT_LOG_SEVERITY
    return options


def read_metadata(session: ort.InferenceSession, source: str) -> dict[str, Any]:
    """The parsed ``ser_live`` metadata of a session's model (UserError when absent or not JSON)."""
    props = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in props:
        raise UserError(
            f"{source} is an ONNX model but not a ser-live model (no '{METADATA_KEY}' metadata): "
            "export it with ser-export"
        )
    try:
        meta = loads_json(props[METADATA_KEY])
    except ValueError:
        raise UserError(
            f"{source}: the '{METADATA_KEY}' metadata is not valid JSON: re-export it with ser-export"
        ) from None
    if not isinstance(meta, dict):
        raise UserError(f"{source}: the '{METADATA_KEY}' metadata is not a JSON object: re-export it with ser-export")
    return meta


def _graph_feature_shape(session: ort.InferenceSession, source: str) -> tuple[int, ...]:
    inputs = session.get_inputs()
    outputs = session.get_outputs()
    if [i.name for i in inputs] != [INPUT_NAME] or OUTPUT_NAME not in [o.name for o in outputs]:
        raise UserError(
            f"{source} has inputs {[i.name for i in inputs]} and outputs {[o.name for o in outputs]}, not "
            f"'{INPUT_NAME}' -> '{OUTPUT_NAME}': export it with ser-export"
        )
    dims = inputs[0].shape[1:]
    if not dims or not all(isinstance(d, int) and d > 0 for d in dims):
        raise UserError(
            f"{source}: the input shape {inputs[0].shape} is not [batch, fixed sizes...]: export it with ser-export"
        )
    return tuple(dims)


def _check_outputs(model: EmotionModel, source: str) -> None:
    """Run the graph once on zero features and check that what it returns is what its metadata says: a
    model that lies about its outputs is refused at load, in one line, not by a numpy error mid-stream."""
    names = [OUTPUT_NAME]
    expected = {OUTPUT_NAME: len(model.labels)}
    if model.graph_has_head:
        names.append(AFFECT_OUTPUT)
        expected[AFFECT_OUTPUT] = len(DIMENSIONS)
    if model.info.embedding is not None:
        names.append(model.info.embedding.output)
        expected[model.info.embedding.output] = model.info.embedding.size
    x = np.zeros((1, *model.info.feature_shape), dtype=np.float32)
    try:
        outs = model._session.run(names, {INPUT_NAME: x})
    except _ort_load_errors() as err:
        logger.debug("probe run of %s failed: %s", source, err)
        raise UserError(f"{source} cannot be run by onnxruntime ({type(err).__name__}): re-export it with ser-export")\
            from None
    for name, out in zip(names, outs, strict=True):
        shape = np.shape(out)
        if not np.isfinite(out).all():
            raise UserError(f"{source}: output '{name}' is NaN or infinite on zero features: the model file is "
                            "broken; re-export it with ser-export or pass another --model")
        if len(shape) != 2 or shape[0] != 1 or shape[1] != expected[name]:
            raise UserError(
                f"{source}: output '{name}' has shape {tuple(shape)[1:]} per window but the metadata says "
                f"{expected[name]} ({', '.join(model.labels) if name == OUTPUT_NAME else name}): the file's metadata "
                "does not match its graph; re-export it with ser-export"
            )


def _check_preset(info: ModelInfo, source: str) -> None:
    """Convert the metadata preset now so that a bad one fails at load time, naming the file."""
    try:
        info.preset  # noqa: B018 - cached: the engine reads it later
    except UserError as err:
        raise UserError(f"{source}: {err}") from None
    except (TypeError, ValueError) as err:
        raise UserError(f"{source}: the metadata preset is invalid ({err}): re-export it with ser-export") from None


ENCODER_KEY = "encoder"  # the head's metadata: {"file": NAME.encoder.onnx beside it, "sha256": ...}
ENCODER_SUFFIX = ".encoder.onnx"


def encoder_path(head: Path) -> Path:
    """Where a two-graph model's frame encoder lies: ``NAME.encoder.onnx`` beside the head ``NAME.onnx``."""
    return head.with_name(f"{head.stem}{ENCODER_SUFFIX}")
SESSION_NORM_KEY = "session_norm"  # the head's metadata: the session normaliser's prior (SessionNormConfig)


def open_encoder(head_path: Path, info: ModelInfo, providers: list[str], threads: int) -> EncoderSpec:
    """The frame encoder a two-graph model's head names: the file beside it whose sha256 the head holds."""
    source = str(head_path)
    ref = info.raw.get(ENCODER_KEY)
    if not isinstance(ref, Mapping) or not isinstance(ref.get("file"), str) or not isinstance(ref.get("sha256"), str):
        raise UserError(f"{source}: its metadata names no frame encoder file: re-export it with ser-export")
    path = head_path.parent / Path(ref["file"]).name
    if not path.is_file():
        raise UserError(f"{source} needs its frame encoder {path.name} beside it: copy both files together")
    if file_sha256(path) != ref["sha256"]:
        raise UserError(f"{path.name} is not the frame encoder {head_path.name} was trained on (sha256 differs): "
                        "copy the pair that was exported together")
    try:
        session = ort.InferenceSession(str(path), sess_options=session_options(threads), providers=providers)
    except _ort_load_errors():
        raise UserError(f"{path} is not an ONNX model (onnxruntime cannot load it): copy it again") from None
    meta = read_metadata(session, str(path))
    try:
        norm = info.raw.get(SESSION_NORM_KEY)
        spec = EncoderSpec(
            make_run=lambda: encoder_call(session, int(meta["blocks"])),
            dim=int(meta["dim"]), blocks=int(meta["blocks"]), chunk=int(meta["chunk"]), context=int(meta["context"]),
            session_norm=None if norm is None else SessionNormConfig.from_dict(norm),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise UserError(f"{path.name} or {head_path.name} has invalid encoder metadata ({err}): re-export "
                        "them") from None
    if 2 * spec.dim != info.feature_shape[-1]:
        raise UserError(f"{path.name} gives {spec.dim}-d frames, but {head_path.name} takes {info.feature_shape[-1]} "
                        "values (2 x frames): copy the pair that was exported together")
    if spec.session_norm is not None and len(spec.session_norm.mean) != 2 * spec.dim:
        raise UserError(f"{head_path.name}: the session normaliser's statistics do not fit the encoder: re-export it")
    return spec


def encoder_call(session: ort.InferenceSession, blocks: int) -> Callable[..., tuple[np.ndarray, list[np.ndarray]]]:
    """A frame-encoder graph's session as :class:`~ser_live.realtime.stages.encoder.FrameEncoder`'s ``run``."""
    names = cache_names(blocks)

    def run(mel: np.ndarray, mask: np.ndarray, caches: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        out = session.run(None, {"mel": mel, "mask": mask, **dict(zip(names, caches, strict=True))})
        return out[0], out[1:]

    return run


def load_model(
    path: str | Path | None = None,
    provider: str = DEFAULT_PROVIDER,
    threads: int = DEFAULT_THREADS,
    profile: PersonalLayer | None = None,
) -> EmotionModel:
    """Open a ser-live ONNX model (``None``: the bundled ``models/default.onnx``) on the chosen provider, with a
    personal ``profile`` (a loaded :class:`ser_live.realtime.profile.Profile`) replacing its last layer if given."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise UserError(f"threads must be a whole number >= 1, not {threads!r}")
    cpus = os.cpu_count() or 1
    if threads > cpus:  # ONNX Runtime would start them all (1000 threads take minutes) and gain nothing
        logger.warning("%d inference threads asked for on %d CPUs: using %d", threads, cpus, cpus)
        threads = cpus
    providers = resolve_providers(provider)
    model_path = resolve_model_path(path)
    source = str(model_path)
    if not model_path.exists():
        raise UserError(f"model file {source} not found: check the path, or omit --model to use the bundled model")
    if model_path.is_dir():
        raise UserError(f"{source} is a directory, not a model file: pass the .onnx file made by ser-export")
    try:
        session = ort.InferenceSession(str(model_path), sess_options=session_options(threads), providers=providers)
    except _ort_load_errors() as err:
        logger.debug("onnxruntime could not load %s: %s", source, err)
        raise UserError(
            f"{source} is not an ONNX model (onnxruntime cannot load it): pass a .onnx file made by ser-export"
        ) from None
    meta = read_metadata(session, source)
    outputs = [o.name for o in session.get_outputs()]
    info = ModelInfo.from_metadata(meta, _graph_feature_shape(session, source), source, graph_outputs=outputs)
    _check_preset(info, source)
    encoder = open_encoder(model_path, info, providers, threads) if info.preset.kind == "encoder" else None
    model = EmotionModel(session, info, model_path, encoder=encoder)
    _check_outputs(model, source)
    if providers[0] == CUDA_PROVIDER and model.provider != CUDA_PROVIDER:
        if str(provider).lower() == "cuda":
            raise UserError(
                "the CUDA provider is installed but could not start (check the CUDA/cuDNN libraries): "
                "fix them or use --provider cpu"
            )
        logger.warning("CUDA provider could not start; running on %s", model.provider)
    logger.info("loaded %s (%s, %d labels) on %s", source, info.recipe or "?", info.n_labels, model.provider)
    return model if profile is None else model.with_profile(profile)
