"""The live dashboard: a pure function from state to rich renderables, and a thin ``rich.live.Live`` wrapper.

:class:`DashboardState` is the mutable state, updated from the engine's window events and the capture's level /
speech / counter readings (its methods are thread-safe). :func:`render` turns a :class:`DashboardSnapshot` (or a
state, which it snapshots) into renderables and touches nothing else, so it is tested against a
``Console(file=StringIO())``. Everything fits in an 80x24 terminal::

    ser-live ─ mic 4 'pulse'                                      elapsed 01:23
    44100 Hz → 16000 Hz · model default.onnx (seed180) · provider CPU

    HAPPY 78%                                     ● speech
    angry     ███▍                          9%   level ███████████░░░░░ -23 dBFS
    ...one bar per label...                      latency ms       p50      p95
    arousal   ░░░░░·░·│███▌░░░░░░░░░░░░░  +0.31  ...
    valence   ░░░░░██████│░·░░░░░░░░░░░░  -0.42
    ── last 60 s ────────────────────────────────────────────────────────────────
    ······█████████▓▓▓▓▓▓▓····
    -60 s                        -30 s                                      now
    ■ angry ■ calm ■ disgust ■ fearful ■ happy ■ neutral ■ sad ■ surprised · silence

:func:`plain_line` is the one-line-per-window form for output that is not a terminal.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import numpy as np
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from ser_live.realtime.palette import UNCERTAIN_COLOR, UNCERTAIN_LABEL, label_color

logger = logging.getLogger(__name__)

DEFAULT_WIDTH = 80
TIMELINE_SECONDS = 60.0
TIMELINE_MAX_CELLS = 60
LATENCY_HISTORY = 500  # recent windows kept for the percentiles
LATENCY_KEYS = (
    ("features", "features"),
    ("inference", "inference"),
    ("total", "compute"),  # features + inference + the rest of the engine, per window
    ("end_to_end", "end-to-end"),  # + audio that arrived after the window ended (VAD look-ahead, block size)
)
LATENCY_PERCENTILES = (50, 95)
STALE_AFTER_S = 2.0  # audio seconds after the last window (outside speech) before showing "listening…"
LEVEL_FLOOR_DB = -60.0
LEVEL_WARN_DB = -20.0
LEVEL_CLIP_DB = -3.0
SILENCE_DBFS = -120.0  # reported for digital silence
REFRESH_PER_SECOND = 10
LISTENING = "listening…"
SILENCE_CELL = "·"
EMOTION_CELL = "█"
BAR_EIGHTHS = " ▏▎▍▌▋▊▉"
BAR_FULL = "█"
BAR_EMPTY = "░"
LEGEND_MARK = "■"
LABEL_WIDTH = 9  # len("surprised")
PERCENT_WIDTH = 4  # "100%"
SIDE_WIDTH = 32  # right column: speech, level, latency, counters
COLUMN_GAP = 2
MIN_BAR_WIDTH = 6
MAX_BAR_WIDTH = 40
PROVIDER_SUFFIX = "ExecutionProvider"  # onnxruntime's names: CPUExecutionProvider -> CPU
LEVEL_BAR_WIDTH = 14
TOP_PROBS_IN_LINE = 3
AFFECT_NAMES = ("arousal", "valence")
AFFECT_TRAIL = 8  # earlier windows shown as dots behind the current value
AFFECT_VALUE_WIDTH = 5  # "+0.31"
AFFECT_POSITIVE_COLOR = "green"
AFFECT_NEGATIVE_COLOR = "red"
AFFECT_AXIS = "│"
AFFECT_TRAIL_CELL = "·"
UNCERTAIN_CELL = "▒"


def block_dbfs(samples: np.ndarray) -> float:
    """RMS level of float audio in dBFS (full scale = 1.0); digital silence gives ``SILENCE_DBFS``."""
    if samples.size == 0:
        return SILENCE_DBFS
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    if not math.isfinite(rms) or rms <= 10 ** (SILENCE_DBFS / 20):
        return SILENCE_DBFS
    return 20.0 * math.log10(rms)


def _field(event: Any, name: str, default: Any = None) -> Any:
    if isinstance(event, Mapping):
        return event.get(name, default)
    return getattr(event, name, default)


@dataclass(frozen=True)
class TimelineEntry:
    start_s: float
    end_s: float
    label: str  # the window's label, or "uncertain"
    confidence: float


@dataclass(frozen=True)
class DashboardSnapshot:
    """Everything :func:`render` draws, frozen at one instant."""

    labels: tuple[str, ...] = ()
    label: str | None = None
    confidence: float = 0.0
    probs: Mapping[str, float] = field(default_factory=dict)
    last_end_s: float = 0.0
    audio_s: float = 0.0
    speaking: bool | None = None
    level_dbfs: float | None = None
    timeline: tuple[TimelineEntry, ...] = ()
    latency_ms: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    windows: int = 0
    elapsed_s: float = 0.0
    source: str = "mic"
    device: str = ""
    device_rate: int | None = None
    model_rate: int | None = None
    provider: str = ""
    model: str = ""
    dropped_s: float = 0.0
    overflows: int = 0
    status: str = ""
    uncertain: bool = False
    arousal: float | None = None
    valence: float | None = None
    affect_trail: tuple[tuple[float, float], ...] = ()  # earlier windows' (arousal, valence), oldest first
    profile: str = ""  # the personal profile in use ("" = the model's own last layer)

    @property
    def listening(self) -> bool:
        """No emotion to show: no window yet, or silence since the last one."""
        if self.label is None:
            return True
        return self.speaking is not True and self.audio_s - self.last_end_s > STALE_AFTER_S


class DashboardState:
    """Mutable dashboard state. Update it from the engine/capture thread; :meth:`snapshot` for rendering."""

    def __init__(
        self,
        labels: Iterable[str] = (),
        *,
        source: str = "mic",
        device: str = "",
        device_rate: int | None = None,
        model_rate: int | None = None,
        provider: str = "",
        model: str = "",
        profile: str = "",
    ) -> None:
        self._lock = threading.RLock()
        self.profile = profile
        self.labels: tuple[str, ...] = tuple(labels)
        self.source = source
        self.device = device
        self.device_rate = device_rate
        self.model_rate = model_rate
        self.provider = provider
        self.model = model
        self.label: str | None = None
        self.confidence = 0.0
        self.probs: dict[str, float] = {}
        self.last_end_s = 0.0
        self.audio_s = 0.0
        self.speaking: bool | None = None
        self.level_dbfs: float | None = None
        self.windows = 0
        self.elapsed_s = 0.0
        self.dropped_s = 0.0
        self.overflows = 0
        self.status = ""
        self.uncertain = False
        self.arousal: float | None = None
        self.valence: float | None = None
        self._trail: deque[tuple[float, float]] = deque(maxlen=AFFECT_TRAIL)
        self._timeline: deque[TimelineEntry] = deque()
        self._latency: dict[str, deque[float]] = {key: deque(maxlen=LATENCY_HISTORY) for key, _ in LATENCY_KEYS}

    def update_window(self, event: Any) -> None:
        """Take a classified window: a ``WindowEvent``, any object with its attributes, or its dict form."""
        probs = {str(k): float(v) for k, v in (_field(event, "probs") or {}).items()}
        label = str(_field(event, "label"))
        start_s = float(_field(event, "start_s", 0.0))
        end_s = float(_field(event, "end_s", 0.0))
        confidence = float(_field(event, "confidence", probs.get(label, 0.0)))
        latency = _field(event, "latency_ms") or {}
        uncertain = bool(_field(event, "uncertain", False))
        arousal, valence = _field(event, "arousal"), _field(event, "valence")
        with self._lock:
            if not self.labels:
                self.labels = tuple(sorted(probs))
            if self.arousal is not None and self.valence is not None:
                self._trail.append((self.arousal, self.valence))
            self.arousal = None if arousal is None else float(arousal)
            self.valence = None if valence is None else float(valence)
            self.uncertain = uncertain
            self.label = label
            self.confidence = confidence
            self.probs = probs
            self.last_end_s = end_s
            self.audio_s = max(self.audio_s, end_s)
            self.windows += 1
            self._timeline.append(TimelineEntry(start_s, end_s, UNCERTAIN_LABEL if uncertain else label, confidence))
            horizon = self.audio_s - TIMELINE_SECONDS
            while self._timeline and self._timeline[0].end_s < horizon:
                self._timeline.popleft()
            for key, _ in LATENCY_KEYS:
                value = latency.get(key)
                if value is not None and math.isfinite(float(value)):
                    self._latency[key].append(float(value))

    def update_level(self, dbfs: float | None, is_speech: bool | None, audio_s: float | None = None) -> None:
        """The input level (dBFS) and the VAD's verdict for the latest audio; ``audio_s`` = stream time now."""
        with self._lock:
            self.level_dbfs = dbfs
            self.speaking = is_speech
            if audio_s is not None:
                self.audio_s = max(self.audio_s, float(audio_s))
                horizon = self.audio_s - TIMELINE_SECONDS
                while self._timeline and self._timeline[0].end_s < horizon:
                    self._timeline.popleft()

    def update_stats(
        self,
        *,
        dropped_s: float | None = None,
        overflows: int | None = None,
        elapsed_s: float | None = None,
        status: str | None = None,
    ) -> None:
        with self._lock:
            if dropped_s is not None:
                self.dropped_s = float(dropped_s)
            if overflows is not None:
                self.overflows = int(overflows)
            if elapsed_s is not None:
                self.elapsed_s = float(elapsed_s)
            if status is not None:
                self.status = status

    def snapshot(self) -> DashboardSnapshot:
        with self._lock:
            return DashboardSnapshot(
                labels=self.labels,
                label=self.label,
                confidence=self.confidence,
                probs=dict(self.probs),
                last_end_s=self.last_end_s,
                audio_s=self.audio_s,
                speaking=self.speaking,
                level_dbfs=self.level_dbfs,
                timeline=tuple(self._timeline),
                latency_ms={key: tuple(values) for key, values in self._latency.items()},
                windows=self.windows,
                elapsed_s=self.elapsed_s,
                source=self.source,
                device=self.device,
                device_rate=self.device_rate,
                model_rate=self.model_rate,
                provider=self.provider,
                model=self.model,
                dropped_s=self.dropped_s,
                overflows=self.overflows,
                status=self.status,
                uncertain=self.uncertain,
                arousal=self.arousal,
                valence=self.valence,
                affect_trail=tuple(self._trail),
                profile=self.profile,
            )


# --------------------------------------------------------------------------------------------------------------
# Rendering (pure)
# --------------------------------------------------------------------------------------------------------------


def format_elapsed(seconds: float) -> str:
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def _bar(fraction: float, width: int) -> str:
    """A horizontal bar of ``width`` cells filled to ``fraction`` in eighths of a cell."""
    fraction = min(max(fraction if math.isfinite(fraction) else 0.0, 0.0), 1.0)
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    bar = BAR_FULL * full + (BAR_EIGHTHS[part] if part else "")
    return bar


def _percentiles(values: Sequence[float]) -> tuple[float | None, ...]:
    if not values:
        return tuple(None for _ in LATENCY_PERCENTILES)
    return tuple(float(v) for v in np.percentile(np.asarray(values, dtype=np.float64), LATENCY_PERCENTILES))


def _ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _header(s: DashboardSnapshot, width: int) -> list[RenderableType]:
    source = f"{s.source} {s.device}".strip() if s.device else s.source
    title = Text.assemble(("ser-live", "bold"), " ─ ", (source, "bold"))
    elapsed = Text(f"elapsed {format_elapsed(s.elapsed_s)}", style="bold")
    room = max(1, width - elapsed.cell_len - 1)
    title.truncate(room, overflow="ellipsis")
    line1 = Text.assemble(title, " " * (width - title.cell_len - elapsed.cell_len), elapsed, no_wrap=True)

    parts = []
    if s.device_rate or s.model_rate:
        dev = f"{s.device_rate} Hz" if s.device_rate else "?"
        mod = f"{s.model_rate} Hz" if s.model_rate else "?"
        parts.append(f"{dev} → {mod}")
    if s.model:
        parts.append(f"model {s.model}")
    if s.profile:
        parts.append(f"profile {s.profile}")
    if s.provider:
        parts.append(f"provider {s.provider.removesuffix(PROVIDER_SUFFIX)}")
    line2 = Text(" · ".join(parts) or " ", style="dim", no_wrap=True, overflow="ellipsis")
    return [line1, line2, Text("")]


def _current(s: DashboardSnapshot) -> Text:
    if s.listening:
        text = Text(LISTENING, style="bold dim")
        if s.label is not None:
            last = UNCERTAIN_LABEL if s.uncertain else s.label
            text.append(f"  (last: {last} {s.confidence:.0%})", style="dim")
        return text
    assert s.label is not None
    if s.uncertain:
        return Text.assemble(
            (UNCERTAIN_LABEL.upper(), f"bold {UNCERTAIN_COLOR}"), " ", (f"(best {s.label} {s.confidence:.0%})", "dim")
        )
    color = label_color(s.label, s.labels)
    return Text.assemble((s.label.upper(), f"bold {color}"), " ", (f"{s.confidence:.0%}", "bold"))


def _bars(s: DashboardSnapshot, bar_width: int) -> Table:
    table = Table.grid(padding=(0, 1))
    table.add_column(width=LABEL_WIDTH, no_wrap=True, overflow="ellipsis")
    table.add_column(width=bar_width, no_wrap=True)
    table.add_column(width=PERCENT_WIDTH, justify="right", no_wrap=True)
    dim = s.listening
    for label in s.labels:
        p = float(s.probs.get(label, 0.0))
        color = label_color(label, s.labels)
        is_top = label == s.label and not dim and not s.uncertain
        name_style = f"bold {color}" if is_top else color
        bar = Text(_bar(p, bar_width), style=f"dim {color}" if dim else color)
        bar.append(BAR_EMPTY * (bar_width - bar.cell_len), style="grey23")
        table.add_row(
            Text(label, style=name_style), bar, Text(f"{p:.0%}", style="bold" if is_top else "dim" if dim else "")
        )
    return table


def _cell(value: float, width: int) -> int:
    """The cell of ``value`` in [-1, 1] on a ``width``-cell axis whose middle cell is 0."""
    half = width // 2
    return half + round(min(max(value, -1.0), 1.0) * half)


def affect_bar(value: float | None, trail: Sequence[float], width: int, dim: bool = False) -> Text:
    """A signed bar of ``width`` cells (odd: the middle cell is the zero axis): filled from the axis to ``value``,
    earlier values of ``trail`` shown as dots; ``None``: the empty axis."""
    width = width if width % 2 else width - 1
    half = width // 2
    cells = [BAR_EMPTY] * width
    styles = ["grey23"] * width
    for old in trail:
        i = _cell(old, width)
        cells[i], styles[i] = AFFECT_TRAIL_CELL, "grey62"
    cells[half], styles[half] = AFFECT_AXIS, "dim"
    if value is not None and math.isfinite(value):
        i = _cell(value, width)
        color = AFFECT_POSITIVE_COLOR if value >= 0 else AFFECT_NEGATIVE_COLOR
        lo, hi = (half + 1, i) if i > half else (i, half - 1)
        for j in range(lo, hi + 1):
            cells[j], styles[j] = BAR_FULL, f"dim {color}" if dim else color
    text = Text(no_wrap=True)
    for cell, style in zip(cells, styles, strict=True):
        text.append(cell, style=style)
    return text


def _affect(s: DashboardSnapshot, bar_width: int) -> Table | None:
    """Arousal and valence as signed bars with a short trail; None when the model gives no dimensions."""
    if s.arousal is None and s.valence is None and not s.affect_trail:
        return None
    table = Table.grid(padding=(0, 1))
    table.add_column(width=LABEL_WIDTH, no_wrap=True)
    table.add_column(width=bar_width, no_wrap=True)
    table.add_column(width=AFFECT_VALUE_WIDTH, justify="right", no_wrap=True)
    dim = s.listening
    for k, (name, value) in enumerate(zip(AFFECT_NAMES, (s.arousal, s.valence), strict=True)):
        trail = [point[k] for point in s.affect_trail]
        shown = "—" if value is None else f"{value:+.2f}"
        table.add_row(Text(name, style="dim" if dim else "bold"), affect_bar(value, trail, bar_width, dim),
                      Text(shown, style="dim" if dim else ""))
    return table


def _side(s: DashboardSnapshot) -> Table:
    table = Table.grid(padding=(0, 1))
    table.add_column(no_wrap=True, overflow="ellipsis")
    if s.speaking is None:
        speech = Text("○ speech —", style="dim")
    elif s.speaking:
        speech = Text("● speech", style="bold green")
    else:
        speech = Text("○ silence", style="dim")
    table.add_row(speech)

    level = Text("level ")
    if s.level_dbfs is None:
        level.append(BAR_EMPTY * LEVEL_BAR_WIDTH, style="grey23")
        level.append("    — dBFS", style="dim")
    else:
        db = max(s.level_dbfs, LEVEL_FLOOR_DB)
        fraction = (db - LEVEL_FLOOR_DB) / -LEVEL_FLOOR_DB
        color = "red" if db >= LEVEL_CLIP_DB else "yellow" if db >= LEVEL_WARN_DB else "green"
        bar = _bar(fraction, LEVEL_BAR_WIDTH)
        level.append(bar, style=color)
        level.append(BAR_EMPTY * (LEVEL_BAR_WIDTH - Text(bar).cell_len), style="grey23")
        shown = f"{s.level_dbfs:.0f}" if s.level_dbfs > LEVEL_FLOOR_DB else f"<{LEVEL_FLOOR_DB:.0f}"
        level.append(f" {shown:>4} dBFS")
    table.add_row(level)

    head = " ".join(f"{'p' + str(q):>7}" for q in LATENCY_PERCENTILES)
    table.add_row(Text(f"{'latency ms':<10} {head}", style="bold"))
    for key, name in LATENCY_KEYS:
        values = _percentiles(s.latency_ms.get(key, ()))
        row = " ".join(f"{_ms(v):>7}" for v in values)
        table.add_row(Text(f"{name:<10} {row}"))

    table.add_row(Text(f"{'windows':<10} {s.windows:>7}", style="dim"))
    dropped = Text(f"{'dropped':<10} ")
    dropped.append(f"{s.dropped_s:>5.1f} s", style="bold red" if s.dropped_s > 0 else "")
    table.add_row(dropped)
    overflows = Text(f"{'overflows':<10} ")
    overflows.append(f"{s.overflows:>7}", style="bold red" if s.overflows > 0 else "")
    table.add_row(overflows)
    return table


def timeline_cells(s: DashboardSnapshot, cells: int) -> list[str | None]:
    """The label shown in each of ``cells`` time buckets over the last minute (``None``: no window there).

    A bucket shows the latest window that covers its middle; buckets before the stream began are ``""``.
    """
    end = max(s.audio_s, s.last_end_s)
    start = end - TIMELINE_SECONDS
    dt = TIMELINE_SECONDS / cells
    out: list[str | None] = [None if start + (i + 0.5) * dt >= 0 else "" for i in range(cells)]
    for entry in s.timeline:  # in time order: later windows overwrite earlier ones
        first = max(0, math.ceil((entry.start_s - start) / dt - 0.5))
        last = min(cells - 1, math.ceil((entry.end_s - start) / dt - 0.5) - 1)
        for i in range(first, last + 1):
            out[i] = entry.label
    return out


def _timeline(s: DashboardSnapshot, width: int) -> list[RenderableType]:
    cells = min(TIMELINE_MAX_CELLS, width)
    line = Text(no_wrap=True)
    for label in timeline_cells(s, cells):
        if label == "":
            line.append(" ")
        elif label is None:
            line.append(SILENCE_CELL, style="grey42")
        elif label == UNCERTAIN_LABEL:
            line.append(UNCERTAIN_CELL, style=UNCERTAIN_COLOR)
        else:
            line.append(EMOTION_CELL, style=label_color(label, s.labels))
    axis = Text(no_wrap=True, style="dim")
    left, mid, right = f"-{TIMELINE_SECONDS:.0f} s", f"-{TIMELINE_SECONDS / 2:.0f} s", "now"
    gap1 = max(1, cells // 2 - len(left) - len(mid) // 2)
    gap2 = max(1, cells - len(left) - gap1 - len(mid) - len(right))
    axis.append(left + " " * gap1 + mid + " " * gap2 + right)

    legend = Text()
    for label in s.labels:
        legend.append(LEGEND_MARK, style=label_color(label, s.labels))
        legend.append(f" {label} ")
    legend.append(f"{SILENCE_CELL} silence", style="grey42")
    if any(entry.label == UNCERTAIN_LABEL for entry in s.timeline):
        legend.append(f" {UNCERTAIN_CELL} {UNCERTAIN_LABEL}", style=UNCERTAIN_COLOR)
    return [Rule(f"last {TIMELINE_SECONDS:.0f} s", style="dim", characters="─"), line, axis, legend]


def render(state: DashboardState | DashboardSnapshot, width: int | None = None) -> RenderableType:
    """The dashboard for ``state`` at ``width`` columns (default 80). Pure: reads the state, changes nothing."""
    s = state.snapshot() if isinstance(state, DashboardState) else state
    width = width or DEFAULT_WIDTH
    side_width = min(SIDE_WIDTH, width - COLUMN_GAP - (LABEL_WIDTH + 2 * MIN_BAR_WIDTH + PERCENT_WIDTH + 2))
    left_width = width - side_width - COLUMN_GAP
    bar_width = min(MAX_BAR_WIDTH, max(MIN_BAR_WIDTH, left_width - LABEL_WIDTH - PERCENT_WIDTH - 2))
    left_width = min(left_width, LABEL_WIDTH + bar_width + PERCENT_WIDTH + 2)

    body = Table.grid(padding=(0, COLUMN_GAP, 0, 0))
    body.add_column(width=left_width, no_wrap=True)
    body.add_column(width=side_width, no_wrap=True)
    affect = _affect(s, bar_width + PERCENT_WIDTH - AFFECT_VALUE_WIDTH)
    left = Group(_current(s), _bars(s, bar_width), *([] if affect is None else [affect]))
    body.add_row(left, _side(s))

    parts: list[RenderableType] = [*_header(s, width), body, *_timeline(s, width)]
    if s.status:
        parts.append(Text(s.status, style="bold", no_wrap=True, overflow="ellipsis"))
    return Group(*parts)


def plain_line(event: Any) -> str:
    """One line per window for output that is not a terminal: time range, label, confidence, top probabilities."""
    probs = {str(k): float(v) for k, v in (_field(event, "probs") or {}).items()}
    label = str(_field(event, "label"))
    confidence = float(_field(event, "confidence", probs.get(label, 0.0)))
    start_s = float(_field(event, "start_s", 0.0))
    end_s = float(_field(event, "end_s", 0.0))
    top = sorted(probs.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_PROBS_IN_LINE]
    tops = " ".join(f"{k}={v:.2f}" for k, v in top)
    line = f"{start_s:8.2f}-{end_s:8.2f} s  {label:<9} {confidence:4.0%}  {tops}"
    arousal, valence = _field(event, "arousal"), _field(event, "valence")
    if arousal is not None and valence is not None:
        line += f"  arousal {float(arousal):+.2f} valence {float(valence):+.2f}"
    if _field(event, "uncertain", False):
        line += f"  ({UNCERTAIN_LABEL})"
    return line


# --------------------------------------------------------------------------------------------------------------
# Live
# --------------------------------------------------------------------------------------------------------------


class LiveDashboard:
    """Redraws :func:`render` of ``state`` about ``refresh_per_second`` times a second with ``rich.live.Live``.

    ``screen=False``: the dashboard is drawn in place in the normal screen, so its last frame stays visible
    (above the session summary) after Ctrl-C. The elapsed time is taken from a monotonic clock at each redraw.
    Use :func:`plain_line` instead when the console is not a terminal (``console.is_terminal``).
    """

    def __init__(
        self,
        state: DashboardState,
        console: Console | None = None,
        refresh_per_second: float = REFRESH_PER_SECOND,
        screen: bool = False,
    ) -> None:
        self.state = state
        self.console = console if console is not None else Console()
        self._started_at: float | None = None
        self._live = Live(
            get_renderable=self._renderable,
            console=self.console,
            refresh_per_second=refresh_per_second,
            screen=screen,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
            vertical_overflow="crop",
        )

    def _renderable(self) -> RenderableType:
        if self._started_at is not None:
            self.state.update_stats(elapsed_s=time.monotonic() - self._started_at)
        return render(self.state.snapshot(), self.console.width)

    def start(self) -> LiveDashboard:
        if self._started_at is None:
            self._started_at = time.monotonic()
        self._live.start(refresh=True)
        return self

    def update(self) -> None:
        """Redraw now (the refresh thread also redraws on its own)."""
        self._live.refresh()

    def stop(self) -> None:
        """Draw the final frame and stop the refresh thread."""
        if self._live.is_started:
            self._live.refresh()
            self._live.stop()

    def __enter__(self) -> LiveDashboard:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
