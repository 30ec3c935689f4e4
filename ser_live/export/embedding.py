"""The ``embedding`` output: the tensor that feeds a model's last layer, exposed as a second graph output.

:func:`add_embedding_output` finds the classifier at the end of a ser-live graph -- ``probs = Softmax(x @ W + b)``
as tf2onnx writes a Keras ``Dense(softmax)`` (``MatMul`` + ``Add``, or ``Gemm``) -- adds ``embedding = Identity(x)``
as an output and returns ``W`` and ``b`` for the metadata (:class:`realtime.model.EmbeddingInfo`). Nothing else in
the graph changes, so ``probs`` stay bit for bit what they were. A dynamically quantised (int8) graph keeps the
float graph's tensor names, so its embedding is found by the float graph's name (:func:`add_output_by_name`).

:func:`upgrade_model` does this to an existing model file (``ser-export MODEL.onnx -o NEW.onnx``): the bundled
model and any model exported before the embedding output existed get it with their weights unchanged, checked on
generated features: probs identical, ``softmax(embedding @ W + b)`` equal to probs. It also folds batch
normalisation into the convolutions (:mod:`ser_live.export.fold`) of a model exported before that pass existed, with or
without an embedding output already (probs then equal within ``FOLD_TOLERANCE``).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ser_live.realtime.errors import UserError
from ser_live.realtime.model import (
    EMBEDDING_KEY,
    EMBEDDING_OUTPUT,
    METADATA_KEY,
    OUTPUT_NAME,
    EmbeddingInfo,
    with_predecessor,
)

if TYPE_CHECKING:  # pragma: no cover
    import onnx

logger = logging.getLogger(__name__)

CHECK_ROWS = 64
CHECK_SEED = 0
# softmax(embedding @ W + b) against the graph's probs (float32 products in a different order)
RECONSTRUCTION_TOLERANCE = 1e-5
# folding batch normalisation into a convolution reorders float32 products (measured ~6e-8 on the bundled model)
FOLD_TOLERANCE = 1e-5


@dataclass(frozen=True)
class Classifier:
    """What was found: the embedding tensor's name in the graph and the last layer's weights."""

    tensor: str
    weights: np.ndarray  # (size, n_labels)
    bias: np.ndarray  # (n_labels,)

    def info(self) -> EmbeddingInfo:
        return EmbeddingInfo(size=int(self.weights.shape[0]), weights=self.weights.astype(np.float64),
                             bias=self.bias.astype(np.float64))


def run_graph(model_bytes: bytes, features: np.ndarray, names: list[str]) -> list[np.ndarray]:
    """The named outputs (float32) of a serialised graph on raw features, on the CPU with one thread: what every
    export check (parity, the embedding, an upgrade) runs."""
    import onnxruntime as ort

    from ser_live.realtime.model import INPUT_NAME, session_options

    session = ort.InferenceSession(model_bytes, sess_options=session_options(), providers=["CPUExecutionProvider"])
    return [np.asarray(o, dtype=np.float32) for o in session.run(names, {INPUT_NAME: features})]


def _initializers(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {init.name: numpy_helper.to_array(init) for init in graph.initializer}


def find_classifier(proto: onnx.ModelProto) -> Classifier | None:
    """The ``Softmax(x @ W + b)`` producing ``probs`` (None when the graph ends otherwise, e.g. an int8 graph)."""
    graph = proto.graph
    producer = {out: node for node in graph.node for out in node.output}
    consts = _initializers(graph)
    softmax = producer.get(OUTPUT_NAME)
    if softmax is None or softmax.op_type != "Softmax":
        return None
    node = producer.get(softmax.input[0])
    if node is None:
        return None
    if node.op_type == "Gemm":
        attrs = {a.name: a for a in node.attribute}
        if attrs.get("transA") and attrs["transA"].i:
            return None
        alpha = attrs["alpha"].f if "alpha" in attrs else 1.0
        beta = attrs["beta"].f if "beta" in attrs else 1.0
        if len(node.input) < 2 or node.input[1] not in consts:
            return None
        weights = consts[node.input[1]]
        if attrs.get("transB") and attrs["transB"].i:
            weights = weights.T
        bias = consts.get(node.input[2]) if len(node.input) > 2 else None
        bias = np.zeros(weights.shape[1], dtype=np.float32) if bias is None else np.broadcast_to(
            bias, (weights.shape[1],))
        return Classifier(node.input[0], alpha * weights, beta * np.asarray(bias))
    if node.op_type == "MatMul" and node.input[1] in consts and consts[node.input[1]].ndim == 2:
        weights = consts[node.input[1]]  # a zero bias that the converter folded away
        return Classifier(node.input[0], weights, np.zeros(weights.shape[1], dtype=weights.dtype))
    if node.op_type != "Add":
        return None
    for matmul_in, bias_in in ((node.input[0], node.input[1]), (node.input[1], node.input[0])):
        matmul = producer.get(matmul_in)
        if matmul is not None and matmul.op_type == "MatMul" and bias_in in consts and matmul.input[1] in consts:
            weights = consts[matmul.input[1]]
            if weights.ndim != 2:
                return None
            return Classifier(matmul.input[0], weights, np.broadcast_to(consts[bias_in], (weights.shape[1],)))
    return None


def add_output_by_name(proto: onnx.ModelProto, tensor: str, size: int) -> None:
    """Add ``embedding = Identity(tensor)`` as a ``[batch, size]`` float output (UserError: no such tensor)."""
    from onnx import TensorProto, helper

    graph = proto.graph
    if EMBEDDING_OUTPUT in [o.name for o in graph.output]:
        return
    produced = {out for node in graph.node for out in node.output}
    if tensor not in produced:
        raise UserError(f"the graph has no tensor {tensor!r} to expose as its embedding")
    graph.node.append(helper.make_node("Identity", [tensor], [EMBEDDING_OUTPUT], name="ser_live_embedding"))
    batch = graph.output[0].type.tensor_type.shape.dim[0]
    dim = batch.dim_param or batch.dim_value or "batch"
    graph.output.append(helper.make_tensor_value_info(EMBEDDING_OUTPUT, TensorProto.FLOAT, [dim, size]))


def add_embedding_output(proto: onnx.ModelProto) -> Classifier | None:
    """Expose the last layer's input as ``embedding``; its weights -> the returned :class:`Classifier` (None when
    the graph's end is not a recognisable classifier: the model then cannot be personalised)."""
    found = find_classifier(proto)
    if found is None:
        return None
    add_output_by_name(proto, found.tensor, int(found.weights.shape[0]))
    return found


def set_embedding_metadata(proto: onnx.ModelProto, classifier: Classifier) -> None:
    from ser_live.export.onnx_export import set_metadata

    props = {p.key: p.value for p in proto.metadata_props}
    meta = json.loads(props[METADATA_KEY])
    meta[EMBEDDING_KEY] = classifier.info().to_dict()
    set_metadata(proto, json.dumps(meta, allow_nan=False))


def check_embedding(model_bytes: bytes, classifier: Classifier, feature_shape: tuple[int, ...],
                    mean: np.ndarray | float = 0.0, std: np.ndarray | float = 1.0) -> float:
    """Largest |softmax(embedding @ W + b) - probs| on generated features (ExportError above the tolerance)."""
    from ser_live.export.onnx_export import ExportError
    from ser_live.realtime.profile import softmax

    rng = np.random.default_rng(CHECK_SEED)
    x = (rng.standard_normal((CHECK_ROWS, *feature_shape)) * std + mean).astype(np.float32)
    probs, embedding = run_graph(model_bytes, x, [OUTPUT_NAME, EMBEDDING_OUTPUT])
    rebuilt = softmax(embedding.astype(np.float64) @ classifier.weights.astype(np.float64) + classifier.bias)
    diff = float(np.max(np.abs(rebuilt - probs)))
    if diff > RECONSTRUCTION_TOLERANCE:
        raise ExportError(f"softmax(embedding @ W + b) differs from probs by {diff:.3g} (limit "
                          f"{RECONSTRUCTION_TOLERANCE:g}): the last layer is not what it seems; nothing written")
    return diff


@dataclass(frozen=True)
class UpgradeReport:
    output: Path
    size: int
    probs_max_diff: float  # new graph vs the old one on the same features (0: untouched)
    reconstruction_max_diff: float
    int8: Path | None = None
    int8_probs_max_diff: float | None = None
    embedding_added: bool = True
    folded: int = 0  # convolutions whose batch normalisation was folded in (export/fold.py)


def _graph_probs(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    return run_graph(model_bytes, x, [OUTPUT_NAME])[0]


def upgrade_model(source: Path, output: Path, int8_source: Path | None = None, int8_output: Path | None = None,
                  overwrite: bool = False) -> UpgradeReport:
    """Write ``output``: ``source`` (a ser-live ONNX file) brought up to date with the same weights -- the
    ``embedding`` output and its metadata added when it has none, batch normalisation folded into its convolutions
    when it can be (:mod:`ser_live.export.fold`); likewise ``int8_source`` -> ``int8_output`` for the embedding (its
    classifier in the metadata is the float one's; a quantised graph is not folded). Probabilities are checked on
    generated features: identical when only the output is added, within FOLD_TOLERANCE when folded."""
    import onnx

    from ser_live.export.fold import fold_batchnorm
    from ser_live.export.onnx_export import ExportError, _check_output, _temporary_sibling, _write_bytes, set_metadata
    from ser_live.realtime.model import load_model

    source, output = Path(source).expanduser(), Path(output).expanduser()
    model = load_model(source, provider="cpu")  # a ser-live model (clear errors otherwise)
    add = not model.can_personalise
    targets = [(source, output)]
    if add and int8_source and int8_output:
        targets.append((Path(int8_source), Path(int8_output)))
    for src, dst in targets:
        _check_output(dst)
        if dst.exists() and dst.resolve() == src.resolve():
            raise UserError(f"{dst} is the input model: write the upgraded model to another file")
        if dst.exists() and not overwrite:
            raise UserError(f"{dst} already exists: choose another -o, or pass --overwrite to replace it")
    proto = onnx.load(str(source))
    if add:
        found = add_embedding_output(proto)
        if found is None:
            raise UserError(f"{source}: its last layer is not Softmax(x @ W + b), so no embedding output can be "
                            "added")
        set_embedding_metadata(proto, found)
    else:
        found = find_classifier(proto)
    folded = fold_batchnorm(proto)
    if folded:  # same weights: profiles made for the source (or for the files it was made from) fit the new file
        meta = json.loads({p.key: p.value for p in proto.metadata_props}[METADATA_KEY])
        set_metadata(proto, json.dumps(with_predecessor(meta, model.sha256), allow_nan=False))
    if not add and not folded:
        raise UserError(f"{source} already has an embedding output and no batch normalisation left to fold: "
                        "nothing to do")
    if found is None:  # an embedding output whose last layer is not Softmax(x @ W + b): refused at load already
        raise UserError(f"{source}: its last layer is not Softmax(x @ W + b)")
    data = proto.SerializeToString()
    rng = np.random.default_rng(CHECK_SEED)
    x = rng.standard_normal((CHECK_ROWS, *model.info.feature_shape)).astype(np.float32)
    old = source.read_bytes()
    probs_diff = float(np.max(np.abs(_graph_probs(data, x) - _graph_probs(old, x))))
    limit = FOLD_TOLERANCE if folded else 0.0
    if probs_diff > limit:
        what = "folding batch normalisation" if folded else "adding the embedding output"
        raise ExportError(f"{what} changed probs by {probs_diff:.3g} (limit {limit:g}): nothing written")
    recon = check_embedding(data, found, model.info.feature_shape)
    blobs = [(output, data)]
    int8_diff = None
    if len(targets) > 1:
        proto8 = onnx.load(str(targets[1][0]))
        add_output_by_name(proto8, found.tensor, int(found.weights.shape[0]))
        set_embedding_metadata(proto8, found)
        data8 = proto8.SerializeToString()
        int8_diff = float(np.max(np.abs(_graph_probs(data8, x) - _graph_probs(targets[1][0].read_bytes(), x))))
        if int8_diff != 0.0:
            raise ExportError(f"adding the embedding output changed the int8 probs by {int8_diff:.3g}: nothing written")
        blobs.append((targets[1][1], data8))
    with _temporary_sibling(output) as tmp:
        _write_bytes(tmp, data)
        if len(blobs) > 1:
            with _temporary_sibling(blobs[1][0]) as tmp8:
                _write_bytes(tmp8, blobs[1][1])
                os.replace(tmp, output)
                os.replace(tmp8, blobs[1][0])
        else:
            os.replace(tmp, output)
    logger.info("wrote %s (embedding output of size %d%s; %d convolutions folded)", output,
                found.weights.shape[0], " added" if add else "", folded)
    return UpgradeReport(output, int(found.weights.shape[0]), probs_diff, recon,
                         blobs[1][0] if len(blobs) > 1 else None, int8_diff, embedding_added=add, folded=folded)
