"""The frame encoder's stages: Whisper's log-mel front end and the streaming frame encoder (ONNX Runtime).

:class:`StreamingLogMel`: audio (16 kHz, any block sizes) -> Whisper's log-mel frames (n_fft 400, hop 160, 80
Slaney mel bands, log10, an 8-decade floor, ``(x + 4) / 4``) with one change for live audio: the level reference is
the running maximum over the last :data:`LEVEL_WINDOW_FRAMES` frames instead of the clip's maximum, and it is
subtracted (the reference then sits at :data:`LEVEL_TARGET`), so a gain applied to the input changes nothing.

:class:`FrameEncoder`: log-mel frames -> encoder frames (50 a second), chunk by chunk through the frame-encoder
graph (made by ``ser_live.export.whisper``): each chunk of ``chunk`` output frames attends to itself and to the
cached keys/values of the ``context`` frames before it, so each frame is computed once and the frames never depend
on how the audio was handed over. The convolutions' halo (two mel frames each side) and the stream's zero padding
are kept here; the graph takes a mask that zeroes the padded first-convolution rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ser_live.realtime.stages.features import mel_filterbank

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
N_MELS = 80
FLOOR_DECADES = 8.0  # Whisper: log_spec = max(log_spec, log_spec.max() - 8)
LEVEL_WINDOW_FRAMES = 300  # the level reference: max over the last 3 s of mel frames (100 per second)
LEVEL_TARGET = 0.5  # the reference's log10 value after subtraction (Whisper's loud speech sits near it)
LOG_EPS = 1e-10
FRAMES_PER_S = 50  # encoder frames
HALO = 2  # mel frames each side of a chunk the two convolutions need


def mel_filters() -> np.ndarray:
    """Whisper's mel filter bank (librosa's Slaney mel, as Whisper builds it): (80, 201)."""
    return mel_filterbank(SAMPLE_RATE, N_FFT, N_MELS, 0.0, SAMPLE_RATE / 2).astype(np.float32)


class StreamingLogMel:
    """Audio (16 kHz float32, any block sizes) -> Whisper log-mel frames, each computed once.

    Frame ``t`` is centred on sample ``t * HOP`` with the stream's start reflect-padded as Whisper pads it; it is
    emitted once its last sample has arrived (``flush`` zero-pads the end)."""

    def __init__(self, filters: np.ndarray) -> None:
        self.filters = filters
        self.window = np.hanning(N_FFT + 1)[:-1].astype(np.float32)  # periodic Hann, as torch.hann_window
        self.buffer = np.zeros(0, np.float32)
        self.started = False
        self.levels = np.zeros(0, np.float32)  # trailing raw frame maxima for the level reference
        self.samples = 0  # audio samples seen
        self.frames = 0  # frames emitted

    def _frames(self, audio: np.ndarray) -> np.ndarray:
        n = (len(audio) - N_FFT) // HOP + 1
        if n <= 0:
            self.buffer = audio
            return np.zeros((0, N_MELS), np.float32)
        idx = np.arange(N_FFT)[None, :] + HOP * np.arange(n)[:, None]
        spec = np.abs(np.fft.rfft(audio[idx] * self.window, axis=1)) ** 2
        mel = spec.astype(np.float32) @ self.filters.T
        logmel = np.log10(np.maximum(mel, LOG_EPS))
        self.buffer = audio[n * HOP :]
        return logmel

    def _level(self, logmel: np.ndarray) -> np.ndarray:
        peaks = logmel.max(axis=1)
        history = np.concatenate([self.levels, peaks])
        k = LEVEL_WINDOW_FRAMES
        padded = np.concatenate([np.full(max(0, k - 1 - len(self.levels)), -np.inf, np.float32), history])
        ref = np.lib.stride_tricks.sliding_window_view(padded, k)[-len(peaks) :].max(axis=1) if len(peaks) else peaks
        self.levels = history[-(k - 1) :]
        out = np.maximum(logmel, ref[:, None] - FLOOR_DECADES) - ref[:, None] + LEVEL_TARGET
        return ((out + 4.0) / 4.0).astype(np.float32)

    def process(self, audio: np.ndarray) -> np.ndarray:
        audio = np.asarray(audio, np.float32)
        self.samples += len(audio)
        out = self._process(audio)
        self.frames += len(out)
        return out

    def _process(self, audio: np.ndarray) -> np.ndarray:
        if not self.started:
            if len(audio) == 0:
                return np.zeros((0, N_MELS), np.float32)
            pad = N_FFT // 2
            # reflect-pad the start as Whisper (torch.stft center=True) does; needs pad + 1 samples
            self.buffer = np.concatenate([self.buffer, audio])
            if len(self.buffer) <= pad:
                return np.zeros((0, N_MELS), np.float32)
            audio = np.concatenate([self.buffer[1 : pad + 1][::-1], self.buffer])
            self.buffer = np.zeros(0, np.float32)
            self.started = True
        return self._level(self._frames(np.concatenate([self.buffer, audio])))

    def flush(self) -> np.ndarray:
        """The stream's last frames (zero padding after its end, as Whisper pads to 30 s): ``samples // HOP`` in all."""
        wanted = self.samples // HOP - self.frames
        if wanted <= 0:
            return np.zeros((0, N_MELS), np.float32)
        if not self.started:  # shorter than the reflect padding needs: the frames are Whisper's all the same
            audio = self.buffer
            self.buffer = np.zeros(0, np.float32)
            pad = min(N_FFT // 2, len(audio) - 1)
            audio = np.concatenate([np.zeros(N_FFT // 2 - pad, np.float32), audio[1 : pad + 1][::-1], audio])
            self.started = True
        else:
            audio = self.buffer
        out = self._level(self._frames(np.concatenate([audio, np.zeros(N_FFT + wanted * HOP, np.float32)]))[:wanted])
        self.frames += len(out)
        self.buffer = np.zeros(0, np.float32)
        return out


def log_mel(audio: np.ndarray, filters: np.ndarray) -> np.ndarray:
    """A whole clip's log-mel frames, exactly as :class:`StreamingLogMel` gives them."""
    stream = StreamingLogMel(filters)
    return np.concatenate([stream.process(audio), stream.flush()])


def cache_names(n_blocks: int) -> list[str]:
    """The frame-encoder graph's cache inputs, in order (each has a ``new_`` output): keys_0, values_0, keys_1, ..."""
    return [f"{kind}_{i}" for i in range(n_blocks) for kind in ("keys", "values")]


def conv_rows(n_out: int) -> int:
    """Mel rows the graph takes for ``n_out`` output frames: 2 * n_out + 3 (the convolutions' halo)."""
    return 2 * n_out + 2 * HALO - 1


class FrameEncoder:
    """Log-mel frames -> encoder frames through the frame-encoder graph, chunk by chunk (see the module doc).

    ``run(mel, mask, caches) -> (frames, caches)`` is the graph call: an ONNX Runtime session in the product, the
    numpy reference in the converter's parity tests. ``process`` returns the frames of every completed chunk;
    ``flush`` ends the stream (the last partial chunk, the convolutions' right zero padding)."""

    def __init__(self, run: Any, dim: int, n_caches: int, chunk: int, context: int, taps: int = 0) -> None:
        self.run = run
        self.taps = taps  # 0: the graph gives (frames, dim); n: (n, frames, dim), every block's frames
        self.dim = dim
        self.chunk = chunk
        self.context = context
        self.mel = np.zeros((HALO, N_MELS), np.float32)  # starts at global mel index -HALO (zero padding)
        self.base = -HALO
        self.next_out = 0
        self.caches = [np.zeros((0, dim), np.float32) for _ in range(n_caches)]

    def reset(self) -> None:
        self.__init__(self.run, self.dim, len(self.caches), self.chunk, self.context, self.taps)  # type: ignore[misc]

    def _step(self, n_out: int, n_mel: int | None) -> np.ndarray:
        first = 2 * self.next_out - HALO  # global index of the first mel row the chunk needs
        rows = self.mel[first - self.base : first - self.base + conv_rows(n_out)]
        conv1 = np.arange(first + 1, first + 1 + 2 * n_out + 1)  # global first-convolution rows
        mask = ((conv1 >= 0) & ((n_mel is None) | (conv1 < (n_mel or 0)))).astype(np.float32)
        frames, self.caches = self.run(rows, mask, self.caches)
        self.next_out += n_out
        keep = 2 * self.next_out - HALO - self.base
        self.mel, self.base = self.mel[keep:], self.base + keep
        return frames

    def _join(self, out: list[np.ndarray]) -> np.ndarray:
        if out:
            return np.concatenate(out, axis=-2)
        return np.zeros((self.taps, 0, self.dim) if self.taps else (0, self.dim), np.float32)

    def process(self, mel: np.ndarray) -> np.ndarray:
        self.mel = np.concatenate([self.mel, np.asarray(mel, np.float32)])
        out = []
        # a chunk of outputs t0..t0+C-1 needs mel rows up to 2 (t0 + C - 1) + 2
        while self.base + len(self.mel) - 1 >= 2 * (self.next_out + self.chunk - 1) + HALO:
            out.append(self._step(self.chunk, None))
        return self._join(out)

    def flush(self) -> np.ndarray:
        n_mel = self.base + len(self.mel)  # real mel rows in the stream
        total = (n_mel - 1) // 2 + 1 if n_mel > 0 else 0
        self.mel = np.concatenate([self.mel, np.zeros((HALO, N_MELS), np.float32)])
        out = []
        while self.next_out < total:
            out.append(self._step(min(self.chunk, total - self.next_out), n_mel))
        return self._join(out)


SAMPLES_PER_FRAME = SAMPLE_RATE // FRAMES_PER_S  # 320: encoder frame f is centred on sample 320 f


def frame_span(start: int, end: int) -> tuple[int, int]:
    """The encoder frames of the window [start, end) (samples): those whose centre lies inside it (a window that
    begins before the stream, as the first ones do, has frames from 0 on)."""
    first = max(0, -(-start // SAMPLES_PER_FRAME))
    return first, max(first, -(-end // SAMPLES_PER_FRAME))


def pool_frames(frames: np.ndarray) -> np.ndarray:
    """A window's embedding from its encoder frames: the mean and the standard deviation of every dimension."""
    if len(frames) == 0:
        return np.zeros(2 * frames.shape[-1], np.float32)
    f = frames.astype(np.float32)
    return np.concatenate([f.mean(axis=0), f.std(axis=0)]).astype(np.float32)


@dataclass(frozen=True)
class SessionNormConfig:
    """The session normaliser: each window's pooled embedding is z-scored with statistics that start from the
    training windows' (``mean``, ``std``: the prior, worth ``prior_windows`` windows) and move towards the
    session's own as its windows arrive; windows older than about ``memory_windows`` fade out (a new speaker is
    adapted to). ``prior_windows`` large: global normalisation; small: per-speaker."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    prior_windows: float = 20.0
    memory_windows: float = 600.0

    def to_dict(self) -> dict[str, Any]:
        return {"mean": [round(float(v), 6) for v in self.mean], "std": [round(float(v), 6) for v in self.std],
                "prior_windows": self.prior_windows, "memory_windows": self.memory_windows}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SessionNormConfig:
        mean, std = tuple(float(v) for v in d["mean"]), tuple(float(v) for v in d["std"])
        if len(mean) != len(std) or not all(np.isfinite(mean)) or not all(s > 0 and np.isfinite(s) for s in std):
            raise ValueError("session normaliser statistics must be finite, of one length, with std > 0")
        return cls(mean, std, float(d.get("prior_windows", 20.0)), float(d.get("memory_windows", 600.0)))


class SessionNormalizer:
    """``process(x)``: the running statistics take in window ``x``, then ``x`` comes out z-scored by them."""

    def __init__(self, config: SessionNormConfig) -> None:
        self.config = config
        self.mean0 = np.asarray(config.mean, np.float64)
        self.var0 = np.square(np.asarray(config.std, np.float64))
        self.decay = 1.0 - 1.0 / max(config.memory_windows, 1.0)
        self.reset()

    def reset(self) -> None:
        self.n = 0.0
        self.sum = np.zeros_like(self.mean0)
        self.sum_sq = np.zeros_like(self.mean0)

    def process(self, x: np.ndarray) -> np.ndarray:
        x64 = np.asarray(x, np.float64)
        self.n = self.n * self.decay + 1.0
        self.sum = self.sum * self.decay + x64
        self.sum_sq = self.sum_sq * self.decay + x64 * x64
        n0 = self.config.prior_windows
        mean = (n0 * self.mean0 + self.sum) / (n0 + self.n)
        second = (n0 * (self.var0 + self.mean0**2) + self.sum_sq) / (n0 + self.n)
        std = np.sqrt(np.maximum(second - mean**2, 1e-6 * self.var0 + 1e-12))
        return ((x64 - mean) / std).astype(np.float32)


@dataclass(frozen=True)
class EncoderSpec:
    """What a pipeline needs to run a model's frame encoder: the graph call's factory and its layout."""

    make_run: Callable[[], Any]  # a new graph call (FrameEncoder's ``run``); the session behind it may be shared
    dim: int
    blocks: int
    chunk: int
    context: int
    session_norm: SessionNormConfig | None = None


class EncoderFeatures:
    """The pipeline's frame stage for an encoder model: samples (any block sizes) -> encoder frames, computed once
    -> a window's pooled embedding (:func:`pool_frames`). Frames older than ``keep_frames`` are dropped."""

    def __init__(self, spec: EncoderSpec, keep_frames: int) -> None:
        self.spec = spec
        self.keep_frames = keep_frames
        self._run = spec.make_run()
        self._filters = mel_filters()
        self.reset()

    def reset(self) -> None:
        self._front = StreamingLogMel(self._filters)
        self._encoder = FrameEncoder(self._run, self.spec.dim, 2 * self.spec.blocks, self.spec.chunk,
                                     self.spec.context)
        self._frames = np.zeros((0, self.spec.dim), np.float32)
        self._first = 0  # index of self._frames[0]
        self.position = 0  # samples taken in
        self.finished = False

    @property
    def frames_done(self) -> int:
        return self._first + len(self._frames)

    def _add(self, frames: np.ndarray) -> None:
        if len(frames):
            self._frames = np.concatenate([self._frames, frames])
            drop = len(self._frames) - self.keep_frames
            if drop > 0:
                self._frames, self._first = self._frames[drop:], self._first + drop

    def process(self, samples: np.ndarray) -> None:
        self.position += len(samples)
        self._add(self._encoder.process(self._front.process(samples)))

    def finish(self) -> None:
        """End of stream: the last mel frames and the last partial chunk."""
        if not self.finished:
            self._add(self._encoder.process(self._front.flush()))
            self._add(self._encoder.flush())
            self.finished = True

    def ready(self, end: int) -> bool:
        """Whether every frame of a window ending at sample ``end`` is computed."""
        return self.finished or self.frames_done >= frame_span(0, end)[1]

    def window(self, start: int, end: int) -> np.ndarray:
        first, last = frame_span(start, end)
        first, last = max(first, self._first), min(last, self.frames_done)
        return pool_frames(self._frames[first - self._first : max(first, last) - self._first])
