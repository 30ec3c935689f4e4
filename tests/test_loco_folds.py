"""What the recipe draws from its leave-one-corpus-out folds' held-out windows: a temperature and threshold
(ser-recipe's calibrate stage) and personal profiles' gains on unseen speakers (its profiles stage)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ser_live.train.calibrate import calibrate_from_folds
from ser_live.train.corpora import LABELS
from ser_live.train.profile_gain import loco_profile_gains
from ser_live.train.windows import WindowSet

WINDOWS_PER_CLIP = 4


def write_dump(path: Path, clip: np.ndarray, probs: np.ndarray, embedding: np.ndarray, weights: np.ndarray,
               bias: np.ndarray) -> None:
    np.savez(path, clip=clip, probs=probs, embedding=embedding, probs_global=probs, weights=weights, bias=bias,
             label=np.array([]), speaker=np.array([]))


def test_an_overconfident_fold_gets_a_temperature_above_one_and_a_lower_ece(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    clips = 300
    labels = rng.choice(["angry", "happy", "sad", "neutral"], clips)
    clip = np.repeat(np.arange(clips), WINDOWS_PER_CLIP)
    probs = np.full((len(clip), len(LABELS)), 0.01)
    truth = np.array([LABELS.index(lab) for lab in labels])[clip]
    guess = np.where(rng.random(len(clip)) < 0.5, truth, (truth + 1) % len(LABELS))  # right half the time ...
    probs[np.arange(len(clip)), guess] = 0.94  # ... at 94 % confidence
    probs /= probs.sum(axis=1, keepdims=True)
    write_dump(tmp_path / "x.npz", clip, probs, np.zeros((len(clip), 2)), np.zeros((2, len(LABELS))),
               np.zeros(len(LABELS)))
    report = calibrate_from_folds(tmp_path, labels, ["x"], hop_s=0.5, target=0.6)
    cal = report["calibration"]
    assert cal["temperature"] > 1.5 and cal["ece_after"] < 0.7 * cal["ece_before"]
    assert report["windows"] == len(clip) and 0 <= report["per_corpus"]["x"]["uncertain_share"] <= 1


def test_profiles_gain_where_the_fold_head_is_wrong_about_a_speaker(tmp_path: Path) -> None:
    """Embeddings that tell the labels apart, a base layer that swaps two of them: a profile from a few clips of
    each emotion puts them right on the speaker's other clips."""
    rng = np.random.default_rng(1)
    four = ["angry", "happy", "neutral", "sad"]
    speakers, per_label = ["x:1", "x:2"], 8
    labels = np.array([lab for _ in speakers for lab in four for _ in range(per_label)])
    speaker = np.repeat(speakers, len(four) * per_label)
    clip = np.repeat(np.arange(len(labels)), WINDOWS_PER_CLIP)
    centres = np.eye(len(LABELS))[[LABELS.index(lab) for lab in labels]] * 3.0
    embedding = centres[clip] + rng.normal(0, 0.3, (len(clip), len(LABELS)))
    weights = np.eye(len(LABELS))
    a, h = LABELS.index("angry"), LABELS.index("happy")
    weights[:, [a, h]] = weights[:, [h, a]]  # the base layer calls angry happy and happy angry
    write_dump(tmp_path / "x.npz", clip, np.zeros((len(clip), len(LABELS))), embedding, weights,
               np.zeros(len(LABELS)))
    data = WindowSet(np.zeros((len(clip), 1), np.float32), clip, np.array(["x"] * len(labels)), speaker, labels,
                     np.array([f"{i}.wav" for i in range(len(labels))]))
    table = loco_profile_gains(tmp_path, data, ["x"], ks=(3,), draws=2)
    row = table["x"]["3"]
    assert row["n"] == 4 and row["base_uar"] < 60 and row["gain"] > 30
