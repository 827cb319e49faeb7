"""Difference keying: the classical baseline a background-matting model is judged against.

Given the frame ``src`` and the background plate ``bgr`` (float HxWx3 in [0, 1]), alpha is a soft ramp
of how far each pixel is from the plate::

    d     = || G_sigma * src - G_sigma * bgr ||_2      Euclidean RGB distance, after a Gaussian blur
    alpha = clip((d - low) / (high - low), 0, 1)      0 below ``low``, 1 above ``high``, linear between

The blur (``blur_sigma`` pixels, 0 for none) averages away the per-pixel noise of the plate, which
the test-time protocol (supplement D.2) adds to it, at the price of softer edges. The foreground is
unmixed from the matting equation, ``fgr = (src - (1 - alpha) bgr) / alpha`` (``src`` where alpha is 0).

:func:`tune_keyer` picks ``low`` and ``high`` (and, from a few candidates, ``blur_sigma``) that
minimise the mean SAD, in the evaluation's own terms: predictions rounded to 8 bits, SAD summed over
the unknown region of the trimap generated from the ground truth, in thousands. It reads every
pixel once per blur into a histogram of (distance, ground-truth level), so every threshold pair is
scored without keying the images again. :class:`DifferenceKeyer` runs under
``protocol.evaluate_model`` like a model. numpy and scipy only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from bgm_jax.evaluation import metrics

MAX_DISTANCE = float(np.sqrt(3.0))  # Euclidean distance between black and white
DISTANCE_BINS = 8192  # histogram resolution of the tuner: bins of 0.00021
DEFAULT_THRESHOLDS = tuple(np.round(np.arange(0.0, 1.0001, 0.005), 4))
DEFAULT_BLUR_SIGMAS = (0.0, 1.0, 2.0, 3.0)


def colour_distance(src: np.ndarray, bgr: np.ndarray, blur_sigma: float = 0.0) -> np.ndarray:
    """Per-pixel Euclidean RGB distance (float32 HxW in [0, sqrt 3]) between ``src`` and ``bgr``
    (HxWx3 in [0, 1]), each blurred first with a Gaussian of ``blur_sigma`` pixels (0: no blur)."""
    src, bgr = np.asarray(src, np.float32), np.asarray(bgr, np.float32)
    if src.shape != bgr.shape or src.ndim != 3 or src.shape[-1] != 3:
        raise ValueError(f"src {src.shape} and bgr {bgr.shape} must both be HxWx3")
    diff = src - bgr  # blurring is linear: blur(src) - blur(bgr) == blur(src - bgr)
    if blur_sigma > 0:
        diff = ndimage.gaussian_filter(diff, sigma=(blur_sigma, blur_sigma, 0), mode="nearest")
    return np.sqrt(np.square(diff).sum(axis=-1)).astype(np.float32)


def ramp(distance: np.ndarray, low: float, high: float) -> np.ndarray:
    """0 at or below ``low``, 1 at or above ``high``, linear between; a hard step at ``low`` when
    ``high <= low``."""
    distance = np.asarray(distance, np.float32)
    if high <= low:
        return (distance > low).astype(np.float32)
    return np.clip((distance - np.float32(low)) / np.float32(high - low), 0.0, 1.0)


def unmix_foreground(src: np.ndarray, bgr: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``(src - (1 - alpha) bgr) / alpha`` clipped to [0, 1]; ``src`` where alpha is (almost) 0."""
    a = np.asarray(alpha, np.float32)[..., None]
    fgr = (src - (1.0 - a) * bgr) / np.maximum(a, 1e-3)
    return np.where(a > 1e-3, np.clip(fgr, 0.0, 1.0), src).astype(np.float32)


@dataclass(frozen=True)
class KeyingResult:
    """``pha`` (N, H, W, 1) and ``fgr`` (N, H, W, 3), as :class:`bgm_jax.inference.Matting` returns."""

    pha: np.ndarray
    fgr: np.ndarray


@dataclass(frozen=True)
class DifferenceKeyer:
    """Difference keying with fixed settings; ``keyer(src, bgr)`` on NHWC batches, like a model."""

    low: float
    high: float
    blur_sigma: float = 0.0

    def key(self, src: np.ndarray, bgr: np.ndarray) -> np.ndarray:
        """Alpha (float32 HxW) of one HxWx3 frame."""
        return ramp(colour_distance(src, bgr, self.blur_sigma), self.low, self.high)

    def __call__(self, src: np.ndarray, bgr: np.ndarray) -> KeyingResult:
        src, bgr = np.asarray(src, np.float32), np.asarray(bgr, np.float32)
        phas = np.stack([self.key(s, b) for s, b in zip(src, bgr)])
        fgrs = np.stack([unmix_foreground(s, b, a) for s, b, a in zip(src, bgr, phas)])
        return KeyingResult(phas[..., None], fgrs)


@dataclass(frozen=True)
class Tuning:
    """What :func:`tune_keyer` found: the best ``keyer``, its mean SAD, and ``sad`` (mean SAD per
    ``(blur, low index, high index)``; NaN where ``high < low``) over ``thresholds`` and ``blur_sigmas``."""

    keyer: DifferenceKeyer
    mean_sad: float
    thresholds: np.ndarray
    blur_sigmas: tuple[float, ...]
    sad: np.ndarray
    count: int


def tune_keyer(
    samples: Iterable,
    *,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    blur_sigmas: Sequence[float] = DEFAULT_BLUR_SIGMAS,
    trimap_mode: str = "closing",
) -> Tuning:
    """The ``low <= high`` from ``thresholds`` and the ``blur_sigma`` from ``blur_sigmas`` with the
    lowest mean SAD over ``samples``.

    ``samples``: objects with ``src`` and ``bgr`` (float HxWx3 in [0, 1], the keyer's inputs) and
    ``gt_pha`` (uint8 HxW), e.g. ``protocol.protocol_input`` results (perturbed plates, as evaluated).
    SAD is the evaluation's: alpha rounded to 8 bits, summed over the trimap's unknown region
    (``trimap_mode`` as in ``score_sample``), divided by 1000. The one approximation: each pixel's
    distance is taken at the centre of its histogram bin (``DISTANCE_BINS`` bins over [0, sqrt 3]).
    Ties go to the first (smallest blur, then smallest ``low``, then smallest ``high``).
    """
    thresholds = np.asarray(sorted(float(t) for t in thresholds), np.float64)
    blur_sigmas = tuple(float(s) for s in blur_sigmas)
    if thresholds.size == 0 or not blur_sigmas:
        raise ValueError("tune_keyer needs at least one threshold and one blur sigma")
    histograms = np.zeros((len(blur_sigmas), DISTANCE_BINS, 256), np.float64)
    count = 0
    for sample in samples:
        gt = np.asarray(sample.gt_pha)
        if gt.dtype != np.uint8:
            raise ValueError(f"gt_pha must be uint8 (8-bit levels), got {gt.dtype}")
        unknown = metrics.unknown_region(metrics.trimap_from_alpha(gt, trimap_mode))
        levels = gt[unknown].astype(np.int64)
        for i, sigma in enumerate(blur_sigmas):
            d = colour_distance(sample.src, sample.bgr, sigma)[unknown]
            bins = np.minimum((d / MAX_DISTANCE * DISTANCE_BINS).astype(np.int64), DISTANCE_BINS - 1)
            histograms[i] += np.bincount(bins * 256 + levels, minlength=DISTANCE_BINS * 256).reshape(DISTANCE_BINS, 256)
        count += 1
    if count == 0:
        raise ValueError("tune_keyer needs at least one sample")

    # cost[b, l]: summed |l - g| / 255 over the pixels of distance bin b, were they all keyed to level l;
    # cum[b, l]: the same summed over bins below b. A threshold pair keys the bins from E_l to E_(l+1)
    # to level l, so its SAD is sum_l cum[E_(l+1), l] - cum[E_l, l]: 256 look-ups per pair.
    level_gap = np.abs(np.arange(256)[:, None] - np.arange(256)[None, :]) / 255.0
    lows, highs = np.triu_indices(thresholds.size)
    edges = _level_edges(thresholds[lows], thresholds[highs])
    sad = np.full((len(blur_sigmas), thresholds.size, thresholds.size), np.nan)
    levels = np.arange(256)
    for i in range(len(blur_sigmas)):
        cum = np.zeros((DISTANCE_BINS + 1, 256))
        np.cumsum(histograms[i] @ level_gap, axis=0, out=cum[1:])
        total = (cum[edges[:, 1:], levels] - cum[edges[:, :-1], levels]).sum(axis=1)
        sad[i, lows, highs] = total / 1000.0 / count
    best = np.unravel_index(np.nanargmin(sad), sad.shape)
    keyer = DifferenceKeyer(float(thresholds[best[1]]), float(thresholds[best[2]]), blur_sigmas[best[0]])
    return Tuning(keyer, float(sad[best]), thresholds, blur_sigmas, sad, count)


def _level_edges(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """(pairs, 257) first histogram bin keyed to each 8-bit level l (and the end), for ramps
    ``low <= high``: bin b (centre c_b) is keyed to ``rint(255 * ramp(c_b))``, so level l starts at
    the first centre at or above ``low + (l - 0.5) / 255 * (high - low)`` (above ``low`` for a step)."""
    width = MAX_DISTANCE / DISTANCE_BINS
    start = low[:, None] + (np.arange(1, 256)[None, :] - 0.5) / 255.0 * (high - low)[:, None]
    first = np.ceil(start / width - 0.5)
    step = high <= low
    first[step] = np.floor(low[step] / width - 0.5)[:, None] + 1  # first centre strictly above low
    edges = np.empty((low.size, 257), np.int64)
    edges[:, 0], edges[:, -1] = 0, DISTANCE_BINS
    edges[:, 1:-1] = np.clip(first, 0, DISTANCE_BINS)
    return edges


def protocol_samples(test_set, count: int | None = None, *, seed: int = 0, noise: str = "std") -> list:
    """Up to ``count`` samples of ``test_set`` (evenly spaced; all when None) after the test-time
    protocol (``protocol.protocol_input``: composite over the clean plate, perturbed plate given to
    the keyer), ready for :func:`tune_keyer`. Samples the protocol rejects are skipped."""
    from bgm_jax.evaluation.protocol import TestSampleError, protocol_input

    total = len(test_set)
    picks = range(total) if count is None or count >= total else np.linspace(0, total - 1, count).round().astype(int)
    out = []
    for index in picks:
        try:
            out.append(protocol_input(test_set.load(int(index)), seed=seed, noise=noise))
        except TestSampleError:
            continue
    return out
