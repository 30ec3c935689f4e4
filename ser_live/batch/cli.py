"""``ser-batch INPUT... --out DIR``: score archives of recordings, resumable, on this machine or a Ray cluster.

Every file goes through the live engine (``ser-live --file`` gives the same windows and verdicts). Outputs in DIR,
written atomically at the end of every run (also when stopped with Ctrl-C or SIGTERM): ``files.csv`` (a row per
file, or per channel with ``--channels split``), ``windows.parquet`` (every window event), ``run.json``.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import Any

from ser_live import __version__
from ser_live.realtime.errors import UserError
from ser_live.realtime.tooling import EXIT_INTERRUPTED, HelpFormatter, basic_logging, run_tool

logger = logging.getLogger(__name__)

EXIT_NONE_SCORED = 1
SECONDS_PER_HOUR = 3600.0
PLAIN_PROGRESS_EVERY_S = 5.0
DEPLOYMENT_AUTO = "auto"
DEPLOYMENT_NAME = "deployment.json"


def build_parser() -> argparse.ArgumentParser:
    from ser_live.batch.score import CHANNEL_MODES, CHANNELS_MIX

    p = argparse.ArgumentParser(
        prog="ser-batch",
        description="Score audio files, folders, globs or CSV/TXT manifests through the ser-live engine. "
        "Resumable: a re-run with the same model and settings skips the files already done.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files, folders (recursive), globs, manifests")
    p.add_argument("--out", type=Path, required=True, help="output folder (files.csv, windows.parquet, run.json)")
    p.add_argument("--model", default=None, help="a ser-live ONNX model (default: the bundled model)")
    p.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1,
        help=f"worker processes or Ray actors (default: the CPU count, here {os.cpu_count() or 1})",
    )
    p.add_argument("--channels", choices=CHANNEL_MODES, default=CHANNELS_MIX,
                   help="mix: one stream per file; split: each channel its own stream (agent / customer)")
    p.add_argument(
        "--ray", nargs="?", const="auto", default=None, metavar="ADDRESS",
        help="run through Ray Data: on the cluster at ADDRESS; with no ADDRESS or 'auto', on RAY_ADDRESS when set, "
        "else a local Ray this run starts; 'local' always starts one (default: local processes, no Ray)",
    )
    p.add_argument("--ray-timeout", type=float, default=None, metavar="S",
                   help="seconds to reach the --ray cluster's address before giving up (default: 10)")
    p.add_argument("--profile", default=None, metavar="PROFILE",
                   help="a personal profile for this model (ser-live --enroll, ser-profile fit), for every stream")
    p.add_argument("--profile-left", default=None, metavar="PROFILE",
                   help="with --channels split: the profile of the left channel (e.g. the agent's)")
    p.add_argument("--profile-right", default=None, metavar="PROFILE",
                   help="with --channels split: the profile of the right channel")
    p.add_argument("--deployment", default=None, metavar="FILE|auto",
                   help="deployment statistics (ser-stats) as the session normaliser's starting point for every file; "
                   f"'auto': a first pass measures them over these inputs and writes --out/{DEPLOYMENT_NAME} (reused "
                   "when resuming), a second scores (default: none: the training corpora's)")
    p.add_argument("--streaming-path", action="store_true",
                   help="feed the live engine block by block, one model call per window, as ser-live does on a "
                   "microphone (for comparison: same rows, slower)")
    p.add_argument("--fresh", action="store_true", help="ignore what an earlier run in --out has done")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


class _Stop:
    """SIGINT/SIGTERM ask the run to stop after the files being scored; a second one exits at once."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            os._exit(EXIT_INTERRUPTED)
        self.requested = True
        print("ser-batch: stopping after the files being scored (again to quit now)", file=sys.stderr, flush=True)


class _Progress:
    """A rich bar on a terminal, a plain line every few seconds otherwise."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.total, self.quiet = total, quiet
        self.files = 0
        self.audio_s = 0.0
        self.t0 = time.monotonic()
        self.last_line = 0.0
        self.tty = sys.stderr.isatty() and not quiet
        self._bar: Any = None
        if self.tty:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 TextColumn("{task.fields[info]}"), transient=False)
            self._bar.start()
            self._task = self._bar.add_task("scoring", total=total, info="")

    def info(self) -> str:
        minutes = max(time.monotonic() - self.t0, 1e-9) / 60
        hours = self.audio_s / SECONDS_PER_HOUR
        return f"{hours:.2f} h audio, {hours / minutes:.2f} h/min"

    def advance(self, audio_s: float) -> None:
        self.files += 1
        self.audio_s += audio_s
        if self._bar is not None:
            self._bar.update(self._task, advance=1, info=self.info())
        elif not self.quiet and (
            time.monotonic() - self.last_line >= PLAIN_PROGRESS_EVERY_S or self.files == self.total
        ):
            self.last_line = time.monotonic()
            print(f"ser-batch: {self.files}/{self.total} files, {self.info()}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _profiles(args: argparse.Namespace, model: Any) -> dict[str, dict[str, Any]]:
    """The profiles given, checked against the model now (not in every worker), as JSON for the workers."""
    from ser_live.batch.score import PROFILE_ALL
    from ser_live.realtime.profile import load_profile

    out = {}
    for key, path in ((PROFILE_ALL, args.profile), ("0", args.profile_left), ("1", args.profile_right)):
        if path is not None:
            profile = load_profile(path)
            model.with_profile(profile)  # UserError: another model file, or a model without an embedding
            out[key] = profile.to_dict()
    return out


def _deployment(args: argparse.Namespace, model: Any, paths: Sequence[str]) -> Any:
    """The deployment statistics of ``--deployment`` (checked against the model now), or None. ``auto``: those of
    an earlier run in --out (unless --fresh), else a first pass over ``paths`` writes them there."""
    from ser_live.realtime.deployment import load_deployment, measure

    if args.deployment is None:
        return None
    if args.deployment != DEPLOYMENT_AUTO:
        stats = load_deployment(args.deployment)
        stats.apply(model)  # UserError: another model, or one without a session normaliser
        return stats
    target = args.out / DEPLOYMENT_NAME
    if target.exists() and not args.fresh:
        stats = load_deployment(target)
        stats.apply(model)
        if not args.quiet:
            print(f"ser-batch: reusing {target} (an earlier run's first pass; --fresh measures again)",
                  file=sys.stderr)
        return stats
    model.require_session_norm()  # before the first pass reads anything
    if not args.quiet:
        print(f"ser-batch: first pass: deployment statistics over {len(paths)} files", file=sys.stderr)
    progress = _Progress(len(paths), args.quiet)
    try:
        stats = measure(model, paths, channels=args.channels, on_file=lambda path, windows, error: progress.advance(0))
    finally:
        progress.close()
    stats.save(target, overwrite=True, inputs={f"INPUT {p}": Path(p) for p in paths})
    if not args.quiet:
        print(f"ser-batch: {stats.describe()}; wrote {target}", file=sys.stderr)
    return stats


def run(args: argparse.Namespace) -> int:
    from ser_live.batch.inputs import expand_inputs
    from ser_live.batch.score import BatchSettings, model_identity
    from ser_live.batch.store import Journal, check_outputs_writable, require_pyarrow, stat_key, write_outputs
    from ser_live.realtime.model import load_model

    require_pyarrow()
    if args.workers < 1:
        raise UserError(f"--workers must be at least 1 (got {args.workers})")
    if args.ray_timeout is None:
        from ser_live.batch.ray_backend import DEFAULT_CONNECT_TIMEOUT_S

        args.ray_timeout = DEFAULT_CONNECT_TIMEOUT_S
    elif not (math.isfinite(args.ray_timeout) and args.ray_timeout > 0):
        raise UserError(f"--ray-timeout must be a positive number of seconds (got {args.ray_timeout})")
    elif args.ray is None:
        raise UserError("--ray-timeout only applies with --ray")
    cpus = os.cpu_count() or 1
    if args.ray is None and args.workers > cpus:
        logger.warning("--workers %d is more than the %d CPUs here: using %d (more processes only compete for "
                       "them)", args.workers, cpus, cpus)
        args.workers = cpus
    loaded = load_model(args.model, provider="cpu")  # fails early, with one line, on a bad model
    profiles = _profiles(args, loaded)
    model = model_identity(args.model)
    labels = loaded.labels
    paths = [str(p) for p in expand_inputs(args.inputs)]
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create --out {args.out}: {err.strerror}; pass a writable folder") from None
    deployment = _deployment(args, loaded, paths)
    settings = BatchSettings(channels=args.channels, profiles=profiles, streaming_path=args.streaming_path,
                             deployment=None if deployment is None else deployment.to_dict())
    journal = Journal(args.out, {"model_sha256": model["sha256"], "settings": settings.to_dict()}, fresh=args.fresh)
    try:
        check_outputs_writable(args.out)
    except BaseException:
        journal.close()
        raise
    todo = []
    for path in paths:
        key = stat_key(path)
        if key is None or not journal.is_done(key):
            todo.append(path)
    skipped = len(paths) - len(todo)
    if skipped and not args.quiet:
        print(f"ser-batch: {skipped} of {len(paths)} files already done in {args.out}; scoring {len(todo)}",
              file=sys.stderr)
    stop = _Stop()
    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    progress = _Progress(len(todo), args.quiet)
    t0 = time.monotonic()

    def on_result(result: dict[str, Any]) -> None:
        journal.append(result)
        first = result["rows"][0] if result["rows"] else {}
        progress.advance(float(first.get("duration_s") or 0.0))

    backend = "ray" if args.ray is not None else "local"
    try:
        if args.ray is not None:
            from ser_live.batch.ray_backend import run_ray

            complete = run_ray(args.ray, args.model, settings, todo, args.workers, on_result, lambda: stop.requested,
                               timeout_s=args.ray_timeout)
        else:
            from ser_live.batch.local import run_local

            complete = run_local(args.model, settings, todo, args.workers, on_result, lambda: stop.requested)
    finally:
        progress.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
        journal.close()
    wall_s = time.monotonic() - t0
    run_info = {
        "tool": "ser-batch",
        "project_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": model,
        "labels": list(labels),
        "settings": settings.to_dict(),
        "backend": backend,
        "ray_address": args.ray,
        "workers": args.workers,
        "complete": bool(complete and not stop.requested),
        "resumed_files": skipped,
        "scored_this_run": progress.files,
        "wall_s": round(wall_s, 2),
        "audio_hours_this_run": round(progress.audio_s / SECONDS_PER_HOUR, 4),
        "audio_hours_per_wall_minute": round(progress.audio_s / SECONDS_PER_HOUR / max(wall_s / 60, 1e-9), 3),
    }
    counts = write_outputs(args.out, labels, paths, journal, run_info)
    if not args.quiet:
        print(f"ser-batch: {counts['files_done']}/{len(paths)} files: {counts['ok']} ok, {counts['no_speech']} "
              f"without speech, {counts['error']} errors; wrote {args.out / 'files.csv'}, windows.parquet, run.json")
    if stop.requested:
        return EXIT_INTERRUPTED
    if counts["ok"] + counts["no_speech"] == 0:
        first_error = next((r["error"] for p in paths for r in journal.done.get(p, {}).get("rows", [])
                            if r["status"] == "error"), "")
        print(f"ser-batch: error: none of the {len(paths)} files could be scored (first: {first_error})",
              file=sys.stderr)
        return EXIT_NONE_SCORED
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    basic_logging(args.verbose)
    return run_tool("ser-batch", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
