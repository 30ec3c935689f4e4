"""ser-serve under load: real-time clients beside flat-out uploaders (the fair-scheduling benchmark).

One ``ser-serve`` (its own process, the bundled default model unless --model, one ONNX Runtime thread, its
default workers) takes ``--realtime`` clients that stream the bundled demo at real-time pace in 0.1 s PCM16 frames
and ``--uploaders`` clients that send a long file (the demo repeated, ``--upload-s`` seconds) in 1 MiB frames as
fast as the server reads them. For each real-time client's window event: lag = when it arrived minus when the end
of its audio was sent. Prints the lag p50/p99/max over every real-time window, the uploads' throughput and the
server's CPU seconds per audio second.

    python benchmarks/bench_serve_fair.py --realtime 8 --uploaders 2
    python benchmarks/bench_serve_fair.py --realtime 64 --uploaders 0 --max-sessions 64   # capacity
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from websockets.sync.client import connect

from ser_live.realtime.faces.serve import stream_to
from ser_live.realtime.model import bundled_demo_path

FRAME_S = 0.1
UPLOAD_FRAME_BYTES = 1 << 20


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def realtime_client(url: str, pcm: np.ndarray, rate: int, lags: list[float], failures: list[str]) -> None:
    """The demo at real-time pace in FRAME_S frames (ser-live --connect's own client, stream_to)."""
    step = int(FRAME_S * rate)
    sent_at: dict[int, float] = {}  # samples sent -> when

    def blocks() -> Iterator[np.ndarray]:
        t0 = time.monotonic()
        for i in range(0, len(pcm), step):
            time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
            sent_at[min(i + step, len(pcm))] = time.monotonic()
            yield pcm[i : i + step]

    def take(m: dict[str, Any]) -> None:
        if m.get("type") == "window":
            end = round(m["end_s"] * rate)
            sent = min((s for s in sent_at if s >= end), default=None)
            if sent is not None:
                lags.append(time.monotonic() - sent_at[sent])

    try:
        stream_to(url, blocks(), rate, 1, take)
    except Exception as err:
        failures.append(f"real-time: {type(err).__name__}: {err}")


def uploader(url: str, pcm: np.ndarray, rate: int, done: list[float], failures: list[str]) -> None:
    """A long recording in 1 MiB frames, as fast as the server reads them."""
    step = UPLOAD_FRAME_BYTES // 2
    t0 = time.monotonic()
    try:
        stream_to(url, (pcm[i : i + step] for i in range(0, len(pcm), step)), rate, 1, lambda m: None)
        done.append(len(pcm) / rate / (time.monotonic() - t0))
    except Exception as err:
        failures.append(f"upload: {type(err).__name__}: {err}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--realtime", type=int, default=8)
    p.add_argument("--uploaders", type=int, default=2)
    p.add_argument("--upload-s", type=float, default=600.0, help="seconds of audio each uploader sends")
    p.add_argument("--model", default=None)
    p.add_argument("--port", type=int, default=8791)
    p.add_argument("--max-sessions", type=int, default=0, help="ser-serve --max-sessions (0: its default)")
    args = p.parse_args()
    audio, rate = sf.read(bundled_demo_path(), dtype="int16")
    upload = np.tile(audio, int(np.ceil(args.upload_s * rate / len(audio))))[: int(args.upload_s * rate)]
    cmd = [sys.executable, "-m", "ser_live.realtime.faces.serve_cli", f"127.0.0.1:{args.port}", "--threads", "1"]
    if args.model:
        cmd += ["--model", args.model]
    if args.max_sessions:
        cmd += ["--max-sessions", str(args.max_sessions)]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"ws://127.0.0.1:{args.port}/stream"
    try:
        for _ in range(200):
            try:
                with connect(f"ws://127.0.0.1:{args.port}/stream", open_timeout=1) as ws:
                    ws.close()
                break
            except OSError:
                time.sleep(0.1)
        lags: list[float] = []
        rates: list[float] = []
        failures: list[str] = []
        cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
        threads = [threading.Thread(target=uploader, args=(url, upload, rate, rates, failures))
                   for _ in range(args.uploaders)]
        threads += [threading.Thread(target=realtime_client, args=(url, audio, rate, lags, failures))
                    for _ in range(args.realtime)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        cpu, wall = cpu_seconds(server.pid) - cpu0, time.monotonic() - t0
    finally:
        server.terminate()
        server.wait(timeout=30)
    audio_s = args.realtime * len(audio) / rate + args.uploaders * len(upload) / rate
    lag = np.array(lags)
    print(f"{args.realtime} real-time clients, {args.uploaders} uploaders of {args.upload_s:g} s; wall {wall:.1f} s")
    if len(lag):
        print(f"real-time windows: {len(lag)}; lag p50 {np.percentile(lag, 50):.3f} s, p99 "
              f"{np.percentile(lag, 99):.3f} s, max {lag.max():.3f} s")
    print(f"uploads: {', '.join(f'{r:.0f}x real time' for r in rates) or 'none finished'}")
    print(f"server CPU {cpu:.1f} s for {audio_s:.0f} s of audio: {cpu / audio_s:.4f} s per audio second")
    for f in failures:
        print("FAILED", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
