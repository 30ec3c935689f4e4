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
            audio = np.concatenate([self.buffer, np.zeros(0, np.float32)])
        out = self._level(self._frames(np.concatenate([audio, np.zeros(N_FFT + wanted * HOP, np.float32)]))[:wanted])
        self.frames += len(out)
        self.buffer = np.zeros(0, np.float32)
        return out


def log_mel(audio: np.ndarray, filters: np.ndarray) -> np.ndarray:
    """A whole clip's log-mel frames, exactly as :class:`StreamingLogMel` gives them."""
    stream = StreamingLogMel(filters)
    return np.concatenate([stream.process(audio), stream.flush()])


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
