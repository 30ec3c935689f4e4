"""The whole-signal ("offline") path gives the events of the live path.

Files (``predict_file``, ``ser-live --file --fast``, ``ser-batch``) go through :meth:`Engine.iter_batched` over long
spans -- every stage handed many frames per call, the model many windows per call -- and must give exactly the
events of feeding the live engine 0.1 s blocks with one model call per window: the same windows and labels, the
probabilities equal to 1e-5 (float rounding of batched inference). Checked on synthetic voices and espeak-ng speech,
at several rates and lengths: shorter than one window, silence, speech at the very end of the file, and span
boundaries inside speech.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import ser_live.realtime.api
from ser_live.batch.cli import main as batch_main
from ser_live.realtime.api import EmotionRecognizer
from ser_live.realtime.engine import Engine
from ser_live.realtime.events import WindowEvent
from ser_live.realtime.faces.cli import main as live_main
from ser_live.realtime.model import EmotionModel, load_model
from tests.audio_fixtures import convert, espeak_wav, voiced_tone
from tests.tiny_model import TINY_LABELS, make_tiny_model

PROB_ATOL = 1e-5
STREAM_BLOCK_S = 0.1


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> EmotionModel:
    # an input normalisation stage and an embedding, as the bundled model has
    return load_model(make_tiny_model(tmp_path_factory.mktemp("m") / "tiny.onnx", preset_name="logmel_wide",
                                      window_s=2.0, hop_s=0.5,
                                      metadata_overrides={"input_normalization": {"mode": "window"}}))


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, int]:
    path = espeak_wav(tmp_path_factory.mktemp("s") / "speech.wav",
                      "The meeting moved to Thursday and nobody told me, so I waited for an hour and went home.")
    samples, rate = sf.read(str(path), dtype="float32")
    return samples, rate


def streamed(model: EmotionModel, samples: np.ndarray, rate: int) -> list[WindowEvent]:
    engine = Engine(model, rate)
    step = max(1, int(STREAM_BLOCK_S * rate))
    events = [e for i in range(0, len(samples), step) for e in engine.feed(samples[i : i + step])]
    return events + engine.flush()


def offline(model: EmotionModel, samples: np.ndarray, rate: int, span_s: float) -> list[WindowEvent]:
    step = max(1, int(span_s * rate))
    return list(Engine(model, rate).iter_batched(samples[i : i + step] for i in range(0, len(samples), step)))


def assert_same(a: list[WindowEvent], b: list[WindowEvent]) -> None:
    assert [(e.start_s, e.end_s, e.label, e.uncertain) for e in a] == [(e.start_s, e.end_s, e.label, e.uncertain)
                                                                      for e in b]
    for x, y in zip(a, b, strict=True):
        assert x.speech_ratio == y.speech_ratio
        np.testing.assert_allclose([x.probs[k] for k in TINY_LABELS], [y.probs[k] for k in TINY_LABELS],
                                   atol=PROB_ATOL)
        np.testing.assert_allclose([x.raw_probs[k] for k in TINY_LABELS], [y.raw_probs[k] for k in TINY_LABELS],
                                   atol=PROB_ATOL)


def signal(kind: str, speech: tuple[np.ndarray, int], rate: int) -> np.ndarray:
    words, words_rate = speech
    voice = convert(words, words_rate, rate)
    silence = np.zeros(int(1.5 * rate), np.float32)
    if kind == "short":  # shorter than one window
        return voice[: int(0.8 * rate)]
    if kind == "silence":
        return np.zeros(int(4.0 * rate), np.float32)
    if kind == "speech_at_the_end":  # the file stops mid-word
        return np.concatenate([silence, voice[: int(0.8 * len(voice))]])
    tone = voiced_tone(180.0, 6.0, 0.3, 4.0, seed=3, sample_rate=rate)
    return np.concatenate([silence, voice, silence, tone, voice * 0.1, silence])  # "long"


@pytest.mark.parametrize("rate", [8000, 16000, 44100])
@pytest.mark.parametrize("kind", ["short", "silence", "speech_at_the_end", "long"])
def test_offline_events_equal_the_streaming_events(model: EmotionModel, speech: tuple[np.ndarray, int],
                                                   kind: str, rate: int) -> None:
    samples = signal(kind, speech, rate)
    live = streamed(model, samples, rate)
    if kind in ("long", "speech_at_the_end"):
        assert live, "the signal should give windows"
    if kind == "silence":
        assert live == []
    for span_s in (30.0, 1.37):  # one span for the whole file; span boundaries inside speech
        assert_same(offline(model, samples, rate, span_s), live)


def test_summary_of_the_offline_path_equals_the_streaming_one(model: EmotionModel,
                                                              speech: tuple[np.ndarray, int]) -> None:
    samples = signal("long", speech, 16000)
    a, b = Engine(model, 16000), Engine(model, 16000)
    step = 1600
    for i in range(0, len(samples), step):
        a.feed(samples[i : i + step])
    a.flush()
    list(b.iter_batched([samples[i : i + 48000] for i in range(0, len(samples), 48000)]))
    sa, sb = a.summary.to_dict(), b.summary.to_dict()
    for key in ("audio_s", "speech_s", "windows", "windows_total", "counts", "time_per_emotion_s", "dominant"):
        assert sa[key] == sb[key], key


def test_predict_file_offline_equals_streaming(model: EmotionModel, speech: tuple[np.ndarray, int], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "clip.wav"
    sf.write(path, signal("long", speech, 22050), 22050, subtype="PCM_16")
    rec = EmotionRecognizer(model)
    live = rec.predict_file(path, streaming=True)
    monkeypatch.setattr(ser_live.realtime.api, "OFFLINE_SPAN_S", 2.3)  # spans that end inside speech
    whole = rec.predict_file(path)
    assert whole.label == live.label
    assert_same(whole.windows, live.windows)
    np.testing.assert_allclose([whole.probs[k] for k in TINY_LABELS], [live.probs[k] for k in TINY_LABELS],
                               atol=PROB_ATOL)


def test_ser_live_fast_and_streaming_path_write_the_same_events(model: EmotionModel, speech: tuple[np.ndarray, int],
                                                                tmp_path: Path) -> None:
    path = tmp_path / "talk.wav"
    sf.write(path, signal("long", speech, 16000), 16000, subtype="PCM_16")
    outs = []
    for extra in ([], ["--streaming-path"]):
        out = tmp_path / f"events{len(extra)}.jsonl"
        assert live_main(["--file", str(path), "--fast", "--no-dashboard", "--model", str(model.path), "--jsonl",
                          str(out), *extra]) == 0
        outs.append([json.loads(line) for line in out.read_text().splitlines()])
    a, b = outs
    assert [(x["type"], x.get("end_s"), x.get("label")) for x in a] == [(x["type"], x.get("end_s"), x.get("label"))
                                                                      for x in b]
    assert a[-1]["counts"] == b[-1]["counts"] and a[-1]["speech_s"] == b[-1]["speech_s"]
    assert live_main(["--file", str(path), "--streaming-path"]) == 2  # only with --fast


def test_ser_batch_default_and_streaming_path_give_the_same_rows(model: EmotionModel, speech: tuple[np.ndarray, int],
                                                                 tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for rate in (8000, 16000):
        sf.write(folder / f"r{rate}.wav", signal("long", speech, rate), rate, subtype="PCM_16")
    rows = []
    for extra in ([], ["--streaming-path"]):
        out = tmp_path / f"out{len(extra)}"
        assert batch_main([str(folder), "--out", str(out), "--model", str(model.path), "-q", "--workers", "1",
                           *extra]) == 0
        with open(out / "files.csv", newline="") as fh:
            rows.append(sorted(csv.DictReader(fh), key=lambda r: r["path"]))
    for x, y in zip(*rows, strict=True):
        assert (x["label"], x["windows"], x["speech_s"]) == (y["label"], y["windows"], y["speech_s"])
        for label in TINY_LABELS:
            assert abs(float(x[f"prob_{label}"]) - float(y[f"prob_{label}"])) <= PROB_ATOL


@pytest.mark.parametrize("name", ["default", "small"])
def test_the_bundled_models_give_the_same_events_both_ways(speech: tuple[np.ndarray, int], name: str) -> None:
    """Batched graph calls round differently from one-window calls: still within 1e-5, labels equal (the default's
    encoder frames too: a 30 s span goes through it a few hops at a time, as the stream does)."""
    bundled = load_model(name, provider="cpu")
    samples = signal("long", speech, 16000)
    live = streamed(bundled, samples, 16000)
    assert len(live) > 10
    labels = bundled.labels
    for span_s in (30.0, 1.37):
        got = offline(bundled, samples, 16000, span_s)
        assert [(e.end_s, e.label) for e in got] == [(e.end_s, e.label) for e in live]
        diff = max(abs(x.raw_probs[k] - y.raw_probs[k]) for x, y in zip(got, live, strict=True) for k in labels)
        assert diff <= PROB_ATOL


@pytest.fixture(scope="module")
def demanding(tmp_path_factory: pytest.TempPathFactory) -> EmotionModel:
    """A model whose windows need 1.5 s of speech: a short clip has no window that qualifies."""
    return load_model(make_tiny_model(tmp_path_factory.mktemp("d") / "tiny.onnx", preset_name="logmel_wide",
                                      window_s=2.0, hop_s=0.5, min_speech_s=1.5))


@pytest.mark.parametrize("seconds", [0.3, 0.7])
def test_a_short_clip_with_speech_gets_one_verdict(demanding: EmotionModel, speech: tuple[np.ndarray, int],
                                                   seconds: float, tmp_path: Path) -> None:
    """No window holds the model's minimum of speech, but the clip has >= 0.3 s: one verdict (its window with the
    most speech), the same on both paths, and in predict_file, ser-batch and the ser-live summary."""
    model = demanding
    words, rate = speech
    start = int(np.argmax(np.abs(words) > 0.05))  # where the voice begins
    clip = np.concatenate([np.zeros(int(0.2 * rate), np.float32), words[start : start + int(seconds * rate)]])
    live, whole = streamed(model, clip, rate), offline(model, clip, rate, 30.0)
    assert len(live) == 1 and 0.3 <= live[0].speech_ratio * model.info.window_s < model.info.min_speech_s
    assert_same(whole, live)
    path = tmp_path / "short.wav"
    sf.write(path, clip, rate)
    assert EmotionRecognizer(model).predict_file(path).label == live[0].label
    out = tmp_path / "out"
    assert batch_main([str(path), "--out", str(out), "--model", str(model.path), "-q", "--workers", "1"]) == 0
    with open(out / "files.csv", newline="") as fh:
        row = next(csv.DictReader(fh))
    assert row["status"] == "ok" and row["windows"] == "1" and row["label"] == live[0].label
    jsonl = tmp_path / "e.jsonl"
    assert live_main(["--file", str(path), "--model", str(model.path), "--fast", "--no-dashboard", "--jsonl",
                      str(jsonl)]) == 0
    summary = json.loads(jsonl.read_text().splitlines()[-1])
    assert summary["windows"] == 1 and summary["dominant"] in (live[0].label, None)
