"""ser_live.export.ensemble: joining N models into one graph that averages their logits (tiny models built here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from ser_live.export.embedding import run_graph
from ser_live.realtime.model import EMBEDDING_OUTPUT, METADATA_KEY, OUTPUT_NAME, load_model
from tests.tiny_model import TINY_LABELS, make_tiny_model, tiny_feature_shape


def _script():  # scripts/ is not a package
    from ser_live.export import ensemble

    return ensemble


def _parts(tmp_path: Path, n: int) -> list[Path]:
    # the same graph with other weights: every part has the same tensor names, as seeds of one recipe do
    return [make_tiny_model(tmp_path / f"part{seed}.onnx", seed=seed, embedding=True) for seed in range(n)]


def _meta(path: Path) -> dict:
    proto = onnx.load(str(path))
    return json.loads({p.key: p.value for p in proto.metadata_props}[METADATA_KEY])


def _expected(parts: list[Path], weights: list[float], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The parts' embeddings side by side and the softmax of their weighted logits, from each file on its own."""
    embeddings, logits = [], 0.0
    for path, weight in zip(parts, weights, strict=True):
        (emb,) = run_graph(path.read_bytes(), x, [EMBEDDING_OUTPUT])
        layer = _meta(path)["embedding"]["classifier"]
        logits = logits + weight * (emb @ np.asarray(layer["weights"]) + np.asarray(layer["bias"]))
        embeddings.append(emb)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.hstack(embeddings), probs / probs.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("weights", [None, "0.5,0.25,0.25"])
def test_three_parts_with_the_same_tensor_names_join_into_their_mean_logits(tmp_path: Path,
                                                                           weights: str | None) -> None:
    parts = _parts(tmp_path, 3)
    out = tmp_path / "joined.onnx"
    argv = [*map(str, parts), "-o", str(out)] + (["--weights", weights] if weights else [])
    assert _script().main(argv) == 0
    wanted_weights = [1 / 3] * 3 if weights is None else [0.5, 0.25, 0.25]
    x = np.random.default_rng(3).normal(0.0, 5.0, size=(8, *tiny_feature_shape())).astype(np.float32)
    emb, probs = run_graph(out.read_bytes(), x, [EMBEDDING_OUTPUT, OUTPUT_NAME])
    want_emb, want_probs = _expected(parts, wanted_weights, x)
    np.testing.assert_allclose(emb, want_emb, atol=1e-5)
    np.testing.assert_allclose(probs, want_probs, atol=1e-5)
    # the parts disagree, so the check above could fail: the mean is not any one part's answer
    for part in parts:
        assert np.abs(run_graph(part.read_bytes(), x, [OUTPUT_NAME])[0] - probs).max() > 1e-3
    meta = _meta(out)
    assert [p["weight"] for p in meta["ensemble"]["parts"]] == pytest.approx(wanted_weights)
    assert meta["embedding"]["size"] == want_emb.shape[1]
    info = load_model(out).info  # the runtime accepts it, personalisable (its last layer is in the metadata)
    assert info.labels == TINY_LABELS
    assert info.embedding is not None and info.embedding.size == want_emb.shape[1]


def test_an_ensemble_is_not_joined_again(tmp_path: Path) -> None:
    parts = _parts(tmp_path, 3)
    script = _script()
    assert script.main([str(parts[0]), str(parts[1]), "-o", str(tmp_path / "ab.onnx")]) == 0
    with pytest.raises(SystemExit, match="already an ensemble: join its parts directly"):
        script.main([str(tmp_path / "ab.onnx"), str(parts[2]), "-o", str(tmp_path / "abc.onnx")])
    assert not (tmp_path / "abc.onnx").exists()


def test_models_with_other_labels_are_refused(tmp_path: Path) -> None:
    a = make_tiny_model(tmp_path / "a.onnx", embedding=True)
    b = make_tiny_model(tmp_path / "b.onnx", labels=TINY_LABELS[:5], seed=1, embedding=True)
    with pytest.raises(SystemExit, match="differ in labels"):
        _script().main([str(a), str(b), "-o", str(tmp_path / "ab.onnx")])


@pytest.mark.parametrize("weights, message", [("0.5,0.5", "2 values for 3 parts"), ("0.6,0.6,-0.2", "positive"),
                                              ("0.2,0.2,0.2", "sum to 1"), ("a,b,c", "one number per part")])
def test_bad_weights_are_refused_with_the_fix(tmp_path: Path, weights: str, message: str) -> None:
    parts = _parts(tmp_path, 3)
    with pytest.raises(SystemExit, match=message):
        _script().main([*map(str, parts), "-o", str(tmp_path / "j.onnx"), "--weights", weights])
    assert not (tmp_path / "j.onnx").exists()


def test_an_output_that_is_a_part_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parts = _parts(tmp_path, 2)
    before = parts[1].read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        _script().main([str(parts[0]), str(parts[1]), "-o", str(parts[1])])
    assert exit_info.value.code == 2
    assert "would overwrite one of the parts" in capsys.readouterr().err
    assert parts[1].read_bytes() == before


def test_an_existing_output_is_kept_unless_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parts = _parts(tmp_path, 2)
    out = tmp_path / "joined.onnx"
    out.write_bytes(b"keep me")
    with pytest.raises(SystemExit) as exit_info:
        _script().main([*map(str, parts), "-o", str(out)])
    assert exit_info.value.code == 2
    assert "-o " + str(out) + " exists: pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"
    assert _script().main([*map(str, parts), "-o", str(out), "--overwrite"]) == 0
    assert load_model(out).labels == TINY_LABELS


def test_each_part_keeps_its_own_test_figure_in_the_metadata(tmp_path: Path) -> None:
    """The joined file has no test of its own; each part's (ser-train's own test, its split) travels with it."""
    a = make_tiny_model(tmp_path / "a.onnx", embedding=True,
                        metadata_overrides={"metrics": {"uar": 0.892, "split": "speaker"}})
    b = make_tiny_model(tmp_path / "b.onnx", seed=1, embedding=True)  # no figure: none is made up
    out = tmp_path / "ab.onnx"
    assert _script().main([str(a), str(b), "-o", str(out)]) == 0
    first, second = _meta(out)["ensemble"]["parts"]
    assert (first["uar"], first["split"]) == (0.892, "speaker")
    assert "uar" not in second and len(second["sha256"]) == 64
    assert _meta(out)["metrics"]["note"] == "an ensemble of 2 models: its figures are in the model card"
