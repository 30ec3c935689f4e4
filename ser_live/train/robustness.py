"""How a model holds up: held-out clips scored clean and under gain, channel, noise, shifted streams and sessions.

Every clip goes through the live :class:`ser_live.realtime.engine.Engine` (resample, VAD, windows, features, input
normalisation, ONNX model), exactly as ``ser-live --file`` would send it; a clip's verdict is the mean of its
windows' raw probabilities (``EmotionRecognizer.predict``). Conditions (``CONDITIONS``):

``clean``                 the clip as recorded
``gain-20`` ... ``gain+20``  scaled by -20/-10/+10/+20 dB, clipped to [-1, 1] as an input stage clips
``telephone``             300-3400 Hz and 8 kHz (``ser_live.train.augment.telephone``)
``reverb``                a synthetic room, RT60 0.5 s, direct-to-reverberant ratio 3 dB
``noise20`` / ``noise10``  coloured noise at 20 / 10 dB SNR
``shift``                 the stream starts a random fraction of a hop earlier (silence prepended): a microphone
                          starts at an arbitrary moment, so the window grid falls elsewhere on the speech
``session``               each speaker's clips joined with ``SESSION_PAUSE_S`` pauses into one stream at one random
                          gain (+/- 20 dB) through one engine; a clip's verdict is the mean of the windows whose
                          centre lies inside it — the way the product is used live

For each condition: clip UAR, accuracy, macro-F1, **agreement** with the clean verdict (share of the clips
scored in both whose label is the same), the share of the most frequent verdict (a collapse check), and how many
clips got a verdict. Every degradation is deterministic given the seed and the clip's path.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ser_live.realtime.api import clip_prediction
from ser_live.realtime.config import EngineConfig
from ser_live.realtime.engine import Engine
from ser_live.realtime.errors import UserError
from ser_live.realtime.model import EmotionModel
from ser_live.realtime.sources.audio import read_audio
from ser_live.train import metrics as scores
from ser_live.train.corpora import Record

logger = logging.getLogger(__name__)

CLEAN = "clean"
SESSION = "session"
GAINS_DB = (-20.0, -10.0, 10.0, 20.0)
REVERB_RT60_S = 0.5
REVERB_DRR_DB = 3.0
NOISE_SNRS_DB = (20.0, 10.0)
SESSION_PAUSE_S = 0.6
SESSION_GAIN_DB = 20.0
FEED_BLOCK_S = 1.0  # what ser-live --file --fast feeds (results do not depend on it)
CLIP_LEVEL = 1.0
SEED_BYTES = 4


def _gain_name(db: float) -> str:
    return f"gain{db:+.0f}"


CONDITIONS: tuple[str, ...] = (
    CLEAN,
    *(_gain_name(db) for db in GAINS_DB),
    "telephone",
    "reverb",
    *(f"noise{snr:.0f}" for snr in NOISE_SNRS_DB),
    "shift",
    SESSION,
)


def clip_rng(seed: int, record: Record, condition: str) -> np.random.Generator:
    """A generator that depends only on the seed, the clip's path and the condition."""
    digest = hashlib.sha1(f"{record.path}|{condition}".encode()).digest()[:SEED_BYTES]
    return np.random.default_rng([seed, int.from_bytes(digest, "little")])


def degrade(samples: np.ndarray, rate: int, condition: str, rng: np.random.Generator, hop_s: float) -> np.ndarray:
    """One clip under one per-clip condition (not ``session``)."""
    if condition == CLEAN:
        return samples
    from ser_live.train import augment  # audiomentations: imported when a clip is degraded, not for --help

    if condition.startswith("gain"):
        return np.clip(samples * np.float32(10 ** (float(condition[4:]) / 20)), -CLIP_LEVEL, CLIP_LEVEL)
    if condition == "telephone":
        return augment.telephone(samples, rate)
    if condition == "reverb":
        return augment.add_reverb(samples, rate, rng, REVERB_RT60_S, REVERB_DRR_DB)
    if condition.startswith("noise"):
        snr = float(condition[5:])
        return augment.add_noise_snr(samples, rate, rng, (snr, snr))
    if condition == "shift":
        lead = int(rng.uniform(0.05, 0.95) * hop_s * rate)
        return np.concatenate([np.zeros(lead, np.float32), samples])
    raise UserError(f"unknown condition {condition!r}: use one of {', '.join(CONDITIONS)}")


@dataclass
class ConditionResult:
    """Verdicts of one model under one condition: clip index -> mean window probabilities, and -> the clip's
    arousal and valence (both from ``ser_live.realtime.api.clip_prediction``; absent when the model has no mapping)."""

    condition: str
    probs: dict[int, np.ndarray] = field(default_factory=dict)
    affect: dict[int, np.ndarray] = field(default_factory=dict)

    def add(self, model: EmotionModel, index: int, events: Sequence[Any]) -> None:
        """Record clip ``index``'s verdict from its window events (nothing when it has none)."""
        verdict = clip_prediction(model, list(events))
        if verdict.label is None:
            return
        self.probs[index] = np.array([verdict.probs[label] for label in model.labels])
        if verdict.arousal is not None and verdict.valence is not None:
            self.affect[index] = np.array([verdict.arousal, verdict.valence])


@dataclass(frozen=True)
class EvalClip:
    record: Record
    samples: np.ndarray
    rate: int


def load_clips(records: Sequence[Record], progress: Callable[[int], None] | None = None) -> tuple[
    list[EvalClip], list[tuple[str, str]]
]:
    """Read every clip once (mono float32); unreadable ones are returned as (path, reason)."""
    clips: list[EvalClip] = []
    bad: list[tuple[str, str]] = []
    for record in records:
        try:
            samples, rate = read_audio(record.path)
        except UserError as err:
            bad.append((str(record.path), str(err)))
        else:
            mono = samples if samples.ndim == 1 else samples.mean(axis=1)
            clips.append(EvalClip(record, np.ascontiguousarray(mono, dtype=np.float32), int(rate)))
        if progress is not None:
            progress(1)
    return clips, bad


def replay(engine: Engine, samples: np.ndarray, rate: int) -> list[Any]:
    """A clip through a reset engine, fed as `ser-live --file --fast` feeds it; its window events."""
    engine.reset()
    step = max(1, int(FEED_BLOCK_S * rate))
    events = []
    for i in range(0, len(samples), step):
        events += engine.feed(samples[i : i + step])
    return events + engine.flush()


def score_condition(
    model: EmotionModel,
    clips: Sequence[EvalClip],
    condition: str,
    seed: int,
    progress: Callable[[int], None] | None = None,
) -> ConditionResult:
    """Verdicts of ``model`` on every clip under one condition."""
    result = ConditionResult(condition)
    engines: dict[int, Engine] = {}

    def engine_for(rate: int) -> Engine:
        if rate not in engines:
            engines[rate] = Engine(model, rate, EngineConfig())
        return engines[rate]

    if condition == SESSION:
        by_speaker: dict[str, list[int]] = {}
        for i, clip in enumerate(clips):
            by_speaker.setdefault(clip.record.speaker, []).append(i)
        for speaker, members in sorted(by_speaker.items()):
            rng = np.random.default_rng([seed, int.from_bytes(hashlib.sha1(speaker.encode()).digest()[:4], "little")])
            order = [members[j] for j in rng.permutation(len(members))]
            rate = clips[order[0]].rate
            gain = np.float32(10 ** (rng.uniform(-SESSION_GAIN_DB, SESSION_GAIN_DB) / 20))
            pause = np.zeros(int(SESSION_PAUSE_S * rate), np.float32)
            parts, spans, position = [], [], 0
            for i in order:
                clip = clips[i]
                samples = clip.samples if clip.rate == rate else _resampled(clip, rate)
                spans.append((i, position / rate, (position + len(samples)) / rate))
                parts += [samples, pause]
                position += len(samples) + len(pause)
            stream = np.clip(np.concatenate(parts) * gain, -CLIP_LEVEL, CLIP_LEVEL)
            events = replay(engine_for(rate), stream, rate)
            for i, start_s, end_s in spans:
                result.add(model, i, [e for e in events if start_s <= (e.start_s + e.end_s) / 2 < end_s])
            if progress is not None:
                progress(len(members))
        return result
    hop_s = 0.0
    for i, clip in enumerate(clips):
        engine = engine_for(clip.rate)
        hop_s = engine.hop_s
        samples = degrade(clip.samples, clip.rate, condition, clip_rng(seed, clip.record, condition), hop_s)
        result.add(model, i, replay(engine, samples, clip.rate))
        if progress is not None:
            progress(1)
    return result


def _resampled(clip: EvalClip, rate: int) -> np.ndarray:
    import soxr

    return np.asarray(soxr.resample(clip.samples, clip.rate, rate), dtype=np.float32)


def summarize(
    labels: Sequence[str],
    clips: Sequence[EvalClip],
    results: Mapping[str, ConditionResult],
) -> dict[str, Any]:
    """Figures of one model: per condition UAR, accuracy, macro-F1, agreement with clean, collapse share, and
    (when the model gives arousal/valence) binary arousal/valence accuracy of the clip verdicts."""
    extra = sorted({c.record.label for c in clips} - set(labels))
    eval_labels = [*labels, *extra]
    truth = np.array([eval_labels.index(c.record.label) for c in clips])
    ids = list(range(len(eval_labels)))
    clean = results.get(CLEAN)
    out: dict[str, Any] = {"labels": list(labels), "labels_not_in_model": extra, "conditions": {}}
    for name, result in results.items():
        idx = np.array(sorted(result.probs), dtype=int)
        entry: dict[str, Any] = {"clips": len(clips), "scored": len(idx)}
        if len(idx):
            pred = np.array([int(np.argmax(result.probs[i])) for i in idx])
            m = scores.metrics_dict(truth[idx], pred, ids, eval_labels)
            counts = np.bincount(pred, minlength=len(labels))
            entry |= {
                "uar": m["uar"],
                "accuracy": m["accuracy"],
                "macro_f1": m["macro_f1"],
                "recall": {n: m["per_class"][n]["recall"] for n in eval_labels if n in m["per_class"]},
                "verdicts": {n: int(c) for n, c in zip(labels, counts, strict=False)},
                "top_verdict_share": float(counts.max() / counts.sum()),
            }
            if all(i in result.affect for i in idx):
                values = np.stack([result.affect[i] for i in idx])
                coords, known, valenced = scores.affect_truth(eval_labels, truth[idx])
                entry["affect"] = scores.affect_scores(values, coords, known, valenced)
            if clean is not None and name != CLEAN:
                both = [i for i in idx if i in clean.probs]
                if both:
                    same = [int(np.argmax(result.probs[i])) == int(np.argmax(clean.probs[i])) for i in both]
                    entry["agreement"] = float(np.mean(same))
                    entry["agreement_clips"] = len(both)
        out["conditions"][name] = entry
    return out
