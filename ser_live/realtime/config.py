"""The engine's run-time settings (:class:`EngineConfig`), below the engine so that personal profiles, which cut
enrolment takes as the engine cuts windows, read them without importing the engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ser_live.realtime.errors import UserError
from ser_live.realtime.stages.pipeline import (
    DEFAULT_VAD_AGC,
    DEFAULT_VAD_AGGRESSIVENESS,
    DEFAULT_VAD_NOISE_MARGIN_DB,
    PipelineConfig,
)

if TYPE_CHECKING:  # pragma: no cover
    from ser_live.realtime.model import EmotionModel

DEFAULT_SMOOTHING_ALPHA = 0.5
DEFAULT_SMOOTHING_RESET_S = 2.0


@dataclass(frozen=True)
class EngineConfig:
    """Run-time settings. ``None`` means: take the value the model was trained with (its metadata)."""

    window_s: float | None = None
    hop_s: float | None = None
    min_speech_s: float | None = None
    vad_aggressiveness: int = DEFAULT_VAD_AGGRESSIVENESS
    vad_noise_margin_db: float = DEFAULT_VAD_NOISE_MARGIN_DB
    vad_agc: bool = DEFAULT_VAD_AGC
    smoothing_alpha: float = DEFAULT_SMOOTHING_ALPHA  # 1.0 = no smoothing
    smoothing_reset_s: float = DEFAULT_SMOOTHING_RESET_S
    min_confidence: float | None = None  # None: the model's calibrated threshold (0 when it has none); 0 = off

    def __post_init__(self) -> None:
        if self.min_confidence is not None and not 0.0 <= self.min_confidence <= 1.0:
            raise UserError(
                f"min confidence {self.min_confidence} is out of range: use a probability in [0, 1] (0 = off)"
            )
        if not 0.0 < self.smoothing_alpha <= 1.0:
            raise UserError(f"smoothing {self.smoothing_alpha} is out of range: use a value in (0, 1] (1 = off)")
        if not 0 <= self.vad_aggressiveness <= 3:
            raise UserError(f"VAD aggressiveness {self.vad_aggressiveness} is out of range: use 0, 1, 2 or 3")
        if not self.vad_noise_margin_db >= 0:
            raise UserError(f"VAD noise margin {self.vad_noise_margin_db} dB is out of range: use 0 (off) or more")
        for name in ("window_s", "hop_s", "min_speech_s"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise UserError(f"{name.removesuffix('_s').replace('_', ' ')} must not be negative (got {value})")

    def pipeline_config(self, model: EmotionModel) -> PipelineConfig:
        info = model.info
        window_s = info.window_s if self.window_s is None else self.window_s
        hop_s = info.hop_s if self.hop_s is None else self.hop_s
        min_speech_s = info.min_speech_s if self.min_speech_s is None else self.min_speech_s
        if hop_s <= 0 or window_s <= 0:
            raise UserError(f"window ({window_s} s) and hop ({hop_s} s) must be positive: pass values above 0")
        if hop_s > window_s:
            raise UserError(
                f"hop {hop_s} s is longer than the window {window_s} s (audio would be skipped): "
                "pass a --hop no longer than the window"
            )
        cfg = PipelineConfig(
            preset=info.preset,
            window_s=window_s,
            hop_s=hop_s,
            min_speech_s=min_speech_s,
            vad_aggressiveness=self.vad_aggressiveness,
            vad_noise_margin_db=self.vad_noise_margin_db,
            vad_agc=self.vad_agc,
        )
        if cfg.feature_shape != tuple(info.feature_shape):
            raise UserError(
                f"a {window_s} s window gives features of shape {cfg.feature_shape}, but model {model.name} takes "
                f"{tuple(info.feature_shape)} (trained with {info.window_s} s windows): leave --window unset"
            )
        return cfg
