"""Clips -> training examples, cut exactly the way the live engine cuts audio.

Every clip goes through :class:`realtime.stages.pipeline.FeaturePipeline` — resample, WebRTC VAD, speech-gated sliding
windows of the live window length, streaming features — so a clip longer than a window gives several examples and
a short one is padded as live pads. Augmented copies (training split only) are made from the resampled clip and then
take the same path.

Features are cached on disk, one ``.npy`` per (clip, augmentation variant, pipeline configuration), keyed by the
file's path, size and modification time and by the configuration, so a second run reads instead of recomputing.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ser_live.realtime.errors import UserError
from ser_live.realtime.fileio import save_npy
from ser_live.realtime.sources.audio import read_audio
from ser_live.realtime.stages.normalize import (
    ABS_FLOOR_DB,
    MODE_NONE,
    MODE_SESSION,
    InputNormConfig,
    fit_prior,
    normalize_session,
)
from ser_live.realtime.stages.pipeline import FeaturePipeline, PipelineConfig
from ser_live.realtime.stages.resample import Resampler
from ser_live.train.augment import AugmentConfig, augment_clip
from ser_live.train.corpora import Record

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
VARIANT_ORIGINAL = "orig"


@dataclass(frozen=True)
class ClipExamples:
    """The windows of one clip (and of its augmented copies)."""

    record: Record
    features: np.ndarray  # [n_windows, *feature_shape]
    variant: str = VARIANT_ORIGINAL


@dataclass
class ExtractionReport:
    clips: int = 0
    windows: int = 0
    cached: int = 0
    unreadable: list[tuple[str, str]] | None = None
    no_speech: list[str] | None = None

    def __post_init__(self) -> None:
        self.unreadable = [] if self.unreadable is None else self.unreadable
        self.no_speech = [] if self.no_speech is None else self.no_speech

    def to_dict(self) -> dict[str, object]:
        return {
            "clips": self.clips,
            "windows": self.windows,
            "from_cache": self.cached,
            "unreadable": [{"path": p, "reason": r} for p, r in (self.unreadable or [])],
            "no_speech_window": list(self.no_speech or []),
        }


def _cache_key(path: Path, config: PipelineConfig, variant: str, augment: AugmentConfig | None) -> str:
    st = path.stat()
    payload = {
        "format": CACHE_FORMAT,
        "path": str(path.resolve()),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "pipeline": config.to_dict(),
        "variant": variant,
        "augment": None if augment is None else repr(augment),
    }
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _clip_seed(path: Path) -> int:
    return int.from_bytes(hashlib.sha1(str(path).encode()).digest()[:4], "little")


class FeatureBuilder:
    """Extracts (and caches) the window features of clips for one pipeline configuration."""

    def __init__(
        self,
        config: PipelineConfig,
        cache_dir: Path | None = None,
        augment: AugmentConfig | None = None,
        seed: int = 0,
    ) -> None:
        self.config = config
        self.cache_dir = cache_dir
        self.augment = augment
        self.seed = seed
        self.report = ExtractionReport()
        self._pipeline = FeaturePipeline(config, config.sample_rate)
        if cache_dir is not None:
            try:
                cache_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                msg = f"cannot create the feature cache {cache_dir}: {exc.strerror}; pass a writable --cache DIR"
                raise UserError(msg) from None

    def _windows(self, samples: np.ndarray) -> np.ndarray:
        feats = [wf.features for wf in self._pipeline.run(samples) if wf.features is not None]
        if not feats:
            return np.zeros((0, *self.config.feature_shape), dtype=np.float32)
        return np.stack(feats).astype(np.float32)

    def _load_mono(self, path: Path) -> np.ndarray:
        samples, rate = read_audio(path)
        resampler = Resampler(rate, self.config.sample_rate)
        return np.concatenate([resampler.process(samples), resampler.flush()])

    def _variants(self, record: Record, with_augment: bool) -> list[str]:
        if not with_augment or self.augment is None:
            return [VARIANT_ORIGINAL]
        return [VARIANT_ORIGINAL, *(f"aug{i}" for i in range(self.augment.copies))]

    def clip(self, record: Record, with_augment: bool = False) -> list[ClipExamples]:
        """All examples of one clip; unreadable clips are recorded in the report and give nothing."""
        variants = self._variants(record, with_augment)
        keys = {
            v: _cache_key(record.path, self.config, v, self.augment if v != VARIANT_ORIGINAL else None)
            for v in variants
        }
        out: list[ClipExamples] = []
        missing: list[str] = []
        for v in variants:
            cached = self.cache_dir / f"{keys[v]}.npy" if self.cache_dir else None
            if cached is not None and cached.exists():
                out.append(ClipExamples(record, np.load(cached, allow_pickle=False), v))
                self.report.cached += 1
            else:
                missing.append(v)
        if missing:
            try:
                mono = self._load_mono(record.path)
            except UserError as exc:
                self.report.unreadable.append((str(record.path), str(exc)))  # type: ignore[union-attr]
                logger.warning("skipping %s: %s", record.path, exc)
                return []
            audio = {VARIANT_ORIGINAL: mono}
            if any(v != VARIANT_ORIGINAL for v in missing):
                assert self.augment is not None
                rng = np.random.default_rng([self.seed, _clip_seed(record.path)])
                copies = augment_clip(mono, self.config.sample_rate, self.augment, rng)
                audio.update({f"aug{i}": c for i, c in enumerate(copies)})
            for v in missing:
                feats = self._windows(audio[v])
                if self.cache_dir is not None:
                    save_npy(self.cache_dir / f"{keys[v]}.npy", feats)
                out.append(ClipExamples(record, feats, v))
        self.report.clips += 1
        orig = next((c for c in out if c.variant == VARIANT_ORIGINAL), None)
        if orig is not None and len(orig.features) == 0:
            self.report.no_speech.append(str(record.path))  # type: ignore[union-attr]
        self.report.windows += sum(len(c.features) for c in out)
        return out

    def build(
        self,
        records: Sequence[Record],
        with_augment: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> list[ClipExamples]:
        out: list[ClipExamples] = []
        for record in records:
            out += self.clip(record, with_augment)
            if progress is not None:
                progress(1)
        return out


def session_order(clips: Sequence[ClipExamples], seed: int, restart: float = 0.0) -> list[list[int]]:
    """Sessions as live use would meet them: one per (speaker, augmentation variant), its clips shuffled; with
    ``restart`` > 0 a new session starts before each further clip with that probability, so that the model also
    sees windows early in a session (a short file replay is a session of one clip).

    Returns, per session, the indices into ``clips`` in playing order (sessions sorted by speaker and variant so
    the result depends only on ``seed``).
    """
    groups: dict[tuple[str, str], list[int]] = {}
    for i, clip in enumerate(clips):
        groups.setdefault((clip.record.speaker, clip.variant), []).append(i)
    rng = np.random.default_rng(seed)
    sessions: list[list[int]] = []
    for _, members in sorted(groups.items()):
        order = [members[j] for j in rng.permutation(len(members))]
        cuts = [0, *(k for k in range(1, len(order)) if restart > 0 and rng.uniform() < restart), len(order)]
        sessions += [order[a:b] for a, b in itertools.pairwise(cuts)]
    return sessions


def fit_input_norm(
    clips: Sequence[ClipExamples], config: InputNormConfig, abs_floor_db: float = ABS_FLOOR_DB
) -> InputNormConfig:
    """The config with its training statistics (session mode: the prior, from the training clips' windows)."""
    if config.mode != MODE_SESSION:
        return config
    prior = fit_prior((w for clip in clips for w in clip.features), config.active_range_db, config.floor_db,
                      abs_floor_db)
    return config.with_prior(prior.tolist())


def normalize_clips(
    clips: Sequence[ClipExamples],
    config: InputNormConfig,
    hop_s: float,
    seed: int,
    abs_floor_db: float = ABS_FLOOR_DB,
    restart: float = 0.0,
) -> list[ClipExamples]:
    """Clips with their windows through :class:`realtime.stages.normalize.InputNormalizer`, each speaker's clips played
    as one session in shuffled order (see :func:`session_order`): what the live engine's stage would give."""
    if config.mode == MODE_NONE:
        return list(clips)
    out: list[ClipExamples] = list(clips)
    for session in session_order(clips, seed, restart):
        sizes = [len(clips[i].features) for i in session]
        if not sum(sizes):
            continue
        shape = next(clips[i].features.shape[1:] for i in session if len(clips[i].features))
        joined = np.concatenate([clips[i].features.reshape(-1, *shape) for i in session])
        normalized = normalize_session(joined, config, hop_s, abs_floor_db=abs_floor_db)
        start = 0
        for i, n in zip(session, sizes, strict=True):
            out[i] = ClipExamples(clips[i].record, normalized[start : start + n], clips[i].variant)
            start += n
    return out


def stack_examples(
    clips: Sequence[ClipExamples], labels: Sequence[str], feature_shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Window features X, label indices y, and the clip index of each window (to pool windows per clip)."""
    index = {label: i for i, label in enumerate(labels)}
    xs, ys, groups = [], [], []
    for i, clip in enumerate(clips):
        n = len(clip.features)
        if n == 0:
            continue
        xs.append(clip.features)
        ys.append(np.full(n, index[clip.record.label], dtype=np.int64))
        groups.append(np.full(n, i, dtype=np.int64))
    if not xs:
        return (
            np.zeros((0, *feature_shape), np.float32),
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
        )
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(groups)


@dataclass(frozen=True)
class Standardizer:
    """Mean/std fitted on training features only; per value for vectors, per band (last axis) for frame maps."""

    mean: np.ndarray
    std: np.ndarray

    MIN_STD = 1e-6
    CHUNK_ROWS = 65_536

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardizer:
        if len(x) == 0:
            raise UserError("no training windows to fit the standardisation on: check --data and --min-speech")
        # float64 sums over chunks: exact enough, without a float64 copy of the whole training set
        flat = x.reshape(-1, x.shape[-1])
        total = np.zeros(x.shape[-1], np.float64)
        total_sq = np.zeros(x.shape[-1], np.float64)
        for i in range(0, len(flat), cls.CHUNK_ROWS):
            part = flat[i : i + cls.CHUNK_ROWS].astype(np.float64)
            total += part.sum(axis=0)
            total_sq += np.square(part).sum(axis=0)
        mean = total / len(flat)
        std = np.maximum(np.sqrt(np.maximum(total_sq / len(flat) - mean**2, 0.0)), cls.MIN_STD)
        return cls(mean.astype(np.float32), std.astype(np.float32))

    def apply(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.std).astype(np.float32)

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": self.mean.astype(float).tolist(), "std": self.std.astype(float).tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, list[float]]) -> Standardizer:
        return cls(np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32))
