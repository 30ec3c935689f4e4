"""The dashboard as a person sees it: rendered into an 80x24 ``Console(file=StringIO())``."""

from __future__ import annotations

import re
import threading
from dataclasses import replace
from io import StringIO
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from rich.cells import cell_len
from rich.console import Console
from rich.segment import Segment

from ser_live.realtime.events import WindowEvent
from ser_live.realtime.faces.dashboard import (
    LABEL_WIDTH,
    LEVEL_BAR_WIDTH,
    LISTENING,
    SILENCE_DBFS,
    TIMELINE_SECONDS,
    DashboardSnapshot,
    DashboardState,
    LiveDashboard,
    affect_bar,
    block_dbfs,
    plain_line,
    render,
    timeline_cells,
)
from ser_live.realtime.palette import LABEL_COLORS, label_color

LABELS = ["angry", "calm", "disgust", "fearful", "happy", "neutral", "sad", "surprised"]
WIDTH, HEIGHT = 80, 24
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _probs(top: str, p_top: float) -> dict[str, float]:
    rest = (1.0 - p_top) / (len(LABELS) - 1)
    return {label: (p_top if label == top else rest) for label in LABELS}


def _event(start: float, label: str, p: float, latency: dict[str, float] | None = None, **kw: Any) -> WindowEvent:
    probs = _probs(label, p)
    return WindowEvent(
        start_s=start,
        end_s=start + 3.0,
        label=label,
        confidence=p,
        probs=probs,
        raw_probs=probs,
        speech_ratio=kw.get("speech_ratio", 0.9),
        latency_ms=latency if latency is not None else {"features": 0.5, "inference": 0.3, "total": 1.0},
    )


def _state(**kw: Any) -> DashboardState:
    defaults: dict[str, Any] = {
        "device": "4 'pulse'",
        "device_rate": 44100,
        "model_rate": 16000,
        "provider": "CPUExecutionProvider",
        "model": "default.onnx (seed180)",
    }
    return DashboardState(LABELS, **(defaults | kw))


def _screen(state: DashboardState | DashboardSnapshot, width: int = WIDTH, color: bool = False) -> str:
    console = Console(
        file=StringIO(),
        width=width,
        height=HEIGHT,
        force_terminal=color,
        color_system="truecolor" if color else None,
    )
    console.print(render(state, width))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    return ANSI.sub("", text) if color else text


def _line(screen: str, startswith: str) -> str:
    return next(line for line in screen.splitlines() if line.startswith(startswith))


def _assert_fits(screen: str, width: int = WIDTH) -> None:
    lines = screen.rstrip("\n").splitlines()
    assert len(lines) <= HEIGHT, f"{len(lines)} lines:\n{screen}"
    assert max(cell_len(line) for line in lines) <= width


def test_before_any_window_it_says_listening_and_shows_every_label() -> None:
    screen = _screen(_state())
    assert LISTENING in screen
    for label in LABELS:
        assert re.search(rf"^{label}\s.*\s0%", screen, re.M), label
    assert re.search(r"windows\s+0\b", screen)
    assert "speech —" in screen
    _assert_fits(screen)


def test_current_emotion_confidence_and_one_bar_per_label() -> None:
    state = _state()
    state.update_window(_event(0.0, "happy", 0.78))
    screen = _screen(state)
    assert LISTENING not in screen
    assert "HAPPY 78%" in screen
    bars = {label: _line(screen, label) for label in LABELS}
    for label, line in bars.items():
        expected = 78 if label == "happy" else round(22 / 7)
        assert f" {expected}%" in line, line
    # bar lengths follow the probabilities: the winner's bar is ~0.78 of the bar width, the others ~0.03
    blocks = {label: line.count("█") for label, line in bars.items()}
    bar_width = bars["happy"].count("█") + bars["happy"].count("░") + sum(bars["happy"].count(c) for c in "▏▎▍▌▋▊▉")
    assert blocks["happy"] == int(0.78 * bar_width)
    assert all(blocks[label] <= 1 for label in LABELS if label != "happy")
    _assert_fits(screen)


def test_accepts_dicts_and_plain_objects_as_events() -> None:
    event = _event(2.0, "sad", 0.61)
    from_dict = _state()
    from_dict.update_window(event.to_dict())
    from_obj = _state()
    from_obj.update_window(SimpleNamespace(**vars(event)))
    for state in (from_dict, from_obj):
        snap = state.snapshot()
        assert snap.label == "sad" and snap.confidence == pytest.approx(0.61)
        assert "SAD 61%" in _screen(state)


def test_labels_come_from_the_events_when_not_given() -> None:
    state = DashboardState()
    state.update_window(_event(0.0, "angry", 0.9))
    assert state.snapshot().labels == tuple(sorted(LABELS))


def test_device_rates_model_provider_counters_and_elapsed_are_shown() -> None:
    state = _state()
    state.update_stats(dropped_s=1.5, overflows=3, elapsed_s=3723)
    screen = _screen(state)
    assert "4 'pulse'" in screen
    assert "44100 Hz → 16000 Hz" in screen
    assert "model default.onnx (seed180)" in screen
    assert "provider CPU" in screen and "ExecutionProvider" not in screen
    assert re.search(r"dropped\s+1\.5 s", screen)
    assert re.search(r"overflows\s+3\b", screen)
    assert "elapsed 1:02:03" in screen
    _assert_fits(screen)


def test_latency_percentiles_over_recent_windows() -> None:
    state = _state()
    for i in range(100):
        latency = {"features": float(i + 1), "inference": 0.01 * (i + 1), "total": 200.0 + i, "end_to_end": 400.0 + i}
        state.update_window(_event(float(i), "neutral", 0.5, latency))
    screen = _screen(state)
    assert re.search(r"latency ms\s+p50\s+p95", screen)
    # features 1..100 ms: p50 = 50.5, p95 = 95.05 (linear interpolation)
    assert re.search(r"features\s+50\.50\s+95\.05", screen), screen
    assert re.search(r"inference\s+0\.51\s+0\.95", screen)
    assert re.search(r"compute\s+250\s+294", screen)
    assert re.search(r"end-to-end\s+450\s+494", screen)
    assert re.search(r"windows\s+100\b", screen)


def test_speech_indicator_and_level_meter() -> None:
    state = _state()
    state.update_level(-23.4, True)
    screen = _screen(state)
    assert "● speech" in screen
    assert "-23 dBFS" in screen
    meter = re.search(r"level ([█▏▎▍▌▋▊▉░]+)", screen)
    assert meter is not None
    assert len(meter.group(1)) == LEVEL_BAR_WIDTH
    assert meter.group(1).count("█") == int((60 - 23.4) / 60 * LEVEL_BAR_WIDTH)  # the bar spans -60..0 dBFS
    state.update_level(SILENCE_DBFS, False)
    screen = _screen(state)
    assert "○ silence" in screen
    assert "<-60 dBFS" in screen


def test_silence_after_a_window_goes_back_to_listening_with_the_last_emotion() -> None:
    state = _state()
    state.update_window(_event(0.0, "angry", 0.66))
    state.update_level(-50.0, False, audio_s=3.5)  # just after the window: still shown
    assert "ANGRY 66%" in _screen(state)
    state.update_level(-50.0, False, audio_s=10.0)  # seconds of silence since
    screen = _screen(state)
    assert "ANGRY" not in screen
    assert f"{LISTENING}  (last: angry 66%)" in screen
    state.update_level(-20.0, True, audio_s=10.5)  # speech again, no new window yet: keep the last emotion
    assert "ANGRY 66%" in _screen(state)


def test_timeline_buckets_follow_the_windows_over_the_last_minute() -> None:
    state = _state()
    state.update_window(_event(10.0, "angry", 0.7))  # covers 10-13 s
    state.update_window(_event(11.0, "sad", 0.7))  # 11-14 s: later window wins where they overlap
    state.update_window(_event(30.0, "happy", 0.7))  # 30-33 s
    state.update_level(-40, False, audio_s=70.0)  # now = 70 s: the minute shown is 10-70 s
    cells = timeline_cells(state.snapshot(), 60)
    assert len(cells) == 60
    assert cells[0] == "angry"  # 10-11 s
    assert cells[1:4] == ["sad", "sad", "sad"]  # 11-14 s
    assert cells[4:20] == [None] * 16  # 14-30 s: no window
    assert cells[20:23] == ["happy"] * 3
    assert cells[23:] == [None] * 37

    # 60 s later the angry/sad windows have left the timeline
    state.update_level(-40, False, audio_s=75.0)
    cells = timeline_cells(state.snapshot(), 60)
    assert "angry" not in cells and "sad" not in cells
    assert cells[15:18] == ["happy"] * 3


def test_timeline_before_the_stream_started_is_blank() -> None:
    state = _state()
    state.update_window(_event(0.0, "calm", 0.8))
    cells = timeline_cells(state.snapshot(), 60)
    assert cells[:57] == [""] * 57  # -57..0 s: before the stream
    assert cells[57:] == ["calm"] * 3


def _timeline_segments(state: DashboardState) -> list[Segment]:
    console = Console(file=StringIO(), width=WIDTH, height=HEIGHT, force_terminal=True, color_system="truecolor")
    lines = list(Segment.split_lines(console.render(render(state, WIDTH), console.options)))
    texts = ["".join(seg.text for seg in line) for line in lines]
    rule = next(i for i, text in enumerate(texts) if f"last {TIMELINE_SECONDS:.0f} s" in text)
    return [seg for seg in lines[rule + 1] if seg.text.strip()]


def test_timeline_cells_are_coloured_by_emotion_with_a_legend() -> None:
    state = _state()
    state.update_window(_event(57.0, "angry", 0.7))
    state.update_window(_event(60.0, "surprised", 0.7))  # now = 63 s
    segments = _timeline_segments(state)
    colours = [seg.style.color.name for seg in segments for _ in seg.text if seg.style and seg.style.color]
    assert colours[-6:] == ["red"] * 3 + ["cyan"] * 3
    screen = _screen(state)
    legend = _line(screen, "■")
    for label in LABELS:
        assert f"■ {label}" in legend
    assert "silence" in legend
    assert "-60 s" in screen and "now" in screen


def test_fixed_colour_per_label() -> None:
    assert LABEL_COLORS == {
        "angry": "red",
        "disgust": "green",
        "fearful": "magenta",
        "happy": "yellow",
        "neutral": "white",
        "sad": "blue",
        "surprised": "cyan",
        "calm": "bright_blue",
    }
    other = ["joy", "boredom", "contempt"]
    colours = {label_color(label, other) for label in other}
    assert len(colours) == 3 and not colours & set(LABEL_COLORS.values())


@pytest.mark.parametrize("width", [60, 80, 120])
def test_full_dashboard_fits_the_terminal(width: int) -> None:
    state = _state(device="0 'HDA Intel PCH: ALC3246 Analog (hw:0,0) with a very long device name indeed'")
    rng = np.random.default_rng(1)
    for i in range(80):
        label = LABELS[int(rng.integers(len(LABELS)))]
        state.update_window(_event(float(i), label, float(rng.uniform(0.3, 0.9))))
    state.update_level(-12.0, True, audio_s=83.0)
    state.update_stats(dropped_s=12.25, overflows=1234, elapsed_s=5000, status="recording to events.jsonl")
    screen = _screen(state, width=width, color=True)
    _assert_fits(screen, width)
    # nothing a person needs is cut off
    assert "elapsed 1:23:20" in screen
    assert "-12 dBFS" in screen
    assert re.search(r"dropped\s+12\.2 s", screen) and re.search(r"overflows\s+1234\b", screen)
    if width <= WIDTH:
        assert "…" in screen.splitlines()[0]  # the long device name is shortened instead
    assert "recording to events.jsonl" in screen
    assert screen.count("%") >= len(LABELS) + 1


def test_render_is_pure() -> None:
    state = _state()
    state.update_window(_event(0.0, "fearful", 0.55))
    before = state.snapshot()
    first = _screen(before)
    second = _screen(before)
    assert first == second
    assert state.snapshot() == before


def test_block_dbfs() -> None:
    t = np.arange(16000) / 16000
    assert block_dbfs(np.sin(2 * np.pi * 440 * t)) == pytest.approx(-3.01, abs=0.01)
    assert block_dbfs(np.full((100, 2), 0.1, dtype=np.float32)) == pytest.approx(-20.0, abs=1e-4)
    assert block_dbfs(np.zeros(100, dtype=np.float32)) == SILENCE_DBFS
    assert block_dbfs(np.zeros(0, dtype=np.float32)) == SILENCE_DBFS


def test_plain_line_for_non_terminals() -> None:
    event = _event(12.0, "happy", 0.78)
    line = plain_line(event)
    assert "\x1b" not in line and "\n" not in line
    assert re.match(r"^\s*12\.00-\s*15\.00 s\s+happy\s+78%\s+happy=0\.78 ", line), line
    assert line.count("=") == 3
    assert plain_line(event.to_dict()) == line


def test_live_dashboard_draws_and_stops() -> None:
    console = Console(file=StringIO(), width=WIDTH, height=HEIGHT, force_terminal=True)
    state = _state()
    with LiveDashboard(state, console=console, refresh_per_second=20) as live:
        state.update_window(_event(0.0, "disgust", 0.83))
        live.update()
    out = ANSI.sub("", console.file.getvalue())  # type: ignore[attr-defined]
    assert LISTENING in out  # the first frame
    assert "DISGUST 83%" in out  # a later one
    assert "elapsed 00:00" in out


def test_updates_from_another_thread_while_rendering() -> None:
    state = _state()
    errors: list[BaseException] = []

    def feed() -> None:
        try:
            for i in range(1500):
                state.update_window(_event(i * 0.1, LABELS[i % len(LABELS)], 0.6))
                state.update_level(-30.0, i % 2 == 0, audio_s=i * 0.1 + 3)
        except BaseException as err:  # reported by the assert below
            errors.append(err)

    worker = threading.Thread(target=feed)
    worker.start()
    renders = 0
    while worker.is_alive() or renders < 3:
        _screen(state)
        renders += 1
    worker.join()
    assert not errors
    assert state.snapshot().windows == 1500


# -- affect panel and the uncertain state (issue 11) ------------------------------------------------------------
def _affect_event(start: float, label: str, p: float, arousal: float, valence: float,
                  uncertain: bool = False) -> WindowEvent:
    return replace(_event(start, label, p), arousal=arousal, valence=valence, uncertain=uncertain)


def test_affect_panel_shows_signed_bars_values_and_a_trail_within_80x24() -> None:
    state = _state()
    state.update_stats(status="Ctrl-C to stop · events → session.jsonl")
    state.update_window(_affect_event(0.0, "sad", 0.6, -0.7, -0.8))
    state.update_window(_affect_event(0.5, "neutral", 0.5, -0.2, -0.1))
    state.update_window(_affect_event(1.0, "happy", 0.8, 0.31, 0.64))
    state.update_level(-25.0, True, 4.0)
    screen = _screen(state)
    lines = screen.rstrip("\n").split("\n")
    assert len(lines) <= HEIGHT and max(len(line) for line in lines) <= WIDTH, screen
    arousal = next(line for line in lines if line.startswith("arousal"))
    valence = next(line for line in lines if line.startswith("valence"))
    assert "+0.31" in arousal and "+0.64" in valence
    # the bar fills from the axis towards the value: right of the axis for positive values
    bar = arousal[LABEL_WIDTH + 1:]
    axis = bar.index("│")
    assert bar[axis + 1] == "█" and "█" not in bar[:axis]
    assert "·" in bar[:axis]  # the earlier, negative windows remain as a trail left of the axis
    # an 8-label model still shows every label, the timeline and the status line
    for label in LABELS:
        assert any(line.startswith(label) for line in lines), label
    assert "Ctrl-C to stop" in screen and "last 60 s" in screen


def test_negative_values_fill_left_of_the_axis_and_models_without_dimensions_show_no_panel() -> None:
    bar = affect_bar(-0.5, [], 21).plain
    axis = bar.index("│")
    assert bar[axis - 1] == "█" and "█" not in bar[axis:]
    assert bar.count("█") == 5  # half of the 10 cells on the negative side
    plain_state = _state()
    plain_state.update_window(_event(0.0, "happy", 0.8))  # no arousal/valence
    assert "arousal" not in _screen(plain_state)


def test_uncertain_window_shows_uncertain_instead_of_a_label() -> None:
    state = _state()
    state.update_window(_affect_event(0.0, "happy", 0.8, 0.3, 0.6))
    state.update_window(_affect_event(0.5, "angry", 0.31, 0.5, -0.4, uncertain=True))
    state.update_level(-25.0, True, 3.5)
    screen = _screen(state)
    assert "UNCERTAIN" in screen and "best angry 31%" in screen
    assert "ANGRY" not in screen
    assert "▒" in screen and "▒ uncertain" in screen  # the timeline and its legend
    line = plain_line(_affect_event(3.0, "angry", 0.31, 0.5, -0.4, uncertain=True))
    assert line.endswith("arousal +0.50 valence -0.40  (uncertain)"), line
