"""``ser-stats``: deployment statistics for an encoder model, from recordings of where it is used.

    ser-stats calls/ -o callcentre.json                  # every recording in a folder (or files, globs, manifests)
    ser-live --deployment callcentre.json --file call.wav  # ... then read with one flag (ser-batch, ser-serve, API)
    ser-stats --show callcentre.json

The statistics (the mean and spread of the recordings' window embeddings, :mod:`ser_live.realtime.deployment`)
become the session normaliser's starting point instead of the training corpora's. Use many speakers and every
emotion you expect, recorded the way the model will hear them; a few minutes of speech is enough.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from ser_live import __version__
from ser_live.realtime.errors import UserError
from ser_live.realtime.tooling import HelpFormatter, basic_logging, run_tool

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ser-stats", description=__doc__.split("\n\n")[0],
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]), formatter_class=HelpFormatter)
    p.add_argument("--version", action="version", version=f"ser-stats {__version__}")
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="audio files, folders (recursive), globs, manifests")
    p.add_argument("-o", "--output", default=None, metavar="FILE", help="the statistics to write (JSON, a new file)")
    p.add_argument("--model", default=None, help="the model they are for (default: the bundled model)")
    p.add_argument("--channels", choices=("mix", "split"), default="mix",
                   help="mix: one stream per file; split: every channel on its own (as ser-batch --channels split)")
    p.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    p.add_argument("--show", metavar="FILE", default=None, help="describe a statistics file (and check it fits "
                   "--model) instead of writing one")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def _show(args: argparse.Namespace) -> int:
    from ser_live.realtime.deployment import load_deployment
    from ser_live.realtime.model import load_model

    if args.inputs or args.output:
        raise UserError("--show reads a statistics file: give no INPUT and no -o with it")
    stats = load_deployment(args.show)
    print(stats.describe())
    model = load_model(args.model, provider="cpu")
    stats.check_model(model)
    print(f"  fits {model.path}")
    return 0


def _write(args: argparse.Namespace) -> int:
    from ser_live.batch.inputs import expand_inputs
    from ser_live.realtime.deployment import measure
    from ser_live.realtime.fileio import check_outputs
    from ser_live.realtime.model import encoder_path, load_model, resolve_model_path

    if not args.inputs:
        raise UserError("give the recordings to measure (files, folders, globs or manifests) and -o FILE")
    if args.output is None:
        raise UserError("give -o FILE: where to write the statistics (a new JSON file)")
    out = Path(args.output).expanduser()
    model_path = resolve_model_path(args.model)
    paths = expand_inputs(args.inputs)
    inputs = {"--model": model_path, "--model (its encoder)": encoder_path(model_path)}
    inputs.update({f"INPUT {p}": p for p in paths})
    check_outputs({"-o": out}, inputs, overwrite=args.overwrite)
    model = load_model(args.model, provider="cpu")
    model.require_session_norm()  # before any file is read
    done = 0

    def on_file(path: str, windows: int, error: str) -> None:
        nonlocal done
        done += 1
        if error:
            print(f"ser-stats: skipped {path}: {error}", file=sys.stderr)
        elif not args.quiet:
            print(f"ser-stats: {done}/{len(paths)} {path}: {windows} windows", file=sys.stderr)

    stats = measure(model, paths, on_file=on_file, channels=args.channels)
    stats.save(out, overwrite=args.overwrite, inputs=inputs)
    print(stats.describe())
    print(f"wrote {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    basic_logging(args.verbose)
    return run_tool("ser-stats", lambda: _show(args) if args.show else _write(args))


if __name__ == "__main__":
    sys.exit(main())
