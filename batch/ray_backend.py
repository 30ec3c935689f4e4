"""Score files through Ray Data: an actor pool, one :class:`batch.score.FileScorer` (one ONNX session) per actor.

The only module that imports Ray. The driver plans (one row per file), ``map_batches`` feeds the actors, and the
results stream back to the driver, which journals and writes them exactly as the local run does.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from batch.score import BatchSettings, FileScorer
from realtime.errors import UserError

logger = logging.getLogger(__name__)

LOCAL_ADDRESSES = (None, "", "auto", "local")
BLOCKS_PER_ACTOR = 4
FILES_PER_CALL = 8  # files per map_batches call: fewer round trips between the actors and the driver
RAY_HINT = "pip install 'ser-live[cluster]' (Ray Data)"


class RayScorer:
    """A Ray Data callable class: the model is loaded once per actor."""

    def __init__(self, model_path: str | None, settings: dict[str, Any]) -> None:
        from batch.local import limit_blas

        limit_blas()
        self.scorer = FileScorer(model_path, BatchSettings.from_dict(settings))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = [json.dumps(self.scorer.score(str(path))) for path in batch["path"]]
        return {"result": np.array(results, dtype=object)}


def run_ray(
    address: str | None,
    model_path: str | None,
    settings: BatchSettings,
    paths: Sequence[str],
    workers: int,
    on_result: Callable[[dict[str, Any]], None],
    should_stop: Callable[[], bool],
) -> bool:
    try:
        import ray
        import ray.data
    except ImportError:
        raise UserError(f"--ray needs Ray: {RAY_HINT}") from None
    init: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    if address not in LOCAL_ADDRESSES:
        init["address"] = address
    else:
        init["num_cpus"] = workers
    try:
        ray.init(**init)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise UserError(f"cannot reach the Ray cluster at {address}: {str(err).splitlines()[0]}") from None
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # our own progress line says what is done
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
