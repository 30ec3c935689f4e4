"""``ser-live --enroll`` as a person does it: in a tmux pane, on the (virtual) microphone, with espeak-ng takes.

The test answers the prompts with tmux send-keys and plays each take into the PulseAudio null sink when the screen
says "recording": a silent take and a clipped one must be refused with their reason, a kept take can be redone,
and the session ends with a profile written for the model (the labels enrolled, two takes each), exit code 0 and
no traceback on screen.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser_live.realtime.model import load_model
from ser_live.realtime.profile import load_profile
from tests.audio_fixtures import espeak_wav
from tests.terminal import Tmux
from tests.tiny_model import make_tiny_model
from tests.virtual_mic import VirtualMic

pytestmark = pytest.mark.mic

ROOT = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT_S = 40.0
STEP_TIMEOUT_S = 20.0
EXIT_TIMEOUT_S = 30.0
TAKE_S = 3.0
TEXT = "The train leaves at seven."


@pytest.fixture(scope="module")
def mic() -> Iterator[VirtualMic]:
    with VirtualMic() as vm:
        yield vm


@pytest.fixture(scope="module")
def takes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("takes")
    out = {
        "angry1": espeak_wav(root / "angry1.wav", TEXT, speed=220, pitch=80),
        "angry2": espeak_wav(root / "angry2.wav", "Put the folder on the table.", speed=230, pitch=85),
        "sad1": espeak_wav(root / "sad1.wav", TEXT, speed=100, pitch=15),
        "sad2": espeak_wav(root / "sad2.wav", "Put the folder on the table.", speed=95, pitch=10),
    }
    speech, rate = sf.read(str(out["angry1"]), dtype="float32")
    sf.write(root / "clipped.wav", np.clip(speech * 40.0, -1.0, 1.0), rate, subtype="PCM_16")
    out["clipped"] = root / "clipped.wav"
    return out


def wait_text(tmux: Tmux, text: str, timeout: float = STEP_TIMEOUT_S) -> str:
    return tmux.wait_for(repr(text), lambda screen: text in screen, timeout=timeout)


MARKERS = ("● recording", "recording in", "take kept", "take refused", "Enter = record")


def last_prompt(screen: str) -> str:
    """The last state line on screen (recording / countdown / kept / refused / ready)."""
    for line in reversed(screen.splitlines()):
        if any(marker in line for marker in MARKERS):
            return line
    return ""


def record(tmux: Tmux, mic: VirtualMic, wav: Path | None, expect: str, key: str = "Enter") -> str:
    """Press ``key`` (one key, no Enter after it), play ``wav`` (None: silence) once recording starts, wait for the
    verdict ``expect``."""
    tmux.send(key)
    tmux.wait_for("recording", lambda screen: "● recording" in last_prompt(screen), timeout=STEP_TIMEOUT_S)
    if wav is not None:
        assert mic.play(wav).wait(STEP_TIMEOUT_S) == 0
    return tmux.wait_for(expect, lambda screen: expect in last_prompt(screen), timeout=STEP_TIMEOUT_S + TAKE_S)


def test_enroll_session_on_the_microphone(mic: VirtualMic, takes: dict[str, Path], tmp_path: Path) -> None:
    model = make_tiny_model(tmp_path / "tiny.onnx", preset_name="logmel", embedding=True)
    profile_path = tmp_path / "me.json"
    exit_file = tmp_path / "exit"
    args = [sys.executable, "-m", "ser_live.realtime.faces.cli", "--enroll", str(profile_path), "--device", "pulse",
            "--model",
            str(model), "--enroll-labels", "angry,sad", "--enroll-takes", "2", "--take-seconds", str(TAKE_S),
            "--countdown", "0.5"]
    command = (f"cd {shlex.quote(str(ROOT))} && PULSE_SERVER={shlex.quote(mic.server)} LC_ALL=C.UTF-8 "
               f"{shlex.join(args)}; echo $? > {shlex.quote(str(exit_file))}")
    with Tmux(command, height=40) as tmux:
        screen = wait_text(tmux, "Enter = record", STARTUP_TIMEOUT_S)
        assert "act: ANGRY" in screen and "say:" in screen and "take 1 of 4" in screen
        screen = record(tmux, mic, None, "take refused")
        assert "too quiet" in last_prompt(screen)
        screen = record(tmux, mic, takes["clipped"], "take refused")
        assert "clipped" in last_prompt(screen)
        record(tmux, mic, takes["angry1"], "take kept")
        tmux.send("Enter")
        wait_text(tmux, "take 2 of 4")
        record(tmux, mic, takes["angry2"], "take kept")
        record(tmux, mic, takes["angry2"], "take kept", key="r")  # redo the kept take: "r" alone, no Enter
        tmux.send("Enter")
        screen = wait_text(tmux, "take 3 of 4")
        assert "act: SAD" in screen
        record(tmux, mic, takes["sad1"], "take kept")
        tmux.send("Enter")
        wait_text(tmux, "take 4 of 4")
        record(tmux, mic, takes["sad2"], "take kept")
        tmux.send("Enter")
        deadline = time.monotonic() + EXIT_TIMEOUT_S
        while not exit_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        screen = tmux.screen()
        assert exit_file.exists(), f"ser-live --enroll did not finish; screen:\n{screen}"
        assert exit_file.read_text().strip() == "0", screen
        assert "Traceback" not in screen
        assert "wrote" in screen and "UAR" in screen
    profile = load_profile(profile_path)
    assert profile.enrolled == {"angry": 2, "sad": 2}
    assert profile.accuracy["takes"] == 4
    profile.check_model(load_model(model))  # bound to that very file
    assert json.loads(profile_path.read_text())["format"] == "ser-live-profile"
