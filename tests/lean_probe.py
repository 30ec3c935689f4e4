"""Run one ser-live command as a lean install would (the extras' modules blocked), from whatever folder is current.

``python tests/lean_probe.py COMMAND ARGS...`` (or with ``--api``: the Python API on a synthetic tone) blocks every
module that only an extra provides, then calls the console script's entry point as installed. The test that uses it
runs it from a folder holding its own ``models/``, ``train.py`` and ``realtime.py``.
"""

from __future__ import annotations

import sys

# modules that only the extras (train, batch, cluster, report, serve, dev) bring
EXTRA_MODULES = ("tensorflow", "keras", "tf2onnx", "onnx", "librosa", "scipy", "audiomentations", "fast_mp3_augment",
                 "matplotlib", "pyarrow", "ray", "websockets", "sklearn", "ctranslate2", "numba", "tomli")


def main(argv: list[str]) -> int:
    for name in EXTRA_MODULES:
        sys.modules[name] = None  # type: ignore[assignment]  # an import of it now fails as a missing module would
    if argv[0] == "--api":
        import numpy as np

        import ser_live

        assert "onnxruntime" not in sys.modules, "import ser_live loaded ONNX Runtime"
        t = np.arange(16000 * 2) / 16000
        tone = (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
        result = ser_live.EmotionRecognizer(provider="cpu").predict(tone, 16000)
        print(f"api ok {ser_live.__version__} {result.label} {ser_live.__file__}")
        return 0
    from importlib.metadata import entry_points

    scripts = {e.name: e for e in entry_points(group="console_scripts") if e.value.startswith("ser_live.")}
    sys.argv = list(argv)
    return int(scripts[argv[0]].load()(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
