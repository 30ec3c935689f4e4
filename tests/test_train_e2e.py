"""``ser-train`` end to end on a tiny generated RAVDESS tree, then ``ser-export`` and ``ser-live`` on the result.

4 actors x 7 emotions of synthetic voiced clips (pitch, level and rhythm differ per emotion, pitch per actor), plus
one correctly named file that is not audio. Two epochs: the point is that every output is produced and honest
(speaker-independent split, skipped file counted, cache reused, k-fold), not the accuracy.
"""

from __future__ import annotations

import json
import time
import zipfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.audio_fixtures import write_ravdess_tree
from tests.processes import children, wait_gone

pytestmark = pytest.mark.slow

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
OUTPUTS = ("model.keras", "config.json", "metrics.json", "confusion.png", "curves.png", "val_features.npy")
LABELS = ("angry", "disgust", "fearful", "happy", "neutral", "sad", "surprised")
ACTORS = 4
RUN_ARGS = ("--epochs", "2", "--augment", "seed", "--split", "speaker", "--recipe", "seed180", "-q")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("ravdess")
    good, bad = write_ravdess_tree(root, actors=ACTORS, unreadable=True)
    return {"root": root, "good": good, "bad": bad, "cache": tmp_path_factory.mktemp("cache")}


def train(corpus: dict[str, Any], out: Path, *extra: str) -> tuple[int, float, str]:
    """Run ``ser-train`` in-process; its exit code, wall time and printed report."""
    import contextlib
    import io

    from ser_live.train.cli import main

    buffer = io.StringIO()
    t0 = time.monotonic()
    with contextlib.redirect_stdout(buffer):
        code = main(["--data", f"ravdess={corpus['root']}", "--cache", str(corpus["cache"]), "--out", str(out),
                     *RUN_ARGS, *extra])
    return code, time.monotonic() - t0, buffer.getvalue()


@pytest.fixture(scope="module")
def first(corpus: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("run1")
    code, seconds, printed = train(corpus, out)
    assert code == 0, printed
    return {"out": out, "seconds": seconds, "printed": printed}


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def test_a_run_writes_every_output(first: dict[str, Any]) -> None:
    out: Path = first["out"]
    for name in OUTPUTS:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert zipfile.is_zipfile(out / "model.keras"), "Keras 3 native format (a zip), not HDF5"
    for png in ("confusion.png", "curves.png"):
        assert (out / png).read_bytes()[:8] == PNG_MAGIC
    assert not (out / "checkpoint.keras").exists()
    config = load(out / "config.json")
    assert config["labels"] == list(LABELS)
    assert config["preset"]["name"] == "seed180" and config["sample_rate"] == 16000
    assert config["window_s"] > 0 and config["hop_s"] > 0 and config["feature_shape"] == [180]
    assert len(config["normalization"]["mean"]) == len(config["normalization"]["std"]) == 180
    assert all(s > 0 for s in config["normalization"]["std"])
    assert config["recipe"] == "seed180" and config["split"] == "speaker"
    val = np.load(out / "val_features.npy", allow_pickle=False)
    assert val.dtype == np.float32 and val.shape[1:] == (180,) and len(val) > 0
    assert "precision" in first["printed"] and "recall" in first["printed"]  # the classification report


def test_metrics_are_complete(first: dict[str, Any], corpus: dict[str, Any]) -> None:
    m = load(first["out"] / "metrics.json")
    assert m["split"] == "speaker"
    for level in ("headline", "clip", "window"):
        for key in ("accuracy", "uar", "macro_f1"):
            assert 0.0 <= m[level][key] <= 1.0
    clip = m["clip"]
    assert set(clip["per_class"]) == set(LABELS)
    for scores in clip["per_class"].values():
        assert {"precision", "recall", "f1"} <= set(scores)
    matrix = np.array(clip["confusion_matrix"]["matrix"])
    assert matrix.shape == (len(LABELS), len(LABELS))
    assert matrix.sum() == clip["n"] == len(LABELS)  # one held-out actor: one clip per emotion
    assert clip["accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum())
    counts = m["counts"]
    for part in ("train", "val", "test"):
        assert set(counts[part]) >= {"clips", "corpus", "label", "speaker"}
        assert set(counts[part]["corpus"]) == {"ravdess"}
    # clips actually used: the unreadable file is not counted in any part
    assert sum(counts[p]["clips"] for p in ("train", "val", "test")) == len(corpus["good"])
    assert m["test_clips_without_speech_window"] == 0
    assert counts["windows"]["train"] > counts["train"]["clips"], "augmented copies add training windows"
    # the unreadable file is skipped and counted, not a crash
    assert [Path(s["path"]).name for s in m["skipped_files"]] == [corpus["bad"].name]
    assert m["extraction"]["unreadable"][0]["path"] == m["skipped_files"][0]["path"]
    assert m["epochs_run"] == 2


def test_no_test_speaker_is_in_training(first: dict[str, Any]) -> None:
    counts = load(first["out"] / "metrics.json")["counts"]
    train_spk, val_spk, test_spk = (set(counts[p]["speaker"]) for p in ("train", "val", "test"))
    assert test_spk and val_spk and train_spk
    assert not train_spk & test_spk and not train_spk & val_spk and not val_spk & test_spk
    assert len(train_spk | val_spk | test_spk) == ACTORS
    assert sorted(test_spk) == load(first["out"] / "metrics.json")["test_speakers"]


def test_a_second_run_reads_the_feature_cache(first: dict[str, Any], corpus: dict[str, Any], tmp_path: Path) -> None:
    code, _, printed = train(corpus, tmp_path / "run2")
    assert code == 0, printed
    before, after = load(first["out"] / "metrics.json"), load(tmp_path / "run2" / "metrics.json")
    assert before["extraction"]["from_cache"] == 0
    # every readable clip variant comes from the cache now (the unreadable file is retried and skipped again)
    assert after["extraction"]["from_cache"] > 0
    assert after["extraction"]["from_cache"] >= len(corpus["good"])
    assert after["counts"]["windows"] == before["counts"]["windows"]


def test_speaker_folds(first: dict[str, Any], corpus: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "cv"
    code, _, printed = train(corpus, out, "--folds", "2", "--augment", "none")  # cached features only: quick
    assert code == 0, printed
    cv = load(out / "cv_metrics.json")
    assert cv["folds"] == 2 and len(cv["per_fold"]) == 2
    assert cv["per_corpus"]["ravdess"]["folds"] == 2
    assert cv["per_corpus"]["ravdess"]["uar_mean"] == pytest.approx(cv["uar_mean"])
    for key in ("accuracy_mean", "accuracy_std", "uar_mean", "uar_std"):
        assert 0.0 <= cv[key] <= 1.0
    test_speakers = []
    for k in (1, 2):
        fold = out / f"fold{k}"
        for name in OUTPUTS:
            assert (fold / name).is_file(), f"fold{k}/{name}"
        m = load(fold / "metrics.json")
        assert m["split"] == f"speaker-fold{k}of2"
        assert not set(m["counts"]["train"]["speaker"]) & set(m["counts"]["test"]["speaker"])
        test_speakers.append(set(m["test_speakers"]))
    assert not test_speakers[0] & test_speakers[1]
    assert len(test_speakers[0] | test_speakers[1]) == ACTORS  # each actor is tested exactly once

    # a run killed in fold 2: --resume keeps fold 1 as it is and trains fold 2 alone
    (out / "fold2" / "metrics.json").unlink()
    kept = (out / "fold1" / "model.keras").stat().st_mtime_ns
    code, _, printed = train(corpus, out, "--folds", "2", "--augment", "none", "--resume")
    assert code == 0, printed
    assert (out / "fold1" / "model.keras").stat().st_mtime_ns == kept and (out / "fold2" / "metrics.json").is_file()
    again = load(out / "cv_metrics.json")
    assert again["folds"] == 2 and again["per_fold"][0] == cv["per_fold"][0]
    # another seed's folds are not this run's: one line, nothing trained
    code, _, _ = train(corpus, out, "--folds", "2", "--augment", "none", "--resume", "--seed", "7")
    assert code == 2 and (out / "fold1" / "model.keras").stat().st_mtime_ns == kept
    code, _, _ = train(corpus, tmp_path / "one", "--resume")  # without --folds
    assert code == 2


def test_help_documents_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    from ser_live.train.cli import build_parser, main
    from tests.test_cli_live import option_entries

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    entries = option_entries(capsys.readouterr().out)
    for action in build_parser()._actions:
        for option in action.option_strings:
            assert option in entries, f"{option} missing from ser-train --help"
        if not action.option_strings or action.nargs == 0 or action.required or action.dest == "help":
            continue
        entry = entries[action.option_strings[-1]]
        assert "(default:" in entry and "(default: None)" not in entry, entry


def test_help_defaults_match_the_training_defaults() -> None:
    from ser_live.train.cli import HYPER_HELP_DEFAULTS
    from ser_live.train.models import TrainHyperParams

    actual = asdict(TrainHyperParams())
    assert {k: actual[k] for k in HYPER_HELP_DEFAULTS} == HYPER_HELP_DEFAULTS


def test_adversary_defaults_in_the_cli_are_the_models_own() -> None:
    from ser_live.train import cli, models

    assert cli.ADVERSARY_BY == models.ADVERSARY_BY
    assert cli.DEFAULT_ADVERSARY_SCALE == models.DEFAULT_ADVERSARY_SCALE


def test_export_and_replay_close_the_loop(first: dict[str, Any], corpus: dict[str, Any], tmp_path: Path) -> None:
    """The trained run exported to ONNX runs in ser-live, and the live path gives the Keras model's answer."""
    import keras

    from ser_live.export.onnx_export import export_model
    from ser_live.realtime.api import EmotionRecognizer
    from ser_live.realtime.faces.cli import main as live_main
    from ser_live.realtime.stages.features import PRESETS
    from ser_live.realtime.stages.pipeline import PipelineConfig
    from ser_live.train.corpora import Record
    from ser_live.train.dataset import FeatureBuilder, Standardizer
    from ser_live.train.models import model_input_shape

    onnx_path = tmp_path / "model.onnx"
    report = export_model(first["out"], onnx_path)
    assert report.parity.passed and onnx_path.is_file()
    assert report.labels == LABELS

    clip = corpus["good"][0]
    events = tmp_path / "events.jsonl"
    code = live_main(["--file", str(clip), "--fast", "--no-dashboard", "--model", str(onnx_path), "--jsonl",
                      str(events)])
    assert code == 0
    rows = [json.loads(line) for line in events.read_text().splitlines()]
    assert rows[-1]["type"] == "summary" and rows[-1]["windows"] == len(rows) - 1 > 0
    assert all(set(r["probs"]) == set(LABELS) for r in rows[:-1])

    # live (ONNX, streaming engine) == training path (FeatureBuilder) + Keras, on the same clip
    config = load(first["out"] / "config.json")
    pipeline = PipelineConfig(preset=PRESETS[config["preset"]["name"]], window_s=config["window_s"],
                              hop_s=config["hop_s"], min_speech_s=config["min_speech_s"])
    [examples] = FeatureBuilder(pipeline).clip(Record(clip, "neutral", "ravdess:01", "ravdess"))
    norm = Standardizer.from_dict(config["normalization"])
    x = norm.apply(examples.features)
    x = x.reshape((len(x), *model_input_shape(tuple(config["feature_shape"]))))
    keras_probs = keras.saving.load_model(first["out"] / "model.keras").predict(x, verbose=0)
    live = EmotionRecognizer(onnx_path, provider="cpu").predict_file(clip)
    assert len(live.windows) == len(examples.features)
    np.testing.assert_allclose([live.probs[label] for label in LABELS], keras_probs.mean(axis=0), atol=1e-3)


# ------------------------------------------------------------------------- input normalisation, corpus split
LOGMEL_ARGS = ("--epochs", "1", "--augment", "none", "--recipe", "logmel_cnn", "-q")


def test_session_normalised_run_exports_its_stage_and_live_equals_training(
    corpus: dict[str, Any], tmp_path: Path
) -> None:
    """A logmel run with --input-norm session: the prior travels in config.json and the ONNX metadata, and the
    live engine on a clip gives what Keras gives on the training path's normalised windows of that clip."""
    import contextlib
    import io

    import keras

    from ser_live.export.onnx_export import export_model
    from ser_live.realtime.api import EmotionRecognizer
    from ser_live.realtime.model import load_model
    from ser_live.realtime.stages.normalize import InputNormConfig
    from ser_live.realtime.stages.pipeline import PipelineConfig
    from ser_live.train.cli import main
    from ser_live.train.corpora import Record
    from ser_live.train.dataset import FeatureBuilder, Standardizer, normalize_clips
    from ser_live.train.models import model_input_shape

    out = tmp_path / "run"
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["--data", f"ravdess={corpus['root']}", "--cache", str(corpus["cache"]), "--out", str(out),
                     "--input-norm", "session", "--session-tau", "20", *LOGMEL_ARGS])
    assert code == 0
    config = load(out / "config.json")
    norm_config = InputNormConfig.from_dict(config["input_normalization"])
    assert norm_config.mode == "session" and norm_config.time_constant_s == 20 and len(norm_config.prior) == 64
    assert load(out / "metrics.json")["input_normalization"] == "session"
    onnx_path = tmp_path / "model.onnx"
    assert export_model(out, onnx_path).parity.passed
    assert load_model(onnx_path).info.input_norm == norm_config
    # export/fold.py ran (the parity check above covers it): each convolution feeds its ReLU directly
    import onnx

    graph = onnx.load(str(onnx_path)).graph
    convs = [n.output[0] for n in graph.node if n.op_type == "Conv"]
    readers = {name: [n.op_type for n in graph.node if name in n.input] for name in convs}
    assert len(convs) == 4 and all(ops == ["Relu"] for ops in readers.values()), readers

    clip = corpus["good"][3]
    pipeline = PipelineConfig(preset=load_model(onnx_path).info.preset, window_s=config["window_s"],
                              hop_s=config["hop_s"], min_speech_s=config["min_speech_s"])
    examples = FeatureBuilder(pipeline).clip(Record(clip, "sad", "ravdess:01", "ravdess"))
    [session] = normalize_clips(examples, norm_config, pipeline.hop_samples / pipeline.sample_rate, seed=0)
    x = Standardizer.from_dict(config["normalization"]).apply(session.features)
    x = x.reshape((len(x), *model_input_shape(tuple(config["feature_shape"]))))
    keras_probs = keras.saving.load_model(out / "model.keras").predict(x, verbose=0)
    live = EmotionRecognizer(onnx_path, provider="cpu").predict_file(clip)
    assert len(live.windows) == len(session.features) > 0
    np.testing.assert_allclose([live.probs[label] for label in LABELS], keras_probs.mean(axis=0), atol=1e-3)


@pytest.fixture(scope="module")
def two_corpora(corpus: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests.audio_fixtures import write_ased_tree

    ased = tmp_path_factory.mktemp("ased")
    write_ased_tree(ased, speakers=(3, 7, 12))
    return {"ravdess": corpus["root"], "ased": ased, "cache": corpus["cache"]}


@pytest.mark.parametrize("held_out", ["ased", "ravdess"])
def test_corpus_split_tests_on_every_clip_of_the_held_out_corpus(
    two_corpora: dict[str, Path], tmp_path: Path, held_out: str
) -> None:
    import contextlib
    import io

    from ser_live.train.cli import main

    out = tmp_path / held_out
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["--data", f"ravdess={two_corpora['ravdess']}", "--data", f"ased={two_corpora['ased']}",
                     "--cache", str(two_corpora["cache"]), "--out", str(out), "--split", "corpus",
                     "--test-corpus", held_out, *LOGMEL_ARGS])
    assert code == 0
    metrics = load(out / "metrics.json")
    assert metrics["split"] == f"corpus-{held_out}"
    counts = metrics["counts"]
    assert set(counts["test"]["corpus"]) == {held_out}
    assert held_out not in counts["train"]["corpus"] and held_out not in counts["val"]["corpus"]
    assert all(s.startswith(f"{held_out}:") for s in metrics["test_speakers"])
    expected_clips = 15 if held_out == "ased" else ACTORS * len(LABELS)  # the unreadable RAVDESS file is skipped
    assert counts["test"]["clips"] == expected_clips
    [(name, fig)] = metrics["per_corpus"].items()  # one corpus tested: its figures are the headline's
    assert name == held_out and fig["n"] == expected_clips
    assert fig["uar"] == pytest.approx(metrics["clip"]["uar"]) and 0 < fig["top_label_share"] <= 1
    model_labels = load(out / "config.json")["labels"]
    if held_out == "ravdess":  # trained on ASED alone: RAVDESS's disgust and surprised are reported, not dropped
        assert model_labels == ["angry", "fearful", "happy", "neutral", "sad"]
        missing = metrics["clip"]["labels_not_in_training"]
        assert missing["labels"] == ["disgust", "surprised"] and missing["clips"] == 2 * ACTORS
        assert sum(missing["predicted_as"].values()) == 2 * ACTORS
        assert metrics["clip"]["per_class"]["surprised"]["recall"] == 0.0
    else:
        assert model_labels == list(LABELS) and "labels_not_in_training" not in metrics["clip"]


def test_corpus_split_errors_are_one_line(two_corpora: dict[str, Path], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from ser_live.train.cli import main

    base = ["--data", f"ravdess={two_corpora['ravdess']}", "--out", str(tmp_path / "x"), "--cache", "", "-q"]
    assert main([*base, "--split", "corpus"]) == 2
    assert "--split corpus needs --test-corpus NAME" in capsys.readouterr().err
    assert main([*base, "--split", "corpus", "--test-corpus", "tess"]) == 2
    assert "--test-corpus tess is not among the loaded corpora (ravdess)" in capsys.readouterr().err
    assert main([*base, "--split", "corpus", "--test-corpus", "ravdess"]) == 2
    assert "needs another corpus to train on besides ravdess" in capsys.readouterr().err
    assert main([*base, "--test-corpus", "ravdess"]) == 2
    assert "--test-corpus needs --split corpus" in capsys.readouterr().err


def test_affect_head_run_exports_two_outputs_and_live_equals_keras(corpus: dict[str, Any], tmp_path: Path) -> None:
    """--affect-weight trains an arousal/valence output with the classes; ser-export keeps it (parity-checked), the
    model's metadata names it, and the live engine's window values are the Keras head's on the same windows."""
    import contextlib
    import io

    import keras

    from ser_live.export.onnx_export import export_model
    from ser_live.realtime.api import EmotionRecognizer
    from ser_live.realtime.model import load_model
    from ser_live.realtime.stages.pipeline import PipelineConfig
    from ser_live.train.cli import main
    from ser_live.train.corpora import Record
    from ser_live.train.dataset import FeatureBuilder, Standardizer
    from ser_live.train.models import model_input_shape

    out = tmp_path / "run"
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["--data", f"ravdess={corpus['root']}", "--cache", str(corpus["cache"]), "--out", str(out),
                     "--input-norm", "none", "--affect-weight", "0.5", *LOGMEL_ARGS])
    assert code == 0
    config, metrics = load(out / "config.json"), load(out / "metrics.json")
    assert config["affect_head"]["weight"] == 0.5 and "NRC VAD" in config["affect_head"]["targets"]
    for way in ("lexicon", "head"):
        assert 0.0 <= metrics["affect"][way]["arousal"]["binary_accuracy"] <= 1.0
    onnx_path = tmp_path / "model.onnx"
    report = export_model(out, onnx_path, quantize="int8")
    assert report.parity.passed and report.quantized is not None
    model = load_model(onnx_path)
    assert model.has_head and model.info.raw["affect"]["loss_weight"] == 0.5
    assert load_model(report.quantized.path).has_head

    clip = corpus["good"][5]
    pipeline = PipelineConfig(preset=model.info.preset, window_s=config["window_s"], hop_s=config["hop_s"],
                              min_speech_s=config["min_speech_s"])
    [examples] = FeatureBuilder(pipeline).clip(Record(clip, "happy", "ravdess:01", "ravdess"))
    x = Standardizer.from_dict(config["normalization"]).apply(examples.features)
    x = x.reshape((len(x), *model_input_shape(tuple(config["feature_shape"]))))
    keras_out = keras.saving.load_model(out / "model.keras").predict(x, verbose=0)
    live = EmotionRecognizer(onnx_path, provider="cpu").predict_file(clip)
    assert len(live.windows) == len(x) > 0
    np.testing.assert_allclose([[w.raw_arousal, w.raw_valence] for w in live.windows], keras_out["affect"], atol=1e-3)
    np.testing.assert_allclose([live.arousal, live.valence], keras_out["affect"].mean(axis=0), atol=1e-3)
    np.testing.assert_allclose([live.probs[label] for label in LABELS], keras_out["probs"].mean(axis=0), atol=1e-3)


def test_a_speaker_adversarial_run_trains_records_it_and_exports_the_plain_model(corpus: dict[str, Any],
                                                                                 tmp_path: Path) -> None:
    """--adversary speaker: training batches carry each window's speaker, validation ones carry none (weight 0);
    the saved model and its export have the class output only; config and metrics say what was applied."""
    import contextlib
    import io

    import keras

    from ser_live.export.onnx_export import export_model
    from ser_live.train.cli import Batches, main

    out = tmp_path / "run"
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["--data", f"ravdess={corpus['root']}", "--cache", str(corpus["cache"]), "--out", str(out),
                     "--split", "speaker", "--adversary", "speaker", "--adversary-scale", "0.5", "--adversary-ramp",
                     *LOGMEL_ARGS])
    assert code == 0
    config, metrics = load(out / "config.json"), load(out / "metrics.json")
    assert config["adversary"]["by"] == "speaker" and config["adversary"]["scale"] == 0.5
    assert config["adversary"]["ramp"] is True
    # one domain per training speaker: none of the validation or test speakers
    assert config["adversary"]["domains"] == sorted(metrics["counts"]["train"]["speaker"])
    assert len(config["adversary"]["domains"]) >= 2
    assert not set(config["adversary"]["domains"]) & set(metrics["test_speakers"])
    figures = metrics["adversary"]
    assert figures["domains"] == len(config["adversary"]["domains"])
    assert len(figures["train_domain_accuracy_by_epoch"]) == 1
    assert figures["scale_by_epoch"] == [0.0]  # the ramp starts at 0
    saved = keras.saving.load_model(out / "model.keras")
    assert len(saved.outputs) == 1 and "gradient_reversal" not in [layer.name for layer in saved.layers]
    assert export_model(out, tmp_path / "m.onnx").parity.passed

    x = np.ones((6, 4), np.float32)
    y = np.array([0, 1, 2, 0, 1, 2])
    speaker = np.array([1, 1, 0, 0, 2, 2])
    w = np.full(6, 2.0, np.float32)
    _, targets, weights = Batches(x, y, w, 3, 6, lambda a: a, seed=1, domains=(speaker, 3))[0]
    np.testing.assert_array_equal(targets["domain"].argmax(axis=1), speaker)
    np.testing.assert_array_equal(weights["domain"], w)
    _, targets, weights = Batches(x, y, None, 3, 6, lambda a: a, seed=1, shuffle=False, domains=(None, 3))[0]
    assert not weights["domain"].any() and weights["probs"].all()


def test_adversary_and_affect_head_are_refused_together(corpus: dict[str, Any], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from ser_live.train.cli import main

    code = main(["--data", f"ravdess={corpus['root']}", "--out", str(tmp_path / "x"), "--adversary", "corpus",
                 "--affect-weight", "0.5", "-q"])
    err = capsys.readouterr().err
    assert code != 0 and "--adversary and --affect-weight cannot be combined" in err and "Traceback" not in err
    assert main(["--data", f"ravdess={corpus['root']}", "--out", str(tmp_path / "x"), "--adversary-ramp", "-q"]) != 0
    assert "--adversary-ramp schedules the adversarial branch: add --adversary" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_corpus_adversary_on_one_corpus_is_refused_before_extraction(corpus: dict[str, Any], tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from ser_live.train.cli import main

    code = main(["--data", f"ravdess={corpus['root']}", "--out", str(tmp_path / "x"), "--cache", "",
                 "--adversary", "corpus", "--split", "speaker", *LOGMEL_ARGS])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert "--adversary corpus needs at least two corpora in the training split, it has ravdess" in err
    assert not (tmp_path / "x" / "model.keras").exists()


def test_affect_weight_must_not_be_negative(corpus: dict[str, Any], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from ser_live.train.cli import main

    code = main(["--data", f"ravdess={corpus['root']}", "--out", str(tmp_path / "x"), "--affect-weight", "-1", "-q"])
    err = capsys.readouterr().err
    assert code != 0 and "--affect-weight must be a finite number >= 0" in err and "Traceback" not in err


def test_specaugment_and_mixup_train_and_are_recorded(corpus: dict[str, Any], tmp_path: Path) -> None:
    """A log-mel run with --specaugment --mixup: it trains, config.json says what was applied, and the training
    batches (not the validation ones) come out masked and mixed."""
    import contextlib
    import io

    from ser_live.train.batch_augment import MASK_VALUE, SPEC_AUGMENT
    from ser_live.train.cli import Batches, main

    out = tmp_path / "run"
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["--data", f"ravdess={corpus['root']}", "--cache", str(corpus["cache"]), "--out", str(out),
                     "--specaugment", "--mixup", "0.2", *LOGMEL_ARGS])
    assert code == 0
    cfg = replace(SPEC_AUGMENT, mixup_alpha=0.2)
    assert load(out / "config.json")["batch_augment"] == asdict(cfg)

    rng = np.random.default_rng(0)
    x = (rng.random((40, 197, 64)) + 1.0).astype(np.float32)
    y = np.arange(40) % 7
    w = np.ones(40, np.float32)

    def prep(a: np.ndarray) -> np.ndarray:
        return a.reshape((len(a), 197, 64, 1))

    xb, yb, _ = Batches(x, y, w, 7, 40, prep, seed=1, augment=cfg)[0]
    assert (xb == MASK_VALUE).any()
    assert np.all(yb.max(axis=1) >= 0.5 - 1e-6) and (yb.max(axis=1) < 1).any(), "targets are mixed"
    np.testing.assert_allclose(yb.sum(axis=1), 1.0, atol=1e-6)
    xv, yv = Batches(x, y, None, 7, 40, prep, seed=1, shuffle=False)[0]
    assert np.array_equal(xv, prep(x)) and np.array_equal(yv.argmax(axis=1), y) and yv.max() == 1


def test_specaugment_needs_a_frame_recipe(corpus: dict[str, Any], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from ser_live.train.cli import main

    code = main(["--data", f"ravdess={corpus['root']}", "--out", str(tmp_path / "x"), "--recipe", "seed180",
                 "--specaugment", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "--specaugment masks bands and frames" in err and "Traceback" not in err
    code = main(["--data", f"ravdess={corpus['root']}", "--out", str(tmp_path / "y"), "--mixup", "-1", "-q"])
    err = capsys.readouterr().err
    assert code != 0 and "--mixup" in err and "Traceback" not in err


def test_a_time_budget_ends_training_cleanly(corpus: dict[str, Any], tmp_path: Path) -> None:
    """--time-budget shorter than one epoch: one epoch runs, then the run is evaluated and written as usual."""
    import contextlib
    import io

    from ser_live.train.cli import main

    out = tmp_path / "run"
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["--data", f"ravdess={corpus['root']}", "--cache", str(corpus["cache"]), "--out", str(out),
                     *LOGMEL_ARGS, "--epochs", "5", "--time-budget", "0.0001"])
    assert code == 0
    m = load(out / "metrics.json")
    assert m["epochs_run"] == 1 and m["stopped_early"] == {"reason": "time budget", "after_epoch": 1}
    for name in OUTPUTS:
        assert (out / name).is_file(), name


def test_ctrl_c_once_stops_after_the_epoch_twice_aborts() -> None:
    import os
    import signal

    import keras

    from ser_live.train.cli import STOP_INTERRUPT, StopControl

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    before = signal.getsignal(signal.SIGINT)
    stop = StopControl(None)
    stop.set_model(model)
    stop.on_train_begin()
    stop.on_epoch_end(0)
    assert stop.reason is None and not getattr(model, "stop_training", False)
    os.kill(os.getpid(), signal.SIGINT)
    assert stop.reason == STOP_INTERRUPT
    stop.on_epoch_end(1)
    assert model.stop_training
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before, "the handler is removed on abort"
    stop.on_train_end()
    assert signal.getsignal(signal.SIGINT) is before


def test_ctrl_c_during_a_fold_skips_the_folds_left(corpus: dict[str, Any], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import contextlib
    import io

    import ser_live.train.cli as cli

    calls = []

    def fake_fold(args: Any, fold: int, out: Path) -> dict:
        calls.append(out.name)
        return {"headline": {"accuracy": 0.5, "uar": 0.4}, "test_speakers": ["ravdess:01"], "per_corpus": {},
                "stopped_early": {"reason": cli.STOP_INTERRUPT, "after_epoch": 1}}

    monkeypatch.setattr(cli, "_fold_in_child", fake_fold)
    with contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(["--data", f"ravdess={corpus['root']}", "--cache", str(corpus["cache"]), "--out",
                         str(tmp_path / "cv"), "--folds", "2", *LOGMEL_ARGS])
    assert code == 0 and calls == ["fold1"]
    summary = load(tmp_path / "cv" / "cv_metrics.json")
    assert summary["folds"] == 1 and summary["folds_planned"] == 2


def test_epochs_are_logged_line_by_line_when_the_output_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """In a log file rich's bar appears only when training ends; each epoch then gets a line as it finishes."""
    import io

    from rich.console import Console

    import ser_live.train.cli as cli

    buf = io.StringIO()
    real = cli.progress_bar

    def bar(quiet: bool) -> Any:
        progress = real(quiet)
        progress.live.console = Console(file=buf, force_terminal=False, width=120)
        return progress

    monkeypatch.setattr(cli, "progress_bar", bar)
    epochs = cli._RichEpochs(3, False)
    epochs.on_train_begin()
    epochs.on_epoch_end(0, {"loss": 1.25, "val_loss": 1.5, "lr": 0.001})
    epochs.on_epoch_end(1, {"loss": 1.0, "val_loss": 1.25})
    lines = [line for line in buf.getvalue().splitlines() if line.startswith("epoch ")]
    assert len(lines) == 2
    assert lines[0].startswith("epoch 1/3 ") and "loss=1.250 val_loss=1.500" in lines[0] and "lr" not in lines[0]
    assert lines[1].startswith("epoch 2/3 ") and "val_loss=1.250" in lines[1]
    epochs.on_train_end()
    quiet = cli._RichEpochs(3, True)
    quiet.on_train_begin()
    quiet.on_epoch_end(0, {"loss": 1.0})
    quiet.on_train_end()
    assert len([line for line in buf.getvalue().splitlines() if line.startswith("epoch ")]) == 2


def _folds_command(corpus: dict[str, Any], out: Path) -> list[str]:
    """A --folds run long enough to be caught in fold 1's training (many epochs, no early stop)."""
    import sys

    return [sys.executable, "-m", "ser_live.train.cli", "--data", f"ravdess={corpus['root']}",
            "--cache", str(corpus["cache"]),
            "--out", str(out), "--folds", "2", "--epochs", "5000", "--patience", "5000", "--augment", "none",
            "--recipe", "seed180", "-q"]


def _wait_for(path: Path, process: Any, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert process.poll() is None, f"ser-train ended before {path.name} appeared"
        assert time.monotonic() < deadline, f"no {path} after {timeout_s:.0f} s"
        time.sleep(0.1)


def test_each_fold_runs_in_a_process_of_its_own_and_ctrl_c_stops_the_run_after_that_fold(
        corpus: dict[str, Any], tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to ser-train) is passed on to the fold's process once: the fold stops after its epoch, is
    evaluated and written, the fold left is skipped and cv_metrics.json covers fold 1 -- as in one process."""
    import signal
    import subprocess

    out = tmp_path / "cv"
    run = subprocess.Popen(_folds_command(corpus, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(out / "fold1" / "checkpoint.keras", run)  # fold 1 is training
        (child,) = children(run.pid)
        assert child != run.pid
        run.send_signal(signal.SIGINT)
        stdout, stderr = run.communicate(timeout=120)
    finally:
        run.kill()
    assert run.returncode == 0, stderr
    assert "stopping after this epoch" in stderr
    fold1 = load(out / "fold1" / "metrics.json")
    assert fold1["stopped_early"]["reason"] == "Ctrl-C" and fold1["epochs_run"] < 5000
    assert not (out / "fold2").exists()
    summary = load(out / "cv_metrics.json")
    assert summary["folds"] == 1 and summary["folds_planned"] == 2
    assert "1-fold speaker CV (of 2 planned)" in stdout
    assert not wait_gone([child])


def test_a_fold_process_leaves_when_its_run_is_killed(corpus: dict[str, Any], tmp_path: Path) -> None:
    import signal
    import subprocess

    out = tmp_path / "cv"
    run = subprocess.Popen(_folds_command(corpus, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(out / "fold1" / "checkpoint.keras", run)
        (child,) = children(run.pid)
        run.send_signal(signal.SIGKILL)  # nothing can be passed on: the fold process must notice by itself
        run.wait(timeout=30)
        assert not wait_gone([child]), "the fold process outlived its run"
    finally:
        run.kill()


def test_fold_k_alone_then_resume_assembles_the_run(first: dict[str, Any], corpus: dict[str, Any],
                                                  tmp_path: Path) -> None:
    """--fold K trains one fold (e.g. on another machine); --resume then keeps it and writes cv_metrics.json."""
    out = tmp_path / "cv"
    code, _, printed = train(corpus, out, "--folds", "2", "--augment", "none", "--fold", "2")
    assert code == 0, printed
    assert (out / "fold2" / "metrics.json").is_file() and not (out / "fold1").exists()
    assert not (out / "cv_metrics.json").exists()
    kept = (out / "fold2" / "model.keras").stat().st_mtime_ns
    code, _, printed = train(corpus, out, "--folds", "2", "--augment", "none", "--resume")
    assert code == 0, printed
    assert (out / "fold2" / "model.keras").stat().st_mtime_ns == kept
    assert load(out / "cv_metrics.json")["folds"] == 2
    for bad in (["--fold", "3", "--folds", "2"], ["--fold", "1"]):
        code, _, _ = train(corpus, tmp_path / "bad", *bad)
        assert code == 2
