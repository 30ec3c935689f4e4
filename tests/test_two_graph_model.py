"""A two-graph model (frame encoder + head) through the engine: frames computed once from the audio before the
speech gate, pooled per window, session-normalised, the head's probabilities; the same events whatever the block
sizes, on the batched file path, and with a personal profile; a broken pair refused in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from ser_live.realtime.config import EngineConfig
from ser_live.realtime.engine import Engine
from ser_live.realtime.errors import UserError
from ser_live.realtime.model import METADATA_KEY, load_model
from ser_live.realtime.stages.encoder import SessionNormalizer, SessionNormConfig, frame_span, pool_frames
from ser_live.realtime.stages.pipeline import cut_windows
from tests.audio_fixtures import SpeechClip, speech_clip
from tests.tiny_whisper import DIM, make_tiny_pair

PROB_ATOL = 1e-4


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_pair(tmp_path_factory.mktemp("pair"))


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> SpeechClip:
    return speech_clip(tmp_path_factory.mktemp("speech"), lead_s=0.7, tail_s=1.0)


def events(model_path: Path, clip: SpeechClip, block: int) -> list[dict]:
    engine = Engine(load_model(model_path), clip.sample_rate)
    out = []
    for i in range(0, len(clip.samples), block):
        out += engine.feed(clip.samples[i : i + block])
    return [e.to_dict() for e in out + engine.flush()]


def test_the_pair_loads_with_its_encoder(pair: Path) -> None:
    model = load_model(pair)
    assert model.encoder is not None and model.encoder.dim == DIM and model.encoder.blocks == 2
    assert model.info.preset.kind == "encoder" and model.info.feature_shape == (2 * DIM,)
    assert model.encoder.session_norm is not None and model.encoder.session_norm.prior_windows == 4.0


def test_events_do_not_depend_on_block_sizes(pair: Path, clip: SpeechClip) -> None:
    a = events(pair, clip, 160)
    b = events(pair, clip, 4410)
    c = events(pair, clip, len(clip.samples))
    assert len(a) >= 3
    for x, y, z in zip(a, b, c, strict=True):
        assert x["end_s"] == y["end_s"] == z["end_s"] and x["label"] == y["label"] == z["label"]
        for label, p in x["raw_probs"].items():
            assert abs(p - y["raw_probs"][label]) < PROB_ATOL and abs(p - z["raw_probs"][label]) < PROB_ATOL


def test_the_batched_file_path_gives_the_same_events(pair: Path, clip: SpeechClip) -> None:
    engine = Engine(load_model(pair), clip.sample_rate)
    spans = [clip.samples[i : i + 30000] for i in range(0, len(clip.samples), 30000)]
    batched = [e.to_dict() for e in engine.iter_batched(spans)]
    streamed = events(pair, clip, 1600)
    assert [e["end_s"] for e in batched] == [e["end_s"] for e in streamed]
    for x, y in zip(batched, streamed, strict=True):
        assert max(abs(p - y["raw_probs"][k]) for k, p in x["raw_probs"].items()) < PROB_ATOL


def test_a_long_file_in_30_s_spans_gives_the_streaming_events(pair: Path, clip: SpeechClip) -> None:
    """Spans longer than the encoder keeps frames for (the whole-file path reads 30 s at a time)."""
    from ser_live.realtime.engine import OFFLINE_SPAN_S

    long = SpeechClip(np.tile(clip.samples, 8), clip.sample_rate, 0.0, 0.0)
    assert len(long.samples) / long.sample_rate > 20
    engine = Engine(load_model(pair), long.sample_rate)
    span = int(OFFLINE_SPAN_S * long.sample_rate)
    batched = [e.to_dict() for e in engine.iter_batched(long.samples[i : i + span]
                                                         for i in range(0, len(long.samples), span))]
    streamed = events(pair, long, 4410)
    assert len(batched) == len(streamed) > 20
    for x, y in zip(batched, streamed, strict=True):
        assert x["end_s"] == y["end_s"]
        assert max(abs(p - y["raw_probs"][k]) for k, p in x["raw_probs"].items()) < PROB_ATOL


def test_the_head_sees_pooled_session_normalised_frames(pair: Path, clip: SpeechClip) -> None:
    """The engine's first window equals pooling the encoder's frames over it and normalising by the prior."""
    import soxr

    from ser_live.realtime.stages.encoder import FrameEncoder, StreamingLogMel, mel_filters

    model = load_model(pair)
    audio = soxr.resample(clip.samples, clip.sample_rate, 16000).astype(np.float32)
    front = StreamingLogMel(mel_filters())
    mel = np.concatenate([front.process(audio), front.flush()])
    spec = model.encoder
    enc = FrameEncoder(spec.make_run(), spec.dim, 2 * spec.blocks, spec.chunk, spec.context)
    frames = np.concatenate([enc.process(mel), enc.flush()])
    windows = [w for w in cut_windows(EngineConfig().pipeline_config(model), audio) if w.classify]
    normaliser = SessionNormalizer(spec.session_norm)
    first = normaliser.process(pool_frames(frames[slice(*frame_span(windows[0].start, windows[0].end))]))
    expected = model.predict(first[None])[0]
    got = events(pair, clip, len(clip.samples))[0]
    assert got["end_s"] == pytest.approx(windows[0].end / 16000, abs=1e-3)
    assert max(abs(got["raw_probs"][lab] - float(expected[i])) for i, lab in enumerate(model.labels)) < 1e-3


def test_the_session_normaliser_starts_at_its_prior_and_moves_to_the_session() -> None:
    cfg = SessionNormConfig(mean=(0.0, 10.0), std=(1.0, 2.0), prior_windows=10.0, memory_windows=1e9)
    norm = SessionNormalizer(cfg)
    first = norm.process(np.array([0.0, 10.0]))
    assert np.allclose(first, 0.0, atol=1e-6)  # at the prior's mean: zero
    rng = np.random.default_rng(0)
    for _ in range(2000):
        last = norm.process(np.array([5.0, 10.0]) + rng.normal(0, 0.1, 2))
    assert abs(last[0]) < 0.5  # the session's own mean (5) is now its centre
    norm.reset()
    assert np.allclose(norm.process(np.array([1.0, 12.0])), [1.0, 1.0], atol=0.1)


def test_a_wrong_or_missing_encoder_is_refused_in_one_line(pair: Path, tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    folder.mkdir()
    head = folder / pair.name
    shutil.copy(pair, head)
    with pytest.raises(UserError, match=r"needs its frame encoder tiny\.encoder\.onnx beside it"):
        load_model(head)
    (folder / "tiny.encoder.onnx").write_bytes((pair.parent / "tiny.encoder.onnx").read_bytes() + b"x")
    with pytest.raises(UserError, match="not the frame encoder"):
        load_model(head)
    proto = onnx.load(str(pair))
    meta = json.loads({p.key: p.value for p in proto.metadata_props}[METADATA_KEY])
    meta.pop("encoder")
    onnx.helper.set_model_props(proto, {METADATA_KEY: json.dumps(meta)})
    onnx.save(proto, str(head))
    with pytest.raises(UserError, match="names no frame encoder"):
        load_model(head)
