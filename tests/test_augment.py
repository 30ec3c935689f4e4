"""Training augmentation: seed 2's noise / stretch / pitch, the optional gain and reverberation extras."""

from __future__ import annotations

import numpy as np
import pytest

from ser_live.realtime.errors import UserError
from ser_live.train import augment
from ser_live.train.augment import AugmentConfig, augment_clip

SR = 16_000
TONE_HZ = 440.0


def tone(seconds: float = 1.0, freq: float = TONE_HZ, level: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (level * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def speechlike(seconds: float = 1.0) -> np.ndarray:
    """A gliding harmonic tone with a syllable-rate envelope (not a pure sine)."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = 150 + 40 * np.sin(2 * np.pi * 1.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voice = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = 0.5 * (1 - np.cos(2 * np.pi * 4 * t))
    return (0.3 * envelope * voice).astype(np.float32)


def dominant_hz(y: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    return float(np.argmax(spectrum) * SR / y.size)


def test_default_is_seed_2_noisy_copy_then_stretched_pitched_copy() -> None:
    y = speechlike()
    versions = augment_clip(y, SR, AugmentConfig(), np.random.default_rng(0))
    assert len(versions) == AugmentConfig().copies == 2
    noisy, stretched = versions
    assert noisy.size == y.size
    assert stretched.size == round(y.size / 0.8)  # rate 0.8: 1.25 times longer
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in versions)
    assert not np.array_equal(noisy, y)
    assert not any(np.shares_memory(v, y) for v in versions)


def test_augmentation_is_deterministic_given_the_generator() -> None:
    y = speechlike(0.5)
    config = AugmentConfig(copies=4, gain_db=6.0, reverb_probability=0.5)
    first = augment_clip(y, SR, config, np.random.default_rng(42))
    again = augment_clip(y, SR, config, np.random.default_rng(42))
    other = augment_clip(y, SR, config, np.random.default_rng(43))
    assert len(first) == len(again) == 4
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0], other[0])


def test_noise_level_is_bounded_by_the_amount_times_the_peak() -> None:
    y = tone(0.25, level=0.8)
    peak = float(np.max(np.abs(y)))
    rng = np.random.default_rng(1)
    levels = np.array([np.std(augment.add_noise(y, rng, 0.035) - y) for _ in range(200)])
    assert np.all(levels <= 0.035 * peak * 1.05)  # amplitude <= amount * peak; 1.05: sample std of N(0, 1)
    assert levels.max() > 0.035 * peak * 0.8  # the uniform factor reaches near 1
    assert levels.min() < 0.035 * peak * 0.2  # ... and near 0
    silent = np.zeros(1000, dtype=np.float32)
    assert np.array_equal(augment.add_noise(silent, rng), silent)


def test_time_stretch_keeps_pitch_and_pitch_shift_keeps_length() -> None:
    y = tone(1.0)
    stretched = augment.time_stretch(y, 0.8)
    assert stretched.size == round(y.size / 0.8)
    assert dominant_hz(stretched) == pytest.approx(TONE_HZ, abs=3)
    shifted = augment.pitch_shift(y, SR, 0.7)
    assert shifted.size == y.size
    assert dominant_hz(shifted) == pytest.approx(TONE_HZ * 2 ** (0.7 / 12), abs=3)  # about 458 Hz
    faster = augment.time_stretch(y, 1.25)
    assert faster.size == round(y.size / 1.25)


def test_very_short_and_empty_clips() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 5, 100):
        versions = augment_clip(speechlike()[:n], SR, AugmentConfig(), rng)
        assert [v.size for v in versions] == [n, round(n / 0.8)]
        assert all(np.isfinite(v).all() for v in versions)
    empty = augment_clip(np.zeros(0, np.float32), SR, AugmentConfig(), rng)
    assert [v.size for v in empty] == [0, 0]  # always `copies` versions: callers index them


def test_bad_audio_is_rejected() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="mono"):
        augment_clip(np.zeros((100, 2), np.float32), SR, AugmentConfig(), rng)
    bad = tone(0.1)
    bad[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        augment_clip(bad, SR, AugmentConfig(), rng)


def test_more_copies_add_random_stretch_and_pitch_within_range() -> None:
    y = speechlike(0.5)
    config = AugmentConfig(copies=6)
    versions = augment_clip(y, SR, config, np.random.default_rng(5))
    assert len(versions) == 6
    assert [v.size for v in versions[0::2]] == [y.size] * 3  # noisy copies
    stretched_sizes = [v.size for v in versions[1::2]]
    assert stretched_sizes[0] == round(y.size / 0.8)
    assert all(round(y.size * 0.8) <= s <= round(y.size / 0.8) for s in stretched_sizes)
    assert len(set(stretched_sizes)) > 1


def test_switches_and_off() -> None:
    y = speechlike(0.25)
    rng = np.random.default_rng(0)
    assert augment_clip(y, SR, augment.NO_AUGMENT, rng) == []
    only_noise = AugmentConfig(pitch_steps=0.0, stretch_rate=1.0, copies=3)
    noisy = augment_clip(y, SR, only_noise, rng)
    assert [v.size for v in noisy] == [y.size] * 3
    assert not np.array_equal(noisy[0], noisy[1])
    only_gain = AugmentConfig(noise=0.0, pitch_steps=0.0, stretch_rate=1.0, gain_db=6.0, copies=2)
    gained = augment_clip(y, SR, only_gain, rng)
    assert len(gained) == 2
    for v in gained:
        ratio = np.max(np.abs(v)) / np.max(np.abs(y))
        assert 10 ** (-6 / 20) - 1e-4 <= ratio <= 10 ** (6 / 20) + 1e-4
    assert augment_clip(y, SR, AugmentConfig(noise=0.0, pitch_steps=0.0, stretch_rate=1.0, copies=0), rng) == []
    with pytest.raises(UserError, match="every transform is off"):
        AugmentConfig(noise=0.0, pitch_steps=0.0, stretch_rate=1.0)


def test_strong_preset_adds_degraded_copies() -> None:
    y = speechlike(0.5)
    config = AugmentConfig.strong()
    assert config.copies == 4 and config.gain_db > 0 and config.reverb_probability > 0
    versions = augment_clip(y, SR, config, np.random.default_rng(9))
    assert len(versions) == 4
    assert versions[0].size == versions[2].size == y.size
    assert versions[1].size == round(y.size / 0.8)
    assert all(v.dtype == np.float32 and np.isfinite(v).all() and np.max(np.abs(v)) <= 1.0 for v in versions)


def test_gain_scales_and_clips() -> None:
    y = tone(0.1, level=0.4)
    np.testing.assert_allclose(augment.apply_gain(y, 20 * np.log10(2)), 2 * y, rtol=1e-5)
    loud = augment.apply_gain(y, 12.0)
    assert np.max(np.abs(loud)) == pytest.approx(1.0)


def test_reverb_keeps_length_and_level_and_adds_a_decaying_tail() -> None:
    rng = np.random.default_rng(3)
    click = np.zeros(SR, dtype=np.float32)
    click[100] = 1.0
    wet = augment.add_reverb(click, SR, rng, rt60_s=0.5, drr_db=0.0)
    assert wet.size == click.size and wet.dtype == np.float32
    assert np.sqrt(np.mean(wet.astype(np.float64) ** 2)) == pytest.approx(np.sqrt(np.mean(click**2)), rel=1e-4)
    assert np.all(wet[:100] == pytest.approx(0.0, abs=1e-6))  # causal
    early = np.sum(wet[101 : 101 + SR // 10] ** 2)
    late = np.sum(wet[101 + 3 * SR // 10 : 101 + 4 * SR // 10] ** 2)
    assert early > 0 and late > 0
    assert 10 * np.log10(early / late) == pytest.approx(60 * 0.3 / 0.5, abs=6)  # 36 dB over 0.3 s at RT60 0.5 s
    response = augment.synthetic_impulse_response(SR, np.random.default_rng(0), rt60_s=0.3, drr_db=6.0)
    assert response[0] == 1.0
    assert 10 * np.log10(1.0 / np.sum(response[1:].astype(np.float64) ** 2)) == pytest.approx(6.0, abs=0.01)


def test_seed_stretch_and_pitch_are_librosas_phase_vocoder() -> None:
    """Seed 2 called librosa.effects.time_stretch / pitch_shift: the audiomentations path gives the same samples."""
    import librosa

    y = speechlike(0.5)
    np.testing.assert_array_equal(
        augment.time_stretch(y, 0.8, SR), librosa.util.fix_length(librosa.effects.time_stretch(y, rate=0.8),
                                                                  size=round(y.size / 0.8))
    )
    np.testing.assert_array_equal(augment.pitch_shift(y, SR, 0.7), librosa.effects.pitch_shift(y, sr=SR, n_steps=0.7))


def band_energy_db(y: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(y.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(y.size, 1 / SR)
    return float(10 * np.log10(spectrum[(freqs >= low) & (freqs < high)].sum() + 1e-20))


def test_telephone_band_removes_lows_and_highs() -> None:
    y = (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    phone = augment.telephone(y, SR)
    assert phone.size == y.size and phone.dtype == np.float32
    in_band = band_energy_db(phone, 500, 3000) - band_energy_db(y, 500, 3000)
    assert abs(in_band) < 1.5
    assert band_energy_db(phone, 4500, 8000) - band_energy_db(y, 4500, 8000) < -40
    assert band_energy_db(phone, 20, 120) - band_energy_db(y, 20, 120) < -15


def test_noise_at_snr_and_eq_and_codec() -> None:
    y = speechlike(1.0)
    rng = np.random.default_rng(1)
    noisy = augment.add_noise_snr(y, SR, rng, (10.0, 10.0))
    snr = 10 * np.log10(np.mean(y.astype(np.float64) ** 2) / np.mean((noisy - y).astype(np.float64) ** 2))
    assert snr == pytest.approx(10.0, abs=0.5)
    eq = augment.equalize(y, SR, rng, 6.0)
    assert eq.size == y.size and not np.allclose(eq, y)
    mp3 = augment.codec(y, SR, rng)
    assert mp3.size == y.size and np.isfinite(mp3).all() and not np.array_equal(mp3, y)


def test_channel_preset_degrades_every_copy_with_gain_up_to_20_db() -> None:
    config = AugmentConfig.channel()
    assert config.gain_db >= 20 and config.copies == 2
    assert all(p > 0 for p in (config.eq_probability, config.telephone_probability, config.reverb_probability,
                               config.noise_snr_probability, config.codec_probability))
    y = speechlike(0.5)
    ratios = []
    for seed in range(12):
        noisy, stretched = augment_clip(y, SR, config, np.random.default_rng(seed))
        assert noisy.size == y.size and stretched.size == round(y.size / 0.8)
        assert np.max(np.abs(noisy)) <= 1.0 and np.max(np.abs(stretched)) <= 1.0
        power_ratio = np.mean(noisy.astype(np.float64) ** 2) / np.mean(y.astype(np.float64) ** 2)
        ratios.append(10 * np.log10(power_ratio))
    assert min(ratios) < -8 and max(ratios) > 8  # levels spread over the +/- 20 dB range
    first = augment_clip(y, SR, config, np.random.default_rng(7))
    again = augment_clip(y, SR, config, np.random.default_rng(7))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert config.to_dict()["noise_snr_db"] == list(augment.DEFAULT_NOISE_SNR_DB)


def test_config_validation_names_the_problem() -> None:
    with pytest.raises(UserError, match="noise"):
        AugmentConfig(noise=-0.1)
    with pytest.raises(UserError, match="stretch rate"):
        AugmentConfig(stretch_rate=0.0)
    with pytest.raises(UserError, match="copies"):
        AugmentConfig(copies=-1)
    with pytest.raises(UserError, match="probability"):
        AugmentConfig(reverb_probability=1.5)
    with pytest.raises(UserError, match="telephone probability"):
        AugmentConfig(telephone_probability=-0.1)
    with pytest.raises(UserError, match="SNR range"):
        AugmentConfig(noise_snr_db=(30.0, 5.0))
    with pytest.raises(UserError, match="reverberation time"):
        AugmentConfig(reverb_rt60_s=(0.5, 0.2))
    assert AugmentConfig().to_dict()["stretch_rate"] == augment.DEFAULT_STRETCH_RATE
