"""realtime/stages/resample.py: streaming downmix + soxr, chunk invariance, rates, frequency preservation."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from ser_live.realtime.errors import UserError
from ser_live.realtime.stages.resample import Resampler, downmix

OUT = 16000


def _run(res: Resampler, x: np.ndarray, chunks: list[int]) -> np.ndarray:
    out, i = [], 0
    for n in chunks:
        out.append(res.process(x[i : i + n]))
        i += n
    assert i >= len(x)
    out.append(res.flush())
    return np.concatenate(out)


def _random_chunks(total: int, seed: int, high: int) -> list[int]:
    rng = np.random.default_rng(seed)
    sizes: list[int] = []
    while sum(sizes) < total:
        sizes.append(int(rng.integers(0, high)))  # includes empty chunks
    return sizes


def _tone(freq: float, rate: int, seconds: float, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    x = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.repeat(x[:, None], channels, axis=1) if channels > 1 else x


def _peak_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spec)])


@pytest.mark.parametrize("in_rate", [48000, 44100, 96000, 8000, 22050])
def test_chunked_equals_whole(in_rate: int) -> None:
    x = np.random.default_rng(in_rate).uniform(-0.5, 0.5, (in_rate // 4, 2)).astype(np.float32)
    whole = _run(Resampler(in_rate, OUT), x, [len(x)])
    res = Resampler(in_rate, OUT)
    for seed in range(2):
        chunked = _run(res, x, _random_chunks(len(x), seed, 3000))  # flush() leaves it ready for reuse
        np.testing.assert_allclose(chunked, whole, atol=1e-6)
    # and the same as soxr's one-shot resampling of the downmix
    np.testing.assert_allclose(whole, soxr.resample(x.mean(axis=1), in_rate, OUT, quality="HQ"), atol=1e-5)


def test_one_sample_chunks_equal_whole() -> None:
    x = np.random.default_rng(1).uniform(-0.5, 0.5, 4800).astype(np.float32)
    whole = _run(Resampler(48000, OUT), x, [len(x)])
    single = _run(Resampler(48000, OUT), x, [1] * len(x))
    np.testing.assert_allclose(single, whole, atol=1e-6)


@pytest.mark.parametrize("in_rate", [48000, 44100, 96000, 8000])
def test_length_and_frequency(in_rate: int) -> None:
    seconds = 0.5
    x = _tone(440.0, in_rate, seconds, channels=2)
    y = _run(Resampler(in_rate, OUT), x, _random_chunks(len(x), 7, 5000))
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - len(x) * OUT / in_rate) <= 1
    assert _peak_hz(y, OUT) == pytest.approx(440.0, abs=OUT / len(y) + 1)
    # amplitude kept (mid part, away from filter edges)
    mid = y[len(y) // 4 : 3 * len(y) // 4]
    assert np.max(np.abs(mid)) == pytest.approx(0.5, abs=0.02)


def test_passthrough_downmixes_without_changing_samples() -> None:
    x = np.random.default_rng(2).uniform(-1, 1, (1000, 3)).astype(np.float32)
    res = Resampler(OUT, OUT)
    assert res.passthrough
    y = res.process(x)
    np.testing.assert_allclose(y, x.mean(axis=1), atol=1e-7)
    assert res.flush().shape == (0,)
    mono = x[:, 0].copy()
    out = res.process(mono)
    np.testing.assert_array_equal(out, mono)
    out[:] = 0  # returned array is not a view of the caller's data
    assert np.any(mono != 0)


def test_high_frequency_removed_when_downsampling() -> None:
    x = _tone(12000.0, 48000, 0.5)  # above the 8 kHz Nyquist of 16 kHz
    y = _run(Resampler(48000, OUT), x, [len(x)])
    assert np.sqrt(np.mean(y[1000:-1000] ** 2)) < 1e-3


def test_reset_discards_state() -> None:
    x = np.random.default_rng(3).uniform(-0.5, 0.5, 4800).astype(np.float32)
    fresh = _run(Resampler(48000, OUT), x, [len(x)])
    res = Resampler(48000, OUT)
    res.process(np.ones(3000, np.float32))
    res.reset()
    np.testing.assert_allclose(_run(res, x, [len(x)]), fresh, atol=1e-6)


def test_counters() -> None:
    res = Resampler(48000, OUT)
    out = res.process(np.zeros((4800, 2), np.float32))
    assert res.samples_in == 4800 and res.samples_out == len(out)


def test_downmix_shapes() -> None:
    assert downmix(np.ones((4, 1))).shape == (4,)
    np.testing.assert_allclose(downmix(np.array([[1.0, 0.0], [0.5, 0.5]])), [0.5, 0.5])
    with pytest.raises(ValueError, match="shape"):
        downmix(np.zeros((2, 2, 2)))


@pytest.mark.parametrize(("in_rate", "out_rate"), [(0, 16000), (16000, -1), (44100.5, 16000), (True, 16000)])
def test_bad_rates(in_rate: object, out_rate: object) -> None:
    with pytest.raises(UserError, match="sample rate must be a positive whole number"):
        Resampler(in_rate, out_rate)  # type: ignore[arg-type]
