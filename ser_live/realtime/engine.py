"""The streaming engine: blocks of audio in, window events out. No threads, no device.

``Engine.feed(block)`` runs resample -> VAD -> windows -> features (:class:`realtime.stages.pipeline.FeaturePipeline`),
then the ONNX model and the smoother, and returns the :class:`ser_live.realtime.events.WindowEvent` of every window that
held enough speech. A file replay and a microphone call the very same ``feed``; ``flush()`` ends a stream.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator

import numpy as np

from ser_live.realtime.config import EngineConfig
from ser_live.realtime.events import SessionSummary, WindowEvent
from ser_live.realtime.model import EmotionModel
from ser_live.realtime.sources.audio import sanitize_block
from ser_live.realtime.stages.pipeline import FeaturePipeline, PipelineState, WindowFeatures
from ser_live.realtime.stages.smoothing import Smoother, SmoothingConfig

logger = logging.getLogger(__name__)

DEFAULT_BATCH_WINDOWS = 64  # windows per model call in iter_batched: as fast as 256 here, ~150 MB less peak memory
OFFLINE_SPAN_S = 30.0  # the whole-signal path reads and processes files in spans this long (memory stays flat)
MS = 1000.0


class Engine:
    """``feed(block) -> list[WindowEvent]``, ``flush()``, ``reset()``. Blocks: any rate given at construction."""

    def __init__(self, model: EmotionModel, input_rate: int, config: EngineConfig | None = None) -> None:
        self.model = model
        self.config = config or EngineConfig()
        self.pipeline_config = self.config.pipeline_config(model)
        self.input_rate = int(input_rate)
        self.labels = model.labels
        self._pipeline = FeaturePipeline(self.pipeline_config, self.input_rate, input_norm=model.info.input_norm,
                                         encoder=model.encoder)
        self._smoother = Smoother(
            SmoothingConfig(alpha=self.config.smoothing_alpha, reset_after_s=self.config.smoothing_reset_s)
        )
        self.profile_name = None if model.profile is None else (model.profile.name or model.profile.source or "profile")
        self.summary = SessionSummary(labels=model.labels, profile=self.profile_name)
        self._hop_s = self.pipeline_config.hop_samples / self.pipeline_config.sample_rate
        chosen = self.config.min_confidence
        self.min_confidence = model.info.calibration.min_confidence if chosen is None else float(chosen)

    @property
    def state(self) -> PipelineState:
        return self._pipeline.state

    @property
    def sample_rate(self) -> int:
        """The model rate (what the engine resamples to)."""
        return self.pipeline_config.sample_rate

    @property
    def hop_s(self) -> float:
        return self._hop_s

    @property
    def settings(self) -> dict[str, float]:
        """The windowing a client needs to read the events (ser-live --serve's and ser-serve's ``hello``)."""
        pipeline = self.pipeline_config
        return {"window_s": pipeline.window_s, "hop_s": pipeline.hop_s, "min_speech_s": pipeline.min_speech_s,
                "sample_rate": self.sample_rate}

    def reset(self) -> None:
        self._pipeline.reset()
        self._smoother.reset()
        self.summary = SessionSummary(labels=self.model.labels, profile=self.profile_name)

    def feed(self, block: np.ndarray) -> list[WindowEvent]:
        t0 = time.perf_counter()
        block = sanitize_block(block)
        self.summary.audio_s += len(block) / self.input_rate
        return self._events(self._pipeline.process(block), t0)

    def flush(self) -> list[WindowEvent]:
        """End the stream: the last windows, and -- when no window of the stream held enough speech -- one verdict
        from its window with the most speech, if that holds at least ``FALLBACK_MIN_SPEECH_S`` (a short clip)."""
        return self._events(self._pipeline.flush(), time.perf_counter()) + self._fallback_events()

    def _fallback_events(self) -> list[WindowEvent]:
        if self.summary.windows:
            return []
        candidate = self._pipeline.fallback()
        if candidate is None:
            return []
        self.summary.windows_total -= 1  # it was counted once already, as a window with too little speech
        return self._events([candidate], time.perf_counter())

    def run_batched(
        self, blocks: Iterable[np.ndarray], batch_windows: int = DEFAULT_BATCH_WINDOWS
    ) -> list[WindowEvent]:
        """:meth:`iter_batched` as a list."""
        return list(self.iter_batched(blocks, batch_windows))

    def iter_batched(
        self, blocks: Iterable[np.ndarray], batch_windows: int = DEFAULT_BATCH_WINDOWS
    ) -> Iterator[WindowEvent]:
        """A whole stream (``reset()`` first, ``flush()`` last) with the model called on up to ``batch_windows``
        windows at once: the same windows, features and smoothing as ``feed``/``flush``; the probabilities equal
        those of one-window calls to float rounding. Events come out a batch at a time. This is the whole-signal
        ("offline") path when the blocks are long spans (:data:`OFFLINE_SPAN_S`, e.g. from
        :func:`realtime.sources.audio.iter_audio_blocks`): every stage then works on many frames per call. For files and
        archives, where nobody waits on a window."""
        self.reset()
        pending: list[WindowFeatures] = []
        ready = 0

        def drain() -> list[WindowEvent]:
            if not pending:
                return []
            t0 = time.perf_counter()
            classified = [w.features for w in pending if w.features is not None]
            raw, head = self.model.run(np.stack(classified)) if classified else (None, None)
            out = self._events(list(pending), t0, raw, head, count=False)
            pending.clear()
            return out

        def taken(events: list[WindowEvent]) -> Iterator[WindowEvent]:
            for event in events:
                self.summary.add(event, self._hop_s)
                yield event

        for block in blocks:
            block = sanitize_block(block)
            self.summary.audio_s += len(block) / self.input_rate
            for wf in self._pipeline.process(block):
                pending.append(wf)
                ready += wf.features is not None
                if ready >= batch_windows:
                    yield from taken(drain())
                    ready = 0
        pending.extend(self._pipeline.flush())
        yield from taken(drain())
        yield from self._fallback_events()
        self.summary.speech_s = self._speech_s()

    def _speech_s(self) -> float:
        """Seconds the VAD called speech, at most the audio's length (the last hop is zero-padded to decide it)."""
        return min(self._pipeline.state.speech_samples / self.pipeline_config.sample_rate, self.summary.audio_s)

    def _events(
        self,
        windows: list[WindowFeatures],
        t0: float,
        batch_probs: np.ndarray | None = None,
        batch_head: np.ndarray | None = None,
        count: bool = True,
    ) -> list[WindowEvent]:
        sr = self.pipeline_config.sample_rate
        self.summary.speech_s = self._speech_s()
        events: list[WindowEvent] = []
        n_batch = 0 if batch_probs is None else len(batch_probs)
        batch_ms = (time.perf_counter() - t0) * MS / max(1, n_batch)
        row = 0
        for wf in windows:
            self.summary.windows_total += 1
            if wf.features is None:
                continue
            t_inf = time.perf_counter()
            if batch_probs is None:
                probs, heads = self.model.run(wf.features[None])
                raw, head = probs[0], None if heads is None else heads[0]
                inference_ms = (time.perf_counter() - t_inf) * MS
            else:
                raw, head = batch_probs[row], None if batch_head is None else batch_head[row]
                inference_ms = batch_ms
                row += 1
            end_s = wf.window.end / sr
            n = len(raw)
            # a trained affect head's output is averaged with the probabilities (one moving average, same resets)
            averaged_all = self._smoother.process(raw if head is None else np.concatenate([raw, head]), end_s)
            averaged, averaged_head = averaged_all[:n], None if head is None else averaged_all[n:]
            # the model's temperature calibrates what is shown: the smoothed probabilities (ser-calibrate fits it so);
            # arousal/valence read the average itself, as a clip's do (the mean of its raw windows)
            smoothed = self.model.info.calibration.apply(averaged)
            best = int(np.argmax(smoothed))
            affect = self.model.affect(averaged, averaged_head)
            raw_affect = self.model.affect(raw, head)
            compute_ms = (time.perf_counter() - t0) * MS
            # audio that arrived after the window's last sample before we could decide (VAD look-ahead, block size)
            waited_ms = max(0, self._pipeline.state.samples_in - wf.window.end) / sr * MS
            event = WindowEvent(
                start_s=max(0.0, wf.window.start / sr),
                end_s=end_s,
                label=self.labels[best],
                confidence=float(smoothed[best]),
                probs=dict(zip(self.labels, map(float, smoothed), strict=True)),
                raw_probs=dict(zip(self.labels, map(float, raw), strict=True)),
                speech_ratio=float(wf.window.speech_ratio),
                arousal=None if affect is None else float(affect[0]),
                valence=None if affect is None else float(affect[1]),
                uncertain=bool(smoothed[best] < self.min_confidence),
                raw_arousal=None if raw_affect is None else float(raw_affect[0]),
                raw_valence=None if raw_affect is None else float(raw_affect[1]),
                profile=self.profile_name,
                latency_ms={
                    "features": wf.features_ms,
                    "inference": inference_ms,
                    "total": compute_ms,
                    "end_to_end": waited_ms + compute_ms,
                },
            )
            if count:  # (iter_batched counts each event when it is taken: a consumer that stops early counts right)
                self.summary.add(event, self._hop_s)
            events.append(event)
        return events
