"""The runtime never imports TensorFlow, Keras, tf2onnx, librosa, scipy, numba, matplotlib or (outside capture)
sounddevice.

Checked in a fresh interpreter, after importing every runtime module a user touches *and* running a clip through
the engine, a file through ``ser-live --file --fast --jsonl``, so lazy imports on the hot path are caught too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from tests.tiny_model import make_tiny_model

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = ("tensorflow", "keras", "tf2onnx", "librosa", "scipy", "numba", "sounddevice", "matplotlib", "ray",
             "pyarrow")
RUNTIME_MODULES = ("ser_live", "ser_live.realtime", "ser_live.realtime.engine", "ser_live.realtime.api",
                   "ser_live.realtime.faces.cli", "ser_live.realtime.faces.dashboard",
                   "ser_live.realtime.sources.capture")
SAMPLE_RATE = 22050
TIMEOUT_S = 60

CHILD = """
import contextlib, io, json, sys
import numpy as np
for name in {modules!r}:
    __import__(name)
from ser_live import EmotionRecognizer
from ser_live.realtime.faces.cli import main
rec = EmotionRecognizer({model!r}, provider="cpu")
t = np.arange(3 * 16000) / 16000
voiced = (0.4 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
rec.predict(voiced, 16000)
with contextlib.redirect_stdout(io.StringIO()):
    code = main(["--file", {wav!r}, "--fast", "--jsonl", "-", "--no-dashboard", "--model", {model!r}])
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set({forbidden!r}))
print(json.dumps({{"code": code, "loaded": loaded}}))
"""


def test_runtime_path_imports_no_training_or_heavy_libraries(tmp_path: Path) -> None:
    model = make_tiny_model(tmp_path / "tiny.onnx")
    wav = tmp_path / "tone.wav"
    t = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    sf.write(wav, 0.3 * np.sin(2 * np.pi * 200 * t), SAMPLE_RATE)
    code = CHILD.format(modules=RUNTIME_MODULES, model=str(model), wav=str(wav), forbidden=FORBIDDEN)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=TIMEOUT_S, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["code"] == 0
    assert result["loaded"] == [], f"the runtime imported {result['loaded']}"


def test_the_check_itself_sees_a_forbidden_import(tmp_path: Path) -> None:
    """Guard against a vacuous check: the same probe reports a module when it is imported."""
    probe = ("import sys, json, types\n"
             "sys.modules['scipy.signal'] = types.ModuleType('scipy.signal')  # as an import of scipy would leave it\n"
             f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({FORBIDDEN!r}))))")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                          timeout=TIMEOUT_S, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "scipy" in json.loads(proc.stdout)
