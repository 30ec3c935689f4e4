"""Fixtures and the summary table of the latency benchmarks (tests/benchmarks; see BENCHMARKS.md).

Every test here uses pytest-benchmark's ``benchmark`` fixture. pyproject's ``norecursedirs`` keeps this folder out
of a plain ``pytest`` run (the pass/fail suite). Run them with::

    .venv/bin/python -m pytest tests/benchmarks --benchmark-only -p no:cacheprovider

Set ``SER_LIVE_BENCH_JSON=path.json`` to also write the summary (with the machine description) as JSON.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from ser_live.realtime.stages.normalize import MODE_SESSION, MODE_WINDOW
from tests.tiny_model import make_tiny_model

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
RESULTS_KEY = pytest.StashKey[list[dict[str, Any]]]()
JSON_ENV = "SER_LIVE_BENCH_JSON"

# The models timed per preset: untrained models of the real recipes, exported by the project's own code.
PRESET_RECIPES: dict[str, str] = {"seed180": "seed180", "seed162": "seed162", "logmel": "logmel_cnn"}
BUILD_TIMEOUT_S = 600
BUNDLED_MODEL = ROOT / "ser_live" / "models" / "default.onnx"

SPEECH_RATE = 22050  # espeak-ng's native rate: the replay resamples, as it would for a real file
SPEECH_SECONDS = 60.0
MODEL_RATE = 16000
ESPEAK_TIMEOUT_S = 120
SPEECH_TEXT = (
    "Speech emotion recognition listens to how something is said rather than what is said. "
    "The pitch rises when we are excited and falls when we are tired or sad. "
    "Loud and fast speech often sounds angry, while slow and quiet speech sounds calm. "
    "This recording is synthesised, so that the benchmark needs no microphone and no corpus. "
    "It is long enough to measure how fast a whole file can be replayed through the engine. "
    "Every half second a new window of two seconds is classified by the model. "
)
BLAS_ENV_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


# --- results ---------------------------------------------------------------------------------------------------


def percentiles_ms(seconds: Any) -> dict[str, float]:
    """p50 / p99 / mean / max in milliseconds of a sequence of durations in seconds."""
    data = np.asarray(list(seconds), dtype=np.float64) * 1000.0
    return {
        "p50_ms": float(np.percentile(data, 50)),
        "p99_ms": float(np.percentile(data, 99)),
        "mean_ms": float(data.mean()),
        "max_ms": float(data.max()),
        "n": int(data.size),
    }


@pytest.fixture()
def record(request: pytest.FixtureRequest) -> Any:
    """``record(name, **fields)`` adds a row to the summary printed (and optionally saved) at the end."""
    rows = request.config.stash.setdefault(RESULTS_KEY, [])

    def add(name: str, **fields: Any) -> dict[str, Any]:
        row = {"name": name, **fields}
        rows.append(row)
        return row

    return add


def machine_info() -> dict[str, Any]:
    import onnxruntime

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor()
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "cpu": cpu,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": onnxruntime.__version__,
        "platform": platform.platform(),
        "loadavg_at_end": os.getloadavg(),
    }


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return "" if value is None else str(value)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    rows = config.stash.get(RESULTS_KEY, [])
    if not rows:
        return
    info = machine_info()
    tr = terminalreporter
    tr.section("ser-live latency summary (ms unless stated)")
    tr.write_line(f"{info['date']}  nproc={info['nproc']}  cpu={info['cpu']}  python {info['python']}  "
                  f"numpy {info['numpy']}  onnxruntime {info['onnxruntime']}  load {info['loadavg_at_end']}")
    columns = ("name", "p50_ms", "p99_ms", "mean_ms", "max_ms", "n", "note")
    tr.write_line(" | ".join(f"{c:>10}" if c != "name" else f"{c:<44}" for c in columns))
    for row in rows:
        cells = [f"{row['name']:<44}"] + [f"{_fmt(row.get(c)):>10}" for c in columns[1:-1]]
        cells.append(str(row.get("note", "")))
        tr.write_line(" | ".join(cells))
    target = os.environ.get(JSON_ENV)
    if target:
        Path(target).write_text(json.dumps({"machine": info, "results": rows}, indent=2) + "\n")
        tr.write_line(f"summary written to {target}")


# --- CPU and thread control ------------------------------------------------------------------------------------


def _thread_ids() -> list[int]:
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


@contextmanager
def pinned_to_one_core() -> Iterator[int]:
    """Pin every thread of this process (BLAS workers included) to one CPU; restore the old mask after.

    Threads and processes started inside inherit the pin. ``os.sched_setaffinity(0, ...)`` alone would pin only
    the calling thread and leave the OpenBLAS workers (started at numpy import) free.
    """
    original = os.sched_getaffinity(0)
    cpu = max(original)
    for tid in _thread_ids():
        try:
            os.sched_setaffinity(tid, {cpu})
        except OSError:  # a thread that ended meanwhile
            continue
    try:
        yield cpu
    finally:
        for tid in _thread_ids():
            try:
                os.sched_setaffinity(tid, original)
            except OSError:
                continue


@pytest.fixture()
def one_core() -> Iterator[int]:
    with pinned_to_one_core() as cpu:
        yield cpu


@contextmanager
def blas_threads(limit: int | None) -> Iterator[None]:
    """Limit numpy's BLAS thread pool (None: leave it as numpy started it, one thread per CPU)."""
    if limit is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=limit, user_api="blas"):
        yield


def shipped_env(blas_limit: int | None) -> dict[str, str]:
    """The environment for a ser-live subprocess: no BLAS thread variables (as a user has), or one thread."""
    env = {k: v for k, v in os.environ.items() if k not in BLAS_ENV_VARS}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if blas_limit is not None:
        env["OPENBLAS_NUM_THREADS"] = str(blas_limit)
    return env


# --- inputs ------------------------------------------------------------------------------------------------------


def _build_recipe_models(out_dir: Path) -> dict[str, Path]:
    """Untrained recipe models exported to ONNX, in a separate process (TensorFlow stays out of this one)."""
    cmd = [sys.executable, "-m", "tests.benchmarks.build_models", str(out_dir), *PRESET_RECIPES.values()]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, env=env,
                          check=False)
    if proc.returncode != 0:
        logger.warning("could not build the recipe models (%s); timing tiny models instead",
                       proc.stderr.strip().splitlines()[-1:] or proc.returncode)
        return {}
    built = json.loads(proc.stdout.strip().splitlines()[-1])
    return {recipe: Path(path) for recipe, path in built.items()}


@pytest.fixture(scope="session")
def bench_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Model per preset (``seed180``, ``seed162``, ``logmel``), plus ``tiny`` and ``default`` (when shipped).

    A preset whose recipe model cannot be built (no TensorFlow) falls back to the tiny model of that preset; the
    model file's ``recipe`` metadata says which one was timed.
    """
    out = tmp_path_factory.mktemp("bench-models")
    recipes = _build_recipe_models(out)
    models: dict[str, Path] = {"tiny": make_tiny_model(out / "tiny.onnx", window_s=2.0, hop_s=0.5)}
    for preset, recipe in PRESET_RECIPES.items():
        models[preset] = recipes.get(recipe) or make_tiny_model(out / f"tiny-{preset}.onnx", preset_name=preset,
                                                                window_s=2.0, hop_s=0.5)
    models["logmel-window"] = _with_input_norm(models["logmel"], out / "logmel-window.onnx", MODE_WINDOW)
    models["logmel-session"] = _with_input_norm(models["logmel"], out / "logmel-session.onnx", MODE_SESSION)
    if BUNDLED_MODEL.is_file():
        models["default"] = BUNDLED_MODEL
    return models


def _with_input_norm(source: Path, target: Path, mode: str) -> Path:
    """The same model with input normalisation ``mode`` in its metadata (a flat session prior: timing only)."""
    import onnx

    from ser_live.realtime.model import METADATA_KEY
    from ser_live.realtime.stages.normalize import MODE_SESSION, InputNormConfig

    proto = onnx.load(str(source))
    props = {p.key: p.value for p in proto.metadata_props}
    meta = json.loads(props[METADATA_KEY])
    prior = (0.0,) * meta["preset"]["n_mels"] if mode == MODE_SESSION else ()
    meta["input_normalization"] = InputNormConfig(mode=mode, prior=prior).to_dict()
    for p in proto.metadata_props:
        if p.key == METADATA_KEY:
            p.value = json.dumps(meta)
    onnx.save(proto, str(target))
    return target


def _espeak(text: str, path: Path) -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed (apt-get install espeak-ng); the benchmarks synthesise their speech")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "165", "-w", str(path), text], check=True,
                   capture_output=True, timeout=ESPEAK_TIMEOUT_S)
    audio, rate = sf.read(path, dtype="float32")
    assert rate == SPEECH_RATE, f"espeak-ng wrote {rate} Hz"
    return audio


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About a minute of synthetic speech at 22.05 kHz, starting with speech (no leading pause)."""
    out = tmp_path_factory.mktemp("bench-audio")
    one = _espeak(SPEECH_TEXT, out / "one.wav")
    voiced = np.flatnonzero(np.abs(one) > 1e-3)
    one = one[voiced[0]:]
    target = int(SPEECH_SECONDS * SPEECH_RATE)
    audio = np.tile(one, -(-target // len(one)))[:target]
    path = out / "speech.wav"
    sf.write(path, audio, SPEECH_RATE, subtype="PCM_16")
    return path


@pytest.fixture(scope="session")
def speech_16k(speech_wav: Path) -> np.ndarray:
    """The same speech at the model rate (for the per-hop loops, which start after the resampler)."""
    import soxr

    audio, rate = sf.read(speech_wav, dtype="float32")
    return np.asarray(soxr.resample(audio, rate, MODEL_RATE), dtype=np.float32)
