"""Join ser-live models that read the same input into one ONNX graph that averages their *logits*.

    python -m ser_live.export.ensemble A.onnx B.onnx [C.onnx ...] -o ABC.onnx [--weights 0.5,0.25,0.25]

(``ser-recipe`` joins a recipe's seeds this way: ``recipes/v6.toml``.)

Every graph must end in ``Softmax(embedding @ W + b)`` (``ser-export`` writes the ``embedding`` output) and take
the same features (preset, window, input normalisation; each folds its own standardisation in). The joined graph
computes every trunk on the shared input, concatenates their embeddings and applies ``[w1*W_1; w2*W_2; ...]`` and
``w1*b_1 + w2*b_2 + ...``: a softmax of the weighted mean of the models' logits (equal weights unless ``--weights``).
That is again one linear layer on one embedding, so the result carries an ``embedding`` output and its classifier
and can be personalised like any model. Metadata (labels, preset, calibration, ...) are the first part's, with the
last part's data summary and an ``ensemble`` entry naming every part; calibrate the result again
(``ser-calibrate``). Checked: the joined probabilities equal the softmax of the mean logits computed from the files
separately. A part that is itself a join is refused: join its parts directly.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ser_live.export.embedding import find_classifier, run_graph
from ser_live.export.fold import fold_batchnorm
from ser_live.realtime.errors import UserError
from ser_live.realtime.fileio import atomic_write, check_outputs, file_sha256
from ser_live.realtime.model import EMBEDDING_KEY, EMBEDDING_OUTPUT, INPUT_NAME, METADATA_KEY, OUTPUT_NAME

CHECK_ROWS = 16
TOLERANCE = 1e-5
WEIGHT_SUM_TOLERANCE = 1e-6


def _prefixed(graph: onnx.GraphProto, prefix: str, keep: set[str]) -> None:
    """Rename every tensor, node and initializer of ``graph`` with ``prefix`` except the names in ``keep``."""
    def name(n: str) -> str:
        return n if (not n or n in keep) else prefix + n

    for node in graph.node:
        node.name = prefix + node.name if node.name else ""  # unnamed nodes stay unnamed (names must be unique)
        node.input[:] = [name(n) for n in node.input]
        node.output[:] = [name(n) for n in node.output]
    for init in graph.initializer:
        init.name = name(init.name)
    for value in (*graph.value_info, *graph.output):
        value.name = name(value.name)


def part_prefix(index: int) -> str:
    """``""`` for the first part, ``b__`` for the second, ``c__`` for the third, ..."""
    return "" if index == 0 else f"{chr(ord('a') + index)}__"


def _metadata(proto: onnx.ModelProto) -> dict:
    return json.loads({p.key: p.value for p in proto.metadata_props}[METADATA_KEY])


def _part_entry(path: Path, meta: dict, weight: float) -> dict:
    """A part's file, hash and weight, with its own test UAR and split when its metadata has them (ser-train's)."""
    entry = {"file": path.name, "sha256": file_sha256(path), "weight": weight}
    metrics = meta.get("metrics", {})
    if isinstance(metrics.get("uar"), int | float):
        entry["uar"] = float(metrics["uar"])
        entry["split"] = metrics.get("split")
    return entry


def join(paths: list[Path], weights: list[float]) -> tuple[onnx.ModelProto, dict]:
    protos = [onnx.load(str(p)) for p in paths]
    metas = [_metadata(p) for p in protos]
    for path, meta in zip(paths, metas, strict=True):
        if "ensemble" in meta:
            raise SystemExit(f"{path} is already an ensemble: join its parts directly")
        for key in ("labels", "preset", "window_s", "hop_s", "input_normalization"):
            if meta.get(key) != metas[0].get(key):
                raise SystemExit(f"the models differ in {key}: {metas[0].get(key)!r} ({paths[0].name}) vs "
                                 f"{meta.get(key)!r} ({path.name})")
    classifiers = [find_classifier(p) for p in protos]
    for path, classifier in zip(paths, classifiers, strict=True):
        if classifier is None:
            raise SystemExit(f"{path} does not end in Softmax(embedding @ W + b) (re-export it with ser-export)")
    nodes, initializers, value_info, tensors = [], [], [], []
    drop = {OUTPUT_NAME, EMBEDDING_OUTPUT}
    for index, (proto, classifier) in enumerate(zip(protos, classifiers, strict=True)):
        prefix = part_prefix(index)
        if prefix:
            _prefixed(proto.graph, prefix, keep={INPUT_NAME})
        own = {prefix + OUTPUT_NAME, prefix + EMBEDDING_OUTPUT}
        # the parts' own softmax and embedding nodes go: the joined graph has one of each
        nodes += [n for n in proto.graph.node if not (set(n.output) & own)]
        initializers += list(proto.graph.initializer)
        value_info += [v for v in proto.graph.value_info if v.name not in drop | own]
        tensors.append(prefix + classifier.tensor)
    w = np.vstack([wt * c.weights for wt, c in zip(weights, classifiers, strict=True)]).astype(np.float32)
    bias = sum(wt * c.bias for wt, c in zip(weights, classifiers, strict=True)).astype(np.float32)
    nodes += [
        helper.make_node("Concat", tensors, [EMBEDDING_OUTPUT], axis=1, name="ensemble_concat"),
        helper.make_node("MatMul", [EMBEDDING_OUTPUT, "ensemble_w"], ["ensemble_mm"], name="ensemble_matmul"),
        helper.make_node("Add", ["ensemble_mm", "ensemble_b"], ["ensemble_logits"], name="ensemble_add"),
        helper.make_node("Softmax", ["ensemble_logits"], [OUTPUT_NAME], axis=-1, name="ensemble_softmax"),
    ]
    initializers += [numpy_helper.from_array(w, "ensemble_w"), numpy_helper.from_array(bias, "ensemble_b")]
    n_labels = w.shape[1]
    outputs = [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", n_labels]),
               helper.make_tensor_value_info(EMBEDDING_OUTPUT, TensorProto.FLOAT, ["batch", w.shape[0]])]
    first = protos[0]
    joined = helper.make_graph(nodes, "ser_live_ensemble", list(first.graph.input), outputs, initializers,
                               value_info=value_info)
    model = helper.make_model(joined, opset_imports=list(first.opset_import), producer_name="ser-live ensemble")
    model.ir_version = first.ir_version
    meta = dict(metas[0])
    # the last part is the model trained on the most data (v3/v4: every corpus; v2: a subset of it): its data
    # summary describes what the joined model has heard; the joined model's figures are the card's, not a part's
    meta["data"] = metas[-1].get("data", {})
    meta["metrics"] = {"split": metas[-1].get("metrics", {}).get("split", "speaker"),
                       "note": f"an ensemble of {len(paths)} models: its figures are in the model card"}
    meta[EMBEDDING_KEY] = {"output": EMBEDDING_OUTPUT, "size": int(w.shape[0]),
                           "classifier": {"weights": w.astype(np.float64).tolist(),
                                          "bias": bias.astype(np.float64).tolist()}}
    meta["ensemble"] = {"rule": "softmax of the weighted mean of the parts' logits",
                        "parts": [_part_entry(p, m, wt) for p, m, wt in zip(paths, metas, weights, strict=True)]}
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta, allow_nan=False)
    onnx.checker.check_model(model)
    return model, meta


def check(model: onnx.ModelProto, paths: list[Path], weights: list[float], shape: tuple[int, ...]) -> float:
    """Max |difference| between the joined graph's probabilities and the softmax of the parts' mean logits."""
    rng = np.random.default_rng(0)
    x = rng.normal(-40.0, 12.0, size=(CHECK_ROWS, *shape)).astype(np.float32)
    logits = 0.0
    for path, wt in zip(paths, weights, strict=True):
        (emb,) = run_graph(path.read_bytes(), x, [EMBEDDING_OUTPUT])
        classifier = find_classifier(onnx.load(str(path)))
        logits = logits + wt * (emb @ classifier.weights + classifier.bias)
    want = np.exp(logits - logits.max(axis=1, keepdims=True))
    want /= want.sum(axis=1, keepdims=True)
    (got,) = run_graph(model.SerializeToString(), x, [OUTPUT_NAME])
    return float(np.abs(got - want).max())


def parse_weights(text: str | None, weight_a: float | None, n_parts: int) -> list[float]:
    """Equal weights by default; ``--weights`` (one per part, summing to 1) or the older ``--weight-a`` (2 parts)."""
    if text is not None and weight_a is not None:
        raise SystemExit("give --weights or --weight-a, not both")
    if weight_a is not None:
        if n_parts != 2:
            raise SystemExit(f"--weight-a is for two parts, got {n_parts}: use --weights")
        weights = [weight_a, 1.0 - weight_a]
    elif text is not None:
        try:
            weights = [float(v) for v in text.split(",")]
        except ValueError:
            raise SystemExit(f"--weights {text!r}: give one number per part, e.g. --weights 0.5,0.5") from None
        if len(weights) != n_parts:
            raise SystemExit(f"--weights has {len(weights)} values for {n_parts} parts: give one per part")
    else:
        weights = [1.0 / n_parts] * n_parts
    if any(not np.isfinite(v) or v <= 0 for v in weights) or abs(sum(weights) - 1.0) > WEIGHT_SUM_TOLERANCE:
        raise SystemExit(f"weights {weights} must be positive and sum to 1")
    return weights


def join_models(parts: list[Path], out: Path, weights: list[float] | None = None) -> float:
    """Join ``parts`` (equal weights unless given) into ``out`` (written atomically), checked against the parts;
    returns the largest probability difference."""
    from ser_live.realtime.model import load_model

    weights = weights or [1.0 / len(parts)] * len(parts)
    model, _ = join(parts, weights)
    fold_batchnorm(model)
    diff = check(model, parts, weights, load_model(parts[0]).info.feature_shape)
    if diff > TOLERANCE:
        raise UserError(f"the joined graph does not average the logits: max |diff| {diff:.2e}")
    data = model.SerializeToString()
    atomic_write(out, lambda fh: fh.write(data))
    return diff


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ser_live.export.ensemble", description=__doc__.split("\n\n")[0])
    p.add_argument("parts", type=Path, nargs="+", metavar="MODEL", help="two or more models to join")
    p.add_argument("-o", "--out", type=Path, required=True)
    p.add_argument("--weights", default=None, help="one weight per part, comma-separated, summing to 1 "
                   "(default: equal)")
    p.add_argument("--weight-a", type=float, default=None, help="two parts: the first one's weight")
    p.add_argument("--int8", type=Path, default=None, help="also write a dynamically quantised copy here")
    p.add_argument("--overwrite", action="store_true", help="replace -o/--int8 if they exist")
    args = p.parse_args(argv)
    from ser_live.realtime.model import load_model

    if len(args.parts) < 2:
        p.error("give two or more models to join")
    missing = [str(path) for path in args.parts if not path.is_file()]
    if missing:
        p.error(f"no such model file: {', '.join(missing)}")
    if args.out.resolve() in {path.resolve() for path in args.parts} or (
            args.int8 is not None and args.int8.resolve() in {path.resolve() for path in args.parts}):
        p.error("an output would overwrite one of the parts: choose another -o/--int8")
    outputs = {"-o": args.out} | ({"--int8": args.int8} if args.int8 is not None else {})
    try:
        check_outputs(outputs, overwrite=args.overwrite)
    except UserError as err:
        p.error(str(err))
    weights = parse_weights(args.weights, args.weight_a, len(args.parts))
    model, meta = join(args.parts, weights)
    fold_batchnorm(model)  # parts exported before export/fold.py existed; a no-op on folded parts
    diff = check(model, args.parts, weights, load_model(args.parts[0]).info.feature_shape)
    if diff > TOLERANCE:
        raise SystemExit(f"the joined graph does not average the logits: max |diff| {diff:.2e}")
    data = model.SerializeToString()
    atomic_write(args.out, lambda fh: fh.write(data))
    terms = " + ".join(f"{wt:.4g} x {path.name}" for path, wt in zip(args.parts, weights, strict=True))
    print(f"wrote {args.out} ({len(data) / 1024:.0f} KiB): softmax of {terms} logits; "
          f"max |diff| vs the parts {diff:.2e}")
    if args.int8 is not None:
        from ser_live.export.onnx_export import _quantize, set_metadata

        _quantize(args.out, args.int8)
        small = onnx.load(str(args.int8))
        set_metadata(small, json.dumps(meta, allow_nan=False))  # quantize_dynamic may drop metadata_props
        packed = small.SerializeToString()
        atomic_write(args.int8, lambda fh: fh.write(packed))
        print(f"wrote {args.int8} ({len(packed) / 1024:.0f} KiB, int8)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
