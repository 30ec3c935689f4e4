"""Repeat fault sweep 4's cases against the installed commands (loopback only): each prints PASS or FAIL and why.

The hostile-user cases behind docs/guarantees.md, run as a user runs them (the commands of this venv as
subprocesses, raw sockets, a 60-minute file through the docs' /stream client, 300 /ws clients that never read,
hand-edited profiles, lying WAV headers, a full disk, TLS). Needs espeak-ng and openssl; takes about 5 minutes:

    .venv/bin/python scripts/fault_sweep.py /tmp/sweep        # the folder is emptied and reused; exit 1 on a FAIL
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.audio_fixtures import espeak_wav

BIN = Path(sys.executable).parent
RESULTS: list[tuple[str, bool, str]] = []
W = Path()


def check(name: str, ok: bool, detail: str = "") -> None:
    RESULTS.append((name, bool(ok), detail))
    print(f"{'PASS' if ok else 'FAIL'}  {name}  {detail[:300]}", flush=True)


def run(cmd: list[str], timeout: float = 120, **kw) -> subprocess.CompletedProcess[str]:
    exe = str(BIN / cmd[0]) if (BIN / cmd[0]).exists() else cmd[0]
    try:
        return subprocess.run([exe, *cmd[1:]], capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(cmd, -999, exc.stdout or "", f"HANG after {timeout}s")


def one_line(p: subprocess.CompletedProcess[str], *words: str) -> tuple[bool, str]:
    err = p.stderr.strip()
    ok = p.returncode not in (0, -999) and "Traceback" not in err and len(err.splitlines()) == 1
    ok = ok and all(w.lower() in err.lower() for w in words)
    return ok, f"rc={p.returncode} err={err!r}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], pattern: str = r"127\.0\.0\.1:(\d+)") -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        [str(BIN / cmd[0]), *cmd[1:]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        lines.append(proc.stderr.readline())
        if re.search(pattern, lines[-1]) or not lines[-1]:
            break
    return proc, lines


def connect_file(url: str, audio: Path, jsonl: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], bool]:
    """``ser-live --connect URL --file AUDIO --jsonl JSONL``: the run, and whether it ended well with the summary
    as the JSONL's last line."""
    p = run(["ser-live", "--connect", url, *extra, "--file", str(audio), "--jsonl", str(jsonl)], timeout=60)
    lines = jsonl.read_text().splitlines() if jsonl.exists() else []
    return p, p.returncode == 0 and bool(lines) and json.loads(lines[-1])["type"] == "summary"


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return -999, "HANG"
    return proc.returncode, proc.stderr.read()


def raw(port: int, path: str, host: str, origin: str | None = None, upgrade: bool = False, extra: str = "") -> str:
    head = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n"
    if origin:
        head += f"Origin: {origin}\r\n"
    if upgrade:
        head += (
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n"
        )
    head += extra + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(head.encode())
        data = s.recv(200).decode("latin-1")
    return data.split("\r\n")[0]


def main() -> int:
    global W
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    W = Path(sys.argv[1])
    shutil.rmtree(W, ignore_errors=True)
    W.mkdir(parents=True)
    speech = espeak_wav(
        W / "speech.wav",
        "The meeting moved to Thursday morning and nobody told me about it. I waited "
        "in that room for an hour, and then I went home.",
        speed=150,
    )
    audio, rate = sf.read(speech, dtype="float32")
    long_audio = np.concatenate([np.concatenate([audio, np.zeros(rate // 2, np.float32)])] * 40)  # ~6 min
    sf.write(W / "long.wav", long_audio, rate, subtype="PCM_16")
    hour = np.concatenate([long_audio] * 10)  # ~60 min
    sf.write(W / "hour.wav", hour, rate, subtype="PCM_16")
    print(
        f"audio: speech {len(audio) / rate:.1f} s, long {len(long_audio) / rate / 60:.1f} min, "
        f"hour {len(hour) / rate / 60:.1f} min",
        flush=True,
    )

    # ------------------------------------------------------------------------------------------- 1 Host / Origin
    port = free_port()
    live, _ = start(["ser-live", "--file", str(W / "long.wav"), "--no-dashboard", "--serve", f"127.0.0.1:{port}"])
    try:
        evil = f"attacker.example:{port}"
        for path, up in (("/", False), ("/status", False), ("/ws", True)):
            got = raw(port, path, evil, f"http://{evil}", up)
            check(f"DNS rebinding refused on {path}", " 101 " not in got and " 200 " not in got, got)
            good = raw(port, path, f"127.0.0.1:{port}", None, up)
            check(f"own Host answered on {path}", " 101 " in good or " 200 " in good, good)
        got = raw(port, "/ws", f"127.0.0.1:{port}", f"http://127.0.0.1:{port}", True)
        check("same-origin page gets /ws", " 101 " in got, got)
        got = raw(port, "/ws", f"127.0.0.1:{port}", "http://evil.example", True)
        check("foreign Origin refused on /ws", " 101 " not in got, got)
    finally:
        stop(live)

    p = run(["ser-live", "--serve", "0.0.0.0:0", "--token", "", "--file", str(speech)], timeout=30)
    check("--token '' refused (ser-live)", *one_line(p, "token"))
    p = run(["ser-serve", "0.0.0.0:0", "--token", ""], timeout=30)
    check("--token '' refused (ser-serve)", *one_line(p, "token"))

    # ------------------------------------------------------------------------------ ser-serve: /stream cases
    sport = free_port()
    serve, _ = start(["ser-serve", f"127.0.0.1:{sport}"])
    from websockets.sync.client import connect

    url_stream = f"ws://127.0.0.1:{sport}/stream"
    try:
        for path, up in (("/", False), ("/status", False), ("/stream", True)):
            got = raw(sport, path, f"attacker.example:{sport}", f"http://attacker.example:{sport}", up)
            check(f"ser-serve: DNS rebinding refused on {path}", " 101 " not in got and " 200 " not in got, got)
        got = raw(sport, "/stream", f"127.0.0.1:{sport}", None, True, "Authorization: bearer x\r\n")
        check("ser-serve: loopback without token accepts (bearer header ignored)", " 101 " in got, got)

        # the README's client (reads while it sends) on a 60-minute file
        t0 = time.monotonic()
        pcm, r = sf.read(W / "hour.wav", dtype="int16")
        seen: dict[str, Any] = {"windows": 0, "summary": None}
        with connect(url_stream, max_size=None) as ws:
            ws.send(json.dumps({"type": "start", "sample_rate": r, "channels": 1}))

            def waiting():
                try:
                    return ws.recv(timeout=0)
                except TimeoutError:
                    return None

            def take(message: str) -> None:
                ev = json.loads(message)
                seen["windows"] += ev["type"] == "window"
                if ev["type"] == "summary":
                    seen["summary"] = ev

            for i in range(0, len(pcm), r // 10):
                ws.send(pcm[i : i + r // 10].tobytes())
                while (m := waiting()) is not None:
                    take(m)
            ws.send(json.dumps({"type": "end"}))
            for m in ws:
                take(m)
        windows, summary = seen["windows"], seen["summary"]
        check(
            "docs /stream client on a 60-min file gets every window and the summary",
            summary is not None and summary["windows"] == windows and windows > 1000,
            f"windows {windows}, summary {None if summary is None else summary['windows']}, "
            f"{time.monotonic() - t0:.0f} s",
        )

        # bad starts
        def close_of(messages: list, binary: bytes | None = None) -> tuple[int | None, list[str]]:
            got = []
            try:
                with connect(url_stream, max_size=None) as ws:
                    for m in messages:
                        ws.send(m)
                    if binary is not None:
                        ws.send(binary)
                    for m in ws:
                        got.append(m if isinstance(m, str) else "<binary>")
            except Exception as exc:  # the close
                got.append(repr(exc))
            code = ws.close_code if ws is not None else None
            return code, got

        code, got = close_of(['{"type": "start", "sample_rate": 1e400, "channels": 1}'])
        check(
            "start sample_rate 1e400 -> 1007 with an error",
            code == 1007 and any("error" in g for g in got),
            f"{code} {got}",
        )
        deep = '{"type": "start", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
        code, got = close_of([deep])
        check(
            "deeply nested start -> 1003/1009 with an error",
            code in (1003, 1009) and any('"error"' in g for g in got),
            f"{code} {str(got)[:200]}",
        )
        code, got = close_of(['{"type": "start", "sample_rate": 16000, "channels": 1}'], b"\0" * (1 << 20) + b"\0\0")
        check(
            "oversized frame -> error message naming the bound, then 1009",
            code == 1009 and any("MiB" in g or "bytes" in g for g in got if '"error"' in g),
            f"{code} {str(got)[:300]}",
        )

        # 16 connections that never send start: a new client still gets a session
        idle = [socket.create_connection(("127.0.0.1", sport)) for _ in range(16)]
        for s in idle:
            s.sendall(
                (
                    f"GET /stream HTTP/1.1\r\nHost: 127.0.0.1:{sport}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                ).encode()
            )
        time.sleep(0.5)
        t0 = time.monotonic()
        p, ended = connect_file(f"ws://127.0.0.1:{sport}", speech, W / "idle.jsonl")
        check(
            "16 idle connections do not make a new client busy",
            ended,
            f"rc={p.returncode} {time.monotonic() - t0:.1f}s {p.stderr.strip()[-200:]!r}",
        )
        for s in idle:
            s.close()

        # --connect keeps what the server sent when the server stops mid-way
        conn = subprocess.Popen(
            [
                str(BIN / "ser-live"),
                "--connect",
                f"ws://127.0.0.1:{sport}",
                "--file",
                str(W / "long.wav"),
                "--jsonl",
                str(W / "conn.jsonl"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(8)
    finally:
        rc, err = stop(serve)
        check(
            "ser-serve stops on Ctrl-C with no traceback", rc == 0 and "Traceback" not in err, f"rc={rc} {err[-200:]!r}"
        )
    try:
        conn.wait(timeout=30)
        lines_ = (W / "conn.jsonl").read_text().splitlines()
        last = json.loads(lines_[-1])
        check(
            "--connect --jsonl keeps the windows and the summary when ser-serve stops",
            last["type"] == "summary" and len(lines_) > 2 and "Traceback" not in conn.stderr.read(),
            f"{len(lines_)} lines, last {last['type']}",
        )
    except subprocess.TimeoutExpired:
        conn.kill()
        check("--connect --jsonl ends when ser-serve stops", False, "HANG")

    # ------------------------------------------------------------------------------ /ws cap and memory
    port = free_port()
    live, _ = start(["ser-live", "--file", str(W / "hour.wav"), "--no-dashboard", "--serve", f"127.0.0.1:{port}"])
    try:
        pid = live.pid

        def rss() -> float:
            return int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0]) / 1024

        before = rss()
        socks = []
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", port))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(
                (
                    f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                ).encode()
            )
            socks.append(s)
        time.sleep(15)
        during = rss()
        for s in socks:
            s.close()
        time.sleep(3)
        after = rss()
        late = raw(port, "/ws", f"127.0.0.1:{port}", None, True)
        check(
            "300 /ws clients that never read: memory bounded, server still answers",
            during - before < 150 and " 101 " in late,
            f"RSS {before:.0f} -> {during:.0f} -> {after:.0f} MiB; {late}",
        )
    finally:
        rc, err = stop(live)
        check("ser-live --serve stops on Ctrl-C with no traceback", "Traceback" not in err, f"rc={rc}")

    # ------------------------------------------------------------------------------ input as output
    model = W / "M.onnx"
    from ser_live.realtime.model import bundled_model_path

    shutil.copyfile(bundled_model_path(), model)
    digest = model.read_bytes()
    clips = W / "clips.csv"
    takes = []
    for i, (lab, sp, pi) in enumerate([("angry", 220, 80), ("angry", 230, 85), ("sad", 100, 15), ("sad", 95, 10)]):
        takes.append((espeak_wav(W / f"t{i}.wav", "The train leaves at seven.", speed=sp, pitch=pi), lab))
    clips.write_text("path,label\n" + "".join(f"{p},{lab}\n" for p, lab in takes))
    p = run(["ser-profile", "fit", "--audio", str(clips), "-o", str(model), "--model", str(model), "--overwrite"])
    check(
        "ser-profile fit -o MODEL --model MODEL refused",
        one_line(p)[0] and model.read_bytes() == digest,
        one_line(p)[1],
    )
    p = run(["ser-live", "--enroll", str(model), "--model", str(model), "--overwrite"], timeout=30)
    check(
        "ser-live --enroll MODEL --model MODEL refused", one_line(p)[0] and model.read_bytes() == digest, one_line(p)[1]
    )
    p = run(["ser-live", "--file", str(speech), "--fast", "--jsonl", str(speech), "--overwrite", "--no-dashboard"])
    check("ser-live --jsonl INPUT refused", one_line(p)[0] and sf.info(speech).frames > 0, one_line(p)[1])

    # ------------------------------------------------------------------------------ profiles
    good = W / "me.json"
    p = run(["ser-profile", "fit", "--audio", str(clips), "-o", str(good)])
    check("a profile fits from four espeak takes", p.returncode == 0 and good.exists(), p.stderr.strip()[-200:])
    prof = json.loads(good.read_text())

    def variant(name: str, change) -> Path:
        d = json.loads(json.dumps(prof))
        change(d)
        out = W / f"bad-{name}.json"
        out.write_text(json.dumps(d) if not isinstance(d, str) else d)
        return out

    def weights_key(d):
        for _k, v in d.items():
            if isinstance(v, dict) and "weights" in v:
                return v
        return d

    bads = {}
    head = weights_key(prof)
    print("profile keys:", list(prof), "head keys:", list(head) if isinstance(head, dict) else None, flush=True)

    def wrong_rows(d):
        h = weights_key(d)
        h["weights"] = h["weights"][:-1]

    bads["wrong-rows"] = variant("wrong-rows", wrong_rows)
    bads["string-accuracy"] = variant("string-accuracy", lambda d: d.__setitem__("accuracy", "high"))
    bads["enrolled-huge"] = variant(
        "enrolled-huge", lambda d: d.__setitem__("enrolled", {k: 10**400 for k in d["enrolled"]})
    )
    bads["version-neg"] = variant("version-neg", lambda d: d.__setitem__("version", -5))

    def bool_weights(d):
        h = weights_key(d)
        h["weights"] = [[True for _ in row] for row in h["weights"]]

    bads["bool-weights"] = variant("bool-weights", bool_weights)
    bads["count-zero"] = variant(
        "count-zero", lambda d: d.__setitem__("enrolled", {k: 0 for k in d.get("enrolled", {})})
    )
    bads["deep"] = W / "bad-deep.json"
    bads["deep"].write_text("[" * 100_000 + "]" * 100_000)
    big = W / "bad-big.json"
    with big.open("w") as f:
        f.write('{"format": "ser-live-profile", "pad": "' + "x" * (108 << 20) + '"}')
    bads["108MB"] = big
    for name, path in bads.items():
        p = run(["ser-profile", "show", str(path), "--check"], timeout=60)
        check(f"profile {name}: show --check refuses in one line", *one_line(p))
        t0 = time.monotonic()
        p = run(["ser-live", "--file", str(speech), "--fast", "--no-dashboard", "--profile", str(path)], timeout=60)
        ok, d = one_line(p)
        check(f"profile {name}: ser-live refuses in one line", ok, d + f" {time.monotonic() - t0:.1f}s")
    p = run(["ser-serve", "127.0.0.1:0", "--profile", f"x={bads['wrong-rows']}"], timeout=60)
    check("profile wrong-rows: ser-serve refuses at start", *one_line(p))
    p = run(
        ["ser-batch", str(speech), "--out", str(W / "batch-bad"), "--profile", str(bads["wrong-rows"])], timeout=120
    )
    check("profile wrong-rows: ser-batch refuses at start", *one_line(p))

    # ------------------------------------------------------------------------------ audio that lies
    liar = W / "liar.wav"
    sf.write(liar, audio, rate, subtype="PCM_16")
    data = bytearray(liar.read_bytes())
    data[24:28] = struct.pack("<I", 1)
    data[28:32] = struct.pack("<I", 2)
    liar.write_bytes(bytes(data))
    for cmd in (
        ["ser-live", "--file", str(liar), "--fast", "--no-dashboard"],
        ["ser-batch", str(liar), "--out", str(W / "batch-liar")],
    ):
        t0 = time.monotonic()
        p = run(cmd, timeout=60)
        if cmd[0] == "ser-batch":
            rows = (W / "batch-liar" / "files.csv").read_text() if (W / "batch-liar" / "files.csv").exists() else ""
            check(
                "1 Hz header: ser-batch marks the file as an error, fast",
                "1 Hz" in rows or "1000 Hz" in rows or "sample rate" in rows,
                f"{time.monotonic() - t0:.1f}s rows={rows[-300:]!r}",
            )
        else:
            check("1 Hz header: ser-live refuses in one line, fast", *one_line(p, "Hz"))
    trunc = W / "trunc.wav"
    sf.write(trunc, audio, rate, subtype="PCM_16")
    trunc.write_bytes(trunc.read_bytes()[: len(trunc.read_bytes()) // 2])
    p = run(["ser-live", "--file", str(trunc), "--fast", "--no-dashboard", "--jsonl", str(W / "trunc.jsonl")])
    check(
        "truncated WAV: scored with a note", p.returncode == 0 and "trunc" in p.stderr.lower(), p.stderr.strip()[-200:]
    )
    p = run(["ser-live", "--file", "/dev/zero", "--fast", "--no-dashboard"], timeout=30)
    check("/dev/zero named as a device", *one_line(p, "device"))
    fifo = W / "fifo.wav"
    os.mkfifo(fifo)
    p = run(["ser-live", "--file", str(fifo), "--fast", "--no-dashboard"], timeout=30)
    check("a FIFO named as such", *one_line(p, "fifo"))

    # ------------------------------------------------------------------------------ full disk, early stop, BOM
    p = run(["ser-live", "--file", str(speech), "--fast", "--no-dashboard", "--jsonl", "/dev/full"], timeout=60)
    check(
        "--jsonl /dev/full: refused or summary on stderr, no traceback",
        ("Traceback" not in p.stderr and p.returncode != 0) or '"summary"' in p.stderr,
        f"rc={p.returncode} {p.stderr[-200:]!r}",
    )

    # a small file-size limit: the JSONL is cut, the summary goes to stderr; --append refuses to glue
    def small_limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    cut = W / "cut.jsonl"
    p = run(
        ["ser-live", "--file", str(W / "long.wav"), "--fast", "--no-dashboard", "--jsonl", str(cut)],
        timeout=120,
        preexec_fn=small_limit,
    )
    check(
        "file-size limit: the summary reaches stderr, no traceback",
        '"summary"' in p.stderr and "Traceback" not in p.stderr,
        f"rc={p.returncode} {p.stderr[-300:]!r}",
    )
    p = run(["ser-live", "--file", str(speech), "--fast", "--no-dashboard", "--jsonl", str(cut), "--append"])
    lines_ = cut.read_text().splitlines()
    glued = 0
    for x in lines_:
        try:
            json.loads(x)
        except ValueError:
            glued += 1
    check(
        "--append after a cut line: refused or every line whole after the cut",
        (p.returncode != 0 and "Traceback" not in p.stderr) or glued <= 1,
        f"rc={p.returncode} bad lines {glued} {p.stderr.strip()[-200:]!r}",
    )

    early = W / "early.jsonl"
    proc = subprocess.Popen(
        [str(BIN / "ser-live"), "--file", str(W / "hour.wav"), "--fast", "--no-dashboard", "--jsonl", str(early)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(6)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    ev = [json.loads(x) for x in early.read_text().splitlines()]
    nwin = sum(e["type"] == "window" for e in ev)
    check(
        "--fast stopped early: the summary counts the windows written",
        ev[-1]["type"] == "summary" and ev[-1]["windows"] == nwin,
        f"windows {nwin}, summary {ev[-1].get('windows')}",
    )

    p = run(["ser-live", "--file", str(speech), "--fast", "--no-dashboard", "--jsonl", str(W / "ok.jsonl")])
    bom = W / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + (W / "ok.jsonl").read_bytes())
    p = run(["ser-report", str(bom), "-o", str(W / "bom.png")])
    md = (W / "bom.md").read_text() if (W / "bom.md").exists() else ""
    nok = sum(json.loads(x)["type"] == "window" for x in (W / "ok.jsonl").read_text().splitlines())
    check(
        "ser-report on a BOM JSONL keeps the first window (or says so)",
        p.returncode == 0 and (str(nok) in md or "BOM" in p.stderr),
        f"rc={p.returncode} windows {nok} {p.stderr.strip()[-200:]!r}",
    )

    # ------------------------------------------------------------------------------ ser-eval --out, options
    out = W / "eval-out"
    p = run(["ser-eval", "--data", str(W / "nothing-here"), "--out", str(out)], timeout=120)
    check(
        "ser-eval early error leaves no empty --out",
        p.returncode != 0 and not out.exists() and "Traceback" not in p.stderr,
        f"rc={p.returncode} exists={out.exists()} {p.stderr.strip()[-200:]!r}",
    )
    for argv, word in (
        (["--demo", "--samplerate", "48000"], "--samplerate"),
        (["--demo", "--device", "1"], "--device"),
        (["--file", str(speech), "--tls-cert", "x.pem"], "--tls-cert"),
        (["--file", str(speech), "--token", "abc"], "--token"),
        (["--enroll", str(W / "p.json"), "--serve"], "--serve"),
        (["--enroll", str(W / "p.json"), "--enroll-labels", ",,,"], "--enroll-labels"),
    ):
        p = run(["ser-live", *argv, "--no-dashboard"], timeout=30)
        check(f"ignored option refused: {' '.join(argv[-2:])}", *one_line(p, word))
    for url in ("ws://", "http://[::1", "ws://host:99999", "ftp://x", "ws://:80"):
        p = run(["ser-live", "--connect", url, "--file", str(speech)], timeout=30)
        check(f"--connect {url!r}: one line", *one_line(p))
    port = free_port()
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", port))
    blocker.listen()
    p = run(["ser-serve", f"127.0.0.1:{port}"], timeout=30)
    ok, d = one_line(p)
    check("ser-serve port in use: one line, not naming --serve", ok and "--serve" not in p.stderr, d)
    blocker.close()

    # all-uncertain session
    p = run(["ser-live", "--file", str(speech), "--fast", "--no-dashboard", "--min-confidence", "0.99"])
    check(
        "every window uncertain: summary does not say 'mostly None'",
        "mostly None" not in p.stdout + p.stderr and "uncertain" in (p.stdout + p.stderr),
        (p.stdout + p.stderr).strip()[-200:],
    )

    # ------------------------------------------------------------------------------ TLS
    cert, key = W / "cert.pem", W / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        capture_output=True,
        check=True,
    )
    tport = free_port()
    tls, _lines = start(["ser-serve", f"127.0.0.1:{tport}", "--tls-cert", str(cert), "--tls-key", str(key)])
    try:
        p, ended = connect_file(f"wss://127.0.0.1:{tport}", speech, W / "tls.jsonl", "--tls-ca", str(cert))
        check(
            "--connect wss:// --tls-ca trusts the self-signed cert",
            ended,
            p.stderr.strip()[-200:],
        )
        p = run(["ser-live", "--connect", f"wss://127.0.0.1:{tport}", "--file", str(speech)], timeout=60)
        check("--connect wss:// without --tls-ca: one line naming --tls-ca", *one_line(p, "--tls-ca"))
    finally:
        stop(tls)
    enc = W / "enc.pem"
    subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-aes256", "-passout", "pass:x", "-out", str(enc)],
        capture_output=True,
        check=True,
    )
    p = run(
        ["ser-serve", "127.0.0.1:0", "--tls-cert", str(cert), "--tls-key", str(enc)],
        timeout=30,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    check("encrypted TLS key without a terminal: one clear line", *one_line(p, "encrypted"))
    cfifo = W / "cert.fifo"
    os.mkfifo(cfifo)
    p = run(["ser-serve", "127.0.0.1:0", "--tls-cert", str(cfifo), "--tls-key", str(key)], timeout=30)
    check("FIFO as --tls-cert: no hang, one line", *one_line(p))

    print()
    failed = [r for r in RESULTS if not r[1]]
    print(f"{len(RESULTS) - len(failed)}/{len(RESULTS)} passed")
    for name, _, detail in failed:
        print("FAILED:", name, detail[:400])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
