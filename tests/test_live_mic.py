"""``ser-live`` on a real (virtual) microphone, end to end, and its capture faults through the CLI.

The ``mic`` tests run ``ser-live --device pulse ...`` (its module) as a subprocess against a private PulseAudio
null sink (tests/virtual_mic.py; ``.ci/run`` installs PulseAudio) while an espeak-ng recording is played into the
sink, and check the JSONL events against where the speech is in the played file. The others drive ``main()``
in-process with PortAudio missing or a fake microphone that reports overflows.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import soxr

from ser_live.realtime.config import EngineConfig
from ser_live.realtime.errors import UserError
from ser_live.realtime.faces.cli import main
from ser_live.realtime.model import load_model
from ser_live.realtime.sources import capture
from ser_live.realtime.sources.capture import PORTAUDIO_MISSING_MESSAGE, CaptureConfig
from ser_live.realtime.stages.pipeline import PipelineConfig
from ser_live.realtime.stages.vad import SpeechGate, VadConfig
from tests.audio_fixtures import espeak_wav
from tests.tiny_model import TINY_LABELS, make_tiny_model
from tests.virtual_mic import VirtualMic

ROOT = Path(__file__).resolve().parents[1]
PART_A = "Hello there. This is the first part of the test."
PART_B = "And after a pause, here is the second part."
LEAD_S = 0.3
PAUSE_S = 3.0  # longer than a window plus the VAD's padding and hangover: some window holds no speech
TAIL_S = 0.3
# --duration: the file plus time for paplay to start and the last window to be cut
DURATION_MARGIN_S = 1.5
PROCESS_TIMEOUT_S = 60.0  # generous for a loaded machine, but bounded
STARTUP_TIMEOUT_S = 30.0
CAPTURING = re.compile(r"capturing from (\d+) '([^']+)'")
# The played speech's offset in the capture: paplay starts PLAY_AFTER_S after ser-live says it is capturing, so
# the speech arrives after that wait plus the server's latency (ser-live's line reaches us a little late).
PLAY_AFTER_S = 0.5
MAX_PLAY_LATENCY_S = 0.75
EARLIEST_S = 0.1
OFFSET_STEP_S = 0.005
RATIO_TOLERANCE = 0.15  # captured vs reference speech ratio of a window (different resampling path, frame grid)
SPEECH_MARGIN_S = 0.25  # windows this far from min_speech either way must (not) be classified
SERVER_GONE_EXIT_S = 5.0


# ---------------------------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


@dataclass(frozen=True)
class Recording:
    """The played file, and where its two spoken parts lie (seconds from the start of the file)."""

    path: Path
    samples: np.ndarray
    sample_rate: int
    part_a: tuple[float, float]
    part_b: tuple[float, float]

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    folder = tmp_path_factory.mktemp("speech")
    a, rate = sf.read(str(espeak_wav(folder / "a.wav", PART_A)), dtype="float32")
    b, rate_b = sf.read(str(espeak_wav(folder / "b.wav", PART_B)), dtype="float32")
    assert rate == rate_b

    def silence(seconds: float) -> np.ndarray:
        return np.zeros(round(seconds * rate), np.float32)

    samples = np.concatenate([silence(LEAD_S), a, silence(PAUSE_S), b, silence(TAIL_S)])
    path = folder / "speech.wav"
    sf.write(path, samples, rate)
    a_start = LEAD_S
    b_start = LEAD_S + len(a) / rate + PAUSE_S
    return Recording(path, samples, rate, (a_start, a_start + len(a) / rate), (b_start, b_start + len(b) / rate))


@pytest.fixture(scope="module")
def mic() -> Iterator[VirtualMic]:
    with VirtualMic() as vm:
        yield vm


# ---------------------------------------------------------------------------------------------------------------
# ser-live as a subprocess
# ---------------------------------------------------------------------------------------------------------------


class SerLive:
    """``python -m ser_live.realtime.faces.cli ARGS`` with both pipes drained by threads; stopped (by PID) on exit."""

    def __init__(self, args: Sequence[str], env: dict[str, str]) -> None:
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ser_live.realtime.faces.cli", *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._drain, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _drain(self, stream: Any, lines: list[str]) -> None:
        for line in stream:
            with self._changed:
                lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for_stderr(self, pattern: re.Pattern[str], timeout: float = STARTUP_TIMEOUT_S) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.err:
                    if found := pattern.search(line):
                        return found
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"ser-live never printed {pattern.pattern!r}: {self.err}")
                self._changed.wait(min(left, 0.1))

    def wait(self, timeout: float = PROCESS_TIMEOUT_S) -> int:
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(timeout)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(PROCESS_TIMEOUT_S)

    def __enter__(self) -> SerLive:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def stderr(self) -> str:
        return "\n".join(self.err)

    def json_rows(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out]  # every line of stdout must be JSON


def run_ser_live(args: Sequence[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ser_live.realtime.faces.cli", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S, check=False,
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("ser-live: error:")]


def check_jsonl(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Window rows then exactly one summary, last, whose counts match the windows."""
    assert rows, "no JSONL at all"
    windows, summary = rows[:-1], rows[-1]
    assert summary["type"] == "summary"
    assert all(r["type"] == "window" for r in windows)
    assert summary["windows"] == len(windows)
    assert sum(summary["counts"].values()) == len(windows)
    for label in TINY_LABELS:
        assert summary["counts"][label] == sum(r["label"] == label for r in windows)
    assert summary["dropped_audio_s"] >= 0 and summary["overflows"] >= 0
    return windows, summary


# ---------------------------------------------------------------------------------------------------------------
# Where the speech should be
# ---------------------------------------------------------------------------------------------------------------


def reference_speech_flags(recording: Recording, config: PipelineConfig) -> np.ndarray:
    """The VAD's per-sample speech flags for the file itself, at the model rate, through the same gate."""
    x = soxr.resample(recording.samples, recording.sample_rate, config.sample_rate).astype(np.float32)
    gate = SpeechGate(
        VadConfig(
            sample_rate=config.sample_rate,
            frame_ms=config.vad_frame_ms,
            aggressiveness=config.vad_aggressiveness,
            pad_ms=config.vad_pad_ms,
            hangover_ms=config.vad_hangover_ms,
        )
    )
    _, flags = gate.process(x)
    _, tail = gate.flush()
    return np.concatenate([flags, tail]).astype(np.float64)


def predicted_ratios(flags: np.ndarray, ends_s: np.ndarray, offset_s: float, config: PipelineConfig) -> np.ndarray:
    """Speech ratio of the windows ending at ``ends_s`` (stream time) if the file started at ``offset_s``."""
    sr, window = config.sample_rate, config.window_samples
    cumulative = np.concatenate([[0.0], np.cumsum(flags)])
    ends = np.round((ends_s - offset_s) * sr).astype(np.int64)
    starts = ends - window
    speech = cumulative[np.clip(ends, 0, len(flags))] - cumulative[np.clip(starts, 0, len(flags))]
    return speech / window


def fit_offset(
    flags: np.ndarray, events: list[dict[str, Any]], config: PipelineConfig, max_offset_s: float
) -> tuple[float, np.ndarray]:
    """The file's start in the stream that best explains the events' speech ratios, and the residuals.

    Negative offsets are tried too (the file's lead-in silence cut off): a capture that started late shows.
    """
    ends = np.array([e["end_s"] for e in events])
    observed = np.array([e["speech_ratio"] for e in events])
    offsets = np.arange(-LEAD_S, max_offset_s, OFFSET_STEP_S)
    errors = [np.abs(predicted_ratios(flags, ends, o, config) - observed).mean() for o in offsets]
    best = float(offsets[int(np.argmin(errors))])
    return best, predicted_ratios(flags, ends, best, config) - observed


# ---------------------------------------------------------------------------------------------------------------
# The microphone, end to end
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.mic
def test_speech_played_into_the_microphone_gives_window_events_where_the_speech_is(
    mic: VirtualMic, recording: Recording, model_path: Path
) -> None:
    config = EngineConfig().pipeline_config(load_model(model_path))
    duration = recording.duration_s + DURATION_MARGIN_S
    args = ["--device", "pulse", "--duration", f"{duration:.1f}", "--jsonl", "-", "--no-dashboard",
            "--model", str(model_path), "--verbose"]
    with SerLive(args, mic.env()) as live:
        live.wait_for_stderr(CAPTURING)
        seen_capturing = time.monotonic()
        time.sleep(PLAY_AFTER_S)  # a lead-in of silence in the capture: the speech must be found after it
        player = mic.play(recording.path)
        delay = time.monotonic() - seen_capturing
        assert player.wait(PROCESS_TIMEOUT_S) == 0
        assert live.wait() == 0, live.stderr
    assert "Traceback" not in live.stderr
    events, summary = check_jsonl(live.json_rows())

    # speech was detected, about as much as the file holds, and nothing was lost
    flags = reference_speech_flags(recording, config)
    reference_speech_s = flags.sum() / config.sample_rate
    assert summary["speech_s"] == pytest.approx(reference_speech_s, rel=0.2)
    assert summary["audio_s"] == pytest.approx(duration, abs=1.0)  # minus what was still queued at the end
    assert summary["dropped_audio_s"] == 0 and summary["overflows"] == 0
    assert len(events) >= 6
    hop_s = config.hop_samples / config.sample_rate
    for e in events:
        assert e["end_s"] / hop_s == pytest.approx(round(e["end_s"] / hop_s), abs=1e-3)  # on the hop grid

    # where the file landed in the stream: the offset that explains the events' speech ratios
    offset, residuals = fit_offset(flags, events, config, summary["audio_s"] - recording.duration_s)
    # ... which is when it was played (after ser-live said it was capturing), plus the server's latency
    assert delay - EARLIEST_S <= offset <= delay + MAX_PLAY_LATENCY_S, f"heard at {offset:.2f} s, played {delay:.2f} s"
    assert np.max(np.abs(residuals)) <= RATIO_TOLERANCE, f"offset {offset:.3f} s, residuals {residuals.round(2)}"

    # every window clearly holding enough speech is classified, and none clearly without
    window_s = config.window_samples / config.sample_rate
    boundaries = np.arange(1, int(summary["audio_s"] / hop_s) + 1) * hop_s
    expected_speech_s = predicted_ratios(flags, boundaries, offset, config) * window_s
    classified = {round(e["end_s"] / hop_s) for e in events}
    for k, t in enumerate(boundaries, start=1):
        if expected_speech_s[k - 1] >= config.min_speech_s + SPEECH_MARGIN_S:
            assert k in classified, f"no event for the window ending at {t:.3f} s ({expected_speech_s[k - 1]:.2f} s)"
        if expected_speech_s[k - 1] <= config.min_speech_s - SPEECH_MARGIN_S:
            assert k not in classified, f"an event for the window ending at {t:.3f} s, which holds little speech"

    # the pause is a gap: events on both sides, and windows in the middle of it missing
    a_end, b_start = (offset + recording.part_a[1], offset + recording.part_b[0])
    before = [e for e in events if e["end_s"] <= b_start]
    after = [e for e in events if e["start_s"] >= a_end]
    assert before and after
    missing = [t for k, t in enumerate(boundaries, start=1) if k not in classified and a_end < t < b_start + window_s]
    assert missing, "the pause in the speech left no gap in the events"
    assert max(e["end_s"] for e in before) < min(missing) and max(missing) < min(e["end_s"] for e in after)
    # nothing before the speech began
    assert min(e["end_s"] for e in events) > offset + recording.part_a[0]


@pytest.mark.mic
def test_list_devices_device_by_number_and_plain_lines_when_stdout_is_not_a_terminal(
    mic: VirtualMic, model_path: Path
) -> None:
    listing = run_ser_live(["--list-devices"], mic.env())
    assert listing.returncode == 0, listing.stderr
    pulse_line = next(line for line in listing.stdout.splitlines() if re.search(r"\d+\s+pulse\s", line))
    number = int(re.search(r"(\d+)\s+pulse\s", pulse_line).group(1))  # type: ignore[union-attr]
    assert "input" in pulse_line

    # by number, with the dashboard not turned off: stdout is a pipe, so plain lines and no escape codes
    run = run_ser_live(["--device", str(number), "--duration", "1", "--model", str(model_path)], mic.env())
    assert run.returncode == 0, run.stderr
    assert "\x1b" not in run.stdout and "\x1b" not in run.stderr
    assert run.stdout.splitlines()[-1].startswith("session: ")
    assert "Traceback" not in run.stderr


@pytest.mark.mic
def test_unknown_device_is_one_line_listing_the_devices(mic: VirtualMic, model_path: Path) -> None:
    run = run_ser_live(["--device", "no-such-mic", "--duration", "1", "--model", str(model_path)], mic.env())
    assert run.returncode != 0
    assert run.stderr.strip().splitlines() == error_lines(run.stderr)
    [line] = error_lines(run.stderr)
    assert "'no-such-mic'" in line and "'pulse'" in line and "--list-devices" in line


@pytest.mark.mic  # assumes no sound hardware: PortAudio then sees only what PulseAudio offers
def test_no_audio_server_is_one_line_no_input_device(model_path: Path) -> None:
    env = dict(os.environ, PULSE_SERVER="unix:/nonexistent/ser-live/no-server")
    run = run_ser_live(["--duration", "1", "--model", str(model_path)], env)
    assert run.returncode != 0
    [line] = error_lines(run.stderr)
    assert line.startswith("ser-live: error: no audio input device")
    assert "--file" in line
    assert "Traceback" not in run.stderr


@pytest.mark.mic
def test_sigterm_and_a_suspension_on_the_microphone(mic: VirtualMic, recording: Recording, model_path: Path) -> None:
    # SIGSTOP/SIGCONT (like Ctrl-Z, fg) for longer than the stall timeout is not a vanished device; SIGTERM then
    # ends the session as cleanly as Ctrl-C: events flushed, summary written, exit 0.
    args = ["--device", "pulse", "--jsonl", "-", "--no-dashboard", "--model", str(model_path), "--verbose"]
    with SerLive(args, mic.env()) as live:
        live.wait_for_stderr(CAPTURING)
        mic.play(recording.path)
        time.sleep(1.0)
        os.kill(live.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(CaptureConfig().stall_timeout_s + 0.5)
        finally:
            os.kill(live.proc.pid, signal.SIGCONT)
        time.sleep(1.0)
        assert live.proc.poll() is None, live.stderr
        os.kill(live.proc.pid, signal.SIGTERM)
        assert live.wait() == 0, live.stderr
    assert "Traceback" not in live.stderr and not error_lines(live.stderr)
    events, summary = check_jsonl(live.json_rows())
    assert events and summary["speech_s"] > 0
    assert re.search(r"^session: .* windows", live.stderr, re.MULTILINE)


@pytest.mark.mic
def test_audio_server_going_away_mid_stream_is_one_line_and_the_summary_is_written(
    recording: Recording, model_path: Path
) -> None:
    with VirtualMic() as vm:  # its own server: this test stops it
        args = ["--device", "pulse", "--jsonl", "-", "--no-dashboard", "--model", str(model_path), "--verbose"]
        with SerLive(args, vm.env()) as live:
            live.wait_for_stderr(CAPTURING)
            vm.play(recording.path)
            time.sleep(1.5)
            vm.stop_server()
            gone_at = time.monotonic()
            code = live.wait()
            took = time.monotonic() - gone_at
    assert code != 0
    assert took < SERVER_GONE_EXIT_S, f"ser-live took {took:.1f} s to exit after the server went away"
    assert "Traceback" not in live.stderr
    [line] = error_lines(live.stderr)
    assert "'pulse'" in line and "--device" in line
    _, summary = check_jsonl(live.json_rows())
    assert summary["audio_s"] > 1.0
    # the human summary comes before the error
    assert live.stderr.index("session: ") < live.stderr.index("ser-live: error:")


@pytest.mark.mic
def test_a_hung_audio_server_ends_ser_live_promptly_with_the_summary_written(model_path: Path) -> None:
    # The server stops answering (SIGSTOP): no callback comes, abort() blocks on it, and PortAudio's own shutdown
    # at exit would block too; ser-live reports the stall, writes the summary and leaves with os._exit.
    config = CaptureConfig()
    with VirtualMic() as vm:  # its own server: this test freezes it (vm.stop() sends SIGCONT with SIGTERM)
        args = ["--device", "pulse", "--jsonl", "-", "--no-dashboard", "--model", str(model_path), "--verbose"]
        with SerLive(args, vm.env()) as live:
            live.wait_for_stderr(CAPTURING)
            time.sleep(0.5)
            os.kill(vm.server_pid, signal.SIGSTOP)
            hung_at = time.monotonic()
            code = live.wait(PROCESS_TIMEOUT_S)
            took = time.monotonic() - hung_at
    assert code != 0
    assert took < config.stall_timeout_s + config.abort_timeout_s + SERVER_GONE_EXIT_S, f"exit took {took:.1f} s"
    assert "Traceback" not in live.stderr
    [line] = error_lines(live.stderr)
    assert "delivered nothing" in line and "'pulse'" in line
    _, summary = check_jsonl(live.json_rows())
    assert summary["audio_s"] > 0
    assert "leaving with os._exit" in live.stderr  # the stuck stream was noticed (debug log)


# ---------------------------------------------------------------------------------------------------------------
# In-process faults: no PortAudio, overflows
# ---------------------------------------------------------------------------------------------------------------


def test_missing_portaudio_is_one_line_naming_libportaudio2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], model_path: Path
) -> None:
    def no_portaudio() -> Any:
        raise UserError(PORTAUDIO_MISSING_MESSAGE)

    monkeypatch.setattr(capture, "load_sounddevice", no_portaudio)
    for argv in (["--duration", "1", "--no-dashboard", "--model", str(model_path)], ["--list-devices"]):
        code = main(argv)
        captured = capsys.readouterr()
        assert code != 0
        assert captured.err.splitlines() == [f"ser-live: error: {PORTAUDIO_MISSING_MESSAGE}"]
        assert "libportaudio2" in captured.err and captured.out == ""


class FakeMicrophone:
    """Stands in for MicrophoneSource: replays samples in 30 ms blocks and reports overflows and dropped audio
    the way PortAudio's status flags and the bounded queue would."""

    samples: np.ndarray = np.zeros(0, np.float32)
    rate = 16000
    overflow_every = 10  # blocks
    dropped_s = 0.25

    def __init__(self, config: CaptureConfig | None = None) -> None:
        self.config = config
        self.position = 0
        self.blocks = 0

    def start(self) -> FakeMicrophone:
        return self

    def __enter__(self) -> FakeMicrophone:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def check_health(self) -> None:
        return None

    def read(self, timeout: float = 0.1) -> np.ndarray | None:
        block = self.samples[self.position : self.position + round(0.03 * self.rate)]
        if not len(block):
            time.sleep(timeout)
            return None
        self.position += len(block)
        self.blocks += 1
        return block[:, None]

    sample_rate = property(lambda self: self.rate)
    device_name = property(lambda self: "7 'fake'")
    overflows = property(lambda self: self.blocks // self.overflow_every)
    dropped_seconds = property(lambda self: self.dropped_s if self.blocks else 0.0)


def test_input_overflows_and_dropped_audio_are_counted_in_the_summary(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], recording: Recording, model_path: Path,
    tmp_path: Path,
) -> None:
    FakeMicrophone.samples = soxr.resample(recording.samples, recording.sample_rate, FakeMicrophone.rate)
    made: list[FakeMicrophone] = []
    monkeypatch.setattr(capture, "MicrophoneSource", lambda config: made.append(FakeMicrophone(config)) or made[-1])
    out = tmp_path / "events.jsonl"
    code = main(["--device", "fake", "--duration", "1.0", "--jsonl", str(out), "--no-dashboard",
                 "--model", str(model_path)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Traceback" not in captured.err
    [fake] = made
    assert fake.overflows > 0
    _, summary = check_jsonl([json.loads(line) for line in out.read_text().splitlines()])
    assert summary["overflows"] == fake.overflows
    assert summary["dropped_audio_s"] == pytest.approx(FakeMicrophone.dropped_s)
    last = captured.out.splitlines()[-1]
    assert f"{fake.overflows} input overflow(s)" in last and "dropped 0.25 s" in last
