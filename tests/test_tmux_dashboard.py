"""What a person sees: ``ser-live`` on the (virtual) microphone in an 80x24 tmux pane, read back with capture-pane.

The dashboard is checked on screen (the emotion, a bar per label, the timeline, "listening" and the level meter in
silence, the elapsed time and level moving between windows), then Ctrl-C and SIGTERM must end it cleanly: exit 0,
no traceback on screen, the JSONL complete with the summary last. tmux runs on a private socket with its own
config; every process started here is stopped by PID. Set ``SER_LIVE_SCREEN_OUT=path`` to keep a captured screen.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.audio_fixtures import espeak_wav
from tests.terminal import HEIGHT, SESSION, TMUX_TIMEOUT_S, WIDTH, Tmux
from tests.tiny_model import TINY_LABELS, make_tiny_model
from tests.virtual_mic import VirtualMic

pytestmark = pytest.mark.mic

ROOT = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT_S = 30.0  # python + onnxruntime on a loaded machine
SCREEN_TIMEOUT_S = 15.0
EXIT_TIMEOUT_S = 15.0
POLL_S = 0.03
SPEECH_TEXT = "Hello there. I am talking to the emotion monitor."
ELAPSED = re.compile(r"elapsed (\d+):(\d\d)")
WINDOWS = re.compile(r"windows\s+(\d+)")
LEVEL = re.compile(r"level \S+\s+(<?-?\d+) dBFS")
EMOTION = re.compile(r"^(" + "|".join(label.upper() for label in TINY_LABELS) + r") (\d+)%", re.MULTILINE)
BAR_CHARS = "█▉▊▋▌▍▎▏"
SCREEN_OUT_ENV = "SER_LIVE_SCREEN_OUT"


@pytest.fixture(scope="module")
def mic() -> Iterator[VirtualMic]:
    with VirtualMic() as vm:
        yield vm


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return espeak_wav(tmp_path_factory.mktemp("speech") / "speech.wav", SPEECH_TEXT)


def ser_live_command(mic: VirtualMic, model: Path, jsonl: Path, exit_file: Path) -> str:
    args = [sys.executable, "-m", "ser_live.realtime.faces.cli", "--device", "pulse", "--model", str(model), "--jsonl",
            str(jsonl)]
    env = f"PULSE_SERVER={shlex.quote(mic.server)} LC_ALL=C.UTF-8"
    return f"cd {shlex.quote(str(ROOT))} && {env} {shlex.join(args)}; echo EXIT=$? > {shlex.quote(str(exit_file))}"


def wait_exit(exit_file: Path) -> int:
    deadline = time.monotonic() + EXIT_TIMEOUT_S
    while time.monotonic() < deadline:
        text = exit_file.read_text() if exit_file.exists() else ""
        if found := re.match(r"EXIT=(\d+)", text):
            return int(found.group(1))
        time.sleep(POLL_S)
    raise AssertionError(f"ser-live did not exit within {EXIT_TIMEOUT_S} s")


def complete_jsonl(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]  # every line parses
    assert rows and rows[-1]["type"] == "summary"
    windows = rows[:-1]
    assert all(r["type"] == "window" for r in windows)
    assert rows[-1]["windows"] == len(windows) == sum(rows[-1]["counts"].values())
    return windows, rows[-1]


def dashboard_up(screen: str) -> bool:
    return "ser-live ─ mic" in screen and "last 60 s" in screen and bool(ELAPSED.search(screen))


def elapsed_s(screen: str) -> int:
    found = ELAPSED.search(screen)
    assert found, screen
    return 60 * int(found.group(1)) + int(found.group(2))


def windows_shown(screen: str) -> int:
    found = WINDOWS.search(screen)
    assert found, screen
    return int(found.group(1))


def hears_sound(screen: str) -> bool:
    found = LEVEL.search(screen)
    return found is not None and not found.group(1).startswith("<")


def bar_rows(screen: str) -> dict[str, tuple[float, int]]:
    """label -> (fraction of its bar drawn, percent shown) for the bar rows on screen."""
    rows = {}
    for label in TINY_LABELS:
        found = re.search(rf"^{label}\s+([{BAR_CHARS}░]+)\s+(\d+)%", screen, re.MULTILINE)
        if found:
            bar = found.group(1)
            rows[label] = (sum(ch != "░" for ch in bar) / len(bar), int(found.group(2)))
    return rows


def check_bars(screen: str) -> None:
    label, percent = EMOTION.search(screen).groups()  # type: ignore[union-attr]
    bars = bar_rows(screen)
    assert set(bars) == set(TINY_LABELS), screen
    assert bars[label.lower()][1] == int(percent) == max(p for _, p in bars.values())
    assert sum(p for _, p in bars.values()) == pytest.approx(100, abs=len(TINY_LABELS))
    for drawn, p in bars.values():  # bar length follows the percentage (to a cell)
        assert drawn == pytest.approx(p / 100, abs=0.05)


def shows_emotion_then_silence(screen: str) -> bool:
    lines = screen.splitlines()
    rule = next((i for i, line in enumerate(lines) if "last 60 s" in line), None)
    return (
        bool(EMOTION.search(screen))
        and rule is not None
        and rule + 1 < len(lines)
        and re.search(r"█+·+$", lines[rule + 1]) is not None
    )


def test_dashboard_on_the_microphone_then_ctrl_c(
    mic: VirtualMic, model_path: Path, speech_wav: Path, tmp_path: Path
) -> None:
    jsonl, exit_file = tmp_path / "events.jsonl", tmp_path / "exit.txt"
    with Tmux(ser_live_command(mic, model_path, jsonl, exit_file)) as tmux:
        assert tmux.pane("#{pane_width}x#{pane_height}") == f"{WIDTH}x{HEIGHT}"
        # silence: listening, the level meter at its floor; the clock runs with no window at all
        first = tmux.wait_for("dashboard in silence", lambda s: dashboard_up(s) and "○ silence" in s, STARTUP_TIMEOUT_S)
        assert "listening…" in first and "<-60 dBFS" in first and windows_shown(first) == 0
        later = tmux.wait_for("clock moving", lambda s: elapsed_s(s) >= elapsed_s(first) + 1)
        assert windows_shown(later) == 0 and "listening…" in later

        player = mic.play(speech_wav)
        try:
            # the level meter and the speech light move before the first window is classified
            sound = tmux.wait_for("input level", hears_sound)
            assert windows_shown(sound) == 0, f"no redraw between windows:\n{sound}"
            tmux.wait_for("speech indicator", lambda s: "● speech" in s)
            # the emotion, one bar per label (the largest for the label shown)
            screen = tmux.wait_for("emotion", lambda s: bool(EMOTION.search(s)) and len(bar_rows(s)) == 7)
            check_bars(screen)
            assert player.wait(SCREEN_TIMEOUT_S) == 0
        finally:
            if player.poll() is None:
                player.kill()
        # after the speech, still showing its emotion: the timeline has the windows, then silence
        screen = tmux.wait_for("timeline with silence after speech", lambda s: shows_emotion_then_silence(s))
        check_bars(screen)
        lines = screen.splitlines()
        rule = next(i for i, line in enumerate(lines) if "last 60 s" in line)
        assert "-60 s" in lines[rule + 2] and "now" in lines[rule + 2]
        assert all(f"■ {label}" in lines[rule + 3] for label in TINY_LABELS)
        assert max(map(len, lines)) <= WIDTH and len(lines) <= HEIGHT
        assert windows_shown(screen) >= 1
        # the affect panel: arousal and valence as signed bars around an axis, with their values
        for name in ("arousal", "valence"):
            row = next((line for line in lines if line.startswith(name)), "")
            assert "│" in row and re.search(r"[+-]\d\.\d\d", row), screen
        if out := os.environ.get(SCREEN_OUT_ENV):
            Path(out).write_text(screen, encoding="utf-8")
        # a while later: listening again, with the last emotion
        tmux.wait_for("listening after speech", lambda s: re.search(r"listening…\s+\(last: [a-z]+ \d+%\)", s))

        tmux.tmux("send-keys", "-t", SESSION, "C-c")
        code = wait_exit(exit_file)
        final = tmux.screen()
    assert code == 0, final
    assert "Traceback" not in final and "error" not in final.lower()
    windows, summary = complete_jsonl(jsonl)
    assert windows and summary["speech_s"] > 0
    assert f"{summary['windows']} windows" in final  # the session summary under the last frame


def test_sigterm_exits_as_cleanly_as_ctrl_c(
    mic: VirtualMic, model_path: Path, speech_wav: Path, tmp_path: Path
) -> None:
    jsonl, exit_file = tmp_path / "events.jsonl", tmp_path / "exit.txt"
    with Tmux(ser_live_command(mic, model_path, jsonl, exit_file)) as tmux:
        tmux.wait_for("dashboard", dashboard_up, STARTUP_TIMEOUT_S)
        player = mic.play(speech_wav)
        try:
            tmux.wait_for("emotion", lambda s: bool(EMOTION.search(s)))
        finally:
            player.kill()
            player.wait(TMUX_TIMEOUT_S)
        [pid] = tmux.children()
        os.kill(pid, signal.SIGTERM)
        code = wait_exit(exit_file)
        final = tmux.screen()
    assert code == 0, final
    assert "Traceback" not in final and "error" not in final.lower()
    windows, summary = complete_jsonl(jsonl)
    assert windows
    assert f"{summary['windows']} windows" in final
