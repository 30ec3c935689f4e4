"""ser-recipe refuses a bad recipe or data folder in one line, and its recipes/v7.toml names what it needs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ser_live.train import recipe
from tests.audio_fixtures import espeak_wav

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_recipe_reads_and_names_every_stage_input() -> None:
    r = recipe.read_recipe(ROOT / "recipes" / "v7.toml")
    assert r["model"]["name"] == "default" and r["encoder"]["name"] in recipe_encoders()
    assert "baved" not in r["data"]["corpora"] and "non-commercial" in r["data"]["licence"]
    from ser_live.train.head import HeadConfig

    assert HeadConfig(**r["head"]).prior_windows == r["head"]["prior_windows"]


def recipe_encoders() -> set[str]:
    from ser_live.export.encoder_cli import ENCODERS

    return set(ENCODERS)


@pytest.mark.parametrize(("text", "message"), [
    ("[model]\nname = 'x'\n", "has no [encoder] section"),
    ("[model\n", "is not valid TOML"),
])
def test_bad_recipes_are_refused_in_one_line(tmp_path: Path, text: str, message: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "r.toml"
    path.write_text(text)
    assert recipe.main([str(path), "--out", str(tmp_path / "run"), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert recipe.main([str(tmp_path / "none.toml"), "--out", str(tmp_path / "run")]) == 2
    assert "not found" in capsys.readouterr().err


def test_a_missing_data_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = recipe.main([str(ROOT / "recipes" / "v7.toml"), "--out", str(tmp_path / "run"), "--data",
                        str(tmp_path / "nowhere")])
    assert code == 2 and "is not a folder" in capsys.readouterr().err and not (tmp_path / "run").exists()


def tiny_corpora(root: Path) -> None:
    """RAVDESS- and EmoDB-named clips of espeak-ng speech whose pitch and speed follow the label."""
    sound = {"angry": (70, 190), "happy": (80, 160), "neutral": (45, 140), "sad": (25, 110)}  # pitch, speed
    ravdess = {"neutral": "01", "happy": "03", "sad": "04", "angry": "05"}
    emodb = {"neutral": "N", "happy": "F", "sad": "T", "angry": "W"}
    texts = ("the bus leaves at nine tomorrow morning", "we talked about the garden for an hour")
    for actor in (1, 2):
        for label, (pitch, speed) in sound.items():
            for rep in (1, 2):
                folder = root / "ravdess" / f"Actor_{actor:02d}"
                folder.mkdir(parents=True, exist_ok=True)
                espeak_wav(folder / f"03-01-{ravdess[label]}-01-01-{rep:02d}-{actor:02d}.wav", texts[rep - 1],
                           pitch=pitch + 5 * actor, speed=speed)
                (root / "emodb").mkdir(parents=True, exist_ok=True)
                espeak_wav(root / "emodb" / f"{actor + 10:02d}a0{rep}{emodb[label]}a.wav", texts[2 - rep],
                           pitch=pitch - 5 * actor, speed=speed + 10)


@pytest.mark.slow
def test_a_recipe_runs_every_stage_resumes_and_gives_a_loadable_pair(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from ser_live.export import encoder_cli
    from ser_live.realtime.model import load_model
    from tests.test_frame_encoder import fake_source
    from tests.tiny_whisper import make_tiny_whisper

    whisper = make_tiny_whisper(tmp_path / "whisper")
    run = tmp_path / "run"
    monkeypatch.setitem(encoder_cli.ENCODERS, "whisper-tiny.en", fake_source(whisper, run / "wheels"))
    tiny_corpora(tmp_path / "data")
    text = (ROOT / "recipes" / "v7.toml").read_text()
    every = '["ravdess", "tess", "ased", "banglaser", "aesdd", "emodb", "savee", "jl", "emospeech"]'
    text = text.replace(f"corpora = {every}", 'corpora = ["ravdess", "emodb"]')
    text = text.replace("epochs = 25", "epochs = 2").replace("orders = 2", "orders = 1\neval_priors = [20.0]")
    assert 'corpora = ["ravdess", "emodb"]' in text
    (tmp_path / "r.toml").write_text(text)
    argv = [str(tmp_path / "r.toml"), "--out", str(run), "--data", str(tmp_path / "data")]
    assert recipe.main(argv) == 0
    out = capsys.readouterr().out
    assert all(f"{stage}: done in" in out for stage in recipe.STAGES)
    model = load_model(run / "model" / "default.onnx")
    assert model.encoder is not None and model.info.preset.kind == "encoder"
    assert set(model.info.metrics["loco"]["held_out"]) == {"ravdess", "emodb"}
    assert (run / "model" / "loco.md").read_text().count("|") > 10
    # deployment statistics measured on each held-out corpus; calibration from the folds' held-out windows
    assert {"deployment", "deployment_session"} <= set(model.info.metrics["loco"]["mean"])
    fitted = json.loads((run / "calibration.json").read_text())
    assert model.info.calibration.temperature == pytest.approx(fitted["calibration"]["temperature"])
    assert model.info.calibration.min_confidence == fitted["calibration"]["min_confidence"]
    assert set(fitted["per_corpus"]) == {"ravdess", "emodb"} and fitted["windows"] > 0
    assert isinstance(json.loads((run / "profiles.json").read_text()), dict)
    assert recipe.main(argv) == 0  # everything done: nothing runs again
    again = capsys.readouterr().out
    assert all(f"{stage}: done already" in again for stage in recipe.STAGES)
    assert recipe.main([*argv, "--redo", "export"]) == 0
    out = capsys.readouterr().out
    assert "export: done in" in out and "train: done already" in out


@pytest.mark.parametrize("name", ["v6", "seed180", "seed162"])
def test_the_cnn_recipes_are_options_ser_train_and_ser_calibrate_take(name: str, tmp_path: Path) -> None:
    """Every option a CNN recipe passes parses (a typo or a renamed option would fail here, not hours into a run)."""
    from ser_live.train import calibrate, cli

    r = recipe.read_recipe(ROOT / "recipes" / f"{name}.toml")
    assert r["model"]["kind"] == "cnn" and recipe.stages_of(r) == recipe.CNN_STAGES
    data = [a for c in r["data"]["corpora"] for a in ("--data", f"{c}={tmp_path / c}")]
    args = cli.build_parser().parse_args([*data, *r["train"]["args"], "--seed", "1", "--out", str(tmp_path)])
    assert args.recipe in {"logmel_cnn", "seed180", "seed162"}
    if "calibration" in r:
        calibrate.build_parser().parse_args(["m.onnx", "--run", "r", *data, "-o", "o.onnx",
                                             *r["calibration"]["args"]])


def test_a_cnn_recipe_trains_seeds_joins_and_calibrates_them(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from ser_live.realtime.model import load_model

    tiny_corpora(tmp_path / "data")
    text = (ROOT / "recipes" / "v6.toml").read_text()
    text = text.replace('corpora = ["ravdess", "tess", "ased"]', 'corpora = ["ravdess", "emodb"]')
    text = text.replace('"--epochs", "20"', '"--epochs", "1"').replace("seeds = [42, 43, 44]", "seeds = [1, 2]")
    text = text.replace('"--test-frac", "0.15", "--val-frac", "0.1"', '"--test-frac", "0.25", "--val-frac", "0.25"')
    (tmp_path / "r.toml").write_text(text)
    argv = [str(tmp_path / "r.toml"), "--out", str(tmp_path / "run"), "--data", str(tmp_path / "data")]
    assert recipe.main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert all(f"{stage}: done in" in out for stage in recipe.CNN_STAGES)
    model = load_model(tmp_path / "run" / "model" / "small.onnx")
    assert len(model.info.raw["ensemble"]["parts"]) == 2 and model.can_personalise
    assert (tmp_path / "run" / "calibration.json").exists()
    assert recipe.main([*argv, "--until", "loco"]) == 2
    assert "this recipe's stages are cnn-train" in capsys.readouterr().err
