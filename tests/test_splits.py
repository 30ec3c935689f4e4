"""Splits: stratification, no speaker leaks (over many seeds), k-fold coverage, clear errors."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from ser_live.realtime.errors import UserError
from ser_live.train.splits import Split, corpus_split, describe_split, random_split, speaker_kfold, speaker_split

LABELS = ("angry", "disgust", "fearful", "happy", "neutral", "sad", "surprised")
SEEDS = range(8)


def corpus_like(n_ravdess: int = 12, per_label: int = 4, tess_per_label: int = 10) -> dict[str, np.ndarray]:
    """RAVDESS-like actors (every label each) plus two TESS-like speakers with many clips each."""
    speakers, labels, corpora = [], [], []
    for actor in range(1, n_ravdess + 1):
        for label in LABELS:
            for _ in range(per_label):
                speakers.append(f"ravdess:{actor:02d}")
                labels.append(label)
                corpora.append("ravdess")
    for spk in ("OAF", "YAF"):
        for label in LABELS:
            for _ in range(tess_per_label):
                speakers.append(f"tess:{spk}")
                labels.append(label)
                corpora.append("tess")
    return {"speakers": np.array(speakers), "labels": np.array(labels), "corpora": np.array(corpora)}


def assert_partition(split: Split, n: int) -> None:
    allidx = np.concatenate(split)
    assert len(allidx) == n
    assert np.array_equal(np.sort(allidx), np.arange(n)), "parts must partition the records"
    for part in split:
        assert part.dtype.kind == "i"
        assert np.array_equal(part, np.sort(part))


def speaker_sets(split: Split, speakers: np.ndarray) -> list[set[str]]:
    return [set(speakers[idx].tolist()) for idx in split]


# ------------------------------------------------------------------------------------------------- random
@pytest.mark.parametrize("seed", SEEDS)
def test_random_split_is_stratified_partition(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    counts = {label: int(rng.integers(10, 60)) for label in LABELS}
    labels = rng.permutation(np.array([lab for lab, c in counts.items() for _ in range(c)]))
    split = random_split(labels, test_frac=0.2, val_frac=0.1, seed=seed)
    n = len(labels)
    assert_partition(split, n)
    assert len(split.test) == round(0.2 * n)
    assert len(split.val) == round(0.1 * n)
    for part, frac in ((split.test, 0.2), (split.val, 0.1)):
        got = Counter(labels[part].tolist())
        for label, c in counts.items():
            assert abs(got[label] - frac * c) <= 1.0, (label, got[label], frac * c)


def test_random_split_deterministic_and_seed_dependent() -> None:
    labels = np.repeat(LABELS, 20)
    a = random_split(labels, 0.2, 0.1, seed=3)
    b = random_split(labels, 0.2, 0.1, seed=3)
    c = random_split(labels, 0.2, 0.1, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a.test, c.test)


def test_random_split_keeps_rare_label_in_train() -> None:
    labels = np.array(["angry"] * 30 + ["sad"])
    for seed in SEEDS:
        split = random_split(labels, 0.3, 0.2, seed=seed)
        assert "sad" in labels[split.train].tolist()


def test_random_split_zero_val_and_errors() -> None:
    labels = np.repeat(LABELS, 5)
    split = random_split(labels, 0.2, 0.0, seed=0)
    assert len(split.val) == 0 and len(split.test) == 7
    with pytest.raises(UserError, match="leave nothing to train"):
        random_split(labels, 0.6, 0.4)
    with pytest.raises(UserError, match=r"in \[0, 1\)"):
        random_split(labels, -0.1, 0.1)
    with pytest.raises(UserError, match="too few"):
        random_split(["angry"], 0.2, 0.0)
    with pytest.raises(UserError, match="no records"):
        random_split([], 0.2, 0.1)


# ------------------------------------------------------------------------------------------------ speaker
@pytest.mark.parametrize("seed", SEEDS)
def test_speaker_split_never_leaks_a_speaker(seed: int) -> None:
    data = corpus_like()
    split = speaker_split(data["speakers"], data["labels"], 0.2, 0.15, seed=seed)
    assert_partition(split, len(data["labels"]))
    train, val, test = speaker_sets(split, data["speakers"])
    assert train and val and test
    assert not (train & val) and not (train & test) and not (val & test)
    assert set(data["labels"][split.train].tolist()) == set(LABELS)


@pytest.mark.parametrize("seed", SEEDS)
def test_speaker_split_with_uneven_random_speakers(seed: int) -> None:
    """Property: random speakers, random label mixes, random sizes -> disjoint speakers, sizes near target."""
    rng = np.random.default_rng(seed)
    n_spk = int(rng.integers(6, 30))
    spk_sizes = rng.integers(5, 50, size=n_spk)
    speakers = np.repeat([f"s{i}" for i in range(n_spk)], spk_sizes)
    labels = rng.choice(LABELS, size=len(speakers))
    split = speaker_split(speakers, labels, 0.25, 0.1, seed=seed)
    assert_partition(split, len(labels))
    train, val, test = speaker_sets(split, speakers)
    assert not (train & val) and not (train & test) and not (val & test)
    assert set(labels[split.train].tolist()) == set(labels.tolist())
    # whole speakers: the test part is within one largest speaker of its target
    assert abs(len(split.test) - 0.25 * len(labels)) <= spk_sizes.max()


def test_speaker_split_keeps_a_label_that_only_one_speaker_has_in_train() -> None:
    speakers = np.repeat(["a", "b", "c", "d", "e", "f"], 10)
    labels = np.array(["angry"] * 50 + ["sad"] * 10)  # only speaker f has sad
    for seed in SEEDS:
        split = speaker_split(speakers, labels, 0.2, 0.2, seed=seed)
        assert "sad" in labels[split.train].tolist()
        assert "f" not in speaker_sets(split, speakers)[2]


def test_speaker_split_holdout_corpus_keeps_tess_in_training() -> None:
    data = corpus_like()
    for seed in SEEDS:
        split = speaker_split(
            data["speakers"], data["labels"], 0.25, 0.1, seed=seed, corpora=data["corpora"], holdout_corpus="ravdess"
        )
        assert_partition(split, len(data["labels"]))
        train, val, test = speaker_sets(split, data["speakers"])
        assert {"tess:OAF", "tess:YAF"} <= train
        assert all(s.startswith("ravdess:") for s in val | test)
        assert not (train & (val | test)) and not (val & test)
        n_ravdess = int(np.sum(data["corpora"] == "ravdess"))
        per_speaker = len(LABELS) * 4
        assert abs(len(split.test) - 0.25 * n_ravdess) <= per_speaker  # fraction of RAVDESS, not of everything


@pytest.mark.parametrize("seed", SEEDS)
def test_speaker_split_is_stratified_by_corpus(seed: int) -> None:
    """With corpora given, each corpus is held out in proportion; two huge TESS speakers stay in training."""
    data = corpus_like(n_ravdess=20, per_label=3, tess_per_label=200)
    crema = np.repeat([f"crema-d:{1001 + i}" for i in range(40)], len(LABELS) * 2)
    speakers = np.concatenate([data["speakers"], crema])
    labels = np.concatenate([data["labels"], np.tile(np.repeat(LABELS, 2), 40)])
    corp = np.concatenate([data["corpora"], np.full(len(crema), "crema-d")])
    split = speaker_split(speakers, labels, 0.2, 0.1, seed=seed, corpora=corp)
    assert_partition(split, len(labels))
    train, val, test = speaker_sets(split, speakers)
    assert not (train & val) and not (train & test) and not (val & test)
    assert {"tess:OAF", "tess:YAF"} <= train
    for corpus, n_speakers in (("ravdess", 20), ("crema-d", 40)):
        held = [s for s in test if s.startswith(corpus)]
        assert len(held) == round(0.2 * n_speakers), (corpus, held)
        assert len([s for s in val if s.startswith(corpus)]) == round(0.1 * n_speakers)


def test_speaker_split_errors() -> None:
    with pytest.raises(UserError, match=r"at least 3 speakers.*got 1.*--split random"):
        speaker_split(["a"] * 10, ["angry"] * 10, 0.2, 0.1)
    with pytest.raises(UserError, match=r"at least 3 speakers.*got 2"):
        speaker_split(["a"] * 5 + ["b"] * 5, ["angry"] * 10, 0.2, 0.1)
    split = speaker_split(["a"] * 5 + ["b"] * 5, ["angry"] * 10, 0.2, 0.0)
    assert len(split.test) == 5 and len(split.val) == 0
    data = corpus_like()
    with pytest.raises(UserError, match=r"no speaker of crema-d.*ravdess, tess"):
        speaker_split(data["speakers"], data["labels"], corpora=data["corpora"], holdout_corpus="crema-d")
    with pytest.raises(ValueError, match="corpora"):
        speaker_split(data["speakers"], data["labels"], holdout_corpus="ravdess")
    with pytest.raises(ValueError, match="namespaced"):
        speaker_split(["a", "a", "b"], ["x", "x", "x"], corpora=["c1", "c2", "c2"], holdout_corpus="c1")
    with pytest.raises(ValueError, match="records"):
        speaker_split(["a", "b"], ["x"])
    # one held-out speaker is enough when another corpus trains
    speakers = ["ravdess:01"] * 4 + ["tess:OAF"] * 4
    corp = ["ravdess"] * 4 + ["tess"] * 4
    split = speaker_split(speakers, ["angry"] * 8, 0.5, 0.0, corpora=corp, holdout_corpus="ravdess")
    assert split.test.tolist() == [0, 1, 2, 3]


def test_speaker_split_deterministic() -> None:
    data = corpus_like()
    a = speaker_split(data["speakers"], data["labels"], seed=11)
    b = speaker_split(data["speakers"], data["labels"], seed=11)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


# ------------------------------------------------------------------------------------------------- k-fold
@pytest.mark.parametrize("k", [2, 3, 5])
def test_speaker_kfold_each_speaker_tested_exactly_once(k: int) -> None:
    data = corpus_like(n_ravdess=7)
    speakers = data["speakers"]
    folds = speaker_kfold(speakers, k=k, seed=k)
    assert len(folds) == k
    tested: Counter[str] = Counter()
    tested_records = np.zeros(len(speakers), dtype=int)
    for fold in folds:
        assert_partition(fold, len(speakers))
        train, _, test = speaker_sets(fold, speakers)
        assert test and not (train & test)
        tested.update(test)
        tested_records[fold.test] += 1
    assert set(tested) == set(speakers.tolist())
    assert all(c == 1 for c in tested.values())
    assert np.all(tested_records == 1)


def test_speaker_kfold_folds_are_balanced() -> None:
    speakers = np.repeat([f"s{i}" for i in range(12)], 10)
    folds = speaker_kfold(speakers, k=4, seed=0)
    assert [len(f.test) for f in folds] == [30, 30, 30, 30]


def test_speaker_kfold_spreads_each_corpus_over_folds() -> None:
    speakers = np.array(
        [f"a:{i}" for i in range(6) for _ in range(10)] + [f"b:{i}" for i in range(3) for _ in range(30)]
    )
    corp = np.array([s.split(":")[0] for s in speakers])
    for seed in SEEDS:
        folds = speaker_kfold(speakers, k=3, seed=seed, corpora=corp)
        for fold in folds:
            test = speaker_sets(fold, speakers)[2]
            assert sum(s.startswith("a:") for s in test) == 2
            assert sum(s.startswith("b:") for s in test) == 1


def test_speaker_kfold_holdout_corpus_and_validation() -> None:
    data = corpus_like(n_ravdess=8)
    speakers = data["speakers"]
    folds = speaker_kfold(
        speakers, k=4, seed=1, corpora=data["corpora"], holdout_corpus="ravdess", labels=data["labels"], val_frac=0.1
    )
    tested: Counter[str] = Counter()
    for fold in folds:
        assert_partition(fold, len(speakers))
        train, val, test = speaker_sets(fold, speakers)
        assert {"tess:OAF", "tess:YAF"} <= train
        assert val and all(s.startswith("ravdess:") for s in val | test)
        assert not (train & val) and not (train & test) and not (val & test)
        tested.update(test)
    assert sorted(tested) == [f"ravdess:{i:02d}" for i in range(1, 9)]
    assert set(tested.values()) == {1}


def test_speaker_kfold_errors() -> None:
    speakers = np.repeat(["a", "b", "c"], 4)
    with pytest.raises(UserError, match=r"at least 4 speakers.*got 3.*--folds 3"):
        speaker_kfold(speakers, k=4)
    with pytest.raises(UserError, match="at least 2 folds"):
        speaker_kfold(speakers, k=1)
    with pytest.raises(UserError, match="validation"):
        speaker_kfold(np.repeat(["a", "b"], 4), k=2, val_frac=0.2)
    folds = speaker_kfold(speakers, k=3, val_frac=0.2)
    for fold in folds:
        assert all(len(part) for part in fold)


def test_describe_split_is_json_ready() -> None:
    data = corpus_like(n_ravdess=5)
    split = speaker_split(
        data["speakers"], data["labels"], 0.2, 0.2, seed=0, corpora=data["corpora"], holdout_corpus="ravdess"
    )
    desc = describe_split(split, data["labels"], data["speakers"], data["corpora"])
    json.dumps(desc)
    assert sum(desc[p]["records"] for p in ("train", "val", "test")) == len(data["labels"])
    assert desc["train"]["per_corpus"]["tess"] == int(np.sum(data["corpora"] == "tess"))
    assert set(desc["test"]["speakers"]) == set(data["speakers"][split.test].tolist())


def test_split_seed_keeps_the_held_out_speakers_when_the_training_seed_changes() -> None:
    """ser-train --seed 43 --split-seed 42 tests the same speakers as --seed 42 (a second training seed on one split);
    --seed 43 alone draws another split."""
    from types import SimpleNamespace

    from ser_live.train.cli import build_parser, make_splits

    data = corpus_like()
    records = [SimpleNamespace(label=lab, speaker=spk, corpus=cor)
               for lab, spk, cor in zip(data["labels"], data["speakers"], data["corpora"], strict=True)]

    def held_out(*flags: str) -> set[str]:
        args = build_parser().parse_args(["--data", "ravdess=x", "--split", "speaker", "--holdout-corpus", "any",
                                          "--test-frac", "0.25", *flags])
        (split,) = make_splits(args, records)
        return set(data["speakers"][split.test].tolist())

    base = held_out("--seed", "42")
    assert held_out("--seed", "43", "--split-seed", "42") == base
    assert held_out("--seed", "43") != base


def test_the_unknown_user_is_always_training_and_never_a_held_out_corpus_record() -> None:
    speakers = np.array(["emospeech:unknown"] * 40 + [f"emospeech:u{i}" for i in range(20)] * 2
                        + [f"ravdess:{i:02d}" for i in range(1, 6)] * 2)
    corpora = np.array(["emospeech"] * 80 + ["ravdess"] * 10)
    labels = np.array(["neutral", "angry"] * 45)
    anyone = np.flatnonzero(speakers == "emospeech:unknown")
    for split in [speaker_split(speakers, labels, 0.3, 0.2, seed=s, corpora=corpora) for s in range(5)] + \
            speaker_kfold(speakers, k=4, corpora=corpora, labels=labels, val_frac=0.2):
        assert set(anyone) <= set(split.train.tolist())
        assert not set(anyone) & (set(split.val.tolist()) | set(split.test.tolist()))
    loco = corpus_split(speakers, labels, corpora, "emospeech")
    assert not set(anyone) & (set(loco.train.tolist()) | set(loco.val.tolist()) | set(loco.test.tolist()))
    assert len(loco.test) == 40 and set(speakers[loco.test]) == {f"emospeech:u{i}" for i in range(20)}
    other = corpus_split(speakers, labels, corpora, "ravdess")
    assert set(anyone) <= set(other.train.tolist())
