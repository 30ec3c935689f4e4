"""scripts/kfold_table.py: the card's K-fold table from ser-train --folds run folders (fold metrics written here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.scripts_loader import load_script


def _script():  # scripts/ is not a package
    return load_script("kfold_table")


def _fold(run: Path, k: int, per_corpus: dict[str, tuple[float, float]]) -> None:
    (run / f"fold{k}").mkdir(parents=True)
    metrics = {"epochs_run": 12, "train_seconds": 600,
               "per_corpus": {c: {"uar": u, "top_label_share": s} for c, (u, s) in per_corpus.items()}}
    (run / f"fold{k}" / "metrics.json").write_text(json.dumps(metrics))


def test_table_means_each_corpus_over_the_folds_that_tested_it(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "short", tmp_path / "long"
    _fold(a, 1, {"ased": (0.70, 0.25), "tess": (0.60, 0.30)})
    _fold(a, 2, {"ased": (0.80, 0.20)})
    _fold(b, 1, {"ased": (0.90, 0.22)})  # fold 2 of the long run not finished yet
    assert _script().main([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    rows = {line.split(" | ")[0].strip("| "): line for line in out.splitlines() if line.startswith("|")}
    assert "70.0 (25.0)" in rows["1"] and "90.0 (22.0)" in rows["1"] and "60.0 (30.0)" in rows["1"]
    assert rows["2"].count("–") == 3  # the long run's fold 2, and TESS in both runs
    assert "**75.0 ± 5.0** (2)" in rows["mean ± sd"] and "**90.0 ± 0.0** (1)" in rows["mean ± sd"]
    assert "folds [1]" in out


def test_a_folder_without_folds_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _script().main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no foldN/metrics.json" in err and len(err.strip().splitlines()) == 1


def _eval(path: Path, uars: dict[str, float]) -> None:
    path.mkdir(parents=True)
    models = {name: {"conditions": {"clean": {"uar": u}}} for name, u in uars.items()}
    (path / "eval.json").write_text(json.dumps({"models": models}))


def test_join_table_compares_the_kinds_on_the_folds_all_of_them_have(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    join_table = load_script("kfold_join_table")
    _eval(tmp_path / "fold1-ravdess", {"s42-fold1": 0.50, "s43-fold1": 0.60, "join-fold1": 0.70})
    _eval(tmp_path / "fold2-ravdess", {"s42-fold2": 0.40, "s43-fold2": 0.50, "join-fold2": 0.50})
    _eval(tmp_path / "fold3-ravdess", {"s42-fold3": 0.90})  # the others have no fold 3: not in anyone's mean
    table = join_table.collect(tmp_path)
    assert table["ravdess"]["join"] == {1: 70.0, 2: 50.0}
    assert join_table.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| ravdess | join | 70.0 / 50.0 (folds 1, 2) | 60.0 ± 10.0 |" in out
    assert "| ravdess | s42 | 50.0 / 40.0 (folds 1, 2) | 45.0 ± 5.0 |" in out
    with pytest.raises(SystemExit):
        join_table.main([str(tmp_path / "empty")])
