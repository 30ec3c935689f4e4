"""tests/tiny_model.py: the shared tiny model loads through realtime.model.load_model and behaves as documented."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ser_live.realtime.model import load_model
from ser_live.realtime.stages.features import FeatureExtractor, get_preset
from tests.tiny_model import TINY_LABELS, make_tiny_model, tiny_feature_shape, tiny_reference

SAMPLE_RATE = 16000


@pytest.mark.parametrize("preset_name", ["seed180", "seed162", "logmel"])
def test_loads_with_the_metadata_it_was_given(tmp_path: Path, preset_name: str) -> None:
    path = make_tiny_model(tmp_path / f"{preset_name}.onnx", preset_name=preset_name)
    model = load_model(path, provider="cpu")
    info = model.info
    assert info.labels == TINY_LABELS
    assert info.preset == get_preset(preset_name)
    assert info.sample_rate == SAMPLE_RATE
    assert (info.window_s, info.hop_s, info.min_speech_s) == (2.048, 0.512, 0.5)
    assert info.feature_shape == tiny_feature_shape(preset_name)
    assert path.stat().st_size < 64_000


def test_feature_shapes_follow_the_preset_and_window() -> None:
    assert tiny_feature_shape("seed180") == (180,)
    assert tiny_feature_shape("seed162") == (162,)
    # logmel at 16 kHz: window 2.048 s rounds to 205 hops of 160 samples = 32800 samples -> 202 frames of 512
    assert tiny_feature_shape("logmel") == (202, 64)
    assert tiny_feature_shape("logmel", window_s=1.0, hop_s=0.25) == (97, 64)


@pytest.mark.parametrize("preset_name", ["seed180", "logmel"])
def test_predictions_match_the_numpy_reference_on_real_features(tmp_path: Path, preset_name: str) -> None:
    path = make_tiny_model(tmp_path / "m.onnx", preset_name=preset_name)
    model = load_model(path, provider="cpu")
    preset = get_preset(preset_name)
    extractor = FeatureExtractor(preset)
    rng = np.random.default_rng(3)
    t = np.arange(32800) / SAMPLE_RATE
    clips = [0.3 * np.sin(2 * np.pi * f0 * t) + 0.05 * rng.normal(size=t.size) for f0 in (120.0, 300.0, 900.0)]
    feats = np.stack([extractor.window_features(c.astype(np.float32)) for c in clips])
    probs = model.predict(feats)
    np.testing.assert_allclose(probs, tiny_reference(feats, model.info.feature_shape), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    # the output depends on the input (not saturated, not constant)
    assert np.ptp(probs, axis=0).max() > 1e-3
    assert probs.max() < 0.999


def test_same_seed_same_file_other_seed_other_weights(tmp_path: Path) -> None:
    a = make_tiny_model(tmp_path / "a.onnx").read_bytes()
    b = make_tiny_model(tmp_path / "b.onnx").read_bytes()
    c = make_tiny_model(tmp_path / "c.onnx", seed=1).read_bytes()
    assert a == b
    assert a != c


def test_custom_labels_window_and_metadata_overrides(tmp_path: Path) -> None:
    path = make_tiny_model(tmp_path / "m.onnx", preset_name="logmel", labels=["calm", "happy"], window_s=1.0,
                           hop_s=0.25, min_speech_s=0.3, metadata_overrides={"recipe": "custom"})
    model = load_model(path, provider="cpu")
    assert model.labels == ("calm", "happy")
    assert model.info.recipe == "custom"
    assert model.info.min_speech_s == 0.3
    assert model.predict(np.zeros(model.info.feature_shape)).shape == (2,)


def test_removing_a_required_key_makes_a_file_the_loader_rejects(tmp_path: Path) -> None:
    from ser_live.realtime.errors import UserError

    path = make_tiny_model(tmp_path / "m.onnx", metadata_overrides={"labels": None})
    with pytest.raises(UserError, match="lacks labels"):
        load_model(path, provider="cpu")
