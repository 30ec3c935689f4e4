"""scripts/pool_profile_gain.py: one profile-gain table from several profile_gain.py runs (rows written here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.scripts_loader import load_script


def _rows(run: Path, rows: list[tuple[str, str, int, float, float]]) -> None:
    run.mkdir(parents=True)
    out = [{"corpus": c, "speaker": s, "k": k, "draw": d, "method": "softmax", "base_uar": b, "uar": u,
            "base_acc": b, "acc": u, "warned": False} for d, (c, s, k, b, u) in enumerate(rows)]
    (run / "rows.json").write_text(json.dumps(out))


def test_runs_are_pooled_per_corpus_and_k_with_a_speaker_interval(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    _rows(tmp_path / "fold1", [("ased", "ased:01", 3, 0.50, 0.70), ("ased", "ased:01", 3, 0.50, 0.60),
                               ("ravdess", "ravdess:01", 3, 0.80, 0.79)])
    _rows(tmp_path / "fold2", [("ased", "ased:02", 3, 0.60, 0.60), ("ased", "ased:02", 1, 0.60, 0.50)])
    out_file = tmp_path / "pooled.md"
    assert load_script("pool_profile_gain").main([str(tmp_path / "fold1"), str(tmp_path / "fold2"),
                                                  "--out", str(out_file)]) == 0
    out = capsys.readouterr().out
    rows = {tuple(cell.strip() for cell in line.split("|")[1:4]): line for line in out.splitlines()[2:]}
    ased3 = rows[("ased", "softmax", "3")]
    assert "| 2 |" in ased3 and "+10.0" in ased3  # two speakers; gains +20, +10, 0 over three draws
    assert "+0.0..+15.0" in ased3  # speakers resampled: all-ased:02 (0) .. all-ased:01 (+15)
    assert ased3.endswith("| 0 % |")  # no draw more than 2 points worse
    assert "-10.0" in rows[("ased", "softmax", "1")] and "100 %" in rows[("ased", "softmax", "1")]
    assert "-1.0" in rows[("ravdess", "softmax", "3")]
    assert out_file.read_text() == out


def test_a_folder_without_rows_and_an_existing_output_are_refused(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    script = load_script("pool_profile_gain")
    assert script.main([str(tmp_path)]) == 2
    assert "rows.json not found" in capsys.readouterr().err
    _rows(tmp_path / "run", [("ased", "ased:01", 3, 0.5, 0.6)])
    (tmp_path / "t.md").write_text("kept")
    assert script.main([str(tmp_path / "run"), "--out", str(tmp_path / "t.md")]) == 2
    assert "exists" in capsys.readouterr().err and (tmp_path / "t.md").read_text() == "kept"
