"""Hand-computed cases for every metric of bgm_jax.evaluation.metrics (METRICS.md is the reference)."""

import math

import numpy as np
import pytest
from scipy import ndimage

from bgm_jax.errors import InputError
from bgm_jax.evaluation import metrics

U = metrics.UNKNOWN


def u8(values):
    return np.asarray(values, dtype=np.uint8)


def all_unknown(shape):
    return np.full(shape, U, dtype=np.uint8)


# --- inputs ------------------------------------------------------------------------------------------


def test_to_unit_float32_divides_8bit_by_255_in_float32():
    out = metrics.to_unit_float32(u8([0, 153, 255]))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.float32([0, 153, 255]) / np.float32(255))
    assert out[1] == np.float32(0.6)  # float32 153/255 is the float32 nearest 0.6 (0.6000000238...)


def test_to_unit_float32_scales_16bit_and_rejects_other_integers():
    np.testing.assert_allclose(metrics.to_unit_float32(np.array([0, 65535], np.uint16)), [0, 1])
    with pytest.raises(InputError, match="int32"):
        metrics.to_unit_float32(np.array([1, 2], np.int32))


# --- SAD / MSE -----------------------------------------------------------------------------------------

PRED_2X2 = u8([[255, 0], [128, 64]])
GT_2X2 = u8([[0, 0], [128, 0]])
TRIMAP_2X2 = u8([[U, U], [0, U]])  # the (1, 0) pixel is not unknown and must not count


def test_sad_sums_absolute_error_over_unknown_only_divided_by_1000():
    expected = (1.0 + 0.0 + 64 / 255) / 1000
    assert metrics.sad(PRED_2X2, GT_2X2, TRIMAP_2X2) == pytest.approx(expected, rel=1e-6)


def test_sad_ignores_errors_outside_the_unknown_region():
    trimap = u8([[0, 0], [U, 0]])  # only the pixel where pred == gt
    assert metrics.sad(PRED_2X2, GT_2X2, trimap) == 0.0


def test_mse_divides_by_unknown_pixel_count_and_reports_times_1000():
    expected = (1.0 + 0.0 + (64 / 255) ** 2) / 3 * 1e3
    assert metrics.mse(PRED_2X2, GT_2X2, TRIMAP_2X2) == pytest.approx(expected, rel=1e-6)


def test_mse_is_nan_when_there_is_no_unknown_pixel():
    assert math.isnan(metrics.mse(PRED_2X2, GT_2X2, np.zeros((2, 2), np.uint8)))


def test_metrics_reject_arrays_of_different_sizes():
    with pytest.raises(InputError, match="differ in size"):
        metrics.sad(PRED_2X2, u8(np.zeros((2, 3))), TRIMAP_2X2)


# --- Grad ----------------------------------------------------------------------------------------------


def test_gaussian_derivative_kernel_is_9x9_with_the_reference_centre_row():
    assert metrics.gaussian_derivative_half_size(1.4) == 4
    hx, hy = metrics.gaussian_derivative_kernels(1.4)
    assert hx.shape == (9, 9)
    np.testing.assert_allclose(
        hx[4],
        [0.02749, 0.12295, 0.29347, 0.31543, 0, -0.31543, -0.29347, -0.12295, -0.02749],
        atol=5e-6,
    )
    assert np.sqrt(np.sum(hx**2)) == pytest.approx(1.0)
    np.testing.assert_array_equal(hy, hx.T)


def test_separable_gaussian_gradient_equals_2d_convolution_with_replicated_borders():
    rng = np.random.default_rng(0)
    image = rng.random((13, 11))
    image[:, 0] = 1.0  # strong values on the border make the padding mode matter
    hx, hy = metrics.gaussian_derivative_kernels()
    gx, gy = metrics.gaussian_gradient(image)
    np.testing.assert_allclose(gx, ndimage.convolve(image, hx, mode="nearest"), atol=1e-12)
    np.testing.assert_allclose(gy, ndimage.convolve(image, hy, mode="nearest"), atol=1e-12)


def impulse_9x9(peak=255, floor=0):
    image = np.full((9, 9), floor, dtype=np.uint8)
    image[4, 4] = peak
    return image


def test_grad_of_an_impulse_against_a_flat_truth_is_the_kernel_value_squared():
    # The filtered impulse is the kernel itself; the flat truth has zero gradient. At (4, 5) gx is the
    # centre-row entry -0.31543 and gy = hx[5, 4] = 0; at the diagonal (5, 5) gx = gy = hx[5, 5]
    # = -0.31543 * G(1)/G(0) = -0.31543 * exp(-1 / (2 * 1.4^2)).
    trimap = np.zeros((9, 9), np.uint8)
    trimap[4, 5] = U
    flat = np.zeros((9, 9), np.uint8)
    assert metrics.gradient_error(impulse_9x9(), flat, trimap) == pytest.approx(0.31543**2, rel=1e-4)

    trimap[:] = 0
    trimap[5, 5] = U
    diagonal = 0.31543 * math.exp(-1 / (2 * 1.4**2))
    assert metrics.gradient_error(impulse_9x9(), flat, trimap) == pytest.approx(2 * diagonal**2, rel=1e-4)


def test_grad_normalises_each_image_by_its_min_and_max_first():
    # an impulse from 51 to 102 stretches to the same 0..1 impulse, so the error is unchanged
    trimap = np.zeros((9, 9), np.uint8)
    trimap[4, 3] = U
    flat = np.zeros((9, 9), np.uint8)
    faint = metrics.gradient_error(impulse_9x9(peak=102, floor=51), flat, trimap)
    assert faint == pytest.approx(0.31543**2, rel=1e-4)


def test_min_max_normalise_turns_a_constant_image_into_ones():
    np.testing.assert_array_equal(metrics.min_max_normalise(np.full((3, 4), 0.3)), np.ones((3, 4)))
    np.testing.assert_allclose(metrics.min_max_normalise(np.array([2.0, 3.0, 4.0])), [0, 0.5, 1])


def test_grad_is_a_raw_sum_over_the_unknown_region():
    trimap = np.zeros((9, 9), np.uint8)
    trimap[4, 3] = trimap[4, 5] = U
    flat = np.zeros((9, 9), np.uint8)
    assert metrics.gradient_error(impulse_9x9(), flat, trimap) == pytest.approx(2 * 0.31543**2, rel=1e-4)


# --- Conn ----------------------------------------------------------------------------------------------


def test_conn_float32_alpha_puts_153_over_255_on_the_0_6_level():
    # One pixel, p = 153/255, g = 204/255 = 0.8. In float32 p >= 0.6, so the pixel stays in the
    # component up to k = 6 and is dropped at k = 7: l = 0.6, d_p = 0 -> phi_p = 1, d_g = 0.2 -> phi_g
    # = 0.8, Conn = 0.2. In float64 (153/255 < 0.1*6) it would be dropped at k = 6 (l = 0.5): Conn 0.3.
    conn = metrics.connectivity_error(u8([[153]]), u8([[204]]), u8([[U]]))
    assert conn == pytest.approx(0.2, abs=1e-6)
    assert metrics.connectivity_levels(u8([[153]]), u8([[204]]))[0, 0] == pytest.approx(0.6)


def test_conn_with_an_empty_first_level_assigns_level_zero_everywhere():
    # p is all zero, so (p >= 0.1) & (g >= 0.1) is empty at k = 1: every pixel gets l = t_0 = 0.
    # d_p = 0 -> phi_p = 1; d_g = [0.2, 1.0] -> phi_g = [0.8, 0.0]; Conn = 0.2 + 1.0.
    pred, gt = u8([[0, 0]]), u8([[51, 255]])
    np.testing.assert_array_equal(metrics.connectivity_levels(pred, gt), [[0.0, 0.0]])
    assert metrics.connectivity_error(pred, gt, all_unknown((1, 2))) == pytest.approx(1.2, abs=1e-6)


def test_conn_pixels_never_dropped_get_level_one():
    full = u8([[255, 255]])
    np.testing.assert_array_equal(metrics.connectivity_levels(full, full), [[1.0, 1.0]])
    assert metrics.connectivity_error(full, full, all_unknown((1, 2))) == 0.0


def test_conn_uses_4_connectivity_so_a_diagonal_neighbour_is_its_own_component():
    # The 2x2 block is the largest component; the corner pixel (2, 2) touches it only diagonally, so
    # it is dropped at k = 1 (l = 0): phi_p = 1 - 51/255, phi_g = 1 - 82/255, Conn = 31/255. With
    # 8-connectivity it would stay until k = 3 (l = 0.2) and Conn would be 0.
    gt = u8([[255, 255, 0], [255, 255, 0], [0, 0, 82]])
    pred = gt.copy()
    pred[2, 2] = 51
    conn = metrics.connectivity_error(pred, gt, all_unknown((3, 3)))
    assert conn == pytest.approx(31 / 255, abs=1e-6)


def test_conn_tie_between_largest_components_goes_to_the_first_in_column_major_order():
    # Two single-pixel components: (0, 2) comes first row-major, (2, 0) first column-major (MATLAB's
    # bwconncomp order). (2, 0) is kept while both alphas pass: p = 1, g = 82/255 fails at k = 4, so
    # l = 0.3 there: phi_p = 1 - 0.7, phi_g = 1 (d_g < 0.15), Conn = 0.7. Were (0, 2) kept instead,
    # (2, 0) would get l = 0 and Conn = |0 - (1 - 82/255)| = 0.678.
    pred = u8([[0, 0, 255], [0, 0, 0], [255, 0, 0]])
    gt = u8([[0, 0, 255], [0, 0, 0], [82, 0, 0]])
    assert metrics.connectivity_error(pred, gt, all_unknown((3, 3))) == pytest.approx(0.7, abs=1e-6)


def test_conn_finds_components_over_the_whole_image_but_sums_over_unknown_only():
    gt = u8([[255, 255, 0], [255, 255, 0], [0, 0, 82]])
    pred = gt.copy()
    pred[2, 2] = 51
    trimap = all_unknown((3, 3))
    trimap[2, 2] = 0
    assert metrics.connectivity_error(pred, gt, trimap) == 0.0


def test_largest_component_of_an_empty_mask_is_empty():
    assert not metrics.largest_component(np.zeros((4, 5), bool)).any()


# --- FG MSE --------------------------------------------------------------------------------------------


def test_foreground_mse_counts_only_visible_pixels_but_divides_by_all_unknown_pixels():
    # U = 4 pixels; errors of 255 in one channel at a visible pixel (counted) and at a pixel with
    # g = 0 (masked out): (1/3) * 1 / 4 * 1e3.
    gt_alpha = u8([[255, 0], [0, 0]])
    pred_fgr = np.zeros((2, 2, 3), np.uint8)
    gt_fgr = np.zeros((2, 2, 3), np.uint8)
    pred_fgr[0, 0, 1] = 255
    pred_fgr[1, 1, 0] = 255
    value = metrics.foreground_mse(pred_fgr, gt_fgr, gt_alpha, all_unknown((2, 2)))
    assert value == pytest.approx(1 / 3 / 4 * 1e3, rel=1e-6)


def test_foreground_mse_rejects_grey_foregrounds():
    with pytest.raises(InputError, match="HxWx3"):
        metrics.foreground_mse(np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8),
                               np.zeros((2, 2), np.uint8), all_unknown((2, 2)))


# --- trimaps -------------------------------------------------------------------------------------------


def soft_edged_block():
    """Foreground touching the left border: columns 0..14 opaque, column 15 half, the rest empty."""
    alpha = np.zeros((30, 50), np.uint8)
    alpha[:, :15] = 255
    alpha[:, 15] = 128
    return alpha


def test_band_trimap_of_a_block_touching_the_border_keeps_the_border_foreground():
    # BG = not dilate(cols 0..15, 10) = cols 26..; FG = erode(cols 0..14, 10) = cols 0..4: the left,
    # top and bottom borders count as foreground, so erosion only eats in from the right.
    trimap = metrics.trimap_from_alpha(soft_edged_block(), "band")
    assert (trimap[:, :5] == 255).all()
    assert (trimap[:, 5:26] == U).all()
    assert (trimap[:, 26:] == 0).all()


def test_closing_trimap_of_the_same_block_is_the_soft_column_only():
    # U0 = column 15; dilating then eroding a full-height line gives it back; FG = g >= 0.96 outside U.
    trimap = metrics.trimap_from_alpha(soft_edged_block(), "closing")
    assert (trimap[:, :15] == 255).all()
    assert (trimap[:, 15] == U).all()
    assert (trimap[:, 16:] == 0).all()


def test_closing_trimap_fills_gaps_below_20_pixels_and_erosion_does_not_eat_from_the_border():
    # Two soft full-height lines at columns 5 and 24: dilation covers columns 0..34 (touching the left
    # border), erosion keeps x with x + 10 <= 34, and the left border counts as set: U = columns 0..24.
    alpha = np.zeros((30, 40), np.uint8)
    alpha[:, [5, 24]] = 100
    trimap = metrics.trimap_from_alpha(alpha, "closing")
    assert (trimap[:, :25] == U).all()
    assert (trimap[:, 25:] == 0).all()


def test_trimap_kernel_is_the_3x3_cross_so_dilation_grows_a_diamond():
    alpha = np.zeros((41, 41), np.uint8)
    alpha[20, 20] = 128
    trimap = metrics.trimap_from_alpha(alpha, "band")
    assert trimap[20, 30] == U and trimap[25, 25] == U  # L1 distance 10
    assert trimap[26, 25] == 0 and trimap[27, 27] == 0  # L1 distance 11 and 14 (inside a square)


def test_trimap_rejects_an_unknown_reading():
    with pytest.raises(InputError, match="closing, band"):
        metrics.trimap_from_alpha(np.zeros((4, 4), np.uint8), "dilate")


# --- video ---------------------------------------------------------------------------------------------


def test_video_metrics_by_hand_with_dtssd_a_mean_of_per_frame_roots():
    # frames 1x2: p = [0,1], [1,1], [1,1]; g = [0,0], [0,1], [0,1]. Each frame: MAD = MSE = 0.5.
    # dtSSD: t=1: (p1-p0)-(g1-g0) = [1,-1] -> sqrt(2/2) = 1; t=2: 0. Mean 0.5 -> x1e2 = 50.
    pred = u8([[[0, 255]], [[255, 255]], [[255, 255]]])
    gt = u8([[[0, 0]], [[0, 255]], [[0, 255]]])
    out = metrics.video_metrics(pred, gt)
    assert out == pytest.approx({"MAD": 500.0, "MSE": 500.0, "dtSSD": 50.0})


def test_video_metrics_single_frame_has_no_dtssd_and_shapes_must_match():
    out = metrics.video_metrics(u8([[[0, 255]]]), u8([[[0, 0]]]))
    assert out["MAD"] == pytest.approx(500.0) and math.isnan(out["dtSSD"])
    with pytest.raises(InputError, match="differ in shape"):
        metrics.video_metrics(u8(np.zeros((2, 2, 2))), u8(np.zeros((3, 2, 2))))
