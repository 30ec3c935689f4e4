"""The Python API: ``from ser_live import EmotionRecognizer`` — predict, predict_file and stream on one engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser_live.realtime.api import EmotionRecognizer
from ser_live.realtime.config import EngineConfig
from ser_live.realtime.engine import Engine
from ser_live.realtime.errors import UserError
from ser_live.realtime.events import WindowEvent
from ser_live.realtime.model import load_model
from tests.audio_fixtures import SpeechClip, convert, speech_clip
from tests.tiny_model import TINY_LABELS, make_tiny_model

PROB_ATOL = 1e-4


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> SpeechClip:
    return speech_clip(tmp_path_factory.mktemp("speech"), lead_s=1.0, tail_s=1.0)


@pytest.fixture(scope="module")
def recognizer(model_path: Path) -> EmotionRecognizer:
    return EmotionRecognizer(model_path, provider="cpu")


def vector(probs: dict[str, float]) -> np.ndarray:
    return np.array([probs[label] for label in TINY_LABELS])


def test_import_from_the_package_and_labels(recognizer: EmotionRecognizer) -> None:
    import ser_live

    assert ser_live.EmotionRecognizer is EmotionRecognizer
    assert isinstance(recognizer, EmotionRecognizer)
    assert recognizer.labels == TINY_LABELS
    assert recognizer.sample_rate == 16000
    with pytest.raises(AttributeError):
        ser_live.NoSuchThing  # noqa: B018


def test_predict_aggregates_the_speech_windows(recognizer: EmotionRecognizer, clip: SpeechClip) -> None:
    result = recognizer.predict(clip.samples, clip.sample_rate)
    assert result.label in TINY_LABELS
    assert result.speech_detected
    assert set(result.probs) == set(TINY_LABELS)
    assert sum(result.probs.values()) == pytest.approx(1.0, abs=1e-5)
    assert result.label == max(result.probs, key=result.probs.get)
    assert result.confidence == result.probs[result.label]
    assert len(result.windows) >= 2
    mean = np.mean([vector(w.raw_probs) for w in result.windows], axis=0)
    np.testing.assert_allclose(vector(result.probs), mean, atol=1e-6)
    # the same as the events of a plain engine run over the clip
    engine = Engine(recognizer.model, clip.sample_rate)
    events = engine.feed(clip.samples) + engine.flush()
    assert [(w.start_s, w.end_s) for w in result.windows] == [(e.start_s, e.end_s) for e in events]


def test_predict_is_the_same_for_any_block_size_and_sample_format(
    recognizer: EmotionRecognizer, clip: SpeechClip
) -> None:
    ref = recognizer.predict(clip.samples, clip.sample_rate)
    for block_s in (0.01, 1.0, 100.0):
        other = recognizer.predict(clip.samples, clip.sample_rate, block_s=block_s)
        np.testing.assert_allclose(vector(other.probs), vector(ref.probs), atol=PROB_ATOL)
    pcm = recognizer.predict(np.round(clip.samples * 32767).astype(np.int16), clip.sample_rate)
    np.testing.assert_allclose(vector(pcm.probs), vector(ref.probs), atol=1e-3)
    stereo48 = recognizer.predict(convert(clip.samples, clip.sample_rate, 48000, 2), 48000)
    assert stereo48.label is not None
    assert abs(len(stereo48.windows) - len(ref.windows)) <= 2


def test_predict_file_equals_predict_on_its_samples(
    recognizer: EmotionRecognizer, clip: SpeechClip, tmp_path: Path
) -> None:
    path = tmp_path / "speech.wav"
    sf.write(path, clip.samples, clip.sample_rate, subtype="FLOAT")
    from_file = recognizer.predict_file(path)
    from_samples = recognizer.predict(clip.samples, clip.sample_rate)
    assert from_file.label == from_samples.label
    np.testing.assert_allclose(vector(from_file.probs), vector(from_samples.probs), atol=PROB_ATOL)
    assert recognizer.predict_file(str(path)).label == from_file.label  # str paths too


def test_stream_yields_window_events_as_chunks_arrive(recognizer: EmotionRecognizer, clip: SpeechClip) -> None:
    block = int(0.03 * clip.sample_rate)
    fed = 0

    def chunks() -> Iterator[np.ndarray]:
        nonlocal fed
        for i in range(0, len(clip.samples), block):
            fed = i + block
            yield clip.samples[i : i + block]

    seen_at: list[int] = []
    events: list[WindowEvent] = []
    for event in recognizer.stream(chunks(), clip.sample_rate):
        assert isinstance(event, WindowEvent)
        seen_at.append(fed)
        events.append(event)
    assert len(events) == len(recognizer.predict(clip.samples, clip.sample_rate).windows)
    # events come out while the audio is still arriving, not all at the end
    assert seen_at[0] < len(clip.samples)
    assert all(sum(e.probs.values()) == pytest.approx(1.0, abs=1e-4) for e in events)


def test_no_speech_gives_label_none(recognizer: EmotionRecognizer, tmp_path: Path) -> None:
    silence = np.zeros(3 * 16000, np.float32)
    result = recognizer.predict(silence, 16000)
    assert result.label is None and result.probs == {} and result.windows == []
    assert not result.speech_detected and result.confidence == 0.0
    assert list(recognizer.stream([silence], 16000)) == []
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(800, np.float32), 16000)  # 50 ms
    assert recognizer.predict_file(short).label is None


def test_constructor_options(model_path: Path, clip: SpeechClip) -> None:
    loaded = load_model(model_path, provider="cpu")
    rec = EmotionRecognizer(loaded)
    assert rec.model is loaded
    off = EmotionRecognizer(model_path, provider="cpu", config=EngineConfig(smoothing_alpha=1.0))
    events = list(off.stream([clip.samples], clip.sample_rate))
    assert events and all(e.probs == e.raw_probs for e in events)
    with pytest.raises(UserError, match="not found"):
        EmotionRecognizer(model_path.parent / "missing.onnx")
    with pytest.raises(UserError, match="provider"):
        EmotionRecognizer(model_path, provider="tpu")


def test_bad_input_raises_user_errors(recognizer: EmotionRecognizer, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="sample_rate"):
        recognizer.predict(np.zeros(100, np.float32), 0)
    with pytest.raises(UserError, match="sample_rate"):
        recognizer.predict(np.zeros(100, np.float32), 16000.5)
    with pytest.raises(UserError, match="NaN"):
        recognizer.predict(np.array([0.0, np.nan] * 100, np.float32), 16000)
    with pytest.raises(UserError, match="does not exist"):
        recognizer.predict_file(tmp_path / "nope.wav")
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all\n" * 20)
    with pytest.raises(UserError, match="not an audio file"):
        recognizer.predict_file(text)
