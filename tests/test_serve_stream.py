"""``ser-serve``'s ``/stream``: a client streaming a file gets the events ``ser-live --file`` writes for it, four
clients at once each get their own, every protocol error has its message and close code, a client that vanishes
frees its session, and stopping the server sends every stream its summary."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidMessage

import ser_live.realtime.faces.serve as serve_module
from ser_live.realtime.config import EngineConfig
from ser_live.realtime.errors import UserError
from ser_live.realtime.faces.cli import main as live_main
from ser_live.realtime.faces.serve import EventServer, ServeConfig, pcm16, stream_to, stream_url
from ser_live.realtime.faces.serve_cli import main as serve_main
from ser_live.realtime.faces.serve_cli import parse_profiles
from ser_live.realtime.faces.stream import MAX_FRAME_BYTES, CloseCode, StreamService
from ser_live.realtime.model import load_model
from tests.audio_fixtures import voiced_tone
from tests.tiny_model import make_tiny_model

RATE = 16000


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny.onnx")


def start_server(model_path: Path, max_sessions: int = 0, **config: Any) -> EventServer:
    model = load_model(model_path, threads=1)
    service = StreamService(model, EngineConfig(), max_sessions=max_sessions, info={"model": model.name})
    return EventServer(ServeConfig(port=0, streams=service, hello={"model": model.name}, **config)).start()


@pytest.fixture()
def server(tiny: Path) -> Any:
    srv = start_server(tiny, max_sessions=4)
    yield srv
    srv.close()
    srv.config.streams.close()


def voice_file(path: Path, seed: int, seconds: float = 3.0, f0: float = 180.0, channels: int = 1) -> Path:
    voice = np.concatenate([np.zeros(RATE // 4, np.float32), voiced_tone(f0, seconds, 0.3, 4.0, seed=seed)])
    data = voice if channels == 1 else np.stack([voice, 0.5 * voice], axis=1)
    sf.write(path, data, RATE, subtype="PCM_16")
    return path


def local_events(model: Path, wav: Path, out: Path) -> list[dict[str, Any]]:
    """What ``ser-live --file`` writes for ``wav`` (the live engine, block by block)."""
    assert live_main(["--file", str(wav), "--fast", "--streaming-path", "--no-dashboard", "--model", str(model),
                      "--jsonl", str(out)]) == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def comparable(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Windows and the summary, without the timings (they are the machine's, not the audio's)."""
    return [{k: v for k, v in e.items() if k != "latency_ms"} for e in events if e["type"] in ("window", "summary")]


def stream_file(srv: EventServer, wav: Path, block_s: float = 0.1) -> list[dict[str, Any]]:
    data, rate = sf.read(wav, dtype="float32", always_2d=True)
    step = int(block_s * rate)
    got: list[dict[str, Any]] = []
    stream_to(srv.stream_url, (data[i:i + step] for i in range(0, len(data), step)), rate, data.shape[1],
              got.append)
    return got


def test_a_streamed_file_gets_the_events_ser_live_writes_for_it(server: EventServer, tiny: Path,
                                                                  tmp_path: Path) -> None:
    wav = voice_file(tmp_path / "v.wav", seed=1, channels=2)
    got = stream_file(server, wav, block_s=0.07)
    assert got[0]["type"] == "hello" and got[0]["labels"] and got[0]["input"]["channels"] == 2
    assert any(m["type"] == "status" for m in got)
    expected = local_events(tiny, wav, tmp_path / "local.jsonl")
    assert [e["type"] for e in expected].count("window") >= 3
    assert comparable(got) == comparable(expected)
    health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{server.port}/status").read())
    assert health["mode"] == "serve" and health["sessions"] == 0 and health["sessions_total"] == 1


def test_four_clients_at_once_each_get_their_own_session(server: EventServer, tiny: Path, tmp_path: Path) -> None:
    wavs = [voice_file(tmp_path / f"v{k}.wav", seed=k, seconds=2.0 + 0.5 * k, f0=120.0 + 40 * k) for k in range(4)]
    results: dict[int, list[dict[str, Any]]] = {}

    def client(k: int) -> None:
        results[k] = stream_file(server, wavs[k])

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results) == [0, 1, 2, 3]
    assert len({r[0]["session"] for r in results.values()}) == 4
    for k, got in results.items():
        assert comparable(got) == comparable(local_events(tiny, wavs[k], tmp_path / f"local{k}.jsonl"))
    assert len({json.dumps(comparable(r)) for r in results.values()}) == 4  # four different streams


async def exchange(url: str, *messages: str | bytes) -> tuple[list[dict[str, Any]], int, str]:
    """Send ``messages`` and read until the server closes: (the messages received, close code, reason)."""
    got: list[dict[str, Any]] = []
    async with connect(url, max_size=None) as ws:
        with contextlib.suppress(ConnectionClosed):  # the server may close before it has read them all
            for m in messages:
                await ws.send(m)
        with contextlib.suppress(ConnectionClosed):
            async for text in ws:  # what it sent, the error message included, until its close
                got.append(json.loads(text))
        await ws.wait_closed()
        assert ws.close_code is not None
        return got, ws.close_code, ws.close_reason or ""


START = json.dumps({"type": "start", "sample_rate": RATE, "channels": 1})


@pytest.mark.parametrize(("messages", "code", "says"), [
    ((b"\x00\x00" * 160,), CloseCode.UNSUPPORTED, 'audio before "start"'),
    (('{"type": "end"}',), CloseCode.UNSUPPORTED, '"end" before "start"'),
    (("not json",), CloseCode.UNSUPPORTED, "JSON objects"),
    (('{"type": "start", "sample_rate": 0}',), CloseCode.INVALID, "sample_rate must be"),
    (('{"type": "start", "sample_rate": 16000.5}',), CloseCode.INVALID, "sample_rate must be"),
    (('{"type": "start", "sample_rate": 16000, "channels": 0}',), CloseCode.INVALID, "channels must be"),
    (('{"type": "start", "sample_rate": 16000, "profile": "me"}',), CloseCode.INVALID, "unknown profile 'me'"),
    ((START, b"\x00\x00\x00"), CloseCode.INVALID, "not a whole number of PCM16 frames"),
    ((START, '{"type": "shout"}'), CloseCode.UNSUPPORTED, "unknown message type 'shout'"),
    ((START, START), CloseCode.POLICY, 'a second "start"'),
    (("[" * 2000 + "]" * 2000,), CloseCode.UNSUPPORTED, "JSON objects"),
    (('{"type": "start", "sample_rate": 1e400}',), CloseCode.INVALID, "sample_rate must be"),
])
def test_protocol_errors_have_a_message_and_a_close_code(server: EventServer, messages: tuple[str | bytes, ...],
                                                         code: int, says: str) -> None:
    got, close_code, reason = asyncio.run(exchange(f"ws://127.0.0.1:{server.port}/stream", *messages))
    errors = [m for m in got if m["type"] == "error"]
    assert close_code == code and len(errors) == 1 and errors[0]["code"] == code
    assert says in errors[0]["message"] and reason and says[:20] in errors[0]["message"]


def test_an_oversize_message_is_closed_with_1009(server: EventServer) -> None:
    got, close_code, _ = asyncio.run(exchange(f"ws://127.0.0.1:{server.port}/stream", START,
                                              b"\x00" * (MAX_FRAME_BYTES + 2)))
    assert close_code == CloseCode.TOO_BIG
    errors = [m for m in got if m["type"] == "error"]  # the reason, as a message too, before the close
    assert len(errors) == 1 and "over the 1048576-byte bound" in errors[0]["message"]
    _, close_code, _ = asyncio.run(exchange(f"ws://127.0.0.1:{server.port}/stream", START,
                                            b"\x00" * (4 * MAX_FRAME_BYTES)))
    assert close_code == CloseCode.TOO_BIG  # far over: the library's own close


def test_no_start_in_time_is_closed(server: EventServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve_module, "START_WAIT_S", 0.3)
    got, close_code, _ = asyncio.run(exchange(f"ws://127.0.0.1:{server.port}/stream"))
    assert close_code == CloseCode.POLICY and 'no "start"' in got[-1]["message"]


def test_over_the_session_bound_is_refused_and_a_vanished_client_frees_its_place(tiny: Path) -> None:
    srv = start_server(tiny, max_sessions=1)
    url = f"ws://127.0.0.1:{srv.port}/stream"

    async def run() -> tuple[int, str, int, int]:
        first = await connect(url)
        await first.send(START)
        await first.recv()  # hello: the one place is taken
        await first.send(pcm16(voiced_tone(180.0, 1.0, 0.3, 4.0, seed=3)))
        got, busy_code, _ = await exchange(url, START)
        first.transport.abort()  # vanishes mid-stream: no close frame, no "end"
        for _ in range(100):
            if srv.config.streams.active == 0:
                break
            await asyncio.sleep(0.05)
        again, code, _ = await exchange(url, START, pcm16(np.zeros(RATE // 10, np.int16)), '{"type": "end"}')
        return busy_code, got[-1]["message"], code, again[-1]["type"] == "summary"

    try:
        busy_code, message, code, summary = asyncio.run(run())
    finally:
        srv.close()
        srv.config.streams.close()
    assert busy_code == CloseCode.BUSY and "busy: 1 of 1 sessions" in message
    assert code == CloseCode.NORMAL and summary


def test_stopping_the_server_sends_every_stream_its_summary(tiny: Path) -> None:
    srv = start_server(tiny)
    url = f"ws://127.0.0.1:{srv.port}/stream"
    voice = pcm16(voiced_tone(180.0, 3.0, 0.3, 4.0, seed=4))

    async def client() -> tuple[list[dict[str, Any]], int]:
        got: list[dict[str, Any]] = []
        async with connect(url) as ws:
            await ws.send(START)
            await ws.send(voice)
            async for text in ws:
                got.append(json.loads(text))
        return got, ws.close_code or 0

    async def run() -> list[tuple[list[dict[str, Any]], int]]:
        tasks = [asyncio.create_task(client()) for _ in range(2)]
        for _ in range(200):  # both have sent their audio and got windows back
            await asyncio.sleep(0.05)
            if srv.config.streams.windows >= 2 * 3:
                break
        await asyncio.to_thread(srv.close)
        return [await t for t in tasks]

    try:
        results = asyncio.run(run())
    finally:
        srv.config.streams.close()
    for got, code in results:
        assert code == CloseCode.GOING_AWAY
        assert got[-1]["type"] == "summary" and got[-1]["windows"] == sum(m["type"] == "window" for m in got) > 0


def test_each_server_refuses_the_other_ones_route(server: EventServer, tmp_path: Path) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}/ws")
    assert refused.value.code == 404 and b"/stream" in refused.value.read()
    live = EventServer(ServeConfig(port=0)).start()
    try:
        with pytest.raises(UserError, match="no /stream there: is it ser-serve"):
            stream_to(f"ws://127.0.0.1:{live.port}", [], RATE, 1, lambda m: None)
    finally:
        live.close()


def test_ser_live_connect_streams_a_file_and_writes_its_events(server: EventServer, tiny: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    wav = voice_file(tmp_path / "v.wav", seed=5)
    remote = tmp_path / "remote.jsonl"
    assert live_main(["--connect", server.url, "--file", str(wav), "--fast", "--jsonl", str(remote)]) == 0
    out = capsys.readouterr()
    assert "windows" in out.out and "session:" in out.out  # the plain lines and the summary line
    written = [json.loads(line) for line in remote.read_text().splitlines()]
    assert comparable(written) == comparable(local_events(tiny, wav, tmp_path / "local.jsonl"))


@pytest.mark.parametrize(("argv", "says"), [
    (["--connect", "ftp://x"], "expected a ser-serve address"),
    (["--connect", "ws://:80"], "expected a ser-serve address"),  # no host name
    (["--connect", "ws://127.0.0.1:1"], "cannot stream to ws://127.0.0.1:1/stream"),
    (["--connect", "ws://127.0.0.1:1", "--model", "m.onnx"], "--model applies to the local engine"),
    (["--connect-profile", "me"], "--connect-profile only applies with --connect"),
])
def test_connect_mistakes_are_one_line(argv: list[str], says: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    wav = voice_file(tmp_path / "v.wav", seed=6, seconds=0.5)
    assert live_main([*argv, "--file", str(wav), "--no-dashboard"]) != 0
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_a_wrong_token_is_named(tiny: Path) -> None:
    srv = start_server(tiny, host="127.0.0.1", token="s3cret")
    try:
        with pytest.raises(UserError, match="HTTP 401: it needs a token"):
            stream_to(f"ws://127.0.0.1:{srv.port}/?token=wrong", [], RATE, 1, lambda m: None)
        got: list[dict[str, Any]] = []
        assert stream_to(srv.stream_url, [np.zeros(RATE, np.float32)], RATE, 1, got.append) is not None
    finally:
        srv.close()
        srv.config.streams.close()


def test_urls_and_profiles_options(tiny: Path) -> None:
    assert stream_url("http://h:1/?token=t") == "ws://h:1/stream?token=t"
    assert stream_url("https://h:1") == "wss://h:1/stream"
    assert stream_url("127.0.0.1:8765") == "ws://127.0.0.1:8765/stream"
    assert pcm16(np.array([[-1.0], [0.5], [1.0]], np.float32)) == np.array([-32768, 16384, 32767], "<i2").tobytes()
    model = load_model(tiny)
    with pytest.raises(UserError, match="--profile me: expected NAME=PATH"):
        parse_profiles(["me"], model)


def test_tls_serves_https_and_wss(tiny: Path, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out",
                    str(cert)], check=True, capture_output=True)
    srv = start_server(tiny, tls_cert=str(cert), tls_key=str(key))
    try:
        assert srv.url.startswith("https://") and srv.stream_url.startswith("wss://")
        context = ssl.create_default_context(cafile=str(cert))
        page = urllib.request.urlopen(f"https://127.0.0.1:{srv.port}/", context=context).read()
        assert b"use this browser's microphone" in page

        async def run() -> list[dict[str, Any]]:
            got = []
            async with connect(f"wss://127.0.0.1:{srv.port}/stream", ssl=context) as ws:
                await ws.send(START)
                await ws.send(pcm16(voiced_tone(180.0, 2.0, 0.3, 4.0, seed=7)))
                await ws.send('{"type": "end"}')
                async for text in ws:
                    got.append(json.loads(text))
            return got

        got = asyncio.run(run())
        assert got[0]["type"] == "hello" and got[-1]["type"] == "summary"
        with pytest.raises((InvalidMessage, OSError)):  # a plain ws:// client cannot talk to it
            asyncio.run(exchange(f"ws://127.0.0.1:{srv.port}/stream"))
    finally:
        srv.close()
        srv.config.streams.close()
    with pytest.raises(UserError, match="--tls-cert and --tls-key go together"):
        EventServer(ServeConfig(tls_cert=str(cert)))
    # ser-live --connect trusts a self-signed certificate it is given
    wav = voice_file(tmp_path / "v.wav", seed=8)
    srv = start_server(tiny, tls_cert=str(cert), tls_key=str(key))
    try:
        assert live_main(["--connect", srv.stream_url, "--file", str(wav), "--no-dashboard", "--jsonl",
                          str(tmp_path / "e.jsonl"), "--tls-ca", str(cert)]) == 0
        assert json.loads((tmp_path / "e.jsonl").read_text().splitlines()[-1])["type"] == "summary"
        with pytest.raises(UserError, match="certificate"):  # without it: not trusted, in one line
            stream_to(srv.stream_url, [], RATE, 1, lambda m: None)
    finally:
        srv.close()
        srv.config.streams.close()
    # an encrypted key is named (never a passphrase prompt); a pipe is no certificate (it would block start-up)
    encrypted = tmp_path / "enc.pem"
    subprocess.run(["openssl", "pkey", "-in", str(key), "-out", str(encrypted), "-aes256", "-passout", "pass:x"],
                   check=True, capture_output=True)
    with pytest.raises(UserError, match="is encrypted"):
        EventServer(ServeConfig(tls_cert=str(cert), tls_key=str(encrypted)))
    fifo = tmp_path / "pipe.pem"
    os.mkfifo(fifo)
    with pytest.raises(UserError, match="is not a regular file"):
        EventServer(ServeConfig(tls_cert=str(fifo), tls_key=str(key)))


@pytest.mark.parametrize(("argv", "says"), [
    (["x:70000"], "ser-serve x:70000: the port must be"),
    (["--max-sessions", "-1"], "--max-sessions"),
    (["--profile", "a=missing.json"], "missing.json"),
    (["--tls-cert", "c.pem"], "--tls-cert and --tls-key go together"),
])
def test_ser_serve_mistakes_are_one_line(argv: list[str], says: str, tiny: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert serve_main([*argv, "--model", str(tiny)]) != 0
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.mark.mic
def test_ser_live_connect_streams_the_microphone(server: EventServer, tmp_path: Path) -> None:
    """The virtual microphone (tests/virtual_mic.py) hears espeak-ng speech; ``ser-live --connect`` streams it to the
    server and writes the windows the server sends back, and a summary that covers the whole capture."""
    from tests.audio_fixtures import espeak_wav
    from tests.virtual_mic import VirtualMic

    speech = espeak_wav(tmp_path / "speech.wav", "Good morning. The train to the coast leaves at nine today.")
    out = tmp_path / "remote.jsonl"
    with VirtualMic() as vm:
        proc = subprocess.Popen([sys.executable, "-m", "ser_live.realtime.faces.cli", "--connect", server.url,
                                 "--device", "pulse", "--duration", "5", "--jsonl", str(out)],
                                env=vm.env(dict(os.environ)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
        try:
            line = proc.stderr.readline()  # type: ignore[union-attr]
            assert "ser-live: streaming mic" in line, line
            vm.play(speech)
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines[-1]["type"] == "summary" and lines[-1]["audio_s"] >= 4.0
    assert sum(e["type"] == "window" for e in lines) >= 2


def test_a_flat_out_upload_takes_turns_with_a_real_time_client(tiny: Path) -> None:
    """One worker; one client uploads 128 s of audio in 1 MiB frames, another sends 0.2 s and ends while the first is
    being scored: every job is at most SLICE_S of audio, and the short session is done before the upload."""
    from concurrent.futures import ThreadPoolExecutor

    from ser_live.realtime.faces.stream import SLICE_S

    srv = start_server(tiny, max_sessions=4)
    service = srv.config.streams
    jobs: list[tuple[int, int]] = []  # (session number, samples) of every feed, in the order the worker ran them
    feed = serve_module.StreamSession.feed

    def recorded(self: Any, data: bytes) -> list[dict[str, Any]]:
        jobs.append((self.number, len(data) // 2))
        return feed(self, data)

    service.executor.shutdown()
    service.executor = ThreadPoolExecutor(1)
    rng = np.random.default_rng(0)
    frame = (rng.normal(0, 3000, MAX_FRAME_BYTES // 2)).astype("<i2").tobytes()
    url = f"ws://127.0.0.1:{srv.port}/stream"
    try:
        serve_module.StreamSession.feed = recorded  # type: ignore[method-assign]

        async def both() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            upload = asyncio.create_task(exchange(url, START, *[frame] * 4, '{"type": "end"}'))
            while not any(n == 1 for n, _ in jobs):  # the upload is being scored
                await asyncio.sleep(0.001)
            short = await exchange(url, START, frame[: int(0.4 * RATE)], '{"type": "end"}')
            return (await upload)[0], short[0]

        long_msgs, short_msgs = asyncio.run(both())
    finally:
        serve_module.StreamSession.feed = feed  # type: ignore[method-assign]
        srv.close()
        service.close()
    assert long_msgs[-1]["type"] == "summary" and short_msgs[-1]["type"] == "summary"
    assert max(samples for _, samples in jobs) <= SLICE_S * RATE
    first_short = next(i for i, (n, _) in enumerate(jobs) if n == 2)
    upload_jobs = [i for i, (n, _) in enumerate(jobs) if n == 1]
    assert len(upload_jobs) >= 4 * 32 / SLICE_S - 1 and first_short < upload_jobs[-1]


def test_stream_to_keeps_what_the_server_sent_when_it_stops_mid_upload(tiny: Path) -> None:
    """ser-live --connect: the server stops while audio is still being sent; the windows and the summary it sent
    before closing are all handed on (the failed send does not lose them)."""
    import time

    srv = start_server(tiny)
    voice = voiced_tone(180.0, 1.0, 0.3, 4.0, seed=5)
    got: list[dict[str, Any]] = []

    def blocks() -> Any:
        while True:  # a stream that never ends by itself
            for i in range(0, len(voice), RATE // 10):
                time.sleep(0.005)
                yield voice[i : i + RATE // 10]

    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(
        summary=stream_to(f"ws://127.0.0.1:{srv.port}/stream", blocks(), RATE, 1, got.append)))
    thread.start()
    try:
        for _ in range(400):
            time.sleep(0.02)
            if sum(m["type"] == "window" for m in got) >= 3:
                break
        srv.close()
        thread.join(timeout=30)
    finally:
        srv.config.streams.close()
    assert not thread.is_alive()
    summary = result["summary"]
    assert summary is not None and got[-1] is summary
    assert summary["windows"] == sum(m["type"] == "window" for m in got) >= 3


def test_the_docs_stream_client_reads_while_it_sends_and_gets_the_summary(
        tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """docs/live.md's /stream client, run as written on a 2-minute file against a server."""
    import re

    docs = (Path(__file__).resolve().parents[1] / "docs" / "live.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```python\n(.*?)```", docs, re.S) if "/stream" in b)
    voice = voiced_tone(180.0, 120.0, 0.3, 4.0, seed=6)
    sf.write(tmp_path / "talk.wav", voice, RATE, subtype="PCM_16")
    srv = start_server(tiny)
    monkeypatch.chdir(tmp_path)
    try:
        exec(compile(block.replace("ws://127.0.0.1:8765", f"ws://127.0.0.1:{srv.port}"), "live.md", "exec"), {})
    finally:
        srv.close()
        srv.config.streams.close()
    out = capsys.readouterr().out.splitlines()
    assert len([line for line in out if line.strip().endswith("%")]) > 100 and out[-1].startswith("mostly ")


def test_connections_that_never_start_hold_no_session_and_are_bounded(tiny: Path) -> None:
    """With one session allowed, idle connections (no "start") do not make a real client busy; past
    PENDING_PER_SESSION of them per session, one more is refused with 1013 at once."""
    from ser_live.realtime.faces.serve import PENDING_PER_SESSION

    srv = start_server(tiny, max_sessions=1)
    url = f"ws://127.0.0.1:{srv.port}/stream"

    async def run() -> tuple[list[dict[str, Any]], int, int, str]:
        idle = [await connect(url) for _ in range(PENDING_PER_SESSION - 1)]
        got, code, _ = await exchange(url, START, pcm16(np.zeros(RATE // 10, np.int16)), '{"type": "end"}')
        idle.append(await connect(url))  # now PENDING_PER_SESSION wait for nothing
        _, refused, reason = await exchange(url, START)
        for ws in idle:
            await ws.close()
        return got, code, refused, reason

    try:
        got, code, refused, reason = asyncio.run(run())
    finally:
        srv.close()
        srv.config.streams.close()
    assert code == CloseCode.NORMAL and got[-1]["type"] == "summary"
    assert refused == CloseCode.BUSY and 'have not sent "start"' in reason


def test_watchers_of_ws_are_capped(tiny: Path) -> None:
    from ser_live.realtime.faces.serve import EventServer, ServeConfig

    srv = EventServer(ServeConfig(port=0, hello={"model": "x"}, max_watchers=2)).start()
    url = f"ws://127.0.0.1:{srv.port}/ws"

    async def run() -> tuple[int, str, str]:
        first, second = await connect(url), await connect(url)
        hello = json.loads(await second.recv())["type"]
        third = await connect(url)
        with contextlib.suppress(ConnectionClosed):
            await third.recv()
        await first.close()
        await second.close()
        return third.close_code or 0, third.close_reason or "", hello

    try:
        code, reason, hello = asyncio.run(run())
    finally:
        srv.close()
    assert hello == "hello" and code == CloseCode.BUSY and "too many /ws clients (2)" in reason
