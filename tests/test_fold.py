"""export/fold.py: batch normalisation folded into the convolutions of a graph in tf2onnx's Conv1D pattern.

The graphs are built here with ``onnx.helper`` in the shape tf2onnx writes a Keras ``Conv1D -> BatchNorm -> ReLU ->
MaxPool1D`` block (a 2-D ``Conv`` of height 1 between ``Unsqueeze``/``Squeeze``, the normalisation as ``Mul``/``Add``
on the squeezed tensor); no TensorFlow. Each fold is checked against the unfolded graph in ONNX Runtime.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ser_live.export.cli import main as export_main
from ser_live.export.embedding import run_graph
from ser_live.export.fold import fold_batchnorm
from ser_live.realtime.model import (
    EMBEDDING_OUTPUT,
    INPUT_NAME,
    METADATA_KEY,
    OUTPUT_NAME,
    bundled_model_path,
    load_model,
)
from ser_live.realtime.stages.features import get_preset
from tests.tiny_model import TINY_LABELS, tiny_feature_shape, tiny_metadata

PRESET = "logmel"
CHANNELS = (6, 5)
TOLERANCE = 1e-5


def conv_graph(feature_shape: tuple[int, int], seed: int = 0, opset: int = 15, conv_bias: bool = False,
               shared_scale_reader: bool = False, time_scale: bool = False) -> onnx.ModelProto:
    """features [N, T, M] -> two Conv1D blocks as tf2onnx writes them -> time mean -> Dense -> Softmax."""
    rng = np.random.default_rng(seed)
    frames, bands = feature_shape
    inits: dict[str, np.ndarray] = {"axis2": np.array([2], dtype=np.int64)}
    nodes = [helper.make_node("Transpose", [INPUT_NAME], ["ntc"], perm=[0, 2, 1])]

    def squeeze(op: str, src: str, dst: str) -> onnx.NodeProto:
        if opset >= 13:
            return helper.make_node(op, [src, "axis2"], [dst])
        return helper.make_node(op, [src], [dst], axes=[2])

    nodes.append(squeeze("Unsqueeze", "ntc", "x0"))
    source, width = "x0", bands
    for k, channels in enumerate(CHANNELS):
        inits[f"w{k}"] = (rng.standard_normal((channels, width, 1, 3)) / np.sqrt(3 * width)).astype(np.float32)
        shape = (1, 1, frames) if time_scale and k == 0 else (1, channels, 1)  # (1, 1, T) scales time, not channels
        inits[f"s{k}"] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        inits[f"t{k}"] = rng.normal(0, 0.3, (1, channels, 1)).astype(np.float32)
        conv_inputs = [source, f"w{k}"]
        if conv_bias:
            inits[f"b{k}"] = rng.normal(0, 0.2, channels).astype(np.float32)
            conv_inputs.append(f"b{k}")
        nodes += [
            helper.make_node("Conv", conv_inputs, [f"c{k}"], kernel_shape=[1, 3], pads=[0, 1, 0, 1]),
            squeeze("Squeeze", f"c{k}", f"sq{k}"),
            helper.make_node("Mul", [f"sq{k}", f"s{k}"], [f"m{k}"]),
            helper.make_node("Add", [f"m{k}", f"t{k}"], [f"a{k}"]),
            helper.make_node("Relu", [f"a{k}"], [f"r{k}"]),
        ]
        if k < len(CHANNELS) - 1:
            nodes += [squeeze("Unsqueeze", f"r{k}", f"u{k}"),
                      helper.make_node("MaxPool", [f"u{k}"], [f"p{k}"], kernel_shape=[1, 2], strides=[1, 2])]
            source = f"p{k}"
        width = channels
    if shared_scale_reader:  # the first block's normalised tensor is read twice: that block must stay as it is
        nodes.insert(5, helper.make_node("Identity", ["m0"], ["m0_copy"]))
    nodes.append(helper.make_node("ReduceMean", [f"r{len(CHANNELS) - 1}"], ["pooled"], axes=[2], keepdims=0))
    inits["wd"] = rng.standard_normal((width, len(TINY_LABELS))).astype(np.float32)
    inits["bd"] = rng.normal(0, 0.1, len(TINY_LABELS)).astype(np.float32)
    nodes += [helper.make_node("MatMul", ["pooled", "wd"], ["logits0"]),
              helper.make_node("Add", ["logits0", "bd"], ["logits"]),
              helper.make_node("Softmax", ["logits"], [OUTPUT_NAME], axis=-1)]
    outputs = [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", len(TINY_LABELS)])]
    if shared_scale_reader:
        outputs.append(helper.make_tensor_value_info("m0_copy", TensorProto.FLOAT, ["batch", CHANNELS[0], None]))
    graph = helper.make_graph(
        nodes, "conv_pattern",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", frames, bands])],
        outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def features(shape: tuple[int, ...], rows: int = 16) -> np.ndarray:
    return np.random.default_rng(1).normal(0.0, 2.0, (rows, *shape)).astype(np.float32)


SHAPE = (40, 8)


def _ops(model: onnx.ModelProto) -> Counter[str]:
    return Counter(n.op_type for n in model.graph.node)


@pytest.mark.parametrize(("opset", "conv_bias"), [(15, False), (15, True), (11, False)])
def test_fold_removes_the_normalisation_and_keeps_the_output(opset: int, conv_bias: bool) -> None:
    model = conv_graph(SHAPE, opset=opset, conv_bias=conv_bias)
    before = model.SerializeToString()
    assert fold_batchnorm(model) == len(CHANNELS)
    onnx.checker.check_model(model)
    ops = _ops(model)
    # left: the input's Unsqueeze, one Squeeze before the time mean (the last block's 3-D reader), the Dense bias
    assert ops["Mul"] == 0 and ops["Unsqueeze"] == 1 and ops["Squeeze"] == 1 and ops["Add"] == 1
    assert ops["Conv"] == len(CHANNELS) and ops["Relu"] == len(CHANNELS) and ops["MaxPool"] == 1
    assert [i.name for i in model.graph.input] == [INPUT_NAME] and [o.name for o in model.graph.output] == [OUTPUT_NAME]
    x = features(SHAPE)
    (want,), (got,) = run_graph(before, x, [OUTPUT_NAME]), run_graph(model.SerializeToString(), x, [OUTPUT_NAME])
    assert np.abs(want - got).max() <= TOLERANCE
    assert np.abs(want - 1 / len(TINY_LABELS)).max() > 0.05  # the check compares outputs that depend on the input
    assert fold_batchnorm(model) == 0  # nothing left: a second pass changes nothing


def test_a_normalisation_read_elsewhere_is_left_alone() -> None:
    model = conv_graph(SHAPE, shared_scale_reader=True)
    before = model.SerializeToString()
    assert fold_batchnorm(model) == len(CHANNELS) - 1  # only the second block
    x = features(SHAPE)
    want = run_graph(before, x, [OUTPUT_NAME, "m0_copy"])
    got = run_graph(model.SerializeToString(), x, [OUTPUT_NAME, "m0_copy"])
    assert all(np.abs(a - b).max() <= TOLERANCE for a, b in zip(want, got, strict=True))


def test_a_constant_that_scales_time_is_not_folded() -> None:
    model = conv_graph(SHAPE, time_scale=True)
    before = model.SerializeToString()
    assert fold_batchnorm(model) == len(CHANNELS) - 1  # only the second block
    x = features(SHAPE)
    (want,), (got,) = run_graph(before, x, [OUTPUT_NAME]), run_graph(model.SerializeToString(), x, [OUTPUT_NAME])
    assert np.abs(want - got).max() <= TOLERANCE


def test_a_graph_without_the_pattern_is_unchanged(tmp_path: Path) -> None:
    from tests.tiny_model import make_tiny_model

    path = make_tiny_model(tmp_path / "tiny.onnx", preset_name=PRESET, embedding=True)
    model = onnx.load(str(path))
    before = model.SerializeToString()
    assert fold_batchnorm(model) == 0 and model.SerializeToString() == before


def test_the_bundled_model_is_folded() -> None:
    """The shipped graph has no batch normalisation left outside its convolutions (its card's cost figures)."""
    assert fold_batchnorm(onnx.load(str(bundled_model_path()))) == 0


def _ser_live_file(path: Path) -> Path:
    """A ser-live model file (metadata, no embedding output) whose graph is in the tf2onnx Conv1D pattern."""
    shape = tiny_feature_shape(PRESET)
    model = conv_graph(shape)
    zeros = {"mean": np.zeros(shape[1], dtype=np.float32), "std": np.ones(shape[1], dtype=np.float32)}
    meta = tiny_metadata(get_preset(PRESET), TINY_LABELS, 2.048, 0.512, 0.5, shape, zeros)
    helper.set_model_props(model, {METADATA_KEY: json.dumps(meta)})
    onnx.save(model, str(path))
    return path


def test_ser_export_brings_an_old_model_up_to_date(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = _ser_live_file(tmp_path / "old.onnx")
    new = tmp_path / "new.onnx"
    assert export_main([str(old), "-o", str(new)]) == 0
    out = capsys.readouterr().out
    assert "added an embedding output" in out and f"folded batch normalisation into {len(CHANNELS)}" in out
    model = load_model(new)
    assert model.can_personalise and model.info.embedding.size == CHANNELS[-1]
    x = features(model.info.feature_shape)
    (want,) = run_graph(old.read_bytes(), x, [OUTPUT_NAME])
    got, emb = run_graph(new.read_bytes(), x, [OUTPUT_NAME, EMBEDDING_OUTPUT])
    assert np.abs(want - got).max() <= TOLERANCE and emb.shape == (len(x), CHANNELS[-1])
    assert fold_batchnorm(onnx.load(str(new))) == 0
    # up to date already: one line, exit 2, nothing written
    again = tmp_path / "again.onnx"
    assert export_main([str(new), "-o", str(again)]) == 2
    err = capsys.readouterr().err
    assert "nothing to do" in err and len(err.strip().splitlines()) == 1 and not again.exists()


def test_a_profile_made_for_the_unfolded_file_fits_the_folded_one(tmp_path: Path) -> None:
    """Folding keeps the weights, so a personal profile bound (by sha256) to the file before it still loads on the
    file after it (``same_function_as``); a profile of any other model is still refused."""
    from ser_live.export.embedding import add_embedding_output, set_embedding_metadata
    from ser_live.realtime.errors import UserError
    from ser_live.realtime.profile import Take, load_profile, make_profile

    old = _ser_live_file(tmp_path / "old.onnx")
    proto = onnx.load(str(old))
    found = add_embedding_output(proto)
    assert found is not None
    set_embedding_metadata(proto, found)
    unfolded = tmp_path / "unfolded.onnx"  # personalisable, not folded: what the bundled v4 was until 2026-12-05
    onnx.save(proto, str(unfolded))
    folded = tmp_path / "folded.onnx"
    assert export_main([str(unfolded), "-o", str(folded)]) == 0

    base = load_model(unfolded)
    rng = np.random.default_rng(4)
    x = features(base.info.feature_shape, rows=4 * len(TINY_LABELS))
    emb = base.embed(x)
    takes = [Take(label, emb[4 * i:4 * i + 4] + rng.normal(0, 0.01, (4, emb.shape[1])).astype(np.float32),
                  source=f"{label}-{n}") for i, label in enumerate(TINY_LABELS) for n in range(2)]
    profile_path = make_profile(base, takes, name="me").save(tmp_path / "me.json")
    with_profile = load_model(folded, profile=load_profile(profile_path))
    assert with_profile.profile is not None
    unfolded_with = load_model(unfolded, profile=load_profile(profile_path))
    np.testing.assert_allclose(with_profile.predict(x), unfolded_with.predict(x),
                               atol=TOLERANCE)
    # the other way round the older file knows nothing of the newer one
    newer = make_profile(load_model(folded), takes, name="me").save(tmp_path / "newer.json")
    with pytest.raises(UserError, match="another model file"):
        load_model(unfolded, profile=load_profile(newer))
