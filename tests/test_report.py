"""ser-report and ser-live --report: a PNG and a Markdown summary from window events (report/session.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser_live.realtime.errors import UserError
from ser_live.realtime.events import SessionSummary, WindowEvent
from ser_live.realtime.faces.cli import main as live_main
from ser_live.report.cli import main as report_main
from ser_live.report.session import _segments, markdown, read_jsonl, session_from_events
from tests.audio_fixtures import voiced_tone
from tests.tiny_model import TINY_LABELS, make_tiny_model

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SR = 16000
HOP = 0.5


def _event(end: float, label: str, uncertain: bool = False) -> WindowEvent:
    probs = {k: (0.7 if k == label else 0.05) for k in TINY_LABELS}
    return WindowEvent(end - 2.0, end, label, 0.7, probs, probs, 0.9, {"total": 1.0}, arousal=0.4, valence=-0.3,
                       uncertain=uncertain)


def _jsonl(path: Path, events: list[WindowEvent], with_summary: bool = True) -> Path:
    summary = SessionSummary(labels=TINY_LABELS)
    for e in events:
        summary.add(e, HOP)
    summary.audio_s = 20.0
    lines = [json.dumps(e.to_dict()) for e in events]
    if with_summary:
        lines.append(json.dumps(summary.to_dict()))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _speech_then_pause() -> list[WindowEvent]:
    first = [_event(2.0 + HOP * i, "happy") for i in range(6)]  # 2.0 .. 4.5 s
    second = [_event(12.0 + HOP * i, "sad", uncertain=(i == 2)) for i in range(5)]  # after a 7.5 s pause
    return first + second


def test_ser_report_writes_a_png_and_a_markdown_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    events = _jsonl(tmp_path / "events.jsonl", _speech_then_pause())
    png = tmp_path / "session.png"
    assert report_main([str(events), "-o", str(png)]) == 0
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000
    md = (tmp_path / "session.md").read_text(encoding="utf-8")
    assert "mostly **happy**" in md and "uncertain 0.5 s (1 windows)" in md
    assert "| happy | 3.0 |" in md and "| sad | 2.0 |" in md and "| uncertain | 0.5 |" in md
    assert "mean arousal +0.40, mean valence -0.30" in md
    assert "wrote" in capsys.readouterr().out


def test_a_byte_order_mark_does_not_cost_the_first_window(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "bom.jsonl", _speech_then_pause())
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    session = read_jsonl(path)
    assert len(session.events) == len(_speech_then_pause()) and session.events[0].end_s == 2.0


def test_a_file_of_several_sessions_reports_one_of_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """ser-live --append makes a file of several sessions: without --session N it is refused in one line that lists
    them (never all of them drawn on one axis); with it, the report is of that session, with a note."""
    first = _jsonl(tmp_path / "a.jsonl", _speech_then_pause())
    second = _jsonl(tmp_path / "b.jsonl", [_event(2.0 + HOP * i, "sad") for i in range(4)])
    both = tmp_path / "both.jsonl"
    both.write_text(first.read_text() + second.read_text())
    with pytest.raises(UserError, match=r"holds 2 sessions \(ser-live --append\): 1: 20\.0 s, 11 windows; 2: 20\.0 s, "
                                        r"4 windows; pass --session N"):
        read_jsonl(both)
    last = read_jsonl(both, 2)
    assert [e.label for e in last.events] == ["sad"] * 4 and last.summary["windows"] == 4
    assert any("holds 2 sessions" in note and "session 2" in note for note in last.notes)
    assert report_main([str(both), "-o", str(tmp_path / "x.png")]) == 2
    assert "pass --session N" in capsys.readouterr().err and not (tmp_path / "x.png").exists()
    one = read_jsonl(both, 1)
    assert len(one.events) == len(_speech_then_pause()) and one.summary["windows"] == len(one.events)
    with pytest.raises(UserError, match="holds 2 session"):
        read_jsonl(both, 3)
    assert report_main([str(both), "-o", str(tmp_path / "r.png"), "--session", "1"]) == 0
    err = capsys.readouterr().err
    assert "note: the file holds 2 sessions" in err and "this report is of session 1" in err
    assert "mostly **happy**" in (tmp_path / "r.md").read_text(encoding="utf-8")


def test_a_session_of_uncertain_windows_says_so() -> None:
    from ser_live.realtime.faces.cli import summary_line

    summary = SessionSummary(labels=TINY_LABELS)
    for i in range(3):
        summary.add(_event(2.0 + HOP * i, "happy", uncertain=True), HOP)
    line = summary_line(summary.to_dict())
    assert "mostly uncertain" in line and "None" not in line


def test_pauses_split_the_curves_and_a_missing_summary_is_recomputed(tmp_path: Path) -> None:
    session = read_jsonl(_jsonl(tmp_path / "cut.jsonl", _speech_then_pause(), with_summary=False))
    assert session.hop_s == HOP
    assert [len(run) for run in _segments(session.events, session.hop_s)] == [6, 5]
    assert session.summary["time_per_emotion_s"]["happy"] == 3.0 and session.summary["uncertain_s"] == 0.5
    assert "did not end normally" in markdown(session)


def test_bad_inputs_give_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.jsonl"
    junk.write_text("not json\n{\"type\": \"other\"}\n", encoding="utf-8")
    assert report_main([str(junk), "-o", str(tmp_path / "x.png")]) == 2
    assert "holds no ser-live events" in capsys.readouterr().err
    deep = tmp_path / "deep.jsonl"
    deep.write_text("[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")  # deeper than the parser goes
    assert report_main([str(deep), "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "nested too deep" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert report_main([str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "x.png")]) == 2
    assert "not found" in capsys.readouterr().err
    events = _jsonl(tmp_path / "events.jsonl", _speech_then_pause())
    assert report_main([str(events), "-o", str(tmp_path / "x.jpg")]) == 2
    assert "ending in .png" in capsys.readouterr().err
    assert report_main([str(events), "-o", str(tmp_path / "no" / "such" / "dir.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.png"))


@pytest.fixture
def replay(tmp_path: Path) -> dict[str, Path]:
    model = make_tiny_model(tmp_path / "tiny.onnx", preset_name="logmel")
    wav = tmp_path / "talk.wav"
    voice = voiced_tone(170.0, 3.0, 0.3, 4.0, seed=2, sample_rate=SR)
    sf.write(wav, np.concatenate([voice, np.zeros(3 * SR, np.float32), voice]), SR)
    return {"model": model, "wav": wav}


def test_ser_live_report_at_the_end_of_a_replay(replay: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "live.png"
    code = live_main(["--file", str(replay["wav"]), "--fast", "--no-dashboard", "--model", str(replay["model"]),
                      "--report", str(png), "--jsonl", str(tmp_path / "e.jsonl")])
    assert code == 0
    assert png.read_bytes()[:8] == PNG_MAGIC
    md = (tmp_path / "live.md").read_text(encoding="utf-8")
    saved = read_jsonl(tmp_path / "e.jsonl")
    assert f"{len(saved.events)} classified windows" in md
    assert session_from_events(saved.events, saved.summary).summary == saved.summary


def test_ser_live_report_without_matplotlib_fails_at_start(
    replay: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    events = tmp_path / "e.jsonl"
    code = live_main(["--file", str(replay["wav"]), "--fast", "--no-dashboard", "--model", str(replay["model"]),
                      "--report", str(tmp_path / "r.png"), "--jsonl", str(events)])
    err = capsys.readouterr().err
    assert code == 2 and "ser-live[report]" in err and len(err.strip().splitlines()) == 1
    assert not events.exists()  # nothing started
