"""Frame cache: every clip's encoder frames, computed once the way the product computes them, kept on disk.

A cache folder holds, per corpus, ``<corpus>.frames.f16`` (the frames of the kept block, float16, one row per
20 ms frame, clips one after another) and ``<corpus>.json`` (per clip: path, label, speaker, the first row and the
row count, and the mean and standard deviation over the clip's frames after every block up to the deepest one).
Frames come from the product's own stages (:class:`ser_live.realtime.stages.encoder.StreamingLogMel` and
:class:`~ser_live.realtime.stages.encoder.FrameEncoder` over the frame-encoder graph in ONNX Runtime, one thread),
fed in blocks as a stream would feed them. Writing is atomic per corpus: a corpus whose JSON exists is done
and skipped when the cache is built again.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ser_live.export.whisper import EncoderLayout, EncoderWeights, build_encoder_onnx
from ser_live.realtime.sources.audio import read_audio
from ser_live.realtime.stages.encoder import SAMPLE_RATE, FrameEncoder, StreamingLogMel, mel_filters
from ser_live.realtime.stages.resample import Resampler
from ser_live.train.corpora import Record

logger = logging.getLogger(__name__)

FEED_BLOCK_S = 0.5  # how much audio each process() call gets (the frames do not depend on it)


@dataclass(frozen=True)
class CacheSpec:
    n_blocks: int = 4  # pooled statistics after each of blocks 1..n_blocks
    keep_block: int = 2  # whose frames are stored in full
    chunk: int = 25
    context: int = 50


def read_clip(path: Path) -> np.ndarray:
    """A clip as the engine hears it: read with the runtime's checks, downmixed and resampled by its Resampler."""
    audio, rate = read_audio(path)
    resampler = Resampler(rate, SAMPLE_RATE)
    return np.concatenate([resampler.process(audio), resampler.flush()])


def onnx_run(weights: EncoderWeights, spec: CacheSpec):
    """The frame-encoder graph with every block's frames as its output, in ONNX Runtime on one thread."""
    import onnxruntime as ort

    from ser_live.realtime.model import encoder_call, session_options

    layout = EncoderLayout(spec.chunk, spec.context, spec.context, every_block=True)
    session = ort.InferenceSession(build_encoder_onnx(weights, layout).SerializeToString(), session_options(1),
                                   providers=["CPUExecutionProvider"])
    return encoder_call(session, len(weights.blocks))


def clip_frames(audio: np.ndarray, filters: np.ndarray, run, weights: EncoderWeights,
                spec: CacheSpec) -> list[np.ndarray]:
    """Frames after each block 1..n (one list entry per block) for one clip, fed as a stream."""
    front = StreamingLogMel(filters)
    mels = []
    step = int(FEED_BLOCK_S * SAMPLE_RATE)
    for start in range(0, len(audio), step):
        mels.append(front.process(audio[start : start + step]))
    mels.append(front.flush())
    mel = np.concatenate(mels)
    enc = FrameEncoder(run, weights.dim, 2 * len(weights.blocks), spec.chunk, spec.context, taps=len(weights.blocks))
    return list(np.concatenate([enc.process(mel), enc.flush()], axis=1))


def build_cache(records: Sequence[Record], weights: EncoderWeights, out: Path, spec: CacheSpec) -> None:
    out.mkdir(parents=True, exist_ok=True)
    filters = mel_filters()
    run = onnx_run(weights, spec)
    for corpus in sorted({r.corpus for r in records}):
        index_path = out / f"{corpus}.json"
        if index_path.exists():
            logger.info("%s: cached already", corpus)
            continue
        mine = [r for r in records if r.corpus == corpus]
        tmp = out / f".{corpus}.frames.f16.tmp"
        rows = 0
        clips = []
        t0 = time.monotonic()
        with open(tmp, "wb") as f:
            for i, r in enumerate(mine):
                per_block = clip_frames(read_clip(r.path), filters, run, weights, spec)
                kept = per_block[spec.keep_block - 1].astype(np.float16)
                f.write(kept.tobytes())
                clips.append({
                    "path": str(r.path), "label": r.label, "speaker": r.speaker, "start": rows, "rows": len(kept),
                    "mean": [b.mean(axis=0).round(5).tolist() for b in per_block],
                    "std": [b.std(axis=0).round(5).tolist() for b in per_block],
                })
                rows += len(kept)
                if i % 500 == 0:
                    logger.info("%s: %d/%d clips, %.0f s", corpus, i, len(mine), time.monotonic() - t0)
        os.replace(tmp, out / f"{corpus}.frames.f16")
        index = {"corpus": corpus, "dim": weights.dim, "keep_block": spec.keep_block, "n_blocks": spec.n_blocks,
                 "chunk": spec.chunk, "context": spec.context, "rows": rows, "clips": clips}
        tmp_index = out / f".{corpus}.json.tmp"
        tmp_index.write_text(json.dumps(index), encoding="utf-8")
        os.replace(tmp_index, index_path)
        logger.info("%s: %d clips, %d frames in %.0f s", corpus, len(clips), rows, time.monotonic() - t0)
