"""Classification metrics in plain numpy: accuracy, UAR, macro F1, per-class scores, confusion matrix, report.

Conventions (the same as scikit-learn's where they overlap):

- ``labels`` fixes the classes and their order (default: the sorted union of ``y_true`` and ``y_pred``); a value
  outside ``labels`` is an error, not silently dropped. ``target_names`` are display names for the report.
- Precision, recall and F1 of a class with nothing to divide by are 0 (scikit-learn's ``zero_division=0``).
- **Macro averages (UAR = macro recall, macro precision, macro F1) are over the classes that occur in**
  ``y_true``. A class absent from the test part (possible in a speaker split) neither helps nor hurts them;
  its false positives still lower the other classes' scores. When every class occurs in ``y_true`` this equals
  scikit-learn's ``average="macro"``.
- Weighted averages weight each class by its support.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ser_live.realtime.stages.affect import lexicon_coordinates

logger = logging.getLogger(__name__)

DEFAULT_DIGITS = 2
#: Width of each number column in :func:`classification_report` (as scikit-learn's).
REPORT_COLUMN_WIDTH = 9
_REPORT_HEADERS = ("precision", "recall", "f1-score", "support")
_LONGEST_ROW_HEADING = "weighted avg"

ArrayLike = Sequence[Any] | np.ndarray


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _encode(y_true: ArrayLike, y_pred: ArrayLike, labels: ArrayLike | None) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.ndim != 1 or p.ndim != 1 or len(t) != len(p):
        raise ValueError(f"y_true and y_pred must be 1-D of the same length, got shapes {t.shape} and {p.shape}")
    if len(t) == 0:
        raise ValueError("no predictions to score (empty y_true)")
    classes = sorted(set(t.tolist()) | set(p.tolist())) if labels is None else list(np.asarray(labels).tolist())
    if len(set(classes)) != len(classes):
        raise ValueError(f"labels contain duplicates: {classes}")
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({str(v) for v in (*t.tolist(), *p.tolist()) if v not in index})
    if unknown:
        raise ValueError(f"values not in labels {classes}: {', '.join(unknown)}")
    return (
        np.array([index[v] for v in t.tolist()], dtype=np.int64),
        np.array([index[v] for v in p.tolist()], dtype=np.int64),
        classes,
    )


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, labels: ArrayLike | None = None) -> np.ndarray:
    """``cm[i, j]`` = number of examples of class ``labels[i]`` predicted as ``labels[j]`` (rows are truth)."""
    t, p, classes = _encode(y_true, y_pred, labels)
    cm = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Fraction of exact matches."""
    t, p, _ = _encode(y_true, y_pred, None)
    return float(np.mean(t == p))


@dataclass(frozen=True)
class ClassScores:
    """Per-class scores in the order of ``labels``."""

    labels: tuple[Any, ...]
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray  # true examples per class
    confusion: np.ndarray

    @property
    def present(self) -> np.ndarray:
        """Mask of the classes that occur in y_true (those the macro averages run over)."""
        return self.support > 0

    def macro(self, values: np.ndarray) -> float:
        return float(np.mean(values[self.present]))

    def weighted(self, values: np.ndarray) -> float:
        return float(np.sum(values * self.support) / np.sum(self.support))

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion) / np.sum(self.confusion))


def class_scores(y_true: ArrayLike, y_pred: ArrayLike, labels: ArrayLike | None = None) -> ClassScores:
    """Precision, recall, F1 and support of every class (0 where undefined), with the confusion matrix."""
    t, p, classes = _encode(y_true, y_pred, labels)
    cm = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = _safe_divide(tp, predicted)
    recall = _safe_divide(tp, support)
    f1 = _safe_divide(2 * tp, support + predicted)  # = 2PR / (P + R), and 0 where both are 0
    return ClassScores(tuple(classes), precision, recall, f1, support, cm)


def pool_by_clip(probs: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean window probabilities per clip (what ``EmotionRecognizer.predict_file`` reports): the clip ids (sorted)
    and their rows."""
    clips = np.unique(groups)
    pooled = np.stack([probs[groups == c].mean(axis=0) for c in clips]) if len(clips) else probs[:0]
    return clips, pooled


def uar(y_true: ArrayLike, y_pred: ArrayLike, labels: ArrayLike | None = None) -> float:
    """Unweighted average recall (macro recall) over the classes present in ``y_true``."""
    scores = class_scores(y_true, y_pred, labels)
    return scores.macro(scores.recall)


def macro_f1(y_true: ArrayLike, y_pred: ArrayLike, labels: ArrayLike | None = None) -> float:
    """Mean F1 over the classes present in ``y_true``."""
    scores = class_scores(y_true, y_pred, labels)
    return scores.macro(scores.f1)


def _names(scores: ClassScores, target_names: Sequence[str] | None) -> list[str]:
    if target_names is None:
        return [str(c) for c in scores.labels]
    if len(target_names) != len(scores.labels):
        raise ValueError(f"{len(target_names)} target_names for {len(scores.labels)} labels")
    return [str(n) for n in target_names]


def classification_report(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    labels: ArrayLike | None = None,
    target_names: Sequence[str] | None = None,
    digits: int = DEFAULT_DIGITS,
) -> str:
    """Text table laid out like scikit-learn's ``classification_report`` (per class, accuracy, macro, weighted).

    The ``macro avg`` recall is the UAR.
    """
    scores = class_scores(y_true, y_pred, labels)
    names = _names(scores, target_names)
    width = max(*(len(n) for n in names), len(_LONGEST_ROW_HEADING), digits)
    col = REPORT_COLUMN_WIDTH
    head_fmt = "{:>{width}s} " + f" {{:>{col}}}" * len(_REPORT_HEADERS)
    row_fmt = "{:>{width}s} " + f" {{:>{col}.{{digits}}f}}" * 3 + f" {{:>{col}}}\n"
    report = head_fmt.format("", *_REPORT_HEADERS, width=width) + "\n\n"
    for name, p, r, f, s in zip(names, scores.precision, scores.recall, scores.f1, scores.support, strict=True):
        report += row_fmt.format(name, p, r, f, int(s), width=width, digits=digits)
    report += "\n"
    total = int(scores.support.sum())
    accuracy_fmt = "{:>{width}s} " + f" {{:>{col}}}" * 2 + f" {{:>{col}.{{digits}}f}} {{:>{col}}}\n"
    report += accuracy_fmt.format("accuracy", "", "", scores.accuracy, total, width=width, digits=digits)
    for heading, average in (("macro avg", scores.macro), ("weighted avg", scores.weighted)):
        values = (average(scores.precision), average(scores.recall), average(scores.f1))
        report += row_fmt.format(heading, *values, total, width=width, digits=digits)
    return report


def metrics_dict(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    labels: ArrayLike | None = None,
    target_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """JSON-ready metrics: accuracy, UAR, macro/weighted F1, per-class scores and the confusion matrix."""
    scores = class_scores(y_true, y_pred, labels)
    names = _names(scores, target_names)
    return {
        "n": int(scores.support.sum()),
        "accuracy": scores.accuracy,
        "uar": scores.macro(scores.recall),
        "macro_precision": scores.macro(scores.precision),
        "macro_f1": scores.macro(scores.f1),
        "weighted_f1": scores.weighted(scores.f1),
        "per_class": {
            name: {
                "precision": float(p),
                "recall": float(r),
                "f1": float(f),
                "support": int(s),
            }
            for name, p, r, f, s in zip(names, scores.precision, scores.recall, scores.f1, scores.support, strict=True)
        },
        "confusion_matrix": {"labels": names, "matrix": scores.confusion.tolist()},
        "classes_absent_from_truth": [n for n, present in zip(names, scores.present, strict=True) if not present],
    }


def group_metrics(
    groups: Sequence[str],
    y_true: ArrayLike,
    y_pred: ArrayLike,
    labels: Sequence[int],
    target_names: Sequence[str],
) -> dict[str, dict[str, Any]]:
    """Per group (e.g. corpus): clips, accuracy, UAR over the labels that group has (a verdict of a label it lacks
    counts as wrong) and the share of its most frequent verdict (the collapse check)."""
    g = np.asarray(groups)
    t, p = np.asarray(y_true), np.asarray(y_pred)
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(set(g.tolist())):
        mask = g == name
        scores = class_scores(t[mask], p[mask], labels)
        verdicts = np.bincount(p[mask], minlength=len(labels))
        top = int(verdicts.argmax())
        out[str(name)] = {
            "n": int(mask.sum()),
            "accuracy": scores.accuracy,
            "uar": scores.macro(scores.recall),
            "labels": [target_names[i] for i, present in zip(labels, scores.present, strict=True) if present],
            "top_label": target_names[top],
            "top_label_share": float(verdicts[top] / mask.sum()),
        }
    return out


NEUTRAL = "neutral"  # neither positive nor negative: left out of the binary valence figure


def affect_truth(labels: Sequence[str], truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per clip: lexicon (arousal, valence) of the true label (NaN when unknown), and masks of the clips that
    count for arousal (label known) and for valence (label known and not neutral)."""
    coords = np.array([lexicon_coordinates(labels[t]) or (np.nan, np.nan) if t >= 0 else (np.nan, np.nan)
                       for t in truth], dtype=np.float64)
    known = ~np.isnan(coords[:, 0])
    not_neutral = np.array([t >= 0 and labels[t] != NEUTRAL for t in truth])
    return coords, known, known & not_neutral


def affect_scores(values: np.ndarray, coords: np.ndarray, known: np.ndarray, valenced: np.ndarray) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, (name, mask) in enumerate((("arousal", known), ("valence", valenced))):
        if mask.sum() < 2:
            continue
        high = coords[mask, k] > 0
        pred = values[mask, k]
        out[name] = {
            "binary_accuracy": float(np.mean((pred > 0) == high)),
            "correlation_with_binary": float(np.corrcoef(pred, np.where(high, 1.0, -1.0))[0, 1])
            if len(set(high)) > 1 else None,
            "clips": int(mask.sum()),
            "high_share": float(high.mean()),
        }
    return out
