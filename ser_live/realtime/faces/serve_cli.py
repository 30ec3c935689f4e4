"""``ser-serve [HOST:]PORT``: the ser-live engine as a local streaming endpoint (needs the ``[serve]`` extra).

    ser-serve                                   # 127.0.0.1:8765: the page at /, audio in at /stream, /status
    ser-serve 0.0.0.0:8765 --tls-cert c.pem --tls-key k.pem --profile agent=agent.json

Each client of ``/stream`` gets an engine session of its own (the protocol: :mod:`ser_live.realtime.faces.stream`); the
page at ``/`` offers "use this browser's microphone". Ctrl-C sends every open stream its summary, then closes.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from ser_live import __version__
from ser_live.realtime.deployment import load_deployment
from ser_live.realtime.errors import UserError
from ser_live.realtime.faces.cli import (
    PROVIDERS,
    add_engine_options,
    add_serve_options,
    check_engine_numbers,
    engine_config,
    limit_blas_threads,
)
from ser_live.realtime.faces.stream import SESSIONS_PER_CPU, StreamService
from ser_live.realtime.model import DEFAULT_PROVIDER, DEFAULT_THREADS, EmotionModel, load_model
from ser_live.realtime.profile import load_profile
from ser_live.realtime.tooling import HelpFormatter, basic_logging, check_number, run_tool

logger = logging.getLogger(__name__)

DEFAULT_BIND = "127.0.0.1:8765"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ser-serve",
        description="Speech-emotion recognition as a local streaming service: clients send PCM16 audio over a "
        "WebSocket at /stream and get the events of their own engine session; a live page at / (with 'use this "
        "browser's microphone') and health at /status.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("bind", nargs="?", default=DEFAULT_BIND, metavar="[HOST:]PORT",
                   help="where to listen; any host but loopback needs a token")
    mod = p.add_argument_group("model")
    mod.add_argument("--model", default=None, help="a ser-live ONNX model (default: the bundled one)")
    mod.add_argument("--profile", action="append", default=[], metavar="NAME=PATH",
                     help="a personal profile a client may ask for by NAME in its start message (repeat) "
                     "(default: none)")
    mod.add_argument("--deployment", default=None, metavar="FILE",
                     help="deployment statistics (ser-stats) for this model, for every stream (default: none)")
    mod.add_argument("--provider", choices=PROVIDERS, default=DEFAULT_PROVIDER, help="ONNX Runtime provider")
    mod.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="ONNX Runtime intra-op threads")
    srv = p.add_argument_group("serving")
    add_serve_options(srv)
    srv.add_argument("--max-sessions", type=int, default=0,
                     help=f"concurrent streams; one more is refused with close code 1013 (default: "
                     f"{SESSIONS_PER_CPU} per CPU)")
    srv.add_argument("--workers", type=int, default=0,
                     help="threads that run the sessions' engines (default: one per CPU)")
    add_engine_options(p)
    p.add_argument("-v", "--verbose", action="store_true", help="log every session on stderr")
    p.add_argument("--version", action="version", version=f"ser-serve {__version__}")
    return p


def parse_profiles(values: Sequence[str], model: EmotionModel) -> dict[str, EmotionModel]:
    """``NAME=PATH`` options -> the model with each profile's last layer (each checked against the model now)."""
    out: dict[str, EmotionModel] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise UserError(f"--profile {value}: expected NAME=PATH, e.g. --profile agent=agent.json")
        if name in out:
            raise UserError(f"--profile {name} is given twice: one path per name")
        out[name] = model.with_profile(load_profile(path))
    return out


def run(args: argparse.Namespace) -> int:
    from ser_live.realtime.faces.serve import EventServer, ServeConfig, parse_bind

    check_engine_numbers(args)
    check_number("--max-sessions", args.max_sessions, 0)
    check_number("--workers", args.workers, 0)
    host, port = parse_bind(args.bind, flag="ser-serve")
    limit_blas_threads(1)
    model = load_model(args.model, provider=args.provider, threads=args.threads)
    if args.deployment is not None:
        model = load_deployment(args.deployment).apply(model)
    info = {"model": model.name, "version": __version__, "source": "ser-serve"}
    service = StreamService(model, engine_config(args), parse_profiles(args.profile, model),
                            max_sessions=args.max_sessions, workers=args.workers, info=info)
    config = ServeConfig(host=host, port=port, token=args.token, allow_origins=tuple(args.allow_origin),
                         allow_hosts=tuple(args.allow_host),
                         hello={**info, "labels": list(model.labels)}, streams=service, tls_cert=args.tls_cert,
                         tls_key=args.tls_key)
    server = EventServer(config).start()
    stopped = threading.Event()

    def stop(signum: int, frame: object) -> None:
        stopped.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"ser-serve: serving {server.url} (audio in at {server.stream_url}; up to {service.max_sessions} "
              "sessions)", file=sys.stderr, flush=True)
        while not stopped.wait(0.5):
            pass
    finally:
        server.close()  # every open stream gets its summary, then 1001
        service.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    health = server.health()
    print(f"ser-serve: stopped after {health['sessions_total']} session(s), {health['windows']} windows",
          file=sys.stderr, flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    basic_logging(args.verbose)
    if args.verbose:
        logging.getLogger("websockets").setLevel(logging.INFO)  # sessions, not every frame
    return run_tool("ser-serve", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
