"""ser-live: real-time speech-emotion recognition (microphone or file -> VAD -> ONNX Runtime -> events).

The public API, imported lazily so that ``import ser_live`` stays cheap (no ONNX Runtime until a name is used)::

    from ser_live import EmotionRecognizer
    recognizer = EmotionRecognizer()            # the bundled model
    print(recognizer.predict_file("clip.wav").label)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

if TYPE_CHECKING:  # pragma: no cover  (the names __getattr__ returns, for type checkers)
    from ser_live.realtime.api import EmotionRecognizer as EmotionRecognizer
    from ser_live.realtime.api import Prediction as Prediction
    from ser_live.realtime.config import EngineConfig as EngineConfig
    from ser_live.realtime.deployment import DeploymentStats as DeploymentStats
    from ser_live.realtime.engine import Engine as Engine
    from ser_live.realtime.errors import UserError as UserError
    from ser_live.realtime.events import SessionSummary as SessionSummary
    from ser_live.realtime.events import WindowEvent as WindowEvent
    from ser_live.realtime.profile import Profile as Profile

# public name -> the module that defines it
_EXPORTS = {
    "EmotionRecognizer": "ser_live.realtime.api",
    "Prediction": "ser_live.realtime.api",
    "Engine": "ser_live.realtime.engine",
    "EngineConfig": "ser_live.realtime.config",
    "WindowEvent": "ser_live.realtime.events",
    "SessionSummary": "ser_live.realtime.events",
    "Profile": "ser_live.realtime.profile",
    "DeploymentStats": "ser_live.realtime.deployment",
    "UserError": "ser_live.realtime.errors",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ser_live' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
