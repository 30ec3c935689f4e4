"""ser-live runtime: streaming speech-emotion recognition with ONNX Runtime (no TensorFlow here)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from realtime.api import EmotionRecognizer

__all__ = ["EmotionRecognizer", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy so that ``import realtime`` stays cheap and side-effect free.
    if name == "EmotionRecognizer":
        from realtime.api import EmotionRecognizer

        return EmotionRecognizer
    raise AttributeError(f"module 'realtime' has no attribute {name!r}")
