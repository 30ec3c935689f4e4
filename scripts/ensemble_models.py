"""Join two ser-live models that read the same input into one ONNX graph that averages their *logits*.

    python scripts/ensemble_models.py A.onnx B.onnx -o AB.onnx [--weight-a 0.5]

Both graphs must end in ``Softmax(embedding @ W + b)`` (``ser-export`` writes the ``embedding`` output) and take
the same features (preset, window, input normalisation; each folds its own standardisation in). The joined graph
computes both trunks on the shared input, concatenates their embeddings and applies ``[wA*W_A; wB*W_B]`` and
``wA*b_A + wB*b_B``: a softmax of the weighted mean of the two models' logits. That is again one linear layer on one
embedding, so the result carries an ``embedding`` output and its classifier and can be personalised like any model.
Metadata (labels, preset, calibration, ...) are A's, with an ``ensemble`` entry naming both parts; calibrate the
result again (``ser-calibrate``). Checked: the joined probabilities equal the softmax of the mean logits computed
from the two files separately.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from export.embedding import find_classifier, run_graph
from export.fold import fold_batchnorm
from realtime.fileio import atomic_write, file_sha256
from realtime.model import EMBEDDING_KEY, EMBEDDING_OUTPUT, INPUT_NAME, METADATA_KEY, OUTPUT_NAME

PREFIX_B = "b__"
CHECK_ROWS = 16
TOLERANCE = 1e-5


def _prefixed(graph: onnx.GraphProto, prefix: str, keep: set[str]) -> None:
    """Rename every tensor, node and initializer of ``graph`` with ``prefix`` except the names in ``keep``."""
    def name(n: str) -> str:
        return n if (not n or n in keep) else prefix + n

    for node in graph.node:
        node.name = prefix + node.name
        node.input[:] = [name(n) for n in node.input]
        node.output[:] = [name(n) for n in node.output]
    for init in graph.initializer:
        init.name = name(init.name)
    for value in (*graph.value_info, *graph.output):
        value.name = name(value.name)


def join(path_a: Path, path_b: Path, weight_a: float) -> tuple[onnx.ModelProto, dict]:
    a, b = onnx.load(str(path_a)), onnx.load(str(path_b))
    meta_a = json.loads({p.key: p.value for p in a.metadata_props}[METADATA_KEY])
    meta_b = json.loads({p.key: p.value for p in b.metadata_props}[METADATA_KEY])
    for key in ("labels", "preset", "window_s", "hop_s", "input_normalization"):
        if meta_a.get(key) != meta_b.get(key):
            raise SystemExit(f"the models differ in {key}: {meta_a.get(key)!r} vs {meta_b.get(key)!r}")
    ca, cb = find_classifier(a), find_classifier(b)
    if ca is None or cb is None:
        raise SystemExit("both models must end in Softmax(embedding @ W + b) (re-export them with ser-export)")
    _prefixed(b.graph, PREFIX_B, keep={INPUT_NAME})
    cb_tensor = PREFIX_B + cb.tensor
    graph = a.graph
    drop = {OUTPUT_NAME, EMBEDDING_OUTPUT}
    # the parts' own softmax and embedding nodes go: the joined graph has one of each
    nodes = [n for n in graph.node if not (set(n.output) & {OUTPUT_NAME, EMBEDDING_OUTPUT})]
    nodes += [n for n in b.graph.node if not (set(n.output) & {PREFIX_B + OUTPUT_NAME, PREFIX_B + EMBEDDING_OUTPUT})]
    weight_b = 1.0 - weight_a
    w = np.vstack([weight_a * ca.weights, weight_b * cb.weights]).astype(np.float32)
    bias = (weight_a * ca.bias + weight_b * cb.bias).astype(np.float32)
    nodes += [
        helper.make_node("Concat", [ca.tensor, cb_tensor], [EMBEDDING_OUTPUT], axis=1, name="ensemble_concat"),
        helper.make_node("MatMul", [EMBEDDING_OUTPUT, "ensemble_w"], ["ensemble_mm"], name="ensemble_matmul"),
        helper.make_node("Add", ["ensemble_mm", "ensemble_b"], ["ensemble_logits"], name="ensemble_add"),
        helper.make_node("Softmax", ["ensemble_logits"], [OUTPUT_NAME], axis=-1, name="ensemble_softmax"),
    ]
    initializers = [*graph.initializer, *b.graph.initializer, numpy_helper.from_array(w, "ensemble_w"),
                    numpy_helper.from_array(bias, "ensemble_b")]
    n_labels = w.shape[1]
    outputs = [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", n_labels]),
               helper.make_tensor_value_info(EMBEDDING_OUTPUT, TensorProto.FLOAT, ["batch", w.shape[0]])]
    value_info = [v for v in (*graph.value_info, *b.graph.value_info) if v.name not in drop]
    joined = helper.make_graph(nodes, "ser_live_ensemble", list(graph.input), outputs, initializers,
                               value_info=value_info)
    model = helper.make_model(joined, opset_imports=list(a.opset_import), producer_name="ser-live ensemble")
    model.ir_version = a.ir_version
    meta = dict(meta_a)
    # B is the model trained on more data (v3: every corpus; v2: a subset of it): its data summary describes what
    # the joined model has heard; the figures of the joined model are the card's, not either part's
    meta["data"] = meta_b.get("data", {})
    meta["metrics"] = {"split": meta_b.get("metrics", {}).get("split", "speaker"),
                       "note": "an ensemble of two models: its figures are in the model card"}
    meta[EMBEDDING_KEY] = {"output": EMBEDDING_OUTPUT, "size": int(w.shape[0]),
                           "classifier": {"weights": w.astype(np.float64).tolist(),
                                          "bias": bias.astype(np.float64).tolist()}}
    meta["ensemble"] = {"rule": "softmax of the weighted mean of the parts' logits",
                        "parts": [{"file": path_a.name, "sha256": file_sha256(path_a), "weight": weight_a},
                                  {"file": path_b.name, "sha256": file_sha256(path_b), "weight": weight_b}]}
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta, allow_nan=False)
    onnx.checker.check_model(model)
    return model, meta


def check(model: onnx.ModelProto, path_a: Path, path_b: Path, weight_a: float, shape: tuple[int, ...]) -> float:
    rng = np.random.default_rng(0)
    x = rng.normal(-40.0, 12.0, size=(CHECK_ROWS, *shape)).astype(np.float32)
    (ea,), (eb,) = (run_graph(p.read_bytes(), x, [EMBEDDING_OUTPUT]) for p in (path_a, path_b))
    ca, cb = find_classifier(onnx.load(str(path_a))), find_classifier(onnx.load(str(path_b)))
    logits = weight_a * (ea @ ca.weights + ca.bias) + (1 - weight_a) * (eb @ cb.weights + cb.bias)
    want = np.exp(logits - logits.max(axis=1, keepdims=True))
    want /= want.sum(axis=1, keepdims=True)
    (got,) = run_graph(model.SerializeToString(), x, [OUTPUT_NAME])
    return float(np.abs(got - want).max())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("-o", "--out", type=Path, required=True)
    p.add_argument("--weight-a", type=float, default=0.5)
    p.add_argument("--int8", type=Path, default=None, help="also write a dynamically quantised copy here")
    args = p.parse_args(argv)
    from realtime.model import load_model

    model, meta = join(args.a, args.b, args.weight_a)
    fold_batchnorm(model)  # parts exported before export/fold.py existed; a no-op on folded parts
    diff = check(model, args.a, args.b, args.weight_a, load_model(args.a).info.feature_shape)
    if diff > TOLERANCE:
        raise SystemExit(f"the joined graph does not average the logits: max |diff| {diff:.2e}")
    data = model.SerializeToString()
    atomic_write(args.out, lambda fh: fh.write(data))
    print(f"wrote {args.out} ({len(data) / 1024:.0f} KiB): softmax of {args.weight_a:g} x {args.a.name} + "
          f"{1 - args.weight_a:g} x {args.b.name} logits; max |diff| vs the parts {diff:.2e}")
    if args.int8 is not None:
        from export.onnx_export import _quantize, set_metadata

        _quantize(args.out, args.int8)
        small = onnx.load(str(args.int8))
        set_metadata(small, json.dumps(meta, allow_nan=False))  # quantize_dynamic may drop metadata_props
        packed = small.SerializeToString()
        atomic_write(args.int8, lambda fh: fh.write(packed))
        print(f"wrote {args.int8} ({len(packed) / 1024:.0f} KiB, int8)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
