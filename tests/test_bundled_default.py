"""The bundled default model (v7: a frame encoder and a head): it loads from package data as a pair, has what its
card claims (labels, sizes, threshold, session normaliser, provenance, licences, the leave-one-corpus-out table),
its outputs on a fixed synthetic signal do not drift, and its verdict does not follow the input level."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest

from ser_live import EmotionRecognizer
from ser_live.realtime.fileio import file_sha256
from ser_live.realtime.model import METADATA_KEY, bundled_model_path, load_model
from tests.audio_fixtures import speech_clip

CARD = Path(__file__).resolve().parents[1] / "ser_live" / "models" / "README.md"
LABELS = ("angry", "disgust", "fearful", "happy", "neutral", "sad", "surprised")
MAX_PAIR_BYTES = 40 * 10**6  # the size target for the two graphs together
LEVELS_DBFS = (-30.0, -20.0, -10.0)
LEVEL_TOLERANCE = 0.02
UTTERANCE = "I can't believe you did that, it is really not what we agreed on at all."
WHISPER_NOTICE = "OpenAI, MIT License"


def encoder_meta(path: Path) -> dict:
    return json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}[METADATA_KEY])


def test_the_default_is_a_pair_that_matches_its_card() -> None:
    head = bundled_model_path()
    encoder = head.with_name("default.encoder.onnx")
    assert head.is_file() and encoder.is_file()
    assert head.stat().st_size + encoder.stat().st_size <= MAX_PAIR_BYTES
    model = load_model(None)
    info = model.info
    assert info.labels == LABELS and info.preset.kind == "encoder" and model.encoder is not None
    assert info.raw["encoder"]["sha256"] == file_sha256(encoder)
    meta = encoder_meta(encoder)
    assert meta["kind"] == "frame_encoder" and meta["encoder"] == "whisper-tiny.en"
    assert WHISPER_NOTICE in meta["licence"] and len(meta["source"]["model_bin_sha256"]) == 64
    norm = model.encoder.session_norm
    assert norm is not None and len(norm.mean) == 2 * model.encoder.dim
    assert "non-commercial" in info.data["licence"]
    assert model.can_personalise
    card = CARD.read_text(encoding="utf-8")
    loco = info.metrics["loco"]
    n0 = f"{norm.prior_windows:g}"  # the shipped normaliser's strength: the card's table is the one measured with it
    for claim in (*LABELS, "non-commercial", WHISPER_NOTICE, "UAR4", f"{loco['mean'][f'session@{n0}']:.1f}",
                  f"prior weight {norm.prior_windows:g}", f"{info.calibration.min_confidence:g}"):
        assert claim in card, f"the model card does not say {claim!r}"
    for corpus, row in loco["held_out"].items():
        assert re.search(rf"{corpus}\b.*\b{row[f'session@{n0}']:.1f}\b", card, re.IGNORECASE), corpus
    sizes = f"{head.stat().st_size / 2**20:.1f} MiB", f"{encoder.stat().st_size / 2**20:.1f} MiB"
    assert all(size in card for size in sizes), sizes


def test_the_verdict_does_not_follow_the_input_level(tmp_path: Path) -> None:
    clip = speech_clip(tmp_path, UTTERANCE)
    rec = EmotionRecognizer()
    peak = float(np.abs(clip.samples).max())
    results = {db: rec.predict((clip.samples * (10 ** (db / 20) / peak)).astype(np.float32), clip.sample_rate)
               for db in LEVELS_DBFS}
    ref = results[LEVELS_DBFS[1]]
    for db, result in results.items():
        assert result.speech_detected and len(result.windows) >= 3, db
        diff = max(abs(result.probs[k] - ref.probs[k]) for k in LABELS)
        assert diff <= LEVEL_TOLERANCE, f"{db} dBFS moves a probability by {diff:.3f}"
        assert result.label == ref.label


def test_the_demo_runs_through_the_default_model() -> None:
    result = EmotionRecognizer().predict_file(bundled_model_path().with_name("demo.wav"))
    assert result.speech_detected and len(result.windows) >= 10 and result.label in LABELS
    assert result.arousal is not None and -1.0 <= result.arousal <= 1.0


@pytest.mark.parametrize("name", ["default", "small"])
def test_both_bundled_models_answer_by_name(name: str) -> None:
    t = np.arange(16000 * 3) / 16000
    voiced = (0.3 * np.sin(2 * np.pi * 140 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    result = EmotionRecognizer(model=name).predict(voiced, 16000)
    assert result.label in LABELS and abs(sum(result.probs.values()) - 1.0) < 1e-4
