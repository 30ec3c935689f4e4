"""The enrolment session without a device: the plan, the take check, the screens and the guided loop."""

from __future__ import annotations

import os
import pty
import termios
import threading
from collections.abc import Callable
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from rich.console import Console

from ser_live.realtime.errors import UserError
from ser_live.realtime.faces.cli import main as live_main
from ser_live.realtime.faces.enroll import (
    SENTENCES,
    EnrollConfig,
    Prompt,
    Screen,
    check_take,
    plan,
    read_key,
    render_screen,
    run_session,
)
from ser_live.realtime.model import EmotionModel, load_model
from tests.audio_fixtures import espeak_wav
from tests.tiny_model import make_tiny_model


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> EmotionModel:
    return load_model(make_tiny_model(tmp_path_factory.mktemp("m") / "tiny.onnx", preset_name="logmel",
                                      embedding=True))


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, int]:
    path = espeak_wav(tmp_path_factory.mktemp("s") / "take.wav", "The train leaves the station at seven.")
    samples, rate = sf.read(str(path), dtype="float32")
    return samples, rate


def test_plan_gives_each_take_a_neutral_sentence() -> None:
    prompts = plan(("angry", "sad"), 3)
    assert [(p.label, p.number) for p in prompts] == [("angry", 1), ("angry", 2), ("angry", 3), ("sad", 1),
                                                       ("sad", 2), ("sad", 3)]
    assert [p.sentence for p in prompts] == list(SENTENCES[:6])


def test_take_check_refuses_with_the_reason(model: EmotionModel, speech: tuple[np.ndarray, int]) -> None:
    samples, rate = speech
    good = check_take(model, samples, rate, "sad")
    assert good.ok and good.take is not None and good.take.embeddings.shape[1] == model.info.embedding.size
    silence = check_take(model, np.zeros(3 * rate, np.float32), rate, "sad")
    assert not silence.ok and "too quiet" in silence.reason and "silence" in silence.reason
    quiet = check_take(model, samples * 0.005, rate, "sad")
    assert not quiet.ok and "too quiet" in quiet.reason and "dBFS" in quiet.reason
    clipped = check_take(model, np.clip(samples * 30, -1, 1), rate, "sad")
    assert not clipped.ok and "clipped" in clipped.reason
    hum = 0.3 * np.sin(2 * np.pi * 50 * np.arange(3 * rate) / rate).astype(np.float32)  # loud, but no speech
    assert not check_take(model, hum, rate, "sad").ok
    assert "no speech" in check_take(model, hum, rate, "sad").reason
    assert not check_take(model, np.zeros(0, np.float32), rate, "sad").ok


@pytest.mark.parametrize("phase", ["ready", "countdown", "recording", "kept", "refused"])
def test_screens_render_in_80_columns(phase: str) -> None:
    screen = Screen(Prompt("angry", 2, SENTENCES[1]), 1, 6, phase, seconds_left=2.5, level_dbfs=-18.0,
                    message="clipped (3 % of samples at full scale)", kept={"angry": 1})
    out = StringIO()
    Console(file=out, width=80, color_system=None).print(render_screen(screen))
    text = out.getvalue()
    assert "take 2 of 6" in text and "ANGRY" in text and SENTENCES[1] in text
    assert max(map(len, text.splitlines())) <= 80
    expected = {"ready": "Enter = record", "countdown": "recording in 3", "recording": "● recording",
                "kept": "take kept", "refused": "take refused: clipped"}[phase]
    assert expected in text


def scripted(keys: list[str]) -> Callable[[], str]:
    it = iter(keys)
    return lambda: next(it)


def test_session_loop_redo_skip_and_refusals(model: EmotionModel, speech: tuple[np.ndarray, int]) -> None:
    samples, rate = speech
    recordings = iter([np.zeros(rate, np.float32), samples, samples, samples])  # silence first: refused
    calls: list[float] = []

    def record(seconds: float, progress: Callable[[float, float | None], None]) -> tuple[np.ndarray, int]:
        calls.append(seconds)
        progress(0.0, -20.0)
        return next(recordings), rate

    shown: list[Screen] = []
    config = EnrollConfig(labels=("angry", "sad"), takes_per_label=2, take_s=2.0, countdown_s=0.0)
    # angry 1: record (silence, refused) -> try again (kept) -> redo (kept) -> next; angry 2: skip angry;
    # sad 1: record (kept) -> finish now
    keys = ["", "", "r", "", "s", "", "q"]
    takes = run_session(model, config, record, scripted(keys), shown.append)
    assert [t.label for t in takes] == ["angry", "sad"]
    assert calls == [2.0] * 4
    phases = [s.phase for s in shown]
    assert phases.count("refused") == 1 and phases.count("kept") == 3
    assert any("too quiet" in s.message for s in shown if s.phase == "refused")


def test_enroll_options_are_checked_before_the_microphone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    existing = tmp_path / "me.json"
    existing.write_text("{}")
    assert live_main(["--enroll", str(existing)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert live_main(["--enroll", str(tmp_path / "a.json"), "--file", "x.wav"]) == 2
    assert "leave out --file" in capsys.readouterr().err
    assert live_main(["--enroll", str(tmp_path / "a.json"), "--take-seconds", "nan"]) == 2
    assert "--take-seconds" in capsys.readouterr().err
    assert live_main(["--enroll", str(tmp_path / "a.json"), "--enroll-labels", "bored"]) == 2
    assert "bored" in capsys.readouterr().err
    with pytest.raises(UserError, match="--enroll-takes"):
        EnrollConfig(takes_per_label=0)


def test_a_key_on_a_terminal_answers_without_enter() -> None:
    """On a terminal (a pty here) one key press is the answer: no Enter needed; keys typed before the question (while a
    take recorded) answer nothing; Enter is ''; the terminal's line mode is back afterwards."""
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "r", closefd=False) as stream:
            before = termios.tcgetattr(slave)
            os.write(master, b"x")  # typed during the take: dropped when the question comes

            def type_later(data: bytes) -> None:
                threading.Timer(0.2, os.write, (master, data)).start()

            type_later(b"R")
            assert read_key(stream) == "r"
            assert termios.tcgetattr(slave) == before  # canonical mode and echo restored
            type_later(b"\r")
            assert read_key(stream) == ""
            type_later(b"q")
            assert read_key(stream) == "q"
    finally:
        os.close(master)
        os.close(slave)


def test_keys_from_a_pipe_are_read_a_line_at_a_time() -> None:
    stream = StringIO("s\n\nRedo\n")
    assert [read_key(stream), read_key(stream), read_key(stream), read_key(stream)] == ["s", "", "r", "q"]
