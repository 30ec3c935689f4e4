"""The layers of ser_live are a contract: import-linter checks .importlinter (faces > tools > train > export >
runtime > stages and sources > core; the runtime never imports the heavy libraries) on every test run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / ".importlinter"
TIMEOUT_S = 300


def lint_imports() -> str:
    found = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert found, "lint-imports is missing: pip install -e '.[dev]' (import-linter)"
    return found


def test_the_import_contracts_hold() -> None:
    proc = subprocess.run([lint_imports(), "--config", str(CONFIG)], cwd=ROOT, capture_output=True, text=True,
                          timeout=TIMEOUT_S, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "Contracts: 2 kept, 0 broken." in proc.stdout


def test_the_contract_sees_an_upward_import(tmp_path: Path) -> None:
    """Guard against a vacuous check: the same contract fails on a copy of the package with one upward import."""
    copy = tmp_path / "ser_live"
    shutil.copytree(ROOT / "ser_live", copy, ignore=shutil.ignore_patterns("__pycache__", "*.onnx", "*.wav", "*.png"))
    engine = copy / "realtime" / "engine.py"
    engine.write_text(engine.read_text() + "\nfrom ser_live.realtime.faces import dashboard  # noqa\n")
    proc = subprocess.run([lint_imports(), "--config", str(CONFIG)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=TIMEOUT_S, check=False, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert proc.returncode != 0
    assert "ser_live.realtime.engine is not allowed to import ser_live.realtime.faces" in proc.stdout
