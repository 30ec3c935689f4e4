"""Train / validation / test splits as index arrays (pure numpy, deterministic for a seed).

Three kinds, for the three questions a run can ask:

:func:`random_split` — *stratified by label*
    Every clip is assigned independently of who speaks it, so the same actor's voice is in train and test.
    This is how the seed notebooks evaluated, so it gives the seed-comparable figure, and it is optimistic: the
    model may recognise the speaker, not the emotion.

:func:`speaker_split` — *speaker-independent*
    Whole speakers are held out: no speaker has clips in two splits. The figure to trust for a live microphone,
    whose speaker the model has never heard. Speakers are chosen so that the held-out parts are close to the
    requested fractions of the clips, and so that every label keeps examples in training (and, where possible,
    in each held-out part).

:func:`speaker_kfold` — *speaker-grouped k-fold cross-validation*
    The held-out speakers are partitioned into ``k`` folds of similar size; each speaker is in exactly one test
    fold. Averaging over folds makes a speaker-independent figure less dependent on which actors were drawn.

``holdout_corpus`` (speaker split and k-fold) restricts which speakers may be held out to those of one corpus (or a
few); everything else always trains. Use it when a corpus has too few speakers to hold any out: TESS has two
actresses, so holding one out tests on a single voice and trains on a single voice of that corpus; with
``holdout_corpus="ravdess"`` only RAVDESS actors are held out and all of TESS is training data. Fractions are then
fractions of the held-out corpus's clips.

Speaker ids must be unique across corpora (the loaders namespace them: ``"ravdess:12"``).
Impossible requests (one speaker, more folds than speakers, fractions adding up to 1) raise UserError.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from ser_live.realtime.errors import UserError
from ser_live.train.corpora import TRAIN_ONLY_SPEAKERS

logger = logging.getLogger(__name__)

DEFAULT_TEST_FRAC = 0.2
DEFAULT_VAL_FRAC = 0.1
DEFAULT_SEED = 0
DEFAULT_FOLDS = 5
MIN_FOLDS = 2
#: Random speaker orders tried by the speaker split; the best by :func:`_score` wins.
SEARCH_TRIES = 256
#: Score cost of one label that has no training example left (dominates everything else).
MISSING_TRAIN_LABEL_COST = 10.0
#: Score cost of a held-out part lacking every label (scaled by the fraction of labels it lacks).
MISSING_HELDOUT_LABELS_COST = 0.5

_INDEX_DTYPE = np.int64


class Split(NamedTuple):
    """Sorted record indices of each part. ``val`` (or ``test``) may be empty when its fraction is 0."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def _check_fracs(test_frac: float, val_frac: float) -> None:
    for name, frac in (("test", test_frac), ("validation", val_frac)):
        if not 0.0 <= frac < 1.0:
            raise UserError(f"the {name} fraction must be in [0, 1), got {frac}: pass e.g. 0.2")
    if test_frac + val_frac >= 1.0:
        raise UserError(
            f"test fraction {test_frac} + validation fraction {val_frac} leave nothing to train on: "
            "make their sum smaller than 1 (e.g. 0.2 and 0.1)"
        )


def _as_array(values: Sequence[Any] | np.ndarray, name: str, n: int | None = None) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if n is not None and len(arr) != n:
        raise ValueError(f"{name} has {len(arr)} entries but there are {n} records")
    return arr


def _indices(mask: np.ndarray) -> np.ndarray:
    return np.flatnonzero(mask).astype(_INDEX_DTYPE)


def _apportion(counts: np.ndarray, total: int, caps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Split ``total`` items among classes in proportion to ``counts`` (largest remainder), at most ``caps`` each."""
    counts = counts.astype(np.float64)
    caps = np.maximum(caps, 0)
    if total <= 0 or counts.sum() == 0:
        return np.zeros(len(counts), dtype=_INDEX_DTYPE)
    quotas = counts * total / counts.sum()
    alloc = np.minimum(np.floor(quotas).astype(_INDEX_DTYPE), caps)
    remainder = quotas - alloc
    tiebreak = rng.random(len(counts))
    while alloc.sum() < total:
        room = np.flatnonzero(alloc < caps)
        if len(room) == 0:
            break
        # Largest remainder first; random order among equal remainders so no class is always favoured.
        order = room[np.lexsort((tiebreak[room], -remainder[room]))]
        for c in order[: total - alloc.sum()]:
            alloc[c] += 1
            remainder[c] -= 1.0
    return alloc


def random_split(
    labels: Sequence[Any] | np.ndarray,
    test_frac: float = DEFAULT_TEST_FRAC,
    val_frac: float = DEFAULT_VAL_FRAC,
    seed: int = DEFAULT_SEED,
) -> Split:
    """Stratified random split: each label is divided in the requested proportions (speakers ignored).

    The test and validation sizes are ``round(n * frac)``, shared among labels by largest remainder, and every
    label keeps at least one training example. Raises UserError when there are too few records for a non-empty
    test (or validation) part.
    """
    _check_fracs(test_frac, val_frac)
    y = _as_array(labels, "labels")
    n = len(y)
    if n == 0:
        raise UserError("no records to split: check the --data folders")
    rng = np.random.default_rng(seed)
    _, inverse = np.unique(y, return_inverse=True)
    counts = np.bincount(inverse)
    n_test = round(n * test_frac)
    n_val = round(n * val_frac)
    test_per_class = _apportion(counts, n_test, counts - 1, rng)
    val_per_class = _apportion(counts - test_per_class, n_val, counts - test_per_class - 1, rng)
    part = np.zeros(n, dtype=np.int8)  # 0 train, 1 val, 2 test
    for c, (n_t, n_v) in enumerate(zip(test_per_class, val_per_class, strict=True)):
        members = rng.permutation(np.flatnonzero(inverse == c))
        part[members[:n_t]] = 2
        part[members[n_t : n_t + n_v]] = 1
    split = Split(_indices(part == 0), _indices(part == 1), _indices(part == 2))
    for name, frac, idx in (("test", test_frac, split.test), ("validation", val_frac, split.val)):
        if frac > 0 and len(idx) == 0:
            raise UserError(f"{n} records are too few for a {name} part of {frac:.0%}: add data or raise the fraction")
    return split


class _Groups(NamedTuple):
    """Records grouped by speaker.

    ``speaker_of``: record -> speaker index; ``counts``: speaker x label record counts; ``corpus_of``: speaker ->
    corpus index (all 0 when corpora are not given); ``eligible``: speakers that may be held out.
    """

    speaker_ids: np.ndarray
    speaker_of: np.ndarray
    counts: np.ndarray
    corpus_of: np.ndarray
    eligible: np.ndarray


def _group(
    speakers: Sequence[Any] | np.ndarray,
    labels: Sequence[Any] | np.ndarray | None,
    corpora: Sequence[str] | np.ndarray | None,
    holdout_corpus: str | Sequence[str] | None,
) -> _Groups:
    spk = _as_array(speakers, "speakers")
    n = len(spk)
    if n == 0:
        raise UserError("no records to split: check the --data folders")
    y = np.zeros(n, dtype=_INDEX_DTYPE) if labels is None else _as_array(labels, "labels", n)
    speaker_ids, speaker_of = np.unique(spk, return_inverse=True)
    _, label_of = np.unique(y, return_inverse=True)
    counts = np.zeros((len(speaker_ids), label_of.max() + 1), dtype=_INDEX_DTYPE)
    np.add.at(counts, (speaker_of, label_of), 1)
    corpus_of = np.zeros(len(speaker_ids), dtype=_INDEX_DTYPE)
    # "anyone" (EmoSpeech's unknown user) is never held out: training only
    eligible = ~np.isin(speaker_ids.astype(str), sorted(TRAIN_ONLY_SPEAKERS))
    if corpora is None:
        if holdout_corpus is not None:
            raise ValueError("holdout_corpus needs the corpus of every record (corpora=...)")
        return _Groups(speaker_ids, speaker_of, counts, corpus_of, eligible)
    corp = _as_array(corpora, "corpora", n)
    corpus_names, corpus_index = np.unique(corp, return_inverse=True)
    corpus_of[:] = -1
    for s, c in zip(speaker_of.tolist(), corpus_index.tolist(), strict=True):
        if corpus_of[s] == -1:
            corpus_of[s] = c
        elif corpus_of[s] != c:
            raise ValueError(
                f"speaker {speaker_ids[s]!r} occurs in corpora {corpus_names[corpus_of[s]]!r} and "
                f"{corpus_names[c]!r}: speaker ids must be namespaced per corpus"
            )
    if holdout_corpus is not None:
        wanted = {holdout_corpus} if isinstance(holdout_corpus, str) else set(holdout_corpus)
        eligible &= np.isin(corpus_names[corpus_of], sorted(wanted))
        if not eligible.any():
            raise UserError(
                f"no speaker of {', '.join(sorted(wanted))} in the data to hold out: "
                f"the held-out corpus must be one of {', '.join(map(str, corpus_names))}"
            )
    return _Groups(speaker_ids, speaker_of, counts, corpus_of, eligible)


def _score(
    groups: _Groups,
    pool: np.ndarray,
    fixed_train: np.ndarray,
    parts: Sequence[np.ndarray],
    targets: np.ndarray,
) -> float:
    """Lower is better: labels lost from training, then distance from the per-corpus target sizes, then labels
    missing from the held-out parts. ``targets[j, c]`` is part j's target record count in corpus c."""
    counts = groups.counts
    pool_counts = counts[pool].sum(axis=0)
    everything = fixed_train + pool_counts
    held = np.concatenate(parts)
    train_counts = everything - counts[held].sum(axis=0)
    missing_train = int(np.sum((everything > 0) & (train_counts == 0)))
    pool_size = max(int(pool_counts.sum()), 1)
    pool_labels = pool_counts > 0
    n_corpora = targets.shape[1]
    size_error = 0.0
    missing_held = 0.0
    for j, part in enumerate(parts):
        if not targets[j].any():
            continue
        per_corpus = np.bincount(groups.corpus_of[part], weights=counts[part].sum(axis=1), minlength=n_corpora)
        size_error += float(np.abs(per_corpus - targets[j]).sum()) / pool_size
        part_counts = counts[part].sum(axis=0)
        missing_held += np.sum(pool_labels & (part_counts == 0)) / max(int(pool_labels.sum()), 1)
    return MISSING_TRAIN_LABEL_COST * missing_train + size_error + MISSING_HELDOUT_LABELS_COST * missing_held


def _pick_speakers(
    groups: _Groups,
    pool: np.ndarray,
    reference: np.ndarray,
    fixed_train: np.ndarray,
    fracs: Sequence[float],
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Choose disjoint speaker sets from ``pool``, one per fraction (fraction 0 -> empty set).

    Stratified by corpus: part j aims at ``fracs[j]`` of each corpus's records among the ``reference`` speakers
    (the pool, or a larger set it was drawn from). Tries :data:`SEARCH_TRIES` random speaker orders; in each, every
    corpus gives every part the prefix of its remaining speakers whose record count is closest to the target (which
    may be none: two TESS speakers of 1,400 clips each are no way to hold out 20 %). Then every part with a
    non-zero fraction gets at least one speaker, and training keeps one when nothing outside the pool trains. The
    best-scoring choice wins. The caller checks that the pool has enough speakers.
    """
    sizes = groups.counts.sum(axis=1)
    n_corpora = int(groups.corpus_of.max()) + 1
    corpus_totals = np.bincount(groups.corpus_of[reference], weights=sizes[reference], minlength=n_corpora)
    targets = np.outer(fracs, corpus_totals)
    needed = [f > 0 for f in fracs]
    keep_for_train = fixed_train.sum() == 0
    members = [pool[groups.corpus_of[pool] == c] for c in range(n_corpora)]
    best: list[np.ndarray] = []
    best_score = np.inf
    for _ in range(SEARCH_TRIES):
        parts: list[list[int]] = [[] for _ in fracs]
        leftovers: list[list[int]] = []
        for c, speakers in enumerate(members):
            order = rng.permutation(speakers).tolist()
            for j in range(len(fracs)):
                if not needed[j] or not order:
                    continue
                cumulative = np.concatenate(([0], np.cumsum(sizes[order])))
                take = int(np.argmin(np.abs(cumulative - targets[j, c])))
                parts[j].extend(order[:take])
                order = order[take:]
            leftovers.append(order)
        for j in range(len(fracs)):
            if needed[j] and not parts[j]:
                donors = [rest for rest in leftovers if rest]
                if donors:
                    parts[j].append(donors[int(rng.integers(len(donors)))].pop(0))
                else:
                    parts[j].append(max(parts, key=len).pop())
        if keep_for_train and not any(leftovers):
            max(parts, key=len).pop()
        arrays = [np.array(sorted(p), dtype=_INDEX_DTYPE) for p in parts]
        score = _score(groups, pool, fixed_train, arrays, targets)
        if score < best_score:
            best, best_score = arrays, score
    return best


def _records_of(groups: _Groups, speaker_set: np.ndarray) -> np.ndarray:
    return np.isin(groups.speaker_of, speaker_set)


def _warn_missing_labels(groups: _Groups, train_mask: np.ndarray, labels: Sequence[Any] | np.ndarray | None) -> None:
    if labels is None:
        return
    y = np.asarray(labels)
    missing = sorted(set(y.tolist()) - set(y[train_mask].tolist()))
    if missing:
        logger.warning("no speaker split keeps every label in training; missing: %s", ", ".join(map(str, missing)))


def speaker_split(
    speakers: Sequence[Any] | np.ndarray,
    labels: Sequence[Any] | np.ndarray,
    test_frac: float = DEFAULT_TEST_FRAC,
    val_frac: float = DEFAULT_VAL_FRAC,
    seed: int = DEFAULT_SEED,
    corpora: Sequence[str] | np.ndarray | None = None,
    holdout_corpus: str | Sequence[str] | None = None,
) -> Split:
    """Speaker-independent split: whole speakers go to test, validation or training.

    The test and validation parts hold about ``test_frac`` and ``val_frac`` of the clips of the speakers that may
    be held out (all speakers, or those of ``holdout_corpus``). Pass ``corpora`` (each record's corpus) whenever
    there are several: the fractions then apply to each corpus separately, so a corpus of many small speakers is
    not emptied to make up for one of a few huge speakers. A corpus whose speakers are each far bigger than its
    share (TESS: two speakers of about 1,400 clips) then usually stays in training whole; :func:`describe_split`
    shows it. A part with a non-zero fraction gets at least one speaker; training always keeps at least one. Among
    many random speaker choices, the one that keeps every label in training, then comes closest to the
    fractions, then covers most labels in each held-out part, wins. Raises UserError when there are too few
    speakers.
    """
    _check_fracs(test_frac, val_frac)
    groups = _group(speakers, labels, corpora, holdout_corpus)
    pool = np.flatnonzero(groups.eligible)
    fixed_train = groups.counts[~groups.eligible].sum(axis=0)
    n_needed = int(test_frac > 0) + int(val_frac > 0) + int(fixed_train.sum() == 0)
    if len(pool) < n_needed:
        names = ", ".join(map(str, groups.speaker_ids[pool]))
        raise UserError(
            f"a speaker split with these fractions needs at least {n_needed} speakers that can be held out, "
            f"got {len(pool)} ({names}): add a corpus with more speakers or use --split random"
        )
    rng = np.random.default_rng(seed)
    test_spk, val_spk = _pick_speakers(groups, pool, pool, fixed_train, (test_frac, val_frac), rng)
    test_mask = _records_of(groups, test_spk)
    val_mask = _records_of(groups, val_spk)
    train_mask = ~(test_mask | val_mask)
    _warn_missing_labels(groups, train_mask, labels)
    logger.info(
        "speaker split: test speakers %s; validation speakers %s",
        ", ".join(map(str, groups.speaker_ids[test_spk])),
        ", ".join(map(str, groups.speaker_ids[val_spk])),
    )
    return Split(_indices(train_mask), _indices(val_mask), _indices(test_mask))


def corpus_split(
    speakers: Sequence[Any] | np.ndarray,
    labels: Sequence[Any] | np.ndarray,
    corpora: Sequence[str] | np.ndarray,
    test_corpus: str,
    val_frac: float = DEFAULT_VAL_FRAC,
    seed: int = DEFAULT_SEED,
) -> Split:
    """Leave one corpus out: every record of ``test_corpus`` is test; the other corpora are split by speaker
    into training and validation (:func:`speaker_split` with no test part). Records of the held-out corpus whose
    speaker is training-only (:data:`TRAIN_ONLY_SPEAKERS`: anyone, the test speakers included) are in no part."""
    corp = _as_array(corpora, "corpora")
    spk = _as_array(speakers, "speakers", len(corp))
    y = _as_array(labels, "labels", len(corp))
    held = corp == test_corpus
    anyone = np.isin(spk.astype(str), sorted(TRAIN_ONLY_SPEAKERS))
    test_mask = held & ~anyone
    if not test_mask.any():
        raise UserError(f"no records of corpus {test_corpus!r} to test on: add it with --data {test_corpus}=PATH")
    rest = np.flatnonzero(~held)
    if not len(rest):
        raise UserError(f"every record is from {test_corpus}: add another corpus to train on")
    inner = speaker_split(spk[rest], y[rest], test_frac=0.0, val_frac=val_frac, seed=seed, corpora=corp[rest])
    logger.info("corpus split: test = all %d records of %s", int(test_mask.sum()), test_corpus)
    return Split(
        np.sort(rest[inner.train]).astype(_INDEX_DTYPE),
        np.sort(rest[inner.val]).astype(_INDEX_DTYPE),
        _indices(test_mask),
    )


def speaker_kfold(
    speakers: Sequence[Any] | np.ndarray,
    k: int = DEFAULT_FOLDS,
    seed: int = DEFAULT_SEED,
    corpora: Sequence[str] | np.ndarray | None = None,
    holdout_corpus: str | Sequence[str] | None = None,
    labels: Sequence[Any] | np.ndarray | None = None,
    val_frac: float = 0.0,
) -> list[Split]:
    """Speaker-grouped k-fold: ``k`` splits whose test parts partition the held-out speakers.

    Held-out speakers (all, or those of ``holdout_corpus``) are shuffled with ``seed`` and dealt, largest first,
    to the fold with the fewest records of their corpus so far (then the fewest records overall), so folds are of
    similar size and mix corpora alike (pass ``corpora`` for that); each of them is in exactly one test fold, and
    speakers outside ``holdout_corpus`` are always in training. With ``val_frac > 0`` each fold also holds out
    validation speakers (about ``val_frac`` of each held-out corpus's clips) from its training speakers,
    chosen as in :func:`speaker_split` (``labels`` helps keep every label in training). Raises UserError when
    ``k`` is below 2 or above the number of speakers that can be held out.
    """
    _check_fracs(0.0, val_frac)
    groups = _group(speakers, labels, corpora, holdout_corpus)
    pool = np.flatnonzero(groups.eligible)
    if k < MIN_FOLDS:
        raise UserError(f"cross-validation needs at least {MIN_FOLDS} folds, got {k}: pass --folds 2 or more")
    if len(pool) < k:
        raise UserError(
            f"{k} speaker folds need at least {k} speakers that can be held out, got {len(pool)}: "
            f"pass --folds {max(len(pool), MIN_FOLDS)} or less, or add data"
        )
    rng = np.random.default_rng(seed)
    sizes = groups.counts.sum(axis=1)
    shuffled = rng.permutation(pool)
    fold_of = np.full(len(groups.speaker_ids), -1, dtype=_INDEX_DTYPE)
    fold_sizes = np.zeros(k, dtype=_INDEX_DTYPE)
    fold_corpus_sizes = np.zeros((k, int(groups.corpus_of.max()) + 1), dtype=_INDEX_DTYPE)
    for s in shuffled[np.argsort(-sizes[shuffled], kind="stable")]:
        c = groups.corpus_of[s]
        f = int(np.lexsort((np.arange(k), fold_sizes, fold_corpus_sizes[:, c]))[0])
        fold_of[s] = f
        fold_sizes[f] += sizes[s]
        fold_corpus_sizes[f, c] += sizes[s]
    outside_train = groups.counts[~groups.eligible].sum(axis=0)
    splits = []
    for f in range(k):
        test_spk = np.flatnonzero(fold_of == f)
        val_spk = test_spk[:0]
        if val_frac > 0:
            rest = pool[fold_of[pool] != f]
            if len(rest) < 1 + int(outside_train.sum() == 0):
                raise UserError(
                    f"fold {f + 1} has too few remaining speakers for a validation part: "
                    "use fewer folds, --val-frac 0, or more data"
                )
            (val_spk,) = _pick_speakers(groups, rest, pool, outside_train, (val_frac,), rng)
        test_mask = _records_of(groups, test_spk)
        val_mask = _records_of(groups, val_spk)
        train_mask = ~(test_mask | val_mask)
        _warn_missing_labels(groups, train_mask, labels)
        splits.append(Split(_indices(train_mask), _indices(val_mask), _indices(test_mask)))
    return splits


def describe_split(
    split: Split,
    labels: Sequence[Any] | np.ndarray,
    speakers: Sequence[Any] | np.ndarray,
    corpora: Sequence[str] | np.ndarray | None = None,
) -> dict[str, Any]:
    """JSON-ready counts of each part: records, per label, per corpus, and its sorted speakers."""
    y = np.asarray(labels)
    spk = np.asarray(speakers)
    corp = None if corpora is None else np.asarray(corpora)
    out: dict[str, Any] = {}
    for name, idx in zip(Split._fields, split, strict=True):
        part: dict[str, Any] = {
            "records": len(idx),
            "per_label": dict(sorted(Counter(y[idx].tolist()).items())),
            "speakers": sorted(set(spk[idx].tolist())),
        }
        if corp is not None:
            part["per_corpus"] = dict(sorted(Counter(corp[idx].tolist()).items()))
        out[name] = part
    return out
