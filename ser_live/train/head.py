"""The head of a two-graph model: a small MLP over a window's pooled, session-normalised encoder embedding.

Training data are the window sets of :mod:`ser_live.train.windows`. Every speaker's windows go through the very
:class:`~ser_live.realtime.stages.encoder.SessionNormalizer` the engine runs, clips in a random order (a session as
the live path would meet it: the first windows lean on the prior, later ones on the speaker), so the head learns
on what it will see. EmoSpeech's unknown user is never one speaker: its windows are normalised with statistics
over all of them. Corpora weigh the same whatever their size, and so do the labels within a corpus.

Scoring follows the model issue: a clip's verdict is the mean of its windows' probabilities; UAR4 is the unweighted
recall over angry/happy/neutral/sad (those the corpus has; calm counts as neutral), argmax among those four.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ser_live.realtime.stages.encoder import SessionNormalizer, SessionNormConfig
from ser_live.train.corpora import LABELS, TRAIN_ONLY_SPEAKERS
from ser_live.train.metrics import pool_by_clip, uar
from ser_live.train.windows import WindowSet

logger = logging.getLogger(__name__)

FOUR = ("angry", "happy", "neutral", "sad")
NO_NORMALISER = float("inf")  # prior_windows for "global statistics only"


@dataclass(frozen=True)
class HeadConfig:
    hidden: int = 256
    embedding: int = 128
    dropout: float = 0.3
    epochs: int = 25
    batch: int = 256
    learning_rate: float = 1e-3
    seed: int = 42
    prior_windows: float = 100.0  # the shipped normaliser's prior weight (chosen on leave-one-corpus-out)
    memory_windows: float = 600.0
    orders: int = 2  # random clip orders per speaker in training (each a pass through the normaliser)
    # each training session draws its prior weight from these, so that one head serves every strength (and the
    # strength can be chosen after training); 1e12 = global statistics only
    train_priors: tuple[float, ...] = (5.0, 20.0, 100.0, 400.0, 1e12)
    eval_priors: tuple[float, ...] = (20.0, 100.0, 400.0, 1e12)


def prior_of(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x.mean(axis=0), x.std(axis=0) + 1e-6


def session_config(mean: np.ndarray, std: np.ndarray, cfg: HeadConfig) -> SessionNormConfig:
    return SessionNormConfig(tuple(map(float, mean)), tuple(map(float, std)), cfg.prior_windows, cfg.memory_windows)


def normalise_sessions(data: WindowSet, clips: np.ndarray, norm: SessionNormConfig, rng: np.random.Generator,
                       by_label: bool = False, priors: Sequence[float] = ()) -> tuple[np.ndarray, np.ndarray]:
    """The windows of the clips ``clips`` (indices), each speaker one session (clips in a random order; with
    ``by_label`` one session per speaker and label) through the normaliser: (normalised rows, their clip ids).
    ``priors``: each session's prior weight drawn from these instead of ``norm``'s."""
    out_x, out_clip = [], []
    rows_by_clip: dict[int, np.ndarray] = {}
    order = np.argsort(data.clip_of, kind="stable")
    starts = np.searchsorted(data.clip_of[order], np.arange(len(data.corpus) + 1))
    for c in clips:
        rows_by_clip[int(c)] = order[starts[c] : starts[c + 1]]
    keys = data.speaker[clips].astype(object)
    if by_label:
        keys = np.array([f"{s}|{lab}" for s, lab in zip(data.speaker[clips], data.label[clips], strict=True)])
    anyone = np.isin(data.speaker[clips], sorted(TRAIN_ONLY_SPEAKERS))
    for key in np.unique(keys[~anyone]) if (~anyone).any() else []:
        mine = clips[(keys == key) & ~anyone]
        normaliser = SessionNormalizer(replace(norm, prior_windows=float(rng.choice(priors))) if priors else norm)
        for c in rng.permutation(mine):
            rows = rows_by_clip[int(c)]
            if len(rows):
                out_x.append(np.stack([normaliser.process(r) for r in data.x[rows]]))
                out_clip.append(np.full(len(rows), c))
    if anyone.any():  # "anyone": one static normalisation over all of them, never a speaker
        mine = clips[anyone]
        rows = np.concatenate([rows_by_clip[int(c)] for c in mine])
        mean, std = data.x[rows].mean(axis=0), data.x[rows].std(axis=0) + 1e-6
        out_x.append(((data.x[rows] - mean) / std).astype(np.float32))
        out_clip.append(data.clip_of[rows])
    if not out_x:
        return np.zeros((0, data.x.shape[1]), np.float32), np.zeros(0, np.int64)
    return np.concatenate(out_x), np.concatenate(out_clip)


def balanced_weights(corpus: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Each corpus the same total weight, each label within a corpus the same; mean weight 1."""
    w = np.zeros(len(corpus))
    corpora = np.unique(corpus)
    for c in corpora:
        in_c = corpus == c
        labels = np.unique(label[in_c])
        for lab in labels:
            m = in_c & (label == lab)
            w[m] = 1.0 / (len(corpora) * len(labels) * m.sum())
    return w * len(w) / w.sum()


def build_head(dim: int, cfg: HeadConfig, n_labels: int = len(LABELS)):
    import keras

    keras.utils.set_random_seed(cfg.seed)
    inputs = keras.Input((dim,), name="embedding_in")
    x = keras.layers.Dense(cfg.hidden, activation="relu")(inputs)
    x = keras.layers.Dropout(cfg.dropout)(x)
    x = keras.layers.Dense(cfg.embedding, activation="relu", name="embedding")(x)
    x = keras.layers.Dropout(cfg.dropout)(x)
    outputs = keras.layers.Dense(n_labels, activation="softmax", name="probs")(x)
    model = keras.Model(inputs, outputs, name="ser_live_head")
    model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), loss="sparse_categorical_crossentropy")
    return model


def train_head(data: WindowSet, train_clips: np.ndarray, cfg: HeadConfig):
    """The head trained on ``train_clips`` (indices of emotion-labelled clips) and its session normaliser's prior."""
    rng = np.random.default_rng(cfg.seed)
    rows = data.rows_of(np.isin(np.arange(len(data.corpus)), train_clips))
    norm = session_config(*prior_of(data.x[rows]), cfg)
    xs, clips = [], []
    for _ in range(cfg.orders):
        x, c = normalise_sessions(data, train_clips, norm, rng, priors=cfg.train_priors)
        xs.append(x)
        clips.append(c)
    x, clip = np.concatenate(xs), np.concatenate(clips)
    y = np.array([LABELS.index(lab) for lab in data.label[clip]])
    weights = balanced_weights(data.corpus[clip], data.label[clip])
    model = build_head(x.shape[1], cfg)
    model.fit(x, y, sample_weight=weights, epochs=cfg.epochs, batch_size=cfg.batch, verbose=0, shuffle=True)
    return model, norm


def clip_probs(model, data: WindowSet, clips: np.ndarray, norm: SessionNormConfig, seed: int = 0,
               by_label: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The clips (sorted ids) and their mean window probabilities, each speaker's clips played as one session
    (random order)."""
    x, clip = normalise_sessions(data, clips, norm, np.random.default_rng(seed), by_label=by_label)
    probs = model.predict(x, batch_size=1024, verbose=0) if len(x) else np.zeros((0, len(LABELS)))
    return pool_by_clip(probs, clip)


def uar4(truth: Sequence[str], probs: np.ndarray) -> float:
    """UAR over angry/happy/neutral/sad, argmax among the four labels the truth has (calm is neutral already)."""
    t = np.asarray(truth)
    present = [lab for lab in FOUR if (t == lab).any()]
    keep = np.isin(t, present)
    cols = [LABELS.index(lab) for lab in present]
    pred = np.array(present)[np.argmax(probs[keep][:, cols], axis=1)] if keep.any() else np.array([])
    return uar(t[keep], pred, present)


def own_labels_uar(truth: Sequence[str], probs: np.ndarray) -> float:
    """UAR over the labels the truth has, the argmax over all the model's labels (a label the corpus lacks is
    simply wrong)."""
    return uar(np.asarray(truth), np.array(LABELS)[np.argmax(probs, axis=1)], LABELS)


def predicted_shares(truth: Sequence[str], probs: np.ndarray) -> dict[str, float]:
    """Per label: predicted share minus true share, in points (argmax over all labels)."""
    t = np.asarray(truth)
    pred = np.array(LABELS)[np.argmax(probs, axis=1)]
    return {lab: round(100 * (float(np.mean(pred == lab)) - float(np.mean(t == lab))), 1) for lab in LABELS
            if (pred == lab).any() or (t == lab).any()}


def dump_held_out(path, model, data: WindowSet, test: np.ndarray, norm: SessionNormConfig, seed: int = 0) -> None:
    """What calibration and profile experiments need from a fold (``.npz``): the held-out clips' windows played as
    speaker sessions through the normaliser (``clip``, ``probs``, ``embedding``: the head's last hidden layer) and
    one clip at a time on the prior alone (``probs_global``), and the fold head's last layer (``weights``,
    ``bias``)."""
    import keras

    from ser_live.realtime.fileio import atomic_write

    both = keras.Model(model.inputs, [model.get_layer("embedding").output, model.output])
    x, clip = normalise_sessions(data, test, norm, np.random.default_rng(seed))
    emb, probs = both.predict(x, batch_size=1024, verbose=0)
    xg, clip_g = normalise_sessions(data, test, replace(norm, prior_windows=1e12), np.random.default_rng(seed))
    probs_g = model.predict(xg, batch_size=1024, verbose=0)
    w, b = model.get_layer("probs").get_weights()
    s, g = np.argsort(clip, kind="stable"), np.argsort(clip_g, kind="stable")  # rows by clip, windows in order
    assert np.array_equal(clip[s], clip_g[g])

    def write(fh) -> None:
        np.savez(fh, clip=clip[s], probs=probs[s], embedding=emb[s], probs_global=probs_g[g], weights=w, bias=b,
                 label=data.label[clip[s]], speaker=data.speaker[clip[s]])

    atomic_write(path, write)


def loco_table(folder, corpora: Sequence[str], held_out: Sequence[str], cfg: HeadConfig,
               partial=None, dump=None) -> dict:
    """Leave-one-corpus-out over ``held_out``: a head trained on every other corpus of ``corpora``, scored on the
    held-out corpus's clips (not EmoSpeech's unknown user) three ways: ``session`` (each speaker one session, clips
    in a random order, through the normaliser), ``one_emotion`` (one session per speaker and emotion) and
    ``global`` (the prior only: no adaptation); UAR4 in points, the corpus's own-label UAR, and how far each
    label's predicted share is above its true share. ``partial`` (a JSON path) keeps finished corpora."""
    import json
    from pathlib import Path

    from ser_live.realtime.fileio import write_json
    from ser_live.train.windows import load_windows

    data = load_windows(Path(folder), list(corpora))
    done: dict = json.loads(Path(partial).read_text()) if partial and Path(partial).exists() else {}
    clips = np.arange(len(data.corpus))
    for held in held_out:
        if held in done:
            continue
        test = clips[(data.corpus == held) & ~np.isin(data.speaker, sorted(TRAIN_ONLY_SPEAKERS))]
        model, norm = train_head(data, clips[data.corpus != held], cfg)
        if dump is not None:
            Path(dump).mkdir(parents=True, exist_ok=True)
            dump_held_out(Path(dump) / f"{held}.npz", model, data, test, norm)
        row: dict = {}
        variants = [("session", norm, False), ("one_emotion", norm, True),
                    ("global", replace(norm, prior_windows=1e12), False)]
        variants += [(f"{kind}@{n0:g}", replace(norm, prior_windows=n0), kind == "one_emotion")
                     for n0 in cfg.eval_priors for kind in ("session", "one_emotion")]
        # deployment statistics: the held-out corpus's own window statistics (one deployment: its speakers, its
        # microphones) replace the training prior; clips one at a time (no adaptation) or as speaker sessions.
        # "_100" computes them from 100 random clips of it, as a user would from part of an archive.
        rng = np.random.default_rng(cfg.seed)
        deployment = session_config(*prior_of(data.x[data.rows_of(np.isin(clips, test))]), cfg)
        sample = rng.choice(test, size=min(100, len(test)), replace=False)
        deployment_100 = session_config(*prior_of(data.x[data.rows_of(np.isin(clips, sample))]), cfg)
        variants += [("deployment", replace(deployment, prior_windows=1e12), False),
                     ("deployment_100", replace(deployment_100, prior_windows=1e12), False),
                     ("deployment_session", deployment, False), ("deployment_one_emotion", deployment, True)]
        for name, nrm, by_label in variants:
            ids, p = clip_probs(model, data, test, nrm, by_label=by_label)
            truth = data.label[ids]
            row[name] = round(100 * uar4(truth, p), 1)
            if name == "session":
                row["own_labels_uar"] = round(100 * own_labels_uar(truth, p), 1)
                row["share_above_truth"] = predicted_shares(truth, p)
                row["clips"] = len(ids)
        done[held] = row
        logger.info("held out %s: %s", held, row)
        if partial:
            write_json(Path(partial), done)
    keys = [k for k in done[held_out[0]] if isinstance(done[held_out[0]][k], float)]
    mean = {k: round(float(np.mean([done[h][k] for h in held_out])), 1) for k in keys}
    return {"held_out": {h: done[h] for h in held_out}, "mean": mean, "head": cfg.__dict__.copy()}


def speaker_kfold(folder, corpora: Sequence[str], corpus: str, cfg: HeadConfig, folds: int = 4) -> dict:
    """Speaker K-fold on one corpus (the model issue's "RAVDESS 4-fold"): each fold's head trains on every other
    corpus and the corpus's other folds' speakers, and is scored on the fold's speakers (speaker sessions, and one
    clip at a time on the prior): own-labels UAR (argmax over all seven) and UAR4, per fold and their mean."""
    from pathlib import Path

    from ser_live.train.windows import load_windows

    data = folder if isinstance(folder, WindowSet) else load_windows(Path(folder), list(corpora))
    clips = np.arange(len(data.corpus))
    speakers = sorted({str(s) for s in data.speaker[data.corpus == corpus]})
    rows = []
    for k in range(folds):
        held = speakers[k::folds]
        test = clips[np.isin(data.speaker, held)]
        model, norm = train_head(data, clips[~np.isin(data.speaker, held)], cfg)
        row: dict = {"speakers": held}
        for name, nrm in (("session", norm), ("global", replace(norm, prior_windows=1e12))):
            ids, p = clip_probs(model, data, test, nrm)
            row[f"uar_{name}"] = round(100 * own_labels_uar(data.label[ids], p), 1)
            row[f"uar4_{name}"] = round(100 * uar4(data.label[ids], p), 1)
        rows.append(row)
        logger.info("%s fold %d: %s", corpus, k + 1, row)
    keys = [k for k in rows[0] if k != "speakers"]
    return {"corpus": corpus, "folds": rows, "mean": {k: round(float(np.mean([r[k] for r in rows])), 1) for k in keys}}


CORPUS_TITLES = {"ravdess": "RAVDESS (English, actors)", "tess": "TESS (English, 2 actresses)",
                 "ased": "ASED (Amharic)", "banglaser": "BanglaSER (Bangla)", "aesdd": "AESDD (Greek)",
                 "emodb": "EmoDB (German)", "savee": "SAVEE (British English)", "jl": "JL (NZ English)",
                 "emospeech": "EmoSpeech (Indian, phones)"}


def loco_markdown(table: dict, prior: float) -> str:
    """The leave-one-corpus-out table as the model card prints it (UAR4 in %, each held-out corpus)."""
    n0 = f"{prior:g}"
    first = next(iter(table["held_out"].values()))
    # the columns measured at the shipped prior weight (the eval_priors sweep, or the run's own when not swept)
    session, one = (f"session@{n0}", f"one_emotion@{n0}") if f"session@{n0}" in first else ("session", "one_emotion")
    deploy = "deployment" in first  # deployment statistics measured (one clip at a time / speaker sessions)
    extra_head = " UAR4, deployment statistics, one clip / session |" if deploy else ""
    lines = ["| held-out corpus | clips | UAR4, session | UAR4, one emotion per session | UAR4, no normaliser |"
             f"{extra_head} own labels UAR | label most over-predicted |",
             "|---|---|---|---|---|" + ("---|" if deploy else "") + "---|---|"]
    for corpus, row in table["held_out"].items():
        shares = row.get("share_above_truth", {})
        worst = max(shares, key=shares.get) if shares else "-"
        extra = f" {row['deployment']:.1f} / {row['deployment_session']:.1f} |" if deploy else ""
        lines.append(f"| {CORPUS_TITLES.get(corpus, corpus)} | {row['clips']} | {row[session]:.1f} | "
                     f"{row[one]:.1f} | {row['global']:.1f} |{extra} {row['own_labels_uar']:.1f} | "
                     f"{worst} +{shares.get(worst, 0):.1f} |")
    mean = table["mean"]
    extra = f" {mean['deployment']:.1f} / {mean['deployment_session']:.1f} |" if deploy else ""
    lines.append(f"| **mean** | | **{mean[session]:.1f}** | {mean[one]:.1f} | "
                 f"{mean['global']:.1f} |{extra} | |")
    return "\n".join(lines)
