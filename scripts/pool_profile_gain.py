"""Pool scripts/profile_gain.py runs (e.g. one per K-fold model, each on its own test speakers) into one table.

Per corpus, method and k: the table of profile_gain.py over every (speaker, draw) of all runs, plus the number of
speakers and a 95 % interval of the mean gain from resampling *speakers* (draws of one speaker are not independent:
the speaker, not the draw, is the unit a user is).

    python scripts/pool_profile_gain.py runs/v4/profile-kfold/fold* [--out runs/v4/profile-kfold/pooled.md]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

from profile_gain import summarise  # noqa: E402

from ser_live.realtime.errors import UserError  # noqa: E402
from ser_live.realtime.fileio import atomic_write, check_outputs  # noqa: E402

BOOTSTRAP = 2000


def speaker_interval(rows: list[dict[str, Any]], seed: int = 0) -> tuple[float, float]:
    """95 % interval of the mean gain (points) when speakers are resampled with replacement."""
    per: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        per[f"{r['corpus']}:{r['speaker']}"].append(100 * (r["uar"] - r["base_uar"]))
    groups = list(per.values())
    rng = np.random.default_rng(seed)
    means = []
    for _ in range(BOOTSTRAP):
        pick = rng.integers(0, len(groups), len(groups))
        means.append(float(np.mean(np.concatenate([groups[i] for i in pick]))))
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="folders written by profile_gain.py (each holds rows.json)")
    ap.add_argument("--out", type=Path, help="also write the table here (an existing file is kept unless --overwrite)")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = ap.parse_args(argv)
    if args.out is not None:
        try:
            check_outputs({"--out": args.out}, {f"run {i + 1}": run / "rows.json" for i, run in enumerate(args.runs)},
                          overwrite=args.overwrite)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    rows: list[dict[str, Any]] = []
    for run in args.runs:
        path = run / "rows.json"
        if not path.is_file():
            print(f"error: {path} not found: pass folders written by scripts/profile_gain.py", file=sys.stderr)
            return 2
        rows += json.loads(path.read_text())
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["corpus"], r["method"], int(r["k"]))].append(r)
    lines = ["| corpus | method | k | speakers | base UAR | profiled UAR | gain (sd) | 95 % CI (speakers) | "
             "worse > 2 pts |", "|---|---|---|---|---|---|---|---|---|"]
    for (corpus, method, k), rs in sorted(groups.items()):
        s = summarise(rs)
        lo, hi = speaker_interval(rs)
        n_spk = len({r["speaker"] for r in rs})
        lines.append(f"| {corpus} | {method} | {k} | {n_spk} | {s['base_uar']:.1f} | {s['profile_uar']:.1f} | "
                     f"{s['gain']:+.1f} ({s['gain_sd']:.1f}) | {lo:+.1f}..{hi:+.1f} | "
                     f"{100 * s['worse_share']:.0f} % |")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out is not None:
        atomic_write(args.out, lambda fh: fh.write(text.encode()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
