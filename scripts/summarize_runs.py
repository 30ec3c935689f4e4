"""Print a Markdown table of ser-train runs (headline figures with their split), for notes and the model card.

Usage: python scripts/summarize_runs.py runs/a runs/b ...   (each a ser-train --out folder)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def row(run: Path) -> str:
    m = json.loads((run / "metrics.json").read_text())
    c = json.loads((run / "config.json").read_text())
    clip, win = m["clip"], m["window"]
    flags = []
    hyper = c.get("hyper", {})
    if hyper.get("class_weighting"):
        flags.append("class weights")
    if hyper.get("label_smoothing"):
        flags.append(f"label smoothing {hyper['label_smoothing']}")
    if c.get("augment"):
        flags.append(f"augment x{c['augment'].get('copies', '?')}")
    speakers = "all (speakers leak)" if m["split"] == "random" else ", ".join(m.get("test_speakers", []))
    cells = [
        run.name, c["recipe"], c["preset"]["name"], m["split"], speakers,
        *(f"{v:.4f}" for v in (clip["accuracy"], clip["uar"], clip["macro_f1"], win["accuracy"], win["uar"])),
        str(m["counts"]["test"]["clips"]), str(m["epochs_run"]), "; ".join(flags),
    ]
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str]) -> int:
    print(
        "| run | recipe | preset | split | test speakers | clip acc | clip UAR | clip macro-F1 | window acc "
        "| window UAR | test clips | epochs | settings |"
    )
    print("|" + "---|" * 13)
    for arg in argv:
        run = Path(arg)
        if (run / "metrics.json").exists():
            print(row(run))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
