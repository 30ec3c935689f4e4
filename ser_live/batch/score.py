"""One file -> its rows and window events, through the live :class:`realtime.engine.Engine` (batched inference).

:class:`FileScorer` holds one ONNX Runtime session and one engine per input rate; a worker process or a Ray actor
makes one and calls :meth:`FileScorer.score` for each file. Results are plain JSON-ready dicts, so they cross
process boundaries and go into the resume journal as they are.
"""

from __future__ import annotations

import logging
import os
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ser_live.batch.store import WindowColumns
from ser_live.realtime.api import clip_verdict
from ser_live.realtime.config import EngineConfig
from ser_live.realtime.deployment import DeploymentStats
from ser_live.realtime.engine import OFFLINE_SPAN_S, Engine
from ser_live.realtime.errors import UserError
from ser_live.realtime.events import WindowEvent
from ser_live.realtime.fileio import file_sha256
from ser_live.realtime.model import EmotionModel, load_model, resolve_model_path
from ser_live.realtime.profile import Profile
from ser_live.realtime.sources.audio import audio_info, iter_audio_blocks

logger = logging.getLogger(__name__)

CHANNELS_MIX = "mix"
CHANNELS_SPLIT = "split"
CHANNEL_MODES = (CHANNELS_MIX, CHANNELS_SPLIT)
STATUS_OK = "ok"
STATUS_NO_SPEECH = "no_speech"
STATUS_ERROR = "error"
STREAMING_BLOCK_S = 0.1  # --streaming-path: the live engine's blocks (the events do not depend on the size)
PROFILE_ALL = "all"
DECIMALS = 6


@dataclass(frozen=True)
class BatchSettings:
    """Everything that decides a file's result besides the model (part of the resume key)."""

    channels: str = CHANNELS_MIX
    engine: EngineConfig = field(default_factory=EngineConfig)
    # personal profiles (their JSON, so that every worker and Ray node has them): PROFILE_ALL for every stream,
    # "0" / "1" for the left / right channel with --channels split (they win over PROFILE_ALL)
    profiles: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, hash=False)
    streaming_path: bool = False  # feed the live engine block by block, one model call per window (comparison)
    # deployment statistics (their JSON, as the profiles): the session normaliser's prior for every stream
    deployment: Mapping[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if self.channels not in CHANNEL_MODES:
            raise UserError(f"--channels {self.channels!r} is not one of {', '.join(CHANNEL_MODES)}")
        per_channel = sorted(set(self.profiles) - {PROFILE_ALL})
        if per_channel and self.channels != CHANNELS_SPLIT:
            raise UserError("--profile-left/--profile-right need --channels split (use --profile for mixed audio)")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"channels": self.channels, "engine": asdict(self.engine)}
        if self.profiles:  # runs without profiles keep their resume key
            out["profiles"] = {k: dict(v) for k, v in sorted(self.profiles.items())}
        if self.streaming_path:
            out["streaming_path"] = True
        if self.deployment is not None:
            out["deployment"] = dict(self.deployment)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BatchSettings:
        return cls(channels=str(d["channels"]), engine=EngineConfig(**dict(d["engine"])),
                   profiles={str(k): dict(v) for k, v in (d.get("profiles") or {}).items()},
                   streaming_path=bool(d.get("streaming_path", False)),
                   deployment=None if d.get("deployment") is None else dict(d["deployment"]))

    def profile_for(self, channel: int | None) -> Mapping[str, Any] | None:
        """The profile JSON of a stream (``channel`` None: the mix)."""
        if channel is not None and str(channel) in self.profiles:
            return self.profiles[str(channel)]
        return self.profiles.get(PROFILE_ALL)


def model_identity(model_path: str | None) -> dict[str, str]:
    path = resolve_model_path(model_path).resolve()
    if not path.is_file():
        raise UserError(f"model file {path} not found: check the path, or omit --model to use the bundled model")
    return {"name": path.stem, "path": str(path), "sha256": file_sha256(path)}


def file_key(path: str | Path) -> dict[str, Any]:
    """What identifies a file's content for resuming: its path, size and modification time."""
    st = os.stat(path)
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _r(value: float) -> float:
    return round(float(value), DECIMALS)


class FileScorer:
    """Scores files one at a time with one model session (``threads`` ONNX Runtime threads)."""

    def __init__(self, model_path: str | None, settings: BatchSettings, threads: int = 1) -> None:
        self.settings = settings
        self.model: EmotionModel = load_model(model_path, provider="cpu", threads=threads)
        if settings.deployment is not None:
            self.model = DeploymentStats.from_dict(settings.deployment, "--deployment").apply(self.model)
        self.labels = self.model.labels
        self._models: dict[str, EmotionModel] = {}
        for key, data in settings.profiles.items():
            self._models[key] = self.model.with_profile(Profile.from_dict(data, f"profile {data.get('name', key)}"))
        self._engines: dict[tuple[int, str], Engine] = {}

    def _engine(self, rate: int, channel: int | None = None) -> Engine:
        key = str(channel) if channel is not None and str(channel) in self._models else PROFILE_ALL
        if (rate, key) not in self._engines:
            model = self._models.get(key, self.model)
            self._engines[(rate, key)] = Engine(model, rate, self.settings.engine)
        return self._engines[(rate, key)]

    def score(self, path: str) -> dict[str, Any]:
        """``{"key": file_key, "rows": [...], "windows": WindowColumns or []}``; a bad file gives one ``error``
        row."""
        try:
            key = file_key(path)
        except OSError as err:
            key = {"path": str(path), "size": -1, "mtime_ns": -1}
            return {"key": key, "rows": [self._error_row(path, CHANNELS_MIX, f"cannot read the file: {err.strerror}")],
                    "windows": []}
        try:
            info = audio_info(path)
            channels = [None] if self.settings.channels == CHANNELS_MIX else list(range(info.channels))
            rows, windows = [], WindowColumns(self.labels)
            for channel in channels:
                row, channel_windows = self._score_channel(path, info.sample_rate, channel)
                row["note"] = info.truncation_note  # a WAV/AIFF cut short: what is there is scored
                rows.append(row)
                windows.extend(channel_windows)
            return {"key": key, "rows": rows, "windows": windows}
        except UserError as err:
            return {"key": key, "rows": [self._error_row(path, self._mode_channel(), str(err))], "windows": []}
        except Exception as err:
            logger.debug("scoring %s failed", path, exc_info=True)
            message = f"{type(err).__name__}: {err}".splitlines()[0]
            return {"key": key, "rows": [self._error_row(path, self._mode_channel(), message)], "windows": []}

    def _mode_channel(self) -> str:
        return CHANNELS_MIX if self.settings.channels == CHANNELS_MIX else "all"

    @staticmethod
    def _streamed(engine: Engine, blocks: Iterator[np.ndarray]) -> Iterator[WindowEvent]:
        """``--streaming-path``: the live engine block by block, one model call per window."""
        engine.reset()
        for block in blocks:
            yield from engine.feed(block)
        yield from engine.flush()

    def _blocks(self, path: str, rate: int, channel: int | None) -> Iterator[np.ndarray]:
        seconds = STREAMING_BLOCK_S if self.settings.streaming_path else OFFLINE_SPAN_S
        for block in iter_audio_blocks(path, max(1, int(seconds * rate))):
            yield block if channel is None else block[:, channel]

    def _score_channel(self, path: str, rate: int, channel: int | None) -> tuple[dict[str, Any], WindowColumns]:
        """The file's row and its window rows, converted as the events come (no event is kept: memory stays small
        for files of many hours)."""
        engine = self._engine(rate, channel)
        blocks = self._blocks(path, rate, channel)
        # the whole-signal path (long spans, many windows per model call, the same events), or the live one
        events = self._streamed(engine, blocks) if self.settings.streaming_path else engine.iter_batched(blocks)
        name = CHANNELS_MIX if channel is None else str(channel)
        labels = self.labels
        windows = WindowColumns(labels)
        raw = array("d")  # every window's raw probabilities, flat (8 bytes a value: long files stay small)
        heads = array("d")
        uncertain = 0
        for e in events:
            windows.append(self._window(path, name, e))
            raw.extend([e.raw_probs[label] for label in labels])
            if engine.model.has_head:
                heads.extend((e.raw_arousal, e.raw_valence))
            uncertain += e.uncertain
        row: dict[str, Any] = {
            "path": str(path),
            "channel": name,
            "status": STATUS_OK if windows else STATUS_NO_SPEECH,
            "error": "",
            "duration_s": _r(engine.summary.audio_s),
            "speech_s": _r(engine.summary.speech_s),
            "windows": len(windows),
            "label": "",
            "confidence": None,
            "arousal": None,
            "valence": None,
            "uncertain_windows": uncertain,
            "profile": engine.profile_name or "",
        }
        probs = {label: None for label in labels}
        # EmotionRecognizer.predict_file's verdict
        verdict = clip_verdict(engine.model, np.frombuffer(raw, dtype=np.float64).reshape(-1, len(labels)),
                               np.frombuffer(heads, dtype=np.float64).reshape(-1, 2) if engine.model.has_head else None)
        if verdict.label is not None:
            row["label"], row["confidence"] = verdict.label, _r(verdict.confidence)
            if verdict.arousal is not None and verdict.valence is not None:
                row["arousal"], row["valence"] = _r(verdict.arousal), _r(verdict.valence)
            probs = {label: _r(p) for label, p in verdict.probs.items()}
        row.update({f"prob_{label}": p for label, p in probs.items()})
        return row, windows

    def _window(self, path: str, channel: str, e: WindowEvent) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": str(path),
            "channel": channel,
            "start_s": _r(e.start_s),
            "end_s": _r(e.end_s),
            "label": e.label,
            "confidence": _r(e.confidence),
            "uncertain": bool(e.uncertain),
            "arousal": None if e.arousal is None else _r(e.arousal),
            "valence": None if e.valence is None else _r(e.valence),
            "speech_ratio": _r(e.speech_ratio),
        }
        out.update({f"prob_{k}": _r(v) for k, v in e.probs.items()})
        out.update({f"raw_{k}": _r(v) for k, v in e.raw_probs.items()})
        return out

    def _error_row(self, path: str, channel: str, message: str) -> dict[str, Any]:
        row: dict[str, Any] = {
            "path": str(path), "channel": channel, "status": STATUS_ERROR, "error": message.splitlines()[0],
            "duration_s": None, "speech_s": None, "windows": 0, "label": "", "confidence": None, "arousal": None,
            "valence": None, "uncertain_windows": 0, "profile": "", "note": "",
        }
        row.update({f"prob_{label}": None for label in self.labels})
        return row
