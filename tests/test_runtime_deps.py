"""The runtime's dependencies are what the runtime imports: every third-party module that a ``realtime/`` module
imports (at the top or inside a function) comes from a distribution in ser-live's *base* requirements.

librosa, scipy, numba, scikit-learn, TensorFlow and matplotlib belong to extras (train, dev): a plain
``pip install ser-live`` must not need them, and this check fails the day a runtime module starts to.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

import ser_live.realtime

RUNTIME = Path(ser_live.realtime.__file__).resolve().parent  # the checkout's, or the installed wheel's
PROJECT = "ser-live"
EXTRA_MARKER = re.compile(r"extra\s*==")
HEAVY = ("librosa", "scipy", "numba", "scikit-learn", "tensorflow-cpu", "tensorflow", "matplotlib", "keras")
# the project's own package (the bundled models are its package data; ``ser_live.report`` is imported only for
# ``ser-live --report``, which checks for its extra, matplotlib, first)
OWN_PACKAGES = {"ser_live"}
# runtime features behind an extra: the one module that imports each, and the extra that provides it. That module
# imports it inside functions only and says which extra to install when it is missing.
OPTIONAL = {"websockets": ("faces/serve.py", "serve")}


def _name(requirement: str) -> str:
    return re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def base_requirements() -> set[str]:
    requires = metadata.requires(PROJECT) or []
    return {_name(r) for r in requires if not EXTRA_MARKER.search(r)}


def extra_requirements(extra: str) -> set[str]:
    requires = metadata.requires(PROJECT) or []
    marker = re.compile(rf"extra\s*==\s*[\"']{re.escape(extra)}[\"']")
    return {_name(r) for r in requires if marker.search(r)}


def top_level_imports(path: Path) -> set[str]:
    """Modules imported at module level (not inside a function) by ``path``."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def imported_top_level(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def third_party_imports() -> dict[str, set[str]]:
    """Top-level module -> the runtime files that import it (stdlib and the project's own packages left out)."""
    found: dict[str, set[str]] = {}
    files = sorted(RUNTIME.rglob("*.py"))  # the package and its subpackages (stages, sources, faces)
    assert len(files) >= len(("api", "cli", "engine", "features", "model", "pipeline", "vad")), RUNTIME
    for path in files:
        for name in imported_top_level(path) - set(sys.stdlib_module_names) - OWN_PACKAGES - {"__future__"}:
            found.setdefault(name, set()).add(str(path.relative_to(RUNTIME)))
    return found


def module_providers() -> dict[str, set[str]]:
    """Top-level module -> distributions, from each distribution's file list (works where Python 3.10's
    ``packages_distributions`` misses wheels without ``top_level.txt``, such as numpy's)."""
    providers: dict[str, set[str]] = {}
    for dist in metadata.distributions():
        name = _name(dist.metadata["Name"] or "")
        for file in dist.files or []:
            top = file.parts[0] if file.parts else ""
            if not top or top.endswith((".dist-info", ".egg-info", ".data")) or top in ("..", "__pycache__"):
                continue
            providers.setdefault(top.removesuffix(".py").split(".")[0], set()).add(name)
    for module, dists in metadata.packages_distributions().items():  # editable installs, top_level.txt
        providers.setdefault(module, set()).update(_name(d) for d in dists)
    return providers


def test_every_runtime_import_is_a_base_requirement() -> None:
    base = base_requirements()
    providers = module_providers()
    missing = {}
    for module, files in third_party_imports().items():
        if module in OPTIONAL:
            owner, extra = OPTIONAL[module]
            assert sorted(files) == [owner], f"{module} is imported outside {owner}: {sorted(files)}"
            assert module not in top_level_imports(RUNTIME / owner), f"{owner} imports {module} at module level"
            assert module in extra_requirements(extra), f"{module} is not in the [{extra}] extra"
            continue
        dists = {d.lower().replace("_", "-") for d in providers.get(module, [])}
        assert dists, f"{module} (imported by {sorted(files)}) belongs to no installed distribution"
        if not dists & base:
            missing[module] = (sorted(dists), sorted(files))
    assert not missing, f"runtime modules import packages outside the base requirements: {missing}"


def test_the_base_requirements_hold_no_training_or_report_library() -> None:
    base = base_requirements()
    assert base, "ser-live's metadata lists no requirements: is the project installed (pip install -e .)?"
    assert not base & set(HEAVY), f"heavy packages in the base install: {sorted(base & set(HEAVY))}"
    assert {"numpy", "onnxruntime", "soundfile", "soxr", "webrtcvad-wheels", "rich", "sounddevice"} <= base


def test_the_check_sees_an_import_outside_the_base(tmp_path: Path) -> None:
    """Guard against a vacuous check: a module importing scipy is reported."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    import scipy.signal\n    from librosa import feature\n")
    assert imported_top_level(probe) == {"scipy", "librosa"}
    assert not {"scipy", "librosa"} & base_requirements()
