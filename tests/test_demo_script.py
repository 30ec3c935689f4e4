"""scripts/make_demo.py: a small, deterministic 16 kHz mono demo with four utterances between pauses of silence."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "make_demo.py"
BUNDLED_DEMO = ROOT / "ser_live" / "models" / "demo.wav"
SAMPLE_RATE = 16000
MIN_DURATION_S, MAX_DURATION_S = 15.0, 25.0
MAX_BYTES = 1_000_000
N_UTTERANCES = 4
FRAME_S = 0.02
SPEECH_DB = -45.0  # frame RMS above this (dBFS) is speech
MIN_PAUSE_S = 0.9  # a quieter run this long separates utterances (sentence pauses inside one are shorter)
MIN_UTTERANCE_S = 1.5
TIMEOUT_S = 60


def run_script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=TIMEOUT_S, check=False, env=env)


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) index pairs of the True runs of a boolean array."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def utterances(audio: np.ndarray, rate: int) -> tuple[list[float], list[float]]:
    """Durations (s) of the speech segments and of the silent gaps, by frame energy."""
    hop = round(FRAME_S * rate)
    frames = audio[: len(audio) // hop * hop].reshape(-1, hop).astype(np.float64)
    db = 10 * np.log10(np.maximum(np.mean(frames**2, axis=1), 1e-12))
    quiet = db < SPEECH_DB
    pauses = [(a, b) for a, b in runs(quiet) if (b - a) * FRAME_S >= MIN_PAUSE_S]
    speech = np.ones(len(db), dtype=bool)
    for a, b in pauses:
        speech[a:b] = False
    return [(b - a) * FRAME_S for a, b in runs(speech)], [(b - a) * FRAME_S for a, b in pauses]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "demo.wav"
    proc = run_script("-o", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


def test_format_duration_and_size(demo: Path) -> None:
    info = sf.info(demo)
    assert info.samplerate == SAMPLE_RATE
    assert info.channels == 1
    assert info.subtype == "PCM_16"
    assert MIN_DURATION_S <= info.duration <= MAX_DURATION_S
    assert demo.stat().st_size < MAX_BYTES


def test_four_utterances_separated_by_silence(demo: Path) -> None:
    audio, rate = sf.read(demo, dtype="float32")
    speech, pauses = utterances(audio, rate)
    assert len(speech) == N_UTTERANCES, (speech, pauses)
    assert min(speech) >= MIN_UTTERANCE_S
    assert len(pauses) == N_UTTERANCES + 1  # lead, three between, tail
    peak = float(np.max(np.abs(audio)))
    assert 0.5 < peak < 1.0  # normalised, not clipped


def test_prosodies_differ_in_loudness(demo: Path) -> None:
    """The quiet 'sad' utterance is clearly softer than the loud 'excited' one."""
    audio, rate = sf.read(demo, dtype="float32")
    hop = round(FRAME_S * rate)
    frames = audio[: len(audio) // hop * hop].reshape(-1, hop)
    db = 10 * np.log10(np.maximum(np.mean(frames.astype(np.float64) ** 2, axis=1), 1e-12))
    voiced = runs(db >= SPEECH_DB)
    levels = [float(np.max(db[a:b])) for a, b in voiced if (b - a) * FRAME_S >= FRAME_S * 5]
    assert max(levels) - min(levels) > 6.0


def test_deterministic_and_atomic(demo: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.wav"
    proc = run_script("-o", str(again))
    assert proc.returncode == 0, proc.stderr
    assert again.read_bytes() == demo.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.wav"]  # no temporary file left behind


def test_missing_espeak_is_a_one_line_error(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # no espeak-ng on this PATH
    out = tmp_path / "demo.wav"
    proc = run_script("-o", str(out), env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "espeak-ng" in proc.stderr and "apt-get install" in proc.stderr
    assert not out.exists()


def test_bundled_demo_is_one_the_script_makes() -> None:
    """ser_live/models/demo.wav (package data) has the script's format and shape: made by it, not corpus audio."""
    info = sf.info(BUNDLED_DEMO)
    assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
    assert MIN_DURATION_S <= info.duration <= MAX_DURATION_S
    assert BUNDLED_DEMO.stat().st_size < MAX_BYTES
    audio, rate = sf.read(BUNDLED_DEMO, dtype="float32")
    assert len(utterances(audio, rate)[0]) == N_UTTERANCES
