"""``ser-train``: corpora -> speech-gated windows -> features -> Keras CNN -> honest evaluation.

Example::

    ser-train --data ravdess=../shared/data/ravdess --data tess=../shared/data/tess \\
        --recipe seed180 --split speaker --out runs/seed180-speaker
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ser_live import __version__
from ser_live.realtime.errors import UserError
from ser_live.realtime.fileio import save_npy, write_json
from ser_live.realtime.stages.affect import LEXICON_CITATION
from ser_live.realtime.stages.features import PRESETS, get_preset
from ser_live.realtime.stages.normalize import DEFAULT_TIME_CONSTANT_S, MODE_NONE, MODE_WINDOW, MODES, InputNormConfig
from ser_live.realtime.stages.pipeline import (
    DEFAULT_HOP_S,
    DEFAULT_MIN_SPEECH_S,
    DEFAULT_VAD_AGGRESSIVENESS,
    DEFAULT_VAD_NOISE_MARGIN_DB,
    DEFAULT_WINDOW_S,
    PipelineConfig,
)
from ser_live.realtime.tooling import (
    EXIT_INTERRUPTED,
    HelpFormatter,
    basic_logging,
    check_number,
    die_with,
    require_modules,
    run_tool,
)
from ser_live.train.batch_augment import NO_BATCH_AUGMENT, SPEC_AUGMENT, BatchAugment, augment_batch

logger = logging.getLogger(__name__)

DEFAULT_OUT = Path("runs/latest")
DEFAULT_CACHE = Path(".cache/features")
DEFAULT_SEED = 42
DEFAULT_TEST_FRAC = 0.2
DEFAULT_VAL_FRAC = 0.15
DEFAULT_AUGMENT = "seed"
AUGMENT_CHOICES = ("none", "seed", "strong", "channel")
INPUT_NORM_CHOICES = ("auto", *MODES)
DEFAULT_INPUT_NORM = "auto"
DEFAULT_SESSION_RESTART = 0.0
TRAIN_MODULES = ("keras", "tensorflow", "audiomentations")  # the train extra: networks, augmentation
DEFAULT_AFFECT_WEIGHT = 0.0  # ser_live.train.models.DEFAULT_AFFECT_WEIGHT (not imported: it loads Keras)
ADVERSARY_BY = ("corpus", "speaker")  # ser_live.train.models.ADVERSARY_BY
DEFAULT_ADVERSARY_SCALE = 0.1  # ser_live.train.models.DEFAULT_ADVERSARY_SCALE
SPLIT_CHOICES = ("random", "speaker", "corpus")
PARITY_ROWS = 256  # validation windows saved for ser-export's parity check
RECIPE_CHOICES = ("seed180", "seed162", "logmel_cnn", "logmel_cnn2d")
DEFAULT_MIXUP = NO_BATCH_AUGMENT.mixup_alpha  # 0: off
AUGMENT_STREAM = 1  # the batch augmentation's random stream, apart from the batch order's
# The defaults --help shows for the training hyper-parameters. ser_live.train.models.TrainHyperParams holds the values
# used (importing it loads Keras: too slow for --help); tests/test_train_e2e.py checks that the two agree.
HYPER_HELP_DEFAULTS: dict[str, float] = {
    "epochs": 50,
    "batch_size": 64,
    "learning_rate": 1e-3,
    "patience": 10,
    "label_smoothing": 0.0,
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ser-train",
        description="Train a speech-emotion CNN on labelled corpora, evaluated without speaker leakage.",
        formatter_class=HelpFormatter,
    )
    d = p.add_argument_group("data")
    d.add_argument(
        "--data",
        action="append",
        metavar="NAME=PATH",
        required=True,
        help="a corpus folder; NAME is one of ravdess, tess, crema-d, savee, mesd, emodb, ased (repeat for several)",
    )
    d.add_argument("--keep-calm", action="store_true", help="keep RAVDESS 'calm' as an eighth label (seed 2)")
    d.add_argument(
        "--limit", action="append", default=[], metavar="[NAME=]N",
        help="use at most N clips per corpus (0 = all), drawn at random with --seed: N for every corpus, "
        "NAME=N for one (repeat), e.g. --limit tess=800 to keep TESS's two speakers from outweighing the rest",
    )
    d.add_argument("--cache", type=_cache_dir, default=DEFAULT_CACHE, help="feature cache folder ('' to disable)")
    m = p.add_argument_group("model")
    m.add_argument("--network", "--recipe", dest="recipe", choices=RECIPE_CHOICES, default="seed180",
                   help="network architecture (--recipe: its older name; a model's whole recipe is a file in "
                   "recipes/, run by ser-recipe)")
    m.add_argument(
        "--preset", choices=sorted(PRESETS), default=None, help="feature preset (default: the recipe's own)"
    )
    w = p.add_argument_group("windows (as the live engine cuts audio)")
    w.add_argument("--window", type=float, default=DEFAULT_WINDOW_S, help="window length, seconds")
    w.add_argument("--hop", type=float, default=DEFAULT_HOP_S, help="hop between windows, seconds")
    w.add_argument("--min-speech", type=float, default=DEFAULT_MIN_SPEECH_S, help="speech needed in a window, seconds")
    w.add_argument("--vad", type=int, choices=range(4), default=DEFAULT_VAD_AGGRESSIVENESS, help="VAD aggressiveness")
    w.add_argument(
        "--vad-noise-margin",
        type=float,
        default=DEFAULT_VAD_NOISE_MARGIN_DB,
        help="a voiced frame must stand this many dB above the noise floor (0 = webrtcvad alone, as for v1)",
    )
    w.add_argument(
        "--no-vad-agc",
        action="store_true",
        help="give webrtcvad the raw level (v1) instead of a level-normalised copy of the signal",
    )
    w.add_argument(
        "--input-norm",
        choices=INPUT_NORM_CHOICES,
        default=DEFAULT_INPUT_NORM,
        help="model-input normalisation (realtime/stages/normalize.py): none, window (per-window level reference) or "
        "session (running speaker level and spectral shape); auto = window for log-mel presets (the measured "
        "choice: ser_live/models/README.md), none otherwise",
    )
    w.add_argument(
        "--session-restart",
        type=float,
        default=DEFAULT_SESSION_RESTART,
        help="training only: chance that a new session starts before each of a speaker's clips (0 = one session "
        "per speaker), so the model also learns windows early in a session",
    )
    w.add_argument(
        "--session-tau",
        type=float,
        default=DEFAULT_TIME_CONSTANT_S,
        help="time constant of the session statistics, seconds",
    )
    e = p.add_argument_group("evaluation")
    e.add_argument(
        "--split",
        choices=SPLIT_CHOICES,
        default="speaker",
        help="random (seed-comparable), speaker, or corpus (train on the others, test on all of --test-corpus)",
    )
    e.add_argument(
        "--test-corpus", default=None, help="the corpus held out whole (default: none; required by --split corpus)"
    )
    e.add_argument("--folds", type=int, default=0, help="speaker-grouped K-fold cross-validation (0 = one split); "
                   "each fold trains in a process of its own, so memory does not grow from fold to fold")
    e.add_argument("--fold", type=int, default=0, metavar="K",
                   help="with --folds: train fold K alone into OUT/foldK (0 = every fold), e.g. folds on several "
                   "machines; then the whole command with --resume writes cv_metrics.json from them")
    e.add_argument(
        "--holdout-corpus",
        default="auto",
        help="only hold out speakers of this corpus (auto: ravdess when present; 'any' for all corpora)",
    )
    e.add_argument("--test-frac", type=float, default=DEFAULT_TEST_FRAC, help="share of clips/speakers for test")
    e.add_argument("--val-frac", type=float, default=DEFAULT_VAL_FRAC, help="share of clips/speakers for validation")
    t = p.add_argument_group("training")
    t.add_argument("--augment", choices=AUGMENT_CHOICES, default=DEFAULT_AUGMENT, help="training-split augmentation")
    t.add_argument(
        "--specaugment", action="store_true",
        help=f"mask {SPEC_AUGMENT.freq_masks} spans of up to {SPEC_AUGMENT.freq_width} mel bands and "
        f"{SPEC_AUGMENT.time_masks} of up to {SPEC_AUGMENT.time_width} frames in every training window, anew each "
        "epoch (SpecAugment without time warping)",
    )
    t.add_argument(
        "--mixup", type=float, default=DEFAULT_MIXUP, metavar="ALPHA",
        help="mix each training window with another of its batch, l ~ Beta(ALPHA, ALPHA) folded to l >= 0.5, "
        "targets and weights alike; 0 = off, 0.2 is usual",
    )
    hd = HYPER_HELP_DEFAULTS
    t.add_argument(
        "--epochs", type=int, default=None,
        help=f"maximum epochs; early stopping may end sooner (default: {hd['epochs']})",
    )
    t.add_argument("--batch-size", type=int, default=None, help=f"batch size (default: {hd['batch_size']})")
    t.add_argument("--lr", type=float, default=None, help=f"Adam learning rate (default: {hd['learning_rate']})")
    t.add_argument(
        "--patience", type=int, default=None, help=f"early-stopping patience, epochs (default: {hd['patience']})"
    )
    t.add_argument(
        "--label-smoothing", type=float, default=None,
        help=f"label smoothing for the loss (default: {hd['label_smoothing']})",
    )
    t.add_argument("--class-weights", action="store_true", help="weight classes by inverse frequency")
    t.add_argument(
        "--balance-corpora", action="store_true", help="weight windows so that every corpus counts equally"
    )
    t.add_argument(
        "--affect-weight", type=float, default=DEFAULT_AFFECT_WEIGHT,
        help="add an arousal/valence output trained with the classes (multi-task; targets: the NRC VAD lexicon "
        "coordinates of each clip's label, so every corpus teaches it), its loss weighted so; 0 = no such head",
    )
    t.add_argument(
        "--adversary", choices=("none", *ADVERSARY_BY), default="none",
        help="train with a branch that guesses each window's corpus or speaker through a gradient reversal layer, "
        "pushing the embedding to stop encoding who and where (training only: the exported model is unchanged in "
        "shape) (default: none)",
    )
    t.add_argument(
        "--adversary-scale", type=float, default=DEFAULT_ADVERSARY_SCALE, metavar="LAMBDA",
        help=f"with --adversary: the reversed gradient's scale (default: {DEFAULT_ADVERSARY_SCALE})",
    )
    t.add_argument(
        "--adversary-ramp", action="store_true",
        help="with --adversary: raise the scale from 0 to LAMBDA over training on DANN's schedule "
        "(2 / (1 + exp(-10 p)) - 1, p the share of epochs done) instead of applying it from the start",
    )
    t.add_argument(
        "--time-budget", type=float, default=0.0, metavar="MINUTES",
        help="stop after the last epoch that fits in this many minutes of training (estimated from the epochs so "
        "far; per fold with --folds), keep the best epoch's weights and evaluate as usual; 0 = no limit. Ctrl-C "
        "once does the same now (with --folds: and skips the folds left); twice aborts",
    )
    t.add_argument(
        "--resume", action="store_true",
        help="with --folds: keep each fold an earlier run of the same command finished in --out (its test speakers, "
        "seeds, recipe and labels must be this run's) and train only the others, e.g. after a kill",
    )
    t.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (splits, init, augmentation)")
    t.add_argument("--split-seed", type=int, default=None, metavar="SEED",
                   help="seed of the split alone (default: --seed); a second training seed with the same "
                   "--split-seed keeps the same held-out speakers")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="run folder to write")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    name: str


def _cache_dir(value: str) -> Path | None:
    """``--cache DIR``; the empty string means no cache (``Path('')`` would be the current folder)."""
    return Path(value) if value.strip() else None


def _check_out(out: Path) -> None:
    """--out is checked before minutes of feature extraction: a folder that exists or can be made, writable."""
    from ser_live.realtime.fileio import check_folder_writable

    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file: give a folder for the run")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create --out {out}: {err.strerror or err}; choose a writable folder") from None
    check_folder_writable(out / "config.json", "--out")


def _holdout_corpus(arg: str, corpora: Sequence[str]) -> str | None:
    if arg == "any":
        return None
    if arg == "auto":
        return "ravdess" if "ravdess" in corpora and len(set(corpora)) > 1 else None
    if arg not in corpora:
        raise UserError(f"--holdout-corpus {arg!r} is not among the loaded corpora {sorted(set(corpora))}")
    return arg


def _test_corpus(arg: str | None, corpora: Sequence[str]) -> str:
    from ser_live.train.corpora import corpus_name

    if arg is None:
        raise UserError("--split corpus needs --test-corpus NAME (one of the --data corpora)")
    name = corpus_name(arg)
    present = sorted(set(corpora))
    if name not in present:
        raise UserError(
            f"--test-corpus {arg} is not among the loaded corpora ({', '.join(present)}): add --data {name}=PATH"
        )
    if len(present) < 2:
        raise UserError(f"--split corpus needs another corpus to train on besides {name}: add a --data corpus")
    return name


def split_seed(args: argparse.Namespace) -> int:
    """The seed the split is drawn with: ``--split-seed``, else ``--seed``."""
    return args.seed if args.split_seed is None else args.split_seed


def make_splits(args: argparse.Namespace, records: Sequence[Any]) -> list[Split]:
    from ser_live.train import splits

    labels = np.array([r.label for r in records])
    speakers = np.array([r.speaker for r in records])
    corpora = np.array([r.corpus for r in records])
    holdout = _holdout_corpus(args.holdout_corpus, list(corpora))
    seed = split_seed(args)
    if args.folds:
        folds = splits.speaker_kfold(
            speakers, args.folds, seed=seed, corpora=corpora, holdout_corpus=holdout,
            labels=labels, val_frac=args.val_frac,
        )
        return [Split(f.train, f.val, f.test, f"speaker-fold{k + 1}of{args.folds}") for k, f in enumerate(folds)]
    if args.split == "corpus":
        r = splits.corpus_split(
            speakers, labels, corpora, _test_corpus(args.test_corpus, list(corpora)), val_frac=args.val_frac,
            seed=seed,
        )
        return [Split(r.train, r.val, r.test, f"corpus-{args.test_corpus}")]
    if args.test_corpus is not None:
        raise UserError("--test-corpus needs --split corpus")
    if args.split == "random":
        r = splits.random_split(labels, test_frac=args.test_frac, val_frac=args.val_frac, seed=seed)
        return [Split(r.train, r.val, r.test, "random")]
    r = splits.speaker_split(
        speakers, labels, test_frac=args.test_frac, val_frac=args.val_frac, seed=seed,
        corpora=corpora, holdout_corpus=holdout,
    )
    return [Split(r.train, r.val, r.test, "speaker")]


def batch_augment_config(args: argparse.Namespace) -> BatchAugment:
    """``--specaugment`` and ``--mixup`` as one :class:`~ser_live.train.batch_augment.BatchAugment`."""
    masks = SPEC_AUGMENT if args.specaugment else NO_BATCH_AUGMENT
    return replace(masks, mixup_alpha=args.mixup)


def _augment_config(name: str) -> Any:
    from ser_live.train.augment import AugmentConfig

    if name == "none":
        return None
    if name == "seed":
        return AugmentConfig()
    if name == "channel":
        return AugmentConfig.channel()
    return AugmentConfig.strong()


def input_norm_config(args: argparse.Namespace, preset_kind: str) -> InputNormConfig:
    """--input-norm / --session-tau as a config (auto: window for log-mel presets, none for mean vectors)."""
    mode = args.input_norm
    if mode == "auto":
        mode = MODE_WINDOW if preset_kind == "frames" else MODE_NONE
    if mode != MODE_NONE and preset_kind != "frames":
        raise UserError(f"--input-norm {mode} needs a log-mel preset (frames); the seed presets take none")
    return InputNormConfig(mode=mode, time_constant_s=args.session_tau)


def progress_bar(quiet: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        disable=quiet,
        transient=False,
    )


def train_one(
    args: argparse.Namespace,
    records: Sequence[Any],
    split: Split,
    labels: tuple[str, ...],
    config: PipelineConfig,
    out: Path,
    data_summary: dict[str, Any],
) -> dict[str, Any]:
    """Extract, fit, evaluate and write one run folder. Returns the metrics."""

    from ser_live.export.onnx_export import split_outputs
    from ser_live.train import metrics as scores
    from ser_live.train import models
    from ser_live.train.dataset import FeatureBuilder, Standardizer, fit_input_norm, normalize_clips, stack_examples
    from ser_live.train.report import plot_confusion, plot_curves

    out.mkdir(parents=True, exist_ok=True)
    cache = args.cache
    augment = _augment_config(args.augment)
    if args.adversary != "none":  # before hours of feature extraction, not after
        domains_found = sorted({getattr(records[i], args.adversary) for i in split.train})
        if len(domains_found) < 2:
            plural = {"corpus": "corpora", "speaker": "speakers"}[args.adversary]
            raise UserError(f"--adversary {args.adversary} needs at least two {plural} in the training split, it has "
                            f"{', '.join(domains_found) or 'none'}: use --adversary speaker, or add a corpus")
    builder = FeatureBuilder(config, cache_dir=cache, augment=augment, seed=args.seed)
    shape = config.feature_shape
    # labels only the test part has (a corpus split): reported with recall 0, never dropped
    test_only = tuple(sorted({records[i].label for i in split.test} - set(labels)))
    eval_labels = (*labels, *test_only)
    clips_of: dict[str, list[Any]] = {}
    with progress_bar(args.quiet) as progress:
        for part, idx, aug in (("train", split.train, True), ("val", split.val, False), ("test", split.test, False)):
            task = progress.add_task(f"features {part:5s}", total=len(idx), info="")
            clips_of[part] = builder.build(
                [records[i] for i in idx], with_augment=aug, progress=lambda n, t=task: progress.advance(t, n)
            )
            progress.update(task, info=f"{sum(len(c.features) for c in clips_of[part])} windows")
    floor = config.preset.floor_db
    input_norm = fit_input_norm(clips_of["train"], input_norm_config(args, config.preset.kind), floor)
    # Memory: each part's windows are held once as clips and once stacked; the raw clips are dropped as soon as
    # their normalised copies exist, and only the records are kept after stacking (a 90k-window run peaked at
    # 17 GB when every stage kept its copy).
    parts = {}
    for k, part in enumerate(("train", "val", "test")):
        if input_norm.enabled:
            restart = args.session_restart if part == "train" else 0.0  # held-out speakers: one session each
            clips_of[part] = normalize_clips(clips_of[part], input_norm, config.hop_samples / config.sample_rate,
                                             seed=args.seed + k, abs_floor_db=floor, restart=restart)
        x, y, g = stack_examples(clips_of[part], eval_labels if part == "test" else labels, shape)
        parts[part] = ([c.record for c in clips_of.pop(part)], x, y, g)
    (train_recs, x_tr, y_tr, g_tr), (_, x_va, y_va, _), (test_recs, x_te, y_te, g_te) = (
        parts["train"],
        parts["val"],
        parts["test"],
    )
    for name, x in (("training", x_tr), ("validation", x_va), ("test", x_te)):
        if len(x) == 0:
            raise UserError(
                f"the {name} split has no speech windows: use more data, a smaller --min-speech, or another --split"
            )
    norm = Standardizer.fit(x_tr)
    overrides = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.lr,
        "patience": args.patience,
        "label_smoothing": args.label_smoothing,
        "class_weighting": True if args.class_weights else None,
    }
    hyper = replace(models.TrainHyperParams(), **{k: v for k, v in overrides.items() if v is not None})
    models.set_seeds(args.seed)
    model = models.build_model(args.recipe, models.model_input_shape(shape), len(labels), seed=args.seed)
    targets = affect_targets(labels) if args.affect_weight > 0 else None
    if targets is not None:
        model = models.with_affect_head(model, seed=args.seed)
    net = model  # what is saved, evaluated and exported; an adversarial branch is for training only
    domains, domain_names = None, []
    if args.adversary != "none":
        of = [getattr(train_recs[g], args.adversary) for g in g_tr]
        domain_names, domain_idx = np.unique(np.asarray(of), return_inverse=True)
        model = models.with_adversary(net, len(domain_names), args.adversary_scale, seed=args.seed)
        domains = (domain_idx.astype(np.int64), len(domain_names))
        logger.info("adversarial branch: %d %s domains, reversed-gradient scale %g", len(domain_names),
                    args.adversary, args.adversary_scale)
    models.compile_model(model, hyper.learning_rate, label_smoothing=hyper.label_smoothing,
                         affect_weight=args.affect_weight)
    n_cls = len(labels)

    def prep(x: np.ndarray) -> np.ndarray:
        return norm.apply(x).reshape((len(x), *models.model_input_shape(shape)))

    ckpt = out / "checkpoint.keras"
    stop = StopControl(args.time_budget * 60 if args.time_budget > 0 else None)
    callbacks = [*models.callbacks_for(hyper, ckpt), _RichEpochs(hyper.epochs, args.quiet), stop]
    ramp = None
    if domains is not None and args.adversary_ramp:
        ramp = models.AdversaryRamp(model.get_layer("gradient_reversal"), hyper.epochs)
        callbacks.append(ramp)
    weights = np.ones(len(y_tr), dtype=np.float32)
    if hyper.class_weighting:
        cw = models.class_weights(y_tr, n_cls)
        weights *= np.array([cw[int(c)] for c in y_tr], dtype=np.float32)
    if args.balance_corpora:
        weights *= corpus_weights([train_recs[g].corpus for g in g_tr])
    batch_aug = batch_augment_config(args)
    t0 = time.time()
    history = model.fit(
        Batches(x_tr, y_tr, weights, n_cls, hyper.batch_size, prep, seed=args.seed, affect=targets,
                augment=batch_aug, domains=domains),
        validation_data=Batches(x_va, y_va, None, n_cls, hyper.batch_size, prep, seed=args.seed, shuffle=False,
                                affect=targets, domains=None if domains is None else (None, domains[1])),
        epochs=hyper.epochs,
        callbacks=callbacks,
        verbose=0,
    )
    train_s = time.time() - t0
    epochs_run = len(history.history.get("loss", []))
    stopped = None if stop.reason is None else {"reason": stop.reason, "after_epoch": epochs_run}
    if stopped is not None:
        logger.warning("training stopped after epoch %d of %d (%s); the best epoch's weights are kept", epochs_run,
                       hyper.epochs, stop.reason)
    domain_accuracy = history.history.get(f"{models.ADVERSARY_OUTPUT}_accuracy")
    model = net
    model.save(out / "model.keras")
    ckpt.unlink(missing_ok=True)

    probs, head = split_outputs(model.predict(prep(x_te), verbose=0, batch_size=512))
    ids = list(range(len(eval_labels)))
    window_metrics = scores.metrics_dict(y_te, probs.argmax(axis=1), ids, eval_labels)
    clip_ids, clip_probs = scores.pool_by_clip(probs, g_te)
    clip_true = np.array([eval_labels.index(test_recs[c].label) for c in clip_ids], dtype=np.int64)
    clip_metrics = scores.metrics_dict(clip_true, clip_probs.argmax(axis=1), ids, eval_labels)
    if test_only:
        known = clip_true < len(labels)
        clip_metrics["labels_not_in_training"] = {
            "labels": list(test_only),
            "clips": int(np.sum(~known)),
            "note": "recall 0 by construction (the model cannot output them); counted in uar/accuracy",
            "predicted_as": {
                name: int(np.sum(clip_probs[~known].argmax(axis=1) == i)) for i, name in enumerate(labels)
            },
            "uar_over_trained_labels": scores.metrics_dict(
                clip_true[known], clip_probs[known].argmax(axis=1), list(range(len(labels))), labels
            )["uar"],
        }
        logger.warning(
            "test labels the training set lacks: %s (%d clips; recall 0, counted)", ", ".join(test_only),
            int(np.sum(~known)),
        )
    affect_figures = test_affect(eval_labels, labels, clip_true, clip_probs, g_te, clip_ids, head)
    skipped = {path for path, _ in builder.report.unreadable or []}

    def used(idx: np.ndarray) -> list[Any]:
        """The records of a part that were read (unreadable files are reported under skipped_files)."""
        return [records[i] for i in idx if str(records[i].path) not in skipped]

    test_records = used(split.test)
    no_window = len(test_records) - len(clip_ids)
    metrics = {
        "split": split.name,
        "headline": {
            "level": "clip (mean of its windows' probabilities)",
            "accuracy": clip_metrics["accuracy"],
            "uar": clip_metrics["uar"],
            "macro_f1": clip_metrics["macro_f1"],
        },
        "clip": clip_metrics,
        "per_corpus": scores.group_metrics(
            [test_recs[c].corpus for c in clip_ids], clip_true, clip_probs.argmax(axis=1), ids, eval_labels
        ),
        "window": window_metrics,
        "test_clips_without_speech_window": no_window,
        "counts": {
            "train": _counts(used(split.train)),
            "val": _counts(used(split.val)),
            "test": _counts(test_records),
            "windows": {"train": len(x_tr), "val": len(x_va), "test": len(x_te)},
        },
        "test_speakers": sorted({r.speaker for r in test_records}),
        "skipped_files": builder.report.to_dict()["unreadable"],
        "extraction": builder.report.to_dict(),
        "no_speech_window_clips": len(builder.report.no_speech or []),
        "input_normalization": input_norm.mode,
        "affect": affect_figures,
        "augment": args.augment,
        "adversary": None if domains is None else {
            "by": args.adversary, "domains": len(domain_names), "scale": args.adversary_scale,
            "scale_by_epoch": None if ramp is None else ramp.history,
            "train_domain_accuracy_by_epoch": [round(float(a), 4) for a in domain_accuracy or []],
            "chance": round(1.0 / len(domain_names), 4),
        },
        "epochs_run": epochs_run,
        "stopped_early": stopped,
        "train_seconds": round(train_s, 1),
    }
    if split.name.startswith("speaker") and any(r.corpus == "tess" for r in records):
        metrics["note"] = "TESS has two speakers only: it stays in training; held-out speakers are RAVDESS actors."
    run_config = {
        "labels": list(labels),
        **config.to_dict(),
        "recipe": args.recipe,
        "normalization": norm.to_dict(),
        "input_normalization": input_norm.to_dict(),
        "session_restart": args.session_restart,
        "augment": None if augment is None else asdict(augment),
        "batch_augment": batch_aug.to_dict() if batch_aug.active else None,
        "adversary": None if domains is None else {
            "by": args.adversary, "scale": args.adversary_scale, "ramp": bool(args.adversary_ramp),
            "domains": [str(d) for d in domain_names],
            "output": models.ADVERSARY_OUTPUT, "note": "training only: not in model.keras nor the export",
        },
        "affect_head": None if targets is None else {
            "weight": args.affect_weight, "output": models.AFFECT_OUTPUT, "targets": LEXICON_CITATION,
        },
        "hyper": asdict(hyper),
        "split": split.name,
        "seed": args.seed,
        "split_seed": split_seed(args),
        "data": data_summary,
        "metrics": metrics["headline"] | {"split": split.name},
        "project_version": __version__,
    }
    write_json(out / "config.json", run_config)
    write_json(out / "metrics.json", metrics)
    rng = np.random.default_rng(args.seed)
    rows = rng.choice(len(x_va), size=min(PARITY_ROWS, len(x_va)), replace=False)
    save_npy(out / "val_features.npy", x_va[rows].astype(np.float32))
    plot_confusion(np.asarray(clip_metrics["confusion_matrix"]["matrix"]), eval_labels, out / "confusion.png",
                   title=f"{args.recipe} — {split.name} split, test clips")
    plot_curves(history.history, out / "curves.png", title=f"{args.recipe} — {split.name}")
    print(f"\n{args.recipe} · split={split.name} · test clips={len(clip_ids)} · windows={len(x_te)}")
    print(scores.classification_report(clip_true, clip_probs.argmax(axis=1), ids, eval_labels))
    print(f"clip accuracy {clip_metrics['accuracy']:.4f}  UAR {clip_metrics['uar']:.4f}  "
          f"macro-F1 {clip_metrics['macro_f1']:.4f}  |  window accuracy {window_metrics['accuracy']:.4f}  "
          f"UAR {window_metrics['uar']:.4f}")
    return metrics


def affect_targets(labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per label: its (arousal, valence) target, from the NRC VAD lexicon, and whether it has one (weight 0 if
    not). UserError when no label has coordinates (nothing to teach the head)."""
    from ser_live.realtime.stages.affect import lexicon_coordinates

    found = [lexicon_coordinates(label) for label in labels]
    if not any(c is not None for c in found):
        raise UserError(
            f"no label of {', '.join(labels)} has arousal/valence coordinates: train without --affect-weight"
        )
    coords = np.array([(0.0, 0.0) if c is None else c for c in found], dtype=np.float32)
    return coords, np.array([c is not None for c in found], dtype=np.float32)


def test_affect(
    eval_labels: Sequence[str],
    labels: Sequence[str],
    clip_true: np.ndarray,
    clip_probs: np.ndarray,
    groups: np.ndarray,
    clip_ids: np.ndarray,
    head: np.ndarray | None,
) -> dict[str, Any]:
    """Binary arousal/valence accuracy of the test clips: the lexicon mapping of the clip probabilities, and the
    trained head (mean of its window outputs) when the model has one."""
    from ser_live.realtime.stages.affect import AffectMap
    from ser_live.train import metrics as scores

    coords, known, valenced = scores.affect_truth(list(eval_labels), clip_true)
    out: dict[str, Any] = {}
    lexicon = AffectMap.lexicon(labels)
    if lexicon is not None:
        out["lexicon"] = scores.affect_scores(lexicon(clip_probs), coords, known, valenced)
    if head is not None:
        pooled = np.stack([head[groups == c].mean(axis=0) for c in clip_ids]) if len(clip_ids) else head[:0]
        out["head"] = scores.affect_scores(pooled, coords, known, valenced)
    return out


def corpus_weights(corpora: Sequence[str]) -> np.ndarray:
    """Per-window weights giving every corpus the same total weight (mean weight 1)."""
    names, inverse, counts = np.unique(np.asarray(corpora), return_inverse=True, return_counts=True)
    per_corpus = len(corpora) / (len(names) * counts)
    return per_corpus[inverse].astype(np.float32)


class Batches:
    """Standardises one batch at a time, so the training set is held in memory once (raw float32)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        import keras

        from ser_live.train.models import ADVERSARY_OUTPUT, AFFECT_OUTPUT, PROBS_OUTPUT

        class _Batches(keras.utils.PyDataset):
            def __init__(
                self,
                x: np.ndarray,
                y: np.ndarray,
                w: np.ndarray | None,
                n_cls: int,
                batch_size: int,
                prep: Any,
                seed: int,
                shuffle: bool = True,
                affect: tuple[np.ndarray, np.ndarray] | None = None,
                augment: BatchAugment = NO_BATCH_AUGMENT,
                domains: tuple[np.ndarray | None, int] | None = None,
            ) -> None:
                super().__init__()
                self.x, self.y, self.w, self.n_cls, self.bs, self.prep = x, y, w, n_cls, batch_size, prep
                self.shuffle, self.affect, self.augment = shuffle, affect, augment
                # (per-window domain index, domain count); index None: no domain targets (weight 0, validation)
                self.domains = domains
                self.rng = np.random.default_rng(seed)
                self.aug_rng = np.random.default_rng([seed, AUGMENT_STREAM])  # apart from the order's stream
                self.order = self.rng.permutation(len(x)) if shuffle else np.arange(len(x))

            def __len__(self) -> int:
                return (len(self.x) + self.bs - 1) // self.bs

            def __getitem__(self, i: int) -> tuple[np.ndarray, ...]:
                idx = np.sort(self.order[i * self.bs : (i + 1) * self.bs])
                onehot = np.eye(self.n_cls, dtype=np.float32)[self.y[idx]]
                w = np.ones(len(idx), np.float32) if self.w is None else self.w[idx]
                x = self.prep(self.x[idx])
                if self.domains is not None:  # two outputs: class targets and the adversary's domain targets
                    index, n_domains = self.domains
                    if index is None:
                        target, dw = np.zeros((len(idx), n_domains), np.float32), np.zeros(len(idx), np.float32)
                    else:
                        target, dw = np.eye(n_domains, dtype=np.float32)[index[idx]], w
                    parts = [onehot, target, w, dw]
                    if self.augment.active:
                        x, parts = augment_batch(x, parts, self.augment, self.aug_rng)
                    return x, {PROBS_OUTPUT: parts[0], ADVERSARY_OUTPUT: parts[1]}, {
                        PROBS_OUTPUT: parts[2], ADVERSARY_OUTPUT: parts[3]}
                if self.affect is not None:  # two outputs: class targets and arousal/valence targets
                    coords, known = self.affect
                    parts = [onehot, coords[self.y[idx]], w, w * known[self.y[idx]]]
                    if self.augment.active:
                        x, parts = augment_batch(x, parts, self.augment, self.aug_rng)
                    return x, {PROBS_OUTPUT: parts[0], AFFECT_OUTPUT: parts[1]}, {
                        PROBS_OUTPUT: parts[2], AFFECT_OUTPUT: parts[3]}
                if self.augment.active:
                    x, (onehot, w) = augment_batch(x, [onehot, w], self.augment, self.aug_rng)
                if self.w is None and not self.augment.active:
                    return x, onehot
                return x, onehot, w

            def on_epoch_end(self) -> None:
                if self.shuffle:
                    self.order = self.rng.permutation(len(self.x))

        return _Batches(*args, **kwargs)


def _counts(records: Sequence[Any]) -> dict[str, Any]:
    def by(field: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in records:
            key = getattr(r, field)
            out[key] = out.get(key, 0) + 1
        return dict(sorted(out.items()))

    return {"clips": len(records), "corpus": by("corpus"), "label": by("label"), "speaker": by("speaker")}


STOP_INTERRUPT = "Ctrl-C"
STOP_BUDGET = "time budget"


class StopControl:
    """A Keras callback that ends training early but cleanly, after the current epoch: on the first Ctrl-C, or when
    the next epoch would overrun ``budget_s`` seconds of training (judged by the longest epoch so far). Training then
    ends as early stopping ends it: the best epoch's weights are restored (EarlyStopping), and the run is evaluated
    and written. A second Ctrl-C raises KeyboardInterrupt (abort). ``reason`` says why it stopped (None: it did
    not). The Ctrl-C handler is installed only while training runs, and only in the main thread."""

    def __new__(cls, budget_s: float | None) -> Any:
        import signal
        import threading

        import keras

        class Callback(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.reason: str | None = None
                self.previous: Any = None
                self.start = self.last = 0.0
                self.longest = 0.0

            def interrupt(self, signum: int, frame: Any) -> None:
                if self.reason == STOP_INTERRUPT:
                    self.on_train_end()
                    raise KeyboardInterrupt
                self.reason = STOP_INTERRUPT
                print("\nser-train: stopping after this epoch (the best epoch's weights are kept); Ctrl-C again to "
                      "abort", file=sys.stderr)

            def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
                self.start = self.last = time.monotonic()
                if threading.current_thread() is threading.main_thread():
                    self.previous = signal.signal(signal.SIGINT, self.interrupt)

            def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
                now = time.monotonic()
                self.longest, self.last = max(self.longest, now - self.last), now
                planned = (self.params or {}).get("epochs", epoch + 2)
                over = budget_s is not None and now - self.start + self.longest > budget_s
                if self.reason is None and over and epoch + 1 < planned:  # the last epoch ends training anyway
                    self.reason = STOP_BUDGET
                if self.reason is not None:
                    self.model.stop_training = True

            def on_train_end(self, logs: dict[str, float] | None = None) -> None:
                if self.previous is not None:
                    signal.signal(signal.SIGINT, self.previous)
                    self.previous = None

        return Callback()


class _RichEpochs:
    """A Keras callback that shows epochs as a rich progress bar (imports keras lazily)."""

    def __new__(cls, epochs: int, quiet: bool) -> Any:
        import keras

        class Callback(keras.callbacks.Callback):
            def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
                self.progress = progress_bar(quiet)
                self.progress.start()
                self.task = self.progress.add_task("training   ", total=epochs, info="")

            def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
                logs = logs or {}
                shown = ("loss", "accuracy", "val_loss", "val_accuracy", "probs_accuracy", "val_probs_accuracy",
                         "val_affect_loss")
                info = " ".join(f"{k}={v:.3f}" for k, v in logs.items() if k in shown)
                self.progress.update(self.task, advance=1, info=info)
                console = self.progress.console
                if not quiet and not console.is_terminal:  # a log file: the bar shows only at the end, so a line
                    elapsed = next(t.elapsed for t in self.progress.tasks if t.id == self.task) or 0.0
                    console.print(f"epoch {epoch + 1}/{epochs} {elapsed / 60:.1f} min {info}", highlight=False)

            def on_train_end(self, logs: dict[str, float] | None = None) -> None:
                self.progress.stop()

        return Callback()


def run(args: argparse.Namespace) -> int:
    from ser_live.train.corpora import limit_per_corpus, load_corpora, parse_data_spec, parse_limits

    check_number("--session-restart", args.session_restart, 0, 1)
    check_number("--mixup", args.mixup, 0)
    check_number("--time-budget", args.time_budget, 0)
    check_number("--window", args.window, 0, low_open=True)
    check_number("--hop", args.hop, 0, low_open=True)
    check_number("--min-speech", args.min_speech, 0)
    check_number("--vad-noise-margin", args.vad_noise_margin, 0)
    check_number("--session-tau", args.session_tau, 0, low_open=True)
    check_number("--test-frac", args.test_frac, 0, 1, high_open=True)
    check_number("--val-frac", args.val_frac, 0, 1, high_open=True)
    check_number("--epochs", args.epochs, 1)
    check_number("--batch-size", args.batch_size, 1)
    check_number("--lr", args.lr, 0, low_open=True)
    check_number("--patience", args.patience, 1)
    check_number("--label-smoothing", args.label_smoothing, 0, 1, high_open=True)
    check_number("--affect-weight", args.affect_weight, 0)
    check_number("--adversary-scale", args.adversary_scale, 0, low_open=True)
    if args.adversary == "none" and args.adversary_ramp:
        raise UserError("--adversary-ramp schedules the adversarial branch: add --adversary corpus|speaker")
    if args.adversary != "none" and args.affect_weight > 0:
        raise UserError("--adversary and --affect-weight cannot be combined yet: train with one of them")
    if args.folds == 1 or args.folds < 0:
        raise UserError("--folds must be 0 (one split) or at least 2")
    if args.resume and not args.folds:
        raise UserError("--resume keeps the finished folds of a --folds run: add --folds K, or leave --resume out")
    if args.fold and not 1 <= args.fold <= args.folds:
        raise UserError(f"--fold {args.fold}: give a fold from 1 to the --folds count"
                        + (f" ({args.folds})" if args.folds else ", and --folds K"))
    parent = os.environ.get(PARENT_ENV)
    if args.fold and parent and parent.isdigit():
        die_with(int(parent))  # a fold process of a --folds run: it goes when that run goes
    specs = [parse_data_spec(s) for s in args.data]
    limit = parse_limits(args.limit)
    loaded = load_corpora(specs, keep_calm=args.keep_calm)
    records = list(loaded.records)
    if limit:
        records = limit_per_corpus(records, limit, args.seed)
    if not records:
        raise UserError("no usable clips found under --data: check the folder and the corpus name")
    for note in loaded.notes():
        logger.warning("%s", note)
    from ser_live.train.models import get_recipe


    recipe = get_recipe(args.recipe)
    preset = get_preset(args.preset or recipe.default_preset)
    if (preset.kind == "frames") != (recipe.input_kind == "frames"):
        raise UserError(
            f"recipe {args.recipe} takes {recipe.input_kind} input but preset {preset.name} gives {preset.kind}: "
            f"use --preset {recipe.default_preset}"
        )
    if args.specaugment and preset.kind != "frames":
        raise UserError(
            f"--specaugment masks bands and frames, but preset {preset.name} gives one feature vector per window: "
            "use a log-mel recipe (e.g. --recipe logmel_cnn) or leave --specaugment out"
        )
    config = PipelineConfig(
        preset=preset, window_s=args.window, hop_s=args.hop, min_speech_s=args.min_speech, vad_aggressiveness=args.vad,
        vad_noise_margin_db=args.vad_noise_margin,
        vad_agc=not args.no_vad_agc,
    )
    data_summary = loaded.summary() | {"used_clips": len(records), "limit_per_corpus": limit or None}
    _check_out(args.out)
    splits = make_splits(args, records)
    # the model's labels: those of its training data (all records unless a corpus is held out whole)
    trained_on = [records[i] for i in splits[0].train] if args.split == "corpus" else records
    labels = tuple(sorted({r.label for r in trained_on}))
    args.out.mkdir(parents=True, exist_ok=True)
    if len(splits) == 1:
        train_one(args, records, splits[0], labels, config, args.out, data_summary)
        return 0
    if args.fold:
        train_one(args, records, splits[args.fold - 1], labels, config, args.out / f"fold{args.fold}", data_summary)
        return 0
    fold_metrics = []
    for k, split in enumerate(splits):
        fold_out = args.out / f"fold{k + 1}"
        done = _finished_fold(args, fold_out, split, records, labels) if args.resume else None
        if done is not None:
            logger.warning("fold %d: kept from the earlier run in %s (--resume)", k + 1, fold_out)
            fold_metrics.append(done)
            continue
        fold_metrics.append(_fold_in_child(args, k + 1, fold_out))
        if (fold_metrics[-1]["stopped_early"] or {}).get("reason") == STOP_INTERRUPT and k + 1 < len(splits):
            logger.warning("Ctrl-C: the %d folds left are skipped; cv_metrics.json covers folds 1-%d",
                           len(splits) - k - 1, k + 1)
            break
    summary = _cv_summary(fold_metrics) | {"folds_planned": len(splits)}
    write_json(args.out / "cv_metrics.json", summary)
    planned = f" (of {len(splits)} planned)" if summary["folds"] < len(splits) else ""
    print(
        f"\n{summary['folds']}-fold speaker CV{planned}: clip accuracy {summary['accuracy_mean']:.4f} "
        f"± {summary['accuracy_std']:.4f}"
        f", UAR {summary['uar_mean']:.4f} ± {summary['uar_std']:.4f}"
    )
    for name, fig in summary["per_corpus"].items():
        print(f"  {name}: clip UAR {fig['uar_mean']:.4f} ± {fig['uar_std']:.4f} over {fig['folds']} folds, "
              f"largest single-label share {fig['top_label_share_max']:.2f}")
    return 0


def _finished_fold(args: argparse.Namespace, out: Path, split: Split, records: Sequence[Any],
                   labels: tuple[str, ...]) -> dict[str, Any] | None:
    """The metrics of a fold an earlier run finished in ``out`` when it is this run's fold (same test speakers, split
    name, seeds, recipe, labels); None when there is none; UserError when ``out`` holds a different fold."""
    try:
        metrics = json.loads((out / "metrics.json").read_text())
        config = json.loads((out / "config.json").read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise UserError(f"--resume: {out} holds an unreadable run ({err}): remove that folder") from None
    want = {
        "test_speakers": sorted({records[i].speaker for i in split.test}),
        "split": split.name, "seed": args.seed, "split_seed": split_seed(args), "recipe": args.recipe,
        "labels": list(labels),
    }
    got = {"test_speakers": metrics.get("test_speakers"), **{k: config.get(k) for k in want if k != "test_speakers"}}
    differ = [k for k in want if got[k] != want[k]]
    if differ:
        raise UserError(f"--resume: {out} holds another run's fold ({', '.join(differ)} differ): use another --out, "
                        "or leave --resume out to train every fold again")
    return metrics


PARENT_ENV = "SER_TRAIN_PARENT_PID"  # set for a fold process: the --folds run it belongs to


def _fold_in_child(args: argparse.Namespace, fold: int, out: Path) -> dict[str, Any]:
    """Train fold ``fold`` in a process of its own (``ser-train … --fold K``) and return its metrics.json.

    One process per fold: Keras/TensorFlow keep most of a fold's memory after ``clear_session()`` (measured
    2026-12-05: +4-5 GiB a fold on the full corpora, 16 GB resident entering fold 4), and a process that ends gives
    it all back. The child has a session of its own, so Ctrl-C reaches this process only, which passes each press on:
    one press stops the fold after its epoch (the fold is evaluated and written, the folds left are skipped), a second
    aborts it. The child leaves by itself if this process is killed (``die_with``)."""
    import signal
    import subprocess
    import threading

    # -c rather than -m ser_live.train.cli: the child's loggers keep their names (ser_live.train.cli, not __main__)
    cmd = [sys.executable, "-c", "import sys; from ser_live.train.cli import main; sys.exit(main(sys.argv[1:]))",
           *args.argv, "--fold", str(fold)]
    logger.info("fold %d in a process of its own: %s", fold, " ".join(cmd))
    child = subprocess.Popen(cmd, env=os.environ | {PARENT_ENV: str(os.getpid())}, start_new_session=True)
    presses = 0

    def forward(signum: int, frame: Any) -> None:
        nonlocal presses
        presses += 1
        child.send_signal(signal.SIGINT)

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, forward)
    try:
        code = child.wait()
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        if child.poll() is None:  # this process is leaving for another reason: the fold goes with it
            child.kill()
            child.wait()
    if code != 0:
        if presses or code == EXIT_INTERRUPTED:
            raise KeyboardInterrupt
        raise UserError(f"fold {fold} failed (exit {code}, its messages are above); the folds it finished are in "
                        f"{args.out}: fix the cause, then run the same command with --resume to keep them")
    try:
        return json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"fold {fold} ended without a readable {out / 'metrics.json'} ({err}): run the same command "
                        "with --resume to train it again") from None


def _cv_summary(fold_metrics: Sequence[dict[str, Any]]) -> dict[str, Any]:
    acc = np.array([m["headline"]["accuracy"] for m in fold_metrics])
    uar = np.array([m["headline"]["uar"] for m in fold_metrics])
    return {
        "split": "speaker-kfold",
        "folds": len(fold_metrics),
        "accuracy_mean": float(acc.mean()),
        "accuracy_std": float(acc.std()),
        "uar_mean": float(uar.mean()),
        "uar_std": float(uar.std()),
        "per_fold": [m["headline"] | {"test_speakers": m["test_speakers"]} for m in fold_metrics],
        "per_corpus": _cv_per_corpus(fold_metrics),
    }


def _cv_per_corpus(fold_metrics: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per held-out corpus: clip UAR mean and sd over the folds that tested it, and the largest single-label share."""
    out: dict[str, dict[str, Any]] = {}
    for name in sorted({c for m in fold_metrics for c in m.get("per_corpus", {})}):
        got = [m["per_corpus"][name] for m in fold_metrics if name in m.get("per_corpus", {})]
        uar = np.array([g["uar"] for g in got])
        out[name] = {
            "folds": len(got),
            "uar_mean": float(uar.mean()),
            "uar_std": float(uar.std()),
            "per_fold_uar": uar.tolist(),
            "top_label_share_max": max(g["top_label_share"] for g in got),
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # a --folds run starts each fold as this command with --fold K
    basic_logging(args.verbose)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    def work() -> int:
        require_modules(TRAIN_MODULES, "train", "ser-train")
        return run(args)

    return run_tool("ser-train", work)


if __name__ == "__main__":
    sys.exit(main())
