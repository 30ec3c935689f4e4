"""Engine: blocks of audio in, window events out (the code a file replay and a microphone both run).

Speech (espeak-ng) between stretches of silence, through a tiny ONNX model built in the test (no TensorFlow).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ser_live.realtime.config import EngineConfig
from ser_live.realtime.engine import Engine
from ser_live.realtime.errors import UserError
from ser_live.realtime.events import WindowEvent
from ser_live.realtime.model import EmotionModel, load_model
from tests.audio_fixtures import SpeechClip, convert, speech_clip
from tests.tiny_model import TINY_LABELS, make_tiny_model

CHUNKS_S = (0.001, 0.03, 1.0, None)  # None = everything in one block
FORMATS = ((16000, 1), (48000, 2), (22050, 1))
FILE_BLOCK_S = 0.03
PROB_ATOL = 1e-4
# The VAD's onset padding and hangover (the engine's defaults) widen what counts as speech.
VAD_PAD_S = 0.15
VAD_HANGOVER_S = 0.3


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> EmotionModel:
    return load_model(make_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx"), provider="cpu")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> SpeechClip:
    return speech_clip(tmp_path_factory.mktemp("speech"))


def run(engine: Engine, samples: np.ndarray, chunk_s: float | None) -> list[WindowEvent]:
    step = len(samples) if chunk_s is None else max(1, int(chunk_s * engine.input_rate))
    events: list[WindowEvent] = []
    for i in range(0, len(samples), step):
        events += engine.feed(samples[i : i + step])
    return events + engine.flush()


def probs(events: list[WindowEvent], key: str = "probs") -> np.ndarray:
    return np.array([[getattr(e, key)[label] for label in TINY_LABELS] for e in events])


def assert_same_events(got: list[WindowEvent], ref: list[WindowEvent]) -> None:
    assert [(e.start_s, e.end_s, e.speech_ratio) for e in got] == [(e.start_s, e.end_s, e.speech_ratio) for e in ref]
    np.testing.assert_allclose(probs(got, "raw_probs"), probs(ref, "raw_probs"), atol=PROB_ATOL)
    np.testing.assert_allclose(probs(got), probs(ref), atol=PROB_ATOL)
    # labels agree wherever the winner is not a near-tie
    for a, b in zip(got, ref, strict=True):
        top2 = sorted(b.probs.values())[-2:]
        if top2[1] - top2[0] > 10 * PROB_ATOL:
            assert a.label == b.label


@pytest.mark.parametrize(("rate", "channels"), FORMATS, ids=[f"{r}Hz-{c}ch" for r, c in FORMATS])
def test_events_do_not_depend_on_chunk_size(model: EmotionModel, clip: SpeechClip, rate: int, channels: int) -> None:
    samples = convert(clip.samples, clip.sample_rate, rate, channels)
    runs = {chunk: run(Engine(model, rate), samples, chunk) for chunk in CHUNKS_S}
    assert len(runs[None]) >= 3
    for chunk, events in runs.items():
        assert events, f"no events with {chunk} s chunks"
        assert_same_events(events, runs[None])


def test_speech_gives_events_inside_the_speech_and_silence_none(model: EmotionModel, clip: SpeechClip) -> None:
    engine = Engine(model, clip.sample_rate)
    events = run(engine, clip.samples, FILE_BLOCK_S)
    assert len(events) >= 3
    min_speech = model.info.min_speech_s
    speech_from, speech_to = clip.speech_start_s - VAD_PAD_S, clip.speech_end_s + VAD_HANGOVER_S
    hop = engine.hop_s
    for e in events:
        overlap = min(e.end_s, speech_to) - max(e.start_s, speech_from)
        assert overlap >= min_speech - 1e-6, f"window {e.start_s}-{e.end_s} s holds too little of the speech"
        assert e.speech_ratio > 0
        assert e.label in TINY_LABELS
        assert e.label == max(e.probs, key=e.probs.get)
        assert e.confidence == pytest.approx(e.probs[e.label])
        assert sum(e.probs.values()) == pytest.approx(1.0, abs=1e-4)
        assert sum(e.raw_probs.values()) == pytest.approx(1.0, abs=1e-4)
        assert e.end_s / hop == pytest.approx(round(e.end_s / hop)), "windows end on the hop grid"
        assert set(e.latency_ms) >= {"features", "inference", "total"}
        assert all(v >= 0 for v in e.latency_ms.values())
    # the speech is covered: windows from its start to its end
    assert events[0].end_s <= clip.speech_start_s + model.info.window_s
    assert events[-1].start_s >= clip.speech_end_s - model.info.window_s
    # and the long silences before and after give nothing
    assert events[0].end_s > clip.speech_start_s
    assert events[-1].start_s < clip.speech_end_s
    summary = engine.summary.to_dict()
    assert summary["windows"] == len(events)
    assert summary["windows_total"] > len(events)
    assert summary["audio_s"] == pytest.approx(clip.duration_s, abs=1e-3)
    assert sum(summary["counts"].values()) == len(events)
    assert sum(summary["time_per_emotion_s"].values()) == pytest.approx(len(events) * hop, abs=1e-2)


@pytest.mark.parametrize("level", [0.0, 1e-4])
def test_silence_gives_no_events(model: EmotionModel, level: float) -> None:
    rate = 16000
    samples = np.random.default_rng(1).normal(scale=level, size=8 * rate).astype(np.float32)
    engine = Engine(model, rate)
    assert run(engine, samples, FILE_BLOCK_S) == []
    assert engine.summary.windows == 0
    assert engine.summary.windows_total > 0
    assert engine.summary.dominant is None


def test_reset_gives_a_fresh_stream(model: EmotionModel, clip: SpeechClip) -> None:
    fresh = run(Engine(model, clip.sample_rate), clip.samples, FILE_BLOCK_S)
    engine = Engine(model, clip.sample_rate)
    used = run(engine, clip.samples[: 2 * len(clip.samples) // 3], FILE_BLOCK_S)  # no flush needed, but had events
    assert used
    engine.reset()
    assert engine.summary.windows == 0 and engine.summary.audio_s == 0
    assert engine.state.samples_in == 0
    again = run(engine, clip.samples, FILE_BLOCK_S)
    assert_same_events(again, fresh)
    assert engine.summary.windows == len(fresh)
    assert engine.summary.counts == {label: sum(e.label == label for e in fresh) for label in TINY_LABELS}
    assert engine.summary.audio_s == pytest.approx(clip.duration_s)


def test_smoothing_off_gives_raw_probabilities(model: EmotionModel, clip: SpeechClip) -> None:
    off = run(Engine(model, clip.sample_rate, EngineConfig(smoothing_alpha=1.0)), clip.samples, FILE_BLOCK_S)
    assert len(off) >= 3
    for e in off:
        assert e.probs == e.raw_probs
    smoothed = run(Engine(model, clip.sample_rate, EngineConfig(smoothing_alpha=0.3)), clip.samples, FILE_BLOCK_S)
    np.testing.assert_allclose(probs(smoothed, "raw_probs"), probs(off, "raw_probs"), atol=PROB_ATOL)
    # the first window has no history; later ones are pulled towards the past
    assert smoothed[0].probs == pytest.approx(smoothed[0].raw_probs)
    assert any(e.probs != pytest.approx(e.raw_probs, abs=1e-3) for e in smoothed[1:])
    for e in smoothed:
        assert sum(e.probs.values()) == pytest.approx(1.0, abs=1e-4)


def test_engine_config_comes_from_the_model_and_can_be_overridden(model: EmotionModel, tmp_path: Path) -> None:
    engine = Engine(model, 44100)
    assert engine.sample_rate == model.info.sample_rate
    assert engine.labels == TINY_LABELS
    assert engine.hop_s == pytest.approx(model.info.hop_s, rel=1e-6)
    longer_hop = Engine(model, 44100, EngineConfig(hop_s=2 * model.info.hop_s))
    assert longer_hop.hop_s == pytest.approx(2 * model.info.hop_s, rel=1e-6)
    # a vector (mean) preset takes any window; a frames preset's input size is fixed by its window
    assert Engine(model, 16000, EngineConfig(window_s=2 * model.info.window_s)).pipeline_config.window_s == (
        2 * model.info.window_s
    )
    logmel = load_model(make_tiny_model(tmp_path / "logmel.onnx", preset_name="logmel"), provider="cpu")
    with pytest.raises(UserError, match="leave --window unset"):
        Engine(logmel, 16000, EngineConfig(window_s=2 * logmel.info.window_s))
    with pytest.raises(UserError, match="hop"):
        Engine(model, 16000, EngineConfig(hop_s=model.info.window_s * 2))
    with pytest.raises(UserError, match="smoothing"):
        EngineConfig(smoothing_alpha=0.0)
    with pytest.raises(UserError, match="VAD"):
        EngineConfig(vad_aggressiveness=4)


def test_bad_blocks_raise_one_line_user_errors(model: EmotionModel) -> None:
    engine = Engine(model, 16000)
    with pytest.raises(UserError, match="NaN"):
        engine.feed(np.array([0.0, np.nan, 0.1], dtype=np.float32))
    with pytest.raises(UserError, match="NaN or infinite"):
        engine.feed(np.array([np.inf], dtype=np.float32))
    with pytest.raises(UserError, match="1-D"):
        engine.feed(np.zeros((2, 2, 2), np.float32))
    # integer PCM is accepted and scaled
    assert engine.feed(np.zeros(160, np.int16)) == []


def test_integer_pcm_gives_the_same_events_as_float(model: EmotionModel, clip: SpeechClip) -> None:
    as_int16 = np.round(clip.samples * 32767).astype(np.int16)
    from_float = run(Engine(model, clip.sample_rate), as_int16.astype(np.float32) / 32768, FILE_BLOCK_S)
    from_int = run(Engine(model, clip.sample_rate), as_int16, FILE_BLOCK_S)
    assert_same_events(from_int, from_float)


def test_frames_preset_model(tmp_path: Path) -> None:
    """An engine on a frames preset (log-mel) model works the same way."""
    model = load_model(make_tiny_model(tmp_path / "logmel.onnx", preset_name="logmel"), provider="cpu")
    rate = 16000
    t = np.arange(4 * rate) / rate
    voiced = (0.3 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    events = run(Engine(model, rate), voiced, FILE_BLOCK_S)
    assert events and all(sum(e.raw_probs.values()) == pytest.approx(1.0, abs=1e-4) for e in events)
