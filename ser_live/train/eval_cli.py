"""``ser-eval``: how one or more ONNX models hold up on held-out clips, clean and degraded (train/robustness.py).

Example::

    ser-eval ser_live/models/default.onnx runs/new/model.onnx --data ravdess=../shared/data/ravdess \\
        --run runs/new --out runs/eval-new

Writes ``eval.json`` (every figure), ``eval.md`` (a Markdown table) and ``eval.png`` (UAR and agreement per
condition) into ``--out``, atomically, and prints the table. No TensorFlow: the models run in ONNX Runtime.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ser_live import __version__
from ser_live.realtime.errors import UserError
from ser_live.realtime.fileio import atomic_write, write_json
from ser_live.realtime.tooling import HelpFormatter, basic_logging, check_number, require_modules, run_tool

logger = logging.getLogger(__name__)

DEFAULT_OUT = Path("runs/eval")
DEFAULT_SEED = 0
RUN_METRICS = "metrics.json"
PERCENT = 100.0
FIG_DPI = 120
ALL_CONDITIONS = "all"
EVAL_MODULES = ("audiomentations", "matplotlib")  # the train extra: degraded conditions, the figure


def build_parser() -> argparse.ArgumentParser:
    from ser_live.train.robustness import CONDITIONS

    p = argparse.ArgumentParser(
        prog="ser-eval",
        description="Score ONNX models on held-out clips: clean, under gain, telephone band, reverberation, noise, "
        "a shifted stream, and as live sessions. Figures: clip UAR, accuracy, macro-F1 and agreement with the clean "
        "verdict.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("models", nargs="+", type=Path, metavar="MODEL.onnx", help="ser-live model files to compare")
    p.add_argument(
        "--data",
        action="append",
        metavar="NAME=PATH",
        required=True,
        help="a corpus folder as ser-train reads it (repeat for several)",
    )
    who = p.add_mutually_exclusive_group()
    who.add_argument("--run", type=Path, default=None, help="keep only the test speakers of this ser-train run")
    who.add_argument("--speakers", default=None, help="keep only these speakers (comma-separated, e.g. ravdess:08)")
    p.add_argument("--keep-calm", action="store_true", help="keep RAVDESS 'calm' clips (a model without it scores 0)")
    p.add_argument("--limit", type=int, default=0, help="at most this many clips per corpus (0 = all)")
    p.add_argument(
        "--conditions",
        default=ALL_CONDITIONS,
        help=f"'{ALL_CONDITIONS}' or a comma-separated subset of: {', '.join(CONDITIONS)}",
    )
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of every random degradation")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for eval.json, eval.md, eval.png")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def _conditions(arg: str) -> list[str]:
    from ser_live.train.robustness import CLEAN, CONDITIONS

    chosen = list(CONDITIONS) if arg == ALL_CONDITIONS else [c.strip() for c in arg.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in CONDITIONS]
    if unknown or not chosen:
        raise UserError(f"unknown condition(s) {', '.join(unknown) or '(none given)'}: use {', '.join(CONDITIONS)}")
    return [CLEAN, *[c for c in chosen if c != CLEAN]]  # agreement needs the clean verdicts


def run_speakers(run: Path, part: str = "test") -> set[str]:
    """The speakers of a ser-train run's ``test`` (its ``test_speakers``), ``val`` or ``train`` part."""
    path = run / RUN_METRICS if run.is_dir() else run
    try:
        metrics = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} not found: pass --run a ser-train run folder (it holds {RUN_METRICS})") from None
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"{path} is not a readable metrics file ({err}): pass a ser-train run folder") from None
    speakers: Any = None
    if isinstance(metrics, dict):
        if part == "test":
            speakers = metrics.get("test_speakers")
        else:
            part_counts = (metrics.get("counts") or {}).get(part) or {}
            speakers = list(part_counts.get("speaker") or {}) if isinstance(part_counts, dict) else None
    if not isinstance(speakers, list) or not speakers:
        name = "test_speakers" if part == "test" else f"{part} speakers"
        raise UserError(f"{path} lists no {name}: pass a ser-train run folder")
    return {str(s) for s in speakers}


def _records(args: argparse.Namespace) -> list[Any]:
    from ser_live.train.corpora import limit_per_corpus, load_corpora, parse_data_spec

    loaded = load_corpora([parse_data_spec(s) for s in args.data], keep_calm=args.keep_calm)
    records = list(loaded.records)
    keep: set[str] | None = None
    if args.run is not None:
        keep = run_speakers(args.run)
    elif args.speakers:
        keep = {s.strip() for s in args.speakers.split(",") if s.strip()}
    if keep is not None:
        records = [r for r in records if r.speaker in keep]
        if not records:
            raise UserError(
                f"no clip under --data belongs to the chosen speakers ({', '.join(sorted(keep)[:4])} ...): "
                "pass the corpus those speakers come from"
            )
    check_number("--limit", args.limit, 0)
    if args.limit:
        records = limit_per_corpus(records, args.limit, args.seed)
    if not records:
        raise UserError("no usable clips found under --data: check the folder and the corpus name")
    return records


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{PERCENT * value:.1f}"


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def markdown_table(report: dict[str, Any]) -> str:
    names = list(report["models"])
    head = "| condition | " + " | ".join(f"{n}: UAR % | {n}: agree % | {n}: top label %" for n in names) + " |"
    rule = "|---|" + "---|---|---|" * len(names)
    lines = [head, rule]
    for condition in report["conditions"]:
        cells = []
        for n in names:
            c = report["models"][n]["conditions"].get(condition, {})
            cells += [_pct(c.get("uar")), _pct(c.get("agreement")), _pct(c.get("top_verdict_share"))]
        lines.append(f"| {condition} | " + " | ".join(cells) + " |")
    affect_rows = []
    for n in names:
        figures = report["models"][n]["conditions"].get("clean", {}).get("affect") or {}
        if figures:
            a, v = figures.get("arousal", {}), figures.get("valence", {})
            affect_rows.append(
                f"| {n} | {_pct(a.get('binary_accuracy'))} | {_num(a.get('correlation_with_binary'))} | "
                f"{_pct(v.get('binary_accuracy'))} | {_num(v.get('correlation_with_binary'))} |"
            )
    if affect_rows:
        lines += ["", "| clean clips | arousal: binary accuracy % | arousal: r | valence: binary accuracy % "
                  "(non-neutral) | valence: r |", "|---|---|---|---|---|", *affect_rows]
    clips = report["clips"]
    lines += [
        "",
        f"{clips} clips ({', '.join(f'{k} {v}' for k, v in report['clips_per_corpus'].items())}), "
        f"{report['speakers']} speakers; speakers: {report['speaker_selection']}. Clip verdict = mean of the "
        "clip's window probabilities through the live engine; agreement = same label as the clean verdict; "
        "top label = share of the most frequent verdict (collapse check).",
    ]
    return "\n".join(lines) + "\n"


def _plot(report: dict[str, Any], path: Path) -> None:
    from ser_live.train.report import _pyplot

    plt = _pyplot()
    conditions = report["conditions"]
    names = list(report["models"])
    x = np.arange(len(conditions))
    width = 0.8 / max(1, len(names))
    fig, axes = plt.subplots(2, 1, figsize=(max(8.0, 0.8 * len(conditions)), 6.5), sharex=True)
    for k, name in enumerate(names):
        per = report["models"][name]["conditions"]
        uar = [PERCENT * per.get(c, {}).get("uar", np.nan) for c in conditions]
        agree = [PERCENT * per.get(c, {}).get("agreement", np.nan) if c != "clean" else np.nan for c in conditions]
        axes[0].bar(x + (k - (len(names) - 1) / 2) * width, uar, width, label=name)
        axes[1].bar(x + (k - (len(names) - 1) / 2) * width, agree, width, label=name)
    axes[0].set_ylabel("clip UAR %")
    axes[1].set_ylabel("agreement with clean %")
    for ax in axes:
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
    axes[1].set_xticks(x, conditions, rotation=30, ha="right")
    axes[0].legend(fontsize=8)
    axes[0].set_title(f"ser-eval · {report['clips']} clips, {report['speakers']} speakers", fontsize=10)
    fig.tight_layout()

    def write(fh: Any) -> None:
        fig.savefig(fh, format="png", dpi=FIG_DPI)

    atomic_write(path, write)
    plt.close(fig)


def _print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="clip UAR % / agreement with clean % / top label %", title_justify="left")
    table.add_column("condition")
    for name in report["models"]:
        table.add_column(name, justify="right")
    for condition in report["conditions"]:
        row = [condition]
        for name in report["models"]:
            c = report["models"][name]["conditions"].get(condition, {})
            row.append(f"{_pct(c.get('uar'))} / {_pct(c.get('agreement'))} / {_pct(c.get('top_verdict_share'))}")
        table.add_row(*row)
    Console().print(table)


def _model_names(paths: Sequence[Path]) -> list[str]:
    names = [p.stem for p in paths]
    if len(set(names)) < len(names):  # same file names in different folders: use the folder too
        names = [f"{p.parent.name}/{p.stem}" for p in paths]
    if len(set(names)) < len(names):
        raise UserError("two of the models have the same path: pass each model once")
    return names


def run(args: argparse.Namespace) -> int:
    """ser-eval; an --out folder it created is removed again when the run fails before writing anything."""
    created = not args.out.exists()
    try:
        return _run(args)
    except BaseException:
        if created and args.out.is_dir() and not any(args.out.iterdir()):
            args.out.rmdir()
        raise


def _run(args: argparse.Namespace) -> int:
    from ser_live.realtime.model import load_model
    from ser_live.train.cli import progress_bar
    from ser_live.train.robustness import load_clips, score_condition, summarize

    conditions = _conditions(args.conditions)
    names = _model_names(args.models)
    models = [load_model(path, provider="cpu") for path in args.models]
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create --out {args.out}: {err.strerror}; pass a writable folder") from None
    records = _records(args)
    t0 = time.time()
    with progress_bar(args.quiet) as progress:
        task = progress.add_task("reading clips", total=len(records), info="")
        clips, bad = load_clips(records, lambda n: progress.advance(task, n))
        if not clips:
            raise UserError(f"none of the {len(records)} clips could be read (first: {bad[0][1]})")
        per_model: dict[str, Any] = {}
        for name, model in zip(names, models, strict=True):
            results = {}
            for condition in conditions:
                task = progress.add_task(f"{name} · {condition}", total=len(clips), info="")
                results[condition] = score_condition(
                    model, clips, condition, args.seed, lambda n, t=task: progress.advance(t, n)
                )
            per_model[name] = summarize(model.labels, clips, results) | {"path": str(model.path)}
    corpora: dict[str, int] = {}
    for clip in clips:
        corpora[clip.record.corpus] = corpora.get(clip.record.corpus, 0) + 1
    selection = (
        f"test speakers of {args.run}" if args.run else (args.speakers or "every speaker of the corpora given")
    )
    report = {
        "tool": "ser-eval",
        "project_version": __version__,
        "conditions": conditions,
        "clips": len(clips),
        "clips_per_corpus": dict(sorted(corpora.items())),
        "speakers": len({c.record.speaker for c in clips}),
        "speaker_selection": selection,
        "unreadable": [{"path": p, "reason": r} for p, r in bad],
        "seed": args.seed,
        "seconds": round(time.time() - t0, 1),
        "models": per_model,
    }
    write_json(args.out / "eval.json", report)
    text = markdown_table(report)
    atomic_write(args.out / "eval.md", lambda fh: fh.write(text.encode("utf-8")))
    _plot(report, args.out / "eval.png")
    _print_table(report)
    print(f"wrote {args.out / 'eval.json'}, eval.md and eval.png ({len(clips)} clips, {report['seconds']} s)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    basic_logging(args.verbose)

    def work() -> int:
        require_modules(EVAL_MODULES, "train", "ser-eval")
        return run(args)

    return run_tool("ser-eval", work)


if __name__ == "__main__":
    sys.exit(main())
