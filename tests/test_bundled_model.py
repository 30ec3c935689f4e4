"""Regression test for the shipped model: it loads from package data, has what its card claims, its outputs on
fixed synthetic input do not drift (a change of model, features or runtime that moves them fails here), and its
verdict on a synthesised utterance does not follow the input level."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ser_live import EmotionRecognizer
from ser_live.realtime.model import bundled_model_path, load_model
from ser_live.realtime.stages.features import FeatureExtractor
from ser_live.realtime.stages.normalize import InputNormalizer
from ser_live.realtime.stages.pipeline import PipelineConfig
from tests.audio_fixtures import have_espeak, speech_clip

CARD = Path(__file__).resolve().parents[1] / "ser_live" / "models" / "README.md"
CLAIMED_LABELS = ("angry", "disgust", "fearful", "happy", "neutral", "sad", "surprised")
CLAIMED_PRESET = "logmel_wide"
CLAIMED_RECIPE = "logmel_cnn"
CLAIMED_INPUT_NORM = "window"
# Probabilities of the bundled default.onnx (the graph's softmax, after the input normalisation) for the three
# synthetic windows below (rounded to 1e-4).
EXPECTED = np.array(
    [
        [0.0097, 0.0182, 0.1284, 0.0193, 0.5944, 0.2082, 0.0218],
        [0.1202, 0.0289, 0.1806, 0.1508, 0.2121, 0.2693, 0.0381],
        [0.0228, 0.0070, 0.0694, 0.6978, 0.0166, 0.1798, 0.0067],
    ]
)
N_PARTS = 3  # v6: the logit mean of v5's recipe trained with seeds 42, 43 and 44
EMBEDDING_SIZE = 64 * N_PARTS  # each part's 64-value head_dense layer, side by side
TOLERANCE = 2e-4  # float32 differences between CPUs / ONNX Runtime builds; a retrained model moves far more
INT8_TOLERANCE = 0.06
LEVELS_DBFS = (-30.0, -20.0, -10.0)  # peak level of the utterance
LEVEL_TOLERANCE = 0.01  # largest change of any clip probability between those levels (v1 moved by 0.28)
UTTERANCE = "I can't believe you did that, it is really not what we agreed on at all."


def _synthetic_windows(sample_rate: int, n: int) -> list[np.ndarray]:
    """Three voiced-like windows: harmonics of a vibrato pitch at 110/220/330 Hz, amplitude-modulated."""
    t = np.arange(n) / sample_rate
    out = []
    for f0, am in [(110, 2.0), (220, 4.0), (330, 6.0)]:
        phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.05 * np.sin(2 * np.pi * 1.5 * t))) / sample_rate
        y = sum(np.sin(k * phase) / k for k in range(1, 10)) * (0.5 + 0.5 * np.sin(2 * np.pi * am * t) ** 2)
        out.append((0.2 * y / np.abs(y).max()).astype(np.float32))
    return out


def _model_input(model: object, windows: list[np.ndarray]) -> np.ndarray:
    """The windows' features as the engine hands them to the model: features, then the input normalisation."""
    info = model.info  # type: ignore[attr-defined]
    extractor = FeatureExtractor(info.preset)
    norm = InputNormalizer(info.input_norm, info.preset.n_mels, info.hop_s, info.preset.floor_db)
    return np.stack([norm.process(extractor.window_features(w)) for w in windows])


def test_bundled_model_is_package_data_and_matches_its_card() -> None:
    path = bundled_model_path()
    assert path.name == "default.onnx" and path.is_file()
    info = load_model(None).info
    assert info.labels == CLAIMED_LABELS
    assert info.preset.name == CLAIMED_PRESET
    assert info.recipe == CLAIMED_RECIPE
    assert info.input_norm.mode == CLAIMED_INPUT_NORM
    # ser-calibrate fitted a temperature on the validation actors; it is reported, not applied (it made the
    # confidence worse on a corpus the model never heard: the model card). The uncertain threshold is the rule's
    # (ser-calibrate: the kept validation windows of each corpus right >= 60 %), which the card states
    fitted = info.calibration.raw["temperature_fitted"]
    assert info.calibration.temperature == 1.0 and fitted != 1.0
    assert 0.0 < info.calibration.min_confidence < 1.0
    assert info.affect is not None and info.affect.method == "lexicon"
    # model v6 (issue 19): three seeds of v5's recipe (every corpus, all of TESS, 20 epochs), their logits averaged
    assert set(info.data["per_corpus"]) == {"ravdess", "tess", "ased"}
    parts = info.raw["ensemble"]["parts"]
    assert len(parts) == N_PARTS and all(len(p["sha256"]) == 64 for p in parts)
    assert [p["weight"] for p in parts] == pytest.approx([1 / N_PARTS] * N_PARTS)
    assert len({p["sha256"] for p in parts}) == N_PARTS  # three trainings, not one file three times
    # ser-train's own test of each part (the same held-out speakers), which the card quotes
    own_tests = [f"{100 * p['uar']:.1f} %" for p in parts if p["split"] == "speaker"]
    assert len(own_tests) == N_PARTS
    card = CARD.read_text(encoding="utf-8")
    for claim in (*CLAIMED_LABELS, CLAIMED_PRESET, CLAIMED_RECIPE, "CC BY-NC-SA 4.0", "CC BY-NC-ND 4.0", "NRC VAD",
                  f"{fitted:.3f}", f"{info.calibration.min_confidence:g}", *own_tests):
        assert claim in card, f"model card does not mention {claim!r}"
    assert info.metrics["split"] == "speaker"


def test_bundled_model_outputs_are_stable() -> None:
    model = load_model(None)
    info = model.info
    cfg = PipelineConfig(preset=info.preset, window_s=info.window_s, hop_s=info.hop_s)
    probs = model.predict(_model_input(model, _synthetic_windows(info.sample_rate, cfg.window_samples)))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probs, EXPECTED, atol=TOLERANCE)


@pytest.mark.parametrize("name", ["default.int8.onnx"])
def test_int8_variant_loads_and_agrees(name: str) -> None:
    path = bundled_model_path().with_name(name)
    full, small = load_model(None), load_model(path)
    assert small.info.labels == full.info.labels
    assert small.info.calibration == full.info.calibration and small.info.input_norm == full.info.input_norm
    cfg = PipelineConfig(preset=full.info.preset, window_s=full.info.window_s, hop_s=full.info.hop_s)
    feats = _model_input(full, _synthetic_windows(16_000, cfg.window_samples))
    np.testing.assert_allclose(small.predict(feats), full.predict(feats), atol=INT8_TOLERANCE)


@pytest.mark.skipif(not have_espeak(), reason="needs espeak-ng (installed by .ci/run)")
def test_verdict_does_not_follow_the_input_level(tmp_path: Path) -> None:
    """The same synthesised utterance at -30, -20 and -10 dBFS peak: the clip probabilities agree within
    LEVEL_TOLERANCE (the shipped model references each window to its own speech level; v1 read level as emotion)."""
    clip = speech_clip(tmp_path, UTTERANCE)
    rec = EmotionRecognizer()
    peak = float(np.abs(clip.samples).max())
    results = {db: rec.predict((clip.samples * (10 ** (db / 20) / peak)).astype(np.float32), clip.sample_rate)
               for db in LEVELS_DBFS}
    for db, result in results.items():
        assert result.speech_detected and len(result.windows) >= 3, db
    ref = results[LEVELS_DBFS[1]]
    for db, result in results.items():
        diff = max(abs(result.probs[k] - ref.probs[k]) for k in CLAIMED_LABELS)
        assert diff <= LEVEL_TOLERANCE, f"{db} dBFS moves a probability by {diff:.3f}"
        assert result.label == ref.label
        assert result.arousal == pytest.approx(ref.arousal, abs=LEVEL_TOLERANCE)


def test_demo_runs_through_the_bundled_model() -> None:
    demo = bundled_model_path().with_name("demo.wav")
    result = EmotionRecognizer().predict_file(demo)
    assert result.speech_detected and len(result.windows) >= 10
    assert result.label in CLAIMED_LABELS
    assert result.arousal is not None and -1.0 <= result.arousal <= 1.0


def test_bundled_models_carry_the_embedding_and_their_last_layer() -> None:
    """Both shipped files can be personalised: the ``embedding`` output (3 x 64 values) and, in the metadata, the last
    layer it feeds, which rebuilds the float graph's probabilities; the outputs above are unchanged by it."""
    from ser_live.realtime.profile import softmax

    model = load_model(None)
    int8 = load_model(bundled_model_path().with_name("default.int8.onnx"))
    cfg = PipelineConfig(preset=model.info.preset, window_s=model.info.window_s, hop_s=model.info.hop_s)
    x = _model_input(model, _synthetic_windows(model.info.sample_rate, cfg.window_samples))
    for m in (model, int8):
        assert m.can_personalise and m.info.embedding is not None and m.info.embedding.size == EMBEDDING_SIZE
        assert m.info.embedding.weights.shape == (EMBEDDING_SIZE, len(CLAIMED_LABELS))
    rebuilt = softmax(model.embed(x).astype(np.float64) @ model.info.embedding.weights + model.info.embedding.bias)
    np.testing.assert_allclose(rebuilt, model.predict(x), atol=1e-5)
    np.testing.assert_allclose(int8.embed(x), model.embed(x), atol=0.1 * float(np.abs(model.embed(x)).max()))
