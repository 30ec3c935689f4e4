"""A session report from window events: one PNG (emotion probabilities over time with the pauses left visible,
arousal and valence, time per emotion) and a short Markdown summary.

Input is what ``ser-live --jsonl`` writes (window events, then a summary line when the session ended normally),
or the events of a live session kept in memory (``ser-live --report``). matplotlib is imported only when a
figure is drawn; :func:`require_matplotlib` says, in one line, which extra to install when it is missing.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ser_live.realtime.errors import UserError
from ser_live.realtime.events import QUADRANTS, SUMMARY_TYPE, WINDOW_TYPE, SessionSummary, WindowEvent
from ser_live.realtime.fileio import JsonTooDeepError, atomic_write, loads_json
from ser_live.realtime.palette import UNCERTAIN_COLOR, UNCERTAIN_LABEL, label_color

logger = logging.getLogger(__name__)

MATPLOTLIB_HINT = "pip install 'ser-live[report]' (matplotlib draws the session report)"
FIGURE_SIZE_IN = (11.0, 8.5)
FIGURE_DPI = 110
PAUSE_FACTOR = 1.5  # a gap between windows longer than this many hops is a pause (drawn, not bridged)
PAUSE_COLOR = "0.92"
AFFECT_COLORS = {"arousal": "tab:orange", "valence": "tab:purple"}
MARKDOWN_SUFFIX = ".md"
# rich colour names (the dashboard's) -> matplotlib: the ones it lacks, or draws too faintly on white
MAX_BAD_SHOWN = 3  # skipped lines named in the report's note
COLOR_NAMES = {"white": "0.15", "yellow": "goldenrod", "bright_blue": "royalblue", "bright_yellow": "gold"}


def require_matplotlib() -> None:
    """UserError naming the extra when matplotlib cannot be imported (call it before a session starts)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UserError(f"--report needs matplotlib: {MATPLOTLIB_HINT}") from None


@dataclass
class Session:
    """The events of one session, in time order, and its summary (recomputed when the JSONL has none)."""

    events: list[WindowEvent]
    summary: dict[str, Any]
    labels: tuple[str, ...] = ()
    hop_s: float = 0.5
    source: str = ""
    notes: list[str] = field(default_factory=list)


def hop_of(events: Sequence[WindowEvent]) -> float:
    """The hop between consecutive windows: the most common spacing of their end times (0.5 s without two)."""
    ends = np.array([e.end_s for e in events], dtype=np.float64)
    steps = np.round(np.diff(ends), 3)
    steps = steps[steps > 0]
    if not len(steps):
        return 0.5
    values, counts = np.unique(steps, return_counts=True)
    return float(values[int(np.argmax(counts))])


def session_from_events(
    events: Iterable[WindowEvent], summary: Mapping[str, Any] | None = None, source: str = ""
) -> Session:
    events = sorted(events, key=lambda e: e.end_s)
    labels = tuple(events[0].probs) if events else tuple((summary or {}).get("counts", {}))
    hop = hop_of(events)
    notes = []
    if summary is None:
        acc = SessionSummary(labels=labels)
        for e in events:
            acc.add(e, hop)
        acc.audio_s = max((e.end_s for e in events), default=0.0)
        summary = acc.to_dict() | {"speech_s": None}  # the engine's VAD count is not in the windows: unknown
        notes.append("no summary line in the input (the session did not end normally): time per emotion is "
                     "recomputed from the windows, audio length is up to the last window")
    return Session(list(events), dict(summary), labels, hop, source, notes)


def read_jsonl(path: Path, session: int | None = None) -> Session:
    """One session of a ser-live JSONL file: its window events and its summary. A file ``--append`` grew holds
    several, each ended by its summary line: ``session`` picks one (1 = the first); without it such a file is a
    UserError that lists them. UserError for a file that is not one, or a session it does not hold."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # an editor's byte-order mark is not part of the first line
    except FileNotFoundError:
        raise UserError(f"{path} not found: pass the JSONL file that ser-live --jsonl wrote") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read {path} ({err}): pass the JSONL file that ser-live --jsonl wrote") from None
    events: list[WindowEvent] = []
    sessions: list[tuple[list[WindowEvent], dict[str, Any] | None]] = []  # each ended by its summary
    bad: list[str] = []  # "line N: why", in file order
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = loads_json(line, parse_constant=_reject_constant)
        except JsonTooDeepError as err:
            bad.append(f"line {n}: not JSON ({err})")
            continue
        except ValueError as err:
            bad.append(f"line {n}: {err}" if "non-finite" in str(err) else f"line {n}: not JSON")
            continue
        kind = obj.get("type", WINDOW_TYPE) if isinstance(obj, dict) else None
        if kind == WINDOW_TYPE:
            why = _window_problem(obj)
            if why is None:
                events.append(WindowEvent.from_dict(obj))
            else:
                bad.append(f"line {n}: {why}")
        elif kind == SUMMARY_TYPE:
            why = _summary_problem(obj)
            if why is None:
                sessions.append((events, obj))
                events = []
            else:
                bad.append(f"line {n}: {why}")
        else:
            bad.append(f"line {n}: not a ser-live event")
        if bad and bad[-1].startswith(f"line {n}:"):
            logger.debug("%s:%s", path, bad[-1])
    if events or not sessions:  # a last session that did not end with a summary
        sessions.append((events, None))
    if not any(evs or s is not None for evs, s in sessions):
        first = f" ({bad[0]})" if bad else ""
        raise UserError(f"{path} holds no ser-live events{first}: pass a file written by ser-live --jsonl")
    if session is not None and not 1 <= session <= len(sessions):
        raise UserError(f"{path} holds {len(sessions)} session(s), not a session {session}: pass --session 1-"
                        f"{len(sessions)}")
    if session is None and len(sessions) > 1:
        listed = "; ".join(f"{i}: {_session_line(evs, s)}" for i, (evs, s) in enumerate(sessions, 1))
        raise UserError(f"{path} holds {len(sessions)} sessions (ser-live --append): {listed}; pass --session N")
    chosen = 1 if session is None else session
    events, summary = sessions[chosen - 1]
    result = session_from_events(events, summary, source=str(path))
    if len(sessions) > 1:
        result.notes.append(f"the file holds {len(sessions)} sessions (ser-live --append); this report is of session "
                            f"{chosen}")
    if bad:
        shown = "; ".join(bad[:MAX_BAD_SHOWN]) + ("; …" if len(bad) > MAX_BAD_SHOWN else "")
        result.notes.append(f"{len(bad)} line(s) skipped: {shown}")
    return result


def _session_line(events: list[WindowEvent], summary: Mapping[str, Any] | None) -> str:
    """A session in a few words, for the list a multi-session file's refusal gives."""
    audio = (summary or {}).get("audio_s")
    length = f"{float(audio):.1f} s, " if isinstance(audio, int | float) else ""
    return f"{length}{len(events)} windows" + ("" if summary is not None else ", no summary")


def _reject_constant(token: str) -> None:
    raise ValueError(f"a non-finite number ({token}), which JSON does not have")


_WINDOW_NUMBERS = ("start_s", "end_s", "confidence", "speech_ratio")
_WINDOW_MAPS = ("probs", "raw_probs")
_SUMMARY_NUMBERS = ("audio_s", "speech_s", "windows", "uncertain_s", "uncertain_windows")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _window_problem(obj: Mapping[str, Any]) -> str | None:
    """Why a window line cannot be drawn (a missing field, a non-number where a number belongs), or None."""
    for key in (*_WINDOW_NUMBERS, "label", *_WINDOW_MAPS):
        if key not in obj:
            return f"a window without '{key}'"
    for key in _WINDOW_NUMBERS:
        if not _is_number(obj[key]):
            return f"a window whose '{key}' is {obj[key]!r}, not a number"
    for key in _WINDOW_MAPS:
        if not isinstance(obj[key], dict) or not all(_is_number(v) for v in obj[key].values()):
            return f"a window whose '{key}' is not a map of numbers"
    for key in ("arousal", "valence"):
        if obj.get(key) is not None and not _is_number(obj[key]):
            return f"a window whose '{key}' is {obj[key]!r}, not a number"
    return None


def _summary_problem(obj: Mapping[str, Any]) -> str | None:
    for key in _SUMMARY_NUMBERS:
        if obj.get(key) is not None and not _is_number(obj[key]):
            return f"a summary whose '{key}' is {obj[key]!r}, not a number (recomputed from the windows)"
    for key in ("time_per_emotion_s", "time_per_quadrant_s", "counts"):
        value = obj.get(key)
        if value is not None and (not isinstance(value, dict) or not all(_is_number(v) for v in value.values())):
            return f"a summary whose '{key}' is not a map of numbers (recomputed from the windows)"
    return None


def mpl_color(name: str) -> str:
    """A rich colour name as matplotlib draws it (greyNN -> a grey level, bright_x -> x)."""
    if name in COLOR_NAMES:
        return COLOR_NAMES[name]
    if name.startswith("grey") and name[4:].isdigit():
        return f"{int(name[4:]) / 100:.2f}"
    return name.removeprefix("bright_")


def _color(label: str, labels: Sequence[str]) -> str:
    return mpl_color(label_color(label, labels))


def _segments(events: Sequence[WindowEvent], hop_s: float) -> list[list[WindowEvent]]:
    """Runs of windows without a pause between them (a pause: no window for more than PAUSE_FACTOR hops)."""
    runs: list[list[WindowEvent]] = []
    for e in events:
        if runs and e.end_s - runs[-1][-1].end_s <= PAUSE_FACTOR * hop_s + 1e-9:
            runs[-1].append(e)
        else:
            runs.append([e])
    return runs


def draw(session: Session, title: str = "") -> bytes:
    """The report figure as PNG bytes."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    events, labels, hop = session.events, session.labels, session.hop_s
    fig, axes = plt.subplots(3, 1, figsize=FIGURE_SIZE_IN, gridspec_kw={"height_ratios": [3, 2, 2]})
    ax_p, ax_a, ax_t = axes
    end = max(float(session.summary.get("audio_s") or 0.0), max((e.end_s for e in events), default=0.0), hop)
    runs = _segments(events, hop)
    # pauses: everything between speech runs is shaded on both time plots
    edges = [0.0] + [x for r in runs for x in (r[0].end_s - hop, r[-1].end_s)] + [end]
    for lo, hi in zip(edges[0::2], edges[1::2], strict=False):
        if hi - lo > 1e-6:
            for ax in (ax_p, ax_a):
                ax.axvspan(lo, hi, color=PAUSE_COLOR, lw=0)
    for label in labels:
        for k, run in enumerate(runs):
            t = [e.end_s for e in run]
            ax_p.plot(t, [e.probs.get(label, np.nan) for e in run], color=_color(label, labels), lw=1.4,
                      label=label if k == 0 else None)
    uncertain = [e for e in events if e.uncertain]
    if uncertain:
        ax_p.scatter([e.end_s for e in uncertain], [-0.04] * len(uncertain), marker="|",
                     color=mpl_color(UNCERTAIN_COLOR), label=UNCERTAIN_LABEL, clip_on=False)
    ax_p.set(xlim=(0, end), ylim=(-0.06, 1.0), ylabel="probability (smoothed)",
             title=title or "emotion over time (grey: no speech window)")
    ax_p.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)

    have_affect = any(e.arousal is not None for e in events)
    for name in ("arousal", "valence"):
        for k, run in enumerate(runs):
            values = [getattr(e, name) for e in run]
            if any(v is not None for v in values):
                ax_a.plot([e.end_s for e in run], [np.nan if v is None else v for v in values],
                          color=AFFECT_COLORS[name], lw=1.4, label=name if k == 0 else None)
    ax_a.axhline(0.0, color="0.5", lw=0.8)
    ax_a.set(xlim=(0, end), ylim=(-1.05, 1.05), xlabel="time (s)", ylabel="[-1, 1]",
             title="arousal and valence" if have_affect else "arousal and valence: not given by this model")
    if have_affect:
        ax_a.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)

    times = dict(session.summary.get("time_per_emotion_s") or {})
    names = [k for k in times if k in labels or times.get(k)]
    values = [float(times.get(k) or 0.0) for k in names]
    colors = [_color(k, labels) for k in names]
    unc_s = float(session.summary.get("uncertain_s") or 0.0)
    if unc_s:
        names, values, colors = [*names, UNCERTAIN_LABEL], [*values, unc_s], [*colors, mpl_color(UNCERTAIN_COLOR)]
    ax_t.barh(names[::-1], values[::-1], color=colors[::-1])
    ax_t.set(xlabel="seconds", title="time per emotion (speech windows; one hop each)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=FIGURE_DPI)
    plt.close(fig)
    return buffer.getvalue()


def markdown(session: Session) -> str:
    """A short Markdown summary of the session."""
    s = session.summary
    audio = float(s.get("audio_s") or 0.0)
    speech = "speech unknown (no summary)" if s.get("speech_s") is None else f"speech {float(s['speech_s']):.1f} s"
    lines = ["# ser-live session", ""]
    if session.source:
        lines += [f"Source: `{session.source}`", ""]
    lines += [
        f"- audio {audio:.1f} s, {speech}, {s.get('windows', 0)} classified windows "
        f"(hop {session.hop_s:g} s)",
        f"- mostly **{s.get('dominant') or '—'}**; uncertain {float(s.get('uncertain_s') or 0.0):.1f} s "
        f"({s.get('uncertain_windows', 0)} windows)",
    ]
    arousal, valence = s.get("arousal_mean"), s.get("valence_mean")
    if arousal is not None and valence is not None:
        lines.append(f"- mean arousal {arousal:+.2f}, mean valence {valence:+.2f} (each in [-1, 1])")
    lines += ["", "| emotion | time (s) | share |", "|---|---|---|"]
    times = {k: float(v or 0.0) for k, v in (s.get("time_per_emotion_s") or {}).items()}
    if s.get("uncertain_s"):
        times[UNCERTAIN_LABEL] = float(s["uncertain_s"])
    total = sum(times.values()) or 1.0
    for k, v in sorted(times.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {k} | {v:.1f} | {v / total:.0%} |")
    quadrants = s.get("time_per_quadrant_s") or {}
    if any(quadrants.values()):
        lines += ["", "| arousal / valence quadrant | time (s) |", "|---|---|"]
        lines += [f"| {q.replace('_', ' arousal, ', 1)} valence | {float(quadrants.get(q) or 0):.1f} |"
                  for q in QUADRANTS]
    lines += [f"\n_{note}_" for note in session.notes]
    return "\n".join(lines) + "\n"


def check_report_path(png: Path, md: Path | None = None) -> Path:
    """UserError unless ``png`` is a .png path in an existing folder (so ser-live fails at start, not at the end);
    returns the Markdown path (default: beside the PNG, .md)."""
    md = md or png.with_suffix(MARKDOWN_SUFFIX)
    if png.suffix.lower() != ".png":
        raise UserError(f"the report is a PNG image: give a path ending in .png, not {png.name}")
    for path in (png, md):
        if not path.parent.is_dir():
            raise UserError(f"cannot write {path}: folder {path.parent} does not exist; create it or choose another")
    return md


def write_report(session: Session, png: Path, md: Path | None = None, title: str = "") -> tuple[Path, Path]:
    """Write the PNG and the Markdown summary (default: the PNG's path with .md) atomically; return both paths."""
    md = check_report_path(png, md)
    data = draw(session, title)
    text = markdown(session).encode("utf-8")
    for path, payload in ((png, data), (md, text)):
        try:
            atomic_write(path, lambda fh, b=payload: fh.write(b))
        except OSError as err:
            raise UserError(f"cannot write the report to {path}: {err.strerror or err}; choose a writable place") \
                from None
    return png, md
