"""realtime/stages/vad.py: webrtcvad speech gate with onset padding / hangover, exact per-sample flags, chunking."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from ser_live.realtime.errors import UserError
from ser_live.realtime.stages.vad import SpeechGate, VadConfig, to_int16

RATE = 16000
LOUD = 0.5
WEBRTC_TAIL = RATE // 4  # webrtcvad itself keeps voicing ~100-200 ms past the end of a word
SPEECH_TEXT = "hello there, how are you today"


# -- helpers ------------------------------------------------------------------------------------------------
class ScriptedGate(SpeechGate):
    """Raw decision = the frame is loud, so that the expected flags can be computed independently (build it with
    ``agc=False, noise_margin_db=0``: the rule is then exactly this one)."""

    def _classify_frame(self, frame: np.ndarray) -> bool:
        return bool(np.mean(np.abs(frame.astype(np.float64))) > 1000)


def _run(gate: SpeechGate, x: np.ndarray, chunks: list[int]) -> tuple[np.ndarray, np.ndarray]:
    outs, flags, i = [], [], 0
    for n in chunks:
        o, f = gate.process(x[i : i + n])
        assert o.shape == f.shape and f.dtype == bool
        outs.append(o)
        flags.append(f)
        i += n
    o, f = gate.flush()
    outs.append(o)
    flags.append(f)
    return np.concatenate(outs), np.concatenate(flags)


def _random_chunks(total: int, seed: int, high: int) -> list[int]:
    rng = np.random.default_rng(seed)
    sizes: list[int] = []
    while sum(sizes) < total:
        sizes.append(int(rng.integers(0, high)))
    return sizes


def _chunkings(total: int) -> list[list[int]]:
    return [[total], _random_chunks(total, 1, 50), _random_chunks(total, 2, 5000), [479, 1, 480, 481] * 4 + [total]]


def _expected_flags(voiced_frames: np.ndarray, n: int, frame: int, pad: int, hang: int) -> np.ndarray:
    """Reference rule, written directly: a voiced frame k marks [k*frame - pad, (k+1)*frame + hang)."""
    out = np.zeros(n, bool)
    for k in np.flatnonzero(voiced_frames):
        out[max(0, k * frame - pad) : min(n, (k + 1) * frame + hang)] = True
    return out


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, int, int]:
    """1 s silence + espeak-ng speech + 1 s silence at 16 kHz, faint noise; returns (x, speech_start, end)."""
    exe = shutil.which("espeak-ng")
    assert exe is not None, "espeak-ng is needed for the VAD tests (apt-get install espeak-ng)"
    wav = tmp_path_factory.mktemp("vad") / "speech.wav"
    subprocess.run([exe, "-w", str(wav), SPEECH_TEXT], check=True, capture_output=True, timeout=30)
    raw, rate = sf.read(wav, dtype="float32")
    voice = soxr.resample(raw, rate, RATE).astype(np.float32)
    loud = np.flatnonzero(np.abs(voice) > 0.02)
    voice = voice[loud[0] : loud[-1] + 1]  # trim espeak's own leading/trailing quiet
    gap = np.zeros(RATE, np.float32)
    x = np.concatenate([gap, voice, gap])
    x += np.random.default_rng(0).normal(0, 1e-4, len(x)).astype(np.float32)
    return x, RATE, RATE + len(voice)


# -- the rule, exactly ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("frame_ms", "pad_ms", "hangover_ms"),
    [(30, 150, 300), (10, 0, 0), (20, 45.5, 7), (30, 0, 500), (10, 1000, 0)],
)
def test_flags_follow_padding_hangover_rule_exactly(frame_ms: int, pad_ms: float, hangover_ms: float) -> None:
    cfg = VadConfig(sample_rate=RATE, frame_ms=frame_ms, pad_ms=pad_ms, hangover_ms=hangover_ms, agc=False,
                    noise_margin_db=0.0)
    frame = cfg.frame_samples
    rng = np.random.default_rng(frame_ms)
    pattern = rng.random(60) < 0.25
    pattern[[0, 1, 30, 31, 32]] = [True, False, True, True, False]
    x = np.repeat(np.where(pattern, LOUD, 0.0), frame).astype(np.float32)
    x = np.concatenate([x, np.full(frame // 2, LOUD, np.float32)])  # loud partial frame: non-speech by rule
    expected = _expected_flags(pattern, len(x), frame, cfg.pad_samples, cfg.hangover_samples)
    for chunks in _chunkings(len(x)):
        out, flags = _run(ScriptedGate(cfg), x, chunks)
        np.testing.assert_array_equal(out, x)
        np.testing.assert_array_equal(flags, expected)


def test_decision_delay_is_pad_plus_partial_frame() -> None:
    cfg = VadConfig(sample_rate=RATE, frame_ms=30, pad_ms=150, hangover_ms=300, agc=False, noise_margin_db=0.0)
    frame, pad = cfg.frame_samples, cfg.pad_samples
    gate = ScriptedGate(cfg)
    x = np.full(10 * frame + 100, LOUD, np.float32)
    decided = 0
    for i in range(0, len(x), 333):
        out, _ = gate.process(x[i : i + 333])
        decided += len(out)
        received = min(i + 333, len(x))
        assert decided == max(0, (received // frame) * frame - pad)
        assert gate.delay_samples == received - decided
    assert gate.frames == 10 and gate.speech_frames == 10
    assert gate.last_raw and gate.is_speech
    out, _ = gate.flush()
    assert decided + len(out) == len(x)
    assert gate.frames == 0 and gate.delay_samples == 0  # flush leaves it ready for a new stream


def test_is_speech_follows_hangover() -> None:
    cfg = VadConfig(sample_rate=RATE, frame_ms=10, pad_ms=0, hangover_ms=100, agc=False, noise_margin_db=0.0)
    gate = ScriptedGate(cfg)
    frame = cfg.frame_samples
    gate.process(np.full(frame, LOUD, np.float32))
    assert gate.is_speech and gate.last_raw
    gate.process(np.zeros(9 * frame, np.float32))  # 90 ms after the voiced frame: within hangover
    assert gate.is_speech and not gate.last_raw
    gate.process(np.zeros(2 * frame, np.float32))
    assert not gate.is_speech
    assert gate.latest_voiced_frame == 0


# -- real webrtcvad ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("aggressiveness", [0, 1, 2, 3])
def test_digital_silence_is_not_speech(aggressiveness: int) -> None:
    x = np.zeros(2 * RATE, np.float32)
    out, flags = _run(SpeechGate(sample_rate=RATE, aggressiveness=aggressiveness), x, [len(x)])
    assert len(out) == len(x)
    assert not flags.any()


@pytest.mark.parametrize("aggressiveness", [2, 3])
def test_faint_noise_is_not_speech(aggressiveness: int) -> None:
    x = np.random.default_rng(5).normal(0, 1e-4, 2 * RATE).astype(np.float32)
    _, flags = _run(SpeechGate(aggressiveness=aggressiveness), x, [len(x)])
    assert not flags.any()


def test_speech_detected_where_it_is(speech: tuple[np.ndarray, int, int]) -> None:
    x, start, end = speech
    cfg = VadConfig(sample_rate=RATE, aggressiveness=2)
    out, flags = _run(SpeechGate(cfg), x, [len(x)])
    np.testing.assert_array_equal(out, x)
    frame, pad, hang = cfg.frame_samples, cfg.pad_samples, cfg.hangover_samples
    # nothing flagged well before the speech or after it has died out
    assert not flags[: start - pad - frame].any()
    assert not flags[end + hang + WEBRTC_TAIL :].any()
    # most of the speech is flagged, and the padding reaches before its onset
    assert flags[start:end].mean() > 0.9
    first = int(np.flatnonzero(flags)[0])
    assert first <= start - pad + frame
    last = int(np.flatnonzero(flags)[-1])
    assert last >= end + hang - 2 * frame


def test_padding_and_hangover_widen_raw_regions(speech: tuple[np.ndarray, int, int]) -> None:
    x, _, _ = speech
    bare = VadConfig(sample_rate=RATE, aggressiveness=2, pad_ms=0, hangover_ms=0)
    wide = VadConfig(sample_rate=RATE, aggressiveness=2, pad_ms=150, hangover_ms=300)
    _, raw = _run(SpeechGate(bare), x, [len(x)])
    _, flags = _run(SpeechGate(wide), x, [len(x)])
    assert raw.any()
    expected = np.zeros(len(x), bool)
    for a, b in _runs(raw):  # raw runs are whole voiced frames; widen each by pad before, hangover after
        expected[max(0, a - wide.pad_samples) : b + wide.hangover_samples] = True
    np.testing.assert_array_equal(flags, expected)
    assert flags.sum() > raw.sum()


def test_chunk_invariance_with_webrtcvad(speech: tuple[np.ndarray, int, int]) -> None:
    x, _, _ = speech
    gate = SpeechGate(sample_rate=RATE)
    ref_out, ref_flags = _run(gate, x, [len(x)])
    for chunks in _chunkings(len(x))[1:]:
        out, flags = _run(gate, x, chunks)  # the same gate: flush() resets it
        np.testing.assert_array_equal(out, ref_out)
        np.testing.assert_array_equal(flags, ref_flags)
    part = x[RATE - 6000 : RATE + 4000]  # 1-sample chunks over the onset
    _, whole = _run(SpeechGate(sample_rate=RATE), part, [len(part)])
    _, single = _run(SpeechGate(sample_rate=RATE), part, [1] * len(part))
    np.testing.assert_array_equal(single, whole)
    assert whole.any() and not whole.all()


def test_reset_forgets_history(speech: tuple[np.ndarray, int, int]) -> None:
    x, _, _ = speech
    fresh = _run(SpeechGate(), np.zeros(RATE, np.float32), [RATE])[1]
    gate = SpeechGate()
    gate.process(x[: 2 * RATE])
    gate.reset()
    np.testing.assert_array_equal(_run(gate, np.zeros(RATE, np.float32), [RATE])[1], fresh)


def test_higher_aggressiveness_flags_no_more_frames(speech: tuple[np.ndarray, int, int]) -> None:
    x, _, _ = speech
    counts = []
    for a in (0, 3):
        gate = SpeechGate(aggressiveness=a)
        gate.process(x)
        counts.append(gate.speech_frames)
    assert counts[1] <= counts[0]


@pytest.mark.parametrize(("rate", "frame_ms"), [(8000, 10), (32000, 20), (48000, 30)])
def test_other_rates(rate: int, frame_ms: int) -> None:
    t = np.arange(rate) / rate
    x = np.concatenate([np.zeros(rate // 2), 0.3 * np.sin(2 * np.pi * 200 * t) * (1 + np.sin(2 * np.pi * 3 * t))])
    gate = SpeechGate(sample_rate=rate, frame_ms=frame_ms, aggressiveness=0)
    out, flags = _run(gate, x.astype(np.float32), [len(x)])
    assert len(out) == len(x)
    assert not flags[: rate // 4].any()


# -- configuration ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"sample_rate": 44100}, "8000, 16000, 32000, 48000"),
        ({"sample_rate": 16000.0}, "8000, 16000, 32000, 48000"),
        ({"frame_ms": 25}, "10, 20, 30"),
        ({"aggressiveness": 4}, "0..3"),
        ({"aggressiveness": -1}, "0..3"),
        ({"aggressiveness": 1.5}, "0..3"),
        ({"aggressiveness": True}, "0..3"),
        ({"pad_ms": -1}, "pad_ms"),
        ({"hangover_ms": float("nan")}, "hangover_ms"),
        ({"noise_margin_db": -3.0}, "noise margin"),
        ({"noise_window_s": 0.0}, "noise window"),
    ],
)
def test_config_validation(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(UserError) as err:
        VadConfig(**kwargs)  # type: ignore[arg-type]
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_config_defaults_and_overrides() -> None:
    cfg = VadConfig()
    assert (cfg.sample_rate, cfg.frame_ms, cfg.aggressiveness, cfg.pad_ms, cfg.hangover_ms) == (16000, 30, 2, 150, 300)
    assert (cfg.frame_samples, cfg.pad_samples, cfg.hangover_samples) == (480, 2400, 4800)
    assert SpeechGate(cfg, aggressiveness=3).config.aggressiveness == 3
    assert SpeechGate(sample_rate=8000).config.frame_samples == 240
    with pytest.raises(UserError):
        SpeechGate(cfg, aggressiveness=9)


def test_to_int16_clips_safely() -> None:
    x = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 3.0, -3.0, np.nan, np.inf], np.float32)
    np.testing.assert_array_equal(to_int16(x), [0, 16384, -16384, 32767, -32768, 32767, -32768, 0, 32767])


def test_mono_only() -> None:
    with pytest.raises(ValueError, match="mono"):
        SpeechGate().process(np.zeros((10, 2), np.float32))
    out, flags = SpeechGate().process(np.zeros((3000, 1), np.float32))
    assert out.ndim == 1 and len(out) == len(flags) == 480 * 6 - 2400


def test_helper_runs() -> None:
    assert _runs(np.array([0, 1, 1, 0, 1], bool)) == [(1, 3), (4, 5)]
    assert _expected_flags(np.array([False, True]), 10, 3, 1, 2).tolist() == [0, 0, 1, 1, 1, 1, 1, 1, 0, 0]


def test_fixture_is_real_speech(speech: tuple[np.ndarray, int, int]) -> None:
    _, start, end = speech
    assert end - start > RATE  # over a second of speech
    assert Path(shutil.which("espeak-ng") or "").name == "espeak-ng"


# -- level and noise: the noise-floor margin ------------------------------------------------------------------
def _level(x: np.ndarray, dbfs: float) -> np.ndarray:
    """``x`` scaled so that its loud part (|x| > 0.01 of its peak) has an RMS of ``dbfs``."""
    loud = x[np.abs(x) > 0.01 * np.max(np.abs(x))]
    return (x * np.float32(10 ** (dbfs / 20) / np.sqrt(np.mean(loud.astype(np.float64) ** 2)))).astype(np.float32)


def _pink(n: int, seed: int) -> np.ndarray:
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
    y = np.fft.irfft(spectrum, n)
    return (y / np.std(y)).astype(np.float32)


@pytest.mark.parametrize("noise_dbfs", [-30.0, -20.0])
def test_loud_stationary_noise_does_not_open_the_gate(noise_dbfs: float) -> None:
    noise = np.random.default_rng(2).standard_normal(4 * RATE).astype(np.float32) * np.float32(10 ** (noise_dbfs / 20))
    _, plain = _run(SpeechGate(noise_margin_db=0.0), noise, [len(noise)])
    _, gated = _run(SpeechGate(), noise, [len(noise)])
    if noise_dbfs >= -20:
        assert plain.mean() > 0.9  # webrtcvad alone calls loud white noise speech ...
    assert gated.mean() < 0.02  # ... the noise-floor margin does not


def test_quiet_speech_is_still_detected(speech: tuple[np.ndarray, int, int]) -> None:
    x, start, end = speech
    for dbfs in (-45.0, -55.0):
        _, flags = _run(SpeechGate(), _level(x, dbfs), [len(x)])
        assert flags[start:end].mean() > 0.9, dbfs


def test_speech_in_loud_noise_is_detected_and_the_noise_before_it_is_not(speech: tuple[np.ndarray, int, int]) -> None:
    x, start, end = speech
    lead = 3 * RATE
    voice = np.concatenate([np.zeros(lead, np.float32), _level(x, -20.0)])
    noisy = voice + _pink(len(voice), 3) * np.float32(10 ** (-30.0 / 20))  # 10 dB SNR, noise at -30 dBFS
    _, plain = _run(SpeechGate(noise_margin_db=0.0), noisy, [len(noisy)])
    gate = SpeechGate()
    _, flags = _run(gate, noisy, _random_chunks(len(noisy), 4, 3000))
    assert plain[: lead - RATE].mean() > 0.5  # without the margin the noise alone opens the gate
    assert flags[: lead - RATE].mean() < 0.05
    assert flags[lead + start : lead + end].mean() > 0.9
    _, whole = _run(SpeechGate(), noisy, [len(noisy)])
    np.testing.assert_array_equal(flags, whole)  # the floor estimate does not depend on chunking


def test_noise_floor_tracks_the_quietest_recent_frame() -> None:
    gate = SpeechGate()
    assert gate.noise_floor_dbfs is None
    quiet = np.full(RATE, 10 ** (-60 / 20), np.float32) * np.sign(np.sin(np.arange(RATE)))
    loud = np.full(4 * RATE, 10 ** (-20 / 20), np.float32) * np.sign(np.sin(np.arange(4 * RATE)))
    gate.process(quiet)
    assert gate.noise_floor_dbfs == pytest.approx(-60.0, abs=0.5)
    gate.process(loud)  # after the 3 s window the quiet second has left the estimate
    assert gate.noise_floor_dbfs == pytest.approx(-20.0, abs=0.5)
    gate.reset()
    assert gate.noise_floor_dbfs is None


def test_agc_makes_the_decisions_independent_of_a_constant_gain(speech: tuple[np.ndarray, int, int]) -> None:
    """webrtcvad alone decides differently on the same speech 20 dB quieter; with the AGC the flags are the same."""
    x, _, _ = speech
    quiet = _level(x, -35.0)
    results = {}
    for agc in (False, True):
        flags = []
        for db in (0.0, -20.0, -10.0, 10.0):
            _, f = _run(SpeechGate(agc=agc), quiet * np.float32(10 ** (db / 20)), _random_chunks(len(x), 6, 4000))
            flags.append(f)
        results[agc] = all(np.array_equal(flags[0], f) for f in flags[1:])
        if agc:
            assert flags[0].any()
    assert results[True]
    assert not results[False]  # the property the AGC adds is not there without it
