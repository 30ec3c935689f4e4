"""The fault sweep (issue 20), kept as tests: each case a demanding user met, with the rule it must follow — a clear
one-line error (exit 2) or a documented outcome, no traceback, no NaN in anything written, nothing lost."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import soundfile as sf
from onnx import numpy_helper

from batch.cli import main as batch_main
from realtime.errors import UserError
from realtime.faces.cli import main as live_main
from realtime.model import load_model
from realtime.sources.audio import MAX_ABS_SAMPLE, read_audio, sanitize_block
from tests.audio_fixtures import voiced_tone
from tests.tiny_model import TINY_LABELS, make_tiny_model

USER_ERROR_EXIT = 2
RATE = 16000


def one_line_error(err: str, *words: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for word in words:
        assert word.lower() in lines[0].lower(), f"{word!r} not in {lines[0]!r}"
    return lines[0]


def no_nan_json(text: str) -> Any:
    """Parse strictly: NaN / Infinity are not JSON, and nothing the project writes may hold them."""

    def refuse(token: str) -> None:
        raise AssertionError(f"non-finite number {token} in JSON output")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx", embedding=True)


@pytest.fixture(scope="module")
def voice() -> np.ndarray:
    return voiced_tone(180.0, 3.0, 0.3, 4.0, seed=5)


# ------------------------------------------------------------------------------------ 1. non-finite numbers


@pytest.mark.parametrize("scale", [1e13, 1e19, 1e30])
def test_a_float_file_far_beyond_full_scale_is_a_one_line_error(
    model: Path, voice: np.ndarray, tmp_path: Path, scale: float, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "huge.wav"
    sf.write(path, (voice * scale).astype(np.float32), RATE, subtype="FLOAT")
    jsonl = tmp_path / "events.jsonl"
    code = live_main(["--file", str(path), "--fast", "--no-dashboard", "--model", str(model), "--jsonl", str(jsonl)])
    assert code == USER_ERROR_EXIT
    one_line_error(capsys.readouterr().err, "huge.wav", "magnitude", "rescale")
    events = [no_nan_json(line) for line in jsonl.read_text().splitlines()] if jsonl.exists() else []
    assert not [e for e in events if e["type"] == "window"]  # no window was labelled from NaN


@pytest.mark.parametrize("scale", [32768.0, 2.0**31, 1e11])
def test_float_files_at_an_integer_scale_keep_their_verdict(voice: np.ndarray, scale: float) -> None:
    """The bundled model reads levels relative to the speech: a float file written at ±32768 or ±2^31 scale is
    scored like the same file in [-1, 1]."""
    from realtime.api import EmotionRecognizer

    recognizer = EmotionRecognizer()
    plain, scaled = recognizer.predict(voice, RATE), recognizer.predict(voice * scale, RATE)
    assert plain.label == scaled.label
    assert all(math.isfinite(p) for p in scaled.probs.values())
    np.testing.assert_allclose(list(scaled.probs.values()), list(plain.probs.values()), atol=1e-3)


def test_the_sample_limit_applies_to_files_blocks_and_the_api(voice: np.ndarray, tmp_path: Path) -> None:
    path = tmp_path / "over.wav"
    sf.write(path, (voice * MAX_ABS_SAMPLE * 10).astype(np.float32), RATE, subtype="FLOAT")
    with pytest.raises(UserError, match=r"over\.wav has samples of magnitude"):
        read_audio(path)
    with pytest.raises(UserError, match="audio block has samples of magnitude"):
        sanitize_block(voice * MAX_ABS_SAMPLE * 10)
    assert sanitize_block(voice * MAX_ABS_SAMPLE).dtype == np.float32  # at the limit: accepted


def test_ser_batch_records_a_huge_file_as_an_error_row_and_finishes(
    model: Path, voice: np.ndarray, tmp_path: Path
) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    sf.write(archive / "good.wav", voice, RATE)
    sf.write(archive / "huge.wav", (voice * 1e30).astype(np.float32), RATE, subtype="FLOAT")
    out = tmp_path / "out"
    assert batch_main([str(archive), "--out", str(out), "--model", str(model), "-q"]) == 0
    with open(out / "files.csv", newline="") as fh:
        rows = {Path(r["path"]).name: r for r in csv.DictReader(fh)}
    assert rows["good.wav"]["status"] == "ok"
    assert rows["huge.wav"]["status"] == "error" and "magnitude" in rows["huge.wav"]["error"]
    for name in out.rglob("*.json*"):
        for line in name.read_text().splitlines() if name.suffix == ".jsonl" else [name.read_text()]:
            if line.strip():
                no_nan_json(line)
    # a second run resumes and ends at once: the error row is a result, not work left to do
    assert batch_main([str(archive), "--out", str(out), "--model", str(model), "-q"]) == 0


def _poison(model: Path, target: Path) -> Path:
    """A copy of ``model`` whose first float initializer is NaN: the graph gives NaN for every input."""
    proto = onnx.load(str(model))
    init = next(i for i in proto.graph.initializer if numpy_helper.to_array(i).dtype == np.float32)
    bad = np.full_like(numpy_helper.to_array(init), np.nan)
    init.CopyFrom(numpy_helper.from_array(bad, init.name))
    onnx.save(proto, str(target))
    return target


def test_a_model_that_outputs_nan_is_refused_at_load(
    model: Path, voice: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = _poison(model, tmp_path / "nan.onnx")
    with pytest.raises(UserError, match="NaN or infinite"):
        load_model(broken)
    wav = tmp_path / "voice.wav"
    sf.write(wav, voice, RATE)
    assert live_main(["--file", str(wav), "--fast", "--no-dashboard", "--model", str(broken)]) == USER_ERROR_EXIT
    one_line_error(capsys.readouterr().err, "nan.onnx", "broken")


def test_nan_model_output_mid_stream_is_an_error_not_a_label(model: Path) -> None:
    loaded = load_model(model)
    x = np.zeros((2, *loaded.info.feature_shape), np.float32)
    x.reshape(2, -1)[1, 0] = np.nan
    with pytest.raises(UserError, match="NaN or infinite outputs on features that hold NaN"):
        loaded.predict(x)


# --------------------------------------------------------------------------------------- 5. models that lie


def test_metadata_with_fewer_labels_than_the_graph_is_refused_at_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], voice: np.ndarray
) -> None:
    path = make_tiny_model(tmp_path / "liar.onnx")
    proto = onnx.load(str(path))
    entry = next(p for p in proto.metadata_props if p.key == "ser_live")
    meta = json.loads(entry.value)
    meta["labels"] = list(TINY_LABELS[:3])
    meta.pop("affect", None)
    entry.value = json.dumps(meta)
    onnx.save(proto, str(path))
    with pytest.raises(UserError) as caught:
        load_model(path)
    message = str(caught.value)
    assert "liar.onnx" in message and "output 'probs'" in message and "re-export" in message
    assert "affect" not in message  # the real problem, not a symptom
    wav = tmp_path / "voice.wav"
    sf.write(wav, voice, RATE)
    assert live_main(["--file", str(wav), "--fast", "--no-dashboard", "--model", str(path)]) == USER_ERROR_EXIT
    one_line_error(capsys.readouterr().err, "does not match its graph")


# -------------------------------------------------------------------------------- 3. outputs lost or mixed


@pytest.fixture()
def wav(voice: np.ndarray, tmp_path: Path) -> Path:
    path = tmp_path / "voice.wav"
    sf.write(path, voice, RATE)
    return path


def live(wav: Path, model: Path, *extra: str) -> int:
    return live_main(["--file", str(wav), "--fast", "--no-dashboard", "--model", str(model), *extra])


def verdicts(text: str) -> list[tuple[str, Any, Any]]:
    return [(e["type"], e.get("label"), e.get("end_s")) for e in map(json.loads, text.splitlines())]


def test_ser_live_never_appends_to_or_replaces_a_jsonl_without_a_flag(
    model: Path, wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jsonl = tmp_path / "events.jsonl"
    assert live(wav, model, "--jsonl", str(jsonl)) == 0
    first = jsonl.read_text()
    sessions = sum(json.loads(line)["type"] == "summary" for line in first.splitlines())
    assert sessions == 1
    capsys.readouterr()
    assert live(wav, model, "--jsonl", str(jsonl)) == USER_ERROR_EXIT
    one_line_error(capsys.readouterr().err, "events.jsonl exists", "--overwrite", "--append")
    assert jsonl.read_text() == first  # untouched
    assert live(wav, model, "--jsonl", str(jsonl), "--append") == 0
    assert jsonl.read_text().startswith(first) and jsonl.read_text().count('"type": "summary"') == 2
    assert live(wav, model, "--jsonl", str(jsonl), "--overwrite") == 0
    assert verdicts(jsonl.read_text()) == verdicts(first)  # replaced by one session like the first
    capsys.readouterr()
    assert live(wav, model, "--jsonl", str(jsonl), "--append", "--overwrite") == USER_ERROR_EXIT
    one_line_error(capsys.readouterr().err, "pass one of them")
    assert live(wav, model, "--jsonl", os.devnull) == 0  # a device: written to, nothing to lose


@pytest.mark.parametrize("flags", [(), ("--append",), ("--overwrite",)])
def test_the_input_file_is_never_an_output(
    model: Path, wav: Path, tmp_path: Path, flags: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    before = wav.read_bytes()
    link = tmp_path / "same.wav"
    link.symlink_to(wav)
    assert live(wav, model, "--jsonl", str(link), *flags) == USER_ERROR_EXIT
    one_line_error(capsys.readouterr().err, "is the input --file", "never an output")
    assert wav.read_bytes() == before


def test_ser_live_report_is_checked_at_start(
    model: Path, wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "session.png"
    png.write_bytes(b"an earlier report")
    jsonl = tmp_path / "events.jsonl"
    assert live(wav, model, "--report", str(png), "--jsonl", str(jsonl)) == USER_ERROR_EXIT
    one_line_error(capsys.readouterr().err, "session.png exists", "--overwrite")
    assert png.read_bytes() == b"an earlier report" and not jsonl.exists()  # refused before any work
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    assert live(wav, model, "--report", str(not_a_folder / "r.png")) == USER_ERROR_EXIT
    one_line_error(capsys.readouterr().err, "does not exist")
    md = tmp_path / "session.md"
    assert live(wav, model, "--report", str(png), "--jsonl", str(md)) == USER_ERROR_EXIT
    one_line_error(capsys.readouterr().err, "both name", "its own path")


def test_ser_report_never_writes_over_its_input_or_an_earlier_report(
    model: Path, wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    from report.cli import main as report_main

    jsonl = tmp_path / "events.jsonl"
    assert live(wav, model, "--jsonl", str(jsonl)) == 0
    events = jsonl.read_bytes()
    png = tmp_path / "r.png"
    capsys.readouterr()
    assert report_main([str(jsonl), "-o", str(png), "--markdown", str(jsonl)]) == USER_ERROR_EXIT
    one_line_error(capsys.readouterr().err, "is the input EVENTS")
    assert report_main([str(jsonl), "-o", str(png), "--markdown", str(png)]) == USER_ERROR_EXIT
    one_line_error(capsys.readouterr().err, "both name")
    assert jsonl.read_bytes() == events and not png.exists()
    assert report_main([str(jsonl), "-o", str(png)]) == 0
    drawn = png.read_bytes()
    capsys.readouterr()
    assert report_main([str(jsonl), "-o", str(png)]) == USER_ERROR_EXIT
    one_line_error(capsys.readouterr().err, "r.png exists", "--overwrite")
    assert png.read_bytes() == drawn
    assert report_main([str(jsonl), "-o", str(png), "--overwrite"]) == 0
