"""Difference keying, the classical baseline: the ramp, the distance, and the threshold tuner."""

from types import SimpleNamespace

import numpy as np
import pytest

from bgm_jax.evaluation import keying
from bgm_jax.evaluation.score import quantize_alpha, score_sample


def test_ramp_is_zero_below_low_one_above_high_and_linear_between():
    d = np.array([0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5], np.float32)
    np.testing.assert_allclose(keying.ramp(d, 0.1, 0.3), [0, 0, 0, 0.25, 0.5, 0.75, 1, 1], atol=1e-6)
    # high <= low: a hard key at low
    np.testing.assert_array_equal(keying.ramp(d, 0.2, 0.2), [0, 0, 0, 0, 0, 1, 1, 1])


def test_distance_is_euclidean_rgb_and_a_blur_keeps_a_uniform_difference():
    bgr = np.full((9, 9, 3), 0.2, np.float32)
    src = bgr + np.array([0.3, 0.4, 0.0], np.float32)  # |(0.3, 0.4, 0)| = 0.5
    np.testing.assert_allclose(keying.colour_distance(src, bgr), 0.5, atol=1e-6)
    np.testing.assert_allclose(keying.colour_distance(src, bgr, blur_sigma=2.0), 0.5, atol=1e-6)
    # A single-pixel difference is spread out and lowered by the blur.
    src = bgr.copy()
    src[4, 4] += 0.6
    assert keying.colour_distance(src, bgr)[4, 4] == pytest.approx(np.sqrt(3 * 0.36), abs=1e-6)
    assert keying.colour_distance(src, bgr, blur_sigma=1.0)[4, 4] < 0.2


def test_keyer_recovers_alpha_and_unmixes_the_foreground():
    rng = np.random.default_rng(0)
    bgr = rng.uniform(0.0, 0.4, (1, 8, 8, 3)).astype(np.float32)
    fgr = np.broadcast_to(np.array([0.9, 0.8, 0.1], np.float32), bgr.shape)
    alpha = np.zeros((1, 8, 8, 1), np.float32)
    alpha[:, :, 4:] = 1.0
    src = alpha * fgr + (1 - alpha) * bgr
    result = keying.DifferenceKeyer(low=0.05, high=0.1)(src, bgr)
    assert result.pha.shape == (1, 8, 8, 1) and result.fgr.shape == (1, 8, 8, 3)
    np.testing.assert_array_equal(result.pha, alpha)
    np.testing.assert_allclose(result.fgr[0, :, 4:], fgr[0, :, 4:], atol=1e-6)


def _known_optimum_samples(count=3, size=64):
    """Frames whose distance to the plate is exactly 0.1 + 0.2 * alpha: keyed perfectly by (0.1, 0.3)."""
    rng = np.random.default_rng(1)
    direction = np.array([0.6, 0.8, 0.0], np.float32)  # unit length
    samples = []
    for _ in range(count):
        gt = np.zeros((size, size), np.float32)
        gt[:, size // 2:] = 1.0
        band = slice(size // 2 - 12, size // 2 + 12)
        gt[:, band] = np.linspace(0, 1, 24)[None, :]  # every level along the edge: a unique optimum
        gt[rng.integers(0, size, 40), rng.integers(0, size // 3, 40)] = rng.uniform(0.1, 0.9, 40)
        gt_u8 = np.round(gt * 255).astype(np.uint8)
        a = gt_u8.astype(np.float32) / 255
        bgr = rng.uniform(0.1, 0.5, (size, size, 3)).astype(np.float32)
        src = bgr + (0.1 + 0.2 * a)[..., None] * direction
        samples.append(SimpleNamespace(src=src, bgr=bgr, gt_pha=gt_u8))
    return samples


def test_tuner_finds_the_known_best_thresholds_and_blur():
    samples = _known_optimum_samples()
    tuning = keying.tune_keyer(samples, thresholds=np.arange(0.0, 0.51, 0.05), blur_sigmas=(0.0, 2.0))
    assert (tuning.keyer.low, tuning.keyer.high, tuning.keyer.blur_sigma) == pytest.approx((0.1, 0.3, 0.0))
    assert tuning.count == 3
    assert tuning.mean_sad < 0.02  # only histogram-bin rounding is left
    # Every other pair, and the blurred version, is clearly worse.
    others = np.delete(tuning.sad[0].ravel(), np.ravel_multi_index((2, 6), tuning.sad[0].shape))
    assert np.nanmin(others) > tuning.mean_sad + 0.1
    assert np.nanmin(tuning.sad[1]) > tuning.mean_sad + 0.02  # blurring smears the isolated fractional pixels


def test_tuner_sad_is_the_evaluations_sad():
    samples = _known_optimum_samples(count=2)
    thresholds = np.array([0.05, 0.15, 0.25, 0.4])
    tuning = keying.tune_keyer(samples, thresholds=thresholds, blur_sigmas=(0.0, 1.5))
    for b, j, k in [(0, 0, 3), (0, 1, 2), (1, 1, 1), (1, 0, 2)]:
        keyer = keying.DifferenceKeyer(thresholds[j], thresholds[k], (0.0, 1.5)[b])
        direct = np.mean([
            score_sample(quantize_alpha(keyer.key(s.src, s.bgr)), s.gt_pha, "closing")["SAD"] for s in samples
        ])
        assert tuning.sad[b, j, k] == pytest.approx(direct, rel=0.01, abs=0.005)
    assert np.isnan(tuning.sad[0, 2, 1])  # high < low is not a keyer


def test_tuner_rejects_an_empty_sample_set():
    with pytest.raises(ValueError, match="at least one sample"):
        keying.tune_keyer([])
