"""Latency benchmarks of the runtime (issue 4, "Start-up and speed"). No timed assertions: figures only.

Run (one command; see BENCHMARKS.md for the figures and how to read them)::

    .venv/bin/python -m pytest tests/benchmarks --benchmark-only -p no:cacheprovider

What is timed:

- ``per_hop``: what the engine does at every hop of a live stream — ``FrameFeatures.process`` of one hop of new
  samples, ``window()`` of the current window and ``model.predict`` — for each preset's model, with one ONNX
  Runtime thread, every thread of the process pinned to one core; once with numpy's BLAS pool at one thread and
  once as numpy starts it (one thread per CPU);
- ``inference``: ``model.predict`` alone on one window;
- ``baseline``: the seeds' naive way on the same window, three librosa calls (``mfcc``, ``chroma_stft`` with its
  default tuning estimation, ``melspectrogram``), after a warm-up call that pays numba's JIT;
- ``replay``: a minute of speech (22.05 kHz, so resampled) through ``Engine.feed`` in 30 ms blocks read from the
  file, as ``ser-live --file --fast`` does: real-time factor = audio seconds / wall seconds;
- ``startup``: ``ser-live --file X --fast --jsonl - --no-dashboard --model M`` in a fresh process:
  time from spawn to its first JSON line, total time, and the process's peak RSS (its VmHWM at exit);
- ``import``: ``python -c "import ser_live.realtime.faces.cli"`` and the slowest imports (``-X importtime``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ser_live.realtime.model import EmotionModel, load_model
from ser_live.realtime.stages.features import FrameFeatures, get_preset
from ser_live.realtime.stages.normalize import InputNormalizer
from ser_live.realtime.stages.pipeline import PipelineConfig
from tests.benchmarks.conftest import ROOT, blas_threads, percentiles_ms, pinned_to_one_core, shipped_env

PRESETS = ("seed180", "seed162", "logmel", "logmel-window", "logmel-session")  # logmel + an input stage
# BLAS pool: 1 thread, or None = as numpy starts it (one per CPU)
BLAS_CHOICES: dict[str, int | None] = {"blas1": 1, "blas-default": None}
HOP_ROUNDS = {"blas1": 1000, "blas-default": 150}
HOP_WARMUP = 20
INFERENCE_ROUNDS = 1000
BASELINE_ROUNDS = {"blas1": 40, "blas-default": 15}
REPLAY_ROUNDS = 3
STARTUP_ROUNDS = 4
IMPORT_ROUNDS = 5
# what ser-live --file imports (the dashboard module too)
IMPORT_CODE = "import ser_live.realtime.faces.cli, ser_live.realtime.faces.dashboard"
PROFILED_IMPORTS = ("ser_live.realtime.faces.cli", "ser_live.realtime.faces.dashboard",
                    "numpy", "onnxruntime", "soundfile", "soxr",
                    "webrtcvad",
                    "rich", "ser_live.realtime.model", "ser_live.realtime.stages.pipeline")
CLI_BLOCK_S = 0.03  # ser_live.realtime.faces.cli.FILE_BLOCK_S: --file replays feed 30 ms blocks
REPLAY_BLOCKS_S = (CLI_BLOCK_S, 1.0)
SUBPROCESS_TIMEOUT_S = 120
SPARE_FRAMES = 64
KIB = 1024
MIB = 1024 * 1024


def _load(path: Path) -> EmotionModel:
    return load_model(path, provider="cpu", threads=1)


def _config(model: EmotionModel) -> PipelineConfig:
    info = model.info
    return PipelineConfig(preset=info.preset, window_s=info.window_s, hop_s=info.hop_s,
                          min_speech_s=info.min_speech_s)


class HopLoop:
    """One hop of the live path per ``step()``: new samples -> frame features -> window -> model."""

    def __init__(self, model: EmotionModel, audio: np.ndarray) -> None:
        self.model = model
        cfg = _config(model)
        self.window, self.hop = cfg.window_samples, cfg.hop_samples
        preset = cfg.preset
        capacity = preset.n_frames(self.window) + self.hop // preset.hop_length + SPARE_FRAMES
        self.frames = FrameFeatures(preset, lead_in=self.window - self.hop, capacity_frames=capacity)
        self.audio = audio
        self.position = 0
        self.features_s: list[float] = []
        self.inference_s: list[float] = []
        self.feature_shape = cfg.feature_shape
        norm = model.info.input_norm
        self.normalizer = InputNormalizer(norm, preset.n_mels, self.hop / preset.sample_rate) if norm.enabled else None

    def _next_hop(self) -> np.ndarray:
        start = self.position % (len(self.audio) - self.hop)
        return self.audio[start : start + self.hop]

    def prime(self) -> None:
        """Fill one window, so every timed step is a steady-state hop."""
        for _ in range(self.window // self.hop):
            self.frames.process(self._next_hop())
            self.position += self.hop

    def step(self) -> np.ndarray:
        t0 = time.perf_counter()
        self.frames.process(self._next_hop())
        self.position += self.hop
        x = self.frames.window(self.position - self.window, self.position)
        if self.normalizer is not None:
            x = self.normalizer.process(x)
        t1 = time.perf_counter()
        probs = self.model.predict(x[np.newaxis])
        t2 = time.perf_counter()
        self.features_s.append(t1 - t0)
        self.inference_s.append(t2 - t1)
        return probs

    def last_window(self) -> np.ndarray:
        return self.frames.window(self.position - self.window, self.position)


def _round_times(benchmark: Any) -> list[float]:
    """Per-round durations (s) that pytest-benchmark measured."""
    return list(benchmark.stats.stats.data)


@pytest.mark.parametrize("blas", list(BLAS_CHOICES))
@pytest.mark.parametrize("preset", PRESETS)
def test_per_hop(benchmark: Any, bench_models: dict[str, Path], speech_16k: np.ndarray, one_core: int,
                 record: Any, preset: str, blas: str) -> None:
    model = _load(bench_models[preset])
    loop = HopLoop(model, speech_16k)
    with blas_threads(BLAS_CHOICES[blas]):
        loop.prime()
        probs = benchmark.pedantic(loop.step, rounds=HOP_ROUNDS[blas], warmup_rounds=HOP_WARMUP, iterations=1)
    assert probs.shape == (1, len(model.labels))
    stats = percentiles_ms(_round_times(benchmark))
    features = percentiles_ms(loop.features_s[HOP_WARMUP:])
    inference = percentiles_ms(loop.inference_s[HOP_WARMUP:])
    note = (f"{model.info.recipe}, features p50/p99 {features['p50_ms']:.3f}/{features['p99_ms']:.3f}, "
            f"inference {inference['p50_ms']:.3f}/{inference['p99_ms']:.3f}, cpu {one_core}, "
            f"hop {loop.hop} of window {loop.window} samples, shape {loop.feature_shape}")
    benchmark.extra_info.update({"p99_ms": stats["p99_ms"], "features": features, "inference": inference})
    record(f"per_hop[{preset}-{blas}]", group="per_hop", preset=preset, blas=blas, recipe=model.info.recipe,
           features=features, inference=inference, note=note, **stats)


@pytest.mark.parametrize("preset", PRESETS)
def test_inference(benchmark: Any, bench_models: dict[str, Path], speech_16k: np.ndarray, one_core: int,
                   record: Any, preset: str) -> None:
    model = _load(bench_models[preset])
    loop = HopLoop(model, speech_16k)
    loop.prime()
    x = loop.last_window()[np.newaxis]
    probs = benchmark.pedantic(model.predict, args=(x,), rounds=INFERENCE_ROUNDS, warmup_rounds=HOP_WARMUP,
                               iterations=1)
    assert probs.shape == (1, len(model.labels))
    stats = percentiles_ms(_round_times(benchmark))
    benchmark.extra_info["p99_ms"] = stats["p99_ms"]
    size = bench_models[preset].stat().st_size
    record(f"inference[{preset}]", group="inference", preset=preset, recipe=model.info.recipe,
           note=f"{model.info.recipe}, input {tuple(x.shape)}, {size / KIB:.0f} KiB ONNX", **stats)


@pytest.mark.parametrize("blas", list(BLAS_CHOICES))
def test_baseline_librosa(benchmark: Any, speech_16k: np.ndarray, one_core: int, record: Any, blas: str) -> None:
    """The seeds' way: three librosa calls per window (default tuning estimation in chroma_stft)."""
    t0 = time.perf_counter()
    import librosa

    import_s = time.perf_counter() - t0
    cfg = PipelineConfig(preset=get_preset("seed180"))  # the default window, as the seed presets cut it
    y = speech_16k[: cfg.window_samples]
    sr = cfg.sample_rate

    def three_calls() -> np.ndarray:
        mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=40).mean(axis=1)
        chroma = librosa.feature.chroma_stft(y=y, sr=sr).mean(axis=1)
        mel = librosa.feature.melspectrogram(y=y, sr=sr).mean(axis=1)
        return np.concatenate([mfcc, chroma, mel])

    with blas_threads(BLAS_CHOICES[blas]):
        t0 = time.perf_counter()
        first = three_calls()  # numba JIT (or its on-disk cache) on the first call
        first_s = time.perf_counter() - t0
        out = benchmark.pedantic(three_calls, rounds=BASELINE_ROUNDS[blas], warmup_rounds=1, iterations=1)
    assert out.shape == (180,)
    np.testing.assert_allclose(out, first, rtol=1e-5, atol=1e-6)
    stats = percentiles_ms(_round_times(benchmark))
    benchmark.extra_info.update({"p99_ms": stats["p99_ms"], "first_call_s": first_s})
    record(f"baseline_librosa[{blas}]", group="baseline", blas=blas, first_call_s=first_s, import_s=import_s,
           note=f"window {len(y)} samples; first call {first_s:.2f} s (JIT), import {import_s:.2f} s", **stats)


@pytest.mark.parametrize("block_s", REPLAY_BLOCKS_S, ids=lambda b: f"block{b * 1000:g}ms")
@pytest.mark.parametrize("blas", list(BLAS_CHOICES))
@pytest.mark.parametrize("preset", PRESETS)
def test_replay(benchmark: Any, bench_models: dict[str, Path], speech_wav: Path, record: Any, preset: str,
                blas: str, block_s: float) -> None:
    """File replay as fast as possible (2 cores, not pinned) through the engine, in the CLI's 30 ms blocks and in
    1 s blocks (the events are the same for any block size; only the per-block overhead differs)."""
    from ser_live.realtime.engine import Engine
    from ser_live.realtime.sources.audio import audio_info, iter_audio_blocks

    model = _load(bench_models[preset])
    info = audio_info(speech_wav)
    block = int(block_s * info.sample_rate)

    def replay() -> int:
        engine = Engine(model, info.sample_rate)
        events = 0
        for chunk in iter_audio_blocks(speech_wav, block):
            events += len(engine.feed(chunk))
        return events + len(engine.flush())

    with blas_threads(BLAS_CHOICES[blas]):
        events = benchmark.pedantic(replay, rounds=REPLAY_ROUNDS, warmup_rounds=1, iterations=1)
    assert events > 0
    times = _round_times(benchmark)
    rtf = info.duration_s / float(np.median(times))
    benchmark.extra_info.update({"realtime_factor": rtf, "events": events})
    record(f"replay[{preset}-{blas}-{block_s * 1000:g}ms]", group="replay", preset=preset, blas=blas,
           block_s=block_s, realtime_factor=rtf, audio_s=info.duration_s, events=events,
           note=f"{model.info.recipe}: {info.duration_s:.0f} s audio, {events} events, {rtf:.0f}x real time",
           **percentiles_ms(times))


# ``ser-live`` (its module) plus an exit hook that prints the process's own peak RSS (VmHWM). The parent cannot
# use wait4's ru_maxrss: Linux carries the pre-exec high-water mark of the (v)forked child, i.e. the size of this
# pytest process, into it.
CLI_WITH_PEAK_RSS = """
import atexit, runpy, sys
def _peak():
    with open("/proc/self/status") as status:
        line = next(x for x in status if x.startswith("VmHWM:"))
    print("ser-live-bench " + line.strip(), file=sys.stderr, flush=True)
atexit.register(_peak)
sys.argv = ["ser-live", *sys.argv[1:]]
runpy.run_module("ser_live.realtime.faces.cli", run_name="__main__", alter_sys=True)
"""
PEAK_RSS_LINE = re.compile(r"ser-live-bench VmHWM:\s+(\d+) kB")


def _run_cli(model: Path, wav: Path, env: dict[str, str]) -> dict[str, Any]:
    """Spawn ser-live once: time to its first JSON line, total time, its peak RSS."""
    cmd = [sys.executable, "-c", CLI_WITH_PEAK_RSS, "--file", str(wav), "--fast", "--jsonl", "-", "--no-dashboard",
           "--model", str(model)]
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        assert proc.stdout is not None
        first_line = proc.stdout.readline()
        first_s = time.perf_counter() - t0
        rest = proc.stdout.read()
        proc.wait(timeout=SUBPROCESS_TIMEOUT_S)
        total_s = time.perf_counter() - t0
        proc.stdout.close()
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    assert proc.returncode == 0, stderr[-2000:]
    first = json.loads(first_line)
    assert first["type"] == "window", first
    lines = [json.loads(line) for line in rest.splitlines() if line.strip()]
    assert lines and lines[-1]["type"] == "summary"
    peak = PEAK_RSS_LINE.search(stderr)
    assert peak is not None, stderr[-2000:]
    return {"first_event_s": first_s, "total_s": total_s, "peak_rss_bytes": int(peak.group(1)) * KIB,
            "events": len(lines)}


@pytest.mark.parametrize("blas", list(BLAS_CHOICES))
@pytest.mark.parametrize("model_name", ["tiny", "seed180", "seed162", "logmel", "default"])
def test_startup(benchmark: Any, bench_models: dict[str, Path], speech_wav: Path, record: Any,
                 model_name: str, blas: str) -> None:
    """Process start -> first event, and peak RSS: as a user runs it (``blas-default``: no BLAS thread variables)
    and with ``OPENBLAS_NUM_THREADS=1`` (``blas1``)."""
    if model_name not in bench_models:
        pytest.skip("no bundled ser_live/models/default.onnx in this checkout yet")
    model = bench_models[model_name]
    env = shipped_env(BLAS_CHOICES[blas])
    runs: list[dict[str, Any]] = []

    def once() -> None:
        runs.append(_run_cli(model, speech_wav, env))

    benchmark.pedantic(once, rounds=STARTUP_ROUNDS, warmup_rounds=1, iterations=1)
    runs = runs[1:]  # the warm-up run (cold file cache) is not counted
    first = percentiles_ms(r["first_event_s"] for r in runs)
    total = percentiles_ms(r["total_s"] for r in runs)
    rss_mib = max(r["peak_rss_bytes"] for r in runs) / MIB
    benchmark.extra_info.update({"first_event": first, "peak_rss_mib": rss_mib})
    recipe = load_model(model, provider="cpu").info.recipe
    record(f"startup_first_event[{model_name}-{blas}]", group="startup", model=model_name, recipe=recipe, blas=blas,
           total=total, peak_rss_mib=rss_mib, events=runs[0]["events"],
           note=(f"{recipe}: first event p50 {first['p50_ms']:.0f} ms (max {first['max_ms']:.0f}); whole 60 s "
                 f"file {total['p50_ms']:.0f} ms; peak RSS {rss_mib:.1f} MiB"), **first)


def _import_profile() -> dict[str, float]:
    """Cumulative import time (ms) of the heavy packages behind ``ser-live``, from ``-X importtime``."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", IMPORT_CODE], cwd=ROOT, env=shipped_env(None),
                          capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S, check=True)
    found: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+\d+\s+\|\s+(\d+)\s+\|\s*(\S+)", line)
        if m and m.group(2) in PROFILED_IMPORTS:
            found[m.group(2)] = max(found.get(m.group(2), 0.0), int(m.group(1)) / 1000.0)
    return dict(sorted(found.items(), key=lambda kv: -kv[1]))


def test_import_time(benchmark: Any, record: Any) -> None:
    env = shipped_env(None)

    def run(code: str) -> None:
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=SUBPROCESS_TIMEOUT_S)

    bare: list[float] = []
    for _ in range(IMPORT_ROUNDS):
        t0 = time.perf_counter()
        run("pass")
        bare.append(time.perf_counter() - t0)
    benchmark.pedantic(run, args=(IMPORT_CODE,), rounds=IMPORT_ROUNDS, warmup_rounds=1, iterations=1)
    stats = percentiles_ms(_round_times(benchmark))
    profile = _import_profile()
    benchmark.extra_info["imports_ms"] = profile
    record("import_cli_and_dashboard", group="import", imports_ms=profile, interpreter=percentiles_ms(bare),
           note=f"bare interpreter p50 {np.median(bare) * 1000:.0f} ms; of which: "
                + ", ".join(f"{name} {ms:.0f}" for name, ms in profile.items()), **stats)


def test_pinning_reaches_every_thread(benchmark: Any) -> None:
    """Sanity check of the one-core claim: inside the pin, every thread of the process has one CPU."""
    with pinned_to_one_core() as cpu:
        masks = benchmark.pedantic(
            lambda: {int(t): os.sched_getaffinity(int(t)) for t in os.listdir("/proc/self/task")},
            rounds=1, iterations=1)
    assert all(mask == {cpu} for mask in masks.values()), masks
