"""Deployment statistics: measured over recordings as the engine cuts and pools their windows, written by ser-stats
to a new file, read with one flag (ser-live, ser-batch, the API) as the session normaliser's prior; bound to their
model; ser-batch --deployment auto measures them in a first pass and reuses them when resuming."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser_live.realtime.api import EmotionRecognizer
from ser_live.realtime.deployment import (
    MIN_WINDOWS,
    DeploymentStats,
    StatsAccumulator,
    file_embeddings,
    load_deployment,
    measure,
)
from ser_live.realtime.errors import UserError
from ser_live.realtime.model import load_model
from tests.audio_fixtures import SpeechClip, speech_clip
from tests.tiny_whisper import DIM, make_tiny_pair

FILES = 8  # ~8 speech windows each: above MIN_WINDOWS together


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_pair(tmp_path_factory.mktemp("pair"))


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> SpeechClip:
    return speech_clip(tmp_path_factory.mktemp("speech"), lead_s=0.5, tail_s=0.5)


@pytest.fixture(scope="module")
def recordings(clip: SpeechClip, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FILES recordings: the clip at different levels and lengths (a deployment of one voice, for the test)."""
    folder = tmp_path_factory.mktemp("calls")
    for i in range(FILES):
        samples = clip.samples[: len(clip.samples) - i * 800] * (0.3 + 0.1 * i)
        sf.write(folder / f"call{i}.wav", samples, clip.sample_rate)
    return folder


@pytest.fixture(scope="module")
def stats(pair: Path, recordings: Path) -> DeploymentStats:
    return measure(load_model(pair), sorted(recordings.glob("*.wav")))


def test_the_statistics_are_those_of_the_windows_the_engine_pools(pair: Path, recordings: Path,
                                                                  stats: DeploymentStats) -> None:
    model = load_model(pair)
    rows = np.concatenate([file_embeddings(model, p)[0] for p in sorted(recordings.glob("*.wav"))])
    assert stats.windows == len(rows) >= MIN_WINDOWS and stats.files == FILES
    assert np.allclose(stats.mean, rows.astype(np.float64).mean(axis=0), atol=1e-5)
    assert np.allclose(stats.std, rows.astype(np.float64).std(axis=0), atol=1e-5)
    assert len(stats.mean) == 2 * DIM and stats.model_sha256 == model.sha256 and stats.speech_s > 0
    # the raw embeddings are what the engine normalises: its first window is the first row through the prior
    from ser_live.realtime.stages.encoder import SessionNormalizer

    first = SessionNormalizer(model.session_norm).process(rows[0])
    engine_first = model.predict(first[None])[0]
    samples, rate = sf.read(sorted(recordings.glob("*.wav"))[0], dtype="float32")
    got = next(iter(EmotionRecognizer(model).engine(rate).iter_batched([samples])))
    assert max(abs(got.raw_probs[lab] - float(engine_first[i])) for i, lab in enumerate(model.labels)) < 1e-3


def test_the_accumulator_matches_numpy_and_refuses_too_little_speech(pair: Path) -> None:
    model = load_model(pair)
    rng = np.random.default_rng(0)
    parts = [rng.normal(3, 2, (n, 4)) for n in (10, 0, 45)]
    acc = StatsAccumulator()
    for p in parts:
        acc.add(p)
    allrows = np.concatenate(parts)
    assert acc.n == 55 and acc.files == 3
    # the result needs the model only for its name and sha256
    out = acc.result(model)
    assert np.allclose(out.mean, allrows.mean(axis=0)) and np.allclose(out.std, allrows.std(axis=0), atol=1e-5)
    few = StatsAccumulator()
    few.add(parts[0])
    with pytest.raises(UserError, match=f"at least {MIN_WINDOWS} speech windows.*hold 10: give more recordings"):
        few.result(model)


def test_statistics_equal_to_the_prior_change_nothing_and_others_do(pair: Path, clip: SpeechClip,
                                                                    stats: DeploymentStats) -> None:
    model = load_model(pair)
    prior = model.session_norm
    same = replace(stats, mean=prior.mean, std=prior.std)
    plain = EmotionRecognizer(model).predict(clip.samples, clip.sample_rate)
    as_prior = EmotionRecognizer(model, deployment=same).predict(clip.samples, clip.sample_rate)
    measured = EmotionRecognizer(model, deployment=stats).predict(clip.samples, clip.sample_rate)
    assert max(abs(plain.probs[k] - as_prior.probs[k]) for k in plain.probs) < 1e-6
    assert max(abs(plain.probs[k] - measured.probs[k]) for k in plain.probs) > 1e-3
    applied = stats.apply(model)
    assert applied.session_norm.mean == stats.mean and applied.session_norm.prior_windows == prior.prior_windows
    assert model.session_norm == prior  # the loaded model is not changed


def test_the_file_round_trips_and_bad_ones_are_refused_in_one_line(stats: DeploymentStats, tmp_path: Path) -> None:
    path = stats.save(tmp_path / "d.json")
    back = load_deployment(path)
    assert np.allclose(back.mean, stats.mean, atol=1e-6) and back.windows == stats.windows
    with pytest.raises(UserError, match="exists"):
        stats.save(path)
    good = json.loads(path.read_text())
    broken = {"format": "something else"}, {**good, "version": 9}, {**good, "std": good["std"][:-1]}, \
        {**good, "std": [0.0] * len(good["std"])}, {**good, "windows": True}, {**good, "model_sha256": "abc"}, \
        {**good, "mean": ["x"] * len(good["mean"])}
    for i, d in enumerate(broken):
        bad = tmp_path / f"bad{i}.json"
        bad.write_text(json.dumps(d))
        with pytest.raises(UserError, match="not valid deployment statistics") as err:
            load_deployment(bad)
        assert "\n" not in str(err.value) and "ser-stats" in str(err.value)
    (tmp_path / "deep.json").write_text("[" * 100000)
    with pytest.raises(UserError, match="cannot read"):
        load_deployment(tmp_path / "deep.json")
    with pytest.raises(UserError, match="not found: write them with ser-stats"):
        load_deployment(tmp_path / "missing.json")


def test_statistics_are_bound_to_their_model(pair: Path, stats: DeploymentStats, tmp_path: Path) -> None:
    other = replace(stats, model_sha256="0" * 64, model_name="other", source="d.json")
    with pytest.raises(UserError, match=r"measured with another model \(other\), not tiny\.onnx"):
        other.apply(load_model(pair))
    with pytest.raises(UserError, match=r"small\.onnx has no session normaliser"):
        stats.apply(load_model("small"))
    plain = make_tiny_pair(tmp_path / "plain", session_norm=False)
    with pytest.raises(UserError, match="no session normaliser"):
        stats.apply(load_model(plain))


def test_ser_stats_writes_a_new_file_and_shows_it(pair: Path, recordings: Path, stats: DeploymentStats,
                                                  tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ser_live.realtime.faces.stats_cli import main

    out = tmp_path / "site.json"
    assert main([str(recordings), "-o", str(out), "--model", str(pair), "-q"]) == 0
    assert np.allclose(load_deployment(out).mean, stats.mean, atol=1e-6)
    before = out.read_bytes()
    capsys.readouterr()
    assert main([str(recordings), "-o", str(out), "--model", str(pair), "-q"]) == 2
    assert "exists: pass --overwrite" in capsys.readouterr().err and out.read_bytes() == before
    victim = recordings / "call0.wav"
    assert main([str(recordings), "-o", str(victim), "--model", str(pair), "--overwrite"]) == 2
    assert "is the input" in capsys.readouterr().err and sf.info(victim).frames > 0
    assert main([str(recordings / "call0.wav"), "-o", str(tmp_path / "few.json"), "--model", str(pair)]) == 2
    assert "give more recordings" in capsys.readouterr().err and not (tmp_path / "few.json").exists()
    assert main(["--show", str(out), "--model", str(pair)]) == 0
    assert "fits" in capsys.readouterr().out
    assert main([str(recordings), "-o", str(tmp_path / "s.json"), "--model", "small"]) == 2
    assert "no session normaliser" in capsys.readouterr().err


def test_ser_live_reads_them_with_one_flag(pair: Path, recordings: Path, stats: DeploymentStats,
                                           tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ser_live.realtime.faces.cli import main

    path = stats.save(tmp_path / "d.json")
    audio = recordings / "call3.wav"
    args = ["--file", str(audio), "--fast", "--no-dashboard", "--model", str(pair)]
    assert main([*args, "--jsonl", str(tmp_path / "a.jsonl")]) == 0
    assert main([*args, "--jsonl", str(tmp_path / "b.jsonl"), "--deployment", str(path)]) == 0
    plain = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines() if '"window"' in x]
    adapted = [json.loads(x) for x in (tmp_path / "b.jsonl").read_text().splitlines() if '"window"' in x]
    assert [w["end_s"] for w in plain] == [w["end_s"] for w in adapted]
    assert max(abs(a["raw_probs"][k] - b["raw_probs"][k]) for a, b in zip(plain, adapted, strict=True)
               for k in a["raw_probs"]) > 1e-3
    expected = EmotionRecognizer(str(pair), deployment=path).predict_file(audio)
    assert adapted and abs(expected.probs[expected.label] - np.mean([w["raw_probs"][expected.label]
                                                                      for w in adapted])) < 1e-4
    capsys.readouterr()
    assert main([*args, "--jsonl", str(path), "--deployment", str(path), "--overwrite"]) == 2
    assert "is the input --deployment" in capsys.readouterr().err
    assert main(["--connect", "ws://127.0.0.1:9/stream", "--file", str(audio), "--deployment", str(path)]) == 2
    assert "--deployment applies to the local engine" in capsys.readouterr().err


def test_ser_batch_auto_measures_in_a_first_pass_and_reuses_on_resume(pair: Path, recordings: Path,
                                                                      stats: DeploymentStats, tmp_path: Path) -> None:
    from ser_live.batch.cli import DEPLOYMENT_NAME, main

    out = tmp_path / "out"
    assert main([str(recordings), "--out", str(out), "--model", str(pair), "--deployment", "auto", "-q",
                 "--workers", "1"]) == 0
    written = load_deployment(out / DEPLOYMENT_NAME)
    assert np.allclose(written.mean, stats.mean, atol=1e-6)
    run = json.loads((out / "run.json").read_text())
    assert run["settings"]["deployment"]["windows"] == stats.windows
    # the same rows as the statistics given as a file
    given = stats.save(tmp_path / "d.json")
    out2 = tmp_path / "out2"
    assert main([str(recordings), "--out", str(out2), "--model", str(pair), "--deployment", str(given), "-q",
                 "--workers", "1"]) == 0
    rows = list(csv.DictReader((out / "files.csv").open()))
    rows2 = list(csv.DictReader((out2 / "files.csv").open()))
    assert [r["label"] for r in rows] == [r["label"] for r in rows2]
    assert max(abs(float(a["confidence"]) - float(b["confidence"])) for a, b in zip(rows, rows2, strict=True)) < 1e-4
    # resuming reuses the first pass (its statistics file is not measured again)
    mtime = (out / DEPLOYMENT_NAME).stat().st_mtime_ns
    shutil.copy(recordings / "call0.wav", tmp_path / "extra.wav")
    assert main([str(recordings), str(tmp_path / "extra.wav"), "--out", str(out), "--model", str(pair),
                 "--deployment", "auto", "-q", "--workers", "1"]) == 0
    assert (out / DEPLOYMENT_NAME).stat().st_mtime_ns == mtime
    assert len(list(csv.DictReader((out / "files.csv").open()))) == FILES + 1
