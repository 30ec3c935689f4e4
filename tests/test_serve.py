"""``ser-live --serve``: the WebSocket feed carries the JSONL's events, slow clients never hold up the others or the
engine, tokens and origins are checked, a port in use is one line, and the page and /status are served."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from ser_live.realtime.errors import UserError
from ser_live.realtime.faces.cli import main as live_main
from ser_live.realtime.faces.serve import CLIENT_QUEUE, CLIENT_QUEUE_BYTES, EventServer, ServeConfig, parse_bind
from tests.audio_fixtures import voiced_tone
from tests.tiny_model import make_tiny_model

RATE = 16000
HELLO = {"model": "tiny", "labels": ["a", "b"], "source": "test"}


@pytest.fixture()
def server() -> Any:
    srv = EventServer(ServeConfig(port=0, hello=HELLO)).start()
    yield srv
    srv.close()


def window(k: int, pad: int = 0) -> dict[str, Any]:
    return {"type": "window", "end_s": 0.5 * k, "label": "a", "confidence": 0.6, "probs": {"a": 0.6, "b": 0.4},
            "pad": "x" * pad}


async def collect(url: str, until: str = "summary", **kwargs: Any) -> list[dict[str, Any]]:
    got = []
    async with connect(url, **kwargs) as ws:
        async for text in ws:
            got.append(json.loads(text))
            if got[-1]["type"] == until:
                break
    return got


def test_bind_parsing_and_loopback_needs_no_token() -> None:
    assert parse_bind("9000") == ("127.0.0.1", 9000)
    assert parse_bind("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert parse_bind("[::1]:9000") == ("::1", 9000)
    with pytest.raises(UserError, match="--serve x:70000: the port must be"):
        parse_bind("x:70000")
    assert EventServer(ServeConfig(host="127.0.0.1")).token is None
    wide = EventServer(ServeConfig(host="0.0.0.0", port=9000))
    assert wide.token  # reachable from the network: a token is generated
    assert wide.url == f"http://{socket.gethostname()}:9000/?token={wide.token}"  # an address others can open


def test_a_client_gets_hello_every_event_and_the_summary(server: EventServer) -> None:
    server.publish(window(0))  # before the client: it arrives in hello's recent events

    async def run() -> list[dict[str, Any]]:
        task = asyncio.create_task(collect(f"ws://127.0.0.1:{server.port}/ws"))
        await asyncio.sleep(0.3)
        for k in range(1, 20):
            server.publish(window(k))
        server.status(level_dbfs=-20.0, speech=True)
        await asyncio.to_thread(server.close, {"type": "summary", "windows": 20})
        return await task

    got = asyncio.run(run())
    assert got[0]["type"] == "hello" and got[0]["labels"] == ["a", "b"]
    ends = [e["end_s"] for e in got[0]["recent"]] + [e["end_s"] for e in got if e["type"] == "window"]
    assert ends == [0.5 * k for k in range(20)]
    assert got[-1] == {"type": "summary", "windows": 20}


def stalled_client(port: int) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads (a tiny receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)  # byte by byte: read the response and nothing after it
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def test_a_client_that_never_reads_loses_its_oldest_messages_and_nobody_waits(server: EventServer) -> None:
    n = 3 * CLIENT_QUEUE

    held: list[int] = []  # the bytes queued for the client that does not read, after each publish

    async def run() -> tuple[list[list[dict[str, Any]]], float, int]:
        stalled = stalled_client(server.port)  # handshakes, then never reads: its TCP buffers fill up
        readers = [asyncio.create_task(collect(f"ws://127.0.0.1:{server.port}/ws")) for _ in range(2)]
        await asyncio.sleep(0.3)
        t0 = time.perf_counter()
        slowest = 0.0
        for k in range(n):
            t = time.perf_counter()
            server.publish(window(k, pad=100_000))  # 100 kB each: the stalled socket's buffers fill quickly
            slowest = max(slowest, time.perf_counter() - t)
            await asyncio.sleep(0)  # the loop queues it
            held.append(max(c.queued_bytes for c in list(server.clients)))
            if k % 8 == 7:  # let the readers catch up (two clients have sent everything), as a page would (8 of
                # these messages stay under the byte bound)
                deadline = time.monotonic() + 10
                while sum(c.sent > k for c in list(server.clients)) < 2 and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
        assert time.perf_counter() - t0 < 30
        await asyncio.sleep(0.5)
        dropped = max(c.dropped for c in server.clients)
        await asyncio.to_thread(server.close, {"type": "summary"})
        results = [await r for r in readers]
        stalled.close()
        return results, slowest, dropped

    results, slowest, dropped = asyncio.run(run())
    for got in results:  # the reading clients get every event, in order
        assert [e["end_s"] for e in got if e["type"] == "window"] == [0.5 * k for k in range(n)]
    assert dropped > 0
    # a client that never reads holds at most the byte bound (+ the newest message), not 256 of these messages
    assert max(held) <= CLIENT_QUEUE_BYTES + 101_000 < CLIENT_QUEUE * 100_000
    assert max(held) > CLIENT_QUEUE_BYTES // 2  # it did fill up to the bound
    assert slowest < 0.05  # publish hands over and returns: it never waits for a client


def test_tokens_and_origins(tmp_path: Path) -> None:
    srv = EventServer(ServeConfig(host="0.0.0.0", port=0, hello=HELLO, allow_origins=("http://allowed.test",)))
    srv.start()
    try:
        base = f"127.0.0.1:{srv.port}"

        async def status_of(url: str, **kwargs: Any) -> int:
            try:
                async with connect(url, **kwargs) as ws:
                    await ws.recv()
                    return 101
            except InvalidStatus as err:
                return err.response.status_code

        async def run() -> list[int]:
            return [
                await status_of(f"ws://{base}/ws"),  # no token
                await status_of(f"ws://{base}/ws?token=wrong"),
                await status_of(f"ws://{base}/ws?token={srv.token}"),  # a program: no Origin
                await status_of(f"ws://{base}/ws", additional_headers={"Authorization": f"Bearer {srv.token}"}),
                await status_of(f"ws://{base}/ws", additional_headers={"Authorization": f"bearer {srv.token}"}),
                await status_of(f"ws://{base}/ws", additional_headers={"Authorization": f"Basic {srv.token}"}),
                await status_of(f"ws://{base}/ws?token={srv.token}", origin="http://evil.test"),
                await status_of(f"ws://{base}/ws?token={srv.token}", origin=f"http://{base}"),  # the page's own
                await status_of(f"ws://{base}/ws?token={srv.token}", origin="http://allowed.test"),
            ]

        assert asyncio.run(run()) == [401, 401, 101, 101, 101, 401, 403, 101, 101]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://{base}/status")
        assert refused.value.code == 401
        health = json.loads(urllib.request.urlopen(f"http://{base}/status?token={srv.token}").read())
        assert set(health) == {"mode", "source", "model", "uptime_s", "windows", "dropped_audio_s", "clients"}
        assert health["mode"] == "live"
        page = urllib.request.urlopen(f"http://{base}/?token={srv.token}")
        assert page.headers["Content-Type"].startswith("text/html") and b"new WebSocket" in page.read()
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://{base}/nothing?token={srv.token}")
        assert missing.value.code == 404
    finally:
        srv.close()


def test_a_port_in_use_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserError, match=f"cannot serve on 127.0.0.1:{port}: .*another port"):
            EventServer(ServeConfig(port=port)).start()
        model = make_tiny_model(tmp_path / "tiny.onnx")
        wav = tmp_path / "v.wav"
        sf.write(wav, voiced_tone(180.0, 1.0, 0.3, 4.0, seed=1), RATE)
        code = live_main(["--file", str(wav), "--fast", "--no-dashboard", "--model", str(model),
                          "--serve", f"127.0.0.1:{port}"])
        err = capsys.readouterr().err
        assert code == 2 and "another port" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
        from ser_live.realtime.faces.serve_cli import main as serve_main

        assert serve_main([f"127.0.0.1:{port}", "--model", str(model)]) == 2
    err = capsys.readouterr().err
    assert "give ser-serve another [HOST:]PORT" in err and "--serve" not in err and len(err.strip().splitlines()) == 1


def test_a_replay_served_gives_the_jsonl_events(tmp_path: Path) -> None:
    """ser-live --file (real-time pace) --serve --jsonl: two WebSocket clients see exactly the JSONL's windows while a
    third never reads, and the replay loses no audio."""
    model = make_tiny_model(tmp_path / "tiny.onnx")
    wav = tmp_path / "voice.wav"
    sf.write(wav, np.concatenate([np.zeros(RATE // 2, np.float32), voiced_tone(180.0, 3.0, 0.3, 4.0, seed=2)]), RATE)
    jsonl = tmp_path / "events.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ser_live.realtime.faces.cli", "--file", str(wav), "--no-dashboard", "--model",
         str(model), "--jsonl", str(jsonl), "--serve", "127.0.0.1:0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stderr.readline()  # type: ignore[union-attr]
        url = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert url, line
        stalled = stalled_client(int(url.group(1)))

        async def readers() -> list[list[dict[str, Any]]]:
            return list(await asyncio.gather(*(collect(f"ws://127.0.0.1:{url.group(1)}/ws") for _ in range(2))))

        results = asyncio.run(readers())
        assert proc.wait(timeout=60) == 0
        stalled.close()
    finally:
        if proc.poll() is None:
            proc.kill()
    written = [json.loads(x) for x in jsonl.read_text().splitlines()]
    windows = [e for e in written if e["type"] == "window"]
    assert windows and written[-1]["dropped_audio_s"] == 0.0
    for got in results:
        served = [e for e in got[0]["recent"]] + [e for e in got if e["type"] == "window"]
        assert served == windows
        assert got[-1] == written[-1] and got[-1]["type"] == "summary"
        assert any(e["type"] == "status" for e in got)


def test_stay_keeps_the_finished_session_for_a_page_opened_after_the_end(tmp_path: Path) -> None:
    """ser-live --file --serve --stay: once the recording has ended (JSONL and summary written), a page that connects
    gets the session's windows and its summary in the hello; Ctrl-C (SIGINT) then ends ser-live with 0."""
    import signal

    model = make_tiny_model(tmp_path / "tiny.onnx")
    wav = tmp_path / "voice.wav"
    sf.write(wav, voiced_tone(180.0, 2.0, 0.3, 4.0, seed=3), RATE)
    jsonl = tmp_path / "events.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ser_live.realtime.faces.cli", "--file", str(wav), "--fast", "--no-dashboard",
         "--model", str(model), "--jsonl", str(jsonl), "--serve", "127.0.0.1:0", "--stay"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        lines = [proc.stderr.readline()]  # type: ignore[union-attr]
        url = re.search(r"http://127\.0\.0\.1:(\d+)/", lines[0])
        assert url, lines
        while "keeps the finished session until Ctrl-C" not in lines[-1]:
            lines.append(proc.stderr.readline())  # type: ignore[union-attr]
            assert lines[-1], lines
        assert proc.poll() is None  # still serving after the end
        written = [json.loads(x) for x in jsonl.read_text().splitlines()]  # everything was written before the wait

        async def late_page() -> dict[str, Any]:
            async with connect(f"ws://127.0.0.1:{url.group(1)}/ws") as ws:
                return json.loads(await ws.recv())

        hello = asyncio.run(late_page())
        assert hello["type"] == "hello"
        assert hello["recent"] == [e for e in written if e["type"] == "window"] and hello["recent"]
        assert hello["summary"] == written[-1] and written[-1]["type"] == "summary"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert "Traceback" not in proc.stderr.read()  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            proc.kill()


def test_stay_is_refused_where_it_cannot_apply(capsys: pytest.CaptureFixture[str]) -> None:
    assert live_main(["--stay"]) == 2  # no --serve
    assert "--stay only applies with --serve" in capsys.readouterr().err
    assert live_main(["--serve", "127.0.0.1:0", "--stay"]) == 2  # the microphone
    assert "the microphone runs until Ctrl-C anyway" in capsys.readouterr().err


def raw_status(port: int, host: str, path: str = "/status", origin: str | None = None, upgrade: bool = False) -> int:
    """The HTTP status a raw request gets (what a browser sends after a DNS-rebinding attack, say)."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}"]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    if upgrade:
        lines += ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                  "Sec-WebSocket-Version: 13"]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return int(sock.recv(4096).split(b" ", 2)[1])


def test_dns_rebinding_is_refused_on_a_loopback_bind(server: EventServer) -> None:
    port = server.port
    evil = f"attacker.example:{port}"
    assert raw_status(port, evil) == 403
    assert raw_status(port, evil, "/") == 403
    assert raw_status(port, evil, "/ws", origin=f"http://{evil}", upgrade=True) == 403
    for own in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "127.0.0.1"):
        assert raw_status(port, own) == 200, own
    assert raw_status(port, f"127.0.0.1:{port}", "/ws", origin=f"http://localhost:{port}", upgrade=True) == 101
    # the Origin is checked against the server's own origins, not against the request's Host
    assert raw_status(port, f"127.0.0.1:{port}", "/ws", origin=f"http://{evil}", upgrade=True) == 403
    assert raw_status(port, f"127.0.0.1:{port}", "/ws", origin=f"http://127.0.0.1:{port + 1}", upgrade=True) == 403


def test_allow_host_names_the_others_and_an_empty_token_is_refused() -> None:
    srv = EventServer(ServeConfig(port=0, hello=HELLO, allow_hosts=("monitor.lan",))).start()
    try:
        port = srv.port
        assert raw_status(port, f"monitor.lan:{port}") == 200
        assert raw_status(port, f"monitor.lan:{port}", "/ws", origin=f"http://monitor.lan:{port}", upgrade=True) == 101
        assert raw_status(port, f"other.lan:{port}") == 403
    finally:
        srv.close()
    with pytest.raises(UserError, match="--token is empty"):
        EventServer(ServeConfig(host="0.0.0.0", port=0, token=""))
    with pytest.raises(UserError, match="--token is empty"):
        EventServer(ServeConfig(port=0, token="  "))
