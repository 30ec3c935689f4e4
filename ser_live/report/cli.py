"""``ser-report EVENTS.jsonl -o session.png``: the session report of a saved ser-live JSONL file."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from ser_live.realtime.tooling import basic_logging, run_tool

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ser-report",
        description="Draw a session report (PNG: emotion over time, arousal and valence, time per emotion) and a "
        "Markdown summary from the JSONL that ser-live --jsonl wrote.",
    )
    p.add_argument("events", type=Path, help="a ser-live JSONL file")
    p.add_argument("-o", "--out", type=Path, required=True, help="the PNG to write (the summary goes beside it, .md)")
    p.add_argument("--markdown", type=Path, default=None, help="where to write the Markdown summary instead")
    p.add_argument("--title", default="", help="title of the first plot")
    p.add_argument("--session", type=int, default=None, metavar="N",
                   help="a file ser-live --append grew holds several sessions: report session N (1 = the first) "
                   "(default: the only one; a file of several is refused with their list)")
    p.add_argument("--overwrite", action="store_true", help="replace the PNG / Markdown if they exist")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def run(args: argparse.Namespace) -> int:
    from ser_live.realtime.fileio import check_outputs
    from ser_live.report.session import check_report_path, read_jsonl, require_matplotlib, write_report

    require_matplotlib()
    md = check_report_path(args.out, args.markdown)
    check_outputs({"-o": args.out, "--markdown" if args.markdown else "the Markdown beside -o": md},
                  {"EVENTS": args.events}, overwrite=args.overwrite)
    session = read_jsonl(args.events, args.session)
    png, md = write_report(session, args.out, args.markdown, args.title)
    for note in session.notes:  # (also in the Markdown) said where the user looks
        print(f"ser-report: note: {note}", file=sys.stderr)
    print(f"wrote {png} and {md} ({len(session.events)} windows)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    basic_logging(args.verbose)
    return run_tool("ser-report", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
