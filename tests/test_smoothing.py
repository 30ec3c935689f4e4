"""realtime/stages/smoothing.py: EMA across classified windows, off switch, reset after gaps."""

from __future__ import annotations

import numpy as np
import pytest

from ser_live.realtime.errors import UserError
from ser_live.realtime.stages.smoothing import Smoother, SmoothingConfig

A = np.array([1.0, 0.0, 0.0])
B = np.array([0.0, 1.0, 0.0])
HOP = 0.5


def test_ema_arithmetic() -> None:
    s = Smoother(SmoothingConfig(alpha=0.25, reset_after_s=2.0))
    np.testing.assert_allclose(s.process(A, 0.5), A)  # first window: as is
    np.testing.assert_allclose(s.process(B, 1.0), 0.25 * B + 0.75 * A, atol=1e-7)
    np.testing.assert_allclose(s.process(B, 1.5), 0.25 * B + 0.75 * (0.25 * B + 0.75 * A), atol=1e-7)


def test_matches_recursive_definition_and_sums_to_one() -> None:
    rng = np.random.default_rng(0)
    raw = rng.dirichlet(np.ones(7), size=20)
    s = Smoother(alpha=0.3)
    expected = raw[0]
    for i, p in enumerate(raw):
        out = s.process(p, HOP * (i + 1))
        if i:
            expected = 0.3 * p + 0.7 * expected
        np.testing.assert_allclose(out, expected, atol=1e-6)
        assert out.dtype == np.float32 and out.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(s.state, expected)


@pytest.mark.parametrize("config", [SmoothingConfig(alpha=1.0), SmoothingConfig(alpha=0.2, enabled=False)])
def test_off(config: SmoothingConfig) -> None:
    s = Smoother(config)
    assert not config.active
    s.process(A, 0.5)
    np.testing.assert_allclose(s.process(B, 1.0), B)


def test_resets_after_gap() -> None:
    s = Smoother(alpha=0.5, reset_after_s=2.0)
    s.process(A, 1.0)
    np.testing.assert_allclose(s.process(B, 3.0), 0.5 * A + 0.5 * B)  # gap of exactly 2.0 s: still averaged
    np.testing.assert_allclose(s.process(A, 5.01), A)  # gap over 2.0 s: starts afresh


def test_time_going_backwards_restarts() -> None:
    s = Smoother(alpha=0.5)
    s.process(A, 10.0)
    np.testing.assert_allclose(s.process(B, 0.5), B)


def test_reset_and_flush() -> None:
    for end in ("reset", "flush"):
        s = Smoother(alpha=0.5)
        s.process(A, 0.5)
        getattr(s, end)()
        assert s.state is None
        np.testing.assert_allclose(s.process(B, 1.0), B)


def test_size_change_is_an_error() -> None:
    s = Smoother()
    s.process(A, 0.5)
    with pytest.raises(ValueError, match="changed size"):
        s.process(np.ones(4) / 4, 1.0)


def test_does_not_alias_inputs() -> None:
    s = Smoother(alpha=0.5)
    p = A.copy()
    s.process(p, 0.5)
    p[:] = 0
    np.testing.assert_allclose(s.process(B, 1.0), 0.5 * A + 0.5 * B)


def test_defaults_and_overrides() -> None:
    cfg = SmoothingConfig()
    assert (cfg.alpha, cfg.reset_after_s, cfg.enabled) == (0.5, 2.0, True)
    assert Smoother(cfg, alpha=0.9).config.alpha == 0.9


@pytest.mark.parametrize(
    "kwargs", [{"alpha": 0.0}, {"alpha": 1.5}, {"alpha": -0.1}, {"reset_after_s": 0}, {"reset_after_s": float("nan")}]
)
def test_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(UserError):
        SmoothingConfig(**kwargs)
