"""Window embeddings for the head of a two-graph model: every clip's windows, cut as the live path cuts them
(:func:`ser_live.realtime.stages.pipeline.cut_windows`), pooled from the frame cache (:mod:`ser_live.train.frames`)
exactly as :class:`~ser_live.realtime.stages.encoder.EncoderFeatures` pools them live.

A window set folder holds, per corpus, ``<corpus>.windows.npy`` (float32, one pooled embedding per classified
window) and ``<corpus>.windows.json`` (the clips: path, label, speaker, and the rows of their windows). Building is
atomic per corpus and skips a corpus already built.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ser_live.realtime.stages.encoder import frame_span, pool_frames
from ser_live.realtime.stages.pipeline import PipelineConfig, cut_windows
from ser_live.train.frames import read_clip

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WindowSet:
    """The windows of some corpora: embeddings ``x`` (rows), each row's clip, and per clip its corpus, speaker,
    label and path."""

    x: np.ndarray
    clip_of: np.ndarray
    corpus: np.ndarray
    speaker: np.ndarray
    label: np.ndarray
    path: np.ndarray

    def rows_of(self, clips: np.ndarray) -> np.ndarray:
        """Row mask of the windows of the clip mask ``clips``."""
        return clips[self.clip_of]


def build_windows(frames_dir: Path, out: Path, corpora: list[str], config: PipelineConfig) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for corpus in corpora:
        target = out / f"{corpus}.windows.json"
        if target.exists():
            continue
        index = json.loads((frames_dir / f"{corpus}.json").read_text(encoding="utf-8"))
        frames = np.memmap(frames_dir / f"{corpus}.frames.f16", dtype=np.float16, mode="r",
                           shape=(index["rows"], index["dim"]))
        rows: list[np.ndarray] = []
        clips = []
        t0 = time.monotonic()
        for clip in index["clips"]:
            mine = frames[clip["start"] : clip["start"] + clip["rows"]]
            windows = [w for w in cut_windows(config, read_clip(Path(clip["path"]))) if w.classify]
            first = sum(len(r) for r in rows)
            pooled = [pool_frames(mine[slice(*frame_span(w.start, w.end))]) for w in windows]
            if pooled:
                rows.append(np.stack(pooled))
            clips.append({"path": clip["path"], "label": clip["label"], "speaker": clip["speaker"], "first": first,
                          "windows": len(pooled)})
        x = np.concatenate(rows) if rows else np.zeros((0, 2 * index["dim"]), np.float32)
        tmp = out / f".{corpus}.windows.npy.tmp"
        with open(tmp, "wb") as f:
            np.save(f, x.astype(np.float32), allow_pickle=False)
        os.replace(tmp, out / f"{corpus}.windows.npy")
        tmp_json = out / f".{corpus}.windows.json.tmp"
        tmp_json.write_text(json.dumps({"corpus": corpus, "window_s": config.window_s, "hop_s": config.hop_s,
                                        "clips": clips}), encoding="utf-8")
        os.replace(tmp_json, target)
        logger.info("%s: %d clips, %d windows in %.0f s", corpus, len(clips), len(x), time.monotonic() - t0)


def load_windows(folder: Path, corpora: list[str]) -> WindowSet:
    xs, clip_of, corpus, speaker, label, path = [], [], [], [], [], []
    for name in corpora:
        index = json.loads((folder / f"{name}.windows.json").read_text(encoding="utf-8"))
        x = np.load(folder / f"{name}.windows.npy", allow_pickle=False)
        offset = len(corpus)
        for i, clip in enumerate(index["clips"]):
            clip_of.append(np.full(clip["windows"], offset + i, np.int64))
            corpus.append(name)
            speaker.append(clip["speaker"])
            label.append(clip["label"])
            path.append(clip["path"])
        xs.append(x)
    return WindowSet(np.concatenate(xs), np.concatenate(clip_of), np.array(corpus), np.array(speaker),
                     np.array(label), np.array(path))
