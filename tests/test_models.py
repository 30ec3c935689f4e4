"""Model recipes: exact seed architectures, the log-mel CNNs, training helpers, a quick fit and ONNX export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ser_live.realtime.errors import UserError

keras = pytest.importorskip("keras")  # the train extra; CI installs it

from ser_live.train import models  # noqa: E402  (after the importorskip guard)

# Keras 3.15 on TensorFlow 2.21 converts tensors with np.array(x) inside fit(); NumPy 2 warns about it.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

LOGMEL_SHAPE = (197, 64)
SEED180_LAYERS = [
    "features",
    "conv1d_1",
    "batch_norm_1",
    "maxpool_1",
    "dropout_1",
    "conv1d_2",
    "batch_norm_2",
    "maxpool_2",
    "dropout_2",
    "global_avg_pool",
    "dense_intermediate",
    "dropout_final",
    "output_emotions",
]
SEED162_LAYERS = [
    "features",
    "conv1d",
    "max_pooling1d",
    "conv1d_1",
    "max_pooling1d_1",
    "conv1d_2",
    "max_pooling1d_2",
    "dropout",
    "conv1d_3",
    "max_pooling1d_3",
    "flatten",
    "dense",
    "dropout_1",
    "dense_1",
]


def test_seed180_matches_seed_1_exactly() -> None:
    model = models.build_model("seed180", (180, 1), 7, seed=0)
    assert models.count_params(model) == (47_175, 46_791)
    assert [layer.name for layer in model.layers] == SEED180_LAYERS
    shapes = {layer.name: tuple(layer.output.shape) for layer in model.layers}
    assert shapes["conv1d_1"] == (None, 180, 128)
    assert shapes["maxpool_2"] == (None, 45, 64)
    assert shapes["output_emotions"] == (None, 7)
    assert [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)] == [
        models.SEED180_DROPOUT_CONV_1,
        models.SEED180_DROPOUT_CONV_2,
        models.SEED180_DROPOUT_DENSE,
    ]


def test_seed162_matches_the_kaggle_seed_exactly() -> None:
    model = models.build_model("seed162", (162, 1), 8, seed=0)
    assert models.count_params(model) == (557_288, 557_288)
    assert [layer.name for layer in model.layers] == SEED162_LAYERS
    pooled = [layer.output.shape[1] for layer in model.layers if isinstance(layer, keras.layers.MaxPooling1D)]
    assert pooled == [81, 41, 21, 11]
    assert tuple(model.output.shape) == (None, 8)


@pytest.mark.parametrize("recipe", ["logmel_cnn", "logmel_cnn2d"])
def test_logmel_recipes_are_small_and_output_probabilities(recipe: str) -> None:
    model = models.build_model(recipe, LOGMEL_SHAPE, 7, seed=1)
    total, trainable = models.count_params(model)
    assert total <= models.MAX_PARAMS
    assert 0 < trainable < total  # BatchNorm statistics are not trainable
    assert not any(isinstance(layer, keras.layers.Normalization) for layer in model.layers)
    x = np.random.default_rng(0).standard_normal((3, *LOGMEL_SHAPE)).astype(np.float32)
    probs = np.asarray(model(x, training=False))
    assert probs.shape == (3, 7)
    assert np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_every_recipe_is_registered_with_a_matching_preset_kind() -> None:
    assert set(models.RECIPES) == {"seed180", "seed162", "logmel_cnn", "logmel_cnn2d"}
    for name, recipe in models.RECIPES.items():
        assert recipe.name == name
        assert recipe.input_kind in (models.KIND_VECTOR, models.KIND_FRAMES)


def test_model_input_shape_adds_a_channel_to_vectors_only() -> None:
    assert models.model_input_shape((180,)) == (180, 1)
    assert models.model_input_shape([162]) == (162, 1)
    assert models.model_input_shape((197, 64)) == (197, 64)
    with pytest.raises(ValueError, match="feature shape"):
        models.model_input_shape((2, 3, 4))
    with pytest.raises(ValueError, match="positive"):
        models.model_input_shape((0,))


def test_build_model_rejects_user_mistakes_in_one_line() -> None:
    with pytest.raises(UserError, match=r"unknown recipe 'resnet'.*seed180"):
        models.build_model("resnet", (180, 1), 7, seed=0)
    with pytest.raises(UserError, match="--preset seed180"):
        models.build_model("seed180", LOGMEL_SHAPE, 7, seed=0)
    with pytest.raises(UserError, match="--preset logmel"):
        models.build_model("logmel_cnn", (180, 1), 7, seed=0)
    with pytest.raises(UserError, match="at least 2 classes"):
        models.build_model("seed180", (180, 1), 1, seed=0)


def test_initial_weights_depend_on_the_seed_only() -> None:
    first = models.build_model("seed180", (180, 1), 7, seed=3).get_weights()
    keras.utils.set_random_seed(12345)  # global state must not matter
    again = models.build_model("seed180", (180, 1), 7, seed=3).get_weights()
    other = models.build_model("seed180", (180, 1), 7, seed=4).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0], other[0])


def test_hyper_params_defaults_and_validation() -> None:
    hyper = models.TrainHyperParams()
    assert hyper.lr_patience < hyper.patience
    assert hyper.to_dict()["learning_rate"] == models.DEFAULT_LEARNING_RATE
    with pytest.raises(UserError, match="epochs"):
        models.TrainHyperParams(epochs=0)
    with pytest.raises(UserError, match="label smoothing"):
        models.TrainHyperParams(label_smoothing=1.0)
    with pytest.raises(UserError, match="learning rate"):
        models.TrainHyperParams(learning_rate=0.0)
    with pytest.raises(UserError, match="val_loss"):
        models.TrainHyperParams(monitor="val_wobble")


def test_default_callbacks(tmp_path: Path) -> None:
    checkpoint, reduce_lr, early = models.default_callbacks(
        tmp_path / "run" / "model.keras", patience=6, lr_patience=2, monitor="val_accuracy"
    )
    assert isinstance(checkpoint, keras.callbacks.ModelCheckpoint)
    assert isinstance(reduce_lr, keras.callbacks.ReduceLROnPlateau)
    assert isinstance(early, keras.callbacks.EarlyStopping)
    assert early.restore_best_weights and early.patience == 6 and reduce_lr.patience == 2
    assert checkpoint.save_best_only and checkpoint.monitor == "val_accuracy"
    assert early.mode == "max" and reduce_lr.mode == "max"
    assert (tmp_path / "run").is_dir()
    with pytest.raises(ValueError, match=r"\.keras"):
        models.default_callbacks(tmp_path / "model.h5")


def test_class_weights_are_balanced() -> None:
    labels = np.array([0, 0, 0, 1, 2, 2])
    weights = models.class_weights(labels, 4)
    assert weights[0] == pytest.approx(6 / (3 * 3))
    assert weights[1] == pytest.approx(6 / (3 * 1))
    assert weights[3] == 1.0
    one_hot = np.eye(4)[labels]
    assert models.class_weights(one_hot, 4) == weights
    # weighted counts are equal across the classes present
    counts = np.bincount(labels, minlength=4)
    assert len({round(counts[c] * weights[c], 9) for c in range(3)}) == 1


def test_compile_model_uses_adam_and_label_smoothing() -> None:
    model = models.compile_model(models.build_model("seed180", (180, 1), 7, seed=0), 2e-3, label_smoothing=0.1)
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert float(model.optimizer.learning_rate) == pytest.approx(2e-3)
    assert model.loss.get_config()["label_smoothing"] == pytest.approx(0.1)


QUICK_SHAPES = {"seed180": (180, 1), "seed162": (162, 1), "logmel_cnn": (40, 64), "logmel_cnn2d": (40, 64)}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", list(QUICK_SHAPES))
def test_quick_fit_checkpoints_the_best_model(recipe: str, tmp_path: Path) -> None:
    models.set_seeds(7)
    shape, n_classes, n = QUICK_SHAPES[recipe], 5, 24
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n, *shape)).astype(np.float32)
    y = np.eye(n_classes, dtype=np.float32)[rng.integers(0, n_classes, n)]
    hyper = models.TrainHyperParams(epochs=2, batch_size=8, patience=3, lr_patience=1)
    model = models.compile_model(models.build_model(recipe, shape, n_classes, seed=7), hyper.learning_rate)
    path = tmp_path / "best.keras"
    history = model.fit(
        x[:16],
        y[:16],
        validation_data=(x[16:], y[16:]),
        epochs=hyper.epochs,
        batch_size=hyper.batch_size,
        callbacks=models.callbacks_for(hyper, path),
        class_weight=models.class_weights(y[:16], n_classes),
        verbose=0,
    )
    assert len(history.history["val_loss"]) == 2
    assert np.all(np.isfinite(history.history["loss"]))
    assert path.is_file()
    reloaded = keras.saving.load_model(path)
    assert reloaded.name == recipe
    # EarlyStopping restored the best weights: the model in memory is the checkpointed one
    np.testing.assert_allclose(reloaded.predict(x[16:], verbose=0), model.predict(x[16:], verbose=0), atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", list(QUICK_SHAPES))
def test_recipes_convert_to_onnx_with_parity(recipe: str) -> None:
    tf = pytest.importorskip("tensorflow")
    tf2onnx = pytest.importorskip("tf2onnx")
    ort = pytest.importorskip("onnxruntime")
    shape = QUICK_SHAPES[recipe]
    model = models.build_model(recipe, shape, 7, seed=2)
    spec = (tf.TensorSpec((None, *shape), tf.float32, name=models.INPUT_NAME),)

    @tf.function(input_signature=spec)
    def forward(x: object) -> object:
        return model(x, training=False)

    proto, _ = tf2onnx.convert.from_function(forward, input_signature=spec, opset=17)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(2).standard_normal((4, *shape)).astype(np.float32)
    (onnx_probs,) = session.run(None, {session.get_inputs()[0].name: x})
    np.testing.assert_allclose(onnx_probs, np.asarray(model(x, training=False)), atol=1e-5)


def test_curves_plot_the_class_accuracy_of_a_model_with_an_affect_head(tmp_path: Path) -> None:
    """A two-output model logs probs_accuracy, not accuracy: the curves must still show it (no empty panel)."""
    import warnings

    from ser_live.train.report import plot_curves

    history = {"loss": [2.0, 1.5], "val_loss": [2.1, 1.7], "probs_accuracy": [0.3, 0.4],
               "val_probs_accuracy": [0.25, 0.35], "affect_loss": [0.3, 0.2]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns "No artists with labels" for an empty panel
        plot_curves(history, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_gradient_reversal_passes_values_and_reverses_the_gradient() -> None:
    import tensorflow as tf

    layer = models.GradientReversal(0.3)
    x = tf.constant(np.linspace(-2.0, 2.0, 12, dtype=np.float32).reshape(3, 4))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * tf.constant(np.arange(12, dtype=np.float32).reshape(3, 4)))
    np.testing.assert_allclose(y.numpy(), x.numpy(), atol=1e-6)
    np.testing.assert_allclose(tape.gradient(loss, x).numpy(), -0.3 * np.arange(12).reshape(3, 4), atol=1e-6)
    assert models.GradientReversal.from_config(layer.get_config()).scale == pytest.approx(0.3)


def test_an_adversary_branches_from_the_embedding_and_leaves_the_model_as_it_was() -> None:
    net = models.build_model("logmel_cnn", (197, 64), 7, seed=1)
    trainer = models.with_adversary(net, 5, 0.2, seed=1)
    assert models.has_adversary(trainer) and not models.has_adversary(net)
    assert trainer.get_layer("gradient_reversal").input is net.layers[-1].input  # the classifier's input
    models.compile_model(trainer)
    x = np.random.default_rng(0).normal(size=(4, 197, 64)).astype(np.float32)
    out = trainer.predict(x, verbose=0)
    assert out[models.ADVERSARY_OUTPUT].shape == (4, 5)
    np.testing.assert_allclose(out[models.PROBS_OUTPUT], net.predict(x, verbose=0), atol=1e-6)  # shared layers
    with pytest.raises(UserError, match="at least two domains"):
        models.with_adversary(net, 1, 0.2, seed=1)


def test_the_adversary_ramp_follows_danns_schedule_and_sets_the_reversal() -> None:
    import tensorflow as tf

    assert models.ramp_factor(0.0) == 0.0
    assert models.ramp_factor(0.1) == pytest.approx(2 / (1 + np.exp(-1.0)) - 1)
    assert 0.99 < models.ramp_factor(1.0) < 1.0
    layer = models.GradientReversal(0.5)
    ramp = models.AdversaryRamp(layer, epochs=10)
    x = tf.constant(np.ones((2, 3), np.float32))
    for epoch in (0, 5):
        ramp.on_epoch_begin(epoch)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            total = tf.reduce_sum(y)
        np.testing.assert_allclose(y.numpy(), x.numpy(), atol=1e-6)
        want = 0.5 * models.ramp_factor(epoch / 10)
        np.testing.assert_allclose(tape.gradient(total, x).numpy(), -want, atol=1e-6)
    assert ramp.history == [0.0, round(0.5 * models.ramp_factor(0.5), 4)]
