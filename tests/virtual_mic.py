"""A real (virtual) microphone for tests: a private PulseAudio server with a null sink.

What is played into the sink (``paplay``) is what the sink's monitor source — the "microphone" — hears. PortAudio
reaches it through the ALSA ``pulse`` plugin (libasound2-plugins), so ``sounddevice`` sees the devices ``pulse``
and ``default``. See ``../shared/notes/virtual-mic.md``.

The server is private: its own HOME and XDG_RUNTIME_DIR under a short temporary folder (a unix socket path must stay
under 108 bytes), started in the foreground (``--daemonize=no``) so that we own its PID, with ``-n`` (no default
script: no udev, no suspend-on-idle), no shared memory, and exactly two modules, the native protocol (anonymous
auth, so clients need no cookie) and the null sink. A keep-alive ``pacat`` plays silence into the sink, and start()
waits until a recording receives audio (a fresh server delivers its first capture ~2 s late).
:meth:`VirtualMic.stop` ends every process it started, by PID.

Clients find the server through ``PULSE_SERVER`` (see :meth:`VirtualMic.env`). PortAudio enumerates devices once,
when it initialises: an in-process test must set the variable and then call
``ser_live.realtime.sources.capture.rescan_devices()``
(the :func:`mic_environment` context manager does both and undoes them).

Use it from a test module::

    @pytest.fixture(scope="module")
    def mic():
        with VirtualMic() as vm, mic_environment(vm):
            yield vm
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

logger = logging.getLogger(__name__)

SINK_NAME = "virt"
SINK_DESCRIPTION = "VirtualMic"
KEEPALIVE_RATE = 16000
KEEPALIVE_LATENCY_MS = 20
START_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.05
STOP_TIMEOUT_S = 5.0
REQUIRED_PROGRAMS = ("pulseaudio", "pactl", "pacat", "paplay")
INSTALL_HINT = "apt-get install pulseaudio pulseaudio-utils libasound2-plugins libportaudio2"


class VirtualMicError(RuntimeError):
    """The virtual microphone could not be set up (missing programs, server did not start)."""


class VirtualMic:
    """A private PulseAudio server whose null-sink monitor is the default input. Context manager."""

    def __init__(self) -> None:
        missing = [p for p in REQUIRED_PROGRAMS if shutil.which(p) is None]
        if missing:
            raise VirtualMicError(f"virtual microphone needs {', '.join(missing)}: {INSTALL_HINT}")
        self.root = Path(tempfile.mkdtemp(prefix="sermic-", dir="/tmp"))
        self.home = self.root / "home"
        self.runtime_dir = self.root / "xdg"
        self.socket = self.runtime_dir / "pulse" / "native"
        self.log_path = self.root / "pulse.log"
        self._server: subprocess.Popen[bytes] | None = None
        self._keepalive: subprocess.Popen[bytes] | None = None
        self._players: list[subprocess.Popen[bytes]] = []

    # -- environment -------------------------------------------------------------------------------------------

    @property
    def server(self) -> str:
        return f"unix:{self.socket}"

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for a client process (ser-live, pactl, paplay) that should use this server."""
        env = dict(os.environ if base is None else base)
        env["PULSE_SERVER"] = self.server
        return env

    def _server_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("PULSE_SERVER", None)
        env["HOME"] = str(self.home)
        env["XDG_RUNTIME_DIR"] = str(self.runtime_dir)
        env["XDG_CONFIG_HOME"] = str(self.home / ".config")
        return env

    # -- lifecycle ---------------------------------------------------------------------------------------------

    @property
    def server_pid(self) -> int:
        if self._server is None:
            raise VirtualMicError("the virtual microphone's server is not running")
        return self._server.pid

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.poll() is None

    def start(self) -> VirtualMic:
        self.home.mkdir(parents=True, exist_ok=True)
        self.runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._server = subprocess.Popen(
            [
                "pulseaudio",
                "--daemonize=no",
                "-n",
                "--exit-idle-time=-1",
                "--disallow-exit",
                "--use-pid-file=no",
                "--disable-shm=yes",  # audio over the socket: a client never blocks on a dead server's memory
                f"--log-target=file:{self.log_path}",
                "--load=module-native-protocol-unix auth-anonymous=1",
                f"--load=module-null-sink sink_name={SINK_NAME} sink_properties=device.description={SINK_DESCRIPTION}",
            ],
            env=self._server_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            self._wait_ready()
            self.pactl("set-default-sink", SINK_NAME)
            self.pactl("set-default-source", f"{SINK_NAME}.monitor")
            with open("/dev/zero", "rb") as zeros:  # endless silence; the child keeps its own descriptor
                self._keepalive = self._start_keepalive(zeros)
            self._warm_up()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_keepalive(self, zeros: BinaryIO) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                "pacat",
                "--playback",
                "-d",
                SINK_NAME,
                "--raw",
                f"--rate={KEEPALIVE_RATE}",
                "--channels=1",
                "--format=s16le",
                f"--latency-msec={KEEPALIVE_LATENCY_MS}",
            ],
            env=self.env(),
            stdin=zeros,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _warm_up(self) -> None:
        """Wait until a recording receives audio: a fresh server delivers its first capture ~2 s late, which
        would otherwise land in the first test."""
        recorder = subprocess.Popen(
            [
                "pacat",
                "--record",
                "-d",
                f"{SINK_NAME}.monitor",
                "--raw",
                f"--rate={KEEPALIVE_RATE}",
                "--channels=1",
                "--format=s16le",
                f"--latency-msec={KEEPALIVE_LATENCY_MS}",
            ],
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert recorder.stdout is not None
            ready, _, _ = select.select([recorder.stdout], [], [], START_TIMEOUT_S)
            if not ready:
                raise VirtualMicError(f"no audio from {SINK_NAME}.monitor within {START_TIMEOUT_S} s")
        finally:
            _stop_process(recorder)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._server is not None and self._server.poll() is not None:
                raise VirtualMicError(f"pulseaudio exited with {self._server.returncode}: {self._log_tail()}")
            if self.socket.exists():
                result = subprocess.run(
                    ["pactl", "info"], env=self.env(), capture_output=True, timeout=STOP_TIMEOUT_S, check=False
                )
                if result.returncode == 0:
                    return
            time.sleep(POLL_INTERVAL_S)
        raise VirtualMicError(f"pulseaudio did not answer within {START_TIMEOUT_S} s: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-5:])
        except OSError:
            return "(no log)"

    def stop_server(self) -> None:
        """Stop the audio server (and its clients) but keep the folder: the "device disappears"."""
        for proc in [*self._players, self._keepalive, self._server]:
            _stop_process(proc)
        self._players.clear()
        self._keepalive = None
        self._server = None

    def stop(self) -> None:
        self.stop_server()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> VirtualMic:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- using it ----------------------------------------------------------------------------------------------

    def pactl(self, *args: str) -> str:
        result = subprocess.run(
            ["pactl", *args], env=self.env(), capture_output=True, text=True, timeout=STOP_TIMEOUT_S, check=False
        )
        if result.returncode != 0:
            raise VirtualMicError(f"pactl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def play(self, wav: str | os.PathLike[str]) -> subprocess.Popen[bytes]:
        """Start playing ``wav`` into the sink (the microphone hears it); returns the ``paplay`` process."""
        proc = subprocess.Popen(
            ["paplay", "-d", SINK_NAME, os.fspath(wav)],
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._players.append(proc)
        return proc


def _stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        if proc is not None and proc.stdin is not None:
            proc.stdin.close()
        return
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGCONT)  # a stopped process (a "hung device" test) must run to see SIGTERM
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(STOP_TIMEOUT_S)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


@contextlib.contextmanager
def mic_environment(mic: VirtualMic | None) -> Iterator[None]:
    """Point this process's PortAudio at ``mic`` (or, with ``None``, at no server at all) and re-scan devices.

    Restores ``PULSE_SERVER`` and re-scans again on exit.
    """
    from ser_live.realtime.sources.capture import rescan_devices

    saved = os.environ.get("PULSE_SERVER")
    os.environ["PULSE_SERVER"] = mic.server if mic is not None else "unix:/nonexistent/ser-live/no-server"
    try:
        rescan_devices()
        yield
    finally:
        if saved is None:
            os.environ.pop("PULSE_SERVER", None)
        else:
            os.environ["PULSE_SERVER"] = saved
        rescan_devices()
