"""The test-time background perturbation (supplement D.2): ranges, determinism, and each step by hand."""

import numpy as np
import pytest

from bgm_jax.errors import InputError
from bgm_jax.evaluation import perturb


def grey_background(h=128, w=128, value=0.5):
    return np.full((h, w, 3), value, np.float32)


def test_perturbation_is_deterministic_from_the_seed():
    rng = np.random.default_rng(1)
    bgr = rng.random((16, 20, 3), dtype=np.float32)
    np.testing.assert_array_equal(perturb.perturb_background(bgr, 7), perturb.perturb_background(bgr, 7))
    assert not np.array_equal(perturb.perturb_background(bgr, 7), perturb.perturb_background(bgr, 8))


def test_perturbation_returns_float32_in_unit_range_without_touching_the_input():
    bgr = np.random.default_rng(2).integers(0, 256, (16, 20, 3), dtype=np.uint8)
    before = bgr.copy()
    out = perturb.perturb_background(bgr, 3)
    assert out.dtype == np.float32 and out.shape == bgr.shape
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_array_equal(bgr, before)


def test_sampled_parameters_cover_the_supplement_ranges():
    draws = [perturb.sample_background_perturbation(np.random.default_rng(s)) for s in range(300)]
    for name, lo, hi in [
        ("shift_x", -0.3, 0.3),
        ("shift_y", -0.3, 0.3),
        ("gamma", 0.85, 1.15),
        ("noise_mean", -0.02, 0.02),
        ("noise_std", 0.08, 0.15),
    ]:
        values = np.array([getattr(d, name) for d in draws])
        assert values.min() >= lo and values.max() <= hi, name
        span = hi - lo  # uniform draws reach both ends of the range
        assert values.min() < lo + 0.05 * span and values.max() > hi - 0.05 * span, name


def test_variance_reading_takes_the_square_root_of_the_stated_spread():
    stds = [perturb.sample_background_perturbation(np.random.default_rng(s), "variance").noise_std
            for s in range(100)]
    assert min(stds) >= np.sqrt(0.08) and max(stds) <= np.sqrt(0.15)
    with pytest.raises(InputError, match="std, variance"):
        perturb.sample_background_perturbation(np.random.default_rng(0), "sigma")


def test_noise_on_a_grey_image_has_the_drawn_mean_and_standard_deviation():
    seed = 11
    params = perturb.sample_background_perturbation(np.random.default_rng(seed))
    out = perturb.perturb_background(grey_background(), seed)
    # grey stays grey under the shift; gamma maps it to 0.5 ** gamma; clipping is > 3 sigma away
    assert out.mean() == pytest.approx(0.5**params.gamma + params.noise_mean, abs=3e-3)
    assert out.std() == pytest.approx(params.noise_std, rel=0.03)


def test_subpixel_shift_moves_content_right_and_down_with_replicated_edges():
    row = np.array([[0.0, 1.0, 0.0]], np.float32)
    np.testing.assert_allclose(perturb.shift_subpixel(row, 0.25, 0.0), [[0.0, 0.75, 0.25]])
    np.testing.assert_allclose(perturb.shift_subpixel(row, -0.25, 0.0), [[0.25, 0.75, 0.0]])
    edge = np.array([[1.0, 0.0, 0.0]], np.float32)
    np.testing.assert_allclose(perturb.shift_subpixel(edge, 0.5, 0.0), [[1.0, 0.5, 0.0]])
    np.testing.assert_allclose(perturb.shift_subpixel(row.T, 0.0, 0.25), [[0.0], [0.75], [0.25]])
    with pytest.raises(InputError, match="below one pixel"):
        perturb.shift_subpixel(row, 1.5, 0.0)


def test_apply_perturbation_with_no_noise_is_shift_then_gamma():
    params = perturb.BackgroundPerturbation(shift_x=0.25, shift_y=0.0, gamma=2.0, noise_mean=0.0, noise_std=0.0)
    bgr = np.array([[[0.0], [0.8], [0.0]]], np.float32)
    out = perturb.apply_background_perturbation(bgr, params, np.random.default_rng(0))
    np.testing.assert_allclose(out[0, :, 0], [0.0, 0.6**2, 0.2**2], rtol=1e-6)


def test_composite_uses_the_clean_background_and_returns_the_perturbed_one():
    rng = np.random.default_rng(5)
    fgr = rng.random((8, 8, 3), dtype=np.float32)
    bgr = rng.random((8, 8, 3), dtype=np.float32)
    pha = np.zeros((8, 8), np.float32)
    pha[2:6, 2:6] = 1.0
    src, seen_bgr = perturb.composite_test_input(fgr, pha, bgr, seed=4)
    np.testing.assert_allclose(src[0, 0], bgr[0, 0])
    np.testing.assert_allclose(src[3, 3], fgr[3, 3])
    np.testing.assert_array_equal(seen_bgr, perturb.perturb_background(bgr, 4))
