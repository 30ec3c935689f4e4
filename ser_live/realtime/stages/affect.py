"""Arousal and valence from class probabilities, and the calibration a model file may carry.

**Dimensions.** A window's arousal and valence, each in [-1, 1], come from its class probabilities. By default
they are the probability-weighted mean of each emotion word's coordinates in the **NRC Valence, Arousal, and
Dominance Lexicon** (version 1, 2018): Saif M. Mohammad, "Obtaining Reliable Human Ratings of Valence, Arousal,
and Dominance for 20,000 English Words", Proceedings of ACL 2018, https://saifmohammad.com/WebPages/nrc-vad.html
(free for research and non-commercial use, as the bundled model is). The lexicon rates words in [0, 1] by
best-worst scaling; here ``2 x - 1`` maps them to [-1, 1]. Each label takes the lexicon entry of its emotion
noun (``angry`` -> *anger*, ``happy`` -> *happiness*, ...; :data:`LEXICON_WORD`); a label the table does not
know contributes nothing (the others are renormalised), and a model whose labels are all unknown has no
dimensions (``None``).

A model file may instead carry a fitted linear head (``metadata["affect"]``, method ``linear``: arousal and
valence = tanh(W . log p + b)), written by ``ser-calibrate``; or a head trained with the network (method
``head``: the graph has a second output ``affect`` = [arousal, valence], ``ser-train --affect-weight``), whose
values the engine smooths like the probabilities; see :class:`AffectMap`.

**Calibration.** ``metadata["calibration"]`` may hold a ``temperature`` T and ``min_confidence``, both fitted on
validation speakers by ``ser-calibrate``. The engine applies T to the *smoothed* probabilities of each window (the
ones ser-live shows: p^(1/T), renormalised), so that the displayed confidence is calibrated; ``raw_probs`` stay the
graph's softmax. A window whose calibrated top probability is below ``min_confidence`` is reported as *uncertain*.
Old models have neither: T = 1 and no uncertain state.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from ser_live.realtime.errors import UserError

logger = logging.getLogger(__name__)

# NRC VAD Lexicon v1 (Mohammad 2018), (valence, arousal) in [0, 1], copied from the lexicon's entries.
NRC_VAD_2018: dict[str, tuple[float, float]] = {
    "anger": (0.167, 0.865),
    "calm": (0.875, 0.100),
    "disgust": (0.052, 0.775),
    "fear": (0.073, 0.840),
    "happiness": (0.960, 0.732),
    "neutral": (0.469, 0.184),
    "sadness": (0.052, 0.288),
    "surprise": (0.875, 0.875),
}
LEXICON_CITATION = (
    "NRC VAD Lexicon v1: S. M. Mohammad, Obtaining Reliable Human Ratings of Valence, Arousal, and Dominance "
    "for 20,000 English Words, ACL 2018"
)
# The lexicon word of each label name the corpus loaders produce (and common synonyms).
LEXICON_WORD: dict[str, str] = {
    "angry": "anger",
    "anger": "anger",
    "calm": "calm",
    "disgust": "disgust",
    "disgusted": "disgust",
    "fear": "fear",
    "fearful": "fear",
    "happy": "happiness",
    "happiness": "happiness",
    "joy": "happiness",
    "neutral": "neutral",
    "sad": "sadness",
    "sadness": "sadness",
    "surprise": "surprise",
    "surprised": "surprise",
}
METHOD_LEXICON = "lexicon"
METHOD_LINEAR = "linear"
METHOD_HEAD = "head"  # the graph's own output AFFECT_OUTPUT
AFFECT_OUTPUT = "affect"
METHODS = (METHOD_LEXICON, METHOD_LINEAR, METHOD_HEAD)
AFFECT_KEY = "affect"
CALIBRATION_KEY = "calibration"
LOG_FLOOR = 1e-7  # probabilities are floored here before a log (a linear head on log-probabilities)
DIMENSIONS = ("arousal", "valence")


def lexicon_coordinates(label: str) -> tuple[float, float] | None:
    """(arousal, valence) in [-1, 1] of a label from the NRC VAD lexicon, or None when the table lacks it."""
    word = LEXICON_WORD.get(label.strip().lower())
    if word is None:
        return None
    valence, arousal = NRC_VAD_2018[word]
    return 2.0 * arousal - 1.0, 2.0 * valence - 1.0


@dataclass(frozen=True)
class AffectMap:
    """Class probabilities ``[..., n_labels]`` -> arousal and valence ``[..., 2]`` (in that order), in [-1, 1].

    ``method`` ``lexicon``: ``coords`` is ``[n_labels, 2]`` and the result is the probability-weighted mean over
    the labels with coordinates (``known``). ``linear``: ``weights`` ``[n_labels, 2]`` and ``bias`` ``[2]``, the
    result is tanh(log p . W + b). ``head``: the values come from the graph (:attr:`from_graph`); calling the map
    is then an error: use :meth:`values`.
    """

    labels: tuple[str, ...]
    method: str
    coords: tuple[tuple[float, float], ...]
    known: tuple[bool, ...]
    bias: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def lexicon(cls, labels: Sequence[str]) -> AffectMap | None:
        found = [lexicon_coordinates(label) for label in labels]
        if not any(c is not None for c in found):
            return None
        coords = tuple((0.0, 0.0) if c is None else c for c in found)
        return cls(tuple(labels), METHOD_LEXICON, coords, tuple(c is not None for c in found))

    @classmethod
    def linear(cls, labels: Sequence[str], weights: np.ndarray, bias: Sequence[float]) -> AffectMap:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (len(labels), len(DIMENSIONS)) or len(bias) != len(DIMENSIONS):
            raise UserError(
                f"an affect head needs weights [{len(labels)}, 2] and bias [2], got {list(w.shape)} and "
                f"{len(bias)}: re-run ser-calibrate"
            )
        if not np.all(np.isfinite(w)) or not all(math.isfinite(float(b)) for b in bias):
            raise UserError("the affect head holds non-finite numbers: re-run ser-calibrate")
        rows = tuple((float(a), float(v)) for a, v in w)
        return cls(tuple(labels), METHOD_LINEAR, rows, (True,) * len(labels), (float(bias[0]), float(bias[1])))

    @classmethod
    def head(cls, labels: Sequence[str]) -> AffectMap:
        """Arousal and valence from the graph's ``affect`` output (a head trained with the network)."""
        return cls(tuple(labels), METHOD_HEAD, (), ())

    @property
    def from_graph(self) -> bool:
        return self.method == METHOD_HEAD

    @classmethod
    def for_model(
        cls,
        labels: Sequence[str],
        meta: Mapping[str, Any] | None,
        source: str = "model",
        graph_head: bool = False,
    ) -> AffectMap | None:
        """What the metadata names: the lexicon mapping (also when it names nothing; None: no known label), a
        linear head, or the graph's own head (``graph_head``: the graph has an ``affect`` output)."""
        if not meta:
            return cls.lexicon(labels)
        if not isinstance(meta, Mapping) or meta.get("method") not in METHODS:
            raise UserError(
                f"{source}: the metadata 'affect' is not a lexicon, linear or trained head: re-run ser-calibrate"
            )
        if meta["method"] == METHOD_LEXICON:
            return cls.lexicon(labels)
        if meta["method"] == METHOD_HEAD:
            if not graph_head:
                raise UserError(
                    f"{source}: the metadata names a trained affect head but the graph has no '{AFFECT_OUTPUT}' "
                    "output: re-export it with ser-export"
                )
            return cls.head(labels)
        try:
            return cls.linear(labels, np.asarray(meta["weights"], dtype=np.float64), list(meta["bias"]))
        except (KeyError, TypeError, ValueError) as err:
            raise UserError(f"{source}: the metadata affect head is invalid ({err}): re-run ser-calibrate") from None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"method": self.method, "dimensions": list(DIMENSIONS)}
        if self.method == METHOD_HEAD:
            d |= {"output": AFFECT_OUTPUT, "targets": LEXICON_CITATION}
        elif self.method == METHOD_LINEAR:
            d |= {"weights": [list(row) for row in self.coords], "bias": list(self.bias), "inputs": "log_probs"}
        else:
            d["source"] = LEXICON_CITATION
        return d

    @cached_property
    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """coords, bias and the known-label mask as arrays, made once (the engine calls this every window)."""
        return (np.asarray(self.coords, dtype=np.float64), np.asarray(self.bias, dtype=np.float64),
                np.asarray(self.known, dtype=np.float64))

    def values(self, probs: np.ndarray, head: np.ndarray | None = None) -> np.ndarray:
        """Arousal and valence ``[..., 2]``: the graph head's output ``head`` for a trained head, else the map of
        ``probs``."""
        if self.from_graph:
            if head is None:
                raise ValueError("a trained affect head needs the graph's affect output")
            return np.clip(np.asarray(head, dtype=np.float64), -1.0, 1.0)
        return self(probs)

    def __call__(self, probs: np.ndarray) -> np.ndarray:
        if self.from_graph:
            raise ValueError("a trained affect head reads the graph's output, not probabilities: use values()")
        p = np.asarray(probs, dtype=np.float64)
        coords, bias, mask = self._arrays
        if self.method == METHOD_LINEAR:
            out = np.tanh(np.log(np.maximum(p, LOG_FLOOR)) @ coords + bias)
        else:
            mass = np.maximum((p * mask).sum(axis=-1, keepdims=True), LOG_FLOOR)
            out = (p * mask) @ coords / mass
        return np.clip(out, -1.0, 1.0)


@dataclass(frozen=True)
class Calibration:
    """Temperature scaling and the uncertain threshold of a model (``metadata["calibration"]``)."""

    temperature: float = 1.0
    min_confidence: float = 0.0  # 0 = no uncertain state
    raw: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise UserError(f"calibration temperature {self.temperature} must be a positive number")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise UserError(f"min confidence {self.min_confidence} is out of range: use a probability in [0, 1]")

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any] | None, source: str = "model") -> Calibration:
        if not meta:
            return cls()
        if not isinstance(meta, Mapping):
            raise UserError(f"{source}: the metadata 'calibration' is not a JSON object: re-run ser-calibrate")
        try:
            return cls(float(meta.get("temperature", 1.0)), float(meta.get("min_confidence", 0.0)), dict(meta))
        except (TypeError, ValueError) as err:
            raise UserError(f"{source}: the metadata calibration is invalid ({err}): re-run ser-calibrate") from None
        except UserError as err:
            raise UserError(f"{source}: {err}: re-run ser-calibrate") from None

    @property
    def enabled(self) -> bool:
        return self.temperature != 1.0

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """p^(1/T) renormalised along the last axis (the softmax of logits / T); identity for T = 1."""
        if not self.enabled:
            return probs
        return temper(probs, self.temperature)


def temper(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax probabilities at another temperature: p^(1/T) / sum(p^(1/T)), computed in the log domain."""
    logp = np.log(np.maximum(np.asarray(probs, dtype=np.float64), np.finfo(np.float64).tiny)) / temperature
    logp -= logp.max(axis=-1, keepdims=True)
    e = np.exp(logp)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
