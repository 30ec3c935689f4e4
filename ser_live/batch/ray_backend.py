"""Score files through Ray Data: an actor pool, one :class:`batch.score.FileScorer` (one ONNX session) per actor.

The only module that imports Ray. The driver plans (one row per file), ``map_batches`` feeds the actors, and the
results stream back to the driver, which journals and writes them exactly as the local run does.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

import numpy as np

from ser_live.batch.score import BatchSettings, FileScorer
from ser_live.batch.store import json_default
from ser_live.realtime.errors import UserError
from ser_live.realtime.tooling import EXIT_INTERRUPTED

logger = logging.getLogger(__name__)

AUTO_ADDRESSES = (None, "", "auto")  # RAY_ADDRESS when it is set (Ray's own convention), else a local Ray
LOCAL_ADDRESS = "local"  # always a local Ray
RAY_ADDRESS_ENV = "RAY_ADDRESS"
AUTH_MODE_ENV = "RAY_AUTH_MODE"
AUTH_HINT = (
    "if the cluster uses token authentication (the default of `ray start` since Ray 2.59), set RAY_AUTH_MODE=token "
    "and give its token in RAY_AUTH_TOKEN or ~/.ray/auth_token (`ray get-auth-token` on the head node prints it)"
)
BLOCKS_PER_ACTOR = 4
FILES_PER_CALL = 8  # files per map_batches call: fewer round trips between the actors and the driver
RAY_HINT = "pip install 'ser-live[cluster]' (Ray Data)"
DEFAULT_CONNECT_TIMEOUT_S = 10.0


class RayScorer:
    """A Ray Data callable class: the model is loaded once per actor."""

    def __init__(self, model_path: str | None, settings: dict[str, Any]) -> None:
        from ser_live.batch.local import limit_blas

        limit_blas()
        self.scorer = FileScorer(model_path, BatchSettings.from_dict(settings))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = [json.dumps(self.scorer.score(str(path)), default=json_default) for path in batch["path"]]
        return {"result": np.array(results, dtype=object)}


def resolve_address(address: str | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """The cluster ``--ray ADDRESS`` means, or None for a Ray started by this run: no address or ``auto`` is
    ``RAY_ADDRESS`` when set, else local; ``local`` is always local; anything else is a cluster address."""
    if address in AUTO_ADDRESSES:
        return environ.get(RAY_ADDRESS_ENV) or None
    if address == LOCAL_ADDRESS:
        return None
    return address


def connect_error(address: str | None, err: BaseException, environ: Mapping[str, str] = os.environ) -> UserError:
    """The one-line error for a cluster that could not be joined (with the token-authentication hint when the
    driver is not in token mode), or for a local Ray (``address`` None) that could not start."""
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    if address is None:
        return UserError(f"could not start a local Ray: {first}; try --workers without --ray")
    hint = "" if environ.get(AUTH_MODE_ENV, "").lower() == "token" else f"; {AUTH_HINT}"
    return UserError(f"cannot reach the Ray cluster at {address}: {first}{hint}")


def probe_address(address: str, timeout_s: float) -> None:
    """UserError unless something accepts a TCP connection at ``address`` (``host:port``, or ``ray://host:port``)
    within ``timeout_s``: Ray itself retries an unreachable address for minutes. Addresses without a port are left
    to Ray."""
    import socket

    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as err:
        reason = "timed out" if isinstance(err, TimeoutError) else (err.strerror or type(err).__name__)
        raise UserError(f"cannot reach the Ray cluster at {address}: {reason} (within {timeout_s:g} s, "
                        "--ray-timeout); check the address and that `ray start --head` runs there") from None


def _init_options(cluster: str | None, workers: int, environ: MutableMapping[str, str]) -> dict[str, Any]:
    init: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    if cluster is not None:
        init["address"] = cluster
    else:
        environ.pop(RAY_ADDRESS_ENV, None)  # start our own, even when RAY_ADDRESS names another
        init["num_cpus"] = workers
    return init


def run_ray(
    address: str | None,
    model_path: str | None,
    settings: BatchSettings,
    paths: Sequence[str],
    workers: int,
    on_result: Callable[[dict[str, Any]], None],
    should_stop: Callable[[], bool],
    timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
) -> bool:
    cluster = resolve_address(address)
    if cluster is not None:
        probe_address(cluster, timeout_s)
    try:
        import ray
        import ray.data
    except ImportError:
        raise UserError(f"--ray needs Ray: {RAY_HINT}") from None
    # Ctrl-C must work while Ray connects or starts (the driver's handler only asks the scoring to stop)
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        ray.init(**_init_options(cluster, workers, os.environ))
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise connect_error(cluster, err) from None
    except KeyboardInterrupt:
        raise UserError("interrupted while connecting to Ray; nothing was scored", exit_code=EXIT_INTERRUPTED) from None
    finally:
        signal.signal(signal.SIGINT, handler)
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # our own progress line says what is done
        if not paths:
            return True
        # a few blocks per actor, not one per file: each block is a Ray task, and per-task overhead adds up
        blocks = max(1, min(len(paths), BLOCKS_PER_ACTOR * workers))
        ds = ray.data.from_items([{"path": p} for p in paths], override_num_blocks=blocks)
        scored = ds.map_batches(
            RayScorer,
            fn_constructor_args=(model_path, settings.to_dict()),
            batch_size=FILES_PER_CALL,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=1,
        )
        try:
            for row in scored.iter_rows():
                on_result(json.loads(row["result"]))
                if should_stop():
                    return False
        except (Exception, KeyboardInterrupt):  # a Ctrl-C also reaches Ray's workers, which then fail the stream
            if should_stop():
                return False
            raise
        return True
    finally:
        ray.shutdown()
