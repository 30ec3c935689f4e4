"""The K-fold figure of a join of seeds: ``scripts/eval_v4.sh … kfold-seeds3`` scores, fold by fold, each seed's fold
model and their join on that fold's test speakers (``EVAL_DIR/foldK-CORPUS/eval.json``); this prints clip UAR per
fold and the mean ± sd over the folds per corpus, for each kind of model (its file name without ``-foldK``).

    python scripts/kfold_join_table.py runs/v4/eval-kfold-seeds3

Only folds scored for every corpus and kind count in the means, so the kinds are compared on the same folds.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

FOLD_DIR = re.compile(r"^fold(\d+)-(\w+)$")
FOLD_SUFFIX = re.compile(r"-fold\d+$")


def collect(eval_dir: Path) -> dict[str, dict[str, dict[int, float]]]:
    """``{corpus: {kind: {fold: clean clip UAR %}}}`` from the eval.json files under ``eval_dir``."""
    table: dict[str, dict[str, dict[int, float]]] = {}
    for path in sorted(eval_dir.glob("fold*-*/eval.json")):
        match = FOLD_DIR.match(path.parent.name)
        if match is None:
            continue
        fold, corpus = int(match.group(1)), match.group(2)
        models = json.loads(path.read_text(encoding="utf-8"))["models"]
        for name, result in models.items():
            kind = FOLD_SUFFIX.sub("", name)
            uar = 100.0 * float(result["conditions"]["clean"]["uar"])
            table.setdefault(corpus, {}).setdefault(kind, {})[fold] = uar
    return table


def render(table: dict[str, dict[str, dict[int, float]]]) -> str:
    lines = ["| corpus | model | per fold | mean ± sd |", "|---|---|---|---|"]
    for corpus, kinds in sorted(table.items()):
        folds = sorted(set.intersection(*(set(v) for v in kinds.values())))
        for kind, per_fold in sorted(kinds.items()):
            values = np.array([per_fold[k] for k in folds])
            listed = " / ".join(f"{per_fold[k]:.1f}" for k in folds)
            sd = f"{values.std():.1f}" if len(values) > 1 else "–"  # over the folds, as ser-train's cv_metrics
            lines.append(f"| {corpus} | {kind} | {listed} (folds {', '.join(map(str, folds))}) | "
                         f"{values.mean():.1f} ± {sd} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("eval_dir", type=Path, help="the folder eval_v4.sh kfold-seeds3 wrote (eval-kfold-seeds3)")
    args = p.parse_args(argv)
    table = collect(args.eval_dir)
    if not table:
        p.error(f"no fold*-CORPUS/eval.json under {args.eval_dir}: run scripts/eval_v4.sh … kfold-seeds3 first")
    print(render(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
