"""What a personal profile gains on speakers the base model never heard: the protocol behind the model card's
profile table, shared by ``ser-recipe``'s ``profiles`` stage (the leave-one-corpus-out folds' held-out speakers) and
``scripts/profile_gain.py`` (any model file on chosen speakers).

For every speaker, k = 1, 3, 5 examples per emotion are drawn from that speaker (several draws), a profile is fitted
on them with :mod:`ser_live.realtime.profile` (each method), and the speaker's clips of *other sentences* are scored
by the base model and by the profile (clip verdict = mean of its windows' probabilities, as ser-live's). Sentences
never sit on both sides (:func:`draw_split`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ser_live.realtime.profile import Base, Take, fit, fit_layer, scores, softmax, take_verdict

KS = (1, 3, 5)
WORSE_POINTS = 2.0
Clip = tuple[str, str, np.ndarray, np.ndarray]  # label, sentence, scored windows' embeddings, enrolment's


def sentence(path: Path, corpus: str) -> str:
    """The sentence a clip says: RAVDESS's statement (5th field), ASED's sentence number (2nd field, per emotion)."""
    parts = path.stem.split("-")
    if corpus == "ravdess" and len(parts) >= 5:
        return parts[4]
    if corpus == "ased" and len(parts) >= 2:
        return parts[1]
    return path.stem  # unknown naming: every clip its own sentence


def draw_split(clips: list[Clip], k: int, rng: np.random.Generator) -> tuple[list[int],
                                                                                                     list[int]]:
    """(enrol, scored) clip indices: per label, whole sentences in random order until k clips are drawn; the
    sentences not touched are scored; at least one sentence per label is kept for scoring."""
    by_label: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, (label, sent, *_) in enumerate(clips):
        by_label[label][sent].append(i)
    enrol: list[int] = []
    scored: list[int] = []
    for label in sorted(by_label):
        groups = [by_label[label][s] for s in sorted(by_label[label])]
        order = list(rng.permutation(len(groups)))
        got = 0
        used = 0
        for g in order[:-1]:  # the last sentence in the order is always scored
            if got >= k:
                break
            members = list(rng.permutation(groups[g]))
            enrol += members[: k - got]
            got += min(k - got, len(members))
            used += 1
        for g in order[used:]:
            scored += groups[g]
    return enrol, scored


def speaker_runs(clips: list[Clip], base: Base, ks: tuple[int, ...], draws: int, seed: int,
                 methods: tuple[str, ...]) -> list[dict[str, Any]]:
    """clips: (label, sentence, window embeddings, enrolment embeddings) of one speaker (clips without windows
    already dropped)."""
    index = {label: i for i, label in enumerate(base.labels)}
    rows = []
    for k in ks:
        for draw in range(draws):
            rng = np.random.default_rng([seed, k, draw])
            enrol, held = draw_split(clips, k, rng)
            takes = [Take(clips[i][0], clips[i][3]) for i in enrol]
            if len(takes) < 2 or not held:  # a speaker with too few sentences for this k
                continue
            truth = [index[clips[i][0]] for i in held]
            classes = sorted(set(truth))
            base_pred = [take_verdict(softmax(clips[i][2] @ base.weights + base.bias)) for i in held]
            b = scores(truth, base_pred, classes)
            for method in methods:
                result = fit(takes, base, method)
                pred = [take_verdict(result.layer.probs(clips[i][2])) for i in held]
                p = scores(truth, pred, classes)
                tried = []  # every setting the fit weighed: its leave-one-take-out scores and what it scores here
                for t in result.tried:
                    setting = {kk: t[kk] for kk in t if kk not in ("uar", "accuracy", "log_loss")}
                    layer = fit_layer(takes, base, method, setting)
                    held_uar = scores(truth, [take_verdict(layer.probs(clips[i][2])) for i in held], classes)["uar"]
                    tried.append({kk: (None if isinstance(v, float) and math.isinf(v) else v) for kk, v in t.items()}
                                 | {"heldout_uar": held_uar})
                rows.append({"k": k, "draw": draw, "method": method, "base_uar": b["uar"], "uar": p["uar"],
                             "base_acc": b["accuracy"], "acc": p["accuracy"], "takes": len(takes),
                             "scored": len(held), "warned": result.warning is not None,
                             "setting": {kk: (None if math.isinf(v) else v) for kk, v in result.layer.setting.items()},
                             "own_uar": result.own["uar"], "own_base_uar": result.base["uar"],
                             "own_log_loss": result.own["log_loss"], "own_base_log_loss": result.base["log_loss"],
                             "tried": tried,
                             "base_top_share": float(np.max(np.bincount(base_pred, minlength=len(base.labels))) /
                                                     max(1, len(base_pred)))})
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    gains = np.array([100 * (r["uar"] - r["base_uar"]) for r in rows])
    return {
        "n": len(rows),
        "base_uar": 100 * float(np.mean([r["base_uar"] for r in rows])),
        "profile_uar": 100 * float(np.mean([r["uar"] for r in rows])),
        "gain": float(np.mean(gains)),
        "gain_sd": float(np.std(gains)),
        "gain_p10": float(np.percentile(gains, 10)),
        "gain_p90": float(np.percentile(gains, 90)),
        "worse_share": float(np.mean(gains < -WORSE_POINTS)),
        "warned_share": float(np.mean([r["warned"] for r in rows])),
        "base_acc": 100 * float(np.mean([r["base_acc"] for r in rows])),
        "profile_acc": 100 * float(np.mean([r["acc"] for r in rows])),
    }


def loco_profile_gains(dumps: Path, data: Any, held_out: list[str], ks: tuple[int, ...] = KS, draws: int = 3,
                       seed: int = 0, method: str = "softmax") -> dict[str, Any]:
    """Profile gains on every held-out speaker of the leave-one-corpus-out folds (``ser-recipe``'s ``loco`` dumps:
    each fold's held-out windows as speaker sessions, their embeddings, the fold head's last layer): per corpus and
    k, :func:`summarise` of the speakers' draws. ``data``: the window set (clip labels, speakers, paths)."""
    from ser_live.train.corpora import LABELS

    table: dict[str, Any] = {}
    for corpus in held_out:
        z = np.load(dumps / f"{corpus}.npz")
        base = Base(tuple(LABELS), z["weights"].astype(np.float64), z["bias"].astype(np.float64))
        clip, emb = z["clip"], z["embedding"].astype(np.float64)
        by_speaker: dict[str, list[Clip]] = defaultdict(list)
        for c in np.unique(clip):
            e = emb[clip == c]
            by_speaker[str(data.speaker[c])].append((str(data.label[c]), sentence(Path(str(data.path[c])), corpus),
                                                     e, e))
        rows = []
        for speaker in sorted(by_speaker):
            rows += speaker_runs(by_speaker[speaker], base, ks, draws, seed, (method,))
        table[corpus] = {str(k): summarise([r for r in rows if r["k"] == k]) for k in ks
                         if any(r["k"] == k for r in rows)}
    return table
