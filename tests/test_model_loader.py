"""ser_live.realtime.model: loading ser-live ONNX files, their metadata, providers and predict (no TensorFlow here).

The models are tiny ONNX graphs built with onnx.helper in the tests: standardise -> MatMul -> Softmax.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import ser_live.realtime.model as rm
from ser_live.realtime.errors import UserError
from ser_live.realtime.model import FORMAT_VERSION, ModelInfo, load_model
from ser_live.realtime.stages.features import PRESETS, FeaturePreset

LABELS = ["angry", "happy", "neutral"]
VECTOR_SHAPE = (6,)
FRAMES_SHAPE = (5, 4)
OPSET = 15
IR_VERSION = 8
ROOT = Path(__file__).resolve().parents[1]


def make_weights(feature_shape: tuple[int, ...], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    size = math.prod(feature_shape)
    return {
        "mean": rng.normal(size=feature_shape).astype(np.float32),
        "std": (rng.random(feature_shape) + 0.5).astype(np.float32),
        "w": rng.normal(size=(size, len(LABELS))).astype(np.float32),
        "b": rng.normal(size=len(LABELS)).astype(np.float32),
    }


def reference(x: np.ndarray, weights: dict[str, np.ndarray]) -> np.ndarray:
    z = ((x - weights["mean"]) / weights["std"]).reshape(len(x), -1) @ weights["w"] + weights["b"]
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def metadata(feature_shape: tuple[int, ...], **overrides: Any) -> dict[str, Any]:
    preset = PRESETS["seed180"] if len(feature_shape) == 1 else PRESETS["logmel"]
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "labels": LABELS,
        "preset": preset.to_dict(),
        "sample_rate": 16000,
        "window_s": 2.048,
        "hop_s": 0.512,
        "min_speech_s": 0.5,
        "feature_shape": list(feature_shape),
        "normalization": {"mean": [0.0], "std": [1.0]},
        "recipe": "seed180",
        "data": {"corpora": ["synthetic"], "clips": 3},
        "metrics": {"accuracy": 0.5, "split": "speaker"},
        "project_version": "0.1.0",
        "created": "2026-01-01T00:00:00+00:00",
    }
    meta.update(overrides)
    return meta


def write_model(
    path: Path,
    feature_shape: tuple[int, ...] = VECTOR_SHAPE,
    meta: Any = "default",
    input_name: str = "features",
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Write a tiny ser-live-shaped ONNX model; ``meta=None`` writes no metadata, a str other than default raw."""
    weights = make_weights(feature_shape, seed)
    size = math.prod(feature_shape)
    nodes = [
        helper.make_node("Sub", [input_name, "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "std"], ["scaled"]),
        helper.make_node("Reshape", ["scaled", "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["logits0"]),
        helper.make_node("Add", ["logits0", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    inits = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    inits.append(numpy_helper.from_array(np.array([-1, size], dtype=np.int64), "flat_shape"))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", *feature_shape])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", len(LABELS)])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    if meta is not None:
        value = (
            json.dumps(metadata(feature_shape))
            if meta == "default"
            else (meta if isinstance(meta, str) else json.dumps(meta))
        )
        helper.set_model_props(model, {"ser_live": value})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return weights


@pytest.fixture()
def vector_model(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    path = tmp_path / "tiny.onnx"
    return path, write_model(path)


@pytest.fixture()
def cpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rm.ort, "get_available_providers", lambda: ["CPUExecutionProvider"])


def test_predict_matches_reference_for_batches_single_rows_and_dtypes(vector_model: Any) -> None:
    path, weights = vector_model
    model = load_model(path, provider="cpu")
    x = np.random.default_rng(1).normal(size=(5, *VECTOR_SHAPE))
    probs = model.predict(x)  # float64 in: cast inside
    assert probs.dtype == np.float32 and probs.shape == (5, len(LABELS))
    np.testing.assert_allclose(probs, reference(x, weights), atol=1e-5)
    single = model.predict(x[2])
    assert single.shape == (len(LABELS),)
    np.testing.assert_allclose(single, probs[2], atol=1e-6)
    assert model.predict(np.zeros((0, *VECTOR_SHAPE))).shape == (0, len(LABELS))
    assert model.provider == "CPUExecutionProvider"
    assert model.name == "tiny" and model.path == path
    assert model.labels == tuple(LABELS)


def test_large_batches_are_split_without_changing_results(vector_model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    path, weights = vector_model
    model = load_model(path)
    monkeypatch.setattr(rm, "MAX_BATCH_ROWS", 4)
    calls: list[int] = []
    real_run = model._session.run

    def counting_run(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real_run(*args, **kwargs)

    monkeypatch.setattr(model, "_session", type("S", (), {"run": staticmethod(counting_run)})())
    x = np.random.default_rng(2).normal(size=(10, *VECTOR_SHAPE)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x), reference(x, weights), atol=1e-5)
    assert len(calls) == 3


def test_frames_model_predicts_and_rejects_wrong_shapes(tmp_path: Path) -> None:
    path = tmp_path / "frames.onnx"
    weights = write_model(path, FRAMES_SHAPE)
    model = load_model(path)
    assert model.info.feature_shape == FRAMES_SHAPE
    x = np.random.default_rng(3).normal(size=(3, *FRAMES_SHAPE)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x), reference(x, weights), atol=1e-5)
    for bad in (np.zeros((3, 4, 5)), np.zeros((3, 20)), np.zeros(FRAMES_SHAPE[1])):
        with pytest.raises(UserError, match=r"expects \(batch, 5, 4\)"):
            model.predict(bad)


def test_metadata_round_trips_into_model_info(vector_model: Any) -> None:
    path, _ = vector_model
    info = load_model(path).info
    expected = metadata(VECTOR_SHAPE)
    assert isinstance(info, ModelInfo)
    assert info.labels == tuple(LABELS) and info.n_labels == len(LABELS)
    assert info.preset_config == expected["preset"]
    assert info.preset == PRESETS["seed180"] and isinstance(info.preset, FeaturePreset)
    assert info.preset_name == "seed180"
    assert (info.sample_rate, info.window_s, info.hop_s, info.min_speech_s) == (16000, 2.048, 0.512, 0.5)
    assert info.feature_shape == VECTOR_SHAPE
    assert info.recipe == "seed180"
    assert info.metrics == {"accuracy": 0.5, "split": "speaker"}
    assert info.data == expected["data"]
    assert info.normalization == expected["normalization"]
    assert info.format_version == FORMAT_VERSION
    assert info.project_version == "0.1.0" and info.created == expected["created"]
    assert info.raw == expected
    assert hash(info) == hash(load_model(path).info)  # usable as a dict key despite the mapping fields
    with pytest.raises(AttributeError):
        info.recipe = "other"  # type: ignore[misc]  # frozen


def test_bundled_model_is_used_when_no_path_is_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = write_model(tmp_path / "default.onnx")
    monkeypatch.setattr(rm.resources, "files", lambda package: tmp_path if package == rm.BUNDLED_PACKAGE else None)
    model = load_model()
    assert model.path == tmp_path / "default.onnx" and model.name == "default"
    x = np.ones((2, *VECTOR_SHAPE), dtype=np.float32)
    np.testing.assert_allclose(model.predict(x), reference(x, weights), atol=1e-5)


def test_missing_bundled_model_says_how_to_make_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rm.resources, "files", lambda package: tmp_path)
    with pytest.raises(UserError) as err:
        load_model()
    assert str(err.value) == rm.NO_BUNDLED_MODEL_MESSAGE
    assert "ser-train" in str(err.value) and "ser-export" in str(err.value) and "--model" in str(err.value)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"this is not a model\n", "is not an ONNX model"),
        (b"", "is not an ONNX model"),
        (b"\x08\x07\x12\x04junk" * 10, "is not an ONNX model"),
    ],
)
def test_non_onnx_files_are_rejected_in_one_line(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(UserError, match=expected) as err:
        load_model(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_missing_path_and_directory(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        load_model(tmp_path / "nope.onnx")
    with pytest.raises(UserError, match="is a directory"):
        load_model(tmp_path)


def test_onnx_without_ser_live_metadata(tmp_path: Path) -> None:
    path = tmp_path / "plain.onnx"
    write_model(path, meta=None)
    with pytest.raises(UserError, match=r"is an ONNX model but not a ser-live model .*ser-export"):
        load_model(path)


def test_future_format_version_asks_for_an_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "future.onnx"
    write_model(path, meta=metadata(VECTOR_SHAPE, format_version=FORMAT_VERSION + 1, labels=None))
    with pytest.raises(UserError, match=r"newer ser-live.*upgrade"):
        load_model(path)


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        (metadata(VECTOR_SHAPE, format_version="1"), "format_version"),
        ({k: v for k, v in metadata(VECTOR_SHAPE).items() if k != "labels"}, "lacks labels"),
        (metadata(VECTOR_SHAPE, labels=["a", "a", "b"]), "distinct"),
        (metadata(VECTOR_SHAPE, hop_s=0), "positive"),
        ({**metadata(VECTOR_SHAPE), "feature_shape": [7]}, "differs from the graph input"),
        (metadata(VECTOR_SHAPE, preset={"name": "x", "kind": "mean", "colour": 1}), "unknown fields"),
        (metadata(VECTOR_SHAPE, preset={"name": "x", "kind": "weird"}), "kind"),
    ],
)
def test_broken_metadata_is_reported(tmp_path: Path, meta: Any, expected: str) -> None:
    path = tmp_path / "broken.onnx"
    write_model(path, meta=meta)
    with pytest.raises(UserError, match=expected) as err:
        load_model(path)
    assert str(path) in str(err.value)


def test_wrong_input_name_is_not_a_ser_live_graph(tmp_path: Path) -> None:
    path = tmp_path / "renamed.onnx"
    write_model(path, input_name="x")
    with pytest.raises(UserError, match="not 'features' -> 'probs'"):
        load_model(path)


def test_cuda_without_cuda_names_the_package(vector_model: Any, cpu_only: None) -> None:
    with pytest.raises(UserError, match=r"pip install onnxruntime-gpu") as err:
        load_model(vector_model[0], provider="cuda")
    assert "--provider cpu" in str(err.value)


def test_auto_provider_uses_cpu_without_cuda(vector_model: Any, cpu_only: None) -> None:
    assert load_model(vector_model[0], provider="auto").provider == "CPUExecutionProvider"
    assert load_model(vector_model[0], provider="CPU").provider == "CPUExecutionProvider"


def test_provider_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rm.ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert rm.resolve_providers("auto") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert rm.resolve_providers("cuda") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert rm.resolve_providers("cpu") == ["CPUExecutionProvider"]
    monkeypatch.setattr(rm.ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert rm.resolve_providers("auto") == ["CPUExecutionProvider"]
    with pytest.raises(UserError, match="unknown provider 'tpu'"):
        rm.resolve_providers("tpu")


def test_cuda_listed_but_not_starting(
    vector_model: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """onnxruntime falls back to CPU when CUDA fails to start: an explicit cuda says so, auto warns and runs."""
    monkeypatch.setattr(rm, "resolve_providers", lambda provider: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(rm.ort, "InferenceSession", _cpu_session_factory(rm.ort.InferenceSession))
    with pytest.raises(UserError, match="could not start"):
        load_model(vector_model[0], provider="cuda")
    model = load_model(vector_model[0], provider="auto")
    assert model.provider == "CPUExecutionProvider"
    assert "CUDA provider could not start" in caplog.text


def _cpu_session_factory(real: Any) -> Any:
    def make(path: str, sess_options: Any = None, providers: Any = None) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return real(path, sess_options=sess_options, providers=["CPUExecutionProvider"])

    return make


def test_session_options_follow_the_contract() -> None:
    options = rm.session_options(3)
    assert options.intra_op_num_threads == 3
    assert options.inter_op_num_threads == 1
    assert options.execution_mode == rm.ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.log_severity_level == rm.ORT_LOG_SEVERITY


@pytest.mark.parametrize("threads", [0, -1, 1.5, True])
def test_bad_thread_counts(vector_model: Any, threads: Any) -> None:
    with pytest.raises(UserError, match="threads"):
        load_model(vector_model[0], threads=threads)


def test_two_threads_give_the_same_answer(vector_model: Any) -> None:
    path, weights = vector_model
    x = np.random.default_rng(4).normal(size=(4, *VECTOR_SHAPE)).astype(np.float32)
    np.testing.assert_allclose(load_model(path, threads=2).predict(x), reference(x, weights), atol=1e-5)


def test_model_module_imports_no_heavy_libraries() -> None:
    code = (
        "import sys, ser_live.realtime.model; "
        "heavy = {'tensorflow', 'keras', 'tf2onnx', 'librosa', 'scipy', 'onnx'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
