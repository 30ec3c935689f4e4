"""Bad input to ``ser-live``: every case gives one line that names the problem and the fix, the right exit code,
and no traceback; odd but valid audio (8-bit, stereo, 96 kHz, 50 ms, silence) just works."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile as sf
from onnx import TensorProto, helper

import ser_live.realtime.model
from ser_live.realtime.faces.cli import main
from tests.audio_fixtures import SHORT_TEXT, SpeechClip, convert, speech_clip
from tests.tiny_model import make_tiny_model

ROOT = Path(__file__).resolve().parents[1]
USER_ERROR_EXIT = 2
RATE = 16000
SUBPROCESS_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> SpeechClip:
    return speech_clip(tmp_path_factory.mktemp("speech"), text=SHORT_TEXT, lead_s=0.5, tail_s=0.5)


def live(audio: Path, model: Path | None, *extra: str) -> int:
    args = ["--file", str(audio), "--fast", "--no-dashboard", *extra]
    return main(args if model is None else [*args, "--model", str(model)])


def assert_one_line_error(capsys: pytest.CaptureFixture[str], code: int, *words: str) -> str:
    """The run failed with a user error: exit 2, exactly one stderr line with all ``words``, no traceback."""
    err = capsys.readouterr().err
    assert code == USER_ERROR_EXIT, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got: {err!r}"
    assert lines[0].startswith("ser-live: error: ")
    for word in words:
        assert word.lower() in lines[0].lower(), f"{word!r} not in {lines[0]!r}"
    return lines[0]


def assert_no_speech(capsys: pytest.CaptureFixture[str], code: int) -> None:
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "no speech detected" in captured.err
    assert "Traceback" not in captured.err


def tone(seconds: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2).astype(np.float32)


# ------------------------------------------------------------------------------------------------ audio files


def test_missing_file(model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = live(tmp_path / "nope.wav", model_path)
    assert_one_line_error(capsys, code, "nope.wav", "does not exist", "check the path")


def test_unreadable_path_a_directory(model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = live(tmp_path, model_path)
    assert_one_line_error(capsys, code, "is a directory", "pass the path of a file")


def test_empty_file(model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.wav"
    empty.touch()
    assert_one_line_error(capsys, live(empty, model_path), "empty.wav", "empty (0 bytes)")


def test_devices_and_pipes_are_named_as_such(model_path: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    import os

    assert_one_line_error(capsys, live(Path("/dev/zero"), model_path), "/dev/zero is a device", "--device")
    fifo = tmp_path / "stream.wav"
    os.mkfifo(fifo)
    assert_one_line_error(capsys, live(fifo, model_path), "stream.wav is a pipe", "write the stream to a file")


def test_a_truncated_wav_is_scored_with_a_note(model_path: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from ser_live.realtime.sources.audio import audio_info

    whole = tmp_path / "whole.wav"
    sf.write(whole, (0.1 * np.sin(np.arange(4 * RATE) * 0.05)).astype(np.float32), RATE, subtype="PCM_16")
    data = whole.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 2])
    assert audio_info(whole).truncation_note == ""
    assert audio_info(cut).truncation_note == "truncated: its header says 4.00 s, the file holds 2.00 s"
    assert live(cut, model_path, "--jsonl", str(tmp_path / "e.jsonl")) == 0
    assert "cut.wav is truncated: its header says 4.00 s, the file holds 2.00 s" in capsys.readouterr().err
    ogg = tmp_path / "whole.ogg"
    sf.write(ogg, np.zeros(RATE, np.float32), RATE, format="OGG")
    assert audio_info(ogg).declared_frames is None  # a length that is an estimate is never flagged
    aiff = tmp_path / "whole.aiff"
    sf.write(aiff, np.zeros(RATE, np.float32), RATE, format="AIFF", subtype="PCM_16")
    (tmp_path / "cut.aiff").write_bytes(aiff.read_bytes()[: -RATE])
    assert audio_info(tmp_path / "cut.aiff").truncation_note.startswith("truncated: its header says 1.00 s")


def test_wav_with_no_frames(model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros(0, np.float32), RATE)
    assert_one_line_error(capsys, live(path, model_path), "no audio", "pass a file that holds sound")


def test_non_audio_file(model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("these are notes, not sound\n" * 50)
    assert_one_line_error(capsys, live(path, model_path), "not an audio file", "convert it to WAV")


def test_truncated_flac(model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    full = tmp_path / "full.flac"
    sf.write(full, tone(3.0), RATE)
    cut = tmp_path / "cut.flac"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    assert_one_line_error(capsys, live(cut, model_path), "truncated or corrupt", "re-export")


def test_truncated_wav_plays_what_is_there(
    model_path: Path, clip: SpeechClip, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A WAV cut short has a header that promises more: libsndfile reads the frames that exist, and so do we."""
    full = tmp_path / "full.wav"
    sf.write(full, clip.samples, clip.sample_rate, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    data = full.read_bytes()
    cut.write_bytes(data[: 44 + (len(data) - 44) * 2 // 3])
    out = tmp_path / "cut.jsonl"
    assert live(cut, model_path, "--jsonl", str(out)) == 0
    summary = json.loads(out.read_text().splitlines()[-1])
    assert summary["audio_s"] == pytest.approx(clip.duration_s * 2 / 3, abs=0.01)
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_samples(
    model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: float
) -> None:
    samples = tone(2.0)
    samples[RATE] = bad
    path = tmp_path / "bad.wav"
    sf.write(path, samples, RATE, subtype="FLOAT")
    assert_one_line_error(capsys, live(path, model_path), "bad.wav", "NaN or infinite", "re-export")


@pytest.mark.parametrize(
    ("rate", "channels", "subtype"),
    [(RATE, 1, "PCM_U8"), (44100, 2, "PCM_16"), (96000, 1, "PCM_24"), (96000, 2, "FLOAT")],
    ids=["8-bit", "stereo", "96kHz", "96kHz-stereo-float"],
)
def test_odd_but_valid_formats_work(
    model_path: Path, clip: SpeechClip, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    rate: int, channels: int, subtype: str,
) -> None:
    path = tmp_path / f"speech_{subtype}.wav"
    sf.write(path, convert(clip.samples, clip.sample_rate, rate, channels), rate, subtype=subtype)
    out = tmp_path / "events.jsonl"
    assert live(path, model_path, "--jsonl", str(out)) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[-1]["type"] == "summary"
    assert rows[-1]["windows"] >= 1, "speech in this format should be classified"
    assert "Traceback" not in capsys.readouterr().err


def test_a_50_ms_file_works_and_reports_no_speech(
    model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "blip.wav"
    sf.write(path, tone(0.05), RATE)
    out = tmp_path / "blip.jsonl"
    assert_no_speech(capsys, live(path, model_path, "--jsonl", str(out)))
    [summary] = [json.loads(line) for line in out.read_text().splitlines()]
    assert summary["type"] == "summary" and summary["windows"] == 0
    assert summary["audio_s"] == pytest.approx(0.05, abs=1e-3)


@pytest.mark.parametrize("level", [0.0, 1e-4])
def test_a_silent_file_reports_no_speech(
    model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], level: float
) -> None:
    path = tmp_path / "silence.wav"
    sf.write(path, np.random.default_rng(0).normal(scale=level, size=4 * RATE).astype(np.float32), RATE)
    assert_no_speech(capsys, live(path, model_path))


# ---------------------------------------------------------------------------------------------------- models


@pytest.fixture()
def wav(tmp_path: Path) -> Path:
    path = tmp_path / "tone.wav"
    sf.write(path, tone(1.0), RATE)
    return path


def test_missing_model_file(wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = live(wav, tmp_path / "missing.onnx")
    assert_one_line_error(capsys, code, "missing.onnx", "not found", "check the path")


def test_model_path_is_a_directory(wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line_error(capsys, live(wav, tmp_path), "is a directory", "ser-export")


def test_model_file_that_is_not_onnx(wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = tmp_path / "fake.onnx"
    fake.write_bytes(b"\x00\x01 not a protobuf " * 64)
    assert_one_line_error(capsys, live(wav, fake), "fake.onnx", "not an ONNX model", "ser-export")


def test_onnx_model_that_is_not_a_ser_live_model(wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    graph = helper.make_graph(
        [helper.make_node("Softmax", ["features"], ["probs"], axis=-1)],
        "plain",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 7])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 7])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    proto.ir_version = 8
    path = tmp_path / "plain.onnx"
    onnx.save(proto, str(path))
    assert_one_line_error(capsys, live(wav, path), "plain.onnx", "not a ser-live model", "ser-export")


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"labels": None}, ("lacks labels", "re-export")),
        ({"format_version": 99}, ("newer", "upgrade")),
        ({"preset": {"name": "nonsense"}}, ("preset",)),
    ],
    ids=["no-labels", "newer-format", "bad-preset"],
)
def test_ser_live_model_with_bad_metadata(
    wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], overrides: dict, words: tuple[str, ...]
) -> None:
    path = make_tiny_model(tmp_path / "broken.onnx", metadata_overrides=overrides)
    assert_one_line_error(capsys, live(wav, path), "broken.onnx", *words)


def test_no_bundled_model_says_how_to_make_or_pass_one(
    wav: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(ser_live.realtime.model, "BUNDLED_MODEL_NAME", "no-such-model.onnx")
    line = assert_one_line_error(capsys, live(wav, None), "no bundled model", "ser-train", "ser-export", "--model")
    assert "no-such-model" not in line  # it speaks of the install, not of an internal file name


# ----------------------------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (("--threads", "0"), ("--threads", ">= 1")),
        (("--smoothing", "0"), ("smoothing", "(0, 1]")),
        (("--hop", "5"), ("hop", "longer than the window", "--hop no longer")),
        (("--hop", "0"), ("--hop", "> 0")),
        (("--duration", "-1"), ("--duration", "> 0")),
        (("--provider", "cuda"), ()),  # available (GPU machine) or a message naming the package
    ],
    ids=["threads", "smoothing", "hop", "hop0", "duration", "cuda"],
)
def test_bad_options(
    model_path: Path, wav: Path, capsys: pytest.CaptureFixture[str], extra: tuple[str, ...], words: tuple[str, ...]
) -> None:
    import onnxruntime as ort

    code = live(wav, model_path, *extra)
    if extra[0] == "--provider":
        if "CUDAExecutionProvider" in ort.get_available_providers():
            assert code in (0, USER_ERROR_EXIT)
            capsys.readouterr()
            return
        words = ("CUDA", "onnxruntime-gpu", "--provider cpu")
    assert_one_line_error(capsys, code, *words)


def test_fast_needs_a_file(model_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--fast", "--no-dashboard", "--model", str(model_path)])
    assert_one_line_error(capsys, code, "--fast", "--file")


def test_unwritable_jsonl(model_path: Path, wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = live(wav, model_path, "--jsonl", str(tmp_path / "no" / "such" / "dir" / "out.jsonl"))
    assert_one_line_error(capsys, code, "cannot write --jsonl", "does not exist")


def test_subprocess_bad_file_prints_one_line_and_no_traceback(model_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("not audio\n" * 100)
    proc = subprocess.run(
        [sys.executable, "-m", "ser_live.realtime.faces.cli", "--file", str(path), "--fast", "--no-dashboard",
         "--model", str(model_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S, check=False,
    )
    assert proc.returncode == USER_ERROR_EXIT
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ser-live: error: ") and "not an audio file" in lines[0]


@pytest.mark.parametrize(("extra", "says"), [
    (["--samplerate", "8000"], "--samplerate chooses the microphone"),
    (["--device", "1"], "--device chooses the microphone"),
    (["--token", "abc"], "--token only applies with --serve"),
    (["--tls-cert", "c.pem"], "--tls-cert only applies with --serve"),
    (["--allow-host", "me.example"], "--allow-host only applies with --serve"),
])
def test_options_that_would_be_ignored_are_refused(model_path: Path, tmp_path: Path, extra: list[str], says: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    audio = tmp_path / "a.wav"
    sf.write(audio, np.zeros(RATE, np.float32), RATE)
    assert_one_line_error(capsys, live(audio, model_path, *extra), says)


@pytest.mark.parametrize(("argv", "says"), [
    (["--enroll", "me.json", "--serve"], "leave out --serve"),
    (["--enroll", "me.json", "--enroll-labels", ",,,"], "names no emotion"),
    (["--connect", "ws://[::1", "--file", "x.wav"], "not a valid URL"),
    (["--connect", "ws://host:port", "--file", "x.wav"], "not a valid URL"),
])
def test_enrolment_and_connect_mistakes_are_one_line(argv: list[str], says: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    sf.write(tmp_path / "x.wav", np.zeros(RATE, np.float32), RATE)
    assert_one_line_error(capsys, main(argv), says)


def test_a_full_disk_keeps_the_summary_and_a_later_append_starts_a_new_line(
        model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from tests.audio_fixtures import voiced_tone

    audio = tmp_path / "a.wav"
    sf.write(audio, voiced_tone(180.0, 4.0, 0.3, 4.0, seed=3), RATE)
    assert live(audio, model_path, "--jsonl", "/dev/full") == 2
    err = capsys.readouterr().err
    assert "/dev/full holds only the first 0 events; the session's summary: {" in err
    summary = json.loads(err.split("the session's summary: ", 1)[1].splitlines()[0])
    assert summary["type"] == "summary" and summary["audio_s"] > 3
    cut = tmp_path / "cut.jsonl"
    cut.write_text('{"type": "window", "end_s": 2.0, "lab')  # the last line a full disk cut
    assert live(audio, model_path, "--jsonl", str(cut), "--append") == 0
    lines = cut.read_text().splitlines()
    assert lines[0].endswith('"lab') and all(json.loads(line) for line in lines[1:])
    assert json.loads(lines[-1])["type"] == "summary"


def test_a_consumer_that_stops_early_is_counted_for_what_it_took(model_path: Path) -> None:
    from ser_live.realtime.engine import Engine
    from ser_live.realtime.model import load_model
    from tests.audio_fixtures import voiced_tone

    engine = Engine(load_model(model_path), RATE)
    taken = []
    for event in engine.iter_batched([voiced_tone(180.0, 20.0, 0.3, 4.0, seed=2)]):
        taken.append(event)
        if len(taken) == 3:
            break
    assert engine.summary.windows == 3
