"""Augmentation of training batches in the feature domain: SpecAugment masks and mixup (issue 19's levers).

Unlike :mod:`train.augment`, which makes extra *audio* copies before feature extraction (and caches them), these run
on every batch as it is drawn, on the standardised model input (``frames x bands``, mean 0): each epoch sees other
masks and other pairs, and nothing is cached. Numpy only; a generator seeded once per run makes it repeatable.

- **SpecAugment** (Park et al. 2019, without time warping): per window, ``freq_masks`` bands of up to
  ``freq_width`` mel bands and ``time_masks`` spans of up to ``time_width`` frames are set to 0, the training mean
  after standardisation. Widths are drawn uniformly from 0 to the maximum, positions uniformly.
- **mixup** (Zhang et al. 2018): each window is mixed with a random partner of the same batch,
  ``x = l*x_i + (1-l)*x_j`` with ``l ~ Beta(alpha, alpha)`` folded to ``l >= 0.5`` (the window stays mostly
  itself), and its targets and sample weights are mixed with the same ``l``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np

from ser_live.realtime.errors import UserError

logger = logging.getLogger(__name__)

DEFAULT_FREQ_MASKS = 2
"""Frequency masks per window with ``--specaugment``."""
DEFAULT_FREQ_WIDTH = 8
"""Widest frequency mask, mel bands (of logmel_wide's 64)."""
DEFAULT_TIME_MASKS = 2
"""Time masks per window with ``--specaugment``."""
DEFAULT_TIME_WIDTH = 20
"""Widest time mask, frames (10 ms each; a 2 s window has 197)."""
MASK_VALUE = 0.0
"""What a mask writes: the training mean, since the input is standardised."""
TIME_AXIS = 1
BAND_AXIS = 2


@dataclass(frozen=True)
class BatchAugment:
    """Per-batch augmentation settings; the defaults do nothing (see :data:`SPEC_AUGMENT`)."""

    freq_masks: int = 0
    freq_width: int = DEFAULT_FREQ_WIDTH
    time_masks: int = 0
    time_width: int = DEFAULT_TIME_WIDTH
    mixup_alpha: float = 0.0

    def __post_init__(self) -> None:
        for name in ("freq_masks", "freq_width", "time_masks", "time_width"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} must not be negative, got {getattr(self, name)}")
        if not self.mixup_alpha >= 0:
            raise UserError(f"--mixup must be 0 (off) or positive, got {self.mixup_alpha}; pass e.g. --mixup 0.2")

    @property
    def masks(self) -> bool:
        return (self.freq_masks > 0 and self.freq_width > 0) or (self.time_masks > 0 and self.time_width > 0)

    @property
    def active(self) -> bool:
        return self.masks or self.mixup_alpha > 0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


NO_BATCH_AUGMENT = BatchAugment()
SPEC_AUGMENT = BatchAugment(freq_masks=DEFAULT_FREQ_MASKS, time_masks=DEFAULT_TIME_MASKS)


def _span_mask(n: int, size: int, count: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, size)`` booleans: for each row, ``count`` spans of 0..``width`` positions, placed uniformly."""
    if count == 0 or width == 0 or size == 0:
        return np.zeros((n, size), dtype=bool)
    widths = rng.integers(0, min(width, size) + 1, size=(n, count))
    starts = (rng.random((n, count)) * (size - widths + 1)).astype(np.int64)
    pos = np.arange(size)
    return ((pos >= starts[..., None]) & (pos < (starts + widths)[..., None])).any(axis=1)


def spec_mask(x: np.ndarray, cfg: BatchAugment, rng: np.random.Generator) -> np.ndarray:
    """A masked copy of ``x`` (``(n, frames, bands)`` or ``(n, frames, bands, 1)``); ``x`` is left as it was."""
    if x.ndim not in (3, 4):
        raise ValueError(f"expected (n, frames, bands[, 1]) features, got shape {x.shape}")
    n, frames, bands = x.shape[:3]
    out = x.copy()
    time = _span_mask(n, frames, cfg.time_masks, cfg.time_width, rng)
    freq = _span_mask(n, bands, cfg.freq_masks, cfg.freq_width, rng)
    hit = time[:, :, None] | freq[:, None, :]
    out[hit] = MASK_VALUE
    return out


def mixup_pairs(n: int, alpha: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Mixing weights ``l`` (each in [0.5, 1]) and partner indices for a batch of ``n``."""
    lam = rng.beta(alpha, alpha, size=n)
    return np.maximum(lam, 1.0 - lam).astype(np.float32), rng.permutation(n)


def mix(a: np.ndarray, lam: np.ndarray, partner: np.ndarray) -> np.ndarray:
    """``lam * a + (1 - lam) * a[partner]`` along the first axis (``lam`` broadcast over the others)."""
    shape = (len(lam),) + (1,) * (a.ndim - 1)
    weight = lam.reshape(shape)
    return (weight * a + (1.0 - weight) * a[partner]).astype(a.dtype, copy=False)


def augment_batch(
    x: np.ndarray, targets: list[np.ndarray], cfg: BatchAugment, rng: np.random.Generator
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Masks, then mixup: the batch's input and its per-window arrays (targets, sample weights) mixed alike."""
    if cfg.masks:
        x = spec_mask(x, cfg, rng)
    if cfg.mixup_alpha > 0 and len(x) > 1:
        lam, partner = mixup_pairs(len(x), cfg.mixup_alpha, rng)
        x = mix(x, lam, partner)
        targets = [mix(t, lam, partner) for t in targets]
    return x, targets
