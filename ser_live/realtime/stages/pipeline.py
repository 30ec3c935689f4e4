"""Audio -> speech-gated windows -> features: the path shared by training and live use.

``FeaturePipeline`` composes the device-free stages (resample, VAD, windows, streaming frame features). Training
cuts its examples with it (one clip at a time, ``reset()`` between clips), and the live engine puts a model and a
smoother behind it, so a model sees the same windows, padding and features on a microphone as in training.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ser_live.realtime.errors import UserError
from ser_live.realtime.stages.encoder import EncoderFeatures, EncoderSpec, SessionNormalizer
from ser_live.realtime.stages.features import FeaturePreset, FrameFeatures
from ser_live.realtime.stages.normalize import InputNormalizer, InputNormConfig
from ser_live.realtime.stages.resample import Resampler
from ser_live.realtime.stages.vad import (
    DEFAULT_AGC,
    DEFAULT_NOISE_MARGIN_DB,
    DEFAULT_NOISE_WINDOW_S,
    SpeechGate,
    VadConfig,
)
from ser_live.realtime.stages.windows import Window, WindowConfig, Windower, round_to_multiple

logger = logging.getLogger(__name__)

DEFAULT_WINDOW_S = 2.0
DEFAULT_HOP_S = 0.5
DEFAULT_MIN_SPEECH_S = 0.5
DEFAULT_VAD_AGGRESSIVENESS = 2
DEFAULT_VAD_FRAME_MS = 30
DEFAULT_VAD_PAD_MS = 150
DEFAULT_VAD_HANGOVER_MS = 300
DEFAULT_VAD_NOISE_MARGIN_DB = DEFAULT_NOISE_MARGIN_DB
DEFAULT_VAD_AGC = DEFAULT_AGC
FALLBACK_MIN_SPEECH_S = 0.3
"""A stream none of whose windows held ``min_speech_s`` of speech still gets one verdict, from its window with the
most speech, when that window holds at least this much (a short clip, a quiet but clear one): :meth:`fallback`."""
CHUNK_HOPS = 8  # hops of new audio featurised per call (live blocks are far shorter: one call each)
# Frames kept beyond one window, so a late reader still finds its window's frames.
SPARE_FRAMES = 64
LEVEL_FLOOR_DB = -100.0


@dataclass(frozen=True)
class PipelineConfig:
    """Everything that decides which windows are cut and what features they get."""

    preset: FeaturePreset
    window_s: float = DEFAULT_WINDOW_S
    hop_s: float = DEFAULT_HOP_S
    min_speech_s: float = DEFAULT_MIN_SPEECH_S
    vad_aggressiveness: int = DEFAULT_VAD_AGGRESSIVENESS
    vad_frame_ms: int = DEFAULT_VAD_FRAME_MS
    vad_pad_ms: int = DEFAULT_VAD_PAD_MS
    vad_hangover_ms: int = DEFAULT_VAD_HANGOVER_MS
    vad_noise_margin_db: float = DEFAULT_VAD_NOISE_MARGIN_DB
    vad_noise_window_s: float = DEFAULT_NOISE_WINDOW_S
    vad_agc: bool = DEFAULT_AGC

    @property
    def sample_rate(self) -> int:
        return self.preset.sample_rate

    @property
    def window_samples(self) -> int:
        return round_to_multiple(self.window_s, self.sample_rate, self.preset.hop_length)

    @property
    def hop_samples(self) -> int:
        return round_to_multiple(self.hop_s, self.sample_rate, self.preset.hop_length)

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return self.preset.feature_shape(self.window_samples)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in config.json and model metadata (window and hop as actually used)."""
        return {
            "preset": self.preset.to_dict(),
            "sample_rate": self.sample_rate,
            "window_s": self.window_samples / self.sample_rate,
            "hop_s": self.hop_samples / self.sample_rate,
            "min_speech_s": self.min_speech_s,
            "vad": {
                "aggressiveness": self.vad_aggressiveness,
                "frame_ms": self.vad_frame_ms,
                "pad_ms": self.vad_pad_ms,
                "hangover_ms": self.vad_hangover_ms,
                "noise_margin_db": self.vad_noise_margin_db,
                "noise_window_s": self.vad_noise_window_s,
                "agc": self.vad_agc,
            },
            "feature_shape": list(self.feature_shape),
        }


@dataclass(frozen=True)
class WindowFeatures:
    """A window the pipeline cut; ``features`` is None when the window holds too little speech to classify."""

    window: Window
    features: np.ndarray | None
    features_ms: float = 0.0


@dataclass
class PipelineState:
    """What a dashboard shows between windows."""

    level_dbfs: float = LEVEL_FLOOR_DB
    is_speech: bool = False
    samples_in: int = 0  # at the model rate
    speech_samples: int = 0  # decided as speech by the VAD (with padding and hangover)
    extra: dict[str, Any] = field(default_factory=dict)


def speech_gate(config: PipelineConfig) -> SpeechGate:
    return SpeechGate(
        VadConfig(
            sample_rate=config.sample_rate,
            frame_ms=config.vad_frame_ms,
            aggressiveness=config.vad_aggressiveness,
            pad_ms=config.vad_pad_ms,
            hangover_ms=config.vad_hangover_ms,
            noise_margin_db=config.vad_noise_margin_db,
            noise_window_s=config.vad_noise_window_s,
            agc=config.vad_agc,
        )
    )


def windower(config: PipelineConfig) -> Windower:
    return Windower(WindowConfig(sample_rate=config.sample_rate, window_samples=config.window_samples,
                                 hop_samples=config.hop_samples, min_speech_s=config.min_speech_s))


def cut_windows(config: PipelineConfig, samples: np.ndarray) -> list[Window]:
    """A whole clip (at the model rate) -> the windows a pipeline cuts from it (classified or not) and, when none is
    classified, its fallback window marked classified (as :meth:`FeaturePipeline.fallback` picks it). For training
    sets whose features come from elsewhere (cached encoder frames): the same windows as the live path."""
    gate, cutter = speech_gate(config), windower(config)
    decided, flags = gate.process(np.asarray(samples, np.float32))
    tail, tail_flags = gate.flush()
    windows = cutter.process(decided, flags) + cutter.process(tail, tail_flags) + cutter.flush()
    if not any(w.classify for w in windows):
        best = max(windows, key=lambda w: w.speech_s, default=None)
        if best is not None and best.speech_s >= FALLBACK_MIN_SPEECH_S:
            windows = [dataclasses.replace(w, classify=True) if w is best else w for w in windows]
    return windows


class FeaturePipeline:
    """``process(block) -> list[WindowFeatures]``; ``flush()`` at the end of a stream; ``reset()`` between streams.

    ``input_norm`` (log-mel presets only) puts the :class:`realtime.stages.normalize.InputNormalizer` stage after the
    features; training leaves it off here and applies the same stage over a speaker's clips as one session.
    """

    def __init__(self, config: PipelineConfig, input_rate: int, input_norm: InputNormConfig | None = None,
                 encoder: EncoderSpec | None = None) -> None:
        self.config = config
        self.input_rate = int(input_rate)
        sr = config.sample_rate
        window, hop = config.window_samples, config.hop_samples
        self._resampler = Resampler(self.input_rate, sr)
        self._gate = speech_gate(config)
        self._windower = windower(config)
        # room for a window plus CHUNK_HOPS hops of new frames: long blocks (files) are featurised CHUNK_HOPS hops at a
        # time -- one STFT for all their frames -- and every window ending in a chunk still finds its frames
        self._encoder: EncoderFeatures | None = None
        self._waiting: list[Window] = []  # cut windows whose encoder frames are not all done yet
        self._session_norm: SessionNormalizer | None = None
        if config.preset.kind == "encoder":
            if encoder is None:
                raise UserError(f"preset {config.preset.name!r} needs its frame encoder: load the model with "
                                "load_model, which opens both of its graphs")
            # the encoder takes the audio before the speech gate, whose look-ahead keeps it ahead of the windows
            self._encoder = EncoderFeatures(encoder, keep_frames=(window + CHUNK_HOPS * hop) // 320 + SPARE_FRAMES
                                            + 2 * encoder.chunk)
            if encoder.session_norm is not None:
                self._session_norm = SessionNormalizer(encoder.session_norm)
        else:
            capacity = config.preset.n_frames(window) + CHUNK_HOPS * hop // config.preset.hop_length + SPARE_FRAMES
            self._frames = FrameFeatures(config.preset, lead_in=window - hop, capacity_frames=capacity)
        self._normalizer: InputNormalizer | None = None
        if input_norm is not None and input_norm.enabled:
            if config.preset.kind != "frames":
                raise UserError(
                    f"input normalisation {input_norm.mode!r} needs a log-mel (frames) preset, not "
                    f"{config.preset.name!r}: use --input-norm none with this preset"
                )
            self._normalizer = InputNormalizer(input_norm, config.preset.n_mels, hop / sr, config.preset.floor_db)
        self.state = PipelineState()
        self._any_classified = False
        self._fallback: tuple[Window, np.ndarray] | None = None

    def reset(self) -> None:
        self._resampler.reset()
        self._gate.reset()
        self._windower.reset()
        self._waiting = []
        if self._encoder is not None:
            self._encoder.reset()
        else:
            self._frames.reset()
        if self._session_norm is not None:
            self._session_norm.reset()
        if self._normalizer is not None:
            self._normalizer.reset()
        self.state = PipelineState()
        self._any_classified = False
        self._fallback = None

    def process(self, block: np.ndarray) -> list[WindowFeatures]:
        samples = self._resampler.process(block)
        self._update_level(samples)
        return self._advance(samples, final=False)

    def flush(self) -> list[WindowFeatures]:
        """Decide everything still pending; zero-pad to the next hop boundary, as the windower does."""
        out = self._advance(self._resampler.flush(), final=True)
        return out

    def _update_level(self, samples: np.ndarray) -> None:
        self.state.samples_in += len(samples)
        if len(samples):
            rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
            self.state.level_dbfs = max(LEVEL_FLOOR_DB, 20.0 * np.log10(max(rms, 1e-12)))

    def _advance(self, samples: np.ndarray, final: bool) -> list[WindowFeatures]:
        if self._encoder is not None:
            return self._advance_encoder(samples, final)
        decided, flags = self._gate.process(samples)
        if final:
            tail, tail_flags = self._gate.flush()
            decided = np.concatenate([decided, tail])
            flags = np.concatenate([flags, tail_flags])
        self.state.is_speech = bool(self._gate.is_speech)
        self.state.speech_samples += int(np.count_nonzero(flags))
        out: list[WindowFeatures] = []
        # At most CHUNK_HOPS hops at a time, so a window is featurised before its frames leave the frame cache.
        hop = self.config.hop_samples
        step = hop * CHUNK_HOPS
        for i in range(0, len(decided), step):
            piece = decided[i : i + step]
            self._frames.process(piece)
            out += [self._featurise(w) for w in self._windower.process(piece, flags[i : i + step])]
        if final:
            pad = (-self._frames.position) % hop
            if pad:
                self._frames.process(np.zeros(pad, dtype=np.float32))
            out += [self._featurise(w) for w in self._windower.flush()]
        return out

    def _advance_encoder(self, samples: np.ndarray, final: bool) -> list[WindowFeatures]:
        """The encoder kind: the frames come from the audio before the gate (each computed once), the windows from
        the gated audio; a window is pooled once its frames are done (the gate's look-ahead covers the encoder's).
        Long spans go CHUNK_HOPS hops at a time, so a window is pooled before its frames leave the encoder's store."""
        assert self._encoder is not None
        out: list[WindowFeatures] = []
        step = self.config.hop_samples * CHUNK_HOPS
        for i in range(0, len(samples), step):
            piece = samples[i : i + step]
            self._encoder.process(piece)
            self._cut(*self._gate.process(piece))
            out += self._ready_windows()
        if final:
            self._encoder.finish()
            self._cut(*self._gate.flush())
            self._waiting += self._windower.flush()
            out += self._ready_windows()
        return out

    def _cut(self, decided: np.ndarray, flags: np.ndarray) -> None:
        self.state.is_speech = bool(self._gate.is_speech)
        self.state.speech_samples += int(np.count_nonzero(flags))
        self._waiting += self._windower.process(decided, flags)

    def _ready_windows(self) -> list[WindowFeatures]:
        assert self._encoder is not None
        out = []
        while self._waiting and self._encoder.ready(self._waiting[0].end):  # in order, each once its frames are done
            out.append(self._featurise(self._waiting.pop(0)))
        return out

    def _window_features(self, window: Window) -> np.ndarray:
        if self._encoder is not None:
            return self._encoder.window(window.start, window.end)
        return self._frames.window(window.start, window.end)

    def _featurise(self, window: Window) -> WindowFeatures:
        if not window.classify:
            if not self._any_classified and window.speech_s >= FALLBACK_MIN_SPEECH_S and (
                self._fallback is None or window.speech_s > self._fallback[0].speech_s
            ):  # the best candidate so far for a stream that may never have a classified window
                self._fallback = (window, self._window_features(window))
            return WindowFeatures(window, None)
        self._any_classified = True
        self._fallback = None
        t0 = time.perf_counter()
        features = self._window_features(window)
        if self._normalizer is not None:
            features = self._normalizer.process(features)
        if self._session_norm is not None:
            features = self._session_norm.process(features)
        return WindowFeatures(window, features, (time.perf_counter() - t0) * 1000.0)

    def fallback(self) -> WindowFeatures | None:
        """After ``flush()``: when no window of the stream was classified, its window with the most speech (at least
        :data:`FALLBACK_MIN_SPEECH_S`), featurised as a classified one; else None. Call it once per stream."""
        if self._any_classified or self._fallback is None:
            return None
        window, frames = self._fallback
        self._fallback = None
        t0 = time.perf_counter()
        features = frames if self._normalizer is None else self._normalizer.process(frames)
        if self._session_norm is not None:
            features = self._session_norm.process(features)
        return WindowFeatures(dataclasses.replace(window, classify=True), features,
                              (time.perf_counter() - t0) * 1000.0)

    def run(self, samples: np.ndarray, block: int | None = None) -> list[WindowFeatures]:
        """A whole clip through the streaming path (``reset()`` first, ``flush()`` last)."""
        self.reset()
        step = len(samples) if block is None else block
        out: list[WindowFeatures] = []
        for i in range(0, max(len(samples), 1), max(step, 1)):
            out += self.process(samples[i : i + step])
        out += self.flush()
        return out
