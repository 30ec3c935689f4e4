"""The fault sweep (issue 20), kept as tests: each case a demanding user met, with the rule it must follow — a clear
one-line error (exit 2) or a documented outcome, no traceback, no NaN in anything written, nothing lost."""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import numpy_helper

from ser_live.batch.cli import main as batch_main
from ser_live.realtime.errors import UserError
from ser_live.realtime.faces.cli import main as live_main
from ser_live.realtime.model import load_model
from ser_live.realtime.sources.audio import MAX_ABS_SAMPLE, read_audio, sanitize_block
from tests.audio_fixtures import voiced_tone
from tests.processes import children, wait_gone
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
    from ser_live.realtime.api import EmotionRecognizer

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
    from ser_live.report.cli import main as report_main

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


# ---------------------------------------------------------------------------------------- ser-batch's folder


@pytest.fixture()
def archive(voice: np.ndarray, tmp_path: Path) -> Path:
    folder = tmp_path / "archive"
    folder.mkdir()
    for k in range(3):
        sf.write(folder / f"clip{k}.wav", np.roll(voice, 1000 * k), RATE)
    return folder


def batch(archive: Path | list[Path], out: Path, model: Path, *extra: str) -> int:
    inputs = [str(p) for p in archive] if isinstance(archive, list) else [str(archive)]
    return batch_main([*inputs, "--out", str(out), "--model", str(model), "-q", *extra])


def csv_paths(out: Path) -> list[str]:
    with open(out / "files.csv", newline="") as fh:
        return [Path(r["path"]).name for r in csv.DictReader(fh)]


def test_a_rerun_with_a_subset_keeps_every_earlier_row(model: Path, archive: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert batch(archive, out, model) == 0
    assert batch([archive / "clip1.wav"], out, model) == 0
    assert csv_paths(out) == ["clip1.wav", "clip0.wav", "clip2.wav"]  # the inputs first, then the earlier files
    run = json.loads((out / "run.json").read_text())
    assert run["counts"]["inputs"] == 1 and run["counts"]["files_in_outputs"] == 3


def test_other_settings_or_a_foreign_folder_are_refused_without_fresh(
    model: Path, archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert batch(archive, out, model) == 0
    before = (out / "files.csv").read_bytes()
    capsys.readouterr()
    assert batch([archive / "clip0.wav"], out, model, "--channels", "split") == USER_ERROR_EXIT
    one_line_error(capsys.readouterr().err, "another model or other settings", "--fresh")
    assert (out / "files.csv").read_bytes() == before
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "files.csv").write_text("somebody's results\n")
    assert batch(archive, foreign, model) == USER_ERROR_EXIT
    one_line_error(capsys.readouterr().err, "no ser-batch journal", "--fresh")
    assert (foreign / "files.csv").read_text() == "somebody's results\n"
    assert batch(archive, foreign, model, "--fresh") == 0 and len(csv_paths(foreign)) == 3


@pytest.mark.parametrize("damage", ["garbage", "wrong-shape", "no-header", "middle"])
def test_a_damaged_journal_is_refused_in_one_line(
    model: Path, archive: Path, tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert batch(archive, out, model) == 0
    journal = out / ".ser-batch" / "journal.jsonl"
    lines = journal.read_text().splitlines(keepends=True)
    if damage == "garbage":
        journal.write_bytes(b"\xff\xfe\x00garbage" * 10)
    elif damage == "wrong-shape":
        journal.write_text("[1, 2, 3]\n")
    elif damage == "no-header":
        journal.write_text("".join(lines[1:]))
    else:
        journal.write_text("".join([lines[0], '{"not": "a result"}\n', *lines[1:]]))
    capsys.readouterr()
    assert batch(archive, out, model) == USER_ERROR_EXIT
    one_line_error(capsys.readouterr().err, "journal", "--fresh")
    assert len(csv_paths(out)) == 3  # the outputs are untouched


def test_a_cut_last_line_is_dropped_and_the_rest_resumed(model: Path, archive: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert batch(archive, out, model) == 0
    journal = out / ".ser-batch" / "journal.jsonl"
    text = journal.read_text()
    journal.write_text(text[: len(text) - 40])  # killed mid-write: the last result is half a line
    assert batch(archive, out, model) == 0
    run = json.loads((out / "run.json").read_text())
    assert (run["resumed_files"], run["scored_this_run"]) == (2, 1)
    assert all(json.loads(line) for line in journal.read_text().splitlines())  # whole lines only
    assert len(csv_paths(out)) == 3


def test_two_runs_into_one_folder_the_second_is_refused(model: Path, archive: Path, tmp_path: Path) -> None:
    from ser_live.batch.store import Journal

    out = tmp_path / "out"
    holder = Journal(out, {"model_sha256": "x", "settings": {}})
    try:
        with pytest.raises(UserError, match=r"another ser-batch \(pid \d+\) is writing to --out"):
            Journal(out, {"model_sha256": "x", "settings": {}})
    finally:
        holder.close()
    Journal(out, {"model_sha256": "x", "settings": {}}).close()  # released: a stale lock cannot exist


def test_outputs_that_cannot_be_written_are_found_before_scoring(
    model: Path, archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    (out / "files.csv").mkdir(parents=True)
    assert batch(archive, out, model, "--fresh") == USER_ERROR_EXIT
    one_line_error(capsys.readouterr().err, "files.csv is a folder")
    journal_dir = tmp_path / "out2" / ".ser-batch" / "journal.jsonl"
    journal_dir.mkdir(parents=True)
    assert batch(archive, tmp_path / "out2", model) == USER_ERROR_EXIT
    one_line_error(capsys.readouterr().err, "journal", "is a folder")


def test_an_unreachable_ray_address_fails_fast_in_one_line(
    model: Path, archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    t0 = time.monotonic()
    assert batch(archive, tmp_path / "out", model, "--ray", "127.0.0.1:1", "--ray-timeout", "2") == USER_ERROR_EXIT
    assert time.monotonic() - t0 < 30
    one_line_error(capsys.readouterr().err, "cannot reach the Ray cluster at 127.0.0.1:1", "--ray-timeout")
    assert batch(archive, tmp_path / "out", model, "--ray-timeout", "nan", "--ray", "x:1") == USER_ERROR_EXIT
    one_line_error(capsys.readouterr().err, "--ray-timeout must be a positive number")


def test_more_workers_than_cpus_are_capped(
    model: Path, archive: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert batch(archive, tmp_path / "out", model, "--workers", "1000") == 0
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["workers"] == (os.cpu_count() or 1)
    assert "--workers 1000 is more than" in caplog.text


# ------------------------------------------------------------------------------------------ 2. processes


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc (Linux)")
@pytest.mark.parametrize("how", ["sigkill", "two-sigterms"])
def test_workers_die_with_the_driver(model: Path, voice: np.ndarray, tmp_path: Path, how: str) -> None:
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "long"
    folder.mkdir()
    for k in range(40):
        sf.write(folder / f"f{k:02d}.wav", np.tile(voice, 10), RATE)
    driver = subprocess.Popen(
        [sys.executable, "-m", "ser_live.batch.cli", str(folder), "--out", str(tmp_path / "out"), "--model", str(model),
         "--workers", "2", "-q"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        workers: set[int] = set()
        journal = tmp_path / "out" / ".ser-batch" / "journal.jsonl"
        while time.monotonic() < deadline:  # both workers up and at least one file done
            workers = children(driver.pid)
            if len(workers) >= 2 and journal.exists() and journal.read_text().count("\n") >= 2:
                break
            time.sleep(0.1)
        assert len(workers) >= 2, "the pool did not start"
        if how == "sigkill":
            driver.kill()
        else:
            driver.send_signal(signal.SIGTERM)
            time.sleep(0.2)
            driver.send_signal(signal.SIGTERM)  # the second one leaves at once (os._exit)
        driver.wait(timeout=30)
        assert not wait_gone(workers, timeout_s=10), "worker processes outlived the driver"
        assert "Traceback" not in driver.stderr.read().decode()  # type: ignore[union-attr]
    finally:
        if driver.poll() is None:
            driver.kill()
        for p in children(driver.pid):
            with contextlib.suppress(OSError):
                os.kill(p, signal.SIGKILL)


# ------------------------------------------------------------------------- 4. write errors after the work


class _FullDisk:
    def write(self, text: str) -> int:
        raise OSError(28, "No space left on device")

    def flush(self) -> None:
        raise OSError(28, "No space left on device")

    def close(self) -> None:
        pass


def test_a_full_disk_while_journaling_is_one_line_and_keeps_what_was_journaled(tmp_path: Path) -> None:
    from ser_live.batch.store import Journal

    journal = Journal(tmp_path / "out", {"model_sha256": "x", "settings": {}})
    journal.append({"key": {"path": "a.wav"}, "rows": [], "windows": []})
    journal._fh = _FullDisk()
    with pytest.raises(UserError, match=r"No space left on device.*files done so far are kept"):
        journal.append({"key": {"path": "b.wav"}, "rows": [], "windows": []})
    journal.close()
    again = Journal(tmp_path / "out", {"model_sha256": "x", "settings": {}})
    assert list(again.done) == ["a.wav"]
    again.close()


def test_outputs_that_fail_after_scoring_are_written_by_the_next_run(
    model: Path, archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ser_live.batch import store

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        patch.setattr(store, "write_windows_parquet", full)
        assert batch(archive, out, model) == USER_ERROR_EXIT
    one_line_error(capsys.readouterr().err, "windows.parquet", "No space left", "re-run")
    assert batch(archive, out, model) == 0
    run = json.loads((out / "run.json").read_text())
    assert (run["resumed_files"], run["scored_this_run"]) == (3, 0) and len(csv_paths(out)) == 3


def test_ser_train_checks_out_before_extracting_and_an_empty_cache_means_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ser_live.train.cli import build_parser
    from ser_live.train.cli import main as train_main
    from tests.audio_fixtures import write_ravdess_tree

    root = tmp_path / "ravdess"
    write_ravdess_tree(root, actors=2, unreadable=False)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    for out, words in ((a_file, "is a file"), (Path("/proc/ser-live-run"), "cannot create --out")):
        assert train_main(["--data", f"ravdess={root}", "--out", str(out), "--cache", "", "-q"]) == USER_ERROR_EXIT
        one_line_error(capsys.readouterr().err, words)
    assert a_file.read_text() == "keep me"
    assert build_parser().parse_args(["--data", "ravdess=x", "--cache", ""]).cache is None
    assert build_parser().parse_args(["--data", "ravdess=x"]).cache == Path(".cache/features")


def test_threads_beyond_the_cpu_count_are_capped(model: Path, caplog: pytest.LogCaptureFixture) -> None:
    load_model(model, threads=1000)
    assert f"1000 inference threads asked for on {os.cpu_count() or 1} CPUs" in caplog.text


# --------------------------------------------------------------------- 6. malformed events and manifests


def _window_line(end: float, **changes: Any) -> dict[str, Any]:
    probs = {"happy": 0.7, "sad": 0.3}
    line = {"type": "window", "start_s": end - 2.0, "end_s": end, "label": "happy", "confidence": 0.7,
            "probs": probs, "raw_probs": probs, "speech_ratio": 1.0}
    line.update(changes)
    return {k: v for k, v in line.items() if v is not None}


@pytest.mark.parametrize(
    ("bad_line", "why"),
    [
        ('{"type": "window", "start_s": NaN, "end_s": 3.0}', "non-finite number (NaN)"),
        (json.dumps(_window_line(3.0)).replace("3.0", "Infinity", 1), "non-finite number (Infinity)"),
        (json.dumps(_window_line(3.0, end_s="late")), "'end_s' is 'late', not a number"),
        (json.dumps(_window_line(3.0, label=None)), "a window without 'label'"),
        (json.dumps({"type": "summary", "audio_s": "long", "windows": 2}), "'audio_s' is 'long'"),
    ],
)
def test_ser_report_skips_a_bad_line_and_names_it(
    tmp_path: Path, bad_line: str, why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    from ser_live.report.cli import main as report_main

    good = [json.dumps(_window_line(2.0 + 0.5 * k)) for k in range(4)]
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join([good[0], good[1], bad_line, good[2], good[3]]) + "\n")
    assert report_main([str(events), "-o", str(tmp_path / "r.png")]) == 0
    md = (tmp_path / "r.md").read_text()
    assert "1 line(s) skipped: line 3: " in md and why in md
    assert "NaN" not in md.replace("(NaN)", "") and "Traceback" not in capsys.readouterr().err
    only_bad = tmp_path / "bad.jsonl"
    only_bad.write_text(bad_line + "\n")
    if '"summary"' not in bad_line:
        assert report_main([str(only_bad), "-o", str(tmp_path / "b.png")]) == USER_ERROR_EXIT
        one_line_error(capsys.readouterr().err, "holds no ser-live events (line 1: ", why)


def test_a_session_without_its_summary_does_not_claim_zero_speech(tmp_path: Path) -> None:
    from ser_live.report.session import markdown, read_jsonl

    events = tmp_path / "killed.jsonl"
    events.write_text("".join(json.dumps(_window_line(2.0 + 0.5 * k)) + "\n" for k in range(4)))
    md = markdown(read_jsonl(events))
    assert "speech unknown (no summary)" in md and "speech 0.0 s" not in md


def test_manifest_paths_with_newlines_and_header_only_manifests(
    model: Path, archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    odd = tmp_path / "two\nlines.wav"
    odd.write_bytes((archive / "clip0.wav").read_bytes())
    manifest = tmp_path / "list.csv"
    with open(manifest, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "note"])
        writer.writerow([str(odd), "a newline in the name"])
        writer.writerow([str(archive / "clip1.wav"), ""])
    out = tmp_path / "out"
    assert batch(manifest, out, model) == 0
    assert csv_paths(out) == ["two\nlines.wav", "clip1.wav"]
    assert batch(out / "files.csv", tmp_path / "again", model) == 0  # ser-batch's own files.csv is a manifest
    assert csv_paths(tmp_path / "again") == ["two\nlines.wav", "clip1.wav"]
    header_only = tmp_path / "empty.csv"
    header_only.write_text("path\n")
    capsys.readouterr()
    assert batch(header_only, tmp_path / "none", model) == USER_ERROR_EXIT
    one_line_error(capsys.readouterr().err, "lists no files")


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv to drop root's file-permission override")
def test_an_unreadable_sub_folder_is_named_not_skipped_silently(model: Path, archive: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    locked = archive / "locked"
    locked.mkdir()
    sf.write(locked / "hidden.wav", np.zeros(RATE, np.float32), RATE)
    locked.chmod(0)
    try:
        # root passes permission checks: run without the capabilities that let it
        done = subprocess.run(
            ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", sys.executable, "-m", "ser_live.batch.cli",
             str(archive), "--out", str(tmp_path / "out"), "--model", str(model), "-q"],
            capture_output=True, text=True, timeout=120,
        )
    finally:
        locked.chmod(0o755)
    assert done.returncode == 0, done.stderr
    assert "cannot read the folder" in done.stderr and "locked" in done.stderr and "not scored" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(csv_paths(tmp_path / "out")) == 3


# ----------------------------------------------------------------------------------- 7. numeric options


LIVE_NUMBERS = [
    ("--duration", "nan"), ("--duration", "inf"), ("--duration", "0"), ("--window", "nan"), ("--window", "0"),
    ("--hop", "-1"), ("--min-speech", "nan"), ("--min-speech", "-1"), ("--smoothing", "0"), ("--smoothing", "nan"),
    ("--min-confidence", "1.5"), ("--vad-noise-margin", "nan"), ("--samplerate", "0"), ("--threads", "0"),
    ("--blas-threads", "0"), ("--take-seconds", "nan"), ("--countdown", "-1"), ("--enroll-takes", "0"),
]


@pytest.mark.parametrize(("flag", "value"), LIVE_NUMBERS, ids=[f"{f}={v}" for f, v in LIVE_NUMBERS])
def test_every_ser_live_number_is_checked_with_its_own_name(
    model: Path, wav: Path, flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert live(wav, model, flag, value) == USER_ERROR_EXIT
    line = one_line_error(capsys.readouterr().err, f"{flag} must be a finite number")
    assert value in line


TRAIN_NUMBERS = [
    ("--window", "nan"), ("--hop", "0"), ("--min-speech", "-1"), ("--vad-noise-margin", "nan"),
    ("--session-restart", "nan"), ("--session-tau", "0"), ("--test-frac", "1"), ("--val-frac", "nan"),
    ("--epochs", "0"), ("--batch-size", "0"), ("--lr", "nan"), ("--patience", "0"), ("--label-smoothing", "1"),
    ("--affect-weight", "nan"),
]


@pytest.mark.parametrize(("flag", "value"), TRAIN_NUMBERS, ids=[f"{f}={v}" for f, v in TRAIN_NUMBERS])
def test_every_ser_train_number_is_checked_before_any_work(
    tmp_path: Path, flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from ser_live.train.cli import main as train_main

    code = train_main(["--data", f"ravdess={tmp_path / 'missing'}", "--out", str(tmp_path / "run"), flag, value])
    assert code == USER_ERROR_EXIT
    one_line_error(capsys.readouterr().err, f"{flag} must be a finite number")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("flag", "value"), [("--temperature", "nan"), ("--temperature", "inf"),
                                             ("--target-accuracy", "nan"), ("--target-accuracy", "1")])
def test_ser_calibrate_numbers(
    model: Path, tmp_path: Path, flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from ser_live.train.calibrate import main as calibrate_main

    code = calibrate_main([str(model), "--data", f"ravdess={tmp_path}", "--speakers", "ravdess:01", "-o",
                           str(tmp_path / "x.onnx"), flag, value])
    assert code == USER_ERROR_EXIT
    one_line_error(capsys.readouterr().err, f"{flag} must be a finite number")


# ------------------------------------------------------------------------------- property-based sweeps

PROPERTY_EXAMPLES = 60  # per property and run; derandomised, so CI sees the same examples every time (set
# derandomize=False and more examples to explore: 400 random ones each passed on 2026-12-02)
PROPERTY_SETTINGS = settings(max_examples=PROPERTY_EXAMPLES, deadline=None, derandomize=True, database=None,
                             suppress_health_check=[HealthCheck.function_scoped_fixture])
SPECIAL_VALUES = [0.0, 1.0, -1.0, 1e-42, -1e-42, 1e11, 1e13, 3e38, float("nan"), float("inf"), float("-inf")]


@st.composite
def audio_arrays(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    rate = draw(st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000, 96000]))
    frames = draw(st.integers(0, int(2.5 * rate)))
    channels = draw(st.sampled_from([None, 1, 2]))
    dtype = draw(st.sampled_from(["float32", "float64", "int16", "int32", "uint8"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = (frames,) if channels is None else (frames, channels)
    level = draw(st.sampled_from([1e-6, 0.01, 0.3, 1.0]))
    envelope = 1 + np.sin(np.linspace(0, 20, frames))
    x = rng.normal(0.0, level, size=shape) * (envelope if channels is None else envelope[:, np.newaxis])
    if dtype.startswith("float"):
        if frames and draw(st.booleans()):  # a few special values at random places
            for value in draw(st.lists(st.sampled_from(SPECIAL_VALUES), min_size=1, max_size=3)):
                x.flat[draw(st.integers(0, x.size - 1))] = value
        return x.astype(dtype), rate
    info = np.iinfo(dtype)
    scaled = np.clip(x * info.max + (0 if info.min < 0 else info.max / 2), info.min, info.max)
    return scaled.astype(dtype), rate


@PROPERTY_SETTINGS
@given(audio_arrays())
def test_any_audio_array_gives_a_finite_verdict_or_a_user_error(model: Path, case: tuple[np.ndarray, int]) -> None:
    from ser_live.realtime.api import EmotionRecognizer

    samples, rate = case
    recognizer = EmotionRecognizer(model=model)
    try:
        result = recognizer.predict(samples, rate)
    except UserError as err:
        assert str(err) and "\n" not in str(err)
        bad = samples.dtype.kind == "f" and samples.size and (
            not np.isfinite(samples).all() or np.abs(samples).max() > MAX_ABS_SAMPLE)
        assert bad or samples.size == 0, f"refused good audio: {err}"
        return
    if result.label is None:
        assert result.probs == {} or all(math.isfinite(v) for v in result.probs.values())
        return
    assert all(math.isfinite(v) for v in result.probs.values())
    assert sum(result.probs.values()) == pytest.approx(1.0, abs=1e-4)
    for w in result.windows:
        no_nan_json(json.dumps(w.to_dict()))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)


@st.composite
def jsonl_lines(draw: st.DrawFn) -> str:
    """A ser-live window or summary line with fields dropped, replaced or added, or any JSON, or any text."""
    kind = draw(st.sampled_from(["window", "summary", "json", "text"]))
    if kind == "text":
        return draw(st.text(max_size=40)).replace("\n", " ")
    if kind == "json":
        return json.dumps(draw(json_values))
    base: dict[str, Any] = (_window_line(draw(st.floats(0, 100))) if kind == "window" else
                            {"type": "summary", "audio_s": 10.0, "speech_s": 5.0, "windows": 3})
    for key in draw(st.lists(st.sampled_from(sorted(base)), max_size=2, unique=True)):
        if draw(st.booleans()):
            del base[key]
        else:
            base[key] = draw(json_values)
    return json.dumps(base)


@PROPERTY_SETTINGS
@given(st.lists(jsonl_lines(), min_size=1, max_size=8))
def test_any_jsonl_gives_a_report_without_nan_or_a_user_error(tmp_path: Path, lines: list[str]) -> None:
    from ser_live.report.session import markdown, read_jsonl

    events = tmp_path / "events.jsonl"
    events.write_text("\n".join([json.dumps(_window_line(2.0)), *lines]) + "\n")
    try:
        session = read_jsonl(events)
    except UserError as err:
        assert "\n" not in str(err)
        return
    text = markdown(session)
    for named in ("(NaN)", "(Infinity)", "(-Infinity)"):  # the skipped-line note names what it skipped
        text = text.replace(named, "")
    # a number drawn as nan/inf, not a quoted key or value that a skipped line held
    assert not re.search(r"(?<![\w'\"])-?(nan|inf)(?![\w'\"])", text, re.IGNORECASE), text
    assert all(math.isfinite(e.end_s) and math.isfinite(e.confidence) for e in session.events)


def _options(parser: Any) -> set[str]:
    import argparse

    found = set()
    for action in parser._actions:
        found |= {o for o in action.option_strings if o.startswith("--")}
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _options(sub)
    return found


def test_every_option_a_message_names_exists() -> None:
    """A message that tells the user to pass --something names an option some command has (issue 20.7)."""
    import importlib
    import re

    root = Path(__file__).resolve().parents[1]
    defined: set[str] = set()
    for module in ("ser_live.realtime.faces.cli", "ser_live.realtime.faces.profile_cli",
                   "ser_live.realtime.faces.serve_cli", "ser_live.train.cli", "ser_live.train.eval_cli",
                   "ser_live.train.calibrate", "ser_live.export.cli", "ser_live.batch.cli", "ser_live.report.cli"):
        defined |= _options(importlib.import_module(module).build_parser())
    named: dict[str, set[str]] = {}
    for folder in ("realtime", "train", "batch", "export", "report"):
        for source in (root / folder).rglob("*.py"):
            for flag in re.findall(r"(?<![\w`-])--[a-z][a-z0-9-]+", source.read_text(encoding="utf-8")):
                named.setdefault(flag, set()).add(source.name)
    shell = {"--head"}  # `ray start --head`, quoted from Ray's own CLI
    assert {f: sorted(w) for f, w in named.items() if f not in defined | shell} == {}


def test_ser_eval_and_ser_calibrate_skip_a_huge_sample_file_and_write_no_nan(
    tmp_path: Path, voice: np.ndarray, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 20.1: a clip x 1e30 in a corpus was counted as angry and put NaN into eval.json and the model."""
    from ser_live.train.calibrate import main as calibrate_main
    from ser_live.train.eval_cli import main as eval_main
    from tests.audio_fixtures import ravdess_name, write_ravdess_tree

    root = tmp_path / "ravdess"
    write_ravdess_tree(root, actors=2, unreadable=False)
    huge = root / "Actor_01" / ravdess_name("05", 1, intensity=2)
    sf.write(huge, (voice * 1e30).astype(np.float32), RATE, subtype="FLOAT")
    model = make_tiny_model(tmp_path / "tiny.onnx", preset_name="logmel")
    out = tmp_path / "eval"
    assert eval_main([str(model), "--data", f"ravdess={root}", "--conditions", "clean", "--out", str(out), "-q"]) == 0
    figures = no_nan_json((out / "eval.json").read_text())
    assert any(huge.name in json.dumps(entry) for entry in figures["unreadable"])
    report = tmp_path / "cal.json"
    assert calibrate_main([str(model), "--data", f"ravdess={root}", "--speakers", "ravdess:01,ravdess:02", "-o",
                           str(tmp_path / "cal.onnx"), "--report", str(report)]) == 0
    no_nan_json(report.read_text())
    assert "Traceback" not in capsys.readouterr().err
