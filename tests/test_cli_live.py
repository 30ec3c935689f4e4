"""``ser-live --file``: replay through the engine, JSONL events and a session summary, plain lines, ``--help``.

In-process through ``ser_live.realtime.faces.cli.main`` (fast), plus one real subprocess
of ``python -m ser_live.realtime.faces.cli``.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf

from ser_live.realtime.api import EmotionRecognizer
from ser_live.realtime.faces.cli import build_parser, main
from tests.audio_fixtures import SHORT_TEXT, SpeechClip, convert, speech_clip
from tests.tiny_model import TINY_LABELS, make_tiny_model

ROOT = Path(__file__).resolve().parents[1]
SUBPROCESS_TIMEOUT_S = 60
# rounding of the JSON (4 decimals for probabilities)
PROB_TOL = 1e-4
WINDOW_KEYS = {"type", "schema", "start_s", "end_s", "label", "confidence", "probs", "raw_probs", "speech_ratio",
               "latency_ms", "arousal", "valence", "uncertain", "raw_arousal", "raw_valence", "profile"}
SUMMARY_KEYS = {"type", "schema", "audio_s", "windows", "counts", "time_per_emotion_s", "dominant", "dropped_audio_s",
                "uncertain_s", "arousal_mean", "valence_mean", "time_per_quadrant_s"}


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> SpeechClip:
    return speech_clip(tmp_path_factory.mktemp("speech"), lead_s=1.0, tail_s=1.0)


@pytest.fixture(scope="module")
def speech_wav(clip: SpeechClip, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("wav") / "speech.wav"
    sf.write(path, clip.samples, clip.sample_rate)
    return path


@pytest.fixture(scope="module")
def short_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 2.5 s: speech with a little silence, for the real-time-pace replay."""
    short = speech_clip(tmp_path_factory.mktemp("short"), text=SHORT_TEXT, lead_s=0.3, tail_s=0.3)
    path = tmp_path_factory.mktemp("wav") / "short.wav"
    sf.write(path, short.samples, short.sample_rate)
    return path


def replay(model: Path, audio: Path, *extra: str) -> int:
    """``ser-live --file AUDIO --fast --no-dashboard --model MODEL EXTRA...`` in-process; its exit code."""
    return main(["--file", str(audio), "--fast", "--no-dashboard", "--model", str(model), *extra])


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def without_latency(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != "latency_ms"} for row in rows]


def test_file_fast_jsonl_writes_one_json_per_window_and_a_summary(
    model_path: Path, speech_wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "events.jsonl"
    assert replay(model_path, speech_wav, "--jsonl", str(out)) == 0
    rows = read_jsonl(out)
    windows, summary = rows[:-1], rows[-1]
    assert windows and all(r["type"] == "window" for r in windows)
    assert summary["type"] == "summary" and set(summary) >= SUMMARY_KEYS
    for r in windows:
        assert set(r) == WINDOW_KEYS
        assert r["label"] in TINY_LABELS and set(r["probs"]) == set(TINY_LABELS)
        assert sum(r["probs"].values()) == pytest.approx(1.0, abs=1e-3)
        assert 0 <= r["start_s"] < r["end_s"] and 0 < r["speech_ratio"] <= 1
        assert {"features", "inference", "total"} <= set(r["latency_ms"])
    assert summary["windows"] == len(windows)
    assert sum(summary["counts"].values()) == len(windows)
    assert summary["audio_s"] == pytest.approx(sf.info(str(speech_wav)).duration, abs=1e-3)
    assert summary["dominant"] == max(summary["time_per_emotion_s"], key=summary["time_per_emotion_s"].get)

    # the same events as the Python API's stream over the same file (the same engine)
    rec = EmotionRecognizer(model_path, provider="cpu")
    data, rate = sf.read(str(speech_wav), dtype="float32")
    api = [e.to_dict() for e in rec.stream([data[i : i + 661] for i in range(0, len(data), 661)], rate)]
    assert [(r["start_s"], r["end_s"]) for r in windows] == [(r["start_s"], r["end_s"]) for r in api]
    for got, ref in zip(windows, api, strict=True):
        for label in TINY_LABELS:
            assert got["probs"][label] == pytest.approx(ref["probs"][label], abs=PROB_TOL)
        assert got["label"] == ref["label"] or got["confidence"] == pytest.approx(ref["confidence"], abs=PROB_TOL)

    # stdout (not a terminal): one plain line per window, then the summary line
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(windows) + 1
    assert all(r["label"] in line for r, line in zip(windows, lines, strict=False))
    assert f"{len(windows)} windows" in lines[-1]


def test_fast_and_real_time_pace_give_identical_events(model_path: Path, short_wav: Path, tmp_path: Path) -> None:
    duration = sf.info(str(short_wav)).duration
    assert 2.0 <= duration <= 3.5
    fast_out, paced_out = tmp_path / "fast.jsonl", tmp_path / "paced.jsonl"
    common = ["--file", str(short_wav), "--no-dashboard", "--model", str(model_path)]
    t0 = time.monotonic()
    assert main([*common, "--fast", "--jsonl", str(fast_out)]) == 0
    fast_s = time.monotonic() - t0
    t0 = time.monotonic()
    assert main([*common, "--jsonl", str(paced_out)]) == 0
    paced_s = time.monotonic() - t0
    assert paced_s >= 0.9 * duration, "real-time pace should take about as long as the audio"
    assert fast_s < paced_s
    fast, paced = read_jsonl(fast_out), read_jsonl(paced_out)
    assert len([r for r in fast if r["type"] == "window"]) >= 1
    assert without_latency(fast) == without_latency(paced)


def test_jsonl_to_stdout_gives_only_json_there(
    model_path: Path, speech_wav: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert replay(model_path, speech_wav, "--jsonl", "-") == 0
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]  # every line is JSON
    assert rows[-1]["type"] == "summary" and rows[-1]["windows"] == len(rows) - 1 > 0
    assert "windows" in captured.err  # the human summary goes to stderr
    assert "Traceback" not in captured.err


def test_subprocess_replay_to_stdout(model_path: Path, speech_wav: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ser_live.realtime.faces.cli", "--file", str(speech_wav), "--fast", "--jsonl", "-",
         "--no-dashboard",
         "--model", str(model_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["type"] for r in rows] == ["window"] * (len(rows) - 1) + ["summary"]
    assert len(rows) > 1
    assert "Traceback" not in proc.stderr


def test_input_formats_replay(model_path: Path, clip: SpeechClip, tmp_path: Path) -> None:
    """Stereo 48 kHz and mono 16 kHz files of the same speech give (nearly) the same windows."""
    counts = {}
    for rate, channels in ((16000, 1), (48000, 2)):
        path = tmp_path / f"speech_{rate}_{channels}.wav"
        sf.write(path, convert(clip.samples, clip.sample_rate, rate, channels), rate)
        out = tmp_path / f"{rate}.jsonl"
        assert replay(model_path, path, "--jsonl", str(out)) == 0
        counts[rate] = read_jsonl(out)[-1]["windows"]
    assert counts[16000] > 0 and abs(counts[16000] - counts[48000]) <= 2


def test_engine_options_reach_the_engine(model_path: Path, speech_wav: Path, tmp_path: Path) -> None:
    base, off, hop = tmp_path / "base.jsonl", tmp_path / "off.jsonl", tmp_path / "hop.jsonl"
    assert replay(model_path, speech_wav, "--jsonl", str(base)) == 0
    assert replay(model_path, speech_wav, "--jsonl", str(off), "--smoothing", "1") == 0
    assert replay(model_path, speech_wav, "--jsonl", str(hop), "--hop", "1.024") == 0
    off_rows = [r for r in read_jsonl(off) if r["type"] == "window"]
    assert all(r["probs"] == r["raw_probs"] for r in off_rows)
    base_rows = [r for r in read_jsonl(base) if r["type"] == "window"]
    assert any(r["probs"] != r["raw_probs"] for r in base_rows)
    hop_rows = [r for r in read_jsonl(hop) if r["type"] == "window"]
    assert 0 < len(hop_rows) < len(base_rows)
    ends = [r["end_s"] for r in hop_rows]
    steps = [(b - a) / 1.024 for a, b in itertools.pairwise(ends)]
    assert steps and all(step == pytest.approx(round(step), abs=1e-3) and step >= 1 for step in steps)


def option_entries(help_text: str) -> dict[str, str]:
    """Each option's entry in ``--help`` (its line and the indented lines under it), by every option string."""
    entries: list[list[str]] = []
    for line in help_text.splitlines():
        if re.match(r"^ {2}-", line):
            entries.append([line])
        elif entries and line.startswith(" " * 4) and line.strip():
            entries[-1].append(line)
        elif entries and entries[-1]:
            entries.append([])  # a blank line or a group title ends an entry
    out: dict[str, str] = {}
    for entry in filter(None, entries):
        text = " ".join(" ".join(entry).split())
        invocation = re.split(r" {2,}", entry[0].strip())[0]
        for option in re.findall(r"(?:^|[ ,])(--?[A-Za-z][-\w]*)", invocation):
            out[option] = text
    return out


def test_help_documents_every_option_with_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    blocks = option_entries(text)
    for action in build_parser()._actions:
        for option in action.option_strings:
            assert option in blocks, f"{option} missing from --help"
        if not action.option_strings or action.nargs == 0 or action.dest in ("help", "version"):
            continue
        entry = blocks[action.option_strings[-1]]
        assert "(default:" in entry, f"{action.option_strings[-1]} shows no default: {entry!r}"
        assert "(default: None)" not in entry and len(entry) > len(action.option_strings[-1]) + 10
    assert "(default: 2)" in blocks["--vad"] and "(default: 1)" in blocks["--threads"]


def test_dashboard_path_runs_on_a_terminal(
    model_path: Path, speech_wav: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With a terminal on stdout (and no --no-dashboard) the live dashboard drives the same events."""
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    out = tmp_path / "dash.jsonl"
    code = main(["--file", str(speech_wav), "--fast", "--model", str(model_path), "--jsonl", str(out)])
    assert code == 0
    rows = read_jsonl(out)
    assert rows[-1]["windows"] == len(rows) - 1 > 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert f"{len(rows) - 1} windows" in captured.err  # the summary line goes below the dashboard
    plain = re.compile(r"^\s*\d+\.\d\d-\s*\d+\.\d\d s ")
    assert not any(plain.match(line) for line in captured.out.splitlines()), "plain lines under the dashboard"
