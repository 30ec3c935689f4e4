"""ser-export: Keras run -> ONNX with folded standardisation, metadata, parity check, int8, atomic writes.

Tiny Keras models are built here (a Conv1D on (D, 1) and one on (T, M)); one export per shape is shared through
module-scoped fixtures. TensorFlow is imported lazily (inside fixtures) so collecting this file stays cheap.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

import ser_live.export.onnx_export as ox
from ser_live import __version__
from ser_live.export.cli import main
from ser_live.export.onnx_export import ExportError, ExportReport, export_model, int8_path
from ser_live.realtime.errors import UserError
from ser_live.realtime.model import FORMAT_VERSION, load_model
from ser_live.realtime.profile import softmax
from ser_live.realtime.stages.features import PRESETS

pytestmark = [
    pytest.mark.slow,
    # Keras 3 model.save() on numpy 2 (third-party, harmless)
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
]

LABELS = ["angry", "disgust", "fearful", "happy", "neutral", "sad", "surprised"]
VECTOR_SHAPE = [180]
FRAMES_SHAPE = [197, 64]
VAL_ROWS = 40
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def keras() -> Any:
    import keras

    return keras


def build_model(keras: Any, feature_shape: list[int], softmax: bool = True) -> Any:
    keras.utils.set_random_seed(len(feature_shape))
    input_shape = (feature_shape[0], 1) if len(feature_shape) == 1 else tuple(feature_shape)
    return keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Conv1D(4, 5, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(len(LABELS), activation="softmax" if softmax else None),
        ]
    )


def make_config(feature_shape: list[int], per_last_axis: bool, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    n = feature_shape[-1] if per_last_axis else int(np.prod(feature_shape))
    preset = PRESETS["seed180"] if len(feature_shape) == 1 else PRESETS["logmel"]
    return {
        "labels": LABELS,
        "preset": preset.to_dict(),
        "feature_shape": feature_shape,
        "sample_rate": 16000,
        "window_s": 2.048,
        "hop_s": 0.512,
        "min_speech_s": 0.5,
        "normalization": {"mean": rng.normal(size=n).tolist(), "std": (rng.random(n) + 0.5).tolist()},
        "recipe": "seed180" if len(feature_shape) == 1 else "logmel",
        "data": {"corpora": ["synthetic"], "clips": 12},
        "metrics": {"accuracy": 0.42, "macro_f1": 0.4},
        "split": "speaker",
    }


def write_run(run_dir: Path, model: Any, config: dict[str, Any], val_features: np.ndarray | None = None) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    model.save(run_dir / "model.keras")
    (run_dir / "config.json").write_text(json.dumps(config))
    if val_features is not None:
        np.save(run_dir / "val_features.npy", val_features, allow_pickle=False)
    return run_dir


def _mean_std(config: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """config's mean/std shaped to broadcast over features (flattened full shape, or one per last axis)."""
    shape = tuple(config["feature_shape"])
    mean = np.asarray(config["normalization"]["mean"], dtype=np.float32)
    std = np.asarray(config["normalization"]["std"], dtype=np.float32)
    if mean.size == np.prod(shape):
        mean, std = mean.reshape(shape), std.reshape(shape)
    return mean, std


def around_mean(config: dict[str, Any], rows: int, rng: np.random.Generator) -> np.ndarray:
    mean, std = _mean_std(config)
    return (rng.standard_normal((rows, *config["feature_shape"])) * std + mean).astype(np.float32)


def keras_reference(model: Any, config: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """Standardise with config's mean/std (flattened or per last axis), reshape to the model input, predict."""
    mean, std = _mean_std(config)
    z = (x - mean) / std
    if len(config["feature_shape"]) == 1:
        z = z[..., None]
    return np.asarray(model(z.astype(np.float32), training=False))


@pytest.fixture(scope="module")
def vector_run(keras: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, dict[str, Any]]:
    model = build_model(keras, VECTOR_SHAPE)
    config = make_config(VECTOR_SHAPE, per_last_axis=False)
    val = around_mean(config, VAL_ROWS, np.random.default_rng(7))
    run_dir = write_run(tmp_path_factory.mktemp("vector") / "run", model, config, val)
    return run_dir, keras.saving.load_model(run_dir / "model.keras"), config


@pytest.fixture(scope="module")
def frames_run(keras: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, dict[str, Any]]:
    model = build_model(keras, FRAMES_SHAPE)
    config = make_config(FRAMES_SHAPE, per_last_axis=True, seed=1)
    run_dir = write_run(tmp_path_factory.mktemp("frames") / "run", model, config)
    return run_dir, keras.saving.load_model(run_dir / "model.keras"), config


@pytest.fixture(scope="module")
def vector_export(vector_run: Any, tmp_path_factory: pytest.TempPathFactory) -> ExportReport:
    """The run directory exported with --quantize int8 (val_features.npy present)."""
    out = tmp_path_factory.mktemp("vector_out") / "vector.onnx"
    return export_model(vector_run[0], out, quantize="int8")


@pytest.fixture(scope="module")
def frames_export(frames_run: Any, tmp_path_factory: pytest.TempPathFactory) -> ExportReport:
    """The frames run exported at opset 18 (no val_features.npy: generated parity features)."""
    out = tmp_path_factory.mktemp("frames_out") / "frames.onnx"
    return export_model(frames_run[0], out, opset=18)


# ---------------------------------------------------------------- exports that work


@pytest.mark.parametrize("which", ["vector", "frames"])
def test_exported_model_matches_keras_with_standardisation(which: str, request: pytest.FixtureRequest) -> None:
    report: ExportReport = request.getfixturevalue(f"{which}_export")
    _, keras_model, config = request.getfixturevalue(f"{which}_run")
    model = load_model(report.output, provider="cpu")
    assert model.info.feature_shape == tuple(config["feature_shape"])
    rng = np.random.default_rng(11)
    for batch in (1, 9):  # dynamic batch
        x = around_mean(config, batch, rng)
        expected = keras_reference(keras_model, config, x)
        got = model.predict(x)
        assert got.shape == (batch, len(LABELS))
        np.testing.assert_allclose(got, expected, atol=TOLERANCE)
        np.testing.assert_array_equal(got.argmax(axis=1), expected.argmax(axis=1))


def test_parity_report(vector_export: ExportReport, frames_export: ExportReport) -> None:
    assert vector_export.parity.source == "val_features.npy" and vector_export.parity.rows == VAL_ROWS
    assert frames_export.parity.source == "generated" and frames_export.parity.rows == ox.GENERATED_PARITY_ROWS
    for report in (vector_export, frames_export):
        assert 0 <= report.parity.max_abs_diff <= TOLERANCE
        assert report.parity.argmax_agreement == 1.0 and report.parity.passed
        assert report.size_bytes == report.output.stat().st_size > 0
        assert report.labels == tuple(LABELS)
    assert (vector_export.opset, frames_export.opset) == (15, 18)
    assert frames_export.quantized is None


def test_metadata_round_trip(vector_export: ExportReport, vector_run: Any) -> None:
    config = vector_run[2]
    info = load_model(vector_export.output).info
    assert info.format_version == FORMAT_VERSION
    assert info.labels == tuple(config["labels"])
    assert info.preset_config == config["preset"] and info.preset == PRESETS["seed180"]
    assert (info.sample_rate, info.window_s, info.hop_s, info.min_speech_s) == (16000, 2.048, 0.512, 0.5)
    assert info.recipe == "seed180" and info.data == config["data"]
    assert info.metrics == {**config["metrics"], "split": "speaker"}
    np.testing.assert_allclose(info.normalization["mean"], config["normalization"]["mean"], rtol=1e-12)
    np.testing.assert_allclose(info.normalization["std"], config["normalization"]["std"], rtol=1e-12)
    assert info.project_version == __version__
    assert datetime.fromisoformat(info.created).tzinfo is not None


def test_onnx_graph_contract(frames_export: ExportReport) -> None:
    proto = onnx.load(str(frames_export.output))
    assert [i.name for i in proto.graph.input] == ["features"]
    assert [o.name for o in proto.graph.output] == ["probs", "embedding"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == FRAMES_SHAPE
    assert {o.domain: o.version for o in proto.opset_import}[""] == 18
    assert proto.producer_name == "ser-live" and proto.producer_version == __version__
    assert "logmel" in proto.doc_string and "angry" in proto.doc_string
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["ser_live"])["feature_shape"] == FRAMES_SHAPE


@pytest.mark.parametrize("which", ["vector", "frames"])
def test_export_writes_the_embedding_that_feeds_the_last_layer(
    which: str, request: pytest.FixtureRequest, keras: Any
) -> None:
    """The ``embedding`` output is the Keras softmax layer's input, and the metadata's layer rebuilds ``probs``."""
    report: ExportReport = request.getfixturevalue(f"{which}_export")
    _, keras_model, config = request.getfixturevalue(f"{which}_run")
    model = load_model(report.output, provider="cpu")
    assert model.can_personalise and report.embedding_size == model.info.embedding.size
    last = keras_model.layers[-1]
    assert model.info.embedding.weights.shape == (last.kernel.shape[0], len(LABELS))
    np.testing.assert_allclose(model.info.embedding.weights, np.asarray(last.kernel), rtol=1e-6)
    x = around_mean(config, 5, np.random.default_rng(3))
    mean, std = _mean_std(config)
    z = ((x - mean) / std).astype(np.float32)
    z = z[..., None] if len(config["feature_shape"]) == 1 else z
    sub = keras.Model(keras_model.inputs[0], last.input)
    np.testing.assert_allclose(model.embed(x), np.asarray(sub(z, training=False)), atol=TOLERANCE, rtol=1e-4)
    rebuilt = softmax(model.embed(x).astype(np.float64) @ model.info.embedding.weights + model.info.embedding.bias)
    np.testing.assert_allclose(rebuilt, model.predict(x), atol=1e-5)
    assert report.embedding_max_rel_diff is not None and report.embedding_max_rel_diff <= TOLERANCE
    if report.quantized is not None:
        int8 = load_model(report.quantized.path, provider="cpu")
        assert int8.can_personalise
        assert report.quantized.embedding_max_rel_diff is not None and report.quantized.embedding_max_rel_diff < 0.1
        np.testing.assert_allclose(int8.embed(x), model.embed(x), atol=0.1 * float(np.abs(model.embed(x)).max()))


def test_int8_model_loads_runs_and_keeps_metadata(vector_export: ExportReport) -> None:
    quantized = vector_export.quantized
    assert quantized is not None
    assert quantized.path == int8_path(vector_export.output) and quantized.path.name == "vector.int8.onnx"
    assert quantized.size_bytes == quantized.path.stat().st_size > 0
    float_model = load_model(vector_export.output)
    int8_model = load_model(quantized.path)
    assert int8_model.info.raw == float_model.info.raw
    ops = {n.op_type for n in onnx.load(str(quantized.path)).graph.node}
    assert ops & {"DynamicQuantizeLinear", "MatMulInteger", "ConvInteger"}
    x = np.asarray(float_model.info.normalization["mean"], dtype=np.float32)[None] + np.zeros((3, 1), np.float32)
    np.testing.assert_allclose(int8_model.predict(x), float_model.predict(x), atol=0.05)
    assert 0 <= quantized.parity.max_abs_diff < 0.05 and 0 <= quantized.parity.argmax_agreement <= 1


def test_keras_file_with_config_through_the_cli(
    vector_run: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir, keras_model, config = vector_run
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(run_dir / "model.keras", lone / "weights.keras")
    out = tmp_path / "cli.onnx"
    code = main([str(lone / "weights.keras"), "-o", str(out), "--config", str(run_dir / "config.json")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "parity" in printed and "argmax agreement 100.0%" in printed and "generated rows" in printed
    x = around_mean(config, 3, np.random.default_rng(5))
    np.testing.assert_allclose(load_model(out).predict(x), keras_reference(keras_model, config, x), atol=TOLERANCE)


def test_cli_help_shows_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "default: 15" in text and "--quantize" in text and "--config" in text


def test_cli_reports_user_errors_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main([str(tmp_path / "missing"), "-o", str(tmp_path / "x.onnx")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("ser-export: error: ") and err.count("\n") == 1 and "not found" in err
    assert not (tmp_path / "x.onnx").exists()


# ---------------------------------------------------------------- bad input


def test_missing_source(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found: pass a run directory made by ser-train"):
        export_model(tmp_path / "nope", tmp_path / "out.onnx")


def test_run_dir_without_config(vector_run: Any, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(vector_run[0] / "model.keras", run / "model.keras")
    with pytest.raises(
        UserError,
        match=r"has no config\.json: pass a run directory made by ser-train, "
        r"or a \.keras file with --config",
    ):
        export_model(run, tmp_path / "out.onnx")
    with pytest.raises(UserError, match=r"no config\.json for .*--config"):
        export_model(run / "model.keras", tmp_path / "out.onnx")


def test_run_dir_without_model(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(UserError, match=r"has no model\.keras"):
        export_model(tmp_path, tmp_path / "out.onnx")


@pytest.mark.parametrize("kind", ["text", "zip", "suffix"])
def test_not_a_keras_model(kind: str, tmp_path: Path, vector_run: Any) -> None:
    config = vector_run[2]
    if kind == "text":
        source = tmp_path / "model.keras"
        source.write_text("not a model")
    elif kind == "zip":
        source = tmp_path / "model.keras"
        with zipfile.ZipFile(source, "w") as archive:
            archive.writestr("hello.txt", "a zip, but not a Keras model")
    else:
        source = tmp_path / "model.txt"
        source.write_text("x")
    with pytest.raises(UserError, match="is not a Keras model") as err:
        export_model(source, tmp_path / "out.onnx", config=config)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out.onnx").exists()


def test_unwritable_destination(vector_run: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("I am a file, not a directory")
    with pytest.raises(UserError, match=r"cannot write .*does not exist"):
        export_model(vector_run[0], blocker / "out.onnx")
    with pytest.raises(UserError, match="is a directory"):
        (tmp_path / "dir.onnx").mkdir()
        export_model(vector_run[0], tmp_path / "dir.onnx")
    with pytest.raises(UserError, match=r"must end in \.onnx"):
        export_model(vector_run[0], tmp_path / "out.bin")


@pytest.mark.parametrize("opset", [21, 12])
def test_unsupported_opset(vector_run: Any, tmp_path: Path, opset: int) -> None:
    with pytest.raises(UserError, match=rf"opset {opset} is not supported by tf2onnx 1\.[\d.]+; use 13–18"):
        export_model(vector_run[0], tmp_path / "out.onnx", opset=opset)


def test_cli_unsupported_opset_exit_code(vector_run: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(vector_run[0]), "-o", str(tmp_path / "o.onnx"), "--opset", "21"]) == 2
    assert "opset 21 is not supported" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda c: c.pop("labels"), "lacks labels"),
        (lambda c: c.update(labels=LABELS[:3]), "7 outputs but config.json lists 3 labels"),
        (
            lambda c: c.update(feature_shape=[162], normalization={"mean": [0.0] * 162, "std": [1.0] * 162}),
            r"takes input \(180, 1\) but feature_shape \[162\] gives \(162, 1\)",
        ),
        (lambda c: c["normalization"].update(mean=[0.0] * 7), "has 7 values"),
        (lambda c: c["normalization"].update(std=[0.0] * 180), "zero or negative"),
        (lambda c: c.update(hop_s=-1), "hop_s must be a positive number"),
    ],
)
def test_inconsistent_config(vector_run: Any, tmp_path: Path, change: Any, expected: str) -> None:
    config = json.loads(json.dumps(vector_run[2]))
    change(config)
    with pytest.raises(UserError, match=expected):
        export_model(vector_run[0], tmp_path / "out.onnx", config=config)
    assert not (tmp_path / "out.onnx").exists()


def test_model_without_softmax_is_refused(keras: Any, tmp_path: Path) -> None:
    config = make_config(VECTOR_SHAPE, per_last_axis=True)
    run = write_run(tmp_path / "run", build_model(keras, VECTOR_SHAPE, softmax=False), config)
    with pytest.raises(ExportError, match="not probabilities"):
        export_model(run, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


# ---------------------------------------------------------------- parity failure and atomic writes


def _only_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_parity_failure_writes_nothing(
    vector_run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = ox._onnx_predict
    monkeypatch.setattr(ox, "_onnx_predict", lambda data, x, head=False: (real(data, x, head)[0] + 1e-3, None))
    out = tmp_path / "out.onnx"
    with pytest.raises(ExportError, match=r"parity check failed: max \|Keras - ONNX\| 0\.001") as err:
        export_model(vector_run[0], out)
    assert err.value.exit_code == 1
    assert _only_files(tmp_path) == []
    assert main([str(vector_run[0]), "-o", str(out)]) == 1
    assert "parity check failed" in capsys.readouterr().err
    assert _only_files(tmp_path) == []


def test_failed_write_keeps_the_old_file(vector_run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "model.onnx"
    out.write_bytes(b"old model")

    def half_then_fail(path: Path, data: bytes) -> None:
        path.write_bytes(data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ox, "_write_bytes", half_then_fail)
    with pytest.raises(UserError, match=r"cannot write .*No space left on device"):
        export_model(vector_run[0], out)
    assert out.read_bytes() == b"old model"
    assert _only_files(tmp_path) == ["model.onnx"]


def test_failed_quantisation_keeps_both_old_files(
    vector_run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "model.onnx"
    out.write_bytes(b"old float")
    int8_path(out).write_bytes(b"old int8")

    def partial_quantize(float_path: Path, int8_file: Path) -> None:
        assert float_path.stat().st_size > 0  # the new float model is already written, under a temp name
        int8_file.write_bytes(b"partial")
        raise RuntimeError("simulated crash during quantisation")

    monkeypatch.setattr(ox, "_quantize", partial_quantize)
    with pytest.raises(ExportError, match=r"int8 quantisation failed .*simulated crash"):
        export_model(vector_run[0], out, quantize="int8")
    assert out.read_bytes() == b"old float"
    assert int8_path(out).read_bytes() == b"old int8"
    assert _only_files(tmp_path) == ["model.int8.onnx", "model.onnx"]


def test_successful_export_replaces_the_old_file_and_keeps_its_mode(vector_run: Any, tmp_path: Path) -> None:
    out = tmp_path / "model.onnx"
    out.write_bytes(b"old model")
    out.chmod(0o640)
    export_model(vector_run[0], out)
    assert out.read_bytes() != b"old model" and load_model(out).info.labels == tuple(LABELS)
    assert out.stat().st_mode & 0o777 == 0o640
    assert _only_files(tmp_path) == ["model.onnx"]


@pytest.mark.parametrize(("agreement", "warned"), [(0.238, True), (0.992, False)])
def test_report_warns_when_int8_disagrees(agreement: float, warned: bool) -> None:
    from types import SimpleNamespace

    from ser_live.export.cli import format_report

    parity = SimpleNamespace(rows=256, source="val_features.npy", max_abs_diff=1e-7, argmax_agreement=1.0)
    q = SimpleNamespace(
        path="m.int8.onnx", size_bytes=100, parity=SimpleNamespace(max_abs_diff=0.8, argmax_agreement=agreement),
        embedding_max_rel_diff=0.01,
    )
    report = SimpleNamespace(
        source="run", output="m.onnx", size_bytes=400, opset=15, labels=("a", "b"), feature_shape=(3,),
        seconds=1.0, parity=parity, quantized=q, embedding_size=8, embedding_max_rel_diff=1e-6,
    )
    text = format_report(report)  # type: ignore[arg-type]
    assert ("do not use it" in text) is warned
    assert f"argmax agreement {100 * agreement:.1f}%" in text
