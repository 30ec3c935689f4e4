"""``ser-batch`` on archives the tests write (synthetic voices, a bad file, silence, a stereo call, manifests).

Same rows for 1 and 2 workers and for a local Ray (started here); the same windows as ``ser-live --file``; resume
skips what is done (and re-scores a changed file); a bad file is a row, not a stop; Ctrl-C keeps finished rows.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from ser_live.batch.cli import main
from ser_live.realtime.api import EmotionRecognizer
from tests.audio_fixtures import CORPUS_RATE, voiced_tone, write_ravdess_tree
from tests.tiny_model import TINY_LABELS, make_tiny_model

ROOT = Path(__file__).resolve().parents[1]
INTERRUPT_FILES = 150
INTERRUPT_FILE_S = 8.0
TIMEOUT_S = 120
PROB_ATOL = 1e-4  # batched vs one-window ONNX Runtime calls: float rounding only


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("archive")
    good, bad = write_ravdess_tree(root / "calls", actors=2, unreadable=True)
    silent = root / "calls" / "silence.wav"
    sf.write(silent, np.zeros(2 * CORPUS_RATE, np.float32), CORPUS_RATE)
    agent = voiced_tone(110.0, 3.0, 0.15, 3.0, seed=1)  # a low, calm voice on the left ...
    customer = voiced_tone(260.0, 3.0, 0.5, 7.0, seed=2)  # ... a high, agitated one on the right
    stereo = root / "stereo" / "call.wav"
    stereo.parent.mkdir()
    sf.write(stereo, np.stack([agent, customer], axis=1), CORPUS_RATE)
    model = make_tiny_model(root / "tiny.onnx", preset_name="logmel")
    return {"root": root, "good": good, "bad": bad, "silent": silent, "stereo": stereo, "model": model}


def ser_batch(archive: dict[str, Any], out: Path, *args: str) -> int:
    return main([*args, "--out", str(out), "--model", str(archive["model"]), "-q"])


def rows(out: Path) -> list[dict[str, str]]:
    with open(out / "files.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def windows(out: Path) -> Any:
    import pyarrow.parquet as pq

    return pq.read_table(out / "windows.parquet")


@pytest.fixture(scope="module")
def one_worker(archive: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("w1")
    assert ser_batch(archive, out, str(archive["root"] / "calls"), "--workers", "1") == 0
    return out


def test_every_file_gets_a_row_and_a_bad_one_does_not_stop_the_batch(archive: dict[str, Any],
                                                                     one_worker: Path) -> None:
    got = {Path(r["path"]).name: r for r in rows(one_worker)}
    assert len(got) == len(archive["good"]) + 2
    assert all(got[p.name]["status"] == "ok" and got[p.name]["label"] in TINY_LABELS for p in archive["good"])
    bad = got[archive["bad"].name]
    assert bad["status"] == "error" and bad["error"] and "\n" not in bad["error"] and bad["label"] == ""
    assert got["silence.wav"]["status"] == "no_speech" and got["silence.wav"]["windows"] == "0"
    for p in archive["good"]:
        probs = [float(got[p.name][f"prob_{label}"]) for label in TINY_LABELS]
        assert sum(probs) == pytest.approx(1.0, abs=1e-4)
        assert float(got[p.name]["confidence"]) == pytest.approx(max(probs))
        assert 0 < float(got[p.name]["speech_s"]) <= float(got[p.name]["duration_s"])
    run = json.loads((one_worker / "run.json").read_text())
    assert run["counts"] == {"inputs": 16, "files_done": 16, "files_in_outputs": 16, "rows": 16,
                             "windows": run["counts"]["windows"], "ok": 14, "no_speech": 1, "error": 1}
    assert run["model"]["sha256"] and run["complete"] and run["backend"] == "local"
    assert run["audio_hours"] > 0


def test_two_workers_give_identical_rows(archive: dict[str, Any], one_worker: Path, tmp_path: Path) -> None:
    assert ser_batch(archive, tmp_path, str(archive["root"] / "calls"), "--workers", "2") == 0
    assert rows(tmp_path) == rows(one_worker)
    assert windows(tmp_path).equals(windows(one_worker))


def test_windows_are_those_of_ser_live_file(archive: dict[str, Any], one_worker: Path, tmp_path: Path) -> None:
    from ser_live.realtime.faces.cli import main as live_main

    clip = archive["good"][3]
    events_path = tmp_path / "events.jsonl"
    assert live_main(["--file", str(clip), "--fast", "--no-dashboard", "--jsonl", str(events_path),
                      "--model", str(archive["model"])]) == 0
    live = [json.loads(line) for line in events_path.read_text().splitlines()][:-1]
    table = windows(one_worker).to_pylist()
    mine = [w for w in table if Path(w["path"]).name == clip.name]
    assert len(mine) == len(live) > 0
    for w, e in zip(mine, live, strict=True):
        assert (w["start_s"], w["end_s"], w["label"]) == (pytest.approx(e["start_s"]), pytest.approx(e["end_s"]),
                                                          e["label"])
        for label in TINY_LABELS:
            assert w[f"prob_{label}"] == pytest.approx(e["probs"][label], abs=PROB_ATOL)
            assert w[f"raw_{label}"] == pytest.approx(e["raw_probs"][label], abs=PROB_ATOL)
    verdict = EmotionRecognizer(archive["model"]).predict_file(clip)
    row = next(r for r in rows(one_worker) if Path(r["path"]).name == clip.name)
    assert row["label"] == verdict.label
    assert float(row["arousal"]) == pytest.approx(verdict.arousal, abs=1e-3)
    assert float(row["valence"]) == pytest.approx(verdict.valence, abs=1e-3)
    for w, e in zip(mine, live, strict=True):
        assert w["arousal"] == pytest.approx(e["arousal"], abs=1e-3) and w["uncertain"] == e["uncertain"]


def test_parquet_schema(one_worker: Path) -> None:
    import pyarrow as pa

    schema = windows(one_worker).schema
    expected = ["path", "channel", "start_s", "end_s", "label", "confidence", "uncertain", "arousal", "valence",
                "speech_ratio", *(f"prob_{label}" for label in TINY_LABELS), *(f"raw_{label}" for label in TINY_LABELS)]
    assert schema.names == expected
    assert all(schema.field(n).type == pa.string() for n in ("path", "channel", "label"))
    assert schema.field("uncertain").type == pa.bool_()
    assert all(schema.field(n).type == pa.float64() for n in expected[2:] if n not in ("label", "uncertain"))
    table = windows(one_worker).to_pylist()
    assert table and all(-1.0 <= w["arousal"] <= 1.0 and -1.0 <= w["valence"] <= 1.0 for w in table)


def test_resume_skips_done_files_and_rescored_changed_ones(archive: dict[str, Any], tmp_path: Path) -> None:
    calls = archive["root"] / "calls"
    files = sorted(str(p) for p in archive["good"])
    copy = tmp_path / "copy.wav"
    shutil.copy(files[0], copy)
    assert ser_batch(archive, tmp_path / "out", *files[:5], str(copy)) == 0
    assert ser_batch(archive, tmp_path / "out", *files, str(copy)) == 0
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert (run["resumed_files"], run["scored_this_run"]) == (6, len(files) - 5)
    assert len(rows(tmp_path / "out")) == len(files) + 1
    os.utime(copy, ns=(time.time_ns(), time.time_ns()))  # changed: scored again
    assert ser_batch(archive, tmp_path / "out", *files, str(copy)) == 0
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert (run["resumed_files"], run["scored_this_run"]) == (len(files), 1)
    other = make_tiny_model(tmp_path / "other.onnx", preset_name="logmel", seed=5)
    before = (tmp_path / "out" / "files.csv").read_bytes()
    # another model into a finished run: refused, the run intact; with --fresh, afresh
    assert main([str(calls), "--out", str(tmp_path / "out"), "--model", str(other), "-q"]) == 2
    assert (tmp_path / "out" / "files.csv").read_bytes() == before
    assert main([str(calls), "--out", str(tmp_path / "out"), "--model", str(other), "-q", "--fresh"]) == 0
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["resumed_files"] == 0 and run["scored_this_run"] == 16


def test_split_channels_score_each_side_of_a_call(archive: dict[str, Any], tmp_path: Path) -> None:
    assert ser_batch(archive, tmp_path / "split", str(archive["stereo"]), "--channels", "split") == 0
    split = rows(tmp_path / "split")
    assert [r["channel"] for r in split] == ["0", "1"] and all(r["status"] == "ok" for r in split)
    left, right = ([float(r[f"prob_{label}"]) for label in TINY_LABELS] for r in split)
    assert np.abs(np.array(left) - np.array(right)).max() > 0.01  # two voices, two verdicts
    assert set(windows(tmp_path / "split").column("channel").to_pylist()) == {"0", "1"}
    assert ser_batch(archive, tmp_path / "mix", str(archive["stereo"])) == 0
    assert [r["channel"] for r in rows(tmp_path / "mix")] == ["mix"]


def test_manifests_csv_and_txt(archive: dict[str, Any], tmp_path: Path) -> None:
    calls = archive["root"] / "calls"
    picked = [p for p in archive["good"][:3]]
    manifest = calls / "list.csv"
    manifest.write_text("path,notes\n" + "".join(f"{p.relative_to(calls)},x\n" for p in picked))
    assert ser_batch(archive, tmp_path / "csv", str(manifest)) == 0
    assert [Path(r["path"]).name for r in rows(tmp_path / "csv")] == [p.name for p in picked]
    txt = tmp_path / "list.txt"
    txt.write_text("# a comment\n" + "".join(f"{p}\n" for p in picked) + f"{calls}/missing.wav\n")
    assert ser_batch(archive, tmp_path / "txt", str(txt)) == 0
    got = rows(tmp_path / "txt")
    assert [r["status"] for r in got] == ["ok", "ok", "ok", "error"] and "No such file" in got[-1]["error"]
    assert got[-1]["path"].endswith("missing.wav")
    manifest.unlink()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/nonexistent/folder"], "input /nonexistent/folder does not exist"),
        (["--workers", "0", "."], "--workers must be at least 1"),
        (["/nonexistent/*.wav"], "matches no audio file"),
    ],
)
def test_bad_arguments_are_one_line(archive: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    args: list[str], message: str) -> None:
    assert ser_batch(archive, tmp_path, *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("ser-batch: error: ") and message in err and err.count("\n") == 1


def test_no_file_scored_is_a_non_zero_exit(archive: dict[str, Any], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert ser_batch(archive, tmp_path, str(archive["bad"])) == 1
    err = capsys.readouterr().err
    assert "none of the 1 files could be scored" in err and err.count("\n") == 1
    assert rows(tmp_path)[0]["status"] == "error"  # the error row is written all the same


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_stop_keeps_finished_rows_and_a_rerun_finishes(archive: dict[str, Any], tmp_path: Path,
                                                         sig: signal.Signals) -> None:
    one = tmp_path / "one.wav"
    sf.write(one, voiced_tone(150.0, INTERRUPT_FILE_S, 0.3, 4.0, seed=3), CORPUS_RATE)
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(INTERRUPT_FILES):
        os.link(one, folder / f"f{i:03d}.wav")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "ser_live.batch.cli", str(folder), "--out", str(out), "--workers", "1", "--model",
           str(archive["model"])]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = out / ".ser-batch" / "journal.jsonl"
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline and (not journal.exists() or journal.read_text().count("\n") < 4):
        time.sleep(0.01)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "stopping after the files being scored" in err
    done = rows(out)
    assert 3 <= len(done) < INTERRUPT_FILES and all(r["status"] == "ok" for r in done)
    assert json.loads((out / "run.json").read_text())["complete"] is False
    assert main([str(folder), "--out", str(out), "--workers", "1", "--model", str(archive["model"]), "-q"]) == 0
    assert len(rows(out)) == INTERRUPT_FILES
    assert json.loads((out / "run.json").read_text())["resumed_files"] == len(done)


def test_ray_gives_the_rows_of_the_local_run(archive: dict[str, Any], one_worker: Path, tmp_path: Path) -> None:
    """A local Ray (started by ser-batch --ray) with an actor pool of two: the same outputs as one local worker."""
    assert ser_batch(archive, tmp_path, str(archive["root"] / "calls"), "--ray", "--workers", "2") == 0
    assert rows(tmp_path) == rows(one_worker)
    assert windows(tmp_path).equals(windows(one_worker))
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["backend"] == "ray" and run["ray_address"] == "auto"


def test_ray_address_resolution_and_connect_errors() -> None:
    """--ray / auto follow RAY_ADDRESS when it is set (else a local Ray), local is always local; a cluster that
    cannot be joined gets one line naming it and, outside token mode, how to give Ray its token."""
    pytest.importorskip("ray")
    from ser_live.batch.ray_backend import _init_options, connect_error, resolve_address

    assert resolve_address("auto", {}) is None and resolve_address(None, {}) is None
    assert resolve_address("auto", {"RAY_ADDRESS": "head:6379"}) == "head:6379"
    assert resolve_address("local", {"RAY_ADDRESS": "head:6379"}) is None
    assert resolve_address("10.0.0.5:6379", {"RAY_ADDRESS": "head:6379"}) == "10.0.0.5:6379"
    env = {"RAY_ADDRESS": "head:6379"}
    local = _init_options(None, 3, env)
    assert local["num_cpus"] == 3 and "address" not in local and "RAY_ADDRESS" not in env
    assert _init_options("head:6379", 3, {})["address"] == "head:6379"
    err = connect_error("head:6379", ConnectionError("Failed to connect to Ray cluster at head:6379\nmore"), {})
    assert str(err).startswith("cannot reach the Ray cluster at head:6379: Failed to connect") and "\n" not in str(err)
    assert "RAY_AUTH_MODE=token" in str(err) and "ray get-auth-token" in str(err)
    assert "RAY_AUTH_MODE" not in str(connect_error("head:6379", ConnectionError("x"), {"RAY_AUTH_MODE": "token"}))
    assert "could not start a local Ray" in str(connect_error(None, RuntimeError("no shm"), {}))


def test_window_columns_round_trip_and_read_older_journals() -> None:
    """Windows travel as columns (array('d'), NaN = null); a journal written as row dicts (older runs) still reads."""
    import json

    from ser_live.batch.store import WindowColumns, json_default, window_columns

    labels = ("happy", "sad")
    rows = [{name: 0.25 * i for name in window_columns(labels)} | {"path": "a.wav", "channel": "mix",
            "label": "sad", "uncertain": i % 2 == 0, "arousal": None} for i in range(3)]
    cols = WindowColumns.of(rows, labels)
    assert len(cols) == 3 and list(cols.data["end_s"]) == [0.0, 0.25, 0.5]
    back = WindowColumns.of(json.loads(json.dumps({"w": cols}, default=json_default))["w"], labels)
    assert back.to_json() == cols.to_json()
    assert back.to_json()["columns"]["arousal"] == [None, None, None]
    assert back.to_json()["columns"]["uncertain"] == [True, False, True]


def test_a_truncated_wav_gets_a_note_in_its_row(archive: dict[str, Any], tmp_path: Path) -> None:
    data = archive["stereo"].read_bytes()
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "cut.wav").write_bytes(data[: len(data) // 2])
    (folder / "whole.wav").write_bytes(data)
    assert ser_batch(archive, tmp_path / "out", str(folder), "--workers", "1") == 0
    got = {Path(r["path"]).name: r for r in rows(tmp_path / "out")}
    assert got["cut.wav"]["status"] == "ok" and got["cut.wav"]["note"].startswith("truncated: its header says 3.00 s")
    assert got["whole.wav"]["note"] == ""
