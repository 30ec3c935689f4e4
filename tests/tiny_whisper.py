"""A tiny Whisper-shaped CTranslate2 model the tests build themselves (no wheel is ever downloaded in a test).

``ctranslate2.specs.WhisperSpec`` with random weights of the real layouts (fused QKV, 1-D convolutions, 1,500
position rows), saved as a CTranslate2 model folder that ``ctranslate2.models.Whisper`` loads, so the converter
can be compared with CTranslate2's own encoder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DIM = 16
HEADS = 2
ENCODER_BLOCKS = 3
VOCAB = 8
N_MELS = 80
POSITIONS = 1500
DECODER_POSITIONS = 448


def _shape(path: str) -> tuple[int, ...] | None:
    d, ff = DIM, 4 * DIM
    table = {
        "encoder/conv1/weight": (d, N_MELS, 3), "encoder/conv1/bias": (d,),
        "encoder/conv2/weight": (d, d, 3), "encoder/conv2/bias": (d,),
        "encoder/position_encodings/encodings": (POSITIONS, d),
        "decoder/embeddings/weight": (VOCAB, d), "decoder/projection/weight": (VOCAB, d),
        "decoder/position_encodings/encodings": (DECODER_POSITIONS, d),
    }
    if path in table:
        return table[path]
    if path.endswith(("layer_norm/gamma", "layer_norm/beta")):
        return (d,)
    kind, _, leaf = path.rpartition("/")
    part = kind.rsplit("/", 2)[-2:]
    rows = {("self_attention", "linear_0"): 3 * d, ("self_attention", "linear_1"): d, ("attention", "linear_0"): d,
            ("attention", "linear_1"): 2 * d, ("attention", "linear_2"): d, ("ffn", "linear_0"): ff,
            ("ffn", "linear_1"): d}.get(tuple(part))
    if rows is None:
        return None
    cols = ff if tuple(part) == ("ffn", "linear_1") else d
    return (rows, cols) if leaf == "weight" else (rows,) if leaf == "bias" else None


def _fill(obj: object, prefix: str, rng: np.random.Generator) -> None:
    for key, value in list(vars(obj).items()):
        if key.startswith("_"):
            continue
        path = f"{prefix}{key}"
        if isinstance(value, list):
            for i, item in enumerate(value):
                if hasattr(item, "__dict__"):
                    _fill(item, f"{path}_{i}/", rng)
        elif hasattr(value, "__dict__") and not isinstance(value, np.ndarray):
            _fill(value, f"{path}/", rng)
        elif value is None or (isinstance(value, str) and key in ("bias", "encodings")):
            shape = _shape(path)
            if shape is None:
                continue
            scale = 1.0 if path.endswith("gamma") else 0.3
            array = rng.normal(1.0 if path.endswith("gamma") else 0.0, scale if not path.endswith("gamma") else 0.1,
                               shape).astype(np.float32)
            setattr(obj, key, array)


def make_tiny_whisper(folder: Path, seed: int = 0) -> Path:
    """A CTranslate2 Whisper model folder (model.bin, config.json, vocabulary) with random weights."""
    from ctranslate2.specs import whisper_spec

    spec = whisper_spec.WhisperSpec(ENCODER_BLOCKS, HEADS, 1, HEADS)
    _fill(spec, "", np.random.default_rng(seed))
    spec.register_vocabulary([f"<t{i}>" for i in range(VOCAB)])
    spec.validate()
    folder.mkdir(parents=True, exist_ok=True)
    spec.save(str(folder))
    return folder


def make_tiny_pair(folder: Path, blocks: int = 2, chunk: int = 8, context: int = 16, session_norm: bool = True,
                   embedding: bool = True) -> Path:
    """A two-graph model in ``folder``: ``tiny.encoder.onnx`` (the tiny Whisper's first blocks, converted as
    ser-encoder converts) and ``tiny.onnx``, a tiny head over the pooled frames whose metadata names the encoder
    by sha256 and carries a session normaliser's prior. Returns the head's path."""
    from ser_live.export import encoder_cli
    from ser_live.realtime.fileio import file_sha256
    from ser_live.realtime.stages.features import FeaturePreset
    from tests.tiny_model import make_tiny_model

    folder.mkdir(parents=True, exist_ok=True)
    whisper = make_tiny_whisper(folder / "whisper")
    source = encoder_cli.EncoderSource("tiny", (), "")
    encoder = folder / "tiny.encoder.onnx"
    encoder_cli.convert(whisper / "model.bin", blocks, encoder, "tiny", source, chunk, context)
    preset = FeaturePreset(name="tiny-whisper", kind="encoder", n_fft=400, hop_length=320, n_mels=N_MELS, dim=DIM)
    overrides = {"encoder": {"file": encoder.name, "sha256": file_sha256(encoder)}}
    if session_norm:
        rng = np.random.default_rng(1)
        overrides["session_norm"] = {"mean": rng.normal(0, 0.1, 2 * DIM).tolist(),
                                     "std": rng.uniform(0.5, 1.5, 2 * DIM).tolist(),
                                     "prior_windows": 4.0, "memory_windows": 100.0}
    return make_tiny_model(folder / "tiny.onnx", preset, window_s=2.0, hop_s=0.5, metadata_overrides=overrides,
                           embedding=embedding)
