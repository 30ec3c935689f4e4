"""Input normalisation (realtime/stages/normalize.py): property tests, not figures.

- A constant gain does not move the model input: exactly by construction for the stage, and within float32
  rounding end to end (espeak-ng speech scaled by -20 ... +20 dB, streaming and offline paths).
- The session statistics: streaming == offline for any chunk size, reset between sessions, a fixed channel
  (a tilt over the bands) adapted away, the first window sane.
- The training path (sessions per speaker, shuffled) is the live stage applied to the same windows.
- A model with the new input gives the same probabilities at three input levels; an old model is unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ser_live.realtime.api import EmotionRecognizer
from ser_live.realtime.errors import UserError
from ser_live.realtime.model import load_model
from ser_live.realtime.stages.features import FeatureExtractor, get_preset
from ser_live.realtime.stages.normalize import (
    ABS_FLOOR_DB,
    DEFAULT_FLOOR_DB,
    MODE_NONE,
    MODE_SESSION,
    MODE_WINDOW,
    InputNormalizer,
    InputNormConfig,
    fit_prior,
    normalize_session,
)
from ser_live.realtime.stages.pipeline import FeaturePipeline, PipelineConfig, WindowFeatures
from tests.audio_fixtures import SpeechClip, speech_clip
from tests.tiny_model import make_tiny_model

PRESET = get_preset("logmel")
N_BANDS = PRESET.n_mels
HOP_S = 0.5
GAINS_DB = (-20.0, -10.0, 10.0, 20.0)
CHUNKS_S = (0.001, 0.03, 1.0, None)
# The stage is exact up to float64 -> float32 rounding of values of order 100 dB.
STAGE_ATOL_DB = 1e-4
# End to end the STFT runs in float32 on samples scaled by up to 10x: relative rounding ~1e-6 of the power,
# i.e. ~1e-5 dB, amplified near the absolute floor; 0.01 dB is far below anything a model resolves.
PIPELINE_ATOL_DB = 1e-2
# Probabilities of a model over inputs that agree to PIPELINE_ATOL_DB.
PROBS_ATOL = 1e-3
BASE_LEVEL_DBFS = -26.0


def logmel_windows(n: int, seed: int = 0, frames: int = 40) -> np.ndarray:
    """Log-mel-like windows (dB): a speech-level band shape, per-frame loudness, noise; some silent frames."""
    rng = np.random.default_rng(seed)
    shape = -0.3 * np.arange(N_BANDS)
    loud = rng.uniform(-10, 10, size=(n, frames, 1))
    x = 20 + shape + loud + rng.normal(0, 3, size=(n, frames, N_BANDS))
    x[:, :3] = ABS_FLOOR_DB  # digital silence (padding) at the features' floor
    return x.astype(np.float32)


def session_config(**kwargs: float) -> InputNormConfig:
    prior = fit_prior(logmel_windows(20, seed=99))
    return InputNormConfig(mode=MODE_SESSION, **kwargs).with_prior(prior.tolist())


def gain(x: np.ndarray, db: float) -> np.ndarray:
    """A gain on a log-mel window: every value moves by ``db``, the floor stays the floor."""
    return np.where(x <= ABS_FLOOR_DB, x, x + db).astype(np.float32)


@pytest.mark.parametrize("mode", [MODE_WINDOW, MODE_SESSION])
@pytest.mark.parametrize("db", GAINS_DB)
def test_stage_output_does_not_move_with_gain(mode: str, db: float) -> None:
    config = session_config() if mode == MODE_SESSION else InputNormConfig(mode=mode)
    windows = logmel_windows(6)
    plain = normalize_session(windows, config, HOP_S)
    scaled = normalize_session(np.stack([gain(w, db) for w in windows]), config, HOP_S)
    np.testing.assert_allclose(scaled, plain, atol=STAGE_ATOL_DB)
    assert np.all(plain[:, :3] == pytest.approx(DEFAULT_FLOOR_DB if mode == MODE_WINDOW else plain[:, :3]))
    assert np.abs(plain[:, 3:]).max() < -DEFAULT_FLOOR_DB  # speech is well above the floor


def test_none_mode_is_the_identity_and_window_mode_references_speech_frames() -> None:
    window = logmel_windows(1)[0]
    assert InputNormalizer(InputNormConfig(), N_BANDS, HOP_S).process(window) is window
    out = InputNormalizer(InputNormConfig(mode=MODE_WINDOW), N_BANDS, HOP_S).process(window)
    assert np.all(out[:3] == DEFAULT_FLOOR_DB)  # padding frames read as the floor ...
    power_mean_db = 10 * np.log10(np.mean(10 ** (out[3:].astype(np.float64) / 10)))
    assert abs(power_mean_db) < 1e-3  # ... and the speech frames are referenced to their own (power) mean


def test_session_first_window_is_sane_and_a_fixed_channel_is_adapted_away() -> None:
    config = session_config(time_constant_s=5.0)
    windows = logmel_windows(80, seed=1)
    tilt = np.linspace(-6.0, 6.0, N_BANDS)  # a microphone with 12 dB more treble than bass
    tilted = np.where(windows <= ABS_FLOOR_DB, windows, windows + tilt).astype(np.float32)
    clean = normalize_session(windows, config, HOP_S)
    through_channel = normalize_session(tilted, config, HOP_S)
    speech = (slice(None), slice(3, None))
    first_error = np.abs(through_channel[0][speech[1]] - clean[0][speech[1]]).mean()
    last_error = np.abs(through_channel[-1][speech[1]] - clean[-1][speech[1]]).mean()
    assert first_error > 2.0  # the first window still carries the channel (prior = training statistics) ...
    assert last_error < 0.1 * first_error  # ... after 40 s of speech (8 time constants) it is gone
    assert np.isfinite(clean).all() and np.abs(clean[0][speech[1]]).max() < 60  # no wild first window


def test_session_statistics_reset_between_sessions() -> None:
    config = session_config()
    norm = InputNormalizer(config, N_BANDS, HOP_S)
    a, b = logmel_windows(10, seed=2), logmel_windows(10, seed=3)
    first_a = [norm.process(w) for w in a]
    after_a = norm.process(b[0])
    norm.reset()
    assert norm.windows_seen == 0 and norm.session_level is None
    np.testing.assert_array_equal(norm.session_shape, np.asarray(config.prior))
    fresh_b = norm.process(b[0])
    np.testing.assert_array_equal(fresh_b, InputNormalizer(config, N_BANDS, HOP_S).process(b[0]))
    assert not np.allclose(after_a, fresh_b)  # the statistics of session a had moved the output
    np.testing.assert_array_equal(np.stack(norm.run(a)), np.stack(first_a))


def test_config_round_trip_validation_and_old_metadata() -> None:
    config = session_config()
    assert InputNormConfig.from_dict(config.to_dict()) == config
    assert InputNormConfig.from_dict(None).mode == MODE_NONE
    assert InputNormConfig.from_dict({}).mode == MODE_NONE
    with pytest.raises(UserError, match="not one of"):
        InputNormConfig(mode="loudness")
    with pytest.raises(UserError, match="newer ser-live"):
        InputNormConfig.from_dict({"mode": "window", "future": 1})
    with pytest.raises(UserError, match="prior of 64 bands"):
        InputNormalizer(InputNormConfig(mode=MODE_SESSION, prior=(0.0,) * 3), N_BANDS, HOP_S)
    with pytest.raises(UserError, match="log-mel"):
        FeaturePipeline(PipelineConfig(preset=get_preset("seed180")), 16000, InputNormConfig(mode=MODE_WINDOW))


# ------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> SpeechClip:
    c = speech_clip(tmp_path_factory.mktemp("speech"), lead_s=0.7, tail_s=0.7)
    rms = float(np.sqrt(np.mean(c.samples.astype(np.float64) ** 2)))
    level = np.float32(10 ** (BASE_LEVEL_DBFS / 20) / rms)
    return SpeechClip(c.samples * level, c.sample_rate, c.speech_start_s, c.speech_end_s)


def pipeline_config() -> PipelineConfig:
    return PipelineConfig(preset=PRESET, window_s=2.0, hop_s=HOP_S)


def by_window(windows: list[WindowFeatures]) -> dict[tuple[int, int], np.ndarray]:
    return {(w.window.start, w.window.end): w.features for w in windows if w.features is not None}


@pytest.mark.parametrize("mode", [MODE_WINDOW, MODE_SESSION])
def test_streaming_input_does_not_move_with_gain(clip: SpeechClip, mode: str) -> None:
    config = session_config() if mode == MODE_SESSION else InputNormConfig(mode=mode)
    reference = by_window(FeaturePipeline(pipeline_config(), clip.sample_rate, config).run(clip.samples))
    assert len(reference) >= 3
    for db in GAINS_DB:
        scaled = clip.samples * np.float32(10 ** (db / 20))
        got = by_window(FeaturePipeline(pipeline_config(), clip.sample_rate, config).run(scaled))
        # the speech gate's AGC makes its decisions gain-independent: the same windows are classified
        assert set(got) == set(reference), f"{db:+} dB: the speech gate classified other windows"
        for key in reference:
            np.testing.assert_allclose(got[key], reference[key], atol=PIPELINE_ATOL_DB, err_msg=f"{db:+} dB {key}")


def test_the_wide_preset_keeps_quiet_speech_exact_where_the_old_floor_does_not(clip: SpeechClip) -> None:
    """Speech at about -60 dBFS, then 20 dB quieter: with logmel's -100 dB floor the quiet bins hit it and the
    level-referenced windows move; with logmel_wide's -200 dB floor they do not."""
    quiet = clip.samples * np.float32(10 ** ((-60.0 - BASE_LEVEL_DBFS) / 20))
    errors = {}
    for name in ("logmel", "logmel_wide"):
        cfg = PipelineConfig(preset=get_preset(name), window_s=2.0, hop_s=HOP_S)
        norm = InputNormConfig(mode=MODE_WINDOW)
        a = by_window(FeaturePipeline(cfg, clip.sample_rate, norm).run(quiet))
        b = by_window(FeaturePipeline(cfg, clip.sample_rate, norm).run(quiet * np.float32(0.1)))
        assert set(a) == set(b) and a
        errors[name] = max(float(np.abs(a[k] - b[k]).max()) for k in a)
    assert errors["logmel_wide"] < PIPELINE_ATOL_DB
    assert errors["logmel"] > 1.0


def test_offline_input_does_not_move_with_gain(clip: SpeechClip) -> None:
    """The reference extractor on a window of audio, then the stage: the same invariance without streaming."""
    import soxr

    audio = soxr.resample(clip.samples, clip.sample_rate, PRESET.sample_rate).astype(np.float32)
    start = int(clip.speech_start_s * PRESET.sample_rate)
    segment = audio[start : start + pipeline_config().window_samples]
    extractor = FeatureExtractor(PRESET)
    norm = InputNormalizer(InputNormConfig(mode=MODE_WINDOW), N_BANDS, HOP_S)
    reference = norm.process(extractor.window_features(segment))
    for db in GAINS_DB:
        got = norm.process(extractor.window_features(segment * np.float32(10 ** (db / 20))))
        np.testing.assert_allclose(got, reference, atol=PIPELINE_ATOL_DB)


@pytest.mark.parametrize("chunk_s", CHUNKS_S)
def test_session_streaming_equals_offline_for_any_chunk_size(clip: SpeechClip, chunk_s: float | None) -> None:
    """The pipeline with the stage == the raw windows normalised afterwards as one session (the training path)."""
    config = session_config()
    samples = np.concatenate([clip.samples, clip.samples * np.float32(0.3), clip.samples])  # one speaker, 3 clips
    raw = FeaturePipeline(pipeline_config(), clip.sample_rate).run(samples)
    raw_classified = [w for w in raw if w.features is not None]
    offline = normalize_session(np.stack([w.features for w in raw_classified]), config, HOP_S)
    block = None if chunk_s is None else max(1, int(chunk_s * clip.sample_rate))
    streamed = [w for w in FeaturePipeline(pipeline_config(), clip.sample_rate, config).run(samples, block)
                if w.features is not None]
    assert [(w.window.start, w.window.end) for w in streamed] == [(w.window.start, w.window.end)
                                                                 for w in raw_classified]
    np.testing.assert_allclose(np.stack([w.features for w in streamed]), offline, atol=1e-3)


def test_training_sessions_are_per_speaker_shuffled_and_independent() -> None:
    from ser_live.train.corpora import Record
    from ser_live.train.dataset import ClipExamples, normalize_clips, session_order

    config = session_config()

    def clips_of(speaker: str, n: int, seed: int) -> list[ClipExamples]:
        return [ClipExamples(Record(Path(f"{speaker}-{i}.wav"), "sad", speaker, "x"), logmel_windows(2, seed + i))
                for i in range(n)]

    a, b = clips_of("x:A", 5, 0), clips_of("x:B", 4, 10)
    sessions = session_order(a + b, seed=1)
    assert sorted(map(sorted, sessions)) == [[0, 1, 2, 3, 4], [5, 6, 7, 8]]
    assert sessions == session_order(a + b, seed=1) and sessions != session_order(a + b, seed=2)
    together = normalize_clips(a + b, config, HOP_S, seed=1)
    other_b = normalize_clips(a + clips_of("x:B", 4, 50), config, HOP_S, seed=1)
    for i in range(5):  # speaker A's session does not see speaker B's clips
        np.testing.assert_array_equal(together[i].features, other_b[i].features)
    restarted = session_order(a + b, seed=1, restart=0.5)
    assert sorted(i for session in restarted for i in session) == list(range(9))  # every clip once
    assert len(restarted) > 2 and restarted == session_order(a + b, seed=1, restart=0.5)
    assert all({(a + b)[i].record.speaker for i in session} in ({"x:A"}, {"x:B"}) for session in restarted)
    assert len(session_order(a + b, seed=1, restart=1.0)) == 9  # every clip its own session
    order = session_order(a + b, seed=1)[0]
    live = InputNormalizer(config, N_BANDS, HOP_S)
    for i in order:  # the session is the live stage over the clips in their playing order
        expected = np.stack([live.process(w) for w in a[i].features])
        np.testing.assert_allclose(together[i].features, expected, atol=1e-6)


@pytest.mark.parametrize("mode", [MODE_WINDOW, MODE_SESSION])
def test_model_probabilities_do_not_follow_the_input_level(clip: SpeechClip, tmp_path: Path, mode: str) -> None:
    config = session_config() if mode == MODE_SESSION else InputNormConfig(mode=mode)
    path = make_tiny_model(tmp_path / f"{mode}.onnx", preset_name="logmel",
                           metadata_overrides={"input_normalization": config.to_dict()})
    model = load_model(path)
    assert model.info.input_norm == config
    rec = EmotionRecognizer(model)
    probs = []
    for level in (-30.0, -20.0, -10.0):
        scaled = clip.samples * np.float32(10 ** ((level - BASE_LEVEL_DBFS) / 20))
        probs.append(np.array(list(rec.predict(scaled, clip.sample_rate).probs.values())))
    for p in probs[1:]:
        np.testing.assert_allclose(p, probs[0], atol=PROBS_ATOL)
    old = EmotionRecognizer(load_model(make_tiny_model(tmp_path / "old.onnx", preset_name="logmel")))
    loud, quiet = (np.array(list(old.predict(clip.samples * np.float32(g), clip.sample_rate).probs.values()))
                   for g in (3.0, 0.1))
    assert np.abs(loud - quiet).max() > 10 * PROBS_ATOL  # without the stage the level does move the verdict


def test_bad_input_normalization_metadata_is_one_line(tmp_path: Path) -> None:
    bad = make_tiny_model(tmp_path / "bad.onnx", preset_name="logmel",
                          metadata_overrides={"input_normalization": {"mode": "loudest"}})
    with pytest.raises(UserError, match=r"bad\.onnx: input normalisation 'loudest' is not one of"):
        load_model(bad)
    short = make_tiny_model(tmp_path / "short.onnx", preset_name="logmel",
                            metadata_overrides={"input_normalization": {"mode": "session", "prior": [0.0, 1.0]}})
    model = load_model(short)
    with pytest.raises(UserError, match="prior of 64 bands"):
        EmotionRecognizer(model).predict(np.zeros(16000, np.float32), 16000)
