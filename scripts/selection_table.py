"""Issue 19's selection rule as a table: each candidate's clean clip UAR on every held-out set (``ser-eval``'s
eval.json files) and on the unseen corpus its leave-one-corpus-out twin was scored on, and their mean. The shipped
model is the one with the best mean, not the best single column.

Usage:
    python scripts/selection_table.py --eval "ASED held-out=runs/v4/eval-ased/eval.json" \
        --eval "RAVDESS 08/16=runs/v4/eval-ravdess/eval.json" \
        --twin v3=31.1 --twin ens.cal=36.7 --twin ship.cal=36.0 [--condition clean]

``--twin MODEL=UAR`` is the twin's UAR in percent (from the model card: the twins are separate runs, scored by
``scripts/eval_v4.sh … loco``), or ``MODEL=EVAL_JSON:NAME`` to read it from an eval.json. Models missing from an
eval file or without a twin get an empty cell and no mean.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def uar(eval_json: Path, model: str, condition: str) -> float | None:
    models = json.loads(eval_json.read_text(encoding="utf-8"))["models"]
    if model not in models:
        return None
    return 100.0 * float(models[model]["conditions"][condition]["uar"])


def twin_value(spec: str, condition: str) -> tuple[str, float]:
    name, _, value = spec.partition("=")
    if not name or not value:
        raise SystemExit(f"--twin {spec!r}: give MODEL=UAR or MODEL=EVAL_JSON:NAME")
    path, sep, other = value.rpartition(":")
    if sep and Path(path).is_file():
        found = uar(Path(path), other, condition)
        if found is None:
            raise SystemExit(f"--twin {spec!r}: {path} has no model {other!r}")
        return name, found
    try:
        return name, float(value)
    except ValueError:
        raise SystemExit(f"--twin {spec!r}: {value!r} is neither a number nor EVAL_JSON:NAME") from None


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--eval", action="append", default=[], metavar="TITLE=EVAL_JSON", required=True)
    ap.add_argument("--twin", action="append", default=[], metavar="MODEL=UAR")
    ap.add_argument("--condition", default="clean")
    args = ap.parse_args(argv)
    evals = []
    for spec in args.eval:
        title, _, path = spec.partition("=")
        if not Path(path).is_file():
            raise SystemExit(f"--eval {spec!r}: no file {path!r}")
        evals.append((title, Path(path)))
    twins = dict(twin_value(spec, args.condition) for spec in args.twin)
    models: list[str] = []
    for _, path in evals:
        for name in json.loads(path.read_text(encoding="utf-8"))["models"]:
            if name not in models:
                models.append(name)
    print("| candidate | " + " | ".join(title for title, _ in evals) + " | leave-one-corpus-out twin | mean |")
    print("|---" * (len(evals) + 3) + "|")
    for name in models:
        cells = [uar(path, name, args.condition) for _, path in evals] + [twins.get(name)]
        mean = sum(cells) / len(cells) if all(c is not None for c in cells) else None  # type: ignore[misc]
        shown = ["" if c is None else f"{c:.1f}" for c in cells] + ["" if mean is None else f"**{mean:.1f}**"]
        print(f"| {name} | " + " | ".join(shown) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
