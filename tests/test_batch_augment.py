"""SpecAugment masks and mixup on training batches (train/batch_augment.py): what they change, what they keep."""

from __future__ import annotations

import numpy as np
import pytest

from ser_live.realtime.errors import UserError
from ser_live.train.batch_augment import (
    MASK_VALUE,
    NO_BATCH_AUGMENT,
    SPEC_AUGMENT,
    BatchAugment,
    augment_batch,
    mix,
    mixup_pairs,
    spec_mask,
)

FRAMES, BANDS = 197, 64


def _batch(n: int = 32, seed: int = 0) -> np.ndarray:
    # values far from the mask value, so every masked cell can be found
    return (np.random.default_rng(seed).random((n, FRAMES, BANDS, 1)) + 1.0).astype(np.float32)


def test_masks_cover_whole_bands_and_whole_frames_within_the_widths() -> None:
    x = _batch()
    out = spec_mask(x, SPEC_AUGMENT, np.random.default_rng(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert np.all(x >= 1.0), "the input is not modified"
    hit = out[..., 0] == MASK_VALUE
    assert hit.any() and np.array_equal(out[~hit], x[~hit])
    for i in range(len(x)):
        bands = np.flatnonzero(hit[i].all(axis=0))  # bands masked over every frame
        frames = np.flatnonzero(hit[i].all(axis=1))  # frames masked over every band
        # every masked cell lies in a masked band or a masked frame
        expected = np.zeros((FRAMES, BANDS), bool)
        expected[:, bands] = True
        expected[frames, :] = True
        assert np.array_equal(hit[i], expected)
        assert len(bands) <= SPEC_AUGMENT.freq_masks * SPEC_AUGMENT.freq_width
        assert len(frames) <= SPEC_AUGMENT.time_masks * SPEC_AUGMENT.time_width
    # widths and places are drawn per window
    assert len({hit[i].sum() for i in range(len(x))}) > 1


def test_masks_are_repeatable_with_the_seed_and_differ_without() -> None:
    x = _batch(8)
    a = spec_mask(x, SPEC_AUGMENT, np.random.default_rng(7))
    b = spec_mask(x, SPEC_AUGMENT, np.random.default_rng(7))
    c = spec_mask(x, SPEC_AUGMENT, np.random.default_rng(8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_three_dimensional_input_and_bad_shapes() -> None:
    x = _batch(4)[..., 0]
    assert spec_mask(x, SPEC_AUGMENT, np.random.default_rng(0)).shape == x.shape
    with pytest.raises(ValueError, match="frames, bands"):
        spec_mask(x[0], SPEC_AUGMENT, np.random.default_rng(0))


def test_mixup_mixes_inputs_targets_and_weights_with_one_weight_per_window() -> None:
    n = 64
    x = _batch(n)
    y = np.eye(7, dtype=np.float32)[np.arange(n) % 7]
    w = np.linspace(0.5, 2.0, n).astype(np.float32)
    cfg = BatchAugment(mixup_alpha=0.4)
    xm, (ym, wm) = augment_batch(x, [y, w], cfg, np.random.default_rng(3))
    lam, partner = mixup_pairs(n, 0.4, np.random.default_rng(3))  # the same draws
    assert np.all((lam >= 0.5) & (lam <= 1.0)) and sorted(partner) == list(range(n))
    np.testing.assert_allclose(xm, lam[:, None, None, None] * x + (1 - lam[:, None, None, None]) * x[partner],
                               rtol=1e-6)
    np.testing.assert_allclose(ym.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(ym.max(axis=1), np.where(y.argmax(1) == y[partner].argmax(1), 1.0, lam), atol=1e-6)
    np.testing.assert_allclose(wm, lam * w + (1 - lam) * w[partner], rtol=1e-6)
    assert not np.allclose(xm, x), "mixup changed nothing"


def test_mix_is_identity_at_weight_one() -> None:
    a = np.arange(12, dtype=np.float32).reshape(4, 3)
    assert np.array_equal(mix(a, np.ones(4, np.float32), np.array([3, 2, 1, 0])), a)


def test_nothing_active_changes_nothing() -> None:
    x = _batch(4)
    y = np.eye(7, dtype=np.float32)[:4]
    assert not NO_BATCH_AUGMENT.active
    xo, (yo,) = augment_batch(x, [y], NO_BATCH_AUGMENT, np.random.default_rng(0))
    assert xo is x and yo is y
    single, _ = augment_batch(x[:1], [y[:1]], BatchAugment(mixup_alpha=0.2), np.random.default_rng(0))
    assert np.array_equal(single, x[:1]), "a batch of one has no partner"


@pytest.mark.parametrize("field,value", [("freq_masks", -1), ("time_width", -2), ("mixup_alpha", -0.1),
                                         ("mixup_alpha", float("nan"))])
def test_bad_settings_are_one_line_errors(field: str, value: float) -> None:
    with pytest.raises(UserError) as exc:
        BatchAugment(**{field: value})
    assert "\n" not in str(exc.value)
