"""realtime/sources/audio.py: reading files, streaming blocks, live-block sanitising, one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser_live.realtime.errors import UserError
from ser_live.realtime.sources.audio import audio_info, iter_audio_blocks, read_audio, sanitize_block

RATE = 16000


def _noise(frames: int, channels: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.5, 0.5, (frames, channels)).astype(np.float32)


def _one_line(err: pytest.ExceptionInfo[UserError]) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize(
    ("fmt", "subtype", "ext", "atol"),
    [
        ("WAV", "PCM_16", "wav", 1 / 32768),
        ("WAV", "FLOAT", "wav", 0.0),
        ("FLAC", "PCM_24", "flac", 1 / 2**23),
        ("WAV", "PCM_U8", "wav", 1 / 128),
    ],
)
def test_read_audio_formats_as_float32(tmp_path: Path, fmt: str, subtype: str, ext: str, atol: float) -> None:
    x = _noise(3000, 2)
    path = tmp_path / f"x.{ext}"
    sf.write(path, x, RATE, format=fmt, subtype=subtype)
    data, rate = read_audio(path)
    assert rate == RATE
    assert data.dtype == np.float32
    assert data.shape == (3000, 2)
    np.testing.assert_allclose(data, x, atol=atol + 1e-7)


def test_read_audio_96k_mono_is_2d(tmp_path: Path) -> None:
    x = _noise(9600, 1)[:, 0]
    path = tmp_path / "hi.wav"
    sf.write(path, x, 96000, subtype="PCM_24")
    data, rate = read_audio(path)
    assert rate == 96000
    assert data.shape == (9600, 1)
    info = audio_info(path)
    assert (info.sample_rate, info.channels, info.frames) == (96000, 1, 9600)
    assert info.duration_s == pytest.approx(0.1)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        read_audio(tmp_path / "nope.wav")
    assert "does not exist" in _one_line(err)
    with pytest.raises(UserError):
        iter_audio_blocks(tmp_path / "nope.wav")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        read_audio(tmp_path)
    assert "directory" in _one_line(err)


def test_non_audio_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio at all\n" * 20)
    with pytest.raises(UserError) as err:
        read_audio(path)
    msg = _one_line(err)
    assert "is not an audio file soundfile can read" in msg
    assert "WAV" in msg and "FLAC" in msg
    with pytest.raises(UserError):
        iter_audio_blocks(path)


def test_truncated_header(tmp_path: Path) -> None:
    good = tmp_path / "good.wav"
    sf.write(good, _noise(1000, 1), RATE)
    bad = tmp_path / "cut.wav"
    bad.write_bytes(good.read_bytes()[:20])
    with pytest.raises(UserError) as err:
        read_audio(bad)
    assert str(bad) in _one_line(err)


def test_truncated_flac_mid_stream(tmp_path: Path) -> None:
    good = tmp_path / "good.flac"
    sf.write(good, _noise(32000, 1), RATE, format="FLAC")
    bad = tmp_path / "cut.flac"
    raw = good.read_bytes()
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(UserError) as err:
        read_audio(bad)
    assert "truncated or corrupt" in _one_line(err)
    with pytest.raises(UserError, match="truncated or corrupt"):
        for _ in iter_audio_blocks(bad, 1024):
            pass


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros((0, 1), np.float32), RATE)
    with pytest.raises(UserError) as err:
        read_audio(path)
    assert "0 frames" in _one_line(err)
    with pytest.raises(UserError):
        iter_audio_blocks(path)


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "zero.wav"
    path.write_bytes(b"")
    with pytest.raises(UserError):
        read_audio(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples(tmp_path: Path, bad: float) -> None:
    x = _noise(5000, 1)
    x[4500, 0] = bad
    path = tmp_path / "nan.wav"
    sf.write(path, x, RATE, subtype="FLOAT")
    with pytest.raises(UserError) as err:
        read_audio(path)
    assert "contains NaN or infinite samples" in _one_line(err)
    # Streaming: the blocks before the bad one come out, then the error.
    blocks = iter_audio_blocks(path, 1000)
    good = [next(blocks) for _ in range(4)]
    assert sum(b.shape[0] for b in good) == 4000
    with pytest.raises(UserError, match="NaN or infinite"):
        next(blocks)


@pytest.mark.parametrize("block_frames", [1, 7, 1000, 4096, 100000])
def test_iter_blocks_concatenate_to_whole(tmp_path: Path, block_frames: int) -> None:
    x = _noise(5003, 2, seed=3)
    path = tmp_path / "s.wav"
    sf.write(path, x, 44100, subtype="FLOAT")
    whole, rate = read_audio(path)
    blocks = list(iter_audio_blocks(path, block_frames))
    assert all(b.dtype == np.float32 and b.ndim == 2 and b.shape[1] == 2 for b in blocks)
    assert all(b.shape[0] == block_frames for b in blocks[:-1])
    assert 0 < blocks[-1].shape[0] <= block_frames
    np.testing.assert_array_equal(np.concatenate(blocks), whole)
    assert rate == 44100


@pytest.mark.parametrize("block_frames", [0, -5, 2.5, True])
def test_iter_blocks_rejects_bad_block_size(tmp_path: Path, block_frames: object) -> None:
    path = tmp_path / "s.wav"
    sf.write(path, _noise(100, 1), RATE)
    with pytest.raises(UserError, match="block size"):
        iter_audio_blocks(path, block_frames)  # type: ignore[arg-type]


def test_sanitize_block_int16_scaling() -> None:
    block = np.array([[-32768, 0], [16384, 32767]], dtype=np.int16)
    out = sanitize_block(block)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[-1.0, 0.0], [0.5, 32767 / 32768]])


def test_sanitize_block_shapes_and_types() -> None:
    mono = sanitize_block(np.linspace(-1, 1, 5))
    assert mono.shape == (5, 1) and mono.dtype == np.float32
    u8 = sanitize_block(np.array([0, 128, 255], dtype=np.uint8))
    np.testing.assert_allclose(u8[:, 0], [-1.0, 0.0, 127 / 128])
    i32 = sanitize_block(np.array([[2**30]], dtype=np.int32))
    np.testing.assert_allclose(i32, [[0.5]])
    assert sanitize_block(np.zeros((0, 2), np.float32)).shape == (0, 2)


@pytest.mark.parametrize(
    ("block", "needle"),
    [
        (np.array([0.1, np.nan], np.float32), "NaN or infinite"),
        (np.array([[np.inf]]), "NaN or infinite"),
        (np.zeros((2, 2, 2)), "1-D (mono) or 2-D"),
        (np.float32(0.5), "1-D (mono) or 2-D"),
        (np.array(["a", "b"]), "not audio"),
        (np.array([True, False]), "not audio"),
    ],
)
def test_sanitize_block_errors(block: np.ndarray, needle: str) -> None:
    with pytest.raises(UserError) as err:
        sanitize_block(block)
    assert needle in _one_line(err)


def test_a_header_sample_rate_below_1000_hz_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "liar.wav"
    sf.write(path, np.zeros(16000, np.float32), 1)  # 1 s of audio whose header says 1 Hz
    for call in (audio_info, read_audio):
        with pytest.raises(UserError, match="sample rate is 1 Hz"):
            call(path)
    ok = tmp_path / "phone.wav"
    sf.write(ok, np.zeros(800, np.float32), 8000)
    assert audio_info(ok).sample_rate == 8000
