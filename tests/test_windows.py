"""realtime/stages/windows.py: window positions, padding, flush, speech gating, chunk invariance, alignment helper."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ser_live.realtime.errors import UserError
from ser_live.realtime.stages.windows import Window, WindowConfig, Windower, round_to_multiple

RATE = 16000


def _cfg(window: int = 800, hop: int = 300, min_speech_s: float = 0.01, rate: int = RATE) -> WindowConfig:
    return WindowConfig(sample_rate=rate, window_samples=window, hop_samples=hop, min_speech_s=min_speech_s)


def _run(w: Windower, flags: np.ndarray, chunks: list[int]) -> list[Window]:
    out: list[Window] = []
    i = 0
    for n in chunks:
        part = flags[i : i + n]
        out += w.process(np.zeros(len(part), np.float32), part)
        i += n
    return out + w.flush()


def _random_chunks(total: int, seed: int, high: int) -> list[int]:
    rng = np.random.default_rng(seed)
    sizes: list[int] = []
    while sum(sizes) < total:
        sizes.append(int(rng.integers(0, high)))
    return sizes


def _reference(flags: np.ndarray, cfg: WindowConfig) -> list[Window]:
    """Brute force: pad explicitly in front and at the end, then slide."""
    w, h = cfg.window_samples, cfg.hop_samples
    n_windows = math.ceil(len(flags) / h)
    padded = np.concatenate([np.zeros(w - h, bool), flags, np.zeros(n_windows * h - len(flags), bool)])
    out = []
    for m in range(1, n_windows + 1):
        end = m * h
        count = int(padded[end - w + (w - h) : end + (w - h)].sum())
        speech_s = count / cfg.sample_rate
        out.append(Window(end - w, end, speech_s, count / w, speech_s >= cfg.min_speech_s))
    return out


def _flags(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    runs = np.repeat(rng.random(n // 50 + 1) < 0.4, 50)[:n]  # speech in runs of 50 samples
    return runs


@pytest.mark.parametrize(("window", "hop", "n"), [(800, 300, 2000), (800, 400, 1600), (500, 500, 1234), (900, 300, 1)])
def test_matches_brute_force(window: int, hop: int, n: int) -> None:
    cfg = _cfg(window, hop, min_speech_s=0.01)
    flags = _flags(n, seed=window + n)
    expected = _reference(flags, cfg)
    for chunks in ([n], [1] * n, _random_chunks(n, 1, 97), _random_chunks(n, 2, 700)):
        assert _run(Windower(cfg), flags, chunks) == expected


def test_positions_and_count() -> None:
    cfg = _cfg(window=800, hop=300)
    wins = _run(Windower(cfg), np.ones(2000, bool), [2000])
    assert [w.end for w in wins] == [300, 600, 900, 1200, 1500, 1800, 2100]  # ceil(2000 / 300) windows
    assert [w.start for w in wins] == [-500, -200, 100, 400, 700, 1000, 1300]
    assert all(w.end - w.start == 800 for w in wins)
    # padding counts as non-speech: first window holds 300 real samples of 800
    assert wins[0].speech_ratio == pytest.approx(300 / 800)
    assert wins[2].speech_ratio == 1.0 and wins[2].speech_s == pytest.approx(800 / RATE)
    # flush padding: the last window covers 1300..2100 but only 700 real samples
    assert wins[-1].speech_ratio == pytest.approx(700 / 800)


def test_flush_only_when_samples_past_boundary() -> None:
    cfg = _cfg(window=800, hop=300)
    w = Windower(cfg)
    assert len(w.process(np.zeros(900), np.ones(900, bool))) == 3
    assert w.flush() == []  # exactly on a boundary: nothing more
    assert len(w.process(np.zeros(901), np.ones(901, bool))) == 3  # flush reset it: a new stream
    last = w.flush()
    assert [(x.start, x.end) for x in last] == [(400, 1200)]
    assert Windower(cfg).flush() == []  # empty stream: no windows


def test_flush_window_counts_only_real_speech() -> None:
    cfg = _cfg(window=800, hop=300)
    w = Windower(cfg)
    w.process(np.zeros(901), np.ones(901, bool))
    (last,) = w.flush()
    assert (last.start, last.end) == (400, 1200)
    assert round(last.speech_s * RATE) == 901 - 400


def test_min_speech_gating() -> None:
    cfg = _cfg(window=1000, hop=500, min_speech_s=300 / RATE)
    flags = np.zeros(3000, bool)
    flags[1000:1299] = True  # 299 samples of speech: just short
    flags[2000:2300] = True  # 300 samples: just enough
    wins = _run(Windower(cfg), flags, [3000])
    by_end = {w.end: w for w in wins}
    assert not by_end[1500].classify and round(by_end[1500].speech_s * RATE) == 299
    assert by_end[2500].classify and round(by_end[2500].speech_s * RATE) == 300
    assert not by_end[500].classify  # silence only
    assert sum(w.classify for w in wins) == 2  # the windows ending at 2500 and 3000


def test_min_speech_zero_classifies_everything() -> None:
    wins = _run(Windower(_cfg(min_speech_s=0.0)), np.zeros(1000, bool), [1000])
    assert wins and all(w.classify for w in wins)


def test_position_and_next_end() -> None:
    w = Windower(_cfg(window=800, hop=300))
    assert w.next_end == 300
    w.process(250, np.zeros(250, bool))  # a length is enough
    assert w.position == 250 and w.next_end == 300
    w.process(100, np.zeros(100, bool))
    assert w.next_end == 600
    w.reset()
    assert w.position == 0 and w.next_end == 300


def test_length_mismatch() -> None:
    with pytest.raises(ValueError, match="flags"):
        Windower(_cfg()).process(np.zeros(10), np.zeros(9, bool))


def test_config_overrides() -> None:
    w = Windower(_cfg(), hop_samples=200)
    assert w.config.hop_samples == 200 and w.config.window_samples == 800
    assert Windower(sample_rate=8000, window_samples=100, hop_samples=50, min_speech_s=0.0).config.sample_rate == 8000
    cfg = WindowConfig()
    assert (cfg.window_s, cfg.hop_s, cfg.padding_samples) == (2.0, 0.5, 24000)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"window_samples": 100, "hop_samples": 200}, "longer than the window"),
        ({"window_samples": 0}, "positive"),
        ({"hop_samples": 1.5}, "positive"),
        ({"min_speech_s": 3.0}, "between 0 and the window length"),
        ({"min_speech_s": -0.1}, "between 0 and the window length"),
        ({"window_samples": 1000, "hop_samples": 512, "align": 512}, "not a multiple of the feature hop length 512"),
    ],
)
def test_config_validation(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(UserError) as err:
        WindowConfig(**kwargs)  # type: ignore[arg-type]
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_min_speech_samples_rounding() -> None:
    assert WindowConfig(min_speech_s=0.5).min_speech_samples == 8000
    assert (
        WindowConfig(sample_rate=22050, window_samples=44100, hop_samples=11025, min_speech_s=0.1).min_speech_samples
        == 2205
    )


def test_round_to_multiple() -> None:
    assert round_to_multiple(2.0, 16000, 512) == 62 * 512  # 62.5 hops: Python's round, half to even
    assert round_to_multiple(2.0, 16000, 512) % 512 == 0
    assert abs(round_to_multiple(2.0, 16000, 512) - 32000) <= 256
    assert round_to_multiple(0.5, 16000, 160) == 8000
    assert round_to_multiple(0.001, 16000, 512) == 512  # never zero
    assert round_to_multiple(1, 22050, 1) == 22050
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(UserError, match="positive"):
            round_to_multiple(bad, 16000, 512)
    with pytest.raises(ValueError, match="multiple"):
        round_to_multiple(1.0, 16000, 0)


def test_resample_gate_windower_chain_is_chunk_invariant() -> None:
    """The composed stages (44.1 kHz stereo -> 16 kHz -> VAD -> windows) give the same windows for any chunking."""
    from ser_live.realtime.stages.resample import Resampler
    from ser_live.realtime.stages.vad import SpeechGate

    in_rate = 44100
    t = np.arange(int(2.5 * in_rate)) / in_rate
    burst = (np.sin(2 * np.pi * 0.4 * t) > 0) * (0.3 * np.sin(2 * np.pi * 180 * t) + 0.2 * np.sin(2 * np.pi * 360 * t))
    x = np.stack([burst, 0.5 * burst], axis=1).astype(np.float32)
    cfg = WindowConfig(sample_rate=RATE, window_samples=8000, hop_samples=2000, min_speech_s=0.1, align=500)

    def chain(chunks: list[int]) -> list[Window]:
        # a steady tone from the first sample: the noise-floor margin would call it noise (off here; the margin's
        # own chunk invariance is tested in test_vad.py)
        gate = SpeechGate(sample_rate=RATE, aggressiveness=0, noise_margin_db=0.0)
        res, win = Resampler(in_rate, RATE), Windower(cfg)
        out: list[Window] = []
        i = 0
        for n in chunks:
            out += win.process(*gate.process(res.process(x[i : i + n])))
            i += n
        decided, flags = gate.process(res.flush())
        out += win.process(decided, flags)
        out += win.process(*gate.flush())
        return out + win.flush()

    whole = chain([len(x)])
    assert len(whole) == math.ceil(2.5 * RATE / 2000)
    assert any(w.classify for w in whole) and not all(w.classify for w in whole)
    assert chain(_random_chunks(len(x), 3, 2000)) == whole
    assert chain(_random_chunks(len(x), 4, 40)) == whole
