"""``ser-live --serve``: the session's events over a local WebSocket, a live web page, and a JSON health check.

One module imports ``websockets`` (the ``[serve]`` extra), as one imports sounddevice. :class:`EventServer` runs
an asyncio event loop in a thread of its own; the engine's thread only calls :meth:`EventServer.publish`, which
hands the message to the loop (``call_soon_threadsafe``) and returns at once. Every client has a bounded queue: a
client that reads slowly or not at all loses its *oldest* messages (counted, and reported to it in the ``status``
messages it does receive), and the engine never waits for it.

Routes: ``/`` the page (package data, no CDN), ``/ws`` the event stream (on connect a ``hello`` with the model's
labels and settings and the last :data:`RECENT_EVENTS` events, then every event as the JSONL has it, ``status``
messages, and the ``summary`` before the server closes with code 1001), ``/status`` JSON health. ``ser-serve``
(:func:`serve_main`) is the same server without a local source: ``/stream`` instead of ``/ws``, where each client
streams its own audio to an engine session of its own (the protocol: :mod:`ser_live.realtime.faces.stream`).
:func:`stream_to` is the client side (``ser-live --connect``).

Safe by default: loopback unless a host is given; any other bind needs a token (generated and printed as a URL if
not given), checked on every route (``?token=`` or ``Authorization: Bearer``); the WebSocket checks ``Origin``
(the page's own origin and ``--allow-origin`` ones pass; programs that send none pass with the token rules);
clients of ``/ws`` may send nothing but small ``{"type": "ping"}`` messages. ``--tls-cert/--tls-key`` serve HTTPS
and WSS: browsers grant the microphone (the page's "use this browser's microphone") only to pages on localhost or
HTTPS.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ser_live.realtime.errors import UserError
from ser_live.realtime.faces.stream import (
    IDLE_S,
    MAX_FRAME_BYTES,
    START_WAIT_S,
    CloseCode,
    ProtocolError,
    StreamService,
    StreamSession,
    parse_control,
    parse_start,
)
from ser_live.realtime.fileio import loads_json

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
CLIENT_QUEUE = 256  # messages waiting for one client before its oldest are dropped
CLIENT_QUEUE_BYTES = 1 << 20  # ... and at most this many bytes of them (besides the newest one)
WRITE_LIMIT = 32 * 1024  # bytes a connection's send buffer takes before the sender waits for the client
LIBRARY_FRAME_BYTES = 2 * MAX_FRAME_BYTES  # what websockets reads of one message before closing with 1009 itself
MAX_WATCHERS = 64  # /ws clients at once (each holds at most CLIENT_QUEUE messages); one more gets 1013
PENDING_PER_SESSION = 2  # /stream connections still waiting to send "start", per allowed session; more get 1013
RECENT_EVENTS = 120  # window events a client gets on connect (60 s at the default hop)
MAX_CLIENT_MESSAGE = 1024  # bytes: clients only ping
STATUS_EVERY_S = 0.25  # at most this often a status message
DRAIN_S = 1.0  # at the end: how long the summary may take to reach the clients
CLOSE_TIMEOUT_S = 1.0  # a client that does not answer the closing handshake (it stopped reading) is dropped
START_TIMEOUT_S = 10.0
CLOSE_GOING_AWAY = 1001
MAX_REASON_BYTES = 123  # a close frame's reason (RFC 6455)
SERVE_HINT = "pip install 'ser-live[serve]' (websockets)"
PAGE = "index.html"
LOOPBACK_NAMES = ("localhost",)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")  # the Host names a loopback bind answers to
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def parse_bind(value: str, flag: str = "--serve") -> tuple[str, int]:
    """``[HOST:]PORT`` (or ``HOST:`` for the default port) -> (host, port); UserError naming ``flag`` otherwise."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "", value
    host = host.strip("[]") or DEFAULT_HOST
    if not port:
        return host, DEFAULT_PORT
    if not port.isdigit() or not 0 <= int(port) < 65536:  # 0: any free port (printed)
        raise UserError(f"{flag} {value}: the port must be a number in 0-65535, e.g. {flag} 127.0.0.1:8765")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(eq=False)  # one per connection, kept in a set by identity
class _Client:
    queue: asyncio.Queue[str]
    dropped: int = 0
    sent: int = 0
    queued_bytes: int = 0  # of the messages in ``queue`` (JSON is ASCII: one byte a character)


@dataclass(eq=False)
class _Stream:
    """One ``/stream`` connection: its session once started; the lock keeps the server's shutdown from finishing
    the session while the handler feeds it."""

    websocket: Any
    session: StreamSession | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    closing: bool = False


@dataclass
class ServeConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str | None = None
    allow_origins: Sequence[str] = ()
    allow_hosts: Sequence[str] = ()  # names the server is reached by, besides loopback's (--allow-host)
    hello: Mapping[str, Any] = field(default_factory=dict)  # model, labels, settings, source
    streams: StreamService | None = None  # ser-serve: /stream sessions instead of one local session at /ws
    tls_cert: str | None = None
    tls_key: str | None = None
    max_watchers: int = MAX_WATCHERS  # /ws clients at once


class EventServer:
    """The WebSocket/HTTP server of one session. ``start()`` binds (UserError: port in use, no websockets),
    ``publish(message)`` from any thread, ``close(summary)`` sends the summary and closes every client."""

    def __init__(self, config: ServeConfig) -> None:
        try:  # everything the loop thread will use, imported here, in the caller's thread
            import websockets.asyncio.server
            import websockets.datastructures
            import websockets.http11  # noqa: F401
            from websockets.exceptions import ConnectionClosed
        except ImportError:
            raise UserError(f"--serve needs websockets: {SERVE_HINT}") from None
        self._client_left = ConnectionClosed
        self.config = config
        if config.token is not None and not config.token.strip():
            raise UserError("--token is empty, which would turn authentication off: give a token, or leave --token "
                            "out (a loopback bind needs none; any other gets one generated)")
        self.token = config.token
        if self.token is None and not is_loopback(config.host):
            self.token = secrets.token_urlsafe(18)  # any other bind is reachable from the network
        if config.host in WILDCARD_HOSTS and not config.allow_hosts:
            logger.warning("serving on every interface without --allow-host: any host name is answered, so the "
                           "token is the only guard (name the host with --allow-host to refuse others)")
        self.ssl = _tls_context(config.tls_cert, config.tls_key)
        self.recent: deque[str] = deque(maxlen=RECENT_EVENTS)
        self.final: str | None = None  # the session's summary once it has ended (ser-live --stay's late pages)
        self.clients: set[_Client] = set()
        self.streams: set[_Stream] = set()
        self._pending = 0  # /stream connections that have not sent "start" yet (the loop thread's only)
        self.started = time.monotonic()
        self.windows = 0
        self.dropped_audio_s = 0.0
        self.last_status: dict[str, Any] = {}
        self._last_status_t = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._page = resources.files("ser_live.realtime.faces.web").joinpath(PAGE).read_bytes()

    # ---------------------------------------------------------------------------------------- public side
    @property
    def url(self) -> str:
        """Where to point a browser: a wildcard bind (0.0.0.0, ::) is shown as this machine's name, which the
        other machines on the network can reach (0.0.0.0 itself is no address to open)."""
        host = socket.gethostname() if self.config.host in WILDCARD_HOSTS else self.config.host
        host = f"[{host}]" if ":" in host else host
        query = f"?token={self.token}" if self.token else ""
        scheme = "https" if self.ssl is not None else "http"
        return f"{scheme}://{host}:{self.port}/{query}"

    @property
    def stream_url(self) -> str:
        """ser-serve's audio endpoint (with the token): what ``ser-live --connect`` takes."""
        return stream_url(self.url)

    @property
    def port(self) -> int:
        if self._server is not None:
            return int(self._server.sockets[0].getsockname()[1])
        return self.config.port

    def start(self) -> EventServer:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                self._server = loop.run_until_complete(self._serve())
            except BaseException as err:  # handed to the starting thread
                failure.append(err)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            # every connection's task ends here, in this loop: a task left pending would be finalised later by the
            # garbage collector in whatever thread runs then
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="ser-live-serve", daemon=True)
        self._thread.start()
        if not ready.wait(START_TIMEOUT_S):
            raise UserError(f"the server on {self.config.host}:{self.config.port} did not start")
        if failure:
            err = failure[0]
            if isinstance(err, OSError):
                hint = ("give ser-serve another [HOST:]PORT" if self.config.streams is not None
                        else "pass --serve with another port (or host)")
                raise UserError(f"cannot serve on {self.config.host}:{self.config.port}: "
                                f"{err.strerror or err}; {hint}") from None
            raise err
        return self

    def publish(self, message: Mapping[str, Any]) -> None:
        """Send ``message`` to every client (and remember window events and the summary for late joiners); returns
        at once."""
        if self._loop is None:
            return
        kind = message.get("type")
        if kind == "window":
            self.windows += 1
        text = json.dumps(message, allow_nan=False)
        if kind == "summary":
            self.final = text
        self._loop.call_soon_threadsafe(self._fanout, text, kind == "window")

    def status(self, **fields: Any) -> None:
        """A ``status`` message (level, speech, counters), at most every :data:`STATUS_EVERY_S`."""
        self.dropped_audio_s = float(fields.get("dropped_audio_s", self.dropped_audio_s))
        self.last_status = dict(fields)
        now = time.monotonic()
        if now - self._last_status_t < STATUS_EVERY_S or self._loop is None:
            return
        self._last_status_t = now
        self._loop.call_soon_threadsafe(self._fanout_status, dict(fields))

    def close(self, summary: Mapping[str, Any] | None = None) -> None:
        """Send ``summary`` (if given), let the clients' queues drain (up to :data:`DRAIN_S`), close them with 1001."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if summary is not None:
            self.publish(summary)
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        with contextlib.suppress(Exception):
            future.result(timeout=DRAIN_S + CLOSE_TIMEOUT_S + 5.0)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5.0)
        self._loop = None

    def health(self) -> dict[str, Any]:
        streams = self.config.streams
        out = {
            "mode": "live" if streams is None else "serve",
            "source": self.config.hello.get("source"),
            "model": self.config.hello.get("model"),
            "uptime_s": round(time.monotonic() - self.started, 3),
            "windows": self.windows,
            "dropped_audio_s": round(self.dropped_audio_s, 3),
            "clients": len(self.clients) + len(self.streams),
        }
        if streams is not None:
            out.update(streams.health())
        return out

    # ----------------------------------------------------------------------------------------- loop side
    async def _serve(self) -> Any:
        from websockets.asyncio.server import serve

        # /stream: the library takes up to twice the protocol's bound, so that a message just over it gets an error
        # message naming the bound before the close (beyond that the library closes with 1009 itself)
        max_size = MAX_CLIENT_MESSAGE if self.config.streams is None else LIBRARY_FRAME_BYTES
        return await serve(self._handler, self.config.host, self.config.port, process_request=self._http,
                           max_size=max_size, max_queue=4, write_limit=WRITE_LIMIT, close_timeout=CLOSE_TIMEOUT_S,
                           ssl=self.ssl)

    def _fanout(self, text: str, remember: bool) -> None:
        if remember:
            self.recent.append(text)
        for client in list(self.clients):
            _put(client, text)

    def _fanout_status(self, fields: dict[str, Any]) -> None:
        for client in list(self.clients):
            message = {"type": "status", **fields, "clients": len(self.clients), "dropped_messages": client.dropped}
            _put(client, json.dumps(message, allow_nan=False))

    async def _shutdown(self) -> None:
        for stream in list(self.streams):  # every stream gets its last windows and its summary before 1001
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._finish_stream(stream), DRAIN_S)
        deadline = time.monotonic() + DRAIN_S
        while any(not c.queue.empty() for c in self.clients) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self._server is not None:
            self._server.close()  # closes every connection with 1001 (going away)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), CLOSE_TIMEOUT_S + 1.0)

    def _authorised(self, request: Any) -> bool:
        if self.token is None:
            return True
        given = parse_qs(urlsplit(request.path).query).get("token", [""])[0]
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":  # auth schemes are case-insensitive (RFC 9110)
            given = given or credentials.strip()
        return hmac.compare_digest(given.encode(), self.token.encode())

    def _names(self) -> set[str]:
        """The host names this server answers to: loopback's on a loopback bind, the bind address, --allow-host."""
        names = {name.lower() for name in self.config.allow_hosts}
        if is_loopback(self.config.host):
            names |= set(LOOPBACK_HOSTS)
        if self.config.host not in WILDCARD_HOSTS:
            names.add(f"[{self.config.host}]" if ":" in self.config.host else self.config.host.lower())
        return names

    def _host_ok(self, request: Any) -> bool:
        """DNS rebinding: a page of another site, its name pointed at this machine, sends its own name as Host. A
        request is answered only under a name the server is reachable by (with or without this server's port); a
        wildcard bind without --allow-host relies on its token (every request must carry it)."""
        host = request.headers.get("Host", "").strip().lower()
        names = self._names()
        if self.config.host in WILDCARD_HOSTS and not self.config.allow_hosts:
            return self.token is not None
        return host in names or host in {f"{name}:{self.port}" for name in names}

    def _origin_ok(self, request: Any) -> bool:
        """A page's Origin must be one of the server's own (its names with this port, http or https) or an
        --allow-origin; never just "the same as the request's Host", which an attacker's page controls. A wildcard
        bind without --allow-host (token required) accepts the page it served itself (Origin = Host)."""
        origin = request.headers.get("Origin")
        if origin is None:
            return True  # a program, not a page: the token rules apply
        own = {f"{scheme}://{name}:{self.port}" for name in self._names() for scheme in ("http", "https")}
        if self.config.host in WILDCARD_HOSTS and not self.config.allow_hosts and self.token is not None:
            host = request.headers.get("Host", "")
            own |= {f"http://{host}", f"https://{host}"}
        return origin in own or origin in self.config.allow_origins

    def _http(self, connection: Any, request: Any) -> Any:
        path = urlsplit(request.path).path
        if not self._host_ok(request):
            return _response(HTTPStatus.FORBIDDEN, b"this server does not answer to that host name (--allow-host)\n")
        if not self._authorised(request):
            return _response(HTTPStatus.UNAUTHORIZED, b"a token is needed: open the URL ser-live printed\n")
        if path in ("/ws", "/stream"):
            if (path == "/stream") != (self.config.streams is not None):
                hint = (b"ser-serve has no session of its own: stream audio to /stream\n" if path == "/ws" else
                        b"this server shows its own session at /ws; ser-serve takes audio at /stream\n")
                return _response(HTTPStatus.NOT_FOUND, hint)
            if not self._origin_ok(request):
                return _response(HTTPStatus.FORBIDDEN, b"this origin may not read the session (--allow-origin)\n")
            return None  # the WebSocket handshake goes on
        if path == "/":
            return _response(HTTPStatus.OK, self._page, "text/html; charset=utf-8")
        if path == "/status":
            return _response(HTTPStatus.OK, json.dumps(self.health()).encode(), "application/json")
        return _response(HTTPStatus.NOT_FOUND, b"not found: try / , /ws (or /stream) or /status\n")

    async def _handler(self, websocket: Any) -> None:
        if urlsplit(websocket.request.path).path == "/stream":
            await self._stream(websocket)
        else:
            await self._watch(websocket)

    async def _watch(self, websocket: Any) -> None:
        if len(self.clients) >= self.config.max_watchers:
            with contextlib.suppress(Exception):
                await websocket.close(int(CloseCode.BUSY), f"too many /ws clients ({self.config.max_watchers}): try "
                                      "again later")
            return
        client = _Client(asyncio.Queue(CLIENT_QUEUE))
        hello = {"type": "hello", **self.config.hello, "recent": [json.loads(t) for t in self.recent]}
        if self.final is not None:
            hello["summary"] = json.loads(self.final)
        self.clients.add(client)
        sender = asyncio.create_task(self._send(websocket, client, json.dumps(hello, allow_nan=False)))
        try:
            async for message in websocket:  # clients may only ping; anything else is ignored
                if len(message) > MAX_CLIENT_MESSAGE:
                    await websocket.close(int(CloseCode.TOO_BIG), f"/ws takes messages of at most "
                                          f"{MAX_CLIENT_MESSAGE} bytes")
                    break
                with contextlib.suppress(ValueError, TypeError, AttributeError):
                    if loads_json(message).get("type") == "ping":
                        _put(client, json.dumps({"type": "pong"}))
        except Exception as err:  # a client that vanished: free it, keep serving the others
            logger.debug("client left: %s", err)
        finally:
            self.clients.discard(client)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    async def _send(self, websocket: Any, client: _Client, hello: str) -> None:
        with contextlib.suppress(Exception):
            await websocket.send(hello)
            while True:
                text = await client.queue.get()
                client.queued_bytes -= len(text)
                await websocket.send(text)
                client.sent += 1


    # ------------------------------------------------------------------------------------ ser-serve's /stream
    async def _stream(self, websocket: Any) -> None:
        service = self.config.streams
        assert service is not None  # _http lets /stream through only then
        stream = _Stream(websocket)
        reserved = False
        pending = True
        self._pending += 1
        try:
            # a connection takes a session only once its start arrives: connections that never send one hold no
            # place (their own number is bounded, and each is closed after START_WAIT_S)
            if self._pending > PENDING_PER_SESSION * service.max_sessions:
                raise ProtocolError(CloseCode.BUSY, f"the server is busy: {self._pending - 1} connections have not "
                                    'sent "start" yet; try again later')
            self.streams.add(stream)
            try:
                first = await asyncio.wait_for(websocket.recv(), START_WAIT_S)
            except TimeoutError:
                raise ProtocolError(CloseCode.POLICY, f'no "start" message within {START_WAIT_S:g} s') from None
            start = parse_start(first, service.profiles)
            self._pending -= 1
            pending = False
            number = service.reserve()
            reserved = True
            session = service.session(start, number)
            stream.session = session
            await websocket.send(json.dumps(session.hello(self.config.hello), allow_nan=False))
            while await self._stream_message(stream, service, session):
                pass
        except ProtocolError as err:
            logger.info("stream %s: %s", id(stream), err.message)
            with contextlib.suppress(Exception):
                await websocket.send(json.dumps(err.to_dict()))
                await websocket.close(int(err.code), _reason(err.message))
        except self._client_left as err:  # it vanished mid-stream: free the session
            logger.debug("stream client left: %s", err)
        except Exception as err:  # the engine failed on this stream: say so, free the session
            logger.warning("stream %s failed: %s", id(stream), err)
            message = str(err) if isinstance(err, UserError) else f"the engine failed: {type(err).__name__}"
            with contextlib.suppress(Exception):
                await websocket.send(json.dumps(ProtocolError(CloseCode.ENGINE, message).to_dict()))
                await websocket.close(int(CloseCode.ENGINE), _reason(message))
        finally:
            self.streams.discard(stream)
            if pending:
                self._pending -= 1
            if reserved:
                service.release()

    async def _stream_message(self, stream: _Stream, service: StreamService, session: StreamSession) -> bool:
        """Receive and answer one client message; False when the stream is over."""
        try:
            message = await asyncio.wait_for(stream.websocket.recv(), IDLE_S)
        except TimeoutError:
            raise ProtocolError(CloseCode.POLICY, f'no message for {IDLE_S:g} s: send audio, or {{"type": "end"}}'
                                ) from None
        loop = asyncio.get_running_loop()
        async with stream.lock:
            if stream.closing:  # the server is stopping and has sent this stream its summary
                return False
            if isinstance(message, bytes) and len(message) > MAX_FRAME_BYTES:
                raise ProtocolError(CloseCode.TOO_BIG, f"a binary message of {len(message)} bytes is over the "
                                    f"{MAX_FRAME_BYTES}-byte bound: send the audio in smaller frames (100 ms is "
                                    "typical)")
            kind = "audio" if isinstance(message, bytes) else parse_control(message)["type"]
            if kind == "start":
                raise ProtocolError(CloseCode.POLICY, 'a second "start": send {"type": "reset"} to begin again')
            if kind == "ping":
                out = [{"type": "pong"}]
            elif kind == "audio":  # a slice at a time, each a job of its own: other sessions get turns between them
                for piece in session.slices(message):  # (sent as they come: a client that does not read slows
                    await _send_all(stream, service, await loop.run_in_executor(service.executor, session.feed,
                                                                                 piece))  # its own upload only)
                out = []
            else:  # end or reset: the engine's last windows and the summary
                out = await loop.run_in_executor(service.executor, session.finish if kind == "end" else session.reset)
            await _send_all(stream, service, out)
            if kind == "end":
                stream.closing = True
                await stream.websocket.close(int(CloseCode.NORMAL), "end of stream")
                return False
        return True

    async def _finish_stream(self, stream: _Stream) -> None:
        service = self.config.streams
        async with stream.lock:
            if stream.closing or stream.session is None or service is None:
                return
            stream.closing = True
            out = await asyncio.get_running_loop().run_in_executor(service.executor, stream.session.finish)
            await _send_all(stream, service, out)


async def _send_all(stream: _Stream, service: StreamService, messages: list[dict[str, Any]]) -> None:
    service.count(messages)
    for item in messages:
        await stream.websocket.send(json.dumps(item, allow_nan=False))


def _reason(message: str) -> str:
    """A close reason of at most MAX_REASON_BYTES bytes (the whole message went in the error message before)."""
    data = message.encode()
    return message if len(data) <= MAX_REASON_BYTES else data[: MAX_REASON_BYTES - 3].decode(errors="ignore") + "..."


def _tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise UserError("--tls-cert and --tls-key go together: pass both (a certificate and its private key)")
    for flag, path in (("--tls-cert", cert), ("--tls-key", key)):
        if not Path(path).is_file():  # a folder, a missing file, or a pipe (reading one would block start-up)
            what = "does not exist" if not Path(path).exists() else "is not a regular file"
            raise UserError(f"{flag} {path} {what}: pass a PEM file")
    encrypted = False

    def no_password() -> str:  # never prompt (there may be no terminal): say what is wrong instead
        nonlocal encrypted
        encrypted = True
        raise ValueError("encrypted key")

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key, password=no_password)
    except (OSError, ssl.SSLError, ValueError) as err:
        if encrypted:
            raise UserError(f"--tls-key {key} is encrypted (it needs a passphrase): decrypt it once, e.g. openssl "
                            "pkey -in KEY -out plain-key.pem, and pass that") from None
        raise UserError(f"cannot use --tls-cert {cert} / --tls-key {key}: {getattr(err, 'strerror', None) or err}; "
                        "pass a PEM certificate and its private key") from None
    return context


def _put(client: _Client, text: str) -> None:
    """Queue ``text`` for ``client``, dropping (and counting) its oldest messages while the queue is full or would
    hold more than :data:`CLIENT_QUEUE_BYTES`: a client that does not read holds a bounded amount of memory."""
    while not client.queue.empty() and (client.queue.full()
                                        or client.queued_bytes + len(text) > CLIENT_QUEUE_BYTES):
        client.queued_bytes -= len(client.queue.get_nowait())
        client.dropped += 1
    client.queue.put_nowait(text)
    client.queued_bytes += len(text)


def _response(status: HTTPStatus, body: bytes, content_type: str = "text/plain; charset=utf-8") -> Any:
    from websockets.datastructures import Headers  # imported by EventServer() already: no import in the loop
    from websockets.http11 import Response

    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))),
                       ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")])
    return Response(status.value, status.phrase, headers, body)


# ------------------------------------------------------------------------------------------------ the client side
def stream_url(url: str) -> str:
    """``ser-live --connect URL``: http(s) becomes ws(s), a bare host gets ``/stream``; the query (token) stays."""
    try:
        parts = urlsplit(url if "://" in url else f"ws://{url}")
        parts.port  # noqa: B018 - a port that is not a number (or out of range) raises here, not in the client
    except ValueError as err:
        raise UserError(f"--connect {url}: not a valid URL ({err}); expected a ser-serve address such as "
                        "ws://127.0.0.1:8765") from None
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss") or not parts.hostname:
        raise UserError(f"--connect {url}: expected a ser-serve address such as ws://127.0.0.1:8765 or the URL "
                        "ser-serve printed")
    path = parts.path if parts.path not in ("", "/") else "/stream"
    return f"{scheme}://{parts.netloc}{path}" + (f"?{parts.query}" if parts.query else "")


def pcm16(block: Any) -> bytes:
    """A float block in [-1, 1] (or int16 samples), frames x channels, as interleaved PCM16 little-endian bytes;
    PCM16 read as float (x / 32768) comes back bit for bit."""
    import numpy as np

    arr = np.asarray(block)
    if arr.dtype.kind == "f":
        arr = np.clip(np.rint(arr * 32768.0), -32768, 32767)
    return np.ascontiguousarray(arr, dtype="<i2").tobytes()


def stream_to(
    url: str,
    blocks: Iterable[Any],
    sample_rate: int,
    channels: int,
    on_message: Callable[[dict[str, Any]], None],
    profile: str | None = None,
    client: str | None = None,
    stop: Callable[[], bool] = lambda: False,
    cafile: str | None = None,
) -> dict[str, Any] | None:
    """Stream ``blocks`` to ser-serve's ``/stream`` at ``url`` and hand every message it sends (hello, windows,
    status, summary) to ``on_message``, in this thread (no threads are started). Returns the summary (None when
    the server went away before sending one). UserError for a refusal (the server's message and close code), a
    wrong address or token. ``stop()`` is asked after every block: True ends the stream early, with a summary.
    ``cafile``: a certificate (PEM) to trust for ``wss://``, e.g. a server's self-signed one."""
    target = stream_url(url)  # a malformed URL is named first, with or without websockets
    try:
        from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
        from websockets.sync.client import connect
    except ImportError:
        raise UserError(f"--connect needs websockets: {SERVE_HINT}") from None
    shown = target.split("?")[0]
    start = {"type": "start", "sample_rate": int(sample_rate), "channels": int(channels)}
    start.update({k: v for k, v in (("profile", profile), ("client", client)) if v is not None})
    summary: dict[str, Any] | None = None

    def take(text: str | bytes) -> None:
        nonlocal summary
        try:
            message = loads_json(text)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            raise UserError(f"{shown} sent a message that is not a JSON object: is it a ser-serve?")
        if message.get("type") == "error":
            raise UserError(f"{shown} refused the stream: {message.get('message')} (close code {message.get('code')})")
        if message.get("type") == "summary":
            summary = message
        on_message(message)

    try:
        context = None
        if target.startswith("wss://") and cafile is not None:
            try:
                context = ssl.create_default_context(cafile=cafile)
            except (OSError, ssl.SSLError) as err:
                raise UserError(f"--tls-ca {cafile}: {getattr(err, 'strerror', None) or err}; pass the server's "
                                "certificate (PEM)") from None
        elif cafile is not None:
            raise UserError("--tls-ca applies to a wss:// (or https://) server only")
        with connect(target, open_timeout=START_TIMEOUT_S, max_size=MAX_FRAME_BYTES, ssl=context) as ws:
            ws.send(json.dumps(start))
            take(ws.recv(timeout=START_WAIT_S))
            try:
                for block in blocks:
                    if block is not None and len(block):
                        ws.send(pcm16(block))
                    while True:  # whatever the server has sent meanwhile, without waiting
                        try:
                            take(ws.recv(timeout=0))
                        except TimeoutError:
                            break
                    if stop():
                        break
                ws.send(json.dumps({"type": "end"}))
            except ConnectionClosed:  # the server closed (stopping: it sent the summary first): keep what it sent
                logger.debug("the server closed the stream while audio was being sent")
            for text in ws:  # the last windows and the summary (also after a failed send); the server then closes
                take(text)
    except InvalidStatus as err:
        status = err.response.status_code
        why = {401: "it needs a token: pass the URL ser-serve printed (with ?token=...)",
               403: "this origin is not allowed", 404: "no /stream there: is it ser-serve (not ser-live --serve)?"}
        raise UserError(f"{shown} answered HTTP {status}: {why.get(status, 'not a ser-serve endpoint')}") from None
    except ssl.SSLCertVerificationError as err:
        raise UserError(f"cannot stream to {shown}: its certificate is not trusted ({err.verify_message}); pass it "
                        "with --tls-ca CERT.pem if it is the server's own") from None
    except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as err:
        raise UserError(f"cannot stream to {shown}: {err}; is ser-serve running there?") from None
    except ConnectionClosed as err:
        rcvd = err.rcvd
        if rcvd is not None and rcvd.code not in (CloseCode.NORMAL, CloseCode.GOING_AWAY):
            raise UserError(f"{shown} closed the stream: {rcvd.reason or 'no reason'} (close code {rcvd.code})"
                            ) from None
    return summary
