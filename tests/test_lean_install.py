"""Every command answers --help on the lean install, and a command that needs an extra says which in one line.

Run from a folder that holds its own ``models/``, ``train.py`` and ``realtime.py`` (the generic names ser-live
used to install at the top level): nothing there shadows the package. The same probe runs against the installed
wheel in tests/test_wheel.py.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points, version
from pathlib import Path

import pytest

PROBE = Path(__file__).resolve().parent / "lean_probe.py"
TIMEOUT_S = 120
SHADOWS = {"train.py": "raise SystemExit('the user train.py was imported')\n",
           "realtime.py": "raise SystemExit('the user realtime.py was imported')\n",
           "models/__init__.py": "raise SystemExit('the user models package was imported')\n",
           "models/default.onnx": "not a model\n"}
# a command that needs an extra, with arguments it parses, and the extra it must name
NEEDS_EXTRA = {
    "ser-train": (["--data", "ravdess=/nonexistent"], "train"),
    "ser-export": (["run", "-o", "out.onnx"], "train"),
    "ser-eval": (["m.onnx", "--data", "ravdess=/nonexistent"], "train"),
    "ser-calibrate": (["m.onnx", "--data", "ravdess=/nonexistent", "--speakers", "ravdess:01", "-o", "out.onnx"],
                      "train"),
    "ser-encoder": (["whisper-tiny.en", "-o", "enc.onnx"], "train"),
    "ser-recipe": (["recipe.toml", "--out", "run"], "train"),
    "ser-batch": (["clips", "--out", "out"], "batch"),
}


def user_folder(root: Path) -> Path:
    for name, text in SHADOWS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "clips").mkdir()
    return root


def probe(python: str | Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), str(PROBE), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=TIMEOUT_S, check=False)


def commands() -> list[str]:
    return sorted(e.name for e in entry_points(group="console_scripts") if e.value.startswith("ser_live."))


def test_every_command_is_listed() -> None:
    assert set(NEEDS_EXTRA) < set(commands())
    assert {"ser-live", "ser-serve", "ser-profile", "ser-report"} < set(commands())


@pytest.mark.parametrize("command", commands())
def test_help_works_without_any_extra(command: str, tmp_path: Path) -> None:
    proc = probe(sys.executable, [command, "--help"], user_folder(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(f"usage: {command}") and "Traceback" not in proc.stderr


@pytest.mark.parametrize("command", sorted(NEEDS_EXTRA))
def test_a_command_that_needs_an_extra_says_so_in_one_line(command: str, tmp_path: Path) -> None:
    args, extra = NEEDS_EXTRA[command]
    proc = probe(sys.executable, [command, *args], user_folder(tmp_path))
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{command}: error: "), proc.stderr[-2000:]
    assert f"pip install 'ser-live[{extra}]'" in lines[0]


def test_the_api_works_beside_a_users_own_models_folder(tmp_path: Path) -> None:
    proc = probe(sys.executable, ["--api"], user_folder(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    words = proc.stdout.split()
    assert words[:3] == ["api", "ok", version("ser-live")]
    assert not Path(words[-1]).resolve().is_relative_to(tmp_path.resolve())
