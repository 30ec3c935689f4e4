"""Metrics against hand-computed small cases, and against scikit-learn on random data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ser_live.train.metrics import (
    accuracy,
    class_scores,
    classification_report,
    confusion_matrix,
    group_metrics,
    macro_f1,
    metrics_dict,
    uar,
)

# 3 classes, 10 examples. Truth: a a a a b b b c c c
#                         Pred:  a a b c b b a c c a
Y_TRUE = ["a", "a", "a", "a", "b", "b", "b", "c", "c", "c"]
Y_PRED = ["a", "a", "b", "c", "b", "b", "a", "c", "c", "a"]
# Confusion (rows truth):  a: [2, 1, 1]  b: [1, 2, 0]  c: [1, 0, 2]
CM = [[2, 1, 1], [1, 2, 0], [1, 0, 2]]
# precision: a 2/4, b 2/3, c 2/3; recall: a 2/4, b 2/3, c 2/3
P = [0.5, 2 / 3, 2 / 3]
R = [0.5, 2 / 3, 2 / 3]
F1 = [0.5, 2 / 3, 2 / 3]


def test_hand_computed_case() -> None:
    assert confusion_matrix(Y_TRUE, Y_PRED).tolist() == CM
    assert accuracy(Y_TRUE, Y_PRED) == pytest.approx(6 / 10)
    scores = class_scores(Y_TRUE, Y_PRED)
    assert scores.labels == ("a", "b", "c")
    np.testing.assert_allclose(scores.precision, P)
    np.testing.assert_allclose(scores.recall, R)
    np.testing.assert_allclose(scores.f1, F1)
    assert scores.support.tolist() == [4, 3, 3]
    assert uar(Y_TRUE, Y_PRED) == pytest.approx((0.5 + 2 / 3 + 2 / 3) / 3)
    assert macro_f1(Y_TRUE, Y_PRED) == pytest.approx((0.5 + 2 / 3 + 2 / 3) / 3)


def test_asymmetric_precision_recall() -> None:
    # truth a a a b, pred a b b b: a P=1 R=1/3 F1=0.5; b P=1/3 R=1 F1=0.5
    scores = class_scores(["a", "a", "a", "b"], ["a", "b", "b", "b"])
    np.testing.assert_allclose(scores.precision, [1.0, 1 / 3])
    np.testing.assert_allclose(scores.recall, [1 / 3, 1.0])
    np.testing.assert_allclose(scores.f1, [0.5, 0.5])
    assert uar(["a", "a", "a", "b"], ["a", "b", "b", "b"]) == pytest.approx(2 / 3)
    assert accuracy(["a", "a", "a", "b"], ["a", "b", "b", "b"]) == pytest.approx(0.5)


def test_uar_differs_from_accuracy_on_imbalance() -> None:
    y_true = ["big"] * 9 + ["small"]
    y_pred = ["big"] * 10  # always the majority
    assert accuracy(y_true, y_pred) == pytest.approx(0.9)
    assert uar(y_true, y_pred) == pytest.approx(0.5)
    scores = class_scores(y_true, y_pred)
    assert scores.precision.tolist() == [0.9, 0.0]  # nothing predicted as small -> 0, not NaN
    assert scores.f1[1] == 0.0


def test_labels_order_and_absent_class() -> None:
    labels = ["c", "b", "a", "z"]
    cm = confusion_matrix(Y_TRUE, Y_PRED, labels=labels)
    assert cm.tolist() == [[2, 0, 1, 0], [0, 2, 1, 0], [1, 1, 2, 0], [0, 0, 0, 0]]
    # z never occurs in the truth: macro averages ignore it
    assert uar(Y_TRUE, Y_PRED, labels=labels) == pytest.approx(uar(Y_TRUE, Y_PRED))
    d = metrics_dict(Y_TRUE, Y_PRED, labels=labels)
    assert d["classes_absent_from_truth"] == ["z"]
    assert d["per_class"]["z"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_int_labels_with_target_names() -> None:
    t = [0, 0, 1, 2, 2, 2]
    p = [0, 1, 1, 2, 2, 0]
    d = metrics_dict(t, p, labels=[0, 1, 2], target_names=["angry", "happy", "sad"])
    assert list(d["per_class"]) == ["angry", "happy", "sad"]
    assert d["per_class"]["sad"]["recall"] == pytest.approx(2 / 3)
    assert d["confusion_matrix"] == {"labels": ["angry", "happy", "sad"], "matrix": [[1, 1, 0], [0, 1, 0], [1, 0, 2]]}
    report = classification_report(t, p, labels=[0, 1, 2], target_names=["angry", "happy", "sad"])
    assert "angry" in report and "sad" in report


def test_metrics_dict_is_json_ready_and_consistent() -> None:
    d = metrics_dict(Y_TRUE, Y_PRED)
    text = json.dumps(d)
    back = json.loads(text)
    assert back["n"] == 10
    assert back["accuracy"] == pytest.approx(0.6)
    assert back["uar"] == pytest.approx(np.mean(R))
    assert back["macro_f1"] == pytest.approx(np.mean(F1))
    assert back["weighted_f1"] == pytest.approx((0.5 * 4 + 2 / 3 * 3 + 2 / 3 * 3) / 10)
    assert back["confusion_matrix"]["matrix"] == CM
    assert {k: v["support"] for k, v in back["per_class"].items()} == {"a": 4, "b": 3, "c": 3}


def test_report_layout() -> None:
    report = classification_report(Y_TRUE, Y_PRED, digits=3)
    lines = report.splitlines()
    assert lines[0].split() == ["precision", "recall", "f1-score", "support"]
    assert lines[2].split() == ["a", "0.500", "0.500", "0.500", "4"]
    assert lines[3].split() == ["b", "0.667", "0.667", "0.667", "3"]
    assert lines[6].split() == ["accuracy", "0.600", "10"]
    assert lines[7].split() == ["macro", "avg", "0.611", "0.611", "0.611", "10"]


def test_errors() -> None:
    with pytest.raises(ValueError, match="same length"):
        accuracy(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="empty"):
        accuracy([], [])
    with pytest.raises(ValueError, match="not in labels"):
        confusion_matrix(["a", "x"], ["a", "a"], labels=["a", "b"])
    with pytest.raises(ValueError, match="duplicates"):
        confusion_matrix(["a"], ["a"], labels=["a", "a"])
    with pytest.raises(ValueError, match="target_names"):
        metrics_dict(["a"], ["a"], target_names=["x", "y"])


@pytest.mark.parametrize("seed", range(5))
def test_matches_sklearn(seed: int) -> None:
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    labels = ["angry", "disgust", "fearful", "happy", "neutral", "sad", "surprised"]
    n = int(rng.integers(50, 300))
    y_true = rng.choice(labels, size=n)
    y_true[: len(labels)] = labels  # every class present (where our macro = sklearn's macro)
    noise = rng.choice(labels, size=n)
    y_pred = np.where(rng.random(n) < rng.uniform(0.2, 0.8), y_true, noise)
    assert accuracy(y_true, y_pred) == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert uar(y_true, y_pred, labels) == pytest.approx(skm.recall_score(y_true, y_pred, average="macro"))
    assert uar(y_true, y_pred, labels) == pytest.approx(skm.balanced_accuracy_score(y_true, y_pred))
    assert macro_f1(y_true, y_pred, labels) == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"))
    np.testing.assert_array_equal(
        confusion_matrix(y_true, y_pred, labels), skm.confusion_matrix(y_true, y_pred, labels=labels)
    )
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    scores = class_scores(y_true, y_pred, labels)
    np.testing.assert_allclose(scores.precision, p)
    np.testing.assert_allclose(scores.recall, r)
    np.testing.assert_allclose(scores.f1, f)
    np.testing.assert_array_equal(scores.support, s)
    for digits in (2, 4):
        assert classification_report(y_true, y_pred, labels, digits=digits) == skm.classification_report(
            y_true, y_pred, labels=labels, digits=digits
        )


def test_group_metrics_per_corpus() -> None:
    # corpus "a" has labels 0, 1; corpus "b" labels 0, 2; a verdict of a label the group lacks counts as wrong
    groups = ["a", "a", "a", "a", "b", "b", "b"]
    truth = [0, 0, 1, 1, 0, 2, 2]
    pred = [0, 2, 1, 1, 0, 0, 0]
    got = group_metrics(groups, truth, pred, [0, 1, 2], ["x", "y", "z"])
    assert got["a"]["n"] == 4 and got["a"]["labels"] == ["x", "y"]
    assert got["a"]["uar"] == pytest.approx((0.5 + 1.0) / 2) and got["a"]["accuracy"] == pytest.approx(0.75)
    assert got["a"]["top_label"] == "y" and got["a"]["top_label_share"] == pytest.approx(0.5)
    assert got["b"]["uar"] == pytest.approx((1.0 + 0.0) / 2)
    assert got["b"]["top_label"] == "x" and got["b"]["top_label_share"] == pytest.approx(1.0)
