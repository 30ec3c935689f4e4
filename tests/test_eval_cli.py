"""``ser-eval`` on corpora the tests write (RAVDESS and ASED names, synthetic voices) and tiny ONNX models.

Properties, not figures: every condition is scored for every model; a model whose input is gain-invariant keeps
its clean verdicts under gains that do not clip, while an old-style model does not have to; the session mode
scores clips inside one stream; the outputs are written; bad input gets one line and exit 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ser_live.realtime.stages.normalize import MODE_WINDOW, InputNormConfig
from ser_live.train.eval_cli import main
from ser_live.train.robustness import CONDITIONS, clip_rng, degrade
from tests.audio_fixtures import write_ased_tree, write_ravdess_tree
from tests.tiny_model import make_tiny_model

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIVE_LABELS = ("angry", "fearful", "happy", "neutral", "sad")  # ASED's: RAVDESS's disgust and surprised are unknown
UNCLIPPED_GAINS = ("gain-20", "gain-10")  # the synthetic voices peak at 0.6: louder gains clip


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    rav = tmp_path_factory.mktemp("ravdess")
    write_ravdess_tree(rav, actors=2, unreadable=False)
    ased = tmp_path_factory.mktemp("ased")
    write_ased_tree(ased, speakers=(3, 7))
    return {"ravdess": rav, "ased": ased}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    norm = InputNormConfig(mode=MODE_WINDOW).to_dict()
    return {
        "invariant": make_tiny_model(folder / "invariant.onnx", preset_name="logmel",
                                     metadata_overrides={"input_normalization": norm}),
        "plain": make_tiny_model(folder / "plain.onnx", preset_name="logmel", seed=3, labels=FIVE_LABELS),
    }


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def report(
    corpora: dict[str, Path], models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("eval")
    code = main([str(models["invariant"]), str(models["plain"]), "--data", f"ravdess={corpora['ravdess']}",
                 "--data", f"ased={corpora['ased']}", "--out", str(out), "-q"])
    assert code == 0
    return {"out": out, "json": json.loads((out / "eval.json").read_text())}


def test_every_condition_is_scored_for_every_model(report: dict[str, Any]) -> None:
    data = report["json"]
    assert data["conditions"] == list(CONDITIONS)
    assert data["clips"] == 2 * 7 + 2 * 5 and data["clips_per_corpus"] == {"ased": 10, "ravdess": 14}
    assert data["speakers"] == 4
    for name in ("invariant", "plain"):
        per = data["models"][name]["conditions"]
        assert set(per) == set(CONDITIONS)
        for condition, entry in per.items():
            assert entry["clips"] == 24 and 0 < entry["scored"] <= 24, condition
            assert 0.0 <= entry["uar"] <= 1.0 and 0.0 < entry["top_verdict_share"] <= 1.0
            assert sum(entry["verdicts"].values()) == entry["scored"]
            if condition != "clean":
                assert 0.0 <= entry["agreement"] <= 1.0
    # labels a model lacks are reported (and scored as recall 0), not dropped
    assert data["models"]["invariant"]["labels_not_in_model"] == []
    assert data["models"]["plain"]["labels_not_in_model"] == ["disgust", "surprised"]
    assert data["models"]["plain"]["conditions"]["clean"]["recall"]["surprised"] == 0.0
    # arousal/valence of the clip verdicts (lexicon mapping): valence leaves the neutral clips out
    affect = data["models"]["invariant"]["conditions"]["clean"]["affect"]
    assert affect["arousal"]["clips"] == 24 and affect["valence"]["clips"] == 24 - 4  # 2 + 2 neutral clips
    assert 0.0 <= affect["arousal"]["binary_accuracy"] <= 1.0


def test_a_gain_invariant_model_keeps_its_verdicts_under_gain(report: dict[str, Any]) -> None:
    per = report["json"]["models"]["invariant"]["conditions"]
    for condition in UNCLIPPED_GAINS:
        assert per[condition]["agreement"] == 1.0, condition
        assert per[condition]["uar"] == pytest.approx(per["clean"]["uar"])


def test_outputs_are_written(report: dict[str, Any]) -> None:
    out = report["out"]
    assert (out / "eval.png").read_bytes()[:8] == PNG_MAGIC
    table = (out / "eval.md").read_text()
    assert table.startswith("| condition | invariant: UAR % |")
    assert all(f"| {c} |" in table for c in CONDITIONS)
    assert "24 clips (ased 10, ravdess 14), 4 speakers" in table
    assert "| clean clips | arousal: binary accuracy % |" in table


def test_degradations_are_deterministic_and_do_what_they_say(corpora: dict[str, Path]) -> None:
    from ser_live.train.corpora import Record

    record = Record(Path("x.wav"), "sad", "x:1", "x")
    rng = np.random.default_rng(0)
    y = (0.2 * np.sin(2 * np.pi * 200 * np.arange(16000) / 16000)).astype(np.float32) + np.float32(0.01) * (
        rng.standard_normal(16000).astype(np.float32))
    assert np.max(np.abs(degrade(y, 16000, "gain+20", clip_rng(0, record, "gain+20"), 0.5))) == pytest.approx(1.0)
    np.testing.assert_allclose(degrade(y, 16000, "gain-20", clip_rng(0, record, "gain-20"), 0.5), 0.1 * y, rtol=1e-5)
    shifted = degrade(y, 16000, "shift", clip_rng(0, record, "shift"), 0.5)
    lead = len(shifted) - len(y)
    assert 0 < lead < 8000 and not np.any(shifted[:lead])
    for condition in ("noise10", "reverb", "telephone", "shift"):
        a = degrade(y, 16000, condition, clip_rng(0, record, condition), 0.5)
        b = degrade(y, 16000, condition, clip_rng(0, record, condition), 0.5)
        np.testing.assert_array_equal(a, b)
    noisy = degrade(y, 16000, "noise10", clip_rng(0, record, "noise10"), 0.5)
    snr = 10 * np.log10(np.mean(y.astype(np.float64) ** 2) / np.mean((noisy - y).astype(np.float64) ** 2))
    assert snr == pytest.approx(10.0, abs=0.5)


def test_run_restricts_to_its_test_speakers(corpora: dict[str, Path], models: dict[str, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.json").write_text(json.dumps({"test_speakers": ["ravdess:02", "ased:07"]}))
    code, out, _ = run([str(models["plain"]), "--data", f"ravdess={corpora['ravdess']}", "--data",
                        f"ased={corpora['ased']}", "--run", str(run_dir), "--out", str(tmp_path / "e"), "-q",
                        "--conditions", "gain-10,session"], capsys)
    assert code == 0, out
    data = json.loads((tmp_path / "e" / "eval.json").read_text())
    assert data["clips"] == 12 and data["speakers"] == 2
    assert data["conditions"] == ["clean", "gain-10", "session"]
    assert "test speakers of" in data["speaker_selection"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--conditions", "gain+5"], "unknown condition(s) gain+5"),
        (["--speakers", "ravdess:99"], "no clip under --data belongs to the chosen speakers"),
        (["--run", "/nonexistent/run"], "/nonexistent/run not found: pass --run a ser-train run folder"),
    ],
)
def test_bad_input_is_one_line(corpora: dict[str, Path], models: dict[str, Path], tmp_path: Path,
                               capsys: pytest.CaptureFixture[str], extra: list[str], message: str) -> None:
    code, _, err = run([str(models["plain"]), "--data", f"ravdess={corpora['ravdess']}", "--out",
                        str(tmp_path / "e"), "-q", *extra], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("ser-eval: error: ") and message in err
    assert "Traceback" not in err
    assert not (tmp_path / "e").exists()  # a failed run leaves no empty --out behind


def test_missing_model_is_one_line(
    corpora: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run([str(tmp_path / "nope.onnx"), "--data", f"ravdess={corpora['ravdess']}", "-q",
                        "--out", str(tmp_path / "e")], capsys)
    assert code == 2 and "nope.onnx not found" in err and err.count("\n") == 1
