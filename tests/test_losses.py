"""The paper's losses (train/losses.py) against values worked out by hand on tiny arrays."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from train import losses

EPS = 1e-6  # inside the Sobel magnitude's square root


def _image(rows):
    """(1, H, W, 1) from a nested list."""
    return jnp.asarray(rows, jnp.float32)[None, :, :, None]


# ------------------------------------------------------------------------------------------------------
# Sobel


def test_sobel_of_a_vertical_step_by_hand():
    # Columns 0, 0, 1. Column 0 sees 0 on both sides (replicated edge); columns 1 and 2 see 0 on the left
    # and 1 on the right, in all three rows: gx = (1 + 2 + 1) / 8 = 0.5. Rows are equal: gy = 0.
    step = losses.sobel(_image([[0, 0, 1]] * 3))[0, :, :, 0]
    flat, edge = math.sqrt(EPS), math.sqrt(0.25 + EPS)
    np.testing.assert_allclose(step, [[flat, edge, edge]] * 3, rtol=1e-6)


def test_sobel_of_a_single_bright_pixel_by_hand():
    # Centre pixel 1, replicate padding. Corner (0, 0): the 1 is the bottom-right neighbour, weight 1 in
    # both kernels: gx = gy = 1/8. Edge middle (0, 1): the 1 is straight below, weight 2 in gy: gy = 2/8,
    # gx = 0. Centre: its neighbours are symmetric: 0.
    spot = losses.sobel(_image([[0, 0, 0], [0, 1, 0], [0, 0, 0]]))[0, :, :, 0]
    corner, middle, centre = math.sqrt(2 / 64 + EPS), math.sqrt(4 / 64 + EPS), math.sqrt(EPS)
    np.testing.assert_allclose(spot, [[corner, middle, corner], [middle, centre, middle], [corner, middle, corner]],
                               rtol=1e-6)


def test_sobel_of_a_constant_image_is_flat_because_the_padding_replicates_the_edge():
    # Zero padding would see a step at every border pixel.
    flat = losses.sobel(jnp.full((2, 4, 4, 1), 0.7))
    np.testing.assert_allclose(flat, math.sqrt(EPS), rtol=1e-4)


# ------------------------------------------------------------------------------------------------------
# Base stage


def _base_example():
    """One row of two pixels: the target alpha steps from 0 to 1, the prediction is 0.5 flat."""
    true_pha = _image([[0.0, 1.0]])
    pha = _image([[0.5, 0.5]])
    true_fgr = jnp.asarray([[[[0.0, 0.0, 0.0], [0.3, 0.1, 0.6]]]], jnp.float32)
    fgr = jnp.asarray([[[[1.0, 1.0, 1.0], [0.2, 0.4, 0.6]]]], jnp.float32)
    err = _image([[0.1, 0.9]])
    return pha, fgr, err, true_pha, true_fgr


def test_base_loss_terms_by_hand():
    total, terms = losses.base_loss(*_base_example())
    expected = {
        "pha_l1": (0.5 + 0.5) / 2,
        # Target: both pixels see 0 on the left and 1 on the right, gx = 0.5; prediction flat.
        "pha_sobel_l1": math.sqrt(0.25 + EPS) - math.sqrt(EPS),
        # Pixel 0 has target alpha 0: masked out, but still counted in the mean over 2 x 3 elements.
        "fgr_l1": (0.1 + 0.3 + 0.0) / 6,
        # Error target |0.5 - 0| = |0.5 - 1| = 0.5 at both pixels.
        "err_mse": ((0.1 - 0.5) ** 2 + (0.9 - 0.5) ** 2) / 2,
    }
    assert set(terms) == set(expected)
    for name, value in expected.items():
        assert float(terms[name]) == pytest.approx(value, rel=1e-5), name
    assert float(total) == pytest.approx(sum(expected.values()), rel=1e-5)


def test_base_foreground_mask_is_target_alpha_above_zero_and_not_normalised_by_its_area():
    true_pha = _image([[0.0, 0.0], [0.0, 0.01]])  # one pixel of four is foreground
    zeros = jnp.zeros((1, 2, 2, 3))
    _, terms = losses.base_loss(true_pha, jnp.ones((1, 2, 2, 3)), true_pha, true_pha, zeros)
    assert float(terms["fgr_l1"]) == pytest.approx(3 / 12)  # 1 error per channel at 1 pixel, mean over 12


def test_base_error_target_stops_the_gradient_to_alpha():
    pha, fgr, err, true_pha, true_fgr = _base_example()
    grad_pha = jax.grad(lambda p: losses.base_loss(p, fgr, err, true_pha, true_fgr)[1]["err_mse"])(pha)
    grad_err = jax.grad(lambda e: losses.base_loss(pha, fgr, e, true_pha, true_fgr)[1]["err_mse"])(err)
    np.testing.assert_array_equal(grad_pha, 0.0)
    np.testing.assert_allclose(grad_err[0, 0, :, 0], [2 * (0.1 - 0.5) / 2, 2 * (0.9 - 0.5) / 2], rtol=1e-5)


# ------------------------------------------------------------------------------------------------------
# Refine stage


def _refine_example():
    """8x8 target whose 4x4 blocks hold a value only in their inner 2x2: a bilinear resize to 2x2 without
    antialiasing reads exactly those inner pixels (sample points at 4i + 1.5), an antialiased one would not."""
    inner = np.array([[0.8, 0.4], [0.0, 1.0]], np.float32)
    true_pha = np.zeros((8, 8), np.float32)
    for i in range(2):
        for j in range(2):
            true_pha[4 * i + 1:4 * i + 3, 4 * j + 1:4 * j + 3] = inner[i, j]
    true_pha = jnp.asarray(true_pha)[None, :, :, None]
    true_fgr = jnp.zeros((1, 8, 8, 3))
    return {
        "pha": true_pha, "fgr": true_fgr,  # full-size outputs perfect: their terms are 0
        "pha_sm": jnp.zeros((1, 2, 2, 1)), "fgr_sm": jnp.ones((1, 2, 2, 3)), "err_sm": jnp.full((1, 2, 2, 1), 0.5),
        "true_pha": true_pha, "true_fgr": true_fgr,
    }, inner


def test_refine_loss_seven_terms_by_hand():
    example, inner = _refine_example()
    total, terms = losses.refine_loss(**example)
    # Coarse Sobel of the resized target [[0.8, 0.4], [0, 1]] (2x2, replicate padding): every pixel's
    # horizontal difference is column 1 - column 0 = (-0.4, 1.0) per row, its vertical one row 1 - row 0 =
    # (-0.8, 0.6) per column; the kernel weighs rows (or columns) (0, 0, 1) at index 0 and (0, 1, 1) at 1.
    gx = [(-0.4 + 2 * -0.4 + 1.0) / 8, (-0.4 + 2 * 1.0 + 1.0) / 8]  # rows 0, 1
    gy = [(-0.8 + 2 * -0.8 + 0.6) / 8, (-0.8 + 2 * 0.6 + 0.6) / 8]  # columns 0, 1
    coarse_sobel = [math.sqrt(gx[i] ** 2 + gy[j] ** 2 + EPS) for i in range(2) for j in range(2)]
    expected = {
        "pha_l1": 0.0,
        "pha_sm_l1": inner.mean(),  # prediction 0 against the inner values
        "pha_sobel_l1": 0.0,
        "pha_sm_sobel_l1": np.mean(coarse_sobel) - math.sqrt(EPS),  # prediction flat
        "fgr_l1": 0.0,
        "fgr_sm_l1": 3 / 4,  # error 1 everywhere, masked where the coarse target alpha is 0 (1 cell of 4)
        # Upsampled err 0.5 and pha_sm 0: target |0 - pha*|. 48 ring pixels at 0, 4 inner pixels per value.
        "err_mse": (48 * 0.25 + 4 * sum((0.5 - v) ** 2 for v in inner.ravel())) / 64,
    }
    assert set(terms) == set(expected)
    for name, value in expected.items():
        assert float(terms[name]) == pytest.approx(value, rel=1e-5, abs=1e-7), name
    assert float(total) == pytest.approx(sum(expected.values()), rel=1e-5)


def test_targets_are_resized_to_the_coarse_size_without_antialiasing():
    example, inner = _refine_example()
    coarse = losses.resize_bilinear(example["true_pha"], (2, 2))
    np.testing.assert_allclose(coarse[0, :, :, 0], inner, atol=1e-6)


def test_refine_error_term_lets_the_gradient_reach_the_coarse_alpha_as_the_original():
    example, _ = _refine_example()
    example["pha_sm"] = jnp.full((1, 2, 2, 1), 0.3)

    def err_term(pha_sm):
        return losses.refine_loss(**{**example, "pha_sm": pha_sm})[1]["err_mse"]

    assert np.abs(np.asarray(jax.grad(err_term)(example["pha_sm"]))).max() > 1e-3


def test_half_precision_predictions_give_float32_losses_close_to_float32_inputs():
    pha, fgr, err, true_pha, true_fgr = _base_example()
    half = [x.astype(jnp.bfloat16) for x in (pha, fgr, err)]
    total16, terms16 = losses.base_loss(*half, true_pha, true_fgr)
    total32, _ = losses.base_loss(pha, fgr, err, true_pha, true_fgr)
    assert total16.dtype == jnp.float32 and all(t.dtype == jnp.float32 for t in terms16.values())
    assert float(total16) == pytest.approx(float(total32), rel=1e-2)


def test_losses_match_the_original_pytorch_formulas_on_random_data():
    from conftest import require_torch

    torch = require_torch()
    F = torch.nn.functional
    rng = np.random.default_rng(0)
    b, h, w = 2, 16, 20
    arrays = {
        "pha": rng.random((b, h, w, 1)), "fgr": rng.random((b, h, w, 3)), "err": rng.random((b, h, w, 1)),
        "pha_sm": rng.random((b, 4, 5, 1)), "fgr_sm": rng.random((b, 4, 5, 3)), "err_sm": rng.random((b, 4, 5, 1)),
        "true_pha": np.clip(rng.random((b, h, w, 1)) * 1.4 - 0.2, 0, 1), "true_fgr": rng.random((b, h, w, 3)),
    }
    arrays = {k: v.astype(np.float32) for k, v in arrays.items()}
    t = {k: torch.from_numpy(np.moveaxis(v, -1, 1).copy()) for k, v in arrays.items()}

    def sobel(x):  # kornia.sobel: normalised 3x3 Sobel, replicate padding
        k = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]) / 8
        c = x.shape[1]
        xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
        gx, gy = F.conv2d(xp, k.expand(c, 1, 3, 3), groups=c), F.conv2d(xp, k.t().expand(c, 1, 3, 3), groups=c)
        return torch.sqrt(gx ** 2 + gy ** 2 + 1e-6)

    def resize(x, size):  # kornia.resize: bilinear, align_corners=False, no antialiasing
        return F.interpolate(x, size, mode="bilinear", align_corners=False)

    m = t["true_pha"] != 0
    base = (F.l1_loss(t["pha"], t["true_pha"]) + F.l1_loss(sobel(t["pha"]), sobel(t["true_pha"]))
            + F.l1_loss(t["fgr"] * m, t["true_fgr"] * m) + F.mse_loss(t["err"], (t["pha"] - t["true_pha"]).abs()))
    true_pha_sm, true_fgr_sm = resize(t["true_pha"], (4, 5)), resize(t["true_fgr"], (4, 5))
    m_sm = true_pha_sm != 0
    refine = (F.l1_loss(t["pha"], t["true_pha"]) + F.l1_loss(t["pha_sm"], true_pha_sm)
              + F.l1_loss(sobel(t["pha"]), sobel(t["true_pha"])) + F.l1_loss(sobel(t["pha_sm"]), sobel(true_pha_sm))
              + F.l1_loss(t["fgr"] * m, t["true_fgr"] * m) + F.l1_loss(t["fgr_sm"] * m_sm, true_fgr_sm * m_sm)
              + F.mse_loss(resize(t["err_sm"], (h, w)), (resize(t["pha_sm"], (h, w)) - t["true_pha"]).abs()))

    a = arrays
    ours_base, _ = losses.base_loss(a["pha"], a["fgr"], a["err"], a["true_pha"], a["true_fgr"])
    ours_refine, _ = losses.refine_loss(a["pha"], a["fgr"], a["pha_sm"], a["fgr_sm"], a["err_sm"], a["true_pha"],
                                        a["true_fgr"])
    assert float(ours_base) == pytest.approx(float(base), rel=1e-5)
    assert float(ours_refine) == pytest.approx(float(refine), rel=1e-5)


# ------------------------------------------------------------------------------------------------------
# The soft-band term (soft_weight > 0; not in the original, off by default)


def test_soft_band_is_the_square_neighbourhood_of_the_soft_pixels_only():
    alpha = np.zeros((1, 12, 12, 1), np.float32)
    alpha[0, 6, 6, 0] = 0.5  # one soft pixel
    alpha[0, :, 10:, 0] = 1.0  # opaque and clear pixels are not soft
    alpha[0, 0, 0, 0] = 0.05  # below the trimap's low threshold
    band = np.asarray(losses.soft_band(jnp.asarray(alpha), radius=2))[0, :, :, 0]
    expected = np.zeros((12, 12))
    expected[4:9, 4:9] = 1
    np.testing.assert_array_equal(band, expected)


def test_soft_term_is_the_mean_error_over_the_band_times_the_weight():
    truth = np.zeros((1, 16, 16, 1), np.float32)
    truth[0, 8, 8, 0] = 0.5
    pred = np.zeros_like(truth)  # wrong by 0.5 at the one soft pixel, right everywhere else in its band
    band = losses.soft_band(jnp.asarray(truth))  # radius 3: 7 x 7 = 49 pixels
    assert float(band.sum()) == 49
    np.testing.assert_allclose(losses.band_l1(pred, truth, band), 0.5 / 49, rtol=1e-6)
    fgr = np.zeros((1, 16, 16, 3), np.float32)
    err = np.zeros_like(truth)
    plain, _ = losses.base_loss(pred, fgr, err, truth, fgr)
    weighted, terms = losses.base_loss(pred, fgr, err, truth, fgr, soft_weight=3.0)
    np.testing.assert_allclose(terms["pha_soft_l1"], 3.0 * 0.5 / 49, rtol=1e-6)
    np.testing.assert_allclose(weighted - plain, 3.0 * 0.5 / 49, rtol=1e-5)


def test_soft_term_is_zero_without_soft_pixels_and_absent_at_weight_zero():
    example, _ = _refine_example()
    _, plain = losses.refine_loss(**example)
    assert "pha_soft_l1" not in plain and len(plain) == 7
    binary = (example["true_pha"] > 0.5).astype(jnp.float32)
    _, terms = losses.refine_loss(**{**example, "true_pha": binary}, soft_weight=1.0)
    assert float(terms["pha_soft_l1"]) == 0.0  # no soft pixels: an empty band adds nothing (no 0/0)


def test_refine_soft_terms_score_both_the_full_and_the_coarse_alpha():
    rng = np.random.default_rng(3)
    truth = np.clip(rng.uniform(-0.3, 1.3, (1, 16, 16, 1)), 0, 1).astype(np.float32)
    fgr = rng.uniform(0, 1, (1, 16, 16, 3)).astype(np.float32)
    pha, pha_sm = rng.uniform(0, 1, (1, 16, 16, 1)).astype(np.float32), rng.uniform(0, 1, (1, 4, 4, 1)).astype(np.float32)
    fgr_sm, err_sm = fgr[:, ::4, ::4], np.zeros_like(pha_sm)
    _, terms = losses.refine_loss(pha, fgr, pha_sm, fgr_sm, err_sm, truth, fgr, soft_weight=2.0)
    band = losses.soft_band(jnp.asarray(truth))
    np.testing.assert_allclose(terms["pha_soft_l1"], 2.0 * losses.band_l1(pha, truth, band), rtol=1e-6)
    truth_sm = losses.resize_bilinear(jnp.asarray(truth), (4, 4))
    np.testing.assert_allclose(terms["pha_sm_soft_l1"],
                               2.0 * losses.band_l1(pha_sm, truth_sm, losses.soft_band(truth_sm)), rtol=1e-6)


# ------------------------------------------------------------------------------------------------------
# The strand term (thin_weight > 0; not in the original, off by default)


def test_thin_band_is_the_grown_foreground_a_five_pixel_opening_removes():
    alpha = np.zeros((1, 16, 16, 1), np.float32)
    alpha[0, 2:14, 8, 0] = 0.7  # a one-pixel strand, soft
    alpha[0, 8:14, 1:7, 0] = 1.0  # a 6x6 block: survives the opening, not thin
    alpha[0, 0, 15, 0] = 0.05  # below the trimap's low threshold: not foreground
    band = np.asarray(losses.thin_band(jnp.asarray(alpha)))[0, :, :, 0]
    expected = np.zeros((16, 16))
    expected[1:15, 7:10] = 1  # the strand widened by THIN_GROW = 1 px
    np.testing.assert_array_equal(band, expected)
    ungrown = np.asarray(losses.thin_band(jnp.asarray(alpha), grow=0))[0, :, :, 0]
    np.testing.assert_array_equal(ungrown, alpha[0, :, :, 0] == 0.7)


def test_thin_term_is_the_mean_error_over_the_strands_times_the_weight():
    truth = np.zeros((1, 16, 16, 1), np.float32)
    truth[0, 3:13, 8, 0] = 1.0  # a strand of 10 px; its band is 12 x 3 = 36 px
    pred = np.zeros_like(truth)  # the strand missed: wrong by 1 on 10 of the 36
    fgr = np.zeros((1, 16, 16, 3), np.float32)
    err = np.zeros_like(truth)
    plain, plain_terms = losses.base_loss(pred, fgr, err, truth, fgr)
    weighted, terms = losses.base_loss(pred, fgr, err, truth, fgr, thin_weight=2.0)
    assert "pha_thin_l1" not in plain_terms
    np.testing.assert_allclose(terms["pha_thin_l1"], 2.0 * 10 / 36, rtol=1e-6)
    np.testing.assert_allclose(weighted - plain, 2.0 * 10 / 36, rtol=1e-5)
    solid = np.zeros_like(truth)
    solid[0, 4:12, 4:12] = 1.0  # nothing thin: an empty band adds nothing
    _, solid_terms = losses.base_loss(pred, fgr, err, solid, fgr, thin_weight=2.0)
    assert float(solid_terms["pha_thin_l1"]) == 0.0


def test_refine_thin_terms_score_both_the_full_and_the_coarse_alpha():
    example, inner = _refine_example()
    _, terms = losses.refine_loss(**example, thin_weight=3.0)
    assert len(terms) == 9
    assert float(terms["pha_thin_l1"]) == 0.0  # the full-size alpha is perfect
    # At 2x2 the three foreground pixels are all thin (no 5x5 square of foreground fits) and grown over the
    # fourth: the coarse term is the mean error of the zero prediction over all four, times the weight.
    np.testing.assert_allclose(terms["pha_sm_thin_l1"], 3.0 * inner.mean(), rtol=1e-6)
