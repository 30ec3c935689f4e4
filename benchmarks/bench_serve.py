"""What ser-serve costs: N clients stream a file to one ``ser-serve`` at once, in 0.1 s PCM16 frames, as fast as
the server takes them (``--pace fast``) or at real-time pace (``--pace realtime``). Prints, per N: the wall time,
audio seconds scored per wall second (all clients together), the server's CPU seconds per audio second (from
/proc, the server is its own process) and the time the server spent on each window (features + inference,
p50/p99 of the events' latency_ms).

    python benchmarks/bench_serve.py --clients 1,4,16 --pace fast
    python benchmarks/bench_serve.py --clients 8 --pace realtime
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from ser_live.realtime.faces.serve import stream_to
from ser_live.realtime.model import bundled_demo_path

FRAME_S = 0.1


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_client(url: str, data: np.ndarray, rate: int, pace: str, out: list[float], failures: list[str]) -> None:
    step = int(FRAME_S * rate)

    def blocks() -> Iterator[np.ndarray]:
        start = time.monotonic()
        for k, i in enumerate(range(0, len(data), step)):
            if pace == "realtime":
                delay = start + k * FRAME_S - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            yield data[i:i + step]

    def take(message: dict) -> None:
        if message.get("type") == "window":
            lat = message["latency_ms"]
            out.append(float(lat["features"]) + float(lat["inference"]))

    try:
        stream_to(url, blocks(), rate, data.shape[1], take)
    except Exception as err:  # reported, not raised: the other clients go on
        failures.append(str(err))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", default="1,4,16", help="comma-separated client counts")
    p.add_argument("--pace", choices=("fast", "realtime"), default="fast")
    p.add_argument("--file", type=Path, default=bundled_demo_path())
    p.add_argument("--port", type=int, default=8790)
    args = p.parse_args()
    data, rate = sf.read(args.file, dtype="float32", always_2d=True)
    audio_s = len(data) / rate
    counts = [int(c) for c in args.clients.split(",")]
    server = subprocess.Popen([sys.executable, "-m", "ser_live.realtime.faces.serve_cli", f"127.0.0.1:{args.port}",
                               "--max-sessions", str(max(counts))], stderr=subprocess.PIPE, text=True)
    try:
        line = server.stderr.readline()  # type: ignore[union-attr]
        found = re.search(r"audio in at (\S+);", line)
        if found is None:
            raise SystemExit(f"ser-serve did not start: {line}")
        url = found.group(1)
        print(f"{args.file.name}: {audio_s:.1f} s per client, pace {args.pace}, {os.cpu_count()} CPUs")
        print("clients  wall_s  audio_s/wall_s  server_cpu_s/audio_s  window_ms_p50  window_ms_p99  failures")
        for n in counts:
            latencies: list[float] = []
            failures: list[str] = []
            cpu0, t0 = cpu_seconds(server.pid), time.perf_counter()
            threads = [threading.Thread(target=one_client, args=(url, data, rate, args.pace, latencies, failures))
                       for _ in range(n)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall, cpu = time.perf_counter() - t0, cpu_seconds(server.pid) - cpu0
            lat = np.array(latencies) if latencies else np.zeros(1)
            print(f"{n:7d}  {wall:6.2f}  {n * audio_s / wall:14.1f}  {cpu / (n * audio_s):20.4f}  "
                  f"{np.percentile(lat, 50):14.2f}  {np.percentile(lat, 99):14.2f}  {len(failures)}")
            for f in failures[:3]:
                print("   ", f)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
