"""Features equal a direct librosa computation of the same quantities; streaming equals the reference."""

from __future__ import annotations

import numpy as np
import pytest

from ser_live.realtime.errors import UserError
from ser_live.realtime.stages.features import (
    PRESETS,
    FeatureExtractor,
    FeaturePreset,
    FrameFeatures,
    chroma_filterbank,
    dct_matrix,
    get_preset,
    mel_filterbank,
)

librosa = pytest.importorskip("librosa")
SR = 16_000


def _speechy(n: int, seed: int = 0) -> np.ndarray:
    """A voiced-like test signal: harmonics of a gliding pitch, amplitude-modulated, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    y = sum(np.sin(k * phase) / k for k in range(1, 12))
    y = y * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2) + 0.01 * rng.standard_normal(n)
    return (0.3 * y / np.max(np.abs(y))).astype(np.float32)


def test_filterbanks_match_librosa() -> None:
    for sr, n_fft, n_mels, fmin, fmax in [(16000, 2048, 128, 0.0, 8000.0), (16000, 512, 64, 20.0, 8000.0)]:
        ours = mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
        ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(
        chroma_filterbank(16000, 2048), librosa.filters.chroma(sr=16000, n_fft=2048, tuning=0.0), atol=1e-6
    )
    x = np.random.default_rng(1).standard_normal((5, 128))
    scipy_fft = pytest.importorskip("scipy.fft")
    np.testing.assert_allclose(
        x @ dct_matrix(128, 40).T.astype(np.float64), scipy_fft.dct(x, type=2, norm="ortho", axis=-1)[:, :40],
        rtol=1e-5, atol=1e-5,
    )


def _librosa_reference(preset: FeaturePreset, y: np.ndarray) -> np.ndarray:
    """The seeds' computation with librosa (center=False, fixed tuning), one call per quantity."""
    kw = {"n_fft": preset.n_fft, "hop_length": preset.hop_length, "center": False}
    mag = np.abs(librosa.stft(y, **kw))
    parts = {
        "mfcc": lambda: librosa.feature.mfcc(y=y, sr=SR, n_mfcc=preset.n_mfcc, n_mels=preset.n_mels, **kw),
        "chroma": lambda: librosa.feature.chroma_stft(S=mag, sr=SR, tuning=0.0, n_fft=preset.n_fft),
        "mel": lambda: librosa.feature.melspectrogram(y=y, sr=SR, n_mels=preset.n_mels, **kw),
        "zcr": lambda: librosa.feature.zero_crossing_rate(
            y, frame_length=preset.n_fft, hop_length=preset.hop_length, center=False
        ),
        "rms": lambda: librosa.feature.rms(
            y=y, frame_length=preset.n_fft, hop_length=preset.hop_length, center=False
        ),
    }
    return np.concatenate([parts[c]().mean(axis=1) for c in preset.components])


@pytest.mark.parametrize("name", ["seed180", "seed162"])
def test_mean_presets_match_librosa(name: str) -> None:
    preset = get_preset(name)
    y = _speechy(2 * SR)
    ours = FeatureExtractor(preset).window_features(y)
    ref = _librosa_reference(preset, y)
    assert ours.shape == (preset.vector_size,) == ref.shape
    assert ours.shape == ({"seed180": 180, "seed162": 162}[name],)
    # relative to each value's scale: mel powers span decades, MFCCs are tens of dB
    np.testing.assert_allclose(ours, ref, rtol=2e-3, atol=1e-3 * np.abs(ref).max() * 1e-3 + 1e-4)


def test_logmel_matches_librosa() -> None:
    preset = get_preset("logmel")
    y = _speechy(2 * SR, seed=3)
    ours = FeatureExtractor(preset).window_features(y)
    mel = librosa.feature.melspectrogram(
        y=y, sr=SR, n_fft=preset.n_fft, hop_length=preset.hop_length, center=False,
        n_mels=preset.n_mels, fmin=preset.fmin, fmax=preset.f_max,
    )
    ref = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None).T
    assert ours.shape == preset.feature_shape(2 * SR) == ref.shape == (197, 64)
    np.testing.assert_allclose(ours, ref, atol=2e-3)


def test_chroma_is_tuning_independent_of_content() -> None:
    """The same sound gives the same numbers: no per-window tuning estimate."""
    preset = get_preset("seed180")
    y = _speechy(SR)
    ex = FeatureExtractor(preset)
    np.testing.assert_array_equal(ex.window_features(y), ex.window_features(y.copy()))


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("chunk", [61, 512, 4000, 100_000])
def test_streaming_equals_reference(name: str, chunk: int) -> None:
    preset = get_preset(name)
    hop = preset.hop_length
    window = (SR // hop) * hop  # ~1 s, a multiple of the hop
    lead_in = window - 8 * hop
    y = _speechy(3 * SR, seed=5)
    stream = FrameFeatures(preset, lead_in=lead_in, capacity_frames=256)
    ref = FeatureExtractor(preset)
    padded = np.concatenate([np.zeros(lead_in, np.float32), y])
    checked = 0
    for i in range(0, len(y), chunk):
        stream.process(y[i : i + chunk])
        end = stream.position
        end -= (end + lead_in) % hop
        start = end - window
        if start >= -lead_in:
            got = stream.window(start, end)
            want = ref.window_features(padded[start + lead_in : end + lead_in])
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
            checked += 1
    end = (len(y) // hop) * hop
    np.testing.assert_allclose(
        stream.window(end - window, end), ref.window_features(padded[end - window + lead_in : end + lead_in]),
        rtol=1e-5, atol=1e-5,
    )
    assert checked > 0


def test_stream_reset_and_cache_limits() -> None:
    preset = get_preset("seed180")
    stream = FrameFeatures(preset, lead_in=0, capacity_frames=40)
    y = _speechy(2 * SR)
    stream.process(y[: 16 * 512])
    first = stream.window(0, 16 * 512)
    stream.process(y[16 * 512 :])
    assert stream._first_frame > 0  # 2 s of audio is more than 40 frames: the oldest were dropped
    with pytest.raises(ValueError, match="no longer cached"):
        stream.window(0, 8 * 512 + 2048)
    stream.reset()
    stream.process(y[: 16 * 512])
    np.testing.assert_allclose(stream.window(0, 16 * 512), first, rtol=1e-6)
    with pytest.raises(ValueError, match="ends after"):
        stream.window(0, 32 * 512)


def test_preset_round_trip_and_errors() -> None:
    for preset in PRESETS.values():
        assert FeaturePreset.from_dict(preset.to_dict()) == preset
    with pytest.raises(UserError, match="unknown feature preset"):
        get_preset("mfcc999")
    with pytest.raises(UserError, match="sample rate 22050"):
        FeaturePreset(name="x", kind="mean", components=("mel",), sample_rate=22050)
    with pytest.raises(UserError, match="newer ser-live"):
        FeaturePreset.from_dict({**PRESETS["seed180"].to_dict(), "wavelets": 3})
    with pytest.raises(UserError, match="shorter than one"):
        FeatureExtractor(PRESETS["seed180"]).window_features(np.zeros(1000, np.float32))


def test_silence_is_finite() -> None:
    for preset in PRESETS.values():
        out = FeatureExtractor(preset).window_features(np.zeros(SR, np.float32))
        assert np.all(np.isfinite(out))
