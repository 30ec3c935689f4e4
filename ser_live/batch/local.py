"""Score files on this machine: in-process for one worker, else a pool of worker processes (one model each).

Workers ignore SIGINT/SIGTERM (the driver decides when to stop) and leave within half a second when the driver is
gone however it ended (SIGKILL included); they limit numpy's BLAS pool to one thread and run
ONNX Runtime with one thread, so N workers use N cores. At most ``2 * workers`` files are in flight: a stop
request cancels the rest and waits only for the files being scored.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable, Sequence
from typing import Any

from ser_live.batch.score import BatchSettings, FileScorer
from ser_live.realtime.tooling import die_with

logger = logging.getLogger(__name__)

IN_FLIGHT_PER_WORKER = 2
BLAS_THREADS = 1
POOL_START_METHOD = "spawn"  # ONNX Runtime and OpenBLAS threads do not survive fork() reliably

_scorer: FileScorer | None = None


def limit_blas() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(BLAS_THREADS, "blas")


def _init_worker(model_path: str | None, settings: dict[str, Any], parent_pid: int) -> None:
    global _scorer  # one scorer per worker process
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    die_with(parent_pid)  # SIGINT/SIGTERM are ignored: leave when the driver is gone
    limit_blas()
    _scorer = FileScorer(model_path, BatchSettings.from_dict(settings))


def _score(path: str) -> dict[str, Any]:
    assert _scorer is not None, "worker not initialised"
    return _scorer.score(path)


def run_local(
    model_path: str | None,
    settings: BatchSettings,
    paths: Sequence[str],
    workers: int,
    on_result: Callable[[dict[str, Any]], None],
    should_stop: Callable[[], bool],
) -> bool:
    """Score ``paths``; ``on_result`` gets each result as it is done. Returns False when stopped early."""
    if workers <= 1:
        limit_blas()
        scorer = FileScorer(model_path, settings)
        for path in paths:
            if should_stop():
                return False
            on_result(scorer.score(path))
        return True
    context = multiprocessing.get_context(POOL_START_METHOD)
    todo = list(paths)
    pending: set[cf.Future[dict[str, Any]]] = set()
    with cf.ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_init_worker,
        initargs=(model_path, settings.to_dict(), os.getpid())
    ) as pool:
        while todo or pending:
            while todo and len(pending) < IN_FLIGHT_PER_WORKER * workers and not should_stop():
                pending.add(pool.submit(_score, todo.pop(0)))
            if not pending:
                break
            done, pending = cf.wait(pending, timeout=0.2, return_when=cf.FIRST_COMPLETED)
            for future in done:
                on_result(future.result())
            if should_stop():
                todo.clear()
        return not should_stop()
