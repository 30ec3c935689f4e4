"""The K-fold table of the model card: per fold and corpus, ser-train's clip UAR % (largest single-label share %),
then the mean ± sd over the folds that tested that corpus, for one or more ``ser-train --folds K`` run folders side
by side (e.g. the same recipe at two budgets).

    python scripts/kfold_table.py runs/v4/kfold-all runs/v4/kfold-all-long

Reads each run's ``foldN/metrics.json`` (a fold still training, or never trained, is left out and named).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


def folds(run: Path) -> dict[int, dict[str, Any]]:
    out = {}
    for path in sorted(run.glob("fold*/metrics.json")):
        try:
            out[int(path.parent.name.removeprefix("fold"))] = json.loads(path.read_text())
        except (ValueError, OSError) as err:
            print(f"{path}: unreadable ({err}); left out", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="ser-train --folds output folders")
    args = ap.parse_args(argv)
    runs = {run: folds(run) for run in args.runs}
    for run, got in runs.items():
        if not got:
            print(f"error: {run} has no foldN/metrics.json: give a ser-train --folds output folder", file=sys.stderr)
            return 2
    corpora = sorted({c for got in runs.values() for m in got.values() for c in m.get("per_corpus", {})})
    numbers = sorted({k for got in runs.values() for k in got})
    head = ["fold"] + [f"{c}: {run.name}" for c in corpora for run in runs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k in numbers:
        cells = [str(k)]
        for c in corpora:
            for got in runs.values():
                pc = got.get(k, {}).get("per_corpus", {}).get(c)
                cells.append(f"{100 * pc['uar']:.1f} ({100 * pc['top_label_share']:.1f})" if pc else "–")
        lines.append("| " + " | ".join(cells) + " |")
    cells = ["mean ± sd"]
    for c in corpora:
        for got in runs.values():
            uars = [100 * m["per_corpus"][c]["uar"] for m in got.values() if c in m.get("per_corpus", {})]
            cells.append(f"**{np.mean(uars):.1f} ± {np.std(uars):.1f}** ({len(uars)})" if uars else "–")
    lines.append("| " + " | ".join(cells) + " |")
    print("\n".join(lines))
    for run, got in runs.items():
        epochs = sorted({m.get("epochs_run") for m in got.values()})
        minutes = [m.get("train_seconds", 0) / 60 for m in got.values()]
        print(f"{run}: folds {sorted(got)}, epochs run {epochs}, {min(minutes):.1f}–{max(minutes):.1f} min a fold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
