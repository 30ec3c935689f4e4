"""Fold each convolution's batch normalisation into its weights and keep the trunk four-dimensional.

tf2onnx writes a Keras ``Conv1D`` as a 2-D ``Conv`` with a height of 1 wrapped in ``Squeeze``/``Unsqueeze``, and
the inference-mode ``BatchNormalization`` after it as a per-channel ``Mul`` and ``Add`` on the squeezed tensor::

    Conv -> Squeeze(axis 2) -> Mul(scale) -> Add(shift) -> Relu -> Unsqueeze(axis 2) -> MaxPool -> Conv ...

ONNX Runtime cannot fuse through the ``Squeeze``, so every block runs five element-wise passes and two reshapes
beside its convolution. :func:`fold_batchnorm` rewrites each such block as::

    Conv(W * scale, shift) -> Relu -> MaxPool -> Conv ...

(``Relu`` on the 4-D tensor, the ``Unsqueeze`` dropped; a ``Squeeze`` is put back where the 3-D tensor is still
read, e.g. before the time pooling). The arithmetic is the same up to float32 rounding: ``(x * W) * s + t`` is
``x * (W * s) + t``; the callers check it (ser-export's parity check against Keras, and
:func:`ser_live.export.embedding.upgrade_model` on generated features). Nothing else in the graph changes:
inputs, outputs and their names, the metadata. A graph without the pattern is returned unchanged.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np
import onnx
from onnx import helper
from onnx import numpy_helper as nh

from ser_live.export.embedding import _initializers

logger = logging.getLogger(__name__)

AXIS = 2  # the height axis tf2onnx adds to a Conv1D
SQUEEZE_AXES_INPUT_OPSET = 13


def _axes(node: onnx.NodeProto, consts: dict[str, np.ndarray]) -> list[int] | None:
    """A Squeeze/Unsqueeze node's axes (attribute before opset 13, input since), or None when not constant."""
    for attr in node.attribute:
        if attr.name == "axes":
            return [int(a) for a in attr.ints]
    if len(node.input) > 1 and node.input[1] in consts:
        return [int(a) for a in consts[node.input[1]].ravel()]
    return None


def _channel_vector(value: np.ndarray | None, channels: int) -> np.ndarray | None:
    """A constant that scales the channel axis of a (N, C, T) tensor -- shape (C, 1) or (1, C, 1) -- as a (C,)
    vector; None for anything else (a (C,) vector would broadcast along time, not the channels)."""
    if value is None or value.ndim < 2 or value.shape[-2:] != (channels, 1) or value.size != channels:
        return None
    return value.reshape(channels).astype(np.float32)


def fold_batchnorm(proto: onnx.ModelProto) -> int:
    """Rewrite ``proto`` in place as the module docstring says; returns how many blocks were folded."""
    graph = proto.graph
    consts = _initializers(graph)
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    graph_outputs = {o.name for o in graph.output}

    def only_consumer(name: str, op: str) -> onnx.NodeProto | None:
        users = consumers.get(name, [])
        if len(users) == 1 and users[0].op_type == op and name not in graph_outputs:
            return users[0]
        return None

    def const_operand(node: onnx.NodeProto, tensor: str) -> np.ndarray | None:
        others = [i for i in node.input if i != tensor]
        return consts.get(others[0]) if len(others) == 1 else None

    drop: set[int] = set()
    new_inits: dict[str, np.ndarray] = {}
    renames: dict[str, str] = {}  # tensor name -> the tensor that now stands for it
    extra: list[tuple[int, onnx.NodeProto]] = []  # (insert after the node at this index, node)
    index = {id(node): i for i, node in enumerate(graph.node)}
    folded = 0
    for conv in list(graph.node):
        if conv.op_type != "Conv" or len(conv.input) < 2 or conv.input[1] not in consts:
            continue
        weights = consts[conv.input[1]]
        if weights.ndim != 4 or weights.shape[2] != 1:
            continue
        channels = weights.shape[0]
        squeeze = only_consumer(conv.output[0], "Squeeze")
        if squeeze is None or _axes(squeeze, consts) != [AXIS]:
            continue
        mul = only_consumer(squeeze.output[0], "Mul")
        scale = _channel_vector(const_operand(mul, squeeze.output[0]), channels) if mul else None
        add = only_consumer(mul.output[0], "Add") if mul else None
        shift = _channel_vector(const_operand(add, mul.output[0]), channels) if add else None
        relu = only_consumer(add.output[0], "Relu") if add else None
        if scale is None or shift is None or relu is None:
            continue
        bias = consts[conv.input[2]].astype(np.float32) if len(conv.input) > 2 and conv.input[2] in consts else 0.0
        w_name, b_name = f"{conv.output[0]}/folded_w", f"{conv.output[0]}/folded_b"
        new_inits[w_name] = (weights * scale[:, None, None, None]).astype(np.float32)
        new_inits[b_name] = (bias * scale + shift).astype(np.float32)
        del conv.input[1:]
        conv.input.extend([w_name, b_name])
        drop.update(index[id(n)] for n in (squeeze, mul, add))
        relu4 = f"{relu.output[0]}/4d"
        old3 = relu.output[0]
        del relu.input[:]
        relu.input.append(conv.output[0])
        del relu.output[:]
        relu.output.append(relu4)
        readers = consumers.get(old3, [])
        unsqueezes = [n for n in readers if n.op_type == "Unsqueeze" and _axes(n, consts) == [AXIS]]
        for u in unsqueezes:
            drop.add(index[id(u)])
            renames[u.output[0]] = relu4
        if len(unsqueezes) < len(readers) or old3 in graph_outputs:
            extra.append((index[id(relu)], _squeeze(proto, relu4, old3, new_inits)))
        folded += 1
    if not folded:
        return 0
    after: dict[int, list[onnx.NodeProto]] = defaultdict(list)
    for i, node in extra:
        after[i].append(node)
    nodes = []
    for i, node in enumerate(graph.node):
        if i not in drop:
            nodes.append(node)
        nodes.extend(after[i])
    for node in nodes:
        inputs = [renames.get(name, name) for name in node.input]
        del node.input[:]
        node.input.extend(inputs)
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    graph.initializer.extend(nh.from_array(value, name) for name, value in new_inits.items())
    # value_info of the removed 3-D tensors would now be wrong or dangling
    del graph.value_info[:]
    logger.debug("folded batch normalisation into %d convolutions", folded)
    return folded


def _opset(proto: onnx.ModelProto) -> int:
    return next((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def _squeeze(proto: onnx.ModelProto, source: str, target: str, new_inits: dict[str, np.ndarray]) -> onnx.NodeProto:
    """``target = Squeeze(source, axis 2)``: the axes as an input since opset 13, as an attribute before."""
    if _opset(proto) >= SQUEEZE_AXES_INPUT_OPSET:
        axes = f"{target}/axes"
        new_inits[axes] = np.array([AXIS], dtype=np.int64)
        return helper.make_node("Squeeze", [source, axes], [target], name=f"{target}/squeeze")
    return helper.make_node("Squeeze", [source], [target], name=f"{target}/squeeze", axes=[AXIS])
