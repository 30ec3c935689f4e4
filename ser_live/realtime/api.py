"""The Python API: ``from realtime import EmotionRecognizer``.

Every method sends audio through the same streaming :class:`ser_live.realtime.engine.Engine` the microphone uses.

>>> rec = EmotionRecognizer()                       # the bundled model, CPU or CUDA
>>> result = rec.predict_file("talk.wav")
>>> result.label, result.probs["happy"]
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ser_live.realtime.config import EngineConfig
from ser_live.realtime.deployment import DeploymentStats, load_deployment
from ser_live.realtime.engine import OFFLINE_SPAN_S, Engine
from ser_live.realtime.errors import UserError
from ser_live.realtime.events import WindowEvent
from ser_live.realtime.model import DEFAULT_PROVIDER, DEFAULT_THREADS, EmotionModel, load_model
from ser_live.realtime.profile import Profile, load_profile
from ser_live.realtime.sources.audio import audio_info, iter_audio_blocks

logger = logging.getLogger(__name__)

DEFAULT_BLOCK_S = 0.1


@dataclass(frozen=True)
class Prediction:
    """A clip's emotion: the mean of its speech windows' (unsmoothed) probabilities, and the arousal and valence
    (each in [-1, 1]) of that mean, or the mean of the windows' own values for a model with a trained affect head
    (None when the model's labels have no mapping: ``ser_live.realtime.stages.affect``).

    ``label`` is None and ``probs`` empty when the clip holds no window with enough speech. ``uncertain``: the
    label's mean probability is below the model's uncertain threshold (as a window's ``uncertain``): show
    "uncertain" rather than the label.
    """

    label: str | None
    probs: dict[str, float]
    windows: list[WindowEvent] = field(default_factory=list)
    arousal: float | None = None
    valence: float | None = None
    uncertain: bool = False

    @property
    def confidence(self) -> float:
        return self.probs[self.label] if self.label is not None else 0.0

    @property
    def speech_detected(self) -> bool:
        return self.label is not None


class EmotionRecognizer:
    """Speech-emotion recognition on clips and streams.

    ``model``: path to a ser-live ONNX file, an already loaded :class:`EmotionModel`, or None for the bundled one.
    ``provider``: "auto" (CUDA when available, else CPU), "cpu" or "cuda". ``threads``: ONNX Runtime threads.
    ``deployment``: deployment statistics (path or :class:`ser_live.realtime.deployment.DeploymentStats`, made by
    ``ser-stats`` for this model file from recordings of where it is used) as the session normaliser's prior.
    ``profile``: a personal profile (path or :class:`realtime.profile.Profile`, made by ``ser-live --enroll`` or
    ``ser-profile fit`` for this model file) whose re-fitted last layer replaces the model's.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | EmotionModel | None = None,
        provider: str = DEFAULT_PROVIDER,
        threads: int = DEFAULT_THREADS,
        config: EngineConfig | None = None,
        profile: str | os.PathLike[str] | Profile | None = None,
        deployment: str | os.PathLike[str] | DeploymentStats | None = None,
    ) -> None:
        self.model = model if isinstance(model, EmotionModel) else load_model(model, provider=provider, threads=threads)
        if deployment is not None:
            stats = deployment if isinstance(deployment, DeploymentStats) else load_deployment(deployment)
            self.model = stats.apply(self.model)
        if profile is not None:
            self.model = self.model.with_profile(profile if isinstance(profile, Profile) else load_profile(profile))
        self.config = config or EngineConfig()
        self.config.pipeline_config(self.model)  # validate once, early

    @property
    def labels(self) -> tuple[str, ...]:
        return self.model.labels

    @property
    def profile(self) -> Profile | None:
        return self.model.profile

    @property
    def sample_rate(self) -> int:
        return self.model.info.sample_rate

    def engine(self, sample_rate: int) -> Engine:
        """A fresh streaming engine for audio at ``sample_rate``."""
        if not isinstance(sample_rate, int | np.integer) or sample_rate <= 0:
            raise UserError(f"sample_rate must be a positive integer number of Hz (got {sample_rate!r})")
        return Engine(self.model, int(sample_rate), self.config)

    def stream(self, chunks: Iterable[np.ndarray], sample_rate: int) -> Iterator[WindowEvent]:
        """Yield window events as chunks arrive (any size, mono (n,) or (n, channels))."""
        engine = self.engine(sample_rate)
        for chunk in chunks:
            yield from engine.feed(chunk)
        yield from engine.flush()

    def predict(self, samples: np.ndarray, sample_rate: int, block_s: float = DEFAULT_BLOCK_S,
                streaming: bool = False) -> Prediction:
        """The emotion of a whole clip. All of it is at hand, so it goes through the whole-signal path
        (:meth:`ser_live.realtime.engine.Engine.iter_batched` over long spans: the same windows and verdicts, the model
        called on many windows at once); ``streaming=True`` sends it through the live path in ``block_s`` blocks
        instead, one model call per window, as a microphone would."""
        samples = np.asarray(samples)
        return self._clip(lambda step: (samples[i : i + step] for i in range(0, len(samples), step)), sample_rate,
                          block_s, streaming)

    def predict_file(self, path: str | os.PathLike[str], block_s: float = DEFAULT_BLOCK_S,
                     streaming: bool = False) -> Prediction:
        """:meth:`predict` of an audio file, read in spans (memory stays flat for long files)."""
        info = audio_info(Path(path))
        return self._clip(lambda step: iter_audio_blocks(path, step), info.sample_rate, block_s, streaming)

    def _clip(self, blocks: Callable[[int], Iterable[np.ndarray]], sample_rate: int, block_s: float,
              streaming: bool) -> Prediction:
        """A clip's verdict from ``blocks(step)`` (blocks of ``step`` samples): live path or whole-signal path."""
        step = max(1, int((block_s if streaming else OFFLINE_SPAN_S) * sample_rate))
        if streaming:
            return self._aggregate(self.stream(blocks(step), sample_rate))
        return self._aggregate(self.engine(sample_rate).iter_batched(blocks(step)))

    def _aggregate(self, events: Iterable[WindowEvent]) -> Prediction:
        return clip_prediction(self.model, list(events))


def clip_verdict(model: EmotionModel, raw_probs: np.ndarray, heads: np.ndarray | None = None) -> Prediction:
    """A clip's verdict from its windows' raw probabilities ``(n, n_labels)`` (and, for a model with a trained
    affect head, their own ``(n, 2)`` arousal/valence): the mean probabilities calibrated by the model's temperature
    (as the windows' shown probabilities are; the label is the mean's argmax either way), uncertain below the
    model's threshold, and arousal/valence of the mean. No windows are kept (``windows`` is empty): what ser-batch
    uses on files of many hours."""
    if len(raw_probs) == 0:
        return Prediction(None, {}, [])
    labels = model.labels
    mean = np.mean(raw_probs, axis=0)
    shown = np.asarray(model.info.calibration.apply(mean), dtype=np.float64)
    best = int(np.argmax(shown))
    if model.has_head:
        affect = model.affect(mean, None if heads is None or not len(heads) else np.mean(heads, axis=0))
    else:
        affect = model.affect(mean)
    return Prediction(
        labels[best],
        dict(zip(labels, map(float, shown), strict=True)),
        [],
        arousal=None if affect is None else float(affect[0]),
        valence=None if affect is None else float(affect[1]),
        uncertain=bool(shown[best] < model.info.calibration.min_confidence),
    )


def clip_prediction(model: EmotionModel, windows: list[WindowEvent]) -> Prediction:
    """A clip's verdict from its window events: the mean of their raw probabilities, and its arousal/valence."""
    if not windows:
        return Prediction(None, {}, [])
    raw = np.array([[w.raw_probs[label] for label in model.labels] for w in windows])
    heads = np.array([[w.raw_arousal, w.raw_valence] for w in windows], dtype=float) if model.has_head else None
    verdict = clip_verdict(model, raw, heads)
    return Prediction(verdict.label, verdict.probs, windows, arousal=verdict.arousal, valence=verdict.valence,
                      uncertain=verdict.uncertain)
