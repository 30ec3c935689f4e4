"""realtime/events.py: WindowEvent JSON, SessionSummary arithmetic, JsonlWriter flushing and errors."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ser_live.realtime.errors import UserError
from ser_live.realtime.events import JsonlWriter, SessionSummary, WindowEvent

LABELS = ("angry", "happy", "neutral", "sad")
ROOT = Path(__file__).resolve().parents[1]


def _event(label: str = "happy", start: float = 0.0, **over: object) -> WindowEvent:
    probs = {k: (0.7 if k == label else 0.1) for k in LABELS}
    kwargs: dict[str, object] = {
        "start_s": start,
        "end_s": start + 2.0,
        "label": label,
        "confidence": probs.get(label, 0.0),
        "probs": probs,
        "raw_probs": dict(probs),
        "speech_ratio": 0.8,
        "latency_ms": {"features": 0.21, "inference": 0.13, "total": 0.4},
    }
    kwargs.update(over)
    return WindowEvent(**kwargs)  # type: ignore[arg-type]


# -- WindowEvent ------------------------------------------------------------------------------------------
def test_window_event_to_dict_rounds_and_types() -> None:
    ev = _event(
        start=1.23456789,
        confidence=np.float32(0.123456789),
        probs={"happy": np.float32(0.123456789), "sad": 0.876543},
        latency_ms={"features": 0.1234567, "inference": np.float64(1.0), "total": 2.00049},
    )
    d = ev.to_dict()
    assert d["type"] == "window"
    assert d["start_s"] == 1.235 and d["end_s"] == 3.235
    assert d["confidence"] == 0.1235 and type(d["confidence"]) is float
    assert d["probs"] == {"happy": 0.1235, "sad": 0.8765}
    assert d["latency_ms"] == {"features": 0.123, "inference": 1.0, "total": 2.0}
    assert set(d) == {
        "type", "schema", "start_s", "end_s", "label", "confidence", "probs", "raw_probs", "speech_ratio", "latency_ms",
        "arousal", "valence", "uncertain", "raw_arousal", "raw_valence", "profile",
    }  # fmt: skip
    assert d["arousal"] is None and d["valence"] is None and d["uncertain"] is False


def test_window_event_affect_and_uncertain_round_trip() -> None:
    ev = _event(arousal=0.123456, valence=-0.5, uncertain=True, raw_arousal=0.25, raw_valence=-0.75)
    d = json.loads(json.dumps(ev.to_dict()))
    assert d["arousal"] == 0.1235 and d["valence"] == -0.5 and d["uncertain"] is True
    assert d["raw_arousal"] == 0.25 and d["raw_valence"] == -0.75
    back = WindowEvent.from_dict(d)
    assert back.uncertain and back.shown_label == "uncertain" and back.valence == -0.5
    assert back.raw_arousal == 0.25 and back.raw_valence == -0.75
    # JSONL of older versions
    old = {k: v for k, v in d.items() if k not in ("arousal", "valence", "uncertain", "raw_arousal", "raw_valence")}
    legacy = WindowEvent.from_dict(old)
    assert legacy.arousal is None and not legacy.uncertain and legacy.shown_label == legacy.label


def test_summary_uncertain_time_and_affect() -> None:
    s = SessionSummary(labels=LABELS)
    s.add(_event("happy", arousal=0.5, valence=0.4), 0.5)
    s.add(_event("happy", arousal=0.3, valence=-0.2), 0.5)
    s.add(_event("sad", arousal=-0.6, valence=-0.8, uncertain=True), 0.5)
    s.add(_event("sad"), 0.5)  # a model without dimensions
    d = s.to_dict()
    assert d["windows"] == 4 and d["uncertain_windows"] == 1 and d["uncertain_s"] == 0.5
    assert d["time_per_emotion_s"]["happy"] == 1.0 and d["time_per_emotion_s"]["sad"] == 0.5
    assert d["counts"]["sad"] == 1  # the uncertain window is not counted as sad
    assert d["arousal_mean"] == round((0.5 + 0.3 - 0.6) / 3, 4)
    assert d["valence_mean"] == round((0.4 - 0.2 - 0.8) / 3, 4)
    assert d["time_per_quadrant_s"] == {"high_positive": 0.5, "high_negative": 0.5, "low_negative": 0.5,
                                        "low_positive": 0.0}
    only_uncertain = SessionSummary(labels=LABELS)
    only_uncertain.add(_event("sad", uncertain=True), 0.5)
    assert only_uncertain.dominant is None and only_uncertain.to_dict()["arousal_mean"] is None


def test_window_event_json_round_trip() -> None:
    ev = _event("sad", start=4.5)
    d = ev.to_dict()
    line = json.dumps(d)
    back = json.loads(line)
    assert back == d
    again = WindowEvent.from_dict(back)
    assert again == ev  # values were already at the rounding resolution
    with pytest.raises(ValueError, match="not a window event"):
        WindowEvent.from_dict({"type": "summary"})


def test_window_event_non_finite_becomes_null() -> None:
    d = _event(confidence=float("nan"), latency_ms={"total": float("inf")}).to_dict()
    assert d["confidence"] is None and d["latency_ms"]["total"] is None
    json.loads(json.dumps(d, allow_nan=False))  # strictly valid JSON


def test_window_event_is_frozen() -> None:
    ev = _event()
    with pytest.raises(AttributeError):
        ev.label = "sad"  # type: ignore[misc]


# -- SessionSummary ---------------------------------------------------------------------------------------
def test_summary_arithmetic() -> None:
    s = SessionSummary(labels=LABELS)
    hop = 0.5
    for label in ["happy", "happy", "sad", "happy", "neutral"]:
        s.add(_event(label), hop)
    s.audio_s += 12.0
    s.add_audio(audio_s=3.0, speech_s=4.25)
    s.windows_total = 30
    s.dropped_audio_s = 0.128
    s.overflows = 2
    d = s.to_dict()
    assert d["type"] == "summary"
    assert d["windows"] == 5 and d["windows_total"] == 30
    assert d["counts"] == {"angry": 0, "happy": 3, "neutral": 1, "sad": 1}
    assert d["time_per_emotion_s"] == {"angry": 0.0, "happy": 1.5, "neutral": 0.5, "sad": 0.5}
    assert sum(d["time_per_emotion_s"].values()) == pytest.approx(5 * hop)
    assert list(d["counts"]) == list(LABELS)  # label order kept
    assert d["dominant"] == "happy"
    assert d["audio_s"] == 15.0 and d["speech_s"] == 4.25
    assert d["dropped_audio_s"] == 0.128 and d["overflows"] == 2
    assert json.loads(json.dumps(d)) == d


def test_summary_without_labels_and_unknown_label() -> None:
    s = SessionSummary()
    assert s.dominant is None
    d = s.to_dict()
    assert d["windows"] == 0 and d["counts"] == {} and d["dominant"] is None
    s.add(_event("sad"), 0.25)
    s.add(_event("angry"), 0.25)
    assert list(s.to_dict()["counts"]) == ["angry", "sad"]  # sorted when no label order is given
    assert s.dominant == "angry"  # tie: first in order
    t = SessionSummary(labels=("b", "a"))
    t.add(_event("zzz", confidence=0.9), 1.0)
    assert list(t.to_dict()["counts"]) == ["b", "a", "zzz"]


def test_summaries_do_not_share_state() -> None:
    a, b = SessionSummary(), SessionSummary()
    a.add(_event("sad"), 1.0)
    assert b.counts == {} and b.windows == 0


# -- JsonlWriter ------------------------------------------------------------------------------------------
def test_writer_flushes_each_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    w = JsonlWriter(path)
    try:
        for i in range(3):
            w.write(_event(start=float(i)).to_dict())
            lines = path.read_text(encoding="utf-8").splitlines()  # read while the writer is open
            assert len(lines) == i + 1
            assert json.loads(lines[-1])["start_s"] == float(i)
        w.write(SessionSummary(labels=LABELS).to_dict())
        assert json.loads(path.read_text(encoding="utf-8").splitlines()[-1])["type"] == "summary"
    finally:
        w.close()
    assert w.lines_written == 4 and w.closed
    w.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        w.write({"type": "window"})


def test_writer_appends_or_truncates(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    with JsonlWriter(path) as w:
        w.write({"n": 1})
    with JsonlWriter(path) as w:
        w.write({"n": 2})
    assert [json.loads(x)["n"] for x in path.read_text().splitlines()] == [1, 2]
    with JsonlWriter(path, append=False) as w:
        w.write({"n": 3})
    assert [json.loads(x)["n"] for x in path.read_text().splitlines()] == [3]


def test_writer_serialises_numpy_and_unicode(tmp_path: Path) -> None:
    path = tmp_path / "np.jsonl"
    with JsonlWriter(path) as w:
        w.write({"a": np.float32(0.5), "b": np.arange(3), "c": np.int64(7), "label": "überrascht"})
        with pytest.raises(TypeError):
            w.write({"bad": object()})
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1  # the failed object left nothing half-written
    assert json.loads(lines[0]) == {"a": 0.5, "b": [0, 1, 2], "c": 7, "label": "überrascht"}


def test_writer_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    w = JsonlWriter("-")
    w.write(_event().to_dict())
    w.write({"type": "summary"})
    w.close()
    w.close()
    out = capsys.readouterr().out.splitlines()
    assert [json.loads(x)["type"] for x in out] == ["window", "summary"]
    print("stdout still open")  # close() must not close stdout
    assert "still open" in capsys.readouterr().out


@pytest.mark.parametrize("where", ["missing_dir", "directory"])
def test_writer_unwritable_path(tmp_path: Path, where: str) -> None:
    target = tmp_path / "no" / "such" / "dir" / "e.jsonl" if where == "missing_dir" else tmp_path
    with pytest.raises(UserError) as err:
        JsonlWriter(target)
    msg = str(err.value)
    assert msg.startswith(f"cannot write JSONL to {target}: ")
    assert msg.endswith("; choose a writable path or '-'")
    assert "\n" not in msg


def test_writer_path_below_a_file(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    with pytest.raises(UserError, match="Not a directory"):
        JsonlWriter(plain / "e.jsonl")


def test_writer_full_disk() -> None:
    if not Path("/dev/full").exists():
        pytest.fail("/dev/full is expected on Linux")
    w = JsonlWriter("/dev/full")
    with pytest.raises(UserError, match="cannot write JSONL to /dev/full: No space left"):
        w.write({"x": 1})
    w.close()  # the failure was reported once; closing does not raise it again
    assert w.closed


class _BrokenStdout(io.StringIO):
    def write(self, s: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_writer_broken_pipe_is_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdout", _BrokenStdout())
    w = JsonlWriter("-")
    w.write({"x": 1})  # no exception
    assert w.broken and w.lines_written == 0
    w.write({"x": 2})
    w.close()


def test_writer_piped_into_head_exits_cleanly() -> None:
    code = (
        "from ser_live.realtime.events import JsonlWriter\n"
        "w = JsonlWriter('-')\n"
        "for i in range(20000):\n"
        "    w.write({'type': 'window', 'i': i, 'pad': 'x' * 100})\n"
        "w.close()\n"
    )
    proc = subprocess.run(
        f'{sys.executable} -c "{code}" | head -n 2',
        shell=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert [json.loads(x)["i"] for x in proc.stdout.splitlines()] == [0, 1]
    assert proc.stderr == ""


def test_events_carry_the_schema_and_a_newer_schema_is_refused() -> None:
    from ser_live.realtime.events import EVENT_SCHEMA

    event = WindowEvent(0.0, 2.0, "happy", 0.7, {"happy": 0.7, "sad": 0.3}, {"happy": 0.6, "sad": 0.4}, 0.9)
    d = event.to_dict()
    assert d["schema"] == EVENT_SCHEMA and SessionSummary(labels=("happy",)).to_dict()["schema"] == EVENT_SCHEMA
    old = {k: v for k, v in d.items() if k != "schema"}  # written before 0.2.0
    assert WindowEvent.from_dict(old).label == "happy"
    with pytest.raises(ValueError, match="newer than this ser-live reads"):
        WindowEvent.from_dict({**d, "schema": EVENT_SCHEMA + 1})
