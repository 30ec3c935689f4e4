"""Arousal/valence mapping, temperature calibration and the uncertain state (realtime/stages/affect.py, engine, API)."""

from __future__ import annotations

import numpy as np
import pytest

from ser_live.realtime.api import EmotionRecognizer
from ser_live.realtime.config import EngineConfig
from ser_live.realtime.engine import Engine
from ser_live.realtime.errors import UserError
from ser_live.realtime.model import load_model
from ser_live.realtime.stages.affect import NRC_VAD_2018, AffectMap, Calibration, lexicon_coordinates, temper
from ser_live.realtime.stages.smoothing import Smoother, SmoothingConfig
from tests.audio_fixtures import voiced_tone
from tests.tiny_model import TINY_LABELS, make_tiny_model, tiny_affect_reference

SR = 16000


def speechlike(duration_s: float, sample_rate: int) -> np.ndarray:
    return voiced_tone(160.0, duration_s, 0.3, 4.0, seed=1, sample_rate=sample_rate)


def test_lexicon_coordinates_rescale_the_nrc_entries() -> None:
    valence, arousal = NRC_VAD_2018["anger"]
    assert lexicon_coordinates("angry") == pytest.approx((2 * arousal - 1, 2 * valence - 1))
    assert lexicon_coordinates("Happy") == lexicon_coordinates("happiness")
    assert lexicon_coordinates("boredom") is None
    # the circumplex the mapping must reproduce: anger high-arousal negative, sadness low-arousal negative,
    # happiness high-arousal positive, calm low-arousal positive
    a, v = lexicon_coordinates("angry")
    assert a > 0 > v
    a, v = lexicon_coordinates("sad")
    assert a < 0 and v < 0
    a, v = lexicon_coordinates("happy")
    assert a > 0 and v > 0
    a, v = lexicon_coordinates("calm")
    assert a < 0 < v


def test_lexicon_map_is_the_probability_weighted_mean_over_known_labels() -> None:
    amap = AffectMap.lexicon(("angry", "sad", "mystery"))
    assert amap is not None and amap.known == (True, True, False)
    out = amap(np.array([[1.0, 0.0, 0.0], [0.25, 0.25, 0.5], [0.0, 0.0, 1.0]]))
    assert out[0] == pytest.approx(lexicon_coordinates("angry"))
    mid = (np.array(lexicon_coordinates("angry")) + np.array(lexicon_coordinates("sad"))) / 2
    assert out[1] == pytest.approx(mid)  # the unknown label's mass is left out, the rest renormalised
    assert np.all(np.abs(out) <= 1.0)
    assert AffectMap.lexicon(("x", "y")) is None


def test_linear_head_from_metadata_and_bad_heads() -> None:
    labels = ("a", "b")
    head = AffectMap.for_model(labels, {"method": "linear", "weights": [[1.0, 0.0], [0.0, 1.0]], "bias": [0, 0]})
    assert head is not None and head.method == "linear"
    out = head(np.array([0.5, 0.5]))
    assert out == pytest.approx(np.tanh(np.log([0.5, 0.5])))
    assert AffectMap.for_model(labels, head.to_dict()).coords == head.coords  # round trip through metadata
    with pytest.raises(UserError, match="ser-calibrate"):
        AffectMap.for_model(labels, {"method": "linear", "weights": [[1.0, 0.0]], "bias": [0, 0]})
    with pytest.raises(UserError, match="ser-calibrate"):
        AffectMap.for_model(labels, {"method": "magic"})


def test_temperature_flattens_or_sharpens_and_keeps_the_ranking() -> None:
    p = np.array([[0.7, 0.2, 0.1]], dtype=np.float32)
    hot, cold = temper(p, 2.0), temper(p, 0.5)
    assert hot.sum() == pytest.approx(1.0) and cold.sum() == pytest.approx(1.0)
    assert hot[0, 0] < 0.7 < cold[0, 0]
    assert list(np.argsort(hot[0])) == list(np.argsort(p[0])) == list(np.argsort(cold[0]))
    assert Calibration().apply(p) is p  # T = 1: untouched
    with pytest.raises(UserError):
        Calibration(temperature=0.0)
    with pytest.raises(UserError):
        Calibration(min_confidence=1.5)


@pytest.fixture(scope="module")
def tiny_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("affect")
    plain = make_tiny_model(root / "plain.onnx", preset_name="logmel")
    calibrated = make_tiny_model(
        root / "calibrated.onnx", preset_name="logmel",
        metadata_overrides={"calibration": {"temperature": 2.0, "min_confidence": 0.99}},
    )
    head = make_tiny_model(root / "head.onnx", preset_name="logmel", affect_head=True)
    return {"plain": plain, "calibrated": calibrated, "head": head}


def test_old_model_runs_with_lexicon_dimensions_and_no_uncertain_state(tiny_paths: dict[str, object]) -> None:
    model = load_model(tiny_paths["plain"])
    assert model.info.calibration.temperature == 1.0 and model.info.calibration.min_confidence == 0.0
    engine = Engine(model, SR)
    events = engine.feed(speechlike(4.0, SR)) + engine.flush()
    assert events
    assert not any(e.uncertain for e in events)
    amap = AffectMap.lexicon(TINY_LABELS)
    for e in events:
        expect = amap(np.array([e.probs[k] for k in TINY_LABELS]))
        assert (e.arousal, e.valence) == pytest.approx(tuple(expect), abs=1e-6)
    summary = engine.summary.to_dict()
    assert summary["arousal_mean"] == pytest.approx(np.mean([e.arousal for e in events]), abs=1e-4)
    assert summary["uncertain_windows"] == 0


def test_calibrated_model_tempers_the_shown_probabilities_and_marks_uncertain_windows(
    tiny_paths: dict[str, object],
) -> None:
    plain, calibrated = load_model(tiny_paths["plain"]), load_model(tiny_paths["calibrated"])
    x = np.random.default_rng(0).normal(-40, 10, size=(3, *plain.info.feature_shape)).astype(np.float32)
    np.testing.assert_allclose(calibrated.predict(x), plain.predict(x), atol=1e-6)  # the graph's own softmax
    audio = speechlike(4.0, SR)
    reference = Engine(plain, SR, EngineConfig())
    expected = reference.feed(audio) + reference.flush()
    engine = Engine(calibrated, SR)
    events = engine.feed(audio) + engine.flush()
    assert len(events) == len(expected)
    for e, ref in zip(events, expected, strict=True):
        assert e.raw_probs == pytest.approx(ref.raw_probs, abs=1e-6)
        shown = temper(np.array([ref.probs[k] for k in TINY_LABELS]), 2.0)
        assert [e.probs[k] for k in TINY_LABELS] == pytest.approx(list(shown), abs=1e-5)
        assert (e.arousal, e.valence) == pytest.approx((ref.arousal, ref.valence), abs=1e-6)
    assert events and all(e.uncertain for e in events)  # the stored threshold 0.99 is above every window
    assert engine.summary.to_dict()["uncertain_windows"] == len(events)
    assert engine.summary.dominant is None
    off = Engine(calibrated, SR, EngineConfig(min_confidence=0.0))  # --min-confidence 0 overrides the model
    assert not any(e.uncertain for e in off.feed(audio) + off.flush())
    with pytest.raises(UserError, match="min confidence"):
        EngineConfig(min_confidence=2.0)


def test_a_clip_verdict_is_calibrated_as_its_windows_are(tiny_paths: dict[str, object]) -> None:
    """predict's probabilities are the windows' raw mean at the model's temperature (the label unchanged), and the
    clip is uncertain when that is below the threshold."""
    audio = speechlike(4.0, SR)
    plain = EmotionRecognizer(load_model(tiny_paths["plain"])).predict(audio, SR)
    calibrated = EmotionRecognizer(load_model(tiny_paths["calibrated"])).predict(audio, SR)
    mean = np.mean([[w.raw_probs[k] for k in TINY_LABELS] for w in plain.windows], axis=0)
    assert [plain.probs[k] for k in TINY_LABELS] == pytest.approx(list(mean), abs=1e-6)
    assert [calibrated.probs[k] for k in TINY_LABELS] == pytest.approx(list(temper(mean, 2.0)), abs=1e-5)
    assert calibrated.label == plain.label and calibrated.confidence < plain.confidence
    assert calibrated.uncertain and not plain.uncertain  # 0.99 is above any tempered probability


def test_prediction_carries_the_clip_dimensions(tiny_paths: dict[str, object]) -> None:
    rec = EmotionRecognizer(tiny_paths["plain"])
    pred = rec.predict(speechlike(3.0, SR), SR)
    assert pred.speech_detected and pred.arousal is not None and pred.valence is not None
    mean = np.array([pred.probs[k] for k in TINY_LABELS])
    assert (pred.arousal, pred.valence) == pytest.approx(tuple(AffectMap.lexicon(TINY_LABELS)(mean)), abs=1e-6)


def test_trained_head_values_come_from_the_graph_smoothed_like_the_probabilities(
    tiny_paths: dict[str, object],
) -> None:
    """A model with a trained affect head: each window's raw arousal/valence is the graph's output for it, the
    shown values are the engine's moving average of them (same resets as the probabilities), and a clip's are
    the mean of its windows'; the probabilities are those of the same graph without the head."""
    model, plain = load_model(tiny_paths["head"]), load_model(tiny_paths["plain"])
    assert model.has_head and model.graph_has_head and not plain.has_head
    x = np.random.default_rng(1).normal(-40, 10, size=(4, *model.info.feature_shape)).astype(np.float32)
    probs, head = model.run(x)
    np.testing.assert_allclose(probs, plain.predict(x), atol=1e-6)
    np.testing.assert_allclose(head, tiny_affect_reference(x, model.info.feature_shape), atol=1e-5)
    assert plain.run(x)[1] is None
    with pytest.raises(ValueError, match="graph"):
        model.info.affect(probs)  # a trained head cannot be read off the probabilities

    audio = speechlike(5.0, SR)
    engine = Engine(model, SR)
    events = engine.feed(audio) + engine.flush()
    assert len(events) > 2
    smoother = Smoother(SmoothingConfig(alpha=engine.config.smoothing_alpha,
                                        reset_after_s=engine.config.smoothing_reset_s))
    values = [(e.raw_arousal, e.raw_valence) for e in events]
    assert len({round(a, 4) for a, _ in values}) > 1  # the windows differ: the average is a real test
    for e in events:
        expect = smoother.process(np.array([e.raw_arousal, e.raw_valence]), e.end_s)
        assert (e.arousal, e.valence) == pytest.approx(tuple(expect), abs=1e-5)
    # the same windows in a batch (ser-batch's path) give the same values
    batched = Engine(model, SR).run_batched([audio])
    np.testing.assert_allclose([(e.raw_arousal, e.arousal, e.valence) for e in batched],
                               [(e.raw_arousal, e.arousal, e.valence) for e in events], atol=1e-5)
    pred = EmotionRecognizer(tiny_paths["head"]).predict(audio, SR)
    assert (pred.arousal, pred.valence) == pytest.approx(tuple(np.mean(values, axis=0)), abs=1e-5)


def test_metadata_naming_a_head_the_graph_lacks_is_refused(tmp_path: object) -> None:
    bad = make_tiny_model(tmp_path / "bad.onnx", metadata_overrides={"affect": {"method": "head"}})
    with pytest.raises(UserError, match="no 'affect' output: re-export"):
        load_model(bad)
