"""Microphone capture: the only module that touches sounddevice / PortAudio.

``sounddevice`` is imported lazily, inside the functions that need it, so that ``--file`` replays and the Python API
work on machines without the PortAudio library.

:class:`MicrophoneSource` opens an ``sd.InputStream`` whose callback does nothing but copy the block into a bounded
:class:`BlockQueue` and count PortAudio's status flags. Everything else (resampling, VAD, features, the model)
happens in the consumer, outside the audio thread. If the consumer falls behind, the oldest audio is dropped and
counted — the queue never grows without bound and the callback never waits for the consumer.

A device that goes away mid-stream (the stream turns inactive, or no callback arrives for a while) is reported by
:meth:`MicrophoneSource.read` as a one-line :class:`CaptureError`. Streams are stopped with ``abort()``: ``stop()``
waits for pending buffers and has been seen to hang for over a minute when the device has vanished.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import Any

import numpy as np

from ser_live.realtime.errors import UserError

logger = logging.getLogger(__name__)

DEFAULT_BLOCK_MS = 30.0
DEFAULT_QUEUE_SECONDS = 10.0
DEFAULT_QUEUE_BLOCKS = round(DEFAULT_QUEUE_SECONDS * 1000.0 / DEFAULT_BLOCK_MS)
DEFAULT_CHANNELS = 1
# Seconds to wait for the first callback after the stream starts (PulseAudio may take ~2 s to wake a sink).
DEFAULT_START_TIMEOUT_S = 5.0
# Seconds without a callback, once audio has flowed, before the device counts as gone.
DEFAULT_STALL_TIMEOUT_S = 2.0
DEFAULT_READ_TIMEOUT_S = 0.5
# A health check this long after the previous one means the consumer itself was away (the process was suspended,
# e.g. Ctrl-Z or SIGSTOP, or starved of CPU): the stall timer starts again rather than blaming the device.
DEFAULT_AWAY_AFTER_S = 1.0
# Seconds to wait for PortAudio's abort(), which blocks while the device is stuck.
DEFAULT_ABORT_TIMEOUT_S = 2.0

PORTAUDIO_MISSING_MESSAGE = (
    "PortAudio library not found: install it with `apt-get install libportaudio2` (or use --file)"
)
SOUNDDEVICE_MISSING_MESSAGE = (
    "Python package sounddevice not installed: install it with `pip install sounddevice` (or use --file)"
)
# abort() threads that did not finish (see _abort_quietly); filled only when a device hangs.
_LEFT_BEHIND: list[threading.Thread] = []
STATUS_FLAG_NAMES = ("input_overflow", "input_underflow", "output_overflow", "output_underflow", "priming_output")


class CaptureError(UserError):
    """The audio input failed while running (device gone, stream stopped, cannot open). One line, no traceback."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message, exit_code)


def load_sounddevice() -> ModuleType:
    """Import sounddevice on demand; a missing PortAudio library becomes a one-line :class:`UserError`."""
    try:
        return importlib.import_module("sounddevice")
    except OSError:
        # sounddevice raises OSError('PortAudio library not found') when libportaudio2 is absent.
        raise UserError(PORTAUDIO_MISSING_MESSAGE) from None
    except ImportError:
        raise UserError(SOUNDDEVICE_MISSING_MESSAGE) from None


def streams_left_behind() -> int:
    """How many streams could not be stopped (their device hung). PortAudio's shutdown would hang on them too, so
    a program should leave with ``os._exit`` when this is not zero."""
    _LEFT_BEHIND[:] = [t for t in _LEFT_BEHIND if t.is_alive()]
    return len(_LEFT_BEHIND)


def rescan_devices(timeout: float = DEFAULT_ABORT_TIMEOUT_S) -> bool:
    """Make PortAudio enumerate the devices again (it snapshots them once, at initialisation).

    Needed when an audio server started or stopped after sounddevice was imported. Do not call it while a stream
    is open. Returns False (and leaves PortAudio as it is) while a stuck stream is still stopping: re-initialising
    would hang on it.
    """
    sd = load_sounddevice()
    deadline = time.monotonic() + timeout
    for worker in list(_LEFT_BEHIND):
        worker.join(max(0.0, deadline - time.monotonic()))
    if streams_left_behind():
        logger.warning("not re-scanning audio devices: a stuck stream is still stopping")
        return False
    sd._terminate()  # sounddevice's documented way to re-scan devices
    sd._initialize()
    return True


# --------------------------------------------------------------------------------------------------------------
# Devices
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceInfo:
    """One PortAudio device as the user sees it."""

    index: int
    name: str
    hostapi: str
    max_input_channels: int
    max_output_channels: int
    default_samplerate: float
    is_default_input: bool = False

    @property
    def is_input(self) -> bool:
        return self.max_input_channels > 0

    def describe(self) -> str:
        return f"{self.index} {self.name!r}"


def _default_input_index(sd: ModuleType) -> int:
    try:
        index = int(sd.default.device[0])
    except (TypeError, ValueError, IndexError):
        index = -1
    if index >= 0:
        return index
    try:
        return int(sd.query_devices(kind="input")["index"])
    except sd.PortAudioError as err:  # raised when there is no default input
        logger.debug("no default input device: %s", err)
        return -1


def query_devices() -> list[DeviceInfo]:
    """Every device PortAudio sees (inputs and outputs), with the default input marked."""
    sd = load_sounddevice()
    try:
        raw = list(sd.query_devices())
        hostapis = [api["name"] for api in sd.query_hostapis()]
    except sd.PortAudioError as err:
        logger.debug("query_devices failed: %s", err)
        return []
    default_input = _default_input_index(sd)
    devices = []
    for position, dev in enumerate(raw):
        index = int(dev.get("index", position))
        api = int(dev.get("hostapi", -1))
        devices.append(
            DeviceInfo(
                index=index,
                name=str(dev["name"]),
                hostapi=hostapis[api] if 0 <= api < len(hostapis) else "?",
                max_input_channels=int(dev["max_input_channels"]),
                max_output_channels=int(dev["max_output_channels"]),
                default_samplerate=float(dev["default_samplerate"]),
                is_default_input=index == default_input,
            )
        )
    return devices


def list_devices() -> str:
    """A table of the audio devices for ``--list-devices``; ``*`` marks the default input."""
    devices = query_devices()
    if not devices:
        return "No audio devices found (PortAudio sees none): connect a microphone or start PulseAudio, or use --file."
    name_width = max(4, *(len(d.name) for d in devices))
    api_width = max(8, *(len(d.hostapi) for d in devices))
    header = f"    #  {'name':<{name_width}}  {'host API':<{api_width}}   in  out   rate  use"
    lines = [header]
    for dev in devices:
        mark = "*" if dev.is_default_input else " "
        use = "input" if dev.is_input else "output only"
        if dev.is_default_input:
            use += " (default)"
        lines.append(
            f"  {mark}{dev.index:>2}  {dev.name:<{name_width}}  {dev.hostapi:<{api_width}}  "
            f"{dev.max_input_channels:>3}  {dev.max_output_channels:>3}  {dev.default_samplerate:>5.0f}  {use}"
        )
    inputs = sum(d.is_input for d in devices)
    lines.append(f"{inputs} input device(s); pass one with --device NUMBER or --device NAME (* = default).")
    return "\n".join(lines)


def _names(devices: list[DeviceInfo]) -> str:
    return ", ".join(d.describe() for d in devices) if devices else "none"


def _no_input_error(devices: list[DeviceInfo]) -> UserError:
    seen = f"devices seen: {_names(devices)}" if devices else "PortAudio sees no devices at all"
    return UserError(f"no audio input device found ({seen}): connect a microphone or start PulseAudio, or use --file")


def resolve_device(spec: str | int | None = None) -> DeviceInfo:
    """Find the input device meant by ``spec``: ``None`` (the default input), a number, or a (part of a) name.

    Raises :class:`UserError` naming the input devices that exist when ``spec`` is unknown, ambiguous or not an
    input, or when there is no input device at all.
    """
    devices = query_devices()
    inputs = [d for d in devices if d.is_input]
    if not inputs:
        raise _no_input_error(devices)
    listing = f"input devices: {_names(inputs)} (see --list-devices)"

    if spec is None:
        default = [d for d in inputs if d.is_default_input]
        if default:
            return default[0]
        logger.info("no default input device; using %s", inputs[0].describe())
        return inputs[0]

    if isinstance(spec, str) and spec.strip().lstrip("-").isdigit():
        spec = int(spec.strip())
    if isinstance(spec, int):
        by_index = [d for d in devices if d.index == spec]
        if not by_index:
            raise UserError(f"no audio device number {spec}; {listing}")
        if not by_index[0].is_input:
            raise UserError(f"audio device {by_index[0].describe()} has no input channels; {listing}")
        return by_index[0]

    wanted = spec.strip().casefold()
    if not wanted:
        raise UserError(f"empty --device name; {listing}")
    exact = [d for d in inputs if d.name.casefold() == wanted]
    if len(exact) == 1:
        return exact[0]
    partial = exact or [d for d in inputs if wanted in d.name.casefold()]
    if len(partial) == 1:
        return partial[0]
    if partial:
        raise UserError(
            f"audio device name {spec!r} is ambiguous, it matches {_names(partial)}; pass the number instead"
        )
    outputs = [d for d in devices if not d.is_input and wanted in d.name.casefold()]
    hint = f" ({_names(outputs)} is output only)" if outputs else ""
    raise UserError(f"no audio input device named {spec!r}{hint}; {listing}")


# --------------------------------------------------------------------------------------------------------------
# The bounded queue between the audio callback and the consumer
# --------------------------------------------------------------------------------------------------------------


class BlockQueue:
    """A bounded FIFO of audio blocks that drops the oldest block when full and counts what it dropped.

    ``put`` is called from the audio callback: it never waits for the consumer (the lock is only ever held for a
    few list operations). ``get`` waits up to ``timeout`` for audio and returns everything queued, concatenated.
    """

    def __init__(self, max_blocks: int = DEFAULT_QUEUE_BLOCKS) -> None:
        if max_blocks < 1:
            raise ValueError(f"max_blocks must be >= 1, got {max_blocks}")
        self.max_blocks = max_blocks
        self._blocks: deque[np.ndarray] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._closed = False
        self.put_blocks = 0
        self.put_frames = 0
        self.dropped_blocks = 0
        self.dropped_frames = 0
        self.queued_frames = 0

    def put(self, block: np.ndarray) -> None:
        """Append ``block`` (kept by reference: copy it first if the caller reuses its buffer)."""
        frames = len(block)
        with self._cond:
            if len(self._blocks) >= self.max_blocks:
                oldest = self._blocks.popleft()
                self.dropped_blocks += 1
                self.dropped_frames += len(oldest)
                self.queued_frames -= len(oldest)
            self._blocks.append(block)
            self.put_blocks += 1
            self.put_frames += frames
            self.queued_frames += frames
            self._cond.notify()

    def get(self, timeout: float | None = None) -> np.ndarray | None:
        """All queued blocks joined along axis 0, waiting up to ``timeout`` s for one; ``None`` if none came."""
        with self._cond:
            if not self._blocks and not self._closed:
                self._cond.wait(timeout)
            if not self._blocks:
                return None
            blocks = list(self._blocks)
            self._blocks.clear()
            self.queued_frames = 0
        return blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=0)

    def close(self) -> None:
        """Wake any waiting ``get`` (it returns what is left, then ``None``)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        return len(self._blocks)


# --------------------------------------------------------------------------------------------------------------
# The microphone
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaptureConfig:
    """How to open the microphone. ``sample_rate=None`` uses the device's default rate (the engine resamples)."""

    device: str | int | None = None
    sample_rate: int | None = None
    channels: int = DEFAULT_CHANNELS
    block_ms: float = DEFAULT_BLOCK_MS
    queue_blocks: int = DEFAULT_QUEUE_BLOCKS
    start_timeout_s: float = DEFAULT_START_TIMEOUT_S
    stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S
    abort_timeout_s: float = DEFAULT_ABORT_TIMEOUT_S
    away_after_s: float = DEFAULT_AWAY_AFTER_S

    def __post_init__(self) -> None:
        if self.channels < 1:
            raise UserError(f"--channels must be at least 1, got {self.channels}")
        if self.sample_rate is not None and self.sample_rate <= 0:
            raise UserError(f"--samplerate must be positive, got {self.sample_rate}")
        if self.block_ms <= 0:
            raise UserError(f"block size must be positive, got {self.block_ms} ms")
        if self.queue_blocks < 1:
            raise UserError(f"queue must hold at least one block, got {self.queue_blocks}")


class MicrophoneSource:
    """Live audio from an input device as float32 ``(frames, channels)`` blocks.

    Use as a context manager::

        with MicrophoneSource(CaptureConfig(device="pulse")) as mic:
            while (block := mic.read(0.5)) is not None or True:
                ...

    ``read`` raises :class:`CaptureError` when the device stops delivering audio.
    """

    def __init__(self, config: CaptureConfig | None = None) -> None:
        self.config = config if config is not None else CaptureConfig()
        self._queue = BlockQueue(self.config.queue_blocks)
        self._stream: Any = None
        self._device: DeviceInfo | None = None
        self._sample_rate = 0
        self._flags = dict.fromkeys(STATUS_FLAG_NAMES, 0)
        self._callbacks = 0
        self._last_callback: float | None = None
        self._started_at = 0.0
        self._last_check: float | None = None
        self._watch_from = 0.0
        self._closing = False

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> MicrophoneSource:
        if self._stream is not None:
            return self
        sd = load_sounddevice()
        device = resolve_device(self.config.device)
        rate = self.config.sample_rate or round(device.default_samplerate)
        channels = self.config.channels
        if channels > device.max_input_channels:
            raise UserError(
                f"audio device {device.describe()} has {device.max_input_channels} input channel(s), "
                f"{channels} requested; pass --channels {device.max_input_channels} or fewer"
            )
        blocksize = max(1, round(rate * self.config.block_ms / 1000.0))
        try:
            stream = sd.InputStream(
                device=device.index,
                samplerate=rate,
                channels=channels,
                dtype="float32",
                blocksize=blocksize,
                callback=self._callback,
            )
        except (sd.PortAudioError, ValueError) as err:
            raise CaptureError(
                f"cannot open audio input {device.describe()} at {rate} Hz with {channels} channel(s) "
                f"({_one_line(err)}); try another --device or sample rate (default for this device: "
                f"{device.default_samplerate:.0f} Hz)"
            ) from None
        self._device = device
        self._sample_rate = round(stream.samplerate)
        self._closing = False
        self._last_check = None
        self._watch_from = 0.0
        self._started_at = time.monotonic()
        try:
            stream.start()
        except sd.PortAudioError as err:
            _abort_quietly(stream, self.config.abort_timeout_s)
            raise CaptureError(
                f"cannot start audio input {device.describe()} ({_one_line(err)}); check the device or "
                f"pick another with --device"
            ) from None
        self._stream = stream
        logger.info(
            "capturing from %s at %d Hz, %d channel(s), %d-frame blocks",
            device.describe(),
            self._sample_rate,
            channels,
            blocksize,
        )
        return self

    def close(self) -> None:
        """Stop capturing with ``abort()`` (never ``stop()``, which can hang when the device has vanished)."""
        stream, self._stream = self._stream, None
        self._closing = True
        self._queue.close()
        if stream is not None:
            _abort_quietly(stream, self.config.abort_timeout_s)

    def __enter__(self) -> MicrophoneSource:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- the audio thread --------------------------------------------------------------------------------------

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        # Runs on PortAudio's thread: copy, count, return. Nothing here may block or raise.
        self._queue.put(indata.copy())
        self._callbacks += 1
        self._last_callback = time.monotonic()
        if status:
            for name in STATUS_FLAG_NAMES:
                if getattr(status, name, False):
                    self._flags[name] += 1

    # -- the consumer ------------------------------------------------------------------------------------------

    def read(self, timeout: float = DEFAULT_READ_TIMEOUT_S) -> np.ndarray | None:
        """Audio captured since the last read (float32 ``(frames, channels)``), or ``None`` after ``timeout`` s.

        Raises :class:`CaptureError` when the stream has stopped or no audio arrived for too long.
        """
        block = self._queue.get(timeout)
        if block is not None:
            return block
        if self._stream is None:
            if self._closing:
                return None
            raise CaptureError("microphone is not started: use MicrophoneSource as a context manager")
        self.check_health()
        return None

    def check_health(self) -> None:
        """Raise :class:`CaptureError` if the device has stopped delivering audio."""
        stream = self._stream
        if stream is None:
            return
        name = self.device_name
        if not stream.active:
            raise CaptureError(
                f"audio input {name} stopped delivering audio (device disconnected or audio server gone); "
                f"reconnect it, or pick another with --device"
            )
        now = time.monotonic()
        last_check, self._last_check = self._last_check, now
        if last_check is not None and now - last_check > self.config.away_after_s:
            # The consumer itself was away (the process was suspended, or busy): the callback thread may not have
            # run since the process came back, so silence measured over that time says nothing about the device.
            logger.debug("no health check for %.1f s; restarting the stall timer", now - last_check)
            self._watch_from = now
        if self._last_callback is None:
            waited = now - max(self._started_at, self._watch_from)
            if waited > self.config.start_timeout_s:
                raise CaptureError(
                    f"no audio from input {name} {waited:.1f} s after opening it; check that the device works "
                    f"and is not in use, or pick another with --device"
                )
            return
        silent_for = now - max(self._last_callback, self._watch_from)
        if silent_for > self.config.stall_timeout_s:
            raise CaptureError(
                f"audio input {name} delivered nothing for {silent_for:.1f} s (device disconnected?); "
                f"reconnect it, or pick another with --device"
            )

    # -- what the dashboard shows ------------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        return self._stream is not None and bool(self._stream.active)

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def channels(self) -> int:
        return self.config.channels

    @property
    def device(self) -> DeviceInfo | None:
        return self._device

    @property
    def device_name(self) -> str:
        return self._device.describe() if self._device is not None else "(not open)"

    @property
    def captured_frames(self) -> int:
        return self._queue.put_frames

    @property
    def captured_seconds(self) -> float:
        return self._queue.put_frames / self._sample_rate if self._sample_rate else 0.0

    @property
    def dropped_frames(self) -> int:
        return self._queue.dropped_frames

    @property
    def dropped_seconds(self) -> float:
        return self._queue.dropped_frames / self._sample_rate if self._sample_rate else 0.0

    @property
    def overflows(self) -> int:
        return self._flags["input_overflow"]

    @property
    def status_flags(self) -> dict[str, int]:
        return dict(self._flags)

    @property
    def callbacks(self) -> int:
        return self._callbacks


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _abort_quietly(stream: Any, timeout: float = DEFAULT_ABORT_TIMEOUT_S) -> bool:
    """``abort()`` and ``close()`` the stream on a helper thread, waiting at most ``timeout`` s.

    PortAudio's abort blocks while the audio thread is stuck in the device (seen with a stalled PulseAudio server),
    so closing must not wait for it forever. Returns False when it gave up (the helper thread is left behind).
    """

    def finish() -> None:
        try:
            stream.abort()
        except Exception as err:  # the device may already be gone; closing must still finish
            logger.debug("abort failed: %s", err)
        try:
            stream.close()
        except Exception as err:
            logger.debug("close failed: %s", err)

    worker = threading.Thread(target=finish, name="ser-live-abort", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        logger.info("audio device did not stop within %.1f s; leaving it behind", timeout)
        _LEFT_BEHIND.append(worker)
        return False
    return True
