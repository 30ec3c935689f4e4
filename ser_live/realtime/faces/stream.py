"""``ser-serve``'s streaming sessions: the ``/stream`` protocol, without the network.

A client opens a WebSocket at ``/stream`` and sends, in this order:

1. one text message ``{"type": "start", "sample_rate": 16000, "channels": 1}`` (optionally ``"profile"``: one of
   the names the server was given with ``--profile NAME=PATH``, and ``"client"``: a label of the client's own);
2. binary messages of PCM16 little-endian samples, channels interleaved, each a whole number of frames and at most
   :data:`MAX_FRAME_BYTES` bytes (any length; ~100 ms is typical);
3. ``{"type": "end"}`` (or it closes).

It gets a ``hello`` (model, labels, settings, session), then the events of its own engine session -- the same JSON
objects as ``ser-live --jsonl`` writes for the same audio -- plus a ``status`` message every
:data:`STATUS_EVERY_AUDIO_S` of audio, and after ``end`` the last windows and the ``summary``, and the server
closes with 1000. Other client messages: ``{"type": "reset"}`` (a new session on the same connection: the summary
so far is sent first) and ``{"type": "ping"}`` (answered by ``pong``). A protocol error is an ``error`` message
``{"type": "error", "code": N, "message": "..."}`` followed by a close with that code (:class:`CloseCode`).

:class:`StreamService` holds what every session shares (the model and its profiles, the engine settings, the
bound on concurrent sessions); :class:`StreamSession` is one client's engine. Neither touches the network: the
server (:mod:`ser_live.realtime.faces.serve`, the one module that imports websockets) moves their messages.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np

from ser_live.realtime.config import EngineConfig
from ser_live.realtime.engine import Engine
from ser_live.realtime.errors import UserError
from ser_live.realtime.fileio import loads_json
from ser_live.realtime.model import EmotionModel

logger = logging.getLogger(__name__)

MAX_FRAME_BYTES = 1 << 20  # one binary message: 1 MiB, ~32 s of 16 kHz mono PCM16
MAX_TEXT_BYTES = 4096  # one control message
MAX_CHANNELS = 8
MIN_RATE, MAX_RATE = 8000, 384_000
START_WAIT_S = 10.0  # from the connection to its start message
IDLE_S = 60.0  # the longest pause between two messages of a session
STATUS_EVERY_AUDIO_S = 0.25
SLICE_S = 0.5  # fair turns: a message is scored this much audio at a time, each slice a job of its own in the
# worker pool's queue, so a client uploading a file flat out in 1 MiB frames waits its turn between slices instead of
# holding a worker for 32 s of audio while real-time clients' frames queue behind it
MAX_CLIENT_LABEL = 64
SESSIONS_PER_CPU = 8  # a real-time stream costs about 2.4 % of a core (BENCHMARKS.md); a client that streams a
# file flat out
WORKERS_PER_CPU = 1  # gets a worker thread per core at most (the others' frames wait in the pool's queue)
CONTROL_TYPES = ("start", "end", "reset", "ping")


class CloseCode(IntEnum):
    """The close codes of ``/stream`` (RFC 6455 section 7.4.1), each with the cases that send it."""

    NORMAL = 1000  # after "end": the summary was sent
    GOING_AWAY = 1001  # the server stops (Ctrl-C): the summary was sent first
    UNSUPPORTED = 1003  # audio before "start"; a text message that is not JSON or not a known type
    INVALID = 1007  # a bad "start" (rate, channels, unknown profile); a frame that is not whole PCM16 frames
    POLICY = 1008  # no "start" in START_WAIT_S, no message for IDLE_S, a second "start"
    TOO_BIG = 1009  # a message over MAX_FRAME_BYTES (or MAX_TEXT_BYTES of text)
    ENGINE = 1011  # the engine failed on this stream
    BUSY = 1013  # over --max-sessions: try again later


class ProtocolError(Exception):
    """A client's mistake: sent to it as an ``error`` message, then the connection closes with ``code``."""

    def __init__(self, code: CloseCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def to_dict(self) -> dict[str, Any]:
        return {"type": "error", "code": int(self.code), "message": self.message}


@dataclass(frozen=True)
class StreamStart:
    sample_rate: int
    channels: int = 1
    profile: str | None = None
    client: str | None = None


def parse_control(message: str | bytes) -> dict[str, Any]:
    """A client's text message as a dict with a known ``type``; ProtocolError otherwise."""
    if len(message) > MAX_TEXT_BYTES:
        raise ProtocolError(CloseCode.TOO_BIG, f"a text message is at most {MAX_TEXT_BYTES} bytes")
    try:
        obj = loads_json(message)
    except ValueError:  # not JSON, or nested deeper than the parser goes
        raise ProtocolError(CloseCode.UNSUPPORTED, "text messages are JSON objects, e.g. {\"type\": \"end\"}") from None
    kind = obj.get("type") if isinstance(obj, dict) else None
    if kind not in CONTROL_TYPES:
        raise ProtocolError(CloseCode.UNSUPPORTED, f"unknown message type {kind!r}: send one of "
                            f"{', '.join(CONTROL_TYPES)}, and audio as binary PCM16 frames")
    return obj


def parse_start(message: str | bytes, profiles: Mapping[str, Any] | None = None) -> StreamStart:
    """The first message of a stream; ProtocolError naming the field and the fix."""
    if isinstance(message, bytes):
        raise ProtocolError(CloseCode.UNSUPPORTED, 'audio before "start": send {"type": "start", "sample_rate": '
                            '16000, "channels": 1} first')
    obj = parse_control(message)
    if obj["type"] != "start":
        raise ProtocolError(CloseCode.UNSUPPORTED, f'"{obj["type"]}" before "start": send {{"type": "start", '
                            f'"sample_rate": 16000, "channels": 1}} first')
    rate, channels = obj.get("sample_rate"), obj.get("channels", 1)
    if not _whole(rate) or not MIN_RATE <= rate <= MAX_RATE:
        raise ProtocolError(CloseCode.INVALID, f"start: sample_rate must be a whole number of Hz in "
                            f"{MIN_RATE}-{MAX_RATE}, got {rate!r}")
    if not _whole(channels) or not 1 <= channels <= MAX_CHANNELS:
        raise ProtocolError(CloseCode.INVALID, f"start: channels must be 1-{MAX_CHANNELS}, got {channels!r}")
    profile = obj.get("profile")
    names = sorted(profiles or {})
    if profile is not None and profile not in names:
        offered = f"this server offers {', '.join(names)}" if names else "this server was given none (--profile)"
        raise ProtocolError(CloseCode.INVALID, f"start: unknown profile {profile!r}; {offered}")
    client = obj.get("client")
    if client is not None and (not isinstance(client, str) or len(client) > MAX_CLIENT_LABEL):
        raise ProtocolError(CloseCode.INVALID, f"start: client must be a label of at most {MAX_CLIENT_LABEL} "
                            "characters")
    return StreamStart(sample_rate=int(rate), channels=int(channels), profile=profile, client=client)


def _whole(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) \
        and float(value).is_integer()


class StreamSession:
    """One client's engine: ``feed(data) -> messages``, ``finish() -> messages`` (last windows and the summary),
    ``reset() -> messages`` (the summary so far; the engine starts again). Not thread-safe: the server calls one
    method at a time per session (its handler awaits each)."""

    def __init__(self, model: EmotionModel, start: StreamStart, config: EngineConfig, number: int) -> None:
        self.start = start
        self.number = number
        self.engine = Engine(model, start.sample_rate, config)
        self._frame_bytes = 2 * start.channels
        self._next_status = STATUS_EVERY_AUDIO_S
        self.finished = False

    def hello(self, extra: Mapping[str, Any]) -> dict[str, Any]:
        return {"type": "hello", **extra, "session": self.number, "client": self.start.client,
                "profile": self.engine.profile_name, "labels": list(self.engine.labels),
                "input": {"sample_rate": self.start.sample_rate, "channels": self.start.channels,
                          "format": "pcm16le"},
                "settings": self.engine.settings}

    def slices(self, data: bytes) -> list[bytes]:
        """``data`` cut into pieces of at most :data:`SLICE_S` of audio (whole frames; the events do not depend on
        how the audio is cut). ProtocolError for a message that is not whole PCM16 frames."""
        self._check_frames(data)
        step = max(1, int(SLICE_S * self.start.sample_rate)) * self._frame_bytes
        return [data[i : i + step] for i in range(0, len(data), step)] or [data]

    def _check_frames(self, data: bytes) -> None:
        if len(data) % self._frame_bytes:
            raise ProtocolError(CloseCode.INVALID, f"a binary message of {len(data)} bytes is not a whole number of "
                                f"PCM16 frames ({self._frame_bytes} bytes each for {self.start.channels} "
                                "channel(s))")

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._check_frames(data)
        if not data:
            return []
        samples = np.frombuffer(data, dtype="<i2").reshape(-1, self.start.channels)
        out = [ev.to_dict() for ev in self.engine.feed(samples)]
        audio_s = self.engine.summary.audio_s
        if audio_s >= self._next_status:
            self._next_status = audio_s + STATUS_EVERY_AUDIO_S
            out.append(self.status())
        return out

    def status(self) -> dict[str, Any]:
        st = self.engine.state
        return {"type": "status", "level_dbfs": round(float(st.level_dbfs), 1), "speech": bool(st.is_speech),
                "audio_s": round(self.engine.summary.audio_s, 3), "windows": self.engine.summary.windows}

    def finish(self) -> list[dict[str, Any]]:
        """The stream ended: its last windows and its summary (once)."""
        if self.finished:
            return []
        self.finished = True
        out = [ev.to_dict() for ev in self.engine.flush()]
        return [*out, self.engine.summary.to_dict()]

    def reset(self) -> list[dict[str, Any]]:
        out = self.finish()
        self.engine.reset()
        self.finished = False
        self._next_status = STATUS_EVERY_AUDIO_S
        return out


@dataclass
class StreamService:
    """What ``ser-serve``'s sessions share: the model (and one copy per ``--profile``), the engine settings, the
    bound on concurrent sessions and the worker threads that run the engines (the event loop never does)."""

    model: EmotionModel
    config: EngineConfig = field(default_factory=EngineConfig)
    profiles: Mapping[str, EmotionModel] = field(default_factory=dict)
    max_sessions: int = 0  # 0: SESSIONS_PER_CPU per CPU
    workers: int = 0  # 0: WORKERS_PER_CPU per CPU
    info: Mapping[str, Any] = field(default_factory=dict)  # model, version: sent in every hello

    def __post_init__(self) -> None:
        cpus = os.cpu_count() or 1
        self.max_sessions = self.max_sessions or SESSIONS_PER_CPU * cpus
        self.workers = self.workers or WORKERS_PER_CPU * cpus
        self.config.pipeline_config(self.model)  # validate once, early
        self.executor = ThreadPoolExecutor(self.workers, thread_name_prefix="ser-serve-engine")
        self._lock = threading.Lock()
        self.active = 0
        self.opened = 0
        self.windows = 0

    def reserve(self) -> int:
        """A place for a new connection (its session number); ProtocolError(BUSY) over :attr:`max_sessions`.
        Pair with :meth:`release`."""
        with self._lock:
            if self.active >= self.max_sessions:
                raise ProtocolError(CloseCode.BUSY, f"the server is busy: {self.active} of {self.max_sessions} "
                                    "sessions in use; try again later (ser-serve --max-sessions raises the bound)")
            self.active += 1
            self.opened += 1
            return self.opened

    def session(self, start: StreamStart, number: int) -> StreamSession:
        model = self.model if start.profile is None else self.profiles[start.profile]
        try:
            return StreamSession(model, start, self.config, number)
        except UserError as err:
            raise ProtocolError(CloseCode.INVALID, f"start: {err}") from None

    def release(self) -> None:
        with self._lock:
            self.active -= 1

    def count(self, messages: list[dict[str, Any]]) -> None:
        self.windows += sum(m.get("type") == "window" for m in messages)

    def health(self) -> dict[str, Any]:
        return {"sessions": self.active, "max_sessions": self.max_sessions, "sessions_total": self.opened,
                "windows": self.windows, "profiles": sorted(self.profiles)}

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
