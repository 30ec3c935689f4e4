"""``ser-live --enroll PROFILE``: a guided session that records a few takes per emotion and fits a personal profile.

For each take the terminal shows the emotion to act and a sentence to say (neutral sentences: the words carry no
emotion, so the profile learns the voice, not the words), waits for a key (one key press, no Enter needed, where
the input is a terminal: :func:`read_key`), counts down, records with a level
meter, and checks the take (:func:`check_take`: speech found, not clipped, not too quiet). A refused take is asked
again with the reason; a kept one can be redone (``r``); an emotion can be skipped (``s``) and the session ended
early (``q``). At the end the profile is fitted (:func:`realtime.profile.make_profile`), its own accuracy on the
takes (left out one at a time) printed next to the base model's, and written atomically.

The pieces that decide things -- the plan, the take check, the screens (pure functions of a :class:`Screen`) -- are
device-free and tested directly; :func:`run_enroll` wires them to the microphone and the keyboard.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.text import Text

from ser_live.realtime.errors import UserError
from ser_live.realtime.faces.dashboard import LEVEL_BAR_WIDTH, LEVEL_FLOOR_DB, block_dbfs
from ser_live.realtime.model import EmotionModel
from ser_live.realtime.palette import label_color
from ser_live.realtime.profile import Profile, Take, check_output, make_profile, take_from_audio

logger = logging.getLogger(__name__)

DEFAULT_TAKES = 3
DEFAULT_TAKE_S = 4.0
DEFAULT_COUNTDOWN_S = 2.0
QUIET_PEAK_DBFS = -35.0  # a take whose loudest sample is below this is too quiet to trust
CLIP_LEVEL = 0.999
CLIP_FRACTION = 0.001  # more than this share of samples at full scale: clipped
MAX_TAKE_S = 30.0
READ_TIMEOUT_S = 0.1
REFRESH_S = 0.1

# Neutral sentences: no emotion in the words; each take gets the next one.
SENTENCES: tuple[str, ...] = (
    "The train leaves the station at seven o'clock.",
    "Please put the blue folder on the kitchen table.",
    "The meeting is on the second floor of the building.",
    "I walked along the street to the corner shop.",
    "The numbers on the list go from one to twenty.",
    "We will paint the fence on Saturday afternoon.",
    "The letter arrived in a brown envelope this morning.",
)
# How to act each label (shown under the emotion's name).
ACTING: dict[str, str] = {
    "angry": "as if you have been kept waiting for an hour, again",
    "disgust": "as if you just found something rotten in the fridge",
    "fearful": "as if you heard someone in the house at night",
    "happy": "as if you just heard the best news of the week",
    "neutral": "plainly, as if reading out a timetable",
    "sad": "as if you just said goodbye to an old friend",
    "surprised": "as if you cannot believe what you just saw",
    "calm": "slowly and relaxed, as if on a quiet evening",
}


@dataclass(frozen=True)
class EnrollConfig:
    labels: tuple[str, ...] = ()  # () = every label of the model
    takes_per_label: int = DEFAULT_TAKES
    take_s: float = DEFAULT_TAKE_S
    countdown_s: float = DEFAULT_COUNTDOWN_S
    quiet_peak_dbfs: float = QUIET_PEAK_DBFS

    def __post_init__(self) -> None:
        if not 1 <= self.takes_per_label <= 20:
            raise UserError(f"--enroll-takes {self.takes_per_label} is out of range: use 1 to 20")
        if not (math.isfinite(self.take_s) and 1.0 <= self.take_s <= MAX_TAKE_S):
            raise UserError(f"--take-seconds {self.take_s} is out of range: use 1 to {MAX_TAKE_S:g}")
        if not (math.isfinite(self.countdown_s) and 0.0 <= self.countdown_s <= 10.0):
            raise UserError(f"--countdown {self.countdown_s} is out of range: use 0 to 10 seconds")


@dataclass(frozen=True)
class Prompt:
    label: str
    number: int  # 1-based take of this label
    sentence: str


def plan(labels: Sequence[str], takes_per_label: int) -> list[Prompt]:
    """Every label's takes in turn (label by label), each with the next neutral sentence."""
    prompts = []
    for label in labels:
        for n in range(takes_per_label):
            prompts.append(Prompt(label, n + 1, SENTENCES[len(prompts) % len(SENTENCES)]))
    return prompts


def choose_labels(model: EmotionModel, wanted: Sequence[str]) -> tuple[str, ...]:
    if not wanted:
        return tuple(model.labels)
    unknown = [w for w in wanted if w not in model.labels]
    if unknown:
        raise UserError(f"--enroll-labels {', '.join(unknown)}: not the model's labels ({', '.join(model.labels)})")
    return tuple(dict.fromkeys(wanted))


@dataclass(frozen=True)
class TakeCheck:
    ok: bool
    reason: str
    peak_dbfs: float
    take: Take | None = None


def check_take(model: EmotionModel, samples: np.ndarray, rate: int, label: str,
               quiet_peak_dbfs: float = QUIET_PEAK_DBFS, source: str = "") -> TakeCheck:
    """Is this recording a usable example? Clipped, too quiet, or no window with enough speech: refused."""
    x = np.asarray(samples, dtype=np.float32)
    mono = x if x.ndim == 1 else x.mean(axis=1)
    if mono.size == 0:
        return TakeCheck(False, "nothing was recorded: check the microphone", -math.inf)
    peak = float(np.max(np.abs(x)))
    peak_dbfs = 20 * math.log10(peak) if peak > 0 else -math.inf
    clipped = float(np.mean(np.abs(x) >= CLIP_LEVEL))
    if clipped > CLIP_FRACTION:
        return TakeCheck(False, f"clipped ({100 * clipped:.1f} % of samples at full scale): move back from the "
                         "microphone or lower its gain", peak_dbfs)
    if peak_dbfs < quiet_peak_dbfs:
        level = "silence" if peak == 0 else f"peak {peak_dbfs:.0f} dBFS"
        return TakeCheck(False, f"too quiet ({level}): speak up or move closer to the microphone", peak_dbfs)
    take = take_from_audio(model, x, rate, label, source=source)
    if take is None:
        return TakeCheck(False, "no speech found: say the whole sentence after the countdown", peak_dbfs)
    return TakeCheck(True, f"{len(take.embeddings)} window(s) of speech, peak {peak_dbfs:.0f} dBFS", peak_dbfs, take)


# --- screens (pure) ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Screen:
    """What the enrolment screen shows at one moment."""

    prompt: Prompt
    index: int  # 0-based position in the plan
    total: int
    phase: str = "ready"  # ready | countdown | recording | kept | refused
    seconds_left: float = 0.0
    level_dbfs: float | None = None
    message: str = ""
    kept: dict[str, int] = field(default_factory=dict)
    labels: tuple[str, ...] = ()


def _level_bar(dbfs: float | None) -> Text:
    value = LEVEL_FLOOR_DB if dbfs is None or not math.isfinite(dbfs) else max(LEVEL_FLOOR_DB, min(0.0, dbfs))
    filled = round((value - LEVEL_FLOOR_DB) / -LEVEL_FLOOR_DB * LEVEL_BAR_WIDTH)
    shown = "silence" if dbfs is None or not math.isfinite(dbfs) else f"{dbfs:.0f} dBFS"
    return Text.assemble("level ", ("█" * filled, "green"), ("░" * (LEVEL_BAR_WIDTH - filled), "dim"), f" {shown}")


KEYS = {
    "ready": "Enter = record · s = skip this emotion · q = finish now",
    "kept": "Enter = next · r = redo this take · q = finish now",
    "refused": "Enter = try again · s = skip this emotion · q = finish now",
}


def render_screen(s: Screen) -> RenderableType:
    """The enrolment screen as rich renderables (no I/O): the take, the emotion and sentence, the phase."""
    p = s.prompt
    color = label_color(p.label, s.labels)
    head = Text.assemble(("ser-live enrolment", "bold"), f" · take {s.index + 1} of {s.total}")
    emotion = Text.assemble("act: ", (p.label.upper(), f"bold {color}"), f" ({p.number})")
    how = Text(ACTING.get(p.label, ""), style="italic")
    say = Text.assemble("say: ", (f"“{p.sentence}”", "bold"))
    lines: list[RenderableType] = [head, Text(""), emotion, how, say, Text("")]
    if s.phase == "countdown":
        lines.append(Text(f"recording in {math.ceil(s.seconds_left)} …", style="bold yellow"))
    elif s.phase == "recording":
        lines.append(Text.assemble(("● recording", "bold red"), f"  {s.seconds_left:.1f} s left"))
        lines.append(_level_bar(s.level_dbfs))
    elif s.phase == "kept":
        lines.append(Text(f"✓ take kept: {s.message}", style="green"))
    elif s.phase == "refused":
        lines.append(Text(f"✗ take refused: {s.message}", style="bold red"))
    if s.phase in KEYS:
        lines.append(Text(KEYS[s.phase], style="dim"))
    if s.kept:
        lines.append(Text("kept so far: " + ", ".join(f"{k} {v}" for k, v in s.kept.items()), style="dim"))
    return Panel(Group(*lines), expand=False)


def summary_text(profile: Profile) -> str:
    acc = profile.accuracy
    p, b = acc.get("profile", {}), acc.get("base", {})
    lines = [profile.describe()]
    if p and b:
        gain = 100 * (p["uar"] - b["uar"])
        lines.append(f"your takes, each scored by a profile fitted without it: UAR {100 * p['uar']:.0f} % with the "
                     f"profile, {100 * b['uar']:.0f} % with the base model ({gain:+.0f} points)")
    return "\n".join(lines)


# --- the session ---------------------------------------------------------------------------------------------------


Recorder = Callable[[float, Callable[[float, float | None], None]], tuple[np.ndarray, int]]
"""``record(seconds, on_progress(seconds_left, level_dbfs)) -> (samples, rate)``."""


def run_session(model: EmotionModel, config: EnrollConfig, record: Recorder, ask: Callable[[], str],
                show: Callable[[Screen], None], done: Callable[[Screen], None] = lambda s: None) -> list[Take]:
    """The guided loop: ``ask()`` returns the user's key ('' Enter, 'r', 's', 'q'); ``show`` draws a screen (the
    recording phases are redrawn as they go; ``done`` is told when a screen will wait for a key)."""
    labels = choose_labels(model, config.labels)
    prompts = plan(labels, config.takes_per_label)
    takes: list[Take] = []
    kept: dict[str, int] = {}
    skipped: set[str] = set()

    def screen(i: int, phase: str, kept_now: dict[str, int] | None = None, **extra: Any) -> Screen:
        return Screen(prompts[i], i, len(prompts), phase, kept=dict(kept if kept_now is None else kept_now),
                      labels=labels, **extra)

    for i, prompt in enumerate(prompts):
        if prompt.label in skipped:
            continue
        waiting = screen(i, "ready")
        show(waiting)
        done(waiting)
        key = ask()
        if key == "q":
            break
        while key != "s":  # record until the take is kept (or the emotion skipped, or the session ended)
            start = time.monotonic()
            while (left := config.countdown_s - (time.monotonic() - start)) > 0:
                show(screen(i, "countdown", seconds_left=left))
                time.sleep(min(REFRESH_S, left))

            def progress(left: float, level: float | None, i: int = i) -> None:
                show(screen(i, "recording", seconds_left=left, level_dbfs=level))

            samples, rate = record(config.take_s, progress)
            result = check_take(model, samples, rate, prompt.label, config.quiet_peak_dbfs,
                                source=f"take {i + 1} ({prompt.label})")
            counted = kept | {prompt.label: kept.get(prompt.label, 0) + 1} if result.ok else kept
            verdict = screen(i, "kept" if result.ok else "refused", counted, message=result.reason)
            show(verdict)
            done(verdict)
            key = ask()
            if result.ok and key != "r":  # kept: Enter (next), q (then finish) or s (then skip the rest)
                assert result.take is not None
                takes.append(result.take)
                kept = counted
                break
            if key == "q":
                return takes
        if key == "s":
            skipped.add(prompt.label)
        if key == "q":
            break
    return takes


def read_key(stream: IO[str] | None = None) -> str:
    """The user's answer as one lower-case key: '' for Enter, 'q' at the end of the input (or Ctrl-D).

    On a terminal one key press is enough (no Enter): keys pressed before the question are dropped, and the terminal
    is put in cbreak mode for that one read and put back as it was (Ctrl-C still interrupts). Anything else (a pipe,
    a file, a test) is read a line at a time and answers with the line's first character."""
    stream = sys.stdin if stream is None else stream
    if not stream.isatty():
        line = stream.readline()
        if not line:
            return "q"
        return line.strip().lower()[:1]
    try:
        import termios
        import tty
    except ImportError:  # Windows: the console reads one key itself
        import msvcrt

        key = msvcrt.getwch()
    else:
        fd = stream.fileno()
        saved = termios.tcgetattr(fd)
        try:
            termios.tcflush(fd, termios.TCIFLUSH)  # keys pressed while a take recorded answer nothing
            tty.setcbreak(fd)
            key = os.read(fd, 1).decode("utf-8", errors="ignore")
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
    if key in ("\r", "\n", " "):
        return ""
    if key in ("", "\x04"):  # end of input, Ctrl-D
        return "q"
    return key.lower()


def mic_recorder(mic: Any) -> Recorder:
    """Records from a started :class:`realtime.sources.capture.MicrophoneSource` (what arrived before the take is
    dropped)."""

    def record(seconds: float, progress: Callable[[float, float | None], None]) -> tuple[np.ndarray, int]:
        while mic.read(timeout=0.0) is not None:  # audio from before the take
            pass
        rate = mic.sample_rate
        need = int(seconds * rate)
        parts: list[np.ndarray] = []
        got = 0
        while got < need:
            mic.check_health()
            block = mic.read(timeout=READ_TIMEOUT_S)
            if block is None:
                continue
            parts.append(block)
            got += len(block)
            progress(max(0.0, (need - got) / rate), block_dbfs(block))
        audio = np.concatenate(parts)[:need]
        return audio, rate

    return record


def run_enroll(model: EmotionModel, output: Path, config: EnrollConfig, mic_config: Any, overwrite: bool = False,
               name: str | None = None, console: Console | None = None) -> Profile:
    """The guided session on the microphone; writes and returns the profile."""
    from rich.live import Live

    from ser_live.realtime.sources.capture import MicrophoneSource

    output = Path(output).expanduser()
    check_output(output, overwrite)  # at the start, not after ten minutes of acting
    if not model.can_personalise:
        from ser_live.realtime.model import no_embedding_message

        raise UserError(no_embedding_message(model))
    choose_labels(model, config.labels)
    console = console or Console()
    live: list[Any] = []

    def show(screen: Screen) -> None:
        if not live:
            live.append(Live(render_screen(screen), console=console, auto_refresh=False, transient=False))
            live[0].start()
        live[0].update(render_screen(screen), refresh=True)

    def done(screen: Screen) -> None:  # the screen now waits for a key: leave it on the terminal
        if live:
            live.pop().stop()

    def ask() -> str:
        console.print("> ", end="")
        key = read_key()
        console.print(key or "")
        return key

    with MicrophoneSource(mic_config).start() as mic:
        console.print(f"[bold]Enrolment[/] for model {model.path.name} on mic {mic.device_name}: "
                      "act each emotion while saying the sentence shown.")
        takes = run_session(model, config, mic_recorder(mic), ask, show, done)
    if live:
        live.pop().stop()
    if len({t.label for t in takes}) < 1 or len(takes) < 2:
        raise UserError(f"only {len(takes)} take(s) kept: nothing to fit; run the enrolment again")
    profile = make_profile(model, takes, name=name or output.stem)
    profile.save(output, overwrite=overwrite)
    console.print(summary_text(profile))
    console.print(f"wrote {output}; use it with: ser-live --profile {output}")
    return profile
