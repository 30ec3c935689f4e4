"""Whisper's encoder from a CTranslate2 ``model.bin``, as a streaming frame encoder (numpy reference).

CTranslate2 stores a model as one binary file (``ModelSpec._serialize`` in its source): a format version (6), the
spec's name and revision, then named tensors (name, shape, a dtype id, the raw bytes), then aliases. Only the
encoder's tensors are read here: two 1-D convolutions (the second with stride 2: 50 frames a second), sinusoidal
positions, then pre-norm transformer blocks (``self_attention``: layer norm, fused QKV ``linear_0``, output
``linear_1``; ``ffn``: layer norm, ``linear_0`` → GELU → ``linear_1``).

Streaming (:class:`StreamingEncoder`): the encoder runs on fixed chunks of ``chunk`` frames; each block attends to
the chunk itself and to the cached keys and values of the ``context`` frames before it, so every frame is computed
once, and the frames never depend on how the audio was handed over. Each chunk's frames take the positions
``context … context + chunk - 1`` (a chunk always looks like audio ``context`` frames into a clip).

The front end (:func:`log_mel` / :class:`StreamingLogMel`) is Whisper's log-mel (n_fft 400, hop 160, 80 Slaney mel
bands, log10, an 8-decade floor) with one change for live audio: the level reference is the running maximum of the
last ``LEVEL_WINDOW_FRAMES`` frames instead of the clip's maximum, and it is subtracted, so a gain applied to the
input changes nothing (Whisper's own ``(x + 4) / 4`` scale then applies around :data:`LEVEL_TARGET`).
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ser_live.realtime.stages.encoder import N_MELS, cache_names

logger = logging.getLogger(__name__)

LN_EPS = 1e-5
CT2_VERSION = 6
# CTranslate2's DataType ids
CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
DEFAULT_CHUNK = 25  # encoder frames per chunk (0.5 s)
DEFAULT_CONTEXT = 50  # cached frames each chunk attends to (1.0 s)


def _read(f: BinaryIO, fmt: str) -> int:
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise ValueError("CTranslate2 model.bin ends early")
    return struct.unpack(fmt, data)[0]


def _string(f: BinaryIO) -> str:
    n = _read(f, "<H")
    return f.read(n)[:-1].decode("utf-8")


def read_ct2(path: Path, prefix: str = "encoder/") -> dict[str, np.ndarray]:
    """The tensors of a CTranslate2 ``model.bin`` whose names start with ``prefix``, as float32/int arrays."""
    out: dict[str, np.ndarray] = {}
    with open(path, "rb") as f:
        version = _read(f, "<I")
        if version != CT2_VERSION:
            raise ValueError(f"{path}: CTranslate2 binary version {version}, expected {CT2_VERSION}")
        spec = _string(f)
        if spec != "WhisperSpec":
            raise ValueError(f"{path}: a {spec}, not a WhisperSpec")
        _read(f, "<I")  # revision
        for _ in range(_read(f, "<I")):
            name = _string(f)
            shape = tuple(_read(f, "<I") for _ in range(_read(f, "<B")))
            dtype = CT2_DTYPES.get(_read(f, "<B"))
            nbytes = _read(f, "<I")
            if not name.startswith(prefix):
                f.seek(nbytes, 1)
                continue
            if dtype is None:
                raise ValueError(f"{path}: tensor {name} has a dtype this reader does not know")
            array = np.frombuffer(f.read(nbytes), dtype=dtype).reshape(shape)
            out[name[len(prefix) :]] = array.astype(np.float32) if array.dtype.kind == "f" else array.copy()
    return out


@dataclass(frozen=True)
class Block:
    ln1_g: np.ndarray
    ln1_b: np.ndarray
    qkv_w: np.ndarray  # (3d, d)
    qkv_b: np.ndarray
    out_w: np.ndarray
    out_b: np.ndarray
    ln2_g: np.ndarray
    ln2_b: np.ndarray
    fc1_w: np.ndarray
    fc1_b: np.ndarray
    fc2_w: np.ndarray
    fc2_b: np.ndarray


@dataclass(frozen=True)
class EncoderWeights:
    conv1_w: np.ndarray  # (d, 80, 3)
    conv1_b: np.ndarray
    conv2_w: np.ndarray  # (d, d, 3)
    conv2_b: np.ndarray
    positions: np.ndarray  # (1500, d)
    heads: int
    blocks: tuple[Block, ...] = field(default_factory=tuple)
    final_norm: tuple[np.ndarray, np.ndarray] | None = None  # Whisper's ln_post: only when every block is kept

    @property
    def dim(self) -> int:
        return int(self.conv1_b.shape[0])

    @classmethod
    def from_ct2(cls, tensors: dict[str, np.ndarray], n_blocks: int, final_norm: bool = False) -> EncoderWeights:
        have = sum(1 for k in tensors if k.endswith("self_attention/linear_1/bias"))
        if not 1 <= n_blocks <= have:
            raise ValueError(f"the encoder has {have} blocks; asked for {n_blocks}")
        blocks = []
        for i in range(n_blocks):
            t = lambda n, i=i: tensors[f"layer_{i}/{n}"]  # noqa: E731
            blocks.append(Block(
                t("self_attention/layer_norm/gamma"), t("self_attention/layer_norm/beta"),
                t("self_attention/linear_0/weight"), t("self_attention/linear_0/bias"),
                t("self_attention/linear_1/weight"), t("self_attention/linear_1/bias"),
                t("ffn/layer_norm/gamma"), t("ffn/layer_norm/beta"),
                t("ffn/linear_0/weight"), t("ffn/linear_0/bias"),
                t("ffn/linear_1/weight"), t("ffn/linear_1/bias"),
            ))
        return cls(tensors["conv1/weight"], tensors["conv1/bias"], tensors["conv2/weight"], tensors["conv2/bias"],
                   tensors["position_encodings/encodings"], int(tensors["num_heads"]), tuple(blocks),
                   (tensors["layer_norm/gamma"], tensors["layer_norm/beta"]) if final_norm else None)


def _gelu(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf  # the train extra (librosa needs scipy)

    return (0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))).astype(np.float32)


def _layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + LN_EPS) * g + b


@dataclass(frozen=True)
class EncoderLayout:
    """How the frame encoder runs: output frames per chunk, cached frames each chunk attends to, the position row
    of a chunk's first frame, and whether every block's frames come out (the frame cache) or the last one's."""

    chunk: int = DEFAULT_CHUNK
    context: int = DEFAULT_CONTEXT
    position_offset: int = DEFAULT_CONTEXT
    every_block: bool = False


def _conv(rows: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int) -> np.ndarray:
    n = (len(rows) - 3) // stride + 1
    win = np.stack([rows[k : k + stride * (n - 1) + 1 : stride] for k in range(3)], axis=-1)  # (n, c, 3)
    return win.reshape(n, -1) @ w.reshape(len(w), -1).T + b


def reference_step(weights: EncoderWeights, layout: EncoderLayout):
    """The frame-encoder graph's computation in numpy: ``run(mel_rows, mask, caches) -> (frames, caches)``."""
    d, h = weights.dim, weights.heads
    hd = d // h

    def run(mel: np.ndarray, mask: np.ndarray, caches: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        c1 = _gelu(_conv(mel, weights.conv1_w, weights.conv1_b, 1)) * mask[:, None]
        x = _gelu(_conv(c1, weights.conv2_w, weights.conv2_b, 2))
        x = x + weights.positions[layout.position_offset : layout.position_offset + len(x)]
        taps, new = [], []
        for i, b in enumerate(weights.blocks):
            y = _layer_norm(x, b.ln1_g, b.ln1_b)
            qkv = y @ b.qkv_w.T + b.qkv_b
            q, k, v = qkv[:, :d], qkv[:, d : 2 * d], qkv[:, 2 * d :]
            keys = np.concatenate([caches[2 * i], k])
            values = np.concatenate([caches[2 * i + 1], v])
            new += [keys[-layout.context :], values[-layout.context :]]
            qh = q.reshape(len(q), h, hd).transpose(1, 0, 2)
            kh = keys.reshape(len(keys), h, hd).transpose(1, 2, 0)
            vh = values.reshape(len(values), h, hd).transpose(1, 0, 2)
            att = (qh @ kh) / np.sqrt(hd)
            att = np.exp(att - att.max(axis=-1, keepdims=True))
            a = (att / att.sum(axis=-1, keepdims=True)) @ vh
            x = x + a.transpose(1, 0, 2).reshape(len(q), d) @ b.out_w.T + b.out_b
            y = _layer_norm(x, b.ln2_g, b.ln2_b)
            x = x + _gelu(y @ b.fc1_w.T + b.fc1_b) @ b.fc2_w.T + b.fc2_b
            taps.append(x)
        if weights.final_norm is not None:
            x = taps[-1] = _layer_norm(x, *weights.final_norm)
        frames = np.stack(taps) if layout.every_block else x
        return frames.astype(np.float32), [c.astype(np.float32) for c in new]

    return run


ONNX_OPSET = 17  # LayerNormalization


def build_encoder_onnx(weights: EncoderWeights, layout: EncoderLayout, half: bool = False):
    """The frame-encoder graph as an ``onnx.ModelProto``: inputs ``mel`` (2T + 3, 80), ``mask`` (2T + 1,) and each
    block's cached ``keys_i`` / ``values_i`` (up to ``layout.context`` rows, d); outputs ``frames`` (T, d) — or
    (blocks, T, d) with ``every_block`` — and the new caches ``new_keys_i`` / ``new_values_i``. ``half`` stores the
    matrices as float16 (cast to float32 inside the graph: half the file, the same arithmetic)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if layout.context < 1:
        raise ValueError("the frame encoder needs a context of at least one frame")
    d, h = weights.dim, weights.heads
    hd = d // h
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    counter = iter(range(1_000_000))

    def name(prefix: str) -> str:
        return f"{prefix}_{next(counter)}"

    def const(value: np.ndarray, prefix: str = "c", big: bool = False) -> str:
        n = name(prefix)
        if half and big:
            inits.append(numpy_helper.from_array(value.astype(np.float16), n + "_h"))
            nodes.append(helper.make_node("Cast", [n + "_h"], [n], to=TensorProto.FLOAT))
        else:
            inits.append(numpy_helper.from_array(np.asarray(value), n))
        return n

    def op(kind: str, inputs: list[str], **attrs: object) -> str:
        out = name(kind.lower())
        nodes.append(helper.make_node(kind, inputs, [out], **attrs))
        return out

    def gelu(x: str) -> str:
        erf = op("Erf", [op("Mul", [x, const(np.float32(1 / np.sqrt(2)))])])
        return op("Mul", [op("Mul", [x, const(np.float32(0.5))]), op("Add", [erf, const(np.float32(1.0))])])

    def linear(x: str, w: np.ndarray, b: np.ndarray) -> str:
        return op("Add", [op("MatMul", [x, const(np.ascontiguousarray(w.T), "w", big=True)]), const(b, "b")])

    def layer_norm(x: str, g: np.ndarray, b: np.ndarray) -> str:
        return op("LayerNormalization", [x, const(g, "g"), const(b, "b")], axis=-1, epsilon=LN_EPS)

    # convolutions: (M, 80) -> (1, 80, M) -> conv1 (valid) -> mask -> conv2 (valid, stride 2) -> (T, d)
    x = op("Unsqueeze", [op("Transpose", ["mel"], perm=[1, 0]), const(np.array([0], np.int64))])
    c1 = gelu(op("Conv", [x, const(weights.conv1_w, "w", big=True), const(weights.conv1_b, "b")], kernel_shape=[3]))
    c1 = op("Mul", [c1, op("Unsqueeze", ["mask", const(np.array([0, 1], np.int64))])])
    c2 = gelu(op("Conv", [c1, const(weights.conv2_w, "w", big=True), const(weights.conv2_b, "b")], kernel_shape=[3],
                  strides=[2]))
    x = op("Transpose", [op("Squeeze", [c2, const(np.array([0], np.int64))])], perm=[1, 0])
    t = op("Slice", [op("Shape", [x]), const(np.array([0], np.int64)), const(np.array([1], np.int64))])
    # only the rows a chunk reads are kept: position_offset .. position_offset + chunk
    rows = weights.positions[layout.position_offset : layout.position_offset + layout.chunk]
    zero = const(np.array([0], np.int64))
    pos = op("Slice", [const(np.ascontiguousarray(rows), "pos", big=True), zero, t, zero])
    x = op("Add", [x, pos])
    heads_shape = const(np.array([0, h, hd], np.int64))
    flat_shape = const(np.array([0, d], np.int64))
    taps: list[str] = []
    outputs_cache: list[str] = []
    for i, b in enumerate(weights.blocks):
        y = layer_norm(x, b.ln1_g, b.ln1_b)
        qkv = linear(y, b.qkv_w, b.qkv_b)
        q, k, v = (name("q"), name("k"), name("v"))
        nodes.append(helper.make_node("Split", [qkv, const(np.array([d, d, d], np.int64))], [q, k, v], axis=1))
        keys = op("Concat", [f"keys_{i}", k], axis=0)
        values = op("Concat", [f"values_{i}", v], axis=0)
        for src, out in ((keys, f"new_keys_{i}"), (values, f"new_values_{i}")):
            nodes.append(helper.make_node("Slice", [src, const(np.array([-layout.context], np.int64)),
                                                    const(np.array([np.iinfo(np.int64).max], np.int64)),
                                                    const(np.array([0], np.int64))], [out]))
            outputs_cache.append(out)
        qh = op("Transpose", [op("Reshape", [q, heads_shape])], perm=[1, 0, 2])
        kh = op("Transpose", [op("Reshape", [keys, heads_shape])], perm=[1, 2, 0])
        vh = op("Transpose", [op("Reshape", [values, heads_shape])], perm=[1, 0, 2])
        att = op("Softmax", [op("Mul", [op("MatMul", [qh, kh]), const(np.float32(1 / np.sqrt(hd)))])], axis=-1)
        a = op("Reshape", [op("Transpose", [op("MatMul", [att, vh])], perm=[1, 0, 2]), flat_shape])
        x = op("Add", [x, linear(a, b.out_w, b.out_b)])
        y = layer_norm(x, b.ln2_g, b.ln2_b)
        x = op("Add", [x, linear(gelu(linear(y, b.fc1_w, b.fc1_b)), b.fc2_w, b.fc2_b)])
        taps.append(x)
    if weights.final_norm is not None:
        x = taps[-1] = layer_norm(x, *weights.final_norm)
    if layout.every_block:
        unsq = [op("Unsqueeze", [tap, const(np.array([0], np.int64))]) for tap in taps]
        nodes.append(helper.make_node("Concat", unsq, ["frames"], axis=0))
    else:
        nodes.append(helper.make_node("Identity", [x], ["frames"]))
    f32 = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("mel", f32, ["mel_rows", N_MELS]),
              helper.make_tensor_value_info("mask", f32, ["conv_rows"])]
    inputs += [helper.make_tensor_value_info(n, f32, [f"cached_{n}", d]) for n in cache_names(len(weights.blocks))]
    frames_shape = [len(weights.blocks), "frames", d] if layout.every_block else ["frames", d]
    outputs = [helper.make_tensor_value_info("frames", f32, frames_shape)]
    outputs += [helper.make_tensor_value_info(n, f32, [f"kept_{n}", d]) for n in outputs_cache]
    graph = helper.make_graph(nodes, "ser_live_frame_encoder", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)], producer_name="ser-live")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
