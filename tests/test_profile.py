"""Personal profiles: fitting (numpy), the JSON file, binding to one model file, and using one everywhere.

Embeddings here are synthetic (clusters per label) or come from the tiny test model with an ``embedding`` output,
on espeak-ng speech; no corpus is read.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import ser_live.realtime.profile as rp
from ser_live.batch.cli import main as batch_main
from ser_live.export.cli import main as export_main
from ser_live.realtime.api import EmotionRecognizer
from ser_live.realtime.errors import UserError
from ser_live.realtime.faces.cli import main as live_main
from ser_live.realtime.faces.profile_cli import main as profile_main
from ser_live.realtime.fileio import file_sha256
from ser_live.realtime.model import load_model
from ser_live.realtime.profile import Base, Profile, Take, fit, load_profile, make_profile, softmax
from tests.audio_fixtures import espeak_wav
from tests.tiny_model import TINY_LABELS, make_tiny_model

SIZE = 16
LABELS = ("angry", "happy", "neutral", "sad")


def synthetic(seed: int = 0, per_label: int = 3, windows: int = 4, spread: float = 0.3,
              labels: tuple[str, ...] = LABELS) -> tuple[Base, list[Take], np.ndarray]:
    """A base layer that knows nothing (random) and takes whose embeddings cluster around one centre per label."""
    rng = np.random.default_rng(seed)
    centres = np.abs(rng.normal(size=(len(LABELS), SIZE))) * 2
    base = Base(LABELS, rng.normal(size=(SIZE, len(LABELS))) * 0.1, np.zeros(len(LABELS)))
    takes = []
    for label in labels:
        c = centres[LABELS.index(label)]
        for n in range(per_label):
            takes.append(Take(label, np.abs(c + rng.normal(size=(windows, SIZE)) * spread), source=f"{label}{n}"))
    return base, takes, centres


def test_softmax_fit_learns_the_speaker_and_measures_itself() -> None:
    base, takes, centres = synthetic()
    result = fit(takes, base)
    assert result.layer.method == "softmax" and not math.isinf(result.layer.setting["strength"])
    assert result.own["uar"] == 1.0 and result.base["uar"] < 1.0
    assert result.warning is None
    fresh = np.abs(centres + np.random.default_rng(9).normal(size=centres.shape) * 0.3)
    assert list(np.argmax(result.layer.probs(fresh), axis=1)) == list(range(len(LABELS)))


def test_fitting_is_deterministic() -> None:
    base, takes, _ = synthetic()
    a, b = fit(takes, base), fit(takes, base)
    np.testing.assert_array_equal(a.layer.weights, b.layer.weights)
    np.testing.assert_array_equal(a.layer.bias, b.layer.bias)
    assert a.tried == b.tried


@pytest.mark.parametrize("method", rp.METHODS)
def test_leave_one_take_out_never_sees_the_take_it_scores(method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    base, takes, _ = synthetic(per_label=2)
    seen: list[list[str]] = []
    real = rp.fit_layer

    def spy(given: list[Take], *args: object, **kwargs: object) -> rp.Layer:
        seen.append([t.source for t in given])
        return real(given, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(rp, "fit_layer", spy)
    setting = rp.candidate_settings(method)[0]
    probs = rp.leave_one_take_out(takes, base, method, setting)
    assert probs.shape == (len(takes), len(LABELS))
    assert len(seen) == len(takes)
    for take, given in zip(takes, seen, strict=True):
        assert take.source not in given and len(given) == len(takes) - 1


def test_labels_not_enrolled_keep_the_base_model_scores() -> None:
    base, takes, _ = synthetic(labels=("angry", "sad"))
    for method in rp.METHODS:
        layer = fit(takes, base, method).layer
        for label in ("happy", "neutral"):
            c = LABELS.index(label)
            np.testing.assert_array_equal(layer.weights[:, c], base.weights[:, c])
            assert layer.bias[c] == base.bias[c]


def test_a_fit_that_cannot_beat_the_base_model_keeps_it_and_says_so() -> None:
    """Labels that carry no information (random): leave-one-take-out keeps the base layer (strength inf)."""
    rng = np.random.default_rng(4)
    base = Base(LABELS, np.eye(SIZE, len(LABELS)) * 3, np.zeros(len(LABELS)))
    takes = []
    for label in LABELS:
        for _ in range(3):
            e = np.zeros((3, SIZE))
            e[:, LABELS.index(label)] = 1.0  # the base model is right on every take
            takes.append(Take(label, e + np.abs(rng.normal(size=e.shape)) * 0.01))
    result = fit(takes, base)
    assert result.base["uar"] == 1.0
    assert result.own["uar"] >= result.base["uar"] - 0.02  # never worse than the base model on its own takes
    flipped = [Take(LABELS[(LABELS.index(t.label) + 1) % len(LABELS)], t.embeddings) for t in takes[:4]]
    result = fit(flipped + takes[4:8], base)
    if math.isinf(result.layer.setting["strength"]):
        assert result.warning and "base model" in result.warning
        np.testing.assert_array_equal(result.layer.weights, base.weights)


def test_one_take_per_emotion_uses_the_fixed_setting_and_says_it_is_unchecked() -> None:
    base, takes, centres = synthetic(per_label=1)
    result = fit(takes, base)
    assert result.checked == 0 and len(result.tried) == 1
    assert result.layer.setting == rp.UNCHECKED_SETTINGS["softmax"]
    assert result.warning and "cannot be checked" in result.warning and "0.03" in result.warning
    fresh = np.abs(centres + np.random.default_rng(9).normal(size=centres.shape) * 0.3)
    assert list(np.argmax(result.layer.probs(fresh), axis=1)) == list(range(len(LABELS)))  # it still learned


def test_an_emotion_with_one_take_is_not_used_to_check_the_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Leaving out the only take of an emotion scores the base layer, not the fit: such takes are not scored."""
    base, takes, _ = synthetic(per_label=3, labels=("angry", "happy", "neutral"))
    single = Take("sad", takes[0].embeddings[::-1] + 5.0, source="sad0")
    seen: list[list[int]] = []
    real = rp.leave_one_take_out

    def spy(given: list[Take], *args: object, only: list[int] | None = None) -> np.ndarray:
        seen.append(list(only) if only is not None else list(range(len(given))))
        return real(given, *args, only=only)  # type: ignore[arg-type]

    monkeypatch.setattr(rp, "leave_one_take_out", spy)
    result = fit([*takes, single], base)
    assert result.checked == 9 and len(result.tried) == len(rp.STRENGTHS)
    assert seen and all(idx == list(range(9)) for idx in seen)  # the sad take (index 9) is never scored
    assert not math.isinf(result.layer.setting["strength"])
    assert result.layer.weights[:, LABELS.index("sad")].tolist() != base.weights[:, LABELS.index("sad")].tolist()


def test_describe_names_the_checked_takes_and_hides_an_unchecked_score() -> None:
    layer = rp.Layer(np.zeros((SIZE, 3)), np.zeros(3), "softmax", {"strength": 0.03})
    scores = {"profile": {"uar": 0.75, "accuracy": 0.75}, "base": {"uar": 0.5, "accuracy": 0.5}}
    mixed = Profile("me", "m", "0" * 64, ("a", "b", "c"), {"a": 2, "b": 2, "c": 1}, layer,
                    accuracy={"takes": 5, "checked_takes": 4, **scores})
    assert "on 4 of its own 5 takes" in mixed.describe()
    assert "one take moves that UAR by up to 25 points" in mixed.describe()  # a and b: 2 takes each
    unchecked = Profile("me", "m", "0" * 64, ("a", "b", "c"), {"a": 1, "b": 1}, layer,
                        accuracy={"takes": 2, "checked_takes": 0, **scores}, warning="one take per emotion: …")
    assert "left out one at a time" not in unchecked.describe() and "one take per emotion" in unchecked.describe()


def test_too_few_or_bad_takes_are_refused() -> None:
    base, takes, _ = synthetic()
    with pytest.raises(UserError, match="too few"):
        fit(takes[:1], base)
    with pytest.raises(UserError, match="does not know"):
        fit([*takes, Take("bored", takes[0].embeddings, "x.wav")], base)
    with pytest.raises(UserError, match="unknown profile method"):
        fit(takes, base, "magic")


# --- with a model -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny.onnx", preset_name="logmel", embedding=True)


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    root = tmp_path_factory.mktemp("speech")
    prosody = {"angry": (230, 85), "sad": (95, 10), "happy": (180, 70)}
    out: dict[str, list[Path]] = {}
    for label, (speed, pitch) in prosody.items():
        out[label] = [espeak_wav(root / f"{label}{n}.wav", f"The train leaves from platform {n + 2} today.",
                                 speed=speed + 10 * n, pitch=pitch) for n in range(3)]
    return out


@pytest.fixture(scope="module")
def manifest(speech: dict[str, list[Path]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("manifest") / "clips.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        for label, files in speech.items():
            for f in files:
                w.writerow([f.name if f.parent == path.parent else str(f), label])
    return path


@pytest.fixture(scope="module")
def profile_file(tiny: Path, manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("profile") / "me.json"
    assert profile_main(["fit", "--audio", str(manifest), "-o", str(out), "--model", str(tiny)]) == 0
    return out


def test_profile_file_round_trip(profile_file: Path, tiny: Path) -> None:
    data = json.loads(profile_file.read_text())
    assert data["format"] == "ser-live-profile" and data["version"] == 1
    assert data["model"]["sha256"] == file_sha256(tiny) and data["model"]["labels"] == list(TINY_LABELS)
    assert data["enrolled"] == {"angry": 3, "happy": 3, "sad": 3}
    assert data["accuracy"]["protocol"] == "leave-one-take-out" and data["accuracy"]["takes"] == 9
    profile = load_profile(profile_file)
    again = Profile.from_dict(json.loads(json.dumps(profile.to_dict())), "copy")
    np.testing.assert_array_equal(again.layer.weights, profile.layer.weights)
    x = np.random.default_rng(0).normal(size=(4, profile.layer.weights.shape[0]))
    np.testing.assert_array_equal(again.probs(x), profile.probs(x))
    assert "angry ×3" in profile.describe()
    # 3 takes of each of 3 labels: one take is a third of one label's recall, a ninth of the UAR
    assert profile.uar_step_points == pytest.approx(100 / 9)
    assert "one take moves that UAR by up to 11 points" in profile.describe()


def test_profile_refused_on_another_model(profile_file: Path, tmp_path: Path) -> None:
    other = make_tiny_model(tmp_path / "other.onnx", preset_name="logmel", embedding=True, seed=3)
    with pytest.raises(UserError, match="another model file"):
        load_model(other, profile=load_profile(profile_file))
    fewer = make_tiny_model(tmp_path / "fewer.onnx", preset_name="logmel", embedding=True, labels=("happy", "sad"))
    with pytest.raises(UserError, match="labels"):
        load_model(fewer, profile=load_profile(profile_file))
    plain = make_tiny_model(tmp_path / "plain.onnx", preset_name="logmel")
    with pytest.raises(UserError, match="cannot be personalised"):
        load_model(plain, profile=load_profile(profile_file))


def test_a_profile_changes_the_engine_probabilities_to_its_layer(profile_file: Path, tiny: Path,
                                                                  speech: dict[str, list[Path]]) -> None:
    base = EmotionRecognizer(tiny, provider="cpu")
    personal = EmotionRecognizer(tiny, provider="cpu", profile=load_profile(profile_file))
    assert personal.profile is not None and base.profile is None
    clip = speech["sad"][0]
    b, p = base.predict_file(clip), personal.predict_file(clip)
    assert [w.end_s for w in b.windows] == [w.end_s for w in p.windows]  # same windows
    assert all(w.profile == "me" for w in p.windows) and all(w.profile is None for w in b.windows)
    samples, rate = sf.read(str(clip), dtype="float32")
    feats = rp.window_features(personal.model, samples, rate)
    expected = softmax(personal.model.embed(feats) @ personal.profile.layer.weights + personal.profile.layer.bias)
    got = np.array([[w.raw_probs[label] for label in TINY_LABELS] for w in p.windows])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert not np.allclose(got, [[w.raw_probs[label] for label in TINY_LABELS] for w in b.windows], atol=1e-3)


def test_ser_live_with_a_profile_says_so(profile_file: Path, tiny: Path, speech: dict[str, list[Path]],
                                         tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    jsonl = tmp_path / "events.jsonl"
    assert live_main(["--file", str(speech["angry"][0]), "--fast", "--model", str(tiny), "--profile",
                      str(profile_file), "--jsonl", str(jsonl), "--no-dashboard"]) == 0
    lines = [json.loads(x) for x in jsonl.read_text().splitlines()]
    assert lines and all(x["profile"] == "me" for x in lines)  # every window and the summary
    assert lines[-1]["type"] == "summary"


def test_ser_serve_streams_with_the_profile_a_client_names(profile_file: Path, tiny: Path,
                                                          speech: dict[str, list[Path]], tmp_path: Path) -> None:
    from ser_live.realtime.config import EngineConfig
    from ser_live.realtime.faces.serve import EventServer, ServeConfig, stream_to
    from ser_live.realtime.faces.serve_cli import parse_profiles
    from ser_live.realtime.faces.stream import StreamService

    model = load_model(tiny)
    service = StreamService(model, EngineConfig(), parse_profiles([f"me={profile_file}"], model))
    srv = EventServer(ServeConfig(port=0, streams=service)).start()
    try:
        data, rate = sf.read(str(speech["angry"][0]), dtype="float32", always_2d=True)
        got: list[dict] = []
        stream_to(srv.stream_url, [data[i:i + 1600] for i in range(0, len(data), 1600)], rate, 1, got.append,
                  profile="me")
        plain: list[dict] = []
        stream_to(srv.stream_url, [data], rate, 1, plain.append)
    finally:
        srv.close()
        service.close()
    jsonl = tmp_path / "events.jsonl"
    assert live_main(["--file", str(speech["angry"][0]), "--fast", "--model", str(tiny), "--profile",
                      str(profile_file), "--jsonl", str(jsonl), "--no-dashboard"]) == 0
    local = [json.loads(x) for x in jsonl.read_text().splitlines()]
    assert got[0]["profile"] == "me" and plain[0]["profile"] is None
    windows = [{k: v for k, v in e.items() if k != "latency_ms"} for e in got if e["type"] == "window"]
    assert windows and windows == [{k: v for k, v in e.items() if k != "latency_ms"} for e in local
                                   if e["type"] == "window"]
    assert all(e["profile"] is None for e in plain if e["type"] == "window")


def test_ser_batch_profile_per_channel(profile_file: Path, tiny: Path, speech: dict[str, list[Path]],
                                       tmp_path: Path) -> None:
    left, rate = sf.read(str(speech["sad"][0]), dtype="float32")
    right, _ = sf.read(str(speech["angry"][0]), dtype="float32")
    n = min(len(left), len(right))
    stereo = tmp_path / "call.wav"
    sf.write(stereo, np.stack([left[:n], right[:n]], axis=1), rate)
    out = tmp_path / "scored"
    assert batch_main([str(stereo), "--out", str(out), "--model", str(tiny), "--channels", "split",
                       "--profile-left", str(profile_file), "-q", "--workers", "1"]) == 0
    with open(out / "files.csv", newline="") as fh:
        rows = {r["channel"]: r for r in csv.DictReader(fh)}
    assert rows["0"]["profile"] == "me" and rows["1"]["profile"] == ""
    run = json.loads((out / "run.json").read_text())
    assert run["settings"]["profiles"]["0"]["model"]["sha256"] == file_sha256(tiny)
    assert batch_main([str(stereo), "--out", str(tmp_path / "x"), "--model", str(tiny), "--profile-left",
                       str(profile_file), "-q"]) == 2  # needs --channels split


def test_ser_profile_errors_are_one_line(tiny: Path, manifest: Path, profile_file: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert profile_main(["fit", "--audio", str(manifest), "-o", str(profile_file), "--model", str(tiny)]) == 2
    assert "already exists" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{manifest.parent / 'x.wav'},bored\n")
    assert profile_main(["fit", "--audio", str(bad), "-o", str(tmp_path / "p.json"), "--model", str(tiny)]) == 2
    err = capsys.readouterr().err
    assert "bored" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    junk = tmp_path / "junk.json"
    junk.write_text('{"format": "something else"}')
    assert profile_main(["show", str(junk)]) == 2
    assert "not a ser-live profile" in capsys.readouterr().err
    assert profile_main(["show", str(profile_file), "--model", str(tiny)]) == 0
    assert "fits" in capsys.readouterr().out


def test_make_profile_on_a_model_without_embedding_says_how_to_add_one(tmp_path: Path) -> None:
    plain = load_model(make_tiny_model(tmp_path / "plain.onnx", preset_name="logmel"))
    with pytest.raises(UserError, match=r"ser-export plain\.onnx -o NEW\.onnx"):
        make_profile(plain, [])


def test_ser_export_adds_the_embedding_to_an_old_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = make_tiny_model(tmp_path / "old.onnx", preset_name="logmel")
    new = tmp_path / "new.onnx"
    assert export_main([str(old), "-o", str(new)]) == 0
    a, b = load_model(old), load_model(new)
    assert not a.can_personalise and b.can_personalise
    x = np.random.default_rng(2).normal(size=(6, *a.info.feature_shape)).astype(np.float32)
    np.testing.assert_array_equal(a.predict(x), b.predict(x))  # the graph is untouched
    rebuilt = softmax(b.embed(x) @ b.info.embedding.weights + b.info.embedding.bias)
    np.testing.assert_allclose(rebuilt, b.predict(x), atol=1e-5)
    assert export_main([str(old), "-o", str(new)]) == 2  # no overwrite without the flag
    assert export_main([str(new), "-o", str(tmp_path / "again.onnx")]) == 2  # already has one
    assert export_main([str(old), "-o", str(old), "--overwrite"]) == 2  # never the input itself
    assert "input model" in capsys.readouterr().err


def test_the_model_is_never_an_output_of_fit_or_enrolment(tiny: Path, manifest: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from ser_live.realtime.faces.cli import main as live_main

    before = tiny.read_bytes()
    argv = ["fit", "--audio", str(manifest), "-o", str(tiny), "--model", str(tiny), "--overwrite"]
    assert profile_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is the input --model" in err[0]
    assert live_main(["--enroll", str(tiny), "--model", str(tiny), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is the input --model" in err[0]
    assert tiny.read_bytes() == before


def test_a_broken_profile_is_refused_at_load_in_one_line(profile_file: Path, tiny: Path, tmp_path: Path) -> None:
    """The checks every face shares (load_profile + check_model: ser-profile show --check, ser-live, ser-serve,
    ser-batch): a layer of the wrong width, a bad version, counts <= 0 or absurd, booleans or strings where numbers
    belong, an accuracy that is not an object, JSON nested too deep, a file far too large."""
    good = json.loads(profile_file.read_text())
    model = load_model(tiny)
    cases = {
        "rows": ({**good, "weights": good["weights"][:-1]}, "-value embeddings"),
        "version": ({**good, "version": -5}, "no valid profile version"),
        "counts": ({**good, "enrolled": {k: 0 for k in good["enrolled"]}}, "counts 0 takes"),
        "huge-count": ({**good, "enrolled": {k: 10**400 for k in good["enrolled"]}}, "counts a 401-digit number of"),
        "string-count": ({**good, "enrolled": {k: "3" for k in good["enrolled"]}}, "whole number of takes"),
        "bool-weights": ({**good, "weights": [[True] * len(r) for r in good["weights"]]}, "bool values where numbers"),
        "string-bias": ({**good, "bias": [str(b) for b in good["bias"]]}, "str values where numbers"),
        "string-accuracy": ({**good, "accuracy": "high"}, "accuracy must be an object"),
        "accuracy-score": ({**good, "accuracy": {**good["accuracy"], "profile": {"uar": 5}}}, "number in 0..1"),
    }
    for name, (data, message) in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(data))
        with pytest.raises(UserError, match=message):
            load_profile(path).check_model(model)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(UserError, match="not readable JSON \\(nested too deep\\)"):
        load_profile(deep)
    huge = tmp_path / "huge.json"
    huge.write_bytes(b" " * (9 * 2**20))
    with pytest.raises(UserError, match="far larger than a profile"):
        load_profile(huge)
    with pytest.raises(UserError, match="-value embeddings"):
        load_model(tiny, profile=load_profile(tmp_path / "rows.json"))
