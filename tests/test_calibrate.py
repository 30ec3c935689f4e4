"""ser-calibrate: temperature, uncertain threshold and affect head fitted on held-out speakers, stored in the model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ser_live.realtime.engine import Engine
from ser_live.realtime.model import load_model
from ser_live.realtime.stages.affect import temper
from ser_live.train.calibrate import choose_threshold, ece, fit_linear_head, fit_temperature
from ser_live.train.calibrate import main as calibrate_main
from tests.audio_fixtures import voiced_tone, write_ravdess_tree
from tests.tiny_model import make_tiny_model

pytest.importorskip("onnx")


def test_fit_temperature_undoes_an_overconfident_softmax() -> None:
    rng = np.random.default_rng(0)
    n, k = 4000, 5
    logits = rng.normal(size=(n, k)) * 2.0
    p_true = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    truth = np.array([rng.choice(k, p=row) for row in p_true])  # labels drawn from the true probabilities
    overconfident = temper(p_true, 1 / 3).astype(np.float64)  # the same ranking, three times too sharp
    t = fit_temperature(overconfident, truth)
    assert 2.5 < t < 3.6
    after = temper(overconfident, t).astype(np.float64)
    assert ece(after, truth) < ece(overconfident, truth) / 2


def test_choose_threshold_keeps_windows_right_often_enough() -> None:
    conf = np.linspace(0.1, 0.9, 100)
    right = conf > 0.5  # windows above 0.5 are always right, below never
    t, info = choose_threshold(conf, right, 0.8)
    kept = conf >= t
    assert right[kept].mean() >= 0.8 and info["reached_target"]
    assert t <= 0.5  # the lowest threshold that reaches the target
    assert info["coverage"] == pytest.approx(kept.mean())


def test_each_corpus_must_reach_the_target_not_just_the_pool() -> None:
    """Pooled, a strong corpus carries a weak one (its windows are right 90 % of the time, the weak one's 40 %: the
    pool reaches 65 % with nothing held back); by corpus, the threshold rises until the weak corpus's kept
    windows are right often enough too."""
    rng = np.random.default_rng(0)
    n = 400
    conf = np.concatenate([rng.uniform(0.3, 1.0, n), rng.uniform(0.1, 0.9, n)])
    right = np.concatenate([rng.random(n) < 0.9, rng.random(n) < conf[n:] - 0.2])  # weak: right more when sure
    groups = np.array(["strong"] * n + ["weak"] * n)
    pooled, info = choose_threshold(conf, right, 0.6)
    assert pooled == 0.0 and info["rule"] == "pooled"
    t, info = choose_threshold(conf, right, 0.6, groups)
    assert t > 0.3 and info["rule"] == "each corpus" and info["reached_target"]
    weak = (groups == "weak") & (conf >= t)
    assert right[weak].mean() >= 0.6 and info["worst_corpus_accuracy_kept"] == pytest.approx(right[weak].mean())
    # the threshold is the lowest that does it
    below = (groups == "weak") & (conf >= t - 0.01)
    assert right[below].mean() < 0.6
    # a corpus with too few windows does not set it alone
    few = np.array(["strong"] * (2 * n - 20) + ["tiny"] * 20)
    one_group = np.array(["strong"] * 2 * n)
    assert choose_threshold(conf, right, 0.6, few)[0] == choose_threshold(conf, right, 0.6, one_group)[0]


def test_linear_head_learns_the_lexicon_coordinates() -> None:
    labels = ("angry", "sad", "happy", "neutral")
    truth = np.repeat(np.arange(4), 50)
    probs = np.full((200, 4), 0.1)
    probs[np.arange(200), truth] = 0.7
    head = fit_linear_head(labels, probs, truth)
    out = head(probs)
    assert out[truth == 0, 0].mean() > 0 > out[truth == 0, 1].mean()  # angry: high arousal, negative valence
    assert out[truth == 1, 0].mean() < 0 and out[truth == 1, 1].mean() < 0  # sad: low, negative
    assert out[truth == 2, 1].mean() > 0  # happy: positive


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("calib")
    write_ravdess_tree(root / "ravdess", actors=4, unreadable=False)
    model = make_tiny_model(root / "tiny.onnx", preset_name="logmel")
    head = make_tiny_model(root / "head.onnx", preset_name="logmel", affect_head=True)
    run = root / "run"
    run.mkdir()
    counts = {part: {"speaker": {f"ravdess:{a:02d}": 7 for a in actors}}
              for part, actors in (("train", (1, 2)), ("val", (3,)), ("test", (4,)))}
    (run / "metrics.json").write_text(json.dumps({"counts": counts, "test_speakers": ["ravdess:04"]}))
    return {"root": root, "model": model, "head": head, "run": run}


def test_ser_calibrate_writes_a_calibrated_model_and_a_report(corpus: dict[str, Path], tmp_path: Path) -> None:
    out, other, report = tmp_path / "cal.onnx", tmp_path / "copy.onnx", tmp_path / "cal.json"
    other.write_bytes(corpus["model"].read_bytes())
    code = calibrate_main([str(corpus["model"]), "--data", f"ravdess={corpus['root'] / 'ravdess'}",
                           "--run", str(corpus["run"]), "-o", str(out), "--apply-to", str(other),
                           "--report", str(report), "--target-accuracy", "0.5"])
    assert code == 0
    figures = json.loads(report.read_text())
    assert figures["fit_speakers"] == ["ravdess:03"] and figures["test"]["speakers"] == ["ravdess:04"]
    assert figures["fit"]["nll_after"] <= figures["fit"]["nll_before"] + 1e-9  # T = 1 is on the grid
    # one corpus: its per-corpus figures are the whole part's
    [(name, fit_corpus)] = figures["fit_per_corpus"].items()
    assert name == "ravdess" and fit_corpus["windows"] == figures["fit"]["windows"]
    assert fit_corpus["accuracy_all"] == pytest.approx(figures["uncertain"]["accuracy_all"])
    assert fit_corpus["uncertain_share"] == pytest.approx(1 - figures["uncertain"]["coverage"])
    test_corpus = figures["test"]["per_corpus"]["ravdess"]
    assert test_corpus["uncertain_share"] == pytest.approx(figures["test"]["uncertain_share"])
    assert 0 < test_corpus["top_kept_label_share"] <= 1 or test_corpus["accuracy_kept"] is None
    assert set(figures["affect"]) == {"lexicon", "linear"} and figures["affect_chosen"] in ("lexicon", "linear")
    plain, calibrated, copy = load_model(corpus["model"]), load_model(out), load_model(other)
    cal = calibrated.info.calibration
    assert cal.temperature == pytest.approx(round(figures["temperature"], 4))
    assert cal.min_confidence == figures["uncertain"]["threshold"]
    assert copy.info.calibration == cal and copy.info.affect == calibrated.info.affect
    assert calibrated.info.affect is not None and calibrated.info.affect.method == figures["affect_chosen"]
    x = np.random.default_rng(1).normal(-40, 10, size=(4, *plain.info.feature_shape)).astype(np.float32)
    np.testing.assert_allclose(calibrated.predict(x), plain.predict(x), atol=1e-6)  # T acts on the smoothed output
    assert figures["temperature_kept"] == (cal.temperature != 1.0)
    if figures["temperature_kept"]:
        assert figures["fit"]["ece_after"] < figures["fit"]["ece_before"]
    # the calibrated file runs in the engine with its own uncertain threshold
    voice = voiced_tone(180.0, 3.0, 0.3, 4.0, seed=5)
    engine = Engine(calibrated, 16000)
    events = engine.feed(voice) + engine.flush()
    assert events and all(e.uncertain == (e.confidence < cal.min_confidence) for e in events)


def test_a_fixed_temperature_is_stored_and_the_fitted_one_reported(corpus: dict[str, Path], tmp_path: Path) -> None:
    out, report = tmp_path / "fixed.onnx", tmp_path / "fixed.json"
    assert calibrate_main([str(corpus["model"]), "--data", f"ravdess={corpus['root'] / 'ravdess'}", "--speakers",
                           "ravdess:03,ravdess:04", "-o", str(out), "--temperature", "1", "--report", str(report)]) == 0
    figures = json.loads(report.read_text())
    assert figures["temperature"] == 1.0 and not figures["temperature_kept"]
    assert figures["fit"]["ece_after"] == pytest.approx(figures["fit"]["ece_before"])
    assert "ece_after" in figures["fit_at_fitted_temperature"]
    assert load_model(out).info.calibration.temperature == 1.0


def test_a_trained_head_competes_with_the_mappings(corpus: dict[str, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A model with a trained affect head: the head is scored next to the lexicon and the linear head, on the same
    clips, and ``--affect head`` keeps it (the graph output stays the model's arousal/valence)."""
    out, report = tmp_path / "head.onnx", tmp_path / "head.json"
    data = ["--data", f"ravdess={corpus['root'] / 'ravdess'}", "--run", str(corpus["run"]), "-o", str(out)]
    assert calibrate_main([str(corpus["head"]), *data, "--report", str(report)]) == 0
    figures = json.loads(report.read_text())
    assert set(figures["affect"]) == {"head", "lexicon", "linear"}
    assert figures["affect"]["head"]["fit"] != figures["affect"]["lexicon"]["fit"]
    assert load_model(out).has_head == (figures["affect_chosen"] == "head")
    assert calibrate_main([str(corpus["head"]), *data, "--affect", "head", "--report", str(report)]) == 0
    assert json.loads(report.read_text())["affect_chosen"] == "head" and load_model(out).has_head
    # a model without a head cannot be asked for one
    code = calibrate_main([str(corpus["model"]), "--data", f"ravdess={corpus['root'] / 'ravdess'}", "--speakers",
                           "ravdess:03", "-o", str(tmp_path / "x.onnx"), "--affect", "head"])
    assert code == 2 and "no trained affect head" in capsys.readouterr().err


def test_ser_calibrate_bad_input(corpus: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = calibrate_main([str(corpus["model"]), "--data", f"ravdess={corpus['root'] / 'ravdess'}",
                           "--speakers", "ravdess:99", "-o", str(tmp_path / "x.onnx")])
    assert code == 2 and "fitting speakers" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


def test_ser_calibrate_checks_every_output_before_it_writes_one(
    corpus: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failure after -o is written would leave a calibrated model without its report or its int8 twin."""
    out = tmp_path / "cal.onnx"
    base = [str(corpus["model"]), "--data", f"ravdess={corpus['root'] / 'ravdess'}", "--speakers", "ravdess:03",
            "-o", str(out)]
    cases = [
        (["--report", str(tmp_path / "no" / "such" / "r.json")], "does not exist"),
        (["--report", str(corpus["model"])], "is the input MODEL"),
        (["--apply-to", str(tmp_path / "missing.onnx")], "--apply-to"),
        (["--apply-to", str(corpus["root"] / "ravdess" / "Actor_03")], "folder"),
        (["--apply-to", str(out)], "both name"),
    ]
    not_a_model = tmp_path / "notes.onnx"
    not_a_model.write_text("not a model")
    cases.append((["--apply-to", str(not_a_model)], "cannot read"))
    for extra, words in cases:
        assert calibrate_main([*base, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists(), extra
    assert not_a_model.read_text() == "not a model"


def test_test_speakers_are_reported_never_fitted_and_the_source_is_remembered(
        corpus: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--speakers fits, --test-speakers (CORPUS:* = every speaker of it) only reports; the calibrated file names the
    source's sha256 (same graph), so a personal profile made for the source still fits it."""
    from ser_live.realtime.fileio import file_sha256

    out, report = tmp_path / "cal.onnx", tmp_path / "cal.json"
    data = ["--data", f"ravdess={corpus['root'] / 'ravdess'}"]
    assert calibrate_main([str(corpus["model"]), *data, "--speakers", "ravdess:03", "--test-speakers",
                           "ravdess:01,ravdess:04", "-o", str(out), "--report", str(report)]) == 0
    figures = json.loads(report.read_text())
    assert figures["fit_speakers"] == ["ravdess:03"] and figures["test"]["speakers"] == ["ravdess:01", "ravdess:04"]
    assert figures["uncertain"]["rule"] == "pooled"  # one small corpus (< MIN_GROUP_WINDOWS windows): the pool's rule
    assert load_model(out).info.raw["same_function_as"] == [file_sha256(corpus["model"])]
    assert load_model(out).profile_sha256s == {file_sha256(out), file_sha256(corpus["model"])}
    # a whole corpus by name, minus nothing: it may not overlap the fitting speakers
    assert calibrate_main([str(corpus["model"]), *data, "--speakers", "ravdess:03", "--test-speakers", "ravdess:*",
                           "-o", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert "share ravdess:03" in err and len(err.strip().splitlines()) == 1
    assert calibrate_main([str(corpus["model"]), *data, "--run", str(corpus["run"]), "--test-speakers",
                           "ravdess:04", "-o", str(tmp_path / "y.onnx")]) == 2
    assert "goes with --speakers" in capsys.readouterr().err
