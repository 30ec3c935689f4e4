"""Keras 3 models of ser-live: the two seed CNNs, layer by layer, and small CNNs over log-mel frames.

Recipes (``RECIPES``; build one with :func:`build_model`):

- ``seed180``: the CNN of seed 1 (``../shared/seeds/seed-keras-cnn1d-180.md``) over the 180-value ``seed180``
  vector, same layers and layer names: 47,175 parameters (46,791 trainable) for 7 classes. The seed does not give
  its dropout rates nor its activations; we use ReLU in the convolutions and the intermediate Dense layer and
  dropout rates :data:`SEED180_DROPOUT_CONV_1`, :data:`SEED180_DROPOUT_CONV_2`, :data:`SEED180_DROPOUT_DENSE`
  (0.3 / 0.3 / 0.4), none of which changes the parameter count.
- ``seed162``: the Kaggle CNN of seed 2 (``seed-kaggle-cnn1d-162.txt``) over the 162-value ``seed162`` vector:
  four Conv1D (kernel 5, ``same``, ReLU) each followed by MaxPooling1D(5, strides 2, ``same``), the
  162 -> 81 -> 41 -> 21 -> 11 time axis, Flatten, Dense 32, softmax: 557,288 parameters for 8 classes.
- ``logmel_cnn``: our own small 1-D CNN over log-mel frames ``(frames, n_mels)``: convolutions run over time with
  the mel bands as channels (fast: about 16 M multiply-adds for a 197 x 64 window), four Conv-BN-ReLU blocks
  with pooling over time and SpatialDropout, then mean *and* max over time (a window's emotion lives in a few
  salient syllables as much as in the average), a small Dense head. About 226 k parameters.
- ``logmel_cnn2d``: a small 2-D CNN over the same ``(frames, n_mels)`` map seen as an image: 3 x 3 convolutions are
  shift-invariant along the mel axis, so a higher or lower voice (another speaker) moves a pattern rather than
  changing it; the frequency axis is averaged out after the last block, then mean + max over time as above.
  About 92 k parameters but about 2.6 times the arithmetic of ``logmel_cnn`` (42 M multiply-adds).

Measured (tf2onnx opset 17, ONNX Runtime 1.32, one CPU thread, batch 1, 197 x 64 window or the seed vector):
``seed180`` 0.05 ms, ``seed162`` 0.32 ms, ``logmel_cnn`` 0.17 ms, ``logmel_cnn2d`` 0.39 ms per window.

All models take **standardised** features: the per-feature mean/std fitted on the training split is applied
outside the model (the exporter folds it into the ONNX graph), so there is no Normalization layer here. The input
layer is named ``features``; vector presets get a channel axis, see :func:`model_input_shape`.

Keras, TensorFlow and friends are imported here (``train/`` may), never by ``realtime/``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers

from ser_live.export.onnx_export import has_affect_head
from ser_live.realtime.errors import UserError
from ser_live.realtime.model import OUTPUT_NAME
from ser_live.realtime.stages.affect import AFFECT_OUTPUT, DIMENSIONS

logger = logging.getLogger(__name__)

INPUT_NAME = "features"
"""Name of every model's input layer (the ONNX input has the same name)."""

KIND_VECTOR = "vector"
KIND_FRAMES = "frames"

# --- seed180 (seed 1) -------------------------------------------------------------------------------------------
SEED180_FILTERS_1 = 128
SEED180_FILTERS_2 = 64
SEED180_KERNEL = 5
SEED180_POOL = 2
SEED180_DENSE = 64
SEED180_DROPOUT_CONV_1 = 0.3
SEED180_DROPOUT_CONV_2 = 0.3
SEED180_DROPOUT_DENSE = 0.4

# --- seed162 (seed 2, Kaggle) -----------------------------------------------------------------------------------
SEED162_FILTERS = (256, 256, 128, 64)
SEED162_KERNEL = 5
SEED162_POOL = 5
SEED162_POOL_STRIDES = 2
SEED162_DROPOUT_AFTER_BLOCK = 3  # the Dropout(0.2) follows the third conv block's pooling
SEED162_DROPOUT_CONV = 0.2
SEED162_DENSE = 32
SEED162_DROPOUT_DENSE = 0.3

# --- logmel_cnn (1-D over time) ---------------------------------------------------------------------------------
LOGMEL_CONV_BLOCKS: tuple[tuple[int, int, bool, float], ...] = (
    # (filters, kernel over time, pool by 2 after the block, spatial dropout)
    (96, 5, True, 0.1),
    (128, 5, True, 0.1),
    (128, 3, True, 0.15),
    (160, 3, False, 0.15),
)
LOGMEL_DENSE = 64
# Training-only input regularisers (identity at inference): whole mel bands dropped (a frequency mask that also
# hides speaker-specific formant regions) and a little Gaussian noise on the standardised log-mel values.
LOGMEL_INPUT_BAND_DROPOUT = 0.1
LOGMEL_INPUT_NOISE = 0.1
LOGMEL_DROPOUT_HEAD = 0.3
LOGMEL_POOL = 2

# --- logmel_cnn2d (2-D over time x mel) -------------------------------------------------------------------------
LOGMEL2D_CONV_BLOCKS: tuple[tuple[int, bool, float], ...] = (
    # (filters, pool 2 x 2 after the block, spatial dropout)
    (16, True, 0.05),
    (32, True, 0.1),
    (64, True, 0.1),
    (96, False, 0.15),
)
LOGMEL2D_KERNEL = (3, 3)
LOGMEL2D_POOL = (2, 2)
LOGMEL2D_DENSE = 64
LOGMEL2D_DROPOUT_HEAD = 0.3

# --- affect head (issue 11, way b) -----------------------------------------------------------------------------
PROBS_OUTPUT = OUTPUT_NAME
"""With an affect head a model has two outputs: ``probs`` (softmax) and ``affect`` ([arousal, valence], tanh)."""
AFFECT_UNITS = len(DIMENSIONS)
DEFAULT_AFFECT_WEIGHT = 0.0  # weight of the affect (MSE) loss next to the class loss; 0 = no affect head

# --- adversarial branch (issue 19) --------------------------------------------------------------------------------
ADVERSARY_OUTPUT = "domain"
"""Training only: a branch that guesses each window's corpus or speaker from the embedding through a gradient
reversal layer, so the embedding is pushed to stop encoding it (DANN, Ganin & Lempitsky 2015). Never exported."""
ADVERSARY_UNITS = 64
ADVERSARY_BY: tuple[str, ...] = ("corpus", "speaker")
DEFAULT_ADVERSARY_SCALE = 0.1  # the reversed gradient's scale (lambda); the branch's own loss has weight 1

MAX_PARAMS = 1_000_000
"""Upper bound on the size of any recipe that may ship (issue 6)."""

# --- training defaults ------------------------------------------------------------------------------------------
DEFAULT_EPOCHS = 50
DEFAULT_BATCH_SIZE = 64
DEFAULT_LEARNING_RATE = 1e-3
DEFAULT_PATIENCE = 10
DEFAULT_LR_PATIENCE = 4
DEFAULT_LR_FACTOR = 0.5
DEFAULT_MIN_LR = 1e-5
DEFAULT_LABEL_SMOOTHING = 0.0
DEFAULT_CLASS_WEIGHTING = False
DEFAULT_MONITOR = "val_loss"
CHECKPOINT_SUFFIX = ".keras"


@dataclass(frozen=True)
class TrainHyperParams:
    """Training settings with the project's defaults (seed 1: Adam, 50 epochs, the three callbacks).

    ``patience`` is EarlyStopping's, ``lr_patience`` ReduceLROnPlateau's (must be smaller, so the learning rate
    is lowered before training gives up); ``class_weighting`` weighs classes by inverse frequency
    (:func:`class_weights`); ``monitor`` is the validation quantity both callbacks and the checkpoint follow.
    """

    epochs: int = DEFAULT_EPOCHS
    batch_size: int = DEFAULT_BATCH_SIZE
    learning_rate: float = DEFAULT_LEARNING_RATE
    patience: int = DEFAULT_PATIENCE
    lr_patience: int = DEFAULT_LR_PATIENCE
    label_smoothing: float = DEFAULT_LABEL_SMOOTHING
    class_weighting: bool = DEFAULT_CLASS_WEIGHTING
    lr_factor: float = DEFAULT_LR_FACTOR
    min_lr: float = DEFAULT_MIN_LR
    monitor: str = DEFAULT_MONITOR

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise UserError(f"epochs must be at least 1, got {self.epochs}; pass --epochs 1 or more")
        if self.batch_size < 1:
            raise UserError(f"batch size must be at least 1, got {self.batch_size}; pass --batch-size 1 or more")
        if not self.learning_rate > 0:
            raise UserError(f"learning rate must be positive, got {self.learning_rate}; pass e.g. --lr 0.001")
        if self.patience < 1 or self.lr_patience < 1:
            raise UserError(
                f"patience values must be at least 1 (got patience={self.patience}, "
                f"lr_patience={self.lr_patience}); pass a positive --patience"
            )
        if not 0.0 <= self.label_smoothing < 1.0:
            raise UserError(
                f"label smoothing must be in [0, 1), got {self.label_smoothing}; pass e.g. --label-smoothing 0.1"
            )
        if not 0.0 < self.lr_factor < 1.0:
            raise UserError(f"learning-rate factor must be in (0, 1), got {self.lr_factor}")
        if self.min_lr < 0:
            raise UserError(f"minimum learning rate must be non-negative, got {self.min_lr}")
        _monitor_mode(self.monitor)  # validates the name

    def to_dict(self) -> dict[str, object]:
        """JSON-ready copy (for ``config.json``)."""
        return {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "patience": self.patience,
            "lr_patience": self.lr_patience,
            "label_smoothing": self.label_smoothing,
            "class_weighting": self.class_weighting,
            "lr_factor": self.lr_factor,
            "min_lr": self.min_lr,
            "monitor": self.monitor,
        }


Builder = Callable[[tuple[int, ...], int, int], keras.Model]


@dataclass(frozen=True)
class Recipe:
    """One model architecture: what it takes (``input_kind``) and which feature preset it was designed for."""

    name: str
    input_kind: str  # KIND_VECTOR: (D, 1); KIND_FRAMES: (frames, n_mels)
    default_preset: str
    description: str
    builder: Builder


class _SeedSequence:
    """Hands out ``seed, seed + 1, ...`` so every initializer / dropout layer of a model is seeded and distinct."""

    def __init__(self, seed: int) -> None:
        self._next = int(seed)

    def __call__(self) -> int:
        value = self._next
        self._next += 1
        return value

    def glorot(self) -> keras.initializers.Initializer:
        return keras.initializers.GlorotUniform(seed=self())

    def he(self) -> keras.initializers.Initializer:
        return keras.initializers.HeNormal(seed=self())


def _build_seed180(input_shape: tuple[int, ...], n_classes: int, seed: int) -> keras.Model:
    seeds = _SeedSequence(seed)
    inputs = keras.Input(shape=input_shape, name=INPUT_NAME)
    x = layers.Conv1D(
        SEED180_FILTERS_1,
        SEED180_KERNEL,
        padding="same",
        activation="relu",
        kernel_initializer=seeds.glorot(),
        name="conv1d_1",
    )(inputs)
    x = layers.BatchNormalization(name="batch_norm_1")(x)
    x = layers.MaxPooling1D(SEED180_POOL, name="maxpool_1")(x)
    x = layers.Dropout(SEED180_DROPOUT_CONV_1, seed=seeds(), name="dropout_1")(x)
    x = layers.Conv1D(
        SEED180_FILTERS_2,
        SEED180_KERNEL,
        padding="same",
        activation="relu",
        kernel_initializer=seeds.glorot(),
        name="conv1d_2",
    )(x)
    x = layers.BatchNormalization(name="batch_norm_2")(x)
    x = layers.MaxPooling1D(SEED180_POOL, name="maxpool_2")(x)
    x = layers.Dropout(SEED180_DROPOUT_CONV_2, seed=seeds(), name="dropout_2")(x)
    x = layers.GlobalAveragePooling1D(name="global_avg_pool")(x)
    x = layers.Dense(SEED180_DENSE, activation="relu", kernel_initializer=seeds.glorot(), name="dense_intermediate")(x)
    x = layers.Dropout(SEED180_DROPOUT_DENSE, seed=seeds(), name="dropout_final")(x)
    outputs = layers.Dense(n_classes, activation="softmax", kernel_initializer=seeds.glorot(), name="output_emotions")(
        x
    )
    return keras.Model(inputs, outputs, name="seed180")


def _build_seed162(input_shape: tuple[int, ...], n_classes: int, seed: int) -> keras.Model:
    seeds = _SeedSequence(seed)
    inputs = keras.Input(shape=input_shape, name=INPUT_NAME)
    x = inputs
    for index, filters in enumerate(SEED162_FILTERS):
        suffix = f"_{index}" if index else ""  # Keras' own names in the seed: conv1d, conv1d_1, ...
        x = layers.Conv1D(
            filters,
            SEED162_KERNEL,
            padding="same",
            activation="relu",
            kernel_initializer=seeds.glorot(),
            name=f"conv1d{suffix}",
        )(x)
        x = layers.MaxPooling1D(
            SEED162_POOL, strides=SEED162_POOL_STRIDES, padding="same", name=f"max_pooling1d{suffix}"
        )(x)
        if index + 1 == SEED162_DROPOUT_AFTER_BLOCK:
            x = layers.Dropout(SEED162_DROPOUT_CONV, seed=seeds(), name="dropout")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(SEED162_DENSE, activation="relu", kernel_initializer=seeds.glorot(), name="dense")(x)
    x = layers.Dropout(SEED162_DROPOUT_DENSE, seed=seeds(), name="dropout_1")(x)
    outputs = layers.Dense(n_classes, activation="softmax", kernel_initializer=seeds.glorot(), name="dense_1")(x)
    return keras.Model(inputs, outputs, name="seed162")


def _pooled_head(
    x: keras.KerasTensor, n_classes: int, dense: int, dropout: float, seeds: _SeedSequence
) -> keras.KerasTensor:
    """Mean and max over time of (batch, time, channels), Dense + ReLU, softmax."""
    mean = layers.GlobalAveragePooling1D(name="time_mean")(x)
    peak = layers.GlobalMaxPooling1D(name="time_max")(x)
    x = layers.Concatenate(name="time_mean_max")([mean, peak])
    x = layers.Dropout(dropout, seed=seeds(), name="head_dropout_1")(x)
    x = layers.Dense(dense, activation="relu", kernel_initializer=seeds.he(), name="head_dense")(x)
    x = layers.Dropout(dropout, seed=seeds(), name="head_dropout_2")(x)
    return layers.Dense(n_classes, activation="softmax", kernel_initializer=seeds.glorot(), name="probs")(x)


def _build_logmel_cnn(input_shape: tuple[int, ...], n_classes: int, seed: int) -> keras.Model:
    seeds = _SeedSequence(seed)
    inputs = keras.Input(shape=input_shape, name=INPUT_NAME)
    x = layers.SpatialDropout1D(LOGMEL_INPUT_BAND_DROPOUT, seed=seeds(), name="band_dropout")(inputs)
    x = layers.GaussianNoise(LOGMEL_INPUT_NOISE, seed=seeds(), name="input_noise")(x)
    for index, (filters, kernel, pool, spatial_dropout) in enumerate(LOGMEL_CONV_BLOCKS, start=1):
        x = layers.Conv1D(
            filters, kernel, padding="same", use_bias=False, kernel_initializer=seeds.he(), name=f"conv_{index}"
        )(x)
        x = layers.BatchNormalization(name=f"bn_{index}")(x)
        x = layers.ReLU(name=f"relu_{index}")(x)
        if pool:
            x = layers.MaxPooling1D(LOGMEL_POOL, padding="same", name=f"pool_{index}")(x)
        x = layers.SpatialDropout1D(spatial_dropout, seed=seeds(), name=f"spatial_dropout_{index}")(x)
    outputs = _pooled_head(x, n_classes, LOGMEL_DENSE, LOGMEL_DROPOUT_HEAD, seeds)
    return keras.Model(inputs, outputs, name="logmel_cnn")


def _build_logmel_cnn2d(input_shape: tuple[int, ...], n_classes: int, seed: int) -> keras.Model:
    seeds = _SeedSequence(seed)
    inputs = keras.Input(shape=input_shape, name=INPUT_NAME)
    x = layers.Reshape((*input_shape, 1), name="as_image")(inputs)
    for index, (filters, pool, spatial_dropout) in enumerate(LOGMEL2D_CONV_BLOCKS, start=1):
        x = layers.Conv2D(
            filters,
            LOGMEL2D_KERNEL,
            padding="same",
            use_bias=False,
            kernel_initializer=seeds.he(),
            name=f"conv_{index}",
        )(x)
        x = layers.BatchNormalization(name=f"bn_{index}")(x)
        x = layers.ReLU(name=f"relu_{index}")(x)
        if pool:
            x = layers.MaxPooling2D(LOGMEL2D_POOL, padding="same", name=f"pool_{index}")(x)
        x = layers.SpatialDropout2D(spatial_dropout, seed=seeds(), name=f"spatial_dropout_{index}")(x)
    frames, bands, channels = x.shape[1], x.shape[2], x.shape[3]
    x = layers.AveragePooling2D((1, bands), name="band_mean")(x)  # (batch, frames, 1, channels)
    x = layers.Reshape((frames, channels), name="as_sequence")(x)
    outputs = _pooled_head(x, n_classes, LOGMEL2D_DENSE, LOGMEL2D_DROPOUT_HEAD, seeds)
    return keras.Model(inputs, outputs, name="logmel_cnn2d")


RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        Recipe(
            "seed180",
            KIND_VECTOR,
            "seed180",
            "seed 1: 2 x (Conv1D+BN+MaxPool+Dropout), global average, Dense 64; 47,175 params (7 classes)",
            _build_seed180,
        ),
        Recipe(
            "seed162",
            KIND_VECTOR,
            "seed162",
            "seed 2 (Kaggle): 4 x (Conv1D 256/256/128/64 + MaxPool 5/2), Flatten, Dense 32; 557,288 params (8 classes)",
            _build_seed162,
        ),
        Recipe(
            "logmel_cnn",
            KIND_FRAMES,
            "logmel_wide",
            "1-D CNN over log-mel frames (bands as channels), 4 Conv-BN-ReLU blocks, mean+max over time; ~226k params",
            _build_logmel_cnn,
        ),
        Recipe(
            "logmel_cnn2d",
            KIND_FRAMES,
            "logmel_wide",
            "2-D CNN over the log-mel map (3x3 convs, shift-invariant in pitch), mean over bands, "
            "mean+max over time; ~92k params",
            _build_logmel_cnn2d,
        ),
    )
}


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; a :class:`UserError` naming the valid ones otherwise."""
    try:
        return RECIPES[name]
    except KeyError:
        raise UserError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}") from None


def model_input_shape(feature_shape: Sequence[int]) -> tuple[int, ...]:
    """The model input shape for a preset's feature shape: vector ``(D,)`` -> ``(D, 1)``; frames ``(T, M)`` stay.

    The exporter and the training code add the channel axis to vector features (``x[..., None]``).
    """
    shape = tuple(int(n) for n in feature_shape)
    if any(n < 1 for n in shape):
        raise ValueError(f"feature shape must have positive sizes, got {shape}")
    if len(shape) == 1:
        return (shape[0], 1)
    if len(shape) == 2:
        return shape
    raise ValueError(f"feature shape must be (D,) or (frames, n_mels), got {shape}")


def build_model(recipe: str, input_shape: tuple[int, ...], n_classes: int, seed: int) -> keras.Model:
    """Build (not compile) the recipe's model for ``input_shape`` (see :func:`model_input_shape`).

    Every initializer and dropout layer is seeded from ``seed``: the same arguments give the same initial
    weights whatever the global random state.
    """
    spec = get_recipe(recipe)
    shape = tuple(int(n) for n in input_shape)
    if n_classes < 2:
        raise UserError(f"a classifier needs at least 2 classes, got {n_classes}; check the --data corpora/labels")
    if spec.input_kind == KIND_VECTOR and (len(shape) != 2 or shape[1] != 1):
        raise UserError(
            f"recipe {recipe} takes a feature vector (input (D, 1)), but the features have shape {shape}; "
            f"use --preset {spec.default_preset} (or a recipe for log-mel frames: logmel_cnn)"
        )
    if spec.input_kind == KIND_FRAMES and (len(shape) != 2 or shape[1] < 2):
        raise UserError(
            f"recipe {recipe} takes log-mel frames (input (frames, n_mels)), but the features have shape "
            f"{shape}; use --preset {spec.default_preset} (or a vector recipe: seed180, seed162)"
        )
    model = spec.builder(shape, int(n_classes), int(seed))
    total, trainable = count_params(model)
    logger.info(
        "built %s for input %s, %d classes: %d parameters (%d trainable)", recipe, shape, n_classes, total, trainable
    )
    return model


def with_affect_head(model: keras.Model, seed: int) -> keras.Model:
    """``model`` with a second output: ``affect`` = tanh(Dense 2) on the features that feed its softmax layer.

    The two outputs share every layer but the last: the class loss and the arousal/valence loss train the same
    network (multi-task). Outputs are a dict ``{"probs": ..., "affect": ...}``.
    """
    softmax = model.layers[-1]
    affect = layers.Dense(
        AFFECT_UNITS, activation="tanh", kernel_initializer=keras.initializers.GlorotUniform(seed=int(seed)),
        name=AFFECT_OUTPUT,
    )(softmax.input)
    return keras.Model(model.input, {PROBS_OUTPUT: model.output, AFFECT_OUTPUT: affect}, name=model.name)


@keras.saving.register_keras_serializable(package="ser_live")
class GradientReversal(layers.Layer):
    """Identity forward; the gradient flowing back is multiplied by ``-s``, ``s`` = ``scale`` unless a schedule
    (:class:`AdversaryRamp`) sets it.

    ``stop_gradient(x * (1 + s)) - s * x`` is ``x`` in value and has gradient ``-s``: no custom gradient, so it runs
    on any Keras backend."""

    def __init__(self, scale: float = DEFAULT_ADVERSARY_SCALE, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scale = float(scale)
        self.current = self.add_weight(name="current_scale", shape=(), trainable=False,
                                       initializer=keras.initializers.Constant(self.scale))

    def call(self, x: Any) -> Any:
        s = keras.ops.cast(self.current, x.dtype)
        return keras.ops.stop_gradient(x * (1.0 + s)) - s * x

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scale": self.scale}


def ramp_factor(progress: float) -> float:
    """DANN's schedule (Ganin & Lempitsky 2015): ``2 / (1 + exp(-10 p)) - 1``, 0 at the start, ~1 from a third on."""
    return float(2.0 / (1.0 + np.exp(-10.0 * progress)) - 1.0)


class AdversaryRamp(keras.callbacks.Callback):
    """Sets the reversal's scale before each epoch to ``scale * ramp_factor(epoch / epochs)``: the branch first
    learns to tell the domains apart, and the trunk is pushed against it only as it can."""

    def __init__(self, layer: GradientReversal, epochs: int) -> None:
        super().__init__()
        self.layer, self.epochs = layer, max(1, int(epochs))
        self.history: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        value = self.layer.scale * ramp_factor(epoch / self.epochs)
        self.layer.current.assign(value)
        self.history.append(round(value, 4))


def with_adversary(model: keras.Model, n_domains: int, scale: float, seed: int) -> keras.Model:
    """A training model with a second output ``domain``: softmax over ``n_domains`` (corpora or speakers) from the
    features that feed ``model``'s softmax layer, through :class:`GradientReversal` and Dense(64, ReLU). ``model``
    itself (its layers are shared) is what is saved and exported."""
    if has_affect_head(model):
        raise UserError("--adversary and --affect-weight cannot be combined yet: train with one of them")
    if n_domains < 2:
        raise UserError(f"the adversarial branch needs at least two domains to tell apart, the training split has "
                        f"{n_domains}: use --adversary speaker, or train on more corpora")
    x = GradientReversal(scale, name="gradient_reversal")(model.layers[-1].input)
    x = layers.Dense(ADVERSARY_UNITS, activation="relu", kernel_initializer=keras.initializers.HeNormal(seed=int(seed)),
                     name="domain_dense")(x)
    domain = layers.Dense(n_domains, activation="softmax",
                          kernel_initializer=keras.initializers.GlorotUniform(seed=int(seed) + 1),
                          name=ADVERSARY_OUTPUT)(x)
    return keras.Model(model.input, {PROBS_OUTPUT: model.output, ADVERSARY_OUTPUT: domain}, name=model.name)


def has_adversary(model: keras.Model) -> bool:
    return ADVERSARY_OUTPUT in list(model.output_names)


def count_params(model: keras.Model) -> tuple[int, int]:
    """``(total, trainable)`` parameter counts."""
    trainable = int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))
    return int(model.count_params()), trainable


def compile_model(
    model: keras.Model,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    label_smoothing: float = DEFAULT_LABEL_SMOOTHING,
    affect_weight: float = DEFAULT_AFFECT_WEIGHT,
) -> keras.Model:
    """Adam + categorical cross-entropy (one-hot targets, optional label smoothing) + accuracy; returns ``model``.

    A model with an affect head (:func:`with_affect_head`) also gets mean squared error on ``affect``, weighted
    ``affect_weight``; its metrics are then named ``probs_accuracy``, ``affect_loss``, ...
    """
    classes = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
    if has_adversary(model):  # the branch's loss counts once; its reversed gradient is scaled in the layer
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
            loss={PROBS_OUTPUT: classes, ADVERSARY_OUTPUT: keras.losses.CategoricalCrossentropy()},
            metrics={PROBS_OUTPUT: ["accuracy"], ADVERSARY_OUTPUT: ["accuracy"]},
        )
        return model
    if has_affect_head(model):
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
            loss={PROBS_OUTPUT: classes, AFFECT_OUTPUT: keras.losses.MeanSquaredError()},
            loss_weights={PROBS_OUTPUT: 1.0, AFFECT_OUTPUT: float(affect_weight)},
            metrics={PROBS_OUTPUT: ["accuracy"]},
        )
        return model
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss=classes, metrics=["accuracy"])
    return model


def _monitor_mode(monitor: str) -> str:
    """``"max"`` for accuracy-like monitors, ``"min"`` for losses; rejects anything else."""
    if monitor.endswith(("accuracy", "acc", "uar", "f1")):
        return "max"
    if monitor.endswith("loss"):
        return "min"
    raise UserError(f"cannot tell whether {monitor!r} should go up or down; monitor val_loss or val_accuracy")


def default_callbacks(
    checkpoint_path: str | Path,
    patience: int = DEFAULT_PATIENCE,
    lr_patience: int = DEFAULT_LR_PATIENCE,
    monitor: str = DEFAULT_MONITOR,
    lr_factor: float = DEFAULT_LR_FACTOR,
    min_lr: float = DEFAULT_MIN_LR,
    verbose: int = 0,
) -> list[keras.callbacks.Callback]:
    """ModelCheckpoint (best ``monitor``, Keras 3 ``.keras`` file), ReduceLROnPlateau, EarlyStopping.

    EarlyStopping restores the best weights, so the model in memory after ``fit`` is the checkpointed one.
    """
    path = Path(checkpoint_path)
    if path.suffix != CHECKPOINT_SUFFIX:
        raise ValueError(f"checkpoint path must end in {CHECKPOINT_SUFFIX} (Keras 3 native format), got {path}")
    if lr_patience >= patience:
        logger.warning(
            "lr_patience %d >= patience %d: the learning rate will not be lowered before stopping",
            lr_patience,
            patience,
        )
    mode = _monitor_mode(monitor)
    path.parent.mkdir(parents=True, exist_ok=True)
    return [
        keras.callbacks.ModelCheckpoint(str(path), monitor=monitor, mode=mode, save_best_only=True, verbose=verbose),
        keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, mode=mode, factor=lr_factor, patience=lr_patience, min_lr=min_lr, verbose=verbose
        ),
        keras.callbacks.EarlyStopping(
            monitor=monitor, mode=mode, patience=patience, restore_best_weights=True, verbose=verbose
        ),
    ]


def callbacks_for(
    hyper: TrainHyperParams, checkpoint_path: str | Path, verbose: int = 0
) -> list[keras.callbacks.Callback]:
    """:func:`default_callbacks` with the settings of ``hyper``."""
    return default_callbacks(
        checkpoint_path,
        patience=hyper.patience,
        lr_patience=hyper.lr_patience,
        monitor=hyper.monitor,
        lr_factor=hyper.lr_factor,
        min_lr=hyper.min_lr,
        verbose=verbose,
    )


def class_weights(labels: np.ndarray, n_classes: int) -> dict[int, float]:
    """Balanced class weights ``n / (k * count_c)`` over the classes present; absent classes get 1.0.

    ``labels``: integer class indices ``(n,)`` or one-hot ``(n, n_classes)``.
    """
    y = np.asarray(labels)
    if y.ndim == 2:
        y = y.argmax(axis=1)
    counts = np.bincount(y.astype(np.int64), minlength=n_classes)[:n_classes]
    present = counts > 0
    weights = np.ones(n_classes, dtype=np.float64)
    weights[present] = y.size / (present.sum() * counts[present])
    return {index: float(w) for index, w in enumerate(weights)}


def set_seeds(seed: int) -> None:
    """Seed Python, NumPy and the Keras backend (``keras.utils.set_random_seed``) for a reproducible run."""
    keras.utils.set_random_seed(int(seed))
    np.random.seed(int(seed) % (2**32))  # keras does this too; explicit for code reading the legacy global
