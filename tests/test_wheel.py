"""The wheel carries everything, and the runtime works from it on the oldest and newest supported Pythons.

``.ci/run`` builds ``dist/ser_live-*.whl`` and installs it (not editable) into fresh venvs outside the checkout,
``$TMPDIR/ser-live-venvs-<sha1 of the checkout path>/py3.10``, ``py3.11`` and ``py3.13``; a Python it cannot find
is written to ``pyX.Y.missing`` there and fails here by name, never skipped. Each venv then runs
``ser-live --demo`` and a synthesised clip from a folder outside the checkout, and the oldest and newest run the
runtime tests (engine, API, CLI, bad input, no-TensorFlow import, model loader, audio, input normalisation,
dependencies) against the installed package.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

import pytest

from tests.audio_fixtures import SHORT_TEXT, espeak_wav

ROOT = Path(__file__).resolve().parents[1]
# outside the checkout, named after it (.ci/run: ${TMPDIR:-/tmp}/ser-live-venvs-<sha1 of the checkout path>)
VENVS = Path(tempfile.gettempdir()) / f"ser-live-venvs-{hashlib.sha1(str(ROOT).encode()).hexdigest()[:8]}"
DIST = ROOT / "dist"
PYTHONS = ("3.10", "3.11", "3.13")
OLDEST_AND_NEWEST = ("3.10", "3.13")
RUNTIME_TESTS = ("test_engine.py", "test_api.py", "test_cli_live.py", "test_bad_input.py", "test_no_tf_import.py",
                 "test_runtime_deps.py", "test_audio.py", "test_model_loader.py", "test_normalize.py",
                 "test_enroll.py")
TRAINING_ONLY = "not training_sessions"  # test_normalize's one test of the training path needs the train package
PACKAGE_DATA = ("ser_live/models/default.onnx", "ser_live/models/default.encoder.onnx", "ser_live/models/small.onnx",
                "ser_live/models/README.md", "ser_live/models/demo.wav", "ser_live/realtime/faces/web/index.html")
TIMEOUT_S = 300
MIN_RUNTIME_TESTS = 100
HINT = "run `bash .ci/run` first: it builds the wheel and installs it into fresh venvs"


def wheel() -> Path:
    found = sorted(DIST.glob("ser_live-*.whl"))
    if not found:
        pytest.fail(f"no wheel in {DIST}: {HINT}")
    return found[-1]


def venv_python(version: str) -> Path:
    missing = VENVS / f"py{version}.missing"
    if missing.exists():
        pytest.fail(f"Python {version} is not on this machine ({missing.read_text().strip()}): install it (pyenv)")
    python = VENVS / f"py{version}" / "bin" / "python"
    if not python.exists():
        pytest.fail(f"no venv for Python {version} at {python.parent.parent}: {HINT}")
    return python


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)


def test_the_wheel_carries_the_models_the_card_the_demo_and_every_runtime_module() -> None:
    with zipfile.ZipFile(wheel()) as whl:
        names = set(whl.namelist())
    assert set(PACKAGE_DATA) <= names
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"ser_live"}, f"the wheel installs more than one top-level name: {sorted(top)}"
    package = ROOT / "ser_live"
    runtime = {f"ser_live/{p.relative_to(package).as_posix()}" for p in package.rglob("*.py")}
    assert runtime <= names, sorted(runtime - names)
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    with zipfile.ZipFile(wheel()) as whl:
        text = whl.read(metadata).decode()
    base = [line for line in text.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert base and not any(re.search(r"librosa|scipy|numba|scikit|tensorflow", line) for line in base), base


@pytest.mark.parametrize("version", PYTHONS)
def test_the_installed_package_is_the_wheel_not_the_checkout(version: str, tmp_path: Path) -> None:
    python = venv_python(version)
    probe = ("import sys, ser_live, importlib.resources as r; "
             "print(sys.version.split()[0]); print(ser_live.__file__); "
             "print(r.files('ser_live.models') / 'default.onnx')")
    proc = run([str(python), "-c", probe], tmp_path)
    assert proc.returncode == 0, proc.stderr
    got_version, module, model = proc.stdout.split()
    assert got_version.startswith(version + ".")
    site = python.parent.parent.resolve()
    assert Path(module).resolve().is_relative_to(site) and Path(model).resolve().is_relative_to(site)
    assert not Path(module).resolve().is_relative_to(ROOT / "ser_live")


@pytest.mark.parametrize("version", PYTHONS)
def test_demo_and_a_synthesised_clip_run_from_any_folder(version: str, tmp_path: Path) -> None:
    ser_live = str(venv_python(version).parent / "ser-live")
    demo = run([ser_live, "--demo", "--fast", "--no-dashboard"], tmp_path)
    assert demo.returncode == 0, demo.stderr
    assert "session:" in demo.stdout and "windows" in demo.stdout
    clip = espeak_wav(tmp_path / "clip.wav", SHORT_TEXT)
    proc = run([ser_live, "--file", str(clip), "--fast", "--no-dashboard", "--jsonl", "-"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert rows[-1]["type"] == "summary" and rows[-1]["windows"] == len(rows) - 1 > 0


@pytest.mark.parametrize("version", OLDEST_AND_NEWEST)
def test_the_runtime_tests_pass_against_the_installed_wheel(version: str, tmp_path: Path) -> None:
    python = venv_python(version)
    copy = tmp_path / "tests"
    shutil.copytree(ROOT / "tests", copy, ignore=shutil.ignore_patterns("benchmarks", "__pycache__"))
    proc = run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", TRAINING_ONLY,
                *(f"tests/{name}" for name in RUNTIME_TESTS)], tmp_path)
    tail = proc.stdout[-3000:]
    assert proc.returncode == 0, tail
    passed = re.search(r"(\d+) passed", tail)
    assert passed and int(passed.group(1)) >= MIN_RUNTIME_TESTS and "failed" not in tail, tail


@pytest.mark.parametrize("version", OLDEST_AND_NEWEST)
def test_the_installed_wheel_answers_every_help_and_the_api_beside_a_users_models_folder(version: str,
                                                                                         tmp_path: Path) -> None:
    from tests.test_lean_install import commands, probe, user_folder

    python = venv_python(version)
    folder = user_folder(tmp_path)
    api = probe(python, ["--api"], folder)
    assert api.returncode == 0, api.stderr[-2000:]
    assert Path(api.stdout.split()[-1]).resolve().is_relative_to(python.parent.parent.resolve())
    for command in commands():
        proc = probe(python, [command, "--help"], folder)
        assert proc.returncode == 0 and proc.stdout.startswith(f"usage: {command}"), (command, proc.stderr[-1500:])
