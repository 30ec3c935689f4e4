"""FeaturePipeline: the audio -> speech-gated windows -> features path shared by training and the live engine.

- Windows (positions, speech ratio, classified or not) do not depend on the chunk size fed in, and the features
  only by float32 rounding; checked per input format (16 kHz mono, 48 kHz stereo), as the resampled signal of two
  formats may differ slightly.
- Every window's features equal the reference ``FeatureExtractor`` on the padded stream slice it names.
- Train/serve consistency: ``ser_live.train.dataset.FeatureBuilder`` (the training path) gives the same windows and
  features as the engine's pipeline fed the same file in 30 ms blocks, and the engine's raw probabilities are the
  model applied to those training features.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser_live.realtime.engine import Engine
from ser_live.realtime.model import load_model
from ser_live.realtime.stages.features import FeatureExtractor, get_preset
from ser_live.realtime.stages.pipeline import FeaturePipeline, PipelineConfig, WindowFeatures
from tests.audio_fixtures import SpeechClip, convert, speech_clip
from tests.tiny_model import DEFAULT_HOP_S, DEFAULT_WINDOW_S, make_tiny_model

PRESET = "seed180"
FILE_BLOCK_S = 0.03  # what ser-live --file feeds
CHUNKS_S = (0.001, 0.03, 1.0, None)  # None = the whole clip at once
FORMATS = ((16000, 1), (48000, 2))
# Features are float32 and computed in batches of frames whose size follows the chunks: rounding only.
RTOL = 1e-4
ATOL_REL = 1e-5  # of the largest magnitude in the window


def config() -> PipelineConfig:
    return PipelineConfig(preset=get_preset(PRESET), window_s=DEFAULT_WINDOW_S, hop_s=DEFAULT_HOP_S)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> SpeechClip:
    return speech_clip(tmp_path_factory.mktemp("speech"))


def geometry(windows: list[WindowFeatures]) -> list[tuple[int, int, float, bool]]:
    return [(w.window.start, w.window.end, w.window.speech_ratio, w.features is not None) for w in windows]


def assert_features_close(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL_REL * float(np.max(np.abs(b))))


def run_chunked(samples: np.ndarray, rate: int, chunk_s: float | None) -> list[WindowFeatures]:
    pipeline = FeaturePipeline(config(), rate)
    return pipeline.run(samples, None if chunk_s is None else max(1, int(chunk_s * rate)))


@pytest.mark.parametrize(("rate", "channels"), FORMATS, ids=[f"{r}Hz-{c}ch" for r, c in FORMATS])
def test_windows_and_features_do_not_depend_on_chunk_size(clip: SpeechClip, rate: int, channels: int) -> None:
    samples = convert(clip.samples, clip.sample_rate, rate, channels)
    runs = {chunk: run_chunked(samples, rate, chunk) for chunk in CHUNKS_S}
    whole = runs[None]
    assert sum(w.features is not None for w in whole) >= 3, "the speech should give several classified windows"
    assert any(w.features is None for w in whole), "the silence around it should give unclassified windows"
    for chunk, windows in runs.items():
        assert geometry(windows) == geometry(whole), f"windows differ with {chunk} s chunks"
        for got, ref in zip(windows, whole, strict=True):
            if ref.features is not None:
                assert_features_close(got.features, ref.features)


def test_the_two_input_formats_agree_on_the_windows(clip: SpeechClip) -> None:
    mono16 = run_chunked(convert(clip.samples, clip.sample_rate, 16000), 16000, FILE_BLOCK_S)
    stereo48 = run_chunked(convert(clip.samples, clip.sample_rate, 48000, 2), 48000, FILE_BLOCK_S)
    assert [w.window.end for w in mono16] == [w.window.end for w in stereo48]
    classified16 = [w.window.end for w in mono16 if w.features is not None]
    classified48 = [w.window.end for w in stereo48 if w.features is not None]
    # the VAD may flip a frame or two at the edges of speech; the bulk must agree
    assert len(set(classified16) ^ set(classified48)) <= 2
    assert len(set(classified16) & set(classified48)) >= 3


def test_window_features_equal_the_reference_extractor_on_the_padded_stream(clip: SpeechClip) -> None:
    cfg = config()
    rate = cfg.sample_rate
    samples = convert(clip.samples, clip.sample_rate, rate)
    windows = FeaturePipeline(cfg, rate).run(samples, int(FILE_BLOCK_S * rate))
    lead = cfg.window_samples - cfg.hop_samples
    tail = (-len(samples)) % cfg.hop_samples
    stream = np.concatenate([np.zeros(lead, np.float32), samples, np.zeros(tail, np.float32)])
    reference = FeatureExtractor(cfg.preset)
    classified = [w for w in windows if w.features is not None]
    assert classified
    for w in classified:
        assert w.window.end - w.window.start == cfg.window_samples
        assert w.window.end % cfg.hop_samples == 0
        piece = stream[w.window.start + lead : w.window.end + lead]
        assert_features_close(w.features, reference.window_features(piece))
    # the last window reaches the end of the audio (zero-padded to a hop boundary), no further
    assert windows[-1].window.end == len(samples) + tail


def test_silence_gives_windows_but_none_classified() -> None:
    rate = 16000
    quiet = np.random.default_rng(0).normal(scale=1e-4, size=6 * rate).astype(np.float32)
    for samples in (np.zeros(6 * rate, np.float32), quiet):
        windows = FeaturePipeline(config(), rate).run(samples, int(FILE_BLOCK_S * rate))
        assert len(windows) == 6 * rate // config().hop_samples + 1
        assert all(w.features is None and w.window.speech_ratio == 0 for w in windows)


def test_reset_gives_a_fresh_stream(clip: SpeechClip) -> None:
    rate = clip.sample_rate
    block = int(FILE_BLOCK_S * rate)
    fresh = run_chunked(clip.samples, rate, FILE_BLOCK_S)
    pipeline = FeaturePipeline(config(), rate)
    half = clip.samples[: len(clip.samples) // 2]
    for i in range(0, len(half), block):
        pipeline.process(half[i : i + block])
    assert pipeline.state.samples_in > 0
    pipeline.reset()
    assert pipeline.state.samples_in == 0
    out: list[WindowFeatures] = []
    for i in range(0, len(clip.samples), block):
        out += pipeline.process(clip.samples[i : i + block])
    out += pipeline.flush()
    assert geometry(out) == geometry(fresh)
    for got, ref in zip(out, fresh, strict=True):
        if ref.features is not None:
            np.testing.assert_array_equal(got.features, ref.features)


@pytest.mark.parametrize("file_rate", [22050, 16000])
def test_training_features_equal_the_live_engine(clip: SpeechClip, tmp_path: Path, file_rate: int) -> None:
    """Train/serve consistency: the same clip gives the same windows and features in ser-train and ser-live."""
    from ser_live.train.corpora import Record
    from ser_live.train.dataset import FeatureBuilder

    path = tmp_path / "clip.wav"
    sf.write(path, convert(clip.samples, clip.sample_rate, file_rate), file_rate, subtype="FLOAT")
    cfg = config()

    builder = FeatureBuilder(cfg, cache_dir=None, augment=None)
    [examples] = builder.clip(Record(path, "happy", "test:1", "test"))
    train_features = examples.features
    assert train_features.shape[1:] == cfg.feature_shape and len(train_features) >= 3

    # the live path: the file's own rate, 30 ms blocks, streaming resampler inside the pipeline
    data, rate = sf.read(path, dtype="float32")
    live = [w for w in run_chunked(data, rate, FILE_BLOCK_S) if w.features is not None]
    assert len(live) == len(train_features)
    for w, feats in zip(live, train_features, strict=True):
        assert_features_close(w.features, feats)

    # and the engine's raw probabilities are the model applied to the training features
    model = load_model(make_tiny_model(tmp_path / "tiny.onnx", preset_name=PRESET), provider="cpu")
    engine = Engine(model, rate)
    block = int(FILE_BLOCK_S * rate)
    events = [e for i in range(0, len(data), block) for e in engine.feed(data[i : i + block])] + engine.flush()
    expected = model.predict(train_features)
    got = np.array([[e.raw_probs[label] for label in model.labels] for e in events])
    np.testing.assert_allclose(got, expected, atol=1e-4)
