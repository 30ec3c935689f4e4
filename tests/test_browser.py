"""The live page in a real browser (headless Chromium, started by the test): during a ``ser-live --serve`` replay it
shows the label and bars of the events the JSONL has, and gets the summary on Ctrl-C; from ``ser-serve`` it
streams the browser's microphone (Chromium's fake capture, fed from a WAV the test synthesises) and shows the
labels that come back. Screenshots go to the test's folder, and to ``$SER_SCREENSHOT_DIR`` when set (the README's
picture: ``SER_SCREENSHOT_DIR=docs python -m pytest tests/test_browser.py``)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from ser_live.realtime.model import load_model
from tests.audio_fixtures import espeak_wav
from tests.browser import Browser

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MIN_SCREENSHOT_BYTES = 20_000  # a blank page is a few kB


def start(argv: list[str], stderr_pattern: str) -> tuple[subprocess.Popen[str], re.Match[str]]:
    proc = subprocess.Popen([sys.executable, "-m", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    lines = []
    for _ in range(3):  # the address is among the first lines (--demo says what the demo is first)
        lines.append(proc.stderr.readline())  # type: ignore[union-attr]
        found = re.search(stderr_pattern, lines[-1])
        if found is not None:
            return proc, found
    proc.kill()
    raise AssertionError(f"no server address in {lines!r}")


def stop(proc: subprocess.Popen[str]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


def keep(shot: Path, name: str) -> None:
    data = shot.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > MIN_SCREENSHOT_BYTES, len(data)
    folder = os.environ.get("SER_SCREENSHOT_DIR")
    if folder:
        shutil.copyfile(shot, Path(folder) / name)


BARS = "[...document.querySelectorAll('.bar')].map(r => [r.dataset.label, r.querySelector('.fill').style.width])"


def test_the_page_shows_the_replay_and_its_summary(tmp_path: Path) -> None:
    jsonl = tmp_path / "events.jsonl"
    proc, found = start(["ser_live.realtime.faces.cli", "--demo", "--no-dashboard", "--jsonl", str(jsonl), "--serve",
                         "127.0.0.1:0"], r"(http://127\.0\.0\.1:\d+/)")
    try:
        with Browser(found.group(1), tmp_path / "chromium") as page:
            page.wait_for("windows.length >= 16", timeout_s=60)  # ~9 s into the 23 s recording
            shown: dict[str, Any] = page.evaluate(
                "({label: document.getElementById('label').textContent, end_s: windows[windows.length - 1].end_s, "
                f"bars: {BARS}, source: document.getElementById('source').textContent}})")
            shot = page.screenshot(tmp_path / "page.png")
            assert stop(proc) == 130  # Ctrl-C: the summary reaches the page, then the server closes
            summary = page.wait_for("summary", timeout_s=15)
            ended = page.wait_for("document.getElementById('conn').textContent.startsWith('session ended') && "
                                  "document.getElementById('conn').textContent")
            counters = page.evaluate("document.getElementById('counters').textContent")
            gone = page.wait_for("document.getElementById('conn').textContent.includes('has stopped') && "
                                 "document.getElementById('conn').textContent", timeout_s=15)
    finally:
        stop(proc)
    written = [json.loads(line) for line in jsonl.read_text().splitlines()]
    windows = {e["end_s"]: e for e in written if e["type"] == "window"}
    event = windows[shown["end_s"]]
    assert shown["label"] == ("uncertain" if event["uncertain"] else event["label"])
    assert [label for label, _ in shown["bars"]] == list(event["probs"])
    for label, width in shown["bars"]:
        assert float(width.rstrip("%")) == pytest.approx(100 * event["probs"][label], abs=0.06)
    assert "demo.wav" in shown["source"] and ended.startswith("session ended")
    assert summary == written[-1] and summary["type"] == "summary"
    assert counters.startswith(f"windows {summary['windows']} ")  # the final count, not the last status's
    assert "ser-live has stopped" in gone  # not "waiting for the next" once nothing will come
    keep(shot, "web-page.png")


def test_a_page_opened_after_the_demo_ended_shows_the_finished_session(tmp_path: Path) -> None:
    """ser-live --demo --serve --stay: the page is opened only once the recording is over, and still shows the
    session (its last window's label and the final count), that it has ended, and that the demo is synthetic."""
    jsonl = tmp_path / "events.jsonl"
    proc, found = start(["ser_live.realtime.faces.cli", "--demo", "--fast", "--no-dashboard", "--jsonl", str(jsonl),
                         "--serve", "127.0.0.1:0", "--stay"], r"(http://127\.0\.0\.1:\d+/)")
    try:
        for _ in range(10):  # the summary line, then "keeps the finished session until Ctrl-C"
            line = proc.stderr.readline()  # type: ignore[union-attr]
            if "until Ctrl-C" in line or not line:
                break
        assert "until Ctrl-C" in line, line
        with Browser(found.group(1), tmp_path / "chromium") as page:
            page.wait_for("summary", timeout_s=15)
            shown: dict[str, Any] = page.evaluate(
                "({label: document.getElementById('label').textContent, count: windows.length, "
                "conn: document.getElementById('conn').textContent, "
                "source: document.getElementById('source').textContent, "
                "counters: document.getElementById('counters').textContent})")
            shot = page.screenshot(tmp_path / "ended.png")
    finally:
        assert stop(proc) == 0  # Ctrl-C after the end: a normal exit
    written = [json.loads(line) for line in jsonl.read_text().splitlines()]
    windows = [e for e in written if e["type"] == "window"]
    assert 0 < shown["count"] == min(len(windows), 120)
    assert shown["label"] == ("uncertain" if windows[-1]["uncertain"] else windows[-1]["label"])
    assert shown["conn"].startswith("session ended")
    assert "demo.wav (synthetic speech: faint emotions)" in shown["source"]  # says what the demo is
    assert shown["counters"].startswith(f"windows {written[-1]['windows']} ")
    keep(shot, "web-ended.png")


def test_the_page_streams_the_browsers_microphone_to_ser_serve(tmp_path: Path) -> None:
    wav = espeak_wav(tmp_path / "voice.wav", "The meeting moved to Thursday morning, and nobody told me about it. "
                     "I waited in that room for an hour.", speed=150)
    proc, found = start(["ser_live.realtime.faces.serve_cli", "127.0.0.1:0"], r"(http://127\.0\.0\.1:(\d+)/)")
    status = f"http://127.0.0.1:{found.group(2)}/status"
    fake_mic = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={wav}"]
    try:
        with Browser(found.group(1), tmp_path / "chromium", fake_mic) as page:
            page.wait_for("document.getElementById('mic').style.display === 'inline-block'")
            before = page.evaluate("({label: document.getElementById('label').textContent, "
                                   "conn: document.getElementById('conn').className})")
            page.evaluate("document.getElementById('mic').click()")
            page.wait_for("windows.length >= 3", timeout_s=60)
            seen = page.evaluate("({labels, shown: document.getElementById('label').textContent, "
                                 "rate: windows.length, error: document.getElementById('error').textContent})")
            health = json.loads(urllib.request.urlopen(status).read())
            shot = page.screenshot(tmp_path / "microphone.png")
            page.evaluate("document.getElementById('mic').click()")  # stop: "end", then the summary
            summary = page.wait_for("summary", timeout_s=15)
            time.sleep(0.5)
            after = json.loads(urllib.request.urlopen(status).read())
    finally:
        assert stop(proc) == 0
    assert before == {"label": "idle", "conn": ""}  # no "listening", no red, before any microphone
    assert seen["error"] == "" and seen["shown"] in [*seen["labels"], "uncertain"]
    assert health["sessions"] == 1 and health["mode"] == "serve"
    assert summary["windows"] >= 3 and after["sessions"] == 0 and after["windows"] == summary["windows"]
    assert seen["labels"] == list(load_model().labels)  # the bundled model's, from the stream's hello
    keep(shot, "web-microphone.png")
