"""``ser-calibrate``: fit a model's temperature, its *uncertain* threshold and (optionally) a linear arousal/valence
head on speakers it was not trained on, and store them in the model file's metadata.

Example (the validation speakers of a ser-train run; the head learns from its training speakers)::

    ser-calibrate runs/v2/ship.onnx --run runs/v2/ship --data ravdess=... --data tess=... --data ased=... \\
        -o runs/v2/model.cal.onnx --apply-to runs/v2/model.int8.onnx --report runs/v2/calibration.json

Every clip goes through the live engine (``ser-live --file`` windows, smoothing and all), with the model's own
softmax (any earlier calibration removed). Then:

- **temperature** T: the engine applies it to the *smoothed* probabilities (the confidence ser-live shows), so it
  minimises the negative log-likelihood of the true label over the fitting windows after the engine's smoothing
  (grid search); kept only when it lowers the expected calibration error (ECE, ``ECE_BINS`` equal-width bins of
  the top probability) of those windows, else T = 1. ECE before/after on the fitting speakers and on the run's
  test speakers when given, and the ECE of the raw (unsmoothed) windows, which T leaves alone;
- **min_confidence**: the lowest threshold on the calibrated, smoothed top probability (what the dashboard shows)
  at which the windows kept are right at least ``--target-accuracy`` of the time on the fitting speakers *of each
  corpus* (a corpus with at least ``MIN_GROUP_WINDOWS`` fitting windows; ``--pooled-threshold``: all windows
  together); the windows below it are reported as *uncertain*;
- **affect**: arousal and valence of every clip from the NRC VAD lexicon mapping (``realtime.stages.affect``) and, with
  training speakers, from a linear head on the calibrated log-probabilities fitted to the lexicon coordinates of
  each training clip's label (every corpus's labels teach it), and from the network's own trained head when the
  graph has one (``ser-train --affect-weight``). Scored on the fitting speakers as binary accuracy
  (arousal: the label's lexicon arousal above the scale's middle; valence likewise, over non-neutral clips) and
  the correlation of the continuous value with that binary truth. ``--affect auto`` keeps the best.

Writes the calibrated model(s) atomically and a JSON report of every figure.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ser_live.realtime.config import DEFAULT_SMOOTHING_ALPHA, DEFAULT_SMOOTHING_RESET_S, EngineConfig
from ser_live.realtime.engine import Engine
from ser_live.realtime.errors import UserError
from ser_live.realtime.fileio import atomic_write, check_outputs, file_sha256, same_file, write_json
from ser_live.realtime.model import METADATA_KEY, EmotionModel, load_model, with_predecessor
from ser_live.realtime.stages.affect import (
    AFFECT_KEY,
    CALIBRATION_KEY,
    LOG_FLOOR,
    AffectMap,
    Calibration,
    temper,
)
from ser_live.realtime.stages.smoothing import Smoother, SmoothingConfig
from ser_live.realtime.tooling import HelpFormatter, basic_logging, check_number, require_modules, run_tool
from ser_live.train.eval_cli import EVAL_MODULES, run_speakers
from ser_live.train.metrics import affect_scores, affect_truth

logger = logging.getLogger(__name__)

ECE_BINS = 15
TEMPERATURE_GRID = np.exp(np.linspace(np.log(0.25), np.log(8.0), 241))
THRESHOLD_GRID = np.round(np.arange(0.0, 1.0, 0.01), 2)
DEFAULT_TARGET_ACCURACY = 0.6
MIN_COVERAGE = 0.1  # a threshold must keep at least this share of the windows
MIN_GROUP_WINDOWS = 100  # a corpus with fewer fitting windows does not set the threshold on its own
RIDGE = 1e-2
TARGET_SQUASH = 0.9  # lexicon coordinates are scaled by this before atanh (|y| < 1)
AFFECT_CHOICES = ("auto", "lexicon", "linear", "head")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ser-calibrate",
        description="Fit temperature scaling, the uncertain threshold and an arousal/valence head on held-out "
        "speakers; write them into the model's metadata.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("model", type=Path, metavar="MODEL.onnx", help="a ser-live model file")
    p.add_argument("--data", action="append", required=True, metavar="NAME=PATH", help="a corpus folder (repeat)")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--run", type=Path, help="the model's ser-train run: fit on its validation speakers, report "
                     "on its test speakers, fit the affect head on its training speakers")
    who.add_argument("--speakers", help="fit on these speakers (comma-separated, e.g. ravdess:07,ravdess:11)")
    p.add_argument("--test-speakers", default=None, help="with --speakers: report on these speakers too (as --run's "
                   "test speakers; a whole corpus the model never heard: CORPUS:*)")
    p.add_argument("-o", "--out", type=Path, required=True, help="the calibrated model to write (may be MODEL)")
    p.add_argument("--apply-to", type=Path, action="append", default=[], metavar="OTHER.onnx",
                   help="also write the same calibration into this file in place (e.g. the int8 model)")
    p.add_argument("--target-accuracy", type=float, default=DEFAULT_TARGET_ACCURACY,
                   help="windows at or above the threshold must be right this often on the fitting speakers")
    p.add_argument("--pooled-threshold", action="store_true",
                   help="choose the uncertain threshold on all fitting windows pooled (before 2026-12-05) instead "
                   "of requiring the target accuracy on each corpus's windows")
    p.add_argument("--temperature", type=float, default=None,
                   help="store this temperature instead of the fitted one (1 = the model's own softmax); the "
                   "fitted one is still reported (default: the fitted one when it lowers the validation ECE)")
    p.add_argument("--affect", choices=AFFECT_CHOICES, default="auto",
                   help="arousal/valence: the lexicon mapping, a fitted linear head, the model's trained head "
                   "(ser-train --affect-weight), or the best of those available on the fitting speakers")
    p.add_argument("--keep-calm", action="store_true", help="keep RAVDESS 'calm' clips")
    p.add_argument("--report", type=Path, default=None, help="write every figure to this JSON file")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


@dataclass
class Scored:
    """The windows of a set of clips: raw (uncalibrated, unsmoothed) probabilities, end times, clip of each."""

    probs: np.ndarray  # [windows, labels]
    end_s: np.ndarray  # [windows]
    clip: np.ndarray  # [windows] index into records
    truth: np.ndarray  # [windows] label index (-1: a label the model lacks)
    records: list[Any]
    head: np.ndarray | None = None  # [windows, 2] a trained affect head's own outputs (None: the model has none)

    @property
    def clip_truth(self) -> np.ndarray:
        return np.array([self.truth[self.clip == c][0] for c in self.clips])

    @property
    def clips(self) -> np.ndarray:
        return np.unique(self.clip)

    def clip_probs(self, probs: np.ndarray | None = None) -> np.ndarray:
        p = self.probs if probs is None else probs
        return np.stack([p[self.clip == c].mean(axis=0) for c in self.clips])


def score(model: EmotionModel, records: Sequence[Any]) -> Scored:
    from ser_live.train.robustness import load_clips, replay

    clips, bad = load_clips(records)
    for path, reason in bad:
        logger.warning("skipped %s: %s", path, reason)
    engines: dict[int, Engine] = {}
    probs, ends, owner, truth, head = [], [], [], [], []
    for k, clip in enumerate(clips):
        engine = engines.setdefault(clip.rate, Engine(model, clip.rate, EngineConfig(min_confidence=0.0)))
        events = replay(engine, clip.samples, clip.rate)
        label = model.labels.index(clip.record.label) if clip.record.label in model.labels else -1
        for e in events:
            probs.append([e.raw_probs[name] for name in model.labels])
            head.append([e.raw_arousal, e.raw_valence])
            ends.append(e.end_s)
            owner.append(k)
            truth.append(label)
    if not probs:
        raise UserError("no clip of the chosen speakers held a speech window: check --data and the speakers")
    return Scored(np.asarray(probs, np.float64), np.asarray(ends), np.asarray(owner), np.asarray(truth),
                  [c.record for c in clips], np.asarray(head, np.float64) if model.has_head else None)


def ece(probs: np.ndarray, truth: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error of the top probability: sum over bins of |accuracy - confidence| x share."""
    conf, right = probs.max(axis=1), probs.argmax(axis=1) == truth
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs(right[inside].mean() - conf[inside].mean())
    return float(total)


def nll(probs: np.ndarray, truth: np.ndarray) -> float:
    return float(-np.mean(np.log(np.maximum(probs[np.arange(len(truth)), truth], LOG_FLOOR))))


def fit_temperature(probs: np.ndarray, truth: np.ndarray) -> float:
    """The grid temperature with the lowest NLL of ``temper(probs, T)``."""
    losses = [nll(temper(probs, t).astype(np.float64), truth) for t in TEMPERATURE_GRID]
    return float(TEMPERATURE_GRID[int(np.argmin(losses))])


def smoothed(scored: Scored, probs: np.ndarray, config: SmoothingConfig) -> np.ndarray:
    """The engine's smoothing, replayed per clip on other (calibrated) window probabilities."""
    return smooth_clips(scored.clip, scored.end_s, probs, config)


def smooth_clips(clip: np.ndarray, end_s: np.ndarray, probs: np.ndarray, config: SmoothingConfig) -> np.ndarray:
    """Window probabilities (rows; ``clip`` and ``end_s`` per row, a clip's rows in time order) through the engine's
    smoothing, a fresh smoother per clip."""
    out = np.empty_like(probs)
    for c in np.unique(clip):
        smoother = Smoother(config)
        for r in np.flatnonzero(clip == c):
            out[r] = smoother.process(probs[r], float(end_s[r]))
    return out


def choose_threshold(conf: np.ndarray, right: np.ndarray, target: float,
                     groups: np.ndarray | None = None) -> tuple[float, dict[str, Any]]:
    """The lowest threshold whose kept windows are right >= ``target`` (coverage >= MIN_COVERAGE), else the one
    with the best accuracy at that coverage. With ``groups`` (each window's corpus), the kept windows of *every*
    group of at least MIN_GROUP_WINDOWS windows must reach the target (the weakest corpus sets the threshold; a
    pooled rule lets the strongest carry it), and the accuracy compared in the fallback is the weakest group's."""
    names = [] if groups is None else [g for g in sorted(set(groups.tolist()))
                                       if np.sum(groups == g) >= MIN_GROUP_WINDOWS]
    masks = [groups == g for g in names] if names else [np.ones(len(conf), dtype=bool)]
    table = []
    for t in THRESHOLD_GRID:
        kept = conf >= t
        coverage = float(kept.mean())
        if coverage < MIN_COVERAGE:
            break
        worst = min(float(right[kept & m].mean()) if np.any(kept & m) else 0.0 for m in masks)
        table.append((float(t), coverage, worst))
    reached = [row for row in table if row[2] >= target]
    t, coverage, worst = reached[0] if reached else max(table, key=lambda row: row[2])
    if not reached:
        logger.warning("no threshold reaches %.0f%% accuracy on the fitting windows%s; using %.2f (%.0f%%)",
                       100 * target, " of every corpus" if names else "", t, 100 * worst)
    kept = conf >= t
    info = {"threshold": t, "coverage": coverage, "accuracy_kept": float(right[kept].mean()),
            "target_accuracy": target, "accuracy_all": float(right.mean()), "reached_target": bool(reached),
            "rule": "each corpus" if names else "pooled"}
    if names:
        info["worst_corpus_accuracy_kept"] = worst
    return t, info


def per_corpus(scored: Scored, shown: np.ndarray, threshold: float) -> dict[str, dict[str, Any]]:
    """Per corpus of the scored clips: windows, the share below the uncertain threshold, the accuracy of the windows
    kept and of all, and the largest share of one label among the kept windows' verdicts."""
    corpus = np.array([scored.records[c].corpus for c in scored.clip])
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(set(corpus.tolist())):
        m = (corpus == name) & (scored.truth >= 0)
        if not m.any():
            continue
        conf, verdict = shown[m].max(axis=1), shown[m].argmax(axis=1)
        right, kept = verdict == scored.truth[m], conf >= threshold
        shares = np.bincount(verdict[kept], minlength=shown.shape[1]) / max(int(kept.sum()), 1)
        out[name] = {
            "windows": int(m.sum()),
            "uncertain_share": float(np.mean(~kept)),
            "accuracy_kept": float(right[kept].mean()) if kept.any() else None,
            "accuracy_all": float(right.mean()),
            "top_kept_label_share": float(shares.max()),
        }
    return out


def fit_linear_head(labels: Sequence[str], probs: np.ndarray, truth: np.ndarray) -> AffectMap:
    """Ridge least squares of atanh(0.9 x lexicon coordinates of the true label) on the clip log-probabilities."""
    coords, known, _ = affect_truth(labels, truth)
    x = np.log(np.maximum(probs[known], LOG_FLOOR))
    y = np.arctanh(TARGET_SQUASH * coords[known])
    x1 = np.hstack([x, np.ones((len(x), 1))])
    w = np.linalg.solve(x1.T @ x1 + RIDGE * np.eye(x1.shape[1]), x1.T @ y)
    return AffectMap.linear(labels, w[:-1], w[-1])


def write_calibrated(
    source: Path, target: Path | None, calibration: Mapping[str, Any], affect: Mapping[str, Any]
) -> None:
    """Copy ``source`` to ``target`` (atomically) with ``calibration`` and ``affect`` in its ser_live metadata
    (``target`` None: only check that ``source`` is a ser-live model that can take them)."""
    import onnx
    from google.protobuf.message import DecodeError

    from ser_live.export.onnx_export import set_metadata

    try:
        proto = onnx.load(str(source))
    except (OSError, ValueError, DecodeError) as err:
        raise UserError(f"cannot read {source} as ONNX ({err}): pass a ser-live model file") from None
    entries = {p.key: p.value for p in proto.metadata_props}
    if METADATA_KEY not in entries:
        raise UserError(f"{source} is not a ser-live model (no '{METADATA_KEY}' metadata): export it with ser-export")
    if target is None:
        return
    meta = json.loads(entries[METADATA_KEY]) | {CALIBRATION_KEY: dict(calibration), AFFECT_KEY: dict(affect)}
    # the graph is untouched: personal profiles made for the source file fit the calibrated one
    meta = with_predecessor(meta, file_sha256(source))
    set_metadata(proto, json.dumps(meta))
    data = proto.SerializeToString()
    try:
        atomic_write(target, lambda fh: fh.write(data))
    except OSError as err:
        raise UserError(f"cannot write {target}: {err.strerror or err}; choose another -o") from None


def run(args: argparse.Namespace) -> int:
    from ser_live.train.corpora import load_corpora, parse_data_spec

    check_number("--temperature", args.temperature, 0, low_open=True)
    check_number("--target-accuracy", args.target_accuracy, 0, 1, low_open=True, high_open=True)
    # everything that will be written is checked before an hour of scoring: a failure after -o is written would
    # leave a calibrated model without its report or its int8 twin
    outputs = {"-o": args.out} | {f"--apply-to {p}": p for p in args.apply_to}
    if args.report is not None:
        outputs["--report"] = args.report
    check_outputs({k: v for k, v in outputs.items() if k != "-o" or not same_file(v, args.model)},
                  {"MODEL": args.model}, overwrite=True)
    for other in args.apply_to:
        if not other.is_file():
            raise UserError(f"--apply-to {other} does not exist: it is a model file to update in place")
        if same_file(other, args.out):
            raise UserError(f"--apply-to {other} is -o as well: -o is written already; leave it out of --apply-to")
        write_calibrated(other, None, {}, {})  # reads and checks it, writes nothing
    model = load_model(args.model, provider="cpu")
    model.info = replace(model.info, calibration=Calibration())  # fit on the graph's own softmax
    if model.graph_has_head:  # a trained head is a candidate whatever the metadata chose before
        model.info = replace(model.info, affect=AffectMap.head(model.labels))
    elif args.affect == "head":
        raise UserError(f"{args.model} has no trained affect head (ser-train --affect-weight): use --affect auto")
    labels = model.labels
    loaded = load_corpora([parse_data_spec(s) for s in args.data], keep_calm=args.keep_calm)
    records = list(loaded.records)
    if args.run is not None and args.test_speakers:
        raise UserError("--test-speakers goes with --speakers: --run reports on the run's own test speakers")
    if args.run is not None:
        fit_speakers, test_speakers = run_speakers(args.run, "val"), run_speakers(args.run, "test")
        train_speakers = run_speakers(args.run, "train")
    else:
        fit_speakers = {s.strip() for s in args.speakers.split(",") if s.strip()}
        test_speakers, train_speakers = set(), set()
        for spec in (args.test_speakers or "").split(","):
            spec = spec.strip()
            if spec.endswith(":*"):
                test_speakers |= {r.speaker for r in records if r.corpus == spec[:-2]}
            elif spec:
                test_speakers.add(spec)
        if test_speakers & fit_speakers:
            raise UserError(f"--test-speakers and --speakers share {', '.join(sorted(test_speakers & fit_speakers))}:"
                            " report on speakers the calibration was not fitted on")
    parts = {name: [r for r in records if r.speaker in speakers]
             for name, speakers in (("fit", fit_speakers), ("test", test_speakers), ("train", train_speakers))}
    if not parts["fit"]:
        raise UserError("no clip under --data belongs to the fitting speakers: pass the corpora they come from")
    print(f"scoring {len(parts['fit'])} fitting clips, {len(parts['test'])} test clips, "
          f"{len(parts['train'])} training clips through the engine", flush=True)
    fit = score(model, parts["fit"])
    ok = fit.truth >= 0
    smoothing = SmoothingConfig(alpha=DEFAULT_SMOOTHING_ALPHA, reset_after_s=DEFAULT_SMOOTHING_RESET_S)  # the engine's

    def figures(scored: Scored, temperature: float, before: np.ndarray | None = None) -> dict[str, Any]:
        """Calibration of the smoothed windows (the confidence ser-live shows; the engine applies T to them) at T
        and at 1, and of the raw windows (``raw_probs``, which T does not touch)."""
        m = scored.truth >= 0
        t = scored.truth[m]
        before = smoothed(scored, scored.probs, smoothing) if before is None else before
        after = temper(before, temperature).astype(np.float64)
        return {
            "windows": int(m.sum()), "clips": len(scored.clips),
            "ece_before": ece(before[m], t), "ece_after": ece(after[m], t),
            "nll_before": nll(before[m], t), "nll_after": nll(after[m], t),
            "ece_raw_windows": ece(scored.probs[m], t),
            "_shown": after,
        }

    shown = smoothed(fit, fit.probs, smoothing)
    fitted = fit_temperature(shown[ok], fit.truth[ok])
    fit_figures = figures(fit, fitted, shown)
    fitted_figures = {k: v for k, v in fit_figures.items() if k != "_shown"}
    kept = fit_figures["ece_after"] < fit_figures["ece_before"] and args.temperature is None
    temperature = fitted if kept else (1.0 if args.temperature is None else args.temperature)
    if args.temperature is None and not kept:
        logger.warning("temperature %.3f does not lower the validation ECE (%.4f -> %.4f): keeping T = 1",
                       fitted, fit_figures["ece_before"], fit_figures["ece_after"])
    if not kept:
        fit_figures = figures(fit, temperature, shown)
    smooth = fit_figures.pop("_shown")
    corpus = np.array([fit.records[c].corpus for c in fit.clip])[ok]
    threshold, selection = choose_threshold(smooth[ok].max(axis=1), smooth[ok].argmax(axis=1) == fit.truth[ok],
                                            args.target_accuracy, None if args.pooled_threshold else corpus)
    report: dict[str, Any] = {
        "model": str(args.model),
        "fit_speakers": sorted(fit_speakers),
        "temperature_fitted": fitted,
        "temperature_kept": kept,
        "temperature": temperature,
        "fit": fit_figures,
        "fit_at_fitted_temperature": fitted_figures,
        "uncertain": selection,
        "fit_per_corpus": per_corpus(fit, smooth, threshold),
        "note": "ece/nll are of the smoothed windows (the confidence ser-live shows, which T calibrates and the "
        "uncertain threshold reads), before = T 1; ece_raw_windows: the unsmoothed softmax (raw_probs)",
    }
    test = score(model, parts["test"]) if parts["test"] else None
    if test is not None:
        tok = test.truth >= 0
        test_figures = figures(test, temperature)
        t_smooth = test_figures.pop("_shown")
        conf = t_smooth[tok].max(axis=1)
        right = t_smooth[tok].argmax(axis=1) == test.truth[tok]
        report["test"] = test_figures | {
            "speakers": sorted(test_speakers),
            "uncertain_share": float(np.mean(conf < threshold)),
            "accuracy_kept": float(right[conf >= threshold].mean()) if np.any(conf >= threshold) else None,
            "accuracy_all": float(right.mean()),
            "per_corpus": per_corpus(test, t_smooth, threshold),
        }
    # arousal / valence on the fitting (and test) clips
    candidates: dict[str, AffectMap] = {}
    if model.has_head:
        candidates["head"] = AffectMap.head(labels)
    lexicon = AffectMap.lexicon(labels)
    if lexicon is not None:
        candidates["lexicon"] = lexicon
    if args.affect in ("auto", "linear"):
        if parts["train"]:
            train = score(model, parts["train"])
            tr_probs = train.clip_probs()
            candidates["linear"] = fit_linear_head(labels, tr_probs, train.clip_truth)
            report["affect_head_training_clips"] = len(train.clips)
        elif args.affect == "linear":
            raise UserError("--affect linear needs training speakers: pass --run")
    affect_report: dict[str, Any] = {}
    for name, amap in candidates.items():
        for part, scored in (("fit", fit), ("test", test)):
            if scored is None:
                continue
            # a clip's verdict: the mean of its raw windows (EmotionRecognizer.predict), of the head's outputs for it
            values = scored.clip_probs(scored.head) if amap.from_graph else amap(scored.clip_probs())
            coords, known, valenced = affect_truth(labels, scored.clip_truth)
            affect_report.setdefault(name, {})[part] = affect_scores(values, coords, known, valenced)
    report["affect"] = affect_report

    def mean_accuracy(name: str) -> float:
        figures = affect_report.get(name, {}).get("fit", {})
        values = [figures[d]["binary_accuracy"] for d in ("arousal", "valence") if d in figures]
        return float(np.mean(values)) if values else -1.0

    chosen = args.affect if args.affect != "auto" else max(candidates, key=mean_accuracy, default="lexicon")
    report["affect_chosen"] = chosen
    head = candidates.get(chosen)
    calibration = {
        "temperature": round(temperature, 4),
        "temperature_fitted": round(fitted, 4),
        "min_confidence": threshold,
        "fitted_on": sorted(fit_speakers),
        "ece_before": round(report["fit"]["ece_before"], 4),
        "ece_after": round(report["fit"]["ece_after"], 4),
        "target_accuracy": args.target_accuracy,
        "coverage": round(selection["coverage"], 4),
        "threshold_rule": selection["rule"],
    }
    affect_meta = head.to_dict() if head is not None else {"method": "lexicon"}
    write_calibrated(args.model, args.out, calibration, affect_meta)
    for other in args.apply_to:
        write_calibrated(other, other, calibration, affect_meta)
    if args.report is not None:
        write_json(args.report, report)
    print(json.dumps({k: report[k] for k in ("temperature", "fit", "uncertain", "affect_chosen")}, indent=1))
    if "test" in report:
        print("test:", json.dumps(report["test"]))
    print(f"wrote {args.out}" + "".join(f", {p}" for p in args.apply_to))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    basic_logging(args.verbose)

    def work() -> int:
        require_modules(EVAL_MODULES, "train", "ser-calibrate")
        return run(args)

    return run_tool("ser-calibrate", work)


if __name__ == "__main__":
    sys.exit(main())


def calibrate_from_folds(dumps: Path, labels: np.ndarray, held_out: Sequence[str], hop_s: float,
                         target: float = DEFAULT_TARGET_ACCURACY, pooled: bool = False) -> dict[str, Any]:
    """Temperature and uncertain threshold from leave-one-corpus-out folds (``ser-recipe``'s ``loco`` stage dumps,
    :func:`ser_live.train.head.dump_held_out`): every held-out corpus's windows, played as speaker sessions, through
    the engine's smoothing (clip by clip, a window every ``hop_s``), as ``ser-calibrate`` does with a run's
    validation speakers (``pooled``: the threshold's accuracy target over all windows together, else over each
    corpus's). A model trained on every corpus meets a new voice the way each fold's head met its
    held-out corpus, so these are the figures of a voice, language and microphone the model never heard.
    ``labels``: every clip's label (index = the dumps' clip ids). Returns the calibration metadata and a
    report (ECE before and after, the threshold rule's figures, the share of uncertain windows per corpus)."""
    from ser_live.train.corpora import LABELS

    config = SmoothingConfig(alpha=DEFAULT_SMOOTHING_ALPHA, reset_after_s=DEFAULT_SMOOTHING_RESET_S)
    shown, truth, group = [], [], []
    for corpus in held_out:
        z = np.load(dumps / f"{corpus}.npz")
        clip, probs = z["clip"], z["probs"].astype(np.float64)  # rows by clip, each clip's windows in time order
        end_s = hop_s * (np.arange(len(clip)) - np.searchsorted(clip, clip) + 1)  # a window every hop
        shown.append(smooth_clips(clip, end_s, probs, config))
        truth += [LABELS.index(str(labels[c])) for c in clip]
        group += [corpus] * len(clip)
    p, t, g = np.concatenate(shown), np.asarray(truth), np.asarray(group)
    fitted = fit_temperature(p, t)
    before, after = ece(p, t), ece(temper(p, fitted).astype(np.float64), t)
    temperature = fitted if after < before else 1.0
    calibrated = temper(p, temperature).astype(np.float64)
    right = calibrated.argmax(axis=1) == t
    threshold, selection = choose_threshold(calibrated.max(axis=1), right, target, None if pooled else g)
    conf = calibrated.max(axis=1)
    per = {c: {"windows": int(np.sum(g == c)), "uncertain_share": round(float(np.mean(conf[g == c] < threshold)), 4),
               "accuracy_all": round(float(np.mean(right[g == c])), 4),
               "accuracy_kept": round(float(np.mean(right[(g == c) & (conf >= threshold)])), 4)
               if np.any((g == c) & (conf >= threshold)) else None} for c in held_out}
    calibration = {"temperature": round(temperature, 4), "temperature_fitted": round(fitted, 4),
                   "min_confidence": threshold, "fitted_on": "leave-one-corpus-out held-out windows: "
                   + ", ".join(held_out), "ece_before": round(before, 4),
                   "ece_after": round(ece(calibrated, t), 4), "target_accuracy": target,
                   "coverage": round(selection["coverage"], 4), "threshold_rule": selection["rule"]}
    return {"calibration": calibration, "selection": selection, "per_corpus": per, "windows": len(t)}
