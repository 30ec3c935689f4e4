"""The v7 head's data path: windows cut as the live path cuts them and pooled from a frame cache, sessions through
the normaliser (EmoSpeech's unknown user never one speaker), corpus- and label-balanced weights, UAR4."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser_live.realtime.stages.encoder import SessionNormConfig, frame_span, pool_frames
from ser_live.realtime.stages.features import FeaturePreset
from ser_live.realtime.stages.pipeline import PipelineConfig, cut_windows
from ser_live.train.head import balanced_weights, normalise_sessions, own_labels_uar, predicted_shares, uar4
from ser_live.train.windows import WindowSet, build_windows, load_windows

DIM = 4


def window_set() -> WindowSet:
    rng = np.random.default_rng(0)
    speakers = ["c:a", "c:a", "c:b", "emospeech:unknown", "emospeech:unknown"]
    clip_of = np.repeat(np.arange(5), 3)
    return WindowSet(rng.normal(5.0, 2.0, (15, 2 * DIM)).astype(np.float32), clip_of,
                     np.array(["c", "c", "c", "emospeech", "emospeech"]), np.array(speakers),
                     np.array(["happy", "sad", "happy", "angry", "neutral"]), np.array([f"{i}.wav" for i in range(5)]))


def test_sessions_are_speakers_and_the_unknown_user_is_normalised_as_a_whole() -> None:
    data = window_set()
    prior = SessionNormConfig(tuple([5.0] * 2 * DIM), tuple([2.0] * 2 * DIM), prior_windows=1e12)
    x, clip = normalise_sessions(data, np.arange(5), prior, np.random.default_rng(0))
    assert sorted(clip.tolist()) == sorted(data.clip_of.tolist())
    unknown = np.isin(clip, [3, 4])
    assert np.allclose(x[unknown].mean(axis=0), 0.0, atol=1e-5)  # its own statistics, all six windows together
    rows = np.flatnonzero(np.isin(data.clip_of, [0, 1, 2]))
    expected = np.sort(((data.x[rows] - 5.0) / 2.0).ravel())  # an infinite prior: global statistics only
    assert np.allclose(np.sort(x[~unknown].ravel()), expected, atol=1e-4)


def test_weights_balance_corpora_and_labels() -> None:
    corpus = np.array(["a"] * 6 + ["b"] * 2)
    label = np.array(["happy"] * 5 + ["sad"] + ["happy", "sad"])
    w = balanced_weights(corpus, label)
    assert w[corpus == "a"].sum() == pytest.approx(w[corpus == "b"].sum())
    assert w[(corpus == "a") & (label == "sad")].sum() == pytest.approx(w[(corpus == "a") & (label == "happy")].sum())
    assert w.mean() == pytest.approx(1.0)


def test_speaker_kfold_tests_every_speaker_of_the_corpus_once() -> None:
    from ser_live.train.head import HeadConfig, speaker_kfold

    rng = np.random.default_rng(0)
    labels = ["angry", "happy", "neutral", "sad"]
    n = 64  # 8 speakers of "r" x 4 labels x 2 clips, the same again for corpus "o"
    corpus = np.array(["r"] * 32 + ["o"] * 32)
    speaker = np.array([f"{c}:{i // 4 % 8}" for i, c in enumerate(corpus)])
    label = np.array([labels[i % 4] for i in range(n)])
    clip_of = np.repeat(np.arange(n), 2)
    x = (np.eye(2 * DIM)[[i % 4 for i in range(n)]] * 4.0)[clip_of] + rng.normal(0, 0.3, (2 * n, 2 * DIM))
    data = WindowSet(x.astype(np.float32), clip_of, corpus, speaker, label, np.array([f"{i}.wav" for i in range(n)]))
    cfg = HeadConfig(epochs=30, batch=16, learning_rate=0.01, hidden=16, embedding=8, prior_windows=4.0)
    table = speaker_kfold(data, [], "r", cfg, folds=4)
    tested = [s for fold in table["folds"] for s in fold["speakers"]]
    assert sorted(tested) == sorted({s for s in speaker if s.startswith("r:")}) and len(table["folds"]) == 4
    assert table["mean"]["uar4_global"] > 50  # the labels are easy to tell apart here


def test_uar4_scores_the_four_labels_a_corpus_has() -> None:
    from ser_live.train.corpora import LABELS

    truth = np.array(["angry", "angry", "sad", "disgust"])
    probs = np.zeros((4, len(LABELS)))
    probs[0, LABELS.index("angry")] = 1
    probs[1, LABELS.index("happy")] = 1  # among angry/sad: argmax of those two
    probs[1, LABELS.index("sad")] = 0.5
    probs[2, LABELS.index("sad")] = 1
    probs[3, LABELS.index("disgust")] = 1  # not one of the four: not scored
    assert uar4(truth, probs) == pytest.approx((0.5 + 1.0) / 2)
    assert predicted_shares(truth, probs)["happy"] == 25.0
    # own labels: angry, sad, disgust; clip 1's argmax (happy) is a label the corpus lacks: wrong, not an error
    assert own_labels_uar(truth, probs) == pytest.approx((0.5 + 1.0 + 1.0) / 3)


def test_windows_are_the_live_paths_pooled_from_the_cache(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    audio = np.concatenate([np.zeros(8000), 0.3 * rng.standard_normal(40000), np.zeros(8000)]).astype(np.float32)
    t = np.arange(40000) / 16000
    audio[8000:48000] = (0.3 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 4 * t))).astype(np.float32)
    sf.write(tmp_path / "clip.wav", audio, 16000)
    frames = rng.normal(0, 1, (len(audio) // 320, DIM)).astype(np.float16)
    cache = tmp_path / "frames"
    cache.mkdir()
    frames.tofile(cache / "x.frames.f16")
    (cache / "x.json").write_text(json.dumps({"dim": DIM, "rows": len(frames), "clips": [
        {"path": str(tmp_path / "clip.wav"), "label": "happy", "speaker": "x:1", "start": 0, "rows": len(frames)}]}))
    preset = FeaturePreset(name="t", kind="encoder", n_fft=400, hop_length=320, n_mels=80, dim=DIM)
    config = PipelineConfig(preset=preset, window_s=2.0, hop_s=0.5)
    build_windows(cache, tmp_path / "windows", ["x"], config)
    data = load_windows(tmp_path / "windows", ["x"])
    expected = [pool_frames(frames[slice(*frame_span(w.start, w.end))]) for w in cut_windows(config, audio)
                if w.classify]
    assert len(expected) >= 2 and np.allclose(data.x, np.stack(expected), atol=1e-6)
    assert data.label.tolist() == ["happy"] and data.speaker.tolist() == ["x:1"]
