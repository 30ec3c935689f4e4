"""What a personal profile gains on speakers the base model never saw (the model card's profile table).

For every speaker of the corpora given, every label, k = 1, 3, 5 examples per emotion are drawn from that speaker
(several draws), a profile is fitted on them with realtime.profile (each method), and the speaker's clips of *other
sentences* are scored by the base model and by the profile (clip verdict = mean of its windows' probabilities, as
ser-live's). Sentences never sit on both sides: per label, the sentences are shuffled and taken in turn until k
examples are drawn (the rest of those sentences' clips -- repetitions -- are scored by neither), and at least one
sentence of each label is left to score, so a label gives fewer than k examples when its sentences run out (RAVDESS:
two statements, at most 4 examples of one statement per emotion, 6 for neutral + calm). This is how a user enrols
(a few sentences) and then talks (other words); ASED's per-emotion sentences would otherwise let the profile learn
the words. Per corpus, method and k: mean UAR base vs profiled over speakers x draws, the mean gain and its spread,
the share of (speaker, draw) where the profile is more than 2 points worse than the base model, and how often the
fit itself warned.

    python scripts/profile_gain.py --model ser_live/models/default.onnx \
        --data ravdess=../shared/data/ravdess --speakers ravdess:08,ravdess:10,ravdess:15,ravdess:16 \
        --data ased=../shared/data/ased --draws 5 --out runs/profile-gain

Window embeddings are cached in OUT/embeddings-CORPUS.npz (recomputed when the model changes).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ser_live.realtime.model import load_model  # noqa: E402
from ser_live.realtime.profile import METHODS, Base, window_features  # noqa: E402
from ser_live.realtime.sources.audio import read_audio  # noqa: E402
from ser_live.train.corpora import load_corpus, parse_data_spec  # noqa: E402
from ser_live.train.profile_gain import KS, Clip, sentence, speaker_runs, summarise  # noqa: E402

logger = logging.getLogger("profile_gain")

_MODEL: Any = None


def _init(model_path: str) -> None:
    global _MODEL
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, "blas")
    _MODEL = load_model(model_path, provider="cpu")


def _embed(path: str, hop_s: float | None = None, speeds: tuple[float, ...] = ()) -> np.ndarray:
    """A clip's window embeddings, cut as the live engine cuts them (``hop_s``: another hop; ``speeds``: the windows
    of the clip played that much faster or slower are added, as an enrolment might)."""
    from ser_live.realtime.config import EngineConfig

    audio, rate = read_audio(path)
    config = EngineConfig(hop_s=hop_s) if hop_s else None
    size = _MODEL.info.embedding.size
    parts = []
    for speed in (1.0, *speeds):
        clip = audio if speed == 1.0 else speed_change(audio, rate, speed)
        feats = window_features(_MODEL, clip, rate, config)
        if len(feats):
            parts.append(_MODEL.embed(feats))
    return np.concatenate(parts) if parts else np.zeros((0, size), np.float32)


def speed_change(audio: np.ndarray, rate: int, speed: float) -> np.ndarray:
    """The clip played ``speed`` times as fast (tempo and pitch together, as Kaldi's speed perturbation)."""
    import soxr

    return soxr.resample(np.asarray(audio, dtype=np.float32), rate * speed, rate).astype(np.float32)


def embeddings(model_path: str, sha: str, corpus: str, records: list[Any], out: Path, workers: int,
               hop_s: float | None = None, speeds: tuple[float, ...] = ()) -> dict:
    tag = "" if not (hop_s or speeds) else f"-hop{hop_s}-speeds{','.join(f'{v:g}' for v in speeds)}"
    cache = out / f"embeddings-{corpus}{tag}.npz"
    if cache.is_file():
        data = np.load(cache, allow_pickle=False)
        if str(data["sha"]) == sha and len(data["paths"]) == len(records):
            logger.info("%s: cached embeddings", corpus)
            return {str(p): data[f"e{i}"] for i, p in enumerate(data["paths"])}
    t0 = time.perf_counter()
    paths = [str(r.path) for r in records]
    with ProcessPoolExecutor(workers, initializer=_init, initargs=(model_path,)) as pool:
        embs = list(pool.map(_embed, paths, [hop_s] * len(paths), [speeds] * len(paths), chunksize=8))
    logger.info("%s: %d clips embedded in %.0f s", corpus, len(paths), time.perf_counter() - t0)
    arrays = {f"e{i}": e for i, e in enumerate(embs)}
    np.savez(cache, sha=np.asarray(sha), paths=np.asarray(paths), **arrays)
    return dict(zip(paths, embs, strict=True))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "ser_live" / "models" / "default.onnx"))
    ap.add_argument("--data", action="append", required=True, help="NAME=PATH (repeat)")
    ap.add_argument("--speakers", default="", help="keep only these speakers (corpus:id,...); default all")
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--enroll-hop", type=float, default=None,
                    help="enrolment takes cut with this hop (s); default: the model's, as the scored clips")
    ap.add_argument("--enroll-speeds", default="",
                    help="add the enrolment takes' windows at these speeds too, e.g. 0.9,1.1 (default: none)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, "blas")
    args.out.mkdir(parents=True, exist_ok=True)
    model = load_model(args.model, provider="cpu")
    base = Base.of(model)
    keep = {s for s in args.speakers.split(",") if s}
    methods = tuple(m for m in args.methods.split(",") if m)
    speeds = tuple(float(v) for v in args.enroll_speeds.split(",") if v)
    report: dict[str, Any] = {"model": model.path.name, "sha256": model.sha256, "draws": args.draws, "ks": KS,
                              "seed": args.seed,
                              "enroll_hop": args.enroll_hop, "enroll_speeds": speeds, "corpora": {}}
    all_rows = []
    for spec in args.data:
        name, root = parse_data_spec(spec)
        records = [r for r in load_corpus(name, root).records if not keep or r.speaker in keep
                   or not any(s.startswith(f"{r.corpus}:") for s in keep)]
        embs = embeddings(str(model.path), model.sha256, name, records, args.out, args.workers)
        enrol_embs = embs
        if args.enroll_hop or speeds:
            enrol_embs = embeddings(str(model.path), model.sha256, name, records, args.out, args.workers,
                                    args.enroll_hop, speeds)
        speakers: dict[str, list[Clip]] = defaultdict(list)
        no_window = 0
        for r in records:
            e = embs[str(r.path)]
            if len(e):
                speakers[r.speaker].append((r.label, sentence(r.path, name), e.astype(np.float64),
                                            enrol_embs[str(r.path)].astype(np.float64)))
            else:
                no_window += 1
        t0 = time.perf_counter()
        rows = []
        for speaker in sorted(speakers):
            for row in speaker_runs(speakers[speaker], base, KS, args.draws, args.seed, methods):
                rows.append({"corpus": name, "speaker": speaker, **row})
        logger.info("%s: %d speakers fitted in %.0f s", name, len(speakers), time.perf_counter() - t0)
        all_rows += rows
        table = {m: {str(k): summarise([r for r in rows if r["method"] == m and r["k"] == k]) for k in KS}
                 for m in methods}
        report["corpora"][name] = {"speakers": len(speakers), "clips": len(records),
                                   "clips_without_window": no_window, "labels": sorted({r.label for r in records}),
                                   "table": table}
    (args.out / "rows.json").write_text(json.dumps(all_rows))
    (args.out / "profile_gain.json").write_text(json.dumps(report, indent=1))
    lines = ["| corpus | method | k | base UAR | profiled UAR | gain (sd) | p10..p90 | worse > 2 pts | warned |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, c in report["corpora"].items():
        for m, per_k in c["table"].items():
            for k, s in per_k.items():
                lines.append(f"| {name} ({c['speakers']} spk) | {m} | {k} | {s['base_uar']:.1f} | "
                             f"{s['profile_uar']:.1f} | {s['gain']:+.1f} ({s['gain_sd']:.1f}) | "
                             f"{s['gain_p10']:+.1f}..{s['gain_p90']:+.1f} | {100 * s['worse_share']:.0f} % | "
                             f"{100 * s['warned_share']:.0f} % |")
    (args.out / "profile_gain.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
