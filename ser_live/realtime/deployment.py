"""Deployment statistics: the session normaliser's prior, measured on the recordings of one deployment.

An encoder model's session normaliser z-scores each window's pooled embedding with statistics that start from its
training windows' and move towards the session's own as the speaker talks. A single short clip never gets far from
the training statistics, so a new microphone, room or language shifts every embedding the same way. Deployment
statistics replace that starting point with the mean and spread of the embeddings of recordings from the place the
model is used (many speakers, one kind of microphone): on the leave-one-corpus-out benchmark they raise the mean
UAR4 one clip at a time from 60.4 to 64.5 % (sessions of one emotion 58.3 to 61.6, ordinary sessions 65.1 to 66.1;
model card).

They are written once, by ``ser-stats`` (or ``ser-batch --deployment auto``, a first pass over the archive), to a
new JSON file that is never updated in place, and read with one flag (``--deployment FILE``, or
``EmotionRecognizer(deployment=...)``). The file is bound to the model it was measured with (its sha256).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ser_live.realtime.config import EngineConfig
from ser_live.realtime.errors import UserError
from ser_live.realtime.fileio import check_outputs, loads_json, save_json
from ser_live.realtime.model import EmotionModel
from ser_live.realtime.sources.audio import audio_info, iter_audio_blocks, sanitize_block
from ser_live.realtime.stages.pipeline import FeaturePipeline

logger = logging.getLogger(__name__)

DEPLOYMENT_FORMAT = "ser-live-deployment"
DEPLOYMENT_VERSION = 1
MIN_WINDOWS = 50  # fewer speech windows (~25 s of speech) give a spread too noisy to normalise with
FEW_WINDOWS = 200  # below this a warning: the statistics of a few speakers stand for the whole deployment
MAX_DEPLOYMENT_BYTES = 4 * 2**20
SPAN_S = 30.0  # audio read and featurised per step (memory stays flat for long files)


@dataclass(frozen=True)
class DeploymentStats:
    """The mean and standard deviation of a deployment's window embeddings, for one model file."""

    model_name: str
    model_sha256: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    windows: int
    files: int
    speech_s: float = 0.0
    created: str = ""
    source: str = ""  # where it was read from (not saved)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": DEPLOYMENT_FORMAT, "version": DEPLOYMENT_VERSION, "model": self.model_name,
            "model_sha256": self.model_sha256, "windows": self.windows, "files": self.files,
            "speech_s": round(self.speech_s, 2), "created": self.created,
            "mean": [round(v, 6) for v in self.mean], "std": [round(v, 6) for v in self.std],
        }

    @classmethod
    def from_dict(cls, d: Any, source: str = "deployment statistics") -> DeploymentStats:
        def bad(why: str) -> UserError:
            return UserError(f"{source} is not valid deployment statistics ({why}): write it again with ser-stats")

        if not isinstance(d, Mapping) or d.get("format") != DEPLOYMENT_FORMAT:
            raise bad(f"no \"format\": \"{DEPLOYMENT_FORMAT}\"")
        if d.get("version") != DEPLOYMENT_VERSION:
            raise bad(f"version {d.get('version')!r}, this ser-live reads version {DEPLOYMENT_VERSION}")
        mean, std = d.get("mean"), d.get("std")
        if not isinstance(mean, list) or not isinstance(std, list) or not mean or len(mean) != len(std):
            raise bad("mean and std must be lists of one length")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in mean + std):
            raise bad("mean and std must hold finite numbers")
        if not all(v > 0 for v in std):
            raise bad("every std must be above 0")
        windows, files = d.get("windows"), d.get("files")
        for name, value in (("windows", windows), ("files", files)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise bad(f"{name} must be a whole number >= 1")
        if not isinstance(d.get("model_sha256"), str) or len(d["model_sha256"]) != 64:
            raise bad("model_sha256 must be a sha256")
        speech = d.get("speech_s", 0.0)
        return cls(model_name=str(d.get("model", "")), model_sha256=d["model_sha256"],
                   mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std), windows=int(windows),
                   files=int(files), speech_s=float(speech) if isinstance(speech, int | float) else 0.0,
                   created=str(d.get("created", "")), source=source)

    def check_model(self, model: EmotionModel) -> None:
        """UserError unless these statistics were measured with ``model``'s file (or one computing the same)."""
        if self.model_sha256 not in model.profile_sha256s:
            raise UserError(f"{self.source or 'the deployment statistics'} was measured with another model "
                            f"({self.model_name or 'unnamed'}), not {model.path.name}: measure them again with "
                            f"ser-stats --model {model_arg(model)}")

    def apply(self, model: EmotionModel) -> EmotionModel:
        """``model`` with these statistics as its session normaliser's prior."""
        model.require_session_norm()  # (that refusal before "another model")
        self.check_model(model)
        return model.with_session_prior(self.mean, self.std)

    def describe(self) -> str:
        return (f"deployment statistics for {self.model_name or 'a model'} ({self.model_sha256[:12]}): "
                f"{self.windows} windows from {self.files} files, {self.speech_s / 60:.1f} min of speech")

    def save(self, path: str | os.PathLike[str], overwrite: bool = False, inputs: Mapping[str, Path] | None = None,
             ) -> Path:
        """Write atomically to a new file (an existing one only with ``overwrite``; never an input)."""
        target = Path(path).expanduser()
        check_outputs({"-o": target}, inputs, overwrite=overwrite)
        return save_json(target, self.to_dict(), "deployment statistics")


def model_arg(model: EmotionModel) -> str:
    """How ``--model`` names ``model``: a bundled name, else its path."""
    from ser_live.realtime.model import BUNDLED_NAMES, resolve_model_path

    stem = model.path.stem
    if stem in BUNDLED_NAMES and resolve_model_path(stem).resolve() == model.path.resolve():
        return stem
    return str(model.path)


def load_deployment(path: str | os.PathLike[str]) -> DeploymentStats:
    """Read a deployment statistics file (UserError, one line, when it cannot be used)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"deployment statistics {p} not found: write them with ser-stats AUDIO... -o {p.name}")
    if p.stat().st_size > MAX_DEPLOYMENT_BYTES:
        raise UserError(f"{p} is {p.stat().st_size} bytes, too large for deployment statistics: check the path")
    try:
        data = loads_json(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:  # UnicodeDecodeError is a ValueError
        raise UserError(f"cannot read {p} as JSON ({type(err).__name__}): write it again with ser-stats") from None
    return DeploymentStats.from_dict(data, str(p))


class StatsAccumulator:
    """Running sums of window embeddings (float64), then their mean and standard deviation."""

    def __init__(self) -> None:
        self.n = 0
        self.files = 0
        self.speech_s = 0.0
        self._sum: np.ndarray | None = None
        self._sum_sq: np.ndarray | None = None

    def add(self, rows: np.ndarray, speech_s: float = 0.0, new_file: bool = True) -> None:
        """A file's (or a channel's) window embeddings ``(windows, dim)``."""
        self.files += new_file
        self.speech_s += speech_s
        if len(rows) == 0:
            return
        x = np.asarray(rows, np.float64).reshape(len(rows), -1)
        if self._sum is None or self._sum_sq is None:
            self._sum, self._sum_sq = np.zeros(x.shape[1]), np.zeros(x.shape[1])
        self._sum += x.sum(axis=0)
        self._sum_sq += np.square(x).sum(axis=0)
        self.n += len(x)

    def result(self, model: EmotionModel) -> DeploymentStats:
        if self.n < MIN_WINDOWS or self._sum is None or self._sum_sq is None:
            raise UserError(f"deployment statistics need at least {MIN_WINDOWS} speech windows (about "
                            f"{MIN_WINDOWS // 2} s of speech); these {self.files} files hold {self.n}: give more "
                            "recordings")
        if self.n < FEW_WINDOWS:
            logger.warning("only %d speech windows: statistics of so little speech may not stand for the deployment "
                           "(a few hundred windows, many speakers, are better)", self.n)
        mean = self._sum / self.n
        std = np.sqrt(np.maximum(self._sum_sq / self.n - np.square(mean), 0.0)) + 1e-6
        return DeploymentStats(model_name=model.path.stem, model_sha256=model.sha256,
                               mean=tuple(map(float, mean)), std=tuple(map(float, std)), windows=self.n,
                               files=self.files, speech_s=self.speech_s,
                               created=datetime.now(timezone.utc).isoformat(timespec="seconds"))


def file_embeddings(model: EmotionModel, path: str | os.PathLike[str], config: EngineConfig | None = None,
                    channel: int | None = None) -> tuple[np.ndarray, float]:
    """A file's raw window embeddings (before the session normaliser; the windows the engine classifies, cut as it
    cuts them) and its seconds of detected speech. ``channel``: one channel, else the mix."""
    raw = model.without_session_norm()  # UserError: the model has no session normaliser
    encoder = raw.encoder
    assert encoder is not None
    info = audio_info(path)
    cfg = (config or EngineConfig()).pipeline_config(raw)
    pipeline = FeaturePipeline(cfg, info.sample_rate, input_norm=raw.info.input_norm, encoder=encoder)
    rows = []
    for block in iter_audio_blocks(path, max(1, int(SPAN_S * info.sample_rate))):
        samples = sanitize_block(block if channel is None else block[:, channel])
        rows += [w.features for w in pipeline.process(samples) if w.features is not None]
    rows += [w.features for w in pipeline.flush() if w.features is not None]
    speech_s = pipeline.state.speech_samples / cfg.sample_rate
    return (np.stack(rows) if rows else np.zeros((0, 2 * encoder.dim), np.float32)), speech_s


def measure(model: EmotionModel, paths: Iterable[str | os.PathLike[str]], config: EngineConfig | None = None,
            on_file: Callable[[str, int, str], None] | None = None, channels: str = "mix") -> DeploymentStats:
    """Deployment statistics over ``paths`` (``channels`` "split": every channel of a file on its own).
    ``on_file(path, windows, error)`` after each file; a file that cannot be read is skipped (its error given).
    UserError at once for a model without a session normaliser."""
    model.require_session_norm()
    acc = StatsAccumulator()
    for path in paths:
        try:
            n_channels = audio_info(path).channels if channels == "split" else 1
            windows = 0
            for ch in range(n_channels):
                rows, speech_s = file_embeddings(model, path, config, ch if channels == "split" else None)
                acc.add(rows, speech_s, new_file=ch == 0)
                windows += len(rows)
        except UserError as err:
            if on_file is not None:
                on_file(str(path), 0, str(err))
            continue
        if on_file is not None:
            on_file(str(path), windows, "")
    return acc.result(model)
