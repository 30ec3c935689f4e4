"""``ser-live``: listen to the microphone (default) or replay a file, show the dashboard and/or write JSONL."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import numpy as np

from ser_live import __version__
from ser_live.realtime.config import DEFAULT_SMOOTHING_ALPHA, EngineConfig
from ser_live.realtime.deployment import load_deployment
from ser_live.realtime.engine import OFFLINE_SPAN_S, Engine
from ser_live.realtime.errors import UserError
from ser_live.realtime.events import STDOUT_TARGET, JsonlWriter, WindowEvent
from ser_live.realtime.faces.enroll import DEFAULT_COUNTDOWN_S, DEFAULT_TAKE_S, DEFAULT_TAKES
from ser_live.realtime.fileio import check_outputs
from ser_live.realtime.model import (
    DEFAULT_PROVIDER,
    DEFAULT_THREADS,
    bundled_demo_path,
    encoder_path,
    load_model,
    resolve_model_path,
)
from ser_live.realtime.profile import load_profile
from ser_live.realtime.stages.pipeline import DEFAULT_VAD_AGGRESSIVENESS, DEFAULT_VAD_NOISE_MARGIN_DB
from ser_live.realtime.tooling import EXIT_IO_ERROR, HelpFormatter, check_number, io_error_message

logger = logging.getLogger(__name__)

FILE_BLOCK_S = 0.03  # replay in 30 ms blocks, like the microphone
FAST_BLOCK_S = 1.0  # --fast: bigger blocks, same events (the engine is chunk-size invariant), less per-call overhead
DEFAULT_BLAS_THREADS = 1
MIC_READ_TIMEOUT_S = 0.1
PROVIDERS = ("auto", "cpu", "cuda")
EXIT_INTERRUPTED = 130


def add_serve_options(group: Any, prefix: str = "") -> None:
    """Token, origins and TLS of a server (ser-live --serve, ser-serve)."""
    group.add_argument("--token", default=None,
                       help=f"{prefix}the token clients must give (?token= or 'Authorization: Bearer') (default: "
                       "none on loopback, generated and printed for any other host)")
    group.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                       help=f"{prefix}another web origin whose pages may connect, e.g. http://localhost:3000 "
                       "(repeat) (default: only the page's own origin)")
    group.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                       help=f"{prefix}a host name clients reach the server by (repeat); a request under any other "
                       "name is refused (DNS rebinding). Loopback binds answer to 127.0.0.1, localhost and [::1] "
                       "(default: those; a wildcard bind without it relies on its token)")
    group.add_argument("--tls-cert", default=None, metavar="PEM",
                       help=f"{prefix}serve HTTPS/WSS with this certificate (browsers give the page the microphone "
                       "only on localhost or HTTPS) (default: plain HTTP)")
    group.add_argument("--tls-key", default=None, metavar="PEM", help="the private key of --tls-cert (default: none)")


def add_engine_options(p: argparse.ArgumentParser) -> None:
    """The engine's settings (ser-live, ser-serve): VAD, windows, smoothing, the uncertain threshold."""
    eng = p.add_argument_group("engine")
    eng.add_argument("--vad", type=int, choices=range(4), default=DEFAULT_VAD_AGGRESSIVENESS, help="VAD aggressiveness")
    eng.add_argument(
        "--vad-noise-margin",
        type=float,
        default=DEFAULT_VAD_NOISE_MARGIN_DB,
        help="a voiced frame must stand this many dB above the noise floor (0 = webrtcvad alone, as for v1)",
    )
    eng.add_argument(
        "--no-vad-agc",
        action="store_true",
        help="give webrtcvad the raw level (v1) instead of a level-normalised copy of the signal",
    )
    eng.add_argument("--window", type=float, default=None, help="window length in s (default: the model's)")
    eng.add_argument("--hop", type=float, default=None, help="hop between windows in s (default: the model's)")
    eng.add_argument("--min-speech", type=float, default=None, help="speech a window needs, s (default: the model's)")
    eng.add_argument(
        "--smoothing", type=float, default=DEFAULT_SMOOTHING_ALPHA, help="EMA weight of the newest window (1 = off)"
    )
    eng.add_argument(
        "--min-confidence",
        type=float,
        default=None,
        help="a window whose (calibrated) top probability is below this is shown and counted as 'uncertain' "
        "(default: the threshold stored in the model, none for models without one; 0 = never uncertain)",
    )


def engine_config(args: argparse.Namespace) -> EngineConfig:
    return EngineConfig(
        window_s=args.window,
        hop_s=args.hop,
        min_speech_s=args.min_speech,
        vad_aggressiveness=args.vad,
        vad_noise_margin_db=args.vad_noise_margin,
        vad_agc=not args.no_vad_agc,
        smoothing_alpha=args.smoothing,
        min_confidence=args.min_confidence,
    )


def check_engine_numbers(args: argparse.Namespace) -> None:
    check_number("--window", args.window, 0, low_open=True)
    check_number("--hop", args.hop, 0, low_open=True)
    check_number("--min-speech", args.min_speech, 0)
    check_number("--smoothing", args.smoothing, 0, 1, low_open=True)
    check_number("--min-confidence", args.min_confidence, 0, 1)
    check_number("--vad-noise-margin", args.vad_noise_margin, 0)
    check_number("--threads", args.threads, 1)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ser-live",
        description="Real-time speech-emotion monitor: microphone (default) or --file replay -> dashboard / JSONL.",
        formatter_class=HelpFormatter,
    )
    src = p.add_argument_group("input")
    src.add_argument(
        "--file", type=Path, default=None, help="replay an audio file instead of the microphone (default: microphone)"
    )
    src.add_argument(
        "--demo",
        action="store_true",
        help="replay the bundled demo recording (package data; works from any folder), as --file would",
    )
    src.add_argument(
        "--fast",
        action="store_true",
        help="with --file or --demo: as fast as possible, not real time (the whole-signal path: long spans, the model "
        "on many windows at once; the same events)",
    )
    src.add_argument(
        "--streaming-path",
        action="store_true",
        help="with --fast: feed the live engine block by block, one model call per window, as the microphone does "
        "(for comparison; the events are the same)",
    )
    src.add_argument(
        "--device",
        default=None,
        help="input device by number or (part of its) name, see --list-devices (default: the system's default input)",
    )
    src.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    src.add_argument("--samplerate", type=int, default=None, help="capture rate in Hz (default: the device's own)")
    src.add_argument(
        "--duration",
        type=float,
        default=None,
        help="stop by itself after this many seconds (default: at the end of the file, or on Ctrl-C)",
    )
    mod = p.add_argument_group("model")
    mod.add_argument("--model", type=Path, default=None, help="a ser-live ONNX model (default: the bundled one)")
    mod.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="PROFILE",
        help="a personal profile (ser-live --enroll, ser-profile fit) made for this model: its re-fitted last "
        "layer replaces the model's (default: none)",
    )
    mod.add_argument(
        "--deployment", type=Path, default=None, metavar="FILE",
        help="deployment statistics (ser-stats) for this model: the session normaliser starts from the recordings "
        "of where it is used instead of its training corpora (default: none)",
    )
    mod.add_argument("--provider", choices=PROVIDERS, default=DEFAULT_PROVIDER, help="ONNX Runtime provider")
    mod.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="ONNX Runtime intra-op threads")
    mod.add_argument(
        "--blas-threads",
        type=int,
        default=DEFAULT_BLAS_THREADS,
        help="numpy BLAS threads for the features (small matrices: more threads only add latency)",
    )
    add_engine_options(p)
    enr = p.add_argument_group("enrolment (a personal profile)")
    enr.add_argument(
        "--enroll",
        type=Path,
        default=None,
        metavar="PROFILE",
        help="a guided session on the microphone: act each emotion while saying the sentence shown, then write "
        "PROFILE (use it with --profile) (default: no enrolment, monitor)",
    )
    enr.add_argument("--enroll-labels", default="", metavar="L1,L2",
                     help="enrol only these emotions (default: every label of the model)")
    enr.add_argument("--enroll-takes", type=int, default=DEFAULT_TAKES, help="takes per emotion")
    enr.add_argument("--take-seconds", type=float, default=DEFAULT_TAKE_S, help="length of each take")
    enr.add_argument("--countdown", type=float, default=DEFAULT_COUNTDOWN_S, help="seconds before each take")
    enr.add_argument("--overwrite", action="store_true",
                     help="replace outputs that exist (--enroll PROFILE, --jsonl, --report); without it they are "
                     "refused")
    out = p.add_argument_group("output")
    out.add_argument(
        "--jsonl", default=None, metavar="PATH", help="write one JSON object per window ('-' = stdout) (default: none)"
    )
    out.add_argument("--append", action="store_true",
                     help="add this session's lines to an existing --jsonl file (without it an existing file is "
                     "refused)")
    out.add_argument("--no-dashboard", action="store_true", help="plain lines instead of the live dashboard")
    out.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="PNG",
        help="at the end, draw the session report (PNG, and a Markdown summary beside it); needs the [report] extra "
        "(default: no report)",
    )
    srv = p.add_argument_group("serving (needs the [serve] extra)")
    srv.add_argument("--serve", nargs="?", const="127.0.0.1:8765", default=None, metavar="[HOST:]PORT",
                     help="also serve the session: a live page at /, every event over a WebSocket at /ws, health "
                     "at /status; any host but loopback needs a token (default: not served; --serve alone: "
                     "127.0.0.1:8765)")
    add_serve_options(srv, "with --serve: ")
    srv.add_argument("--stay", action="store_true",
                     help="with --serve and --file or --demo: when the recording ends, keep the page up with the "
                     "finished session (its windows and summary) until Ctrl-C (default: ser-live exits at the end)")
    srv.add_argument("--connect", default=None, metavar="URL",
                     help="score remotely: stream the microphone or --file to a ser-serve at URL (e.g. "
                     "ws://127.0.0.1:8765, or the URL it printed) and show the events it sends back (default: the "
                     "local engine)")
    srv.add_argument("--tls-ca", default=None, metavar="PEM",
                     help="with --connect wss://: a certificate to trust, e.g. the server's self-signed one (default: "
                     "the system's trusted authorities)")
    srv.add_argument("--connect-profile", default=None, metavar="NAME",
                     help="with --connect: one of the profiles the server was started with (ser-serve --profile) "
                     "(default: none, the server's model)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    p.add_argument("--version", action="version", version=f"ser-live {__version__}")
    return p


class _Stop(Exception):  # noqa: N818 - a stop request, not an error
    """A second Ctrl-C or SIGTERM while the first is being handled: stop at once (still cleanly)."""


class StopRequest:
    """SIGINT/SIGTERM handler for the main loop: records the request, and the loop stops after the block it is on
    (an exception raised in the middle of ``engine.feed`` could leave the engine half-updated for the final
    flush). A second signal raises :class:`_Stop` at once, for when the loop itself is stuck."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, duration_s: float | None = None) -> None:
        self.signum: int | None = None
        self.deadline = None if duration_s is None else time.monotonic() + duration_s

    def due(self) -> bool:
        """A signal came, or ``--duration`` is over: stop after the current block."""
        return self.signum is not None or (self.deadline is not None and time.monotonic() >= self.deadline)

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise _Stop()
        self.signum = signum

    def install(self, stack: ExitStack) -> StopRequest:
        for sig in self.SIGNALS:
            stack.callback(signal.signal, sig, signal.signal(sig, self))
        return self


def resolve_demo(args: argparse.Namespace) -> None:
    """``--demo`` is ``--file`` on the bundled recording."""
    if args.demo:
        if args.file is not None:
            raise UserError("--demo and --file are two inputs: pass one of them")
        args.file = bundled_demo_path()
        print("ser-live: the demo is synthetic speech (espeak-ng acting calm, excited, sad and angry; 23 s): a "
              "speech synthesiser's emotions are faint, so expect mostly neutral at low confidence; a real voice "
              "shows more", file=sys.stderr, flush=True)


def open_source(args: argparse.Namespace, stack: ExitStack,
                block_s: float | None = None) -> tuple[Iterator[np.ndarray | None], int, str, Any]:
    """``--file`` (paced unless ``--fast``) or the microphone (entered on ``stack``): blocks, their rate, the
    source's name, and the microphone (None for a file)."""
    if args.file is not None:
        blocks, rate, name = file_blocks(args.file, realtime_pace=not args.fast, block_s=block_s)
        if args.demo:  # the dashboard's title, the page and the summary say what it is
            name += " (synthetic speech: faint emotions)"
        return blocks, rate, name, None
    from ser_live.realtime.sources.capture import CaptureConfig, MicrophoneSource

    mic = stack.enter_context(MicrophoneSource(CaptureConfig(device=args.device, sample_rate=args.samplerate)).start())
    return _mic_blocks(mic), mic.sample_rate, f"mic {mic.device_name}", mic


def file_blocks(path: Path, realtime_pace: bool, block_s: float | None = None) -> tuple[Iterator[np.ndarray], int, str]:
    from ser_live.realtime.sources.audio import audio_info, iter_audio_blocks

    info = audio_info(path)
    if info.truncation_note:
        print(f"ser-live: note: {path} is {info.truncation_note}; scoring what is there", file=sys.stderr)
    seconds = block_s if block_s is not None else FILE_BLOCK_S if realtime_pace else FAST_BLOCK_S
    block = max(1, int(seconds * info.sample_rate))

    def gen() -> Iterator[np.ndarray]:
        start = time.monotonic()
        sent = 0
        for chunk in iter_audio_blocks(path, block):
            if realtime_pace:
                delay = start + sent / info.sample_rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            sent += len(chunk)
            yield chunk

    return gen(), info.sample_rate, f"file {path.name}"


def summary_line(summary: dict[str, Any]) -> str:
    """The session summary in one line: audio, windows, time per emotion (most first), dropped audio."""
    head = f"session: {summary.get('audio_s') or 0.0:.2f} s audio, {summary.get('windows', 0)} windows"
    dropped = summary.get("dropped_audio_s") or 0.0
    overflows = summary.get("overflows") or 0
    tail = f"; {overflows} input overflow(s)" if overflows else ""
    if not summary.get("windows"):
        return f"{head}, no speech detected" + (f"; dropped {dropped:.2f} s" if dropped else "") + tail
    times = dict(summary.get("time_per_emotion_s") or {})
    if summary.get("uncertain_s"):
        times["uncertain"] = summary["uncertain_s"]
    spent = sorted(((t, k) for k, t in times.items() if t), key=lambda tk: -tk[0])
    parts = ", ".join(f"{k} {t:.1f} s" for t, k in spent)
    affect = ""
    if summary.get("arousal_mean") is not None and summary.get("valence_mean") is not None:
        affect = f"; arousal {summary['arousal_mean']:+.2f}, valence {summary['valence_mean']:+.2f}"
    mostly = summary.get("dominant") or "uncertain (no window was sure enough)"
    return f"{head}; {parts}; mostly {mostly}{affect}; dropped {dropped:.2f} s{tail}"


class Outputs:
    """Where events go: JSONL, the rich dashboard, or plain lines."""

    def __init__(self, args: argparse.Namespace, engine: Engine, source_name: str, stack: ExitStack) -> None:
        from ser_live.realtime.faces import dashboard

        self.engine = engine
        self.source_name = source_name
        self.report: Path | None = args.report
        self.kept: list[WindowEvent] = []  # for --report
        self.jsonl: JsonlWriter | None = JsonlWriter(args.jsonl, append=args.append) if args.jsonl else None
        if self.jsonl is not None:
            stack.callback(self.jsonl.close)
        stdout_taken = args.jsonl == "-"
        self.plain: TextIO | None = None if stdout_taken else sys.stdout
        self.live: Any = None
        self.state = dashboard.DashboardState(
            labels=engine.labels,
            model=engine.model.name,
            provider=engine.model.provider,
            profile=engine.profile_name or "",
            source=source_name,
            device_rate=engine.input_rate,
            model_rate=engine.sample_rate,
        )
        if not args.no_dashboard and not stdout_taken and sys.stdout.isatty():
            self.live = dashboard.LiveDashboard(self.state)
            self.live.start()
            stack.callback(self.live.stop)
            self.plain = None
        self._dashboard = dashboard
        self.server: Any = None
        self.stay = bool(args.stay)
        if args.serve is not None:
            self.server = _start_server(args, engine, source_name)
            stack.callback(self.server.close)
            print(f"ser-live: serving {self.server.url}", file=sys.stderr, flush=True)

    def tick(self, dropped_s: float = 0.0, overflows: int = 0) -> None:
        st = self.engine.state
        self.state.update_level(st.level_dbfs, st.is_speech, audio_s=st.samples_in / self.engine.sample_rate)
        self.state.update_stats(dropped_s=dropped_s, overflows=overflows)
        if self.server is not None:
            self.server.status(level_dbfs=round(float(st.level_dbfs), 1), speech=bool(st.is_speech),
                               audio_s=round(st.samples_in / self.engine.sample_rate, 3),
                               windows=self.engine.summary.windows, dropped_audio_s=round(dropped_s, 3),
                               overflows=overflows)
        # the live dashboard redraws itself ~10x a second from this state (level, speech, elapsed)

    def events(self, events: Sequence[WindowEvent]) -> None:
        for ev in events:
            if self.report is not None:
                self.kept.append(ev)
            if self.jsonl is not None or self.server is not None:
                line = ev.to_dict()
                if self.jsonl is not None:
                    self.jsonl.write(line)
                if self.server is not None:
                    self.server.publish(line)
            self.state.update_window(ev)
            if self.plain is not None:
                print(self._dashboard.plain_line(ev), file=self.plain, flush=True)
        if events and self.live is not None:
            self.live.update()

    def finish(self, summary: dict[str, Any], stop: StopRequest | None = None) -> None:
        """The summary to every output; with ``--stay`` (and ``stop``, not already requested) the page keeps the
        finished session until Ctrl-C, after everything else is written."""
        if self.jsonl is not None:
            if self.jsonl.failed:  # e.g. a full disk: the summary must not be lost too
                print(f"ser-live: {self.jsonl.target} holds only the first {self.jsonl.lines_written} events; the "
                      f"session's summary: {json.dumps(summary)}", file=sys.stderr, flush=True)
            self.jsonl.write(summary)
        staying = self.server is not None and self.stay and stop is not None and stop.signum is None
        if self.server is not None and not staying:
            self.server.close(summary)  # the summary reaches the clients, then they are closed (1001)
        if self.live is not None:
            self.live.stop()
            self.live = None
        out = sys.stderr if self.plain is None else self.plain
        print(summary_line(summary), file=out, flush=True)
        if self.report is not None:
            from ser_live.report.session import session_from_events, write_report

            png, md = write_report(session_from_events(self.kept, summary, source=self.source_name), self.report)
            print(f"report: {png} and {md}", file=out, flush=True)
        if staying:
            assert stop is not None
            self.server.publish(summary)  # kept: a page opened from now on gets it with the windows
            print(f"ser-live: the recording has ended; {self.server.url} keeps the finished session until Ctrl-C",
                  file=sys.stderr, flush=True)
            with contextlib.suppress(KeyboardInterrupt, _Stop):
                while stop.signum is None:
                    time.sleep(0.2)
            self.server.close(None)


def _start_server(args: argparse.Namespace, engine: Engine, source_name: str) -> Any:
    from ser_live.realtime.faces.serve import EventServer, ServeConfig, parse_bind

    host, port = parse_bind(args.serve)
    hello = {"model": engine.model.name, "labels": list(engine.labels), "version": __version__,
             "source": source_name, "profile": engine.profile_name, "settings": engine.settings}
    config = ServeConfig(host=host, port=port, token=args.token, allow_origins=tuple(args.allow_origin),
                         allow_hosts=tuple(args.allow_host), hello=hello,
                         tls_cert=args.tls_cert, tls_key=args.tls_key)
    return EventServer(config).start()


SERVE_ONLY = ("token", "allow_origin", "allow_host", "tls_cert", "tls_key", "stay")


def check_applicable(args: argparse.Namespace) -> None:
    """An option that would be ignored is refused (a user who gives one expects it to do something)."""
    if args.serve is None:
        given = [name for name in SERVE_ONLY if getattr(args, name) not in (None, False, [], ())]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise UserError(f"{flag} only applies with --serve (the live page); add --serve, or use ser-serve")
    if args.stay and args.file is None and not args.demo:
        raise UserError("--stay keeps the page up after a recording ends; the microphone runs until Ctrl-C anyway: "
                        "leave --stay out, or add --file/--demo")
    if args.file is not None or args.demo:
        mic = [flag for flag, value in (("--device", args.device), ("--samplerate", args.samplerate))
               if value is not None]
        if mic:
            raise UserError(f"{mic[0]} chooses the microphone, which a replay does not use: leave it out with "
                            f"{'--demo' if args.demo else '--file'}")
    if args.enroll_labels and not [x for x in args.enroll_labels.split(",") if x.strip()]:
        raise UserError(f"--enroll-labels {args.enroll_labels!r} names no emotion: give some, e.g. "
                        "--enroll-labels angry,happy,neutral,sad (or leave it out for every label)")


def run(args: argparse.Namespace) -> int:
    if args.list_devices:
        from ser_live.realtime.sources.capture import list_devices

        print(list_devices())
        return 0
    check_numbers(args)
    check_applicable(args)
    if args.connect is not None:
        return _connect(args)
    if args.connect_profile is not None:
        raise UserError("--connect-profile only applies with --connect URL")
    if args.tls_ca is not None:
        raise UserError("--tls-ca only applies with --connect wss://URL")
    if args.enroll is not None:
        return _enroll(args)
    resolve_demo(args)
    if args.fast and args.file is None:
        raise UserError("--fast only applies to --file (or --demo) replays")
    if args.streaming_path and not args.fast:
        raise UserError("--streaming-path only applies to --fast replays (real-time replays and the microphone "
                        "always stream)")
    check_live_outputs(args)
    config = engine_config(args)
    if args.blas_threads < 1:
        raise UserError(f"--blas-threads must be at least 1 (got {args.blas_threads})")
    limit_blas_threads(args.blas_threads)
    model = load_model(args.model, provider=args.provider, threads=args.threads,
                       profile=None if args.profile is None else load_profile(args.profile))
    if args.deployment is not None:
        model = load_deployment(args.deployment).apply(model)
    config.pipeline_config(model)
    interrupted = False
    failure: UserError | None = None
    with ExitStack() as stack:
        offline = args.file is not None and args.fast and not args.streaming_path
        blocks, rate, source_name, mic = open_source(args, stack, OFFLINE_SPAN_S if offline else None)
        engine = Engine(model, rate, config)
        outputs = Outputs(args, engine, source_name, stack)
        stop = StopRequest(args.duration).install(stack)
        try:
            if offline:  # the whole file is at hand: long spans, batched model calls, the same events
                for event in engine.iter_batched(blocks):
                    outputs.events([event])
                    outputs.tick()
                    if stop.due():
                        break
            else:
                for block in blocks:
                    if block is not None and len(block):
                        outputs.events(engine.feed(block))
                    outputs.tick(*((mic.dropped_seconds, mic.overflows) if mic is not None else ()))
                    if stop.due():
                        break
        except (KeyboardInterrupt, _Stop):
            interrupted = True
        except UserError as exc:  # e.g. the device went away: keep what we have, then report
            failure = exc
        interrupted = interrupted or stop.signum is not None
        if not offline:  # iter_batched has flushed the stream itself
            outputs.events(engine.flush())
        if mic is not None:
            engine.summary.dropped_audio_s = mic.dropped_seconds
            engine.summary.overflows = mic.overflows
        summary = engine.summary.to_dict()
        outputs.finish(summary, None if interrupted or failure is not None else stop)
        if failure is not None:
            raise failure
        if engine.summary.windows == 0:
            print(
                f"ser-live: no speech detected in {engine.summary.audio_s:.2f} s of audio (no window held "
                f"{engine.pipeline_config.min_speech_s:g} s of speech); if there was speech, raise the input level "
                "or lower --vad / --min-speech",
                file=sys.stderr,
            )
    return EXIT_INTERRUPTED if interrupted and args.duration is None and args.file is not None else 0


MAX_SAMPLE_RATE = 768_000


def check_numbers(args: argparse.Namespace) -> None:
    """Every numeric option: finite and in its range, the message naming the option as --help does."""
    check_number("--duration", args.duration, 0, low_open=True)
    check_engine_numbers(args)
    check_number("--samplerate", args.samplerate, 1, MAX_SAMPLE_RATE)
    check_number("--blas-threads", args.blas_threads, 1)
    check_number("--take-seconds", args.take_seconds, 0, low_open=True)
    check_number("--countdown", args.countdown, 0)
    check_number("--enroll-takes", args.enroll_takes, 1)


def model_inputs(args: argparse.Namespace) -> dict[str, Path]:
    """The files a run reads besides its audio: the model (its encoder too) and the profile; never an output."""
    if getattr(args, "connect", None) is not None:
        return {}
    model = resolve_model_path(args.model)
    inputs = {"--model": model, "--model (its encoder)": encoder_path(model)}
    if getattr(args, "profile", None) is not None:
        inputs["--profile"] = Path(args.profile)
    if getattr(args, "deployment", None) is not None:
        inputs["--deployment"] = Path(args.deployment)
    return inputs


def check_live_outputs(args: argparse.Namespace) -> None:
    """At start, not after an hour of listening: --jsonl and --report go to writable places, are not the input file
    and not each other, and replace or extend nothing without --overwrite / --append."""
    if args.append and args.overwrite:
        raise UserError("--append adds to --jsonl and --overwrite replaces it: pass one of them")
    if args.append and (not args.jsonl or args.jsonl == STDOUT_TARGET):
        raise UserError("--append only applies to a --jsonl file")
    outputs: dict[str, Path] = {}
    if args.jsonl and args.jsonl != STDOUT_TARGET:
        outputs["--jsonl"] = Path(args.jsonl)
    if args.report is not None:
        from ser_live.report.session import check_report_path, require_matplotlib

        require_matplotlib()
        outputs["--report"] = args.report
        outputs["--report (its Markdown)"] = check_report_path(args.report)
    inputs = model_inputs(args)
    if args.file is not None:
        inputs["--file"] = Path(args.file)
    appended = {"--jsonl"} if args.append else set()
    check_outputs(outputs, inputs, overwrite=True)  # no input, no two outputs alike, writable folders
    check_outputs({k: v for k, v in outputs.items() if k not in appended}, overwrite=args.overwrite,
                  replace_hint={"--jsonl": "pass --append to add to it or --overwrite to replace it"})


def _enroll(args: argparse.Namespace) -> int:
    from ser_live.realtime.faces.enroll import EnrollConfig, run_enroll
    from ser_live.realtime.sources.capture import CaptureConfig

    taken = [name for name, value in (("--file", args.file), ("--demo", args.demo), ("--profile", args.profile),
                                      ("--deployment", args.deployment), ("--jsonl", args.jsonl),
                                      ("--report", args.report), ("--serve", args.serve)) if value]
    if taken:
        raise UserError(f"--enroll records from the microphone and writes a profile: leave out {', '.join(taken)}")
    config = EnrollConfig(
        labels=tuple(x.strip() for x in args.enroll_labels.split(",") if x.strip()),
        takes_per_label=args.enroll_takes,
        take_s=args.take_seconds,
        countdown_s=args.countdown,
    )
    check_outputs({"--enroll": Path(args.enroll)}, model_inputs(args), overwrite=True)  # the model is no output
    limit_blas_threads(args.blas_threads)
    model = load_model(args.model, provider=args.provider, threads=args.threads)
    try:
        run_enroll(model, args.enroll, config, CaptureConfig(device=args.device, sample_rate=args.samplerate),
                   overwrite=args.overwrite)
    except KeyboardInterrupt:
        print("ser-live: enrolment interrupted; no profile written", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


LOCAL_ONLY = ("serve", "enroll", "profile", "deployment", "model", "report", "streaming_path")


def _connect(args: argparse.Namespace) -> int:
    """``--connect URL``: the microphone or a file streamed to a ser-serve; its events printed or written as JSONL,
    exactly as the local engine's would be."""
    from ser_live.realtime.faces.dashboard import plain_line
    from ser_live.realtime.faces.serve import stream_to
    from ser_live.realtime.sources.audio import audio_info

    for name in LOCAL_ONLY:
        if getattr(args, name) not in (None, False):
            flag = "--" + name.replace("_", "-")
            raise UserError(f"{flag} applies to the local engine; with --connect the server's model scores (its "
                            "profiles: --connect-profile NAME)")
    resolve_demo(args)
    check_live_outputs(args)
    with ExitStack() as stack:
        blocks, rate, source_name, mic = open_source(args, stack)
        channels = mic.channels if mic is not None else audio_info(args.file).channels
        jsonl = JsonlWriter(args.jsonl, append=args.append) if args.jsonl else None
        if jsonl is not None:
            stack.callback(jsonl.close)
        plain = None if args.jsonl == STDOUT_TARGET else sys.stdout
        stop = StopRequest(args.duration).install(stack)

        def on_message(message: dict[str, Any]) -> None:
            kind = message.get("type")
            if kind == "hello":
                print(f"ser-live: streaming {source_name} to {args.connect.split('?')[0]}: model "
                      f"{message.get('model')}, session {message.get('session')}", file=sys.stderr, flush=True)
            if kind in ("window", "summary") and jsonl is not None:
                jsonl.write(message)
            if kind == "window" and plain is not None:
                print(plain_line(message), file=plain, flush=True)

        summary = stream_to(args.connect, blocks, rate, channels, on_message, profile=args.connect_profile,
                            client=source_name, stop=stop.due, cafile=args.tls_ca)
        if summary is None:
            raise UserError(f"{args.connect.split('?')[0]} went away before the session's summary")
        print(summary_line(summary), file=sys.stderr if plain is None else plain, flush=True)
    return EXIT_INTERRUPTED if stop.signum is not None and args.duration is None and args.file is not None else 0


def _mic_blocks(mic: Any) -> Iterator[np.ndarray | None]:
    while True:
        mic.check_health()
        yield mic.read(timeout=MIC_READ_TIMEOUT_S)


def limit_blas_threads(n: int) -> None:
    """Cap numpy's BLAS pool: the feature matrices are small, and a second BLAS thread that has to wait for a busy
    core turns a 20 µs product into milliseconds (measured in docs/history/benchmarks-v1-v6.md)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n, user_api="blas")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        code = run(args)
    except UserError as exc:
        print(f"ser-live: error: {exc}", file=sys.stderr)
        code = exc.exit_code
    except (KeyboardInterrupt, _Stop):
        code = EXIT_INTERRUPTED
    except OSError as err:  # the net under the checks (see ser_live.realtime.tooling)
        print(f"ser-live: error: {io_error_message(err)}", file=sys.stderr)
        code = EXIT_IO_ERROR
    return leave_if_stuck(code)


def leave_if_stuck(code: int) -> int:
    """``code``, or -- when an audio stream could not be stopped (its device hung) -- leave the process at once
    with ``os._exit(code)``: PortAudio's shutdown at interpreter exit would hang on that stream too."""
    capture = sys.modules.get("ser_live.realtime.sources.capture")  # never imported for --file: nothing to check
    if capture is None or not capture.streams_left_behind():
        return code
    logger.debug("an audio stream is stuck; leaving with os._exit(%d)", code)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more can be said there
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
