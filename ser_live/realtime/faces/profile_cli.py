"""``ser-profile``: personal profiles from recordings you already have, and what a profile holds.

    ser-profile fit --audio clips.csv -o me.json        # rows: path,label (a header line is allowed)
    ser-profile show me.json

``ser-live --enroll me.json`` records the takes itself (a guided session); both fit the same way
(:mod:`ser_live.realtime.profile`).
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from ser_live import __version__
from ser_live.realtime.errors import UserError
from ser_live.realtime.fileio import check_outputs
from ser_live.realtime.model import DEFAULT_PROVIDER, EmotionModel, encoder_path, load_model, resolve_model_path
from ser_live.realtime.profile import DEFAULT_METHOD, METHODS, Profile, Take, check_output, load_profile, make_profile
from ser_live.realtime.tooling import basic_logging, run_tool

logger = logging.getLogger(__name__)

MANIFEST_COLUMNS = ("path", "label")


def read_manifest(path: Path) -> list[tuple[Path, str]]:
    """``(audio path, label)`` rows of a CSV (``path,label``; relative paths are relative to the CSV's folder)."""
    if not path.is_file():
        raise UserError(f"--audio {path} not found: give a CSV with path,label rows")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(
            f"cannot read --audio {path} ({type(err).__name__}): give a UTF-8 CSV of path,label rows"
        ) from None
    rows: list[tuple[Path, str]] = []
    for number, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or all(not cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
            continue
        cells = [cell.strip() for cell in row]
        if number == 1 and [c.lower() for c in cells[:2]] == list(MANIFEST_COLUMNS):
            continue
        if len(cells) < 2 or not cells[0] or not cells[1]:
            raise UserError(f"{path} line {number}: expected path,label, got {','.join(row)!r}")
        audio = Path(cells[0]).expanduser()
        rows.append((audio if audio.is_absolute() else path.parent / audio, cells[1]))
    if not rows:
        raise UserError(f"{path} has no path,label rows")
    return rows


def takes_from_manifest(model: EmotionModel, rows: Sequence[tuple[Path, str]]) -> tuple[list[Take], list[str]]:
    """The takes of every row that holds speech, and one line per row skipped (no speech)."""
    from ser_live.realtime.profile import take_from_audio
    from ser_live.realtime.sources.audio import read_audio

    labels = set(model.labels)
    bad = sorted({label for _, label in rows if label not in labels})
    if bad:
        raise UserError(f"labels {', '.join(bad)} are not the model's: use {', '.join(model.labels)}")
    takes, skipped = [], []
    for audio, label in rows:
        samples, rate = read_audio(audio)
        take = take_from_audio(model, samples, rate, label, source=str(audio))
        if take is None:
            skipped.append(f"{audio}: no window with enough speech")
        else:
            takes.append(take)
    return takes, skipped


def _fit(args: argparse.Namespace) -> int:
    out = Path(args.output).expanduser()
    check_output(out, args.overwrite)
    model_path = resolve_model_path(args.model)
    check_outputs({"-o": out}, {"--model": model_path, "--model (its encoder)": encoder_path(model_path),
                                "AUDIO": Path(args.audio).expanduser()}, overwrite=True)
    rows = read_manifest(Path(args.audio).expanduser())
    if any(audio.resolve() == out.resolve() for audio, _ in rows):  # the manifest itself: check_outputs above
        raise UserError(f"{out} is one of the inputs: write the profile to another file")
    model = load_model(args.model, provider=args.provider)
    takes, skipped = takes_from_manifest(model, rows)
    for line in skipped:
        print(f"ser-profile: skipped {line}", file=sys.stderr)
    profile = make_profile(model, takes, name=args.name or out.stem, method=args.method)
    profile.save(out, overwrite=args.overwrite)
    print(profile.describe())
    print(f"wrote {out}")
    return 0


def _show(args: argparse.Namespace) -> int:
    profile = load_profile(args.profile)
    print(profile.describe())
    if args.model is not None or args.check:
        model = load_model(args.model, provider=args.provider)
        profile.check_model(model)
        print(f"  fits {model.path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from ser_live.realtime.tooling import HelpFormatter

    p = argparse.ArgumentParser(prog="ser-profile", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--version", action="version", version=f"ser-profile {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    f = sub.add_parser("fit", help="fit a profile from labelled recordings", formatter_class=HelpFormatter)
    f.add_argument("--audio", required=True, metavar="CSV", help="path,label rows, one recording of one emotion each")
    f.add_argument("-o", "--output", required=True, metavar="PROFILE", help="the profile to write (JSON)")
    f.add_argument("--model", type=Path, default=None, help="the model to personalise (default: the bundled one)")
    f.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD, help="how the last layer is re-fitted")
    f.add_argument("--name", default=None, help="a name the events will carry (default: the file's stem)")
    f.add_argument("--overwrite", action="store_true", help="replace PROFILE if it exists")
    f.add_argument("--provider", default=DEFAULT_PROVIDER, help="ONNX Runtime provider")
    f.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    s = sub.add_parser("show", help="describe a profile", formatter_class=HelpFormatter)
    s.add_argument("profile", metavar="PROFILE")
    s.add_argument("--model", type=Path, default=None, help="also check that it fits this model")
    s.add_argument("--check", action="store_true", help="also check that it fits the bundled model")
    s.add_argument("--provider", default=DEFAULT_PROVIDER, help="ONNX Runtime provider")
    s.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    basic_logging(args.verbose)
    work = _fit if args.command == "fit" else _show
    return run_tool("ser-profile", lambda: work(args))


__all__ = ["Profile", "main", "read_manifest", "takes_from_manifest"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
