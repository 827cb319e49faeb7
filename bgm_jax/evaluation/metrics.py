"""Matting metrics as BackgroundMattingV2 reports them, and the trimaps they are measured in.

Image metrics follow the Deep Image Matting MATLAB code that the paper used (Rhemann et al. 2009
definitions); video metrics follow RobustVideoMatting. Every image metric sums only over the unknown
region ``U = trimap == 128`` and returns its value in the units of the paper's Table 1:

=========  ===========================================  =====================
key        definition                                   unit
=========  ===========================================  =====================
``SAD``    sum_U |p - g|                                divided by 1000
``MSE``    sum_U (p - g)^2 / |U|                        times 1000
``Grad``   sum_U (|grad p| - |grad g|)^2                raw sum
``Conn``   sum_U |phi(p) - phi(g)|                      raw sum
``FG_MSE`` (1/3) sum_c sum_U ([g>0](Fp - Fg))^2 / |U|   times 1000
=========  ===========================================  =====================

Alphas are read as float32 ``P / 255`` exactly like MATLAB's ``single(P)/255``: the precision matters
for Conn (153/255 is >= 0.6 in float32 but not in float64). Sums accumulate in float64, which differs
from MATLAB's single-precision sums only around the 7th significant digit.

The functions here take arrays that are already aligned; cropping to multiples of 4, pairing files and
reporting live beside it in the other :mod:`bgm_jax.evaluation` modules.
"""

from __future__ import annotations

import math

import numpy as np
from bgm_jax.errors import InputError
from scipy import ndimage

UNKNOWN = 128  # trimap value of the unknown region, the only pixels any image metric looks at
FOREGROUND = 255
BACKGROUND = 0

# OpenCV's 3x3 "ellipse" is this cross; the supplement calls it a 3x3 circular kernel.
CROSS_3X3 = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)

TRIMAP_READINGS = ("closing", "band")
TRIMAP_LOW, TRIMAP_HIGH, TRIMAP_ITERATIONS = 0.06, 0.96, 10

GRAD_SIGMA = 1.4
CONN_STEP = 0.1
CONN_PHI_THRESHOLD = 0.15

IMAGE_METRIC_UNITS = {
    "SAD": "sum over unknown / 1000",
    "MSE": "x 1e3",
    "Grad": "raw sum",
    "Conn": "raw sum",
    "FG_MSE": "x 1e3",
}
VIDEO_METRIC_UNITS = {"MAD": "x 1e3", "MSE": "x 1e3", "dtSSD": "x 1e2"}


# ---------------------------------------------------------------------------------------------------
# inputs


def to_unit_float32(image: np.ndarray) -> np.ndarray:
    """An alpha or colour image as float32 in [0, 1].

    8-bit images become ``single(x) / 255`` (the MATLAB reference's precision), 16-bit ones
    ``x / 65535``; floating-point images are taken to be in [0, 1] already and only cast.
    """
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image.astype(np.float32) / np.float32(255)
    if image.dtype == np.uint16:
        return image.astype(np.float32) / np.float32(65535)
    if np.issubdtype(image.dtype, np.floating):
        return image.astype(np.float32, copy=False)
    raise InputError(
        f"image of dtype {image.dtype} cannot be scored: pass uint8 (0..255), uint16 (0..65535) "
        "or floating point in [0, 1]"
    )


def unknown_region(trimap: np.ndarray) -> np.ndarray:
    """Boolean mask of the pixels every image metric sums over (``trimap == 128``)."""
    return np.asarray(trimap) == UNKNOWN


def _check_same_shape(**arrays: np.ndarray) -> None:
    shapes = {name: np.shape(a)[:2] for name, a in arrays.items()}
    if len(set(shapes.values())) != 1:
        described = ", ".join(f"{name} {h}x{w}" for name, (h, w) in shapes.items())
        raise InputError(f"images to compare differ in size ({described}); give arrays of one size")


# ---------------------------------------------------------------------------------------------------
# SAD, MSE


def sad(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray) -> float:
    """Sum of absolute alpha differences over the unknown region, divided by 1000 (paper units)."""
    _check_same_shape(pred=pred, gt=gt, trimap=trimap)
    u = unknown_region(trimap)
    diff = to_unit_float32(pred)[u] - to_unit_float32(gt)[u]
    return float(np.abs(diff).sum(dtype=np.float64) / 1000.0)


def mse(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray) -> float:
    """Mean squared alpha error over the unknown region, times 1000 (paper units); NaN if U is empty."""
    _check_same_shape(pred=pred, gt=gt, trimap=trimap)
    u = unknown_region(trimap)
    n = int(u.sum())
    if n == 0:
        return math.nan  # 0/0, as the reference would give
    diff = to_unit_float32(pred)[u] - to_unit_float32(gt)[u]
    return float(np.square(diff, dtype=np.float64).sum() / n * 1e3)


# ---------------------------------------------------------------------------------------------------
# Grad


def gaussian_derivative_half_size(sigma: float = GRAD_SIGMA, epsilon: float = 1e-2) -> int:
    """Half width of the reference's ``gaussgradient`` kernel (4 for sigma 1.4, so 9x9)."""
    return int(math.ceil(sigma * math.sqrt(-2.0 * math.log(math.sqrt(2 * math.pi) * sigma * epsilon))))


def _gaussian_derivative_factors(sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """The two 1-D factors of ``hx = G(u) G'(v) / ||.||``, each normalised to unit L2 norm.

    The Frobenius norm of an outer product is the product of the factors' norms, so normalising each
    factor normalises hx exactly as the reference does.
    """
    half = gaussian_derivative_half_size(sigma)
    x = np.arange(-half, half + 1, dtype=np.float64)
    gauss = np.exp(-(x**2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))
    dgauss = -x * gauss / sigma**2
    return gauss / np.linalg.norm(gauss), dgauss / np.linalg.norm(dgauss)


def gaussian_derivative_kernels(sigma: float = GRAD_SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """The 2-D kernels ``(hx, hy)`` of the reference: ``hx[u, v] = G(u) G'(v)`` over its L2 norm,
    ``hy = hx.T``. Rows index u (vertical offset), columns v (horizontal offset)."""
    gauss, dgauss = _gaussian_derivative_factors(sigma)
    hx = np.outer(gauss, dgauss)
    return hx, hx.T.copy()


def gaussian_gradient(image: np.ndarray, sigma: float = GRAD_SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """``(gx, gy)``: the image convolved with hx and hy, edge-replicated borders (``imfilter``
    'replicate', 'conv').

    Done as two 1-D passes per direction (hx is separable); replicate padding is separable too, so the
    result equals the 2-D convolution up to rounding, at a quarter of the work.
    """
    gauss, dgauss = _gaussian_derivative_factors(sigma)
    image = np.asarray(image, dtype=np.float64)
    smooth_rows = ndimage.convolve1d(image, gauss, axis=0, mode="nearest")
    smooth_cols = ndimage.convolve1d(image, gauss, axis=1, mode="nearest")
    gx = ndimage.convolve1d(smooth_rows, dgauss, axis=1, mode="nearest")
    gy = ndimage.convolve1d(smooth_cols, dgauss, axis=0, mode="nearest")
    return gx, gy


def min_max_normalise(image: np.ndarray) -> np.ndarray:
    """``(x - min) / (max - min)`` in float64 (MATLAB's ``mat2gray``); a constant image becomes ones."""
    image = np.asarray(image, dtype=np.float64)
    lo, hi = image.min(), image.max()
    if hi == lo:
        return np.ones_like(image)
    return (image - lo) / (hi - lo)


def gradient_error(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray, sigma: float = GRAD_SIGMA) -> float:
    """Gradient error: sum over U of the squared difference of Gaussian-gradient magnitudes, raw sum.

    Each alpha is min-max normalised over the whole image before filtering, as the reference does.
    """
    _check_same_shape(pred=pred, gt=gt, trimap=trimap)
    u = unknown_region(trimap)
    amplitudes = []
    for alpha in (pred, gt):
        gx, gy = gaussian_gradient(min_max_normalise(to_unit_float32(alpha)), sigma)
        amplitudes.append(np.hypot(gx[u], gy[u]))
    return float(np.square(amplitudes[0] - amplitudes[1]).sum())


# ---------------------------------------------------------------------------------------------------
# Conn


def _largest_component_of_transposed(mask_t: np.ndarray) -> np.ndarray:
    """Largest 4-connected component of a mask given (and returned) transposed, C-contiguous.

    scipy numbers components in raster order, so on the transpose that is column-major order of the
    image: the order of MATLAB's ``bwconncomp``, whose ``max`` keeps the first of equal sizes, as
    ``argmax`` does here.
    """
    labels_t, count = ndimage.label(mask_t, structure=CROSS_3X3)
    if count == 0:
        return np.zeros_like(mask_t, dtype=bool)  # the reference would fail here; Omega_k is empty
    sizes = np.bincount(labels_t.ravel())
    sizes[0] = 0  # the background label is never a component
    return labels_t == int(np.argmax(sizes))


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of ``mask`` (never the background); empty if mask is empty.

    Ties go to the component whose first pixel comes first in column-major order, as in MATLAB.
    """
    return _largest_component_of_transposed(np.ascontiguousarray(np.asarray(mask, dtype=bool).T)).T


def connectivity_levels(pred: np.ndarray, gt: np.ndarray, step: float = CONN_STEP) -> np.ndarray:
    """The level map ``l`` of the connectivity error, float32, over the whole image.

    For t_k = step * k, every pixel not yet assigned and outside the largest 4-connected component of
    ``(p >= t_k) & (g >= t_k)`` gets ``l = t_{k-1}``; pixels never dropped get 1.
    """
    p, g = to_unit_float32(pred), to_unit_float32(gt)
    # Work on the transpose throughout: the component order needs it, and mixing transposed views
    # with C-ordered arrays would make every elementwise pass stride across memory.
    both_t = np.ascontiguousarray(np.minimum(p, g).T)  # p >= t and g >= t  <=>  min(p, g) >= t
    levels_t = np.full(both_t.shape, -1.0, dtype=np.float32)
    unassigned_t = np.ones(both_t.shape, dtype=bool)
    n_steps = int(round(1.0 / step))
    for k in range(1, n_steps + 1):
        # only 8-bit alphas equal to k/10 can sit near a threshold; in float32 they compare >= t_k,
        # as in the reference (in float64, 153/255 < 0.1*6)
        omega_t = _largest_component_of_transposed(both_t >= step * k)
        dropped_t = unassigned_t & ~omega_t
        levels_t[dropped_t] = step * (k - 1)
        unassigned_t &= omega_t
    levels_t[unassigned_t] = 1.0
    return np.ascontiguousarray(levels_t.T)


def _connectivity_phi(alpha: np.ndarray, levels: np.ndarray) -> np.ndarray:
    d = alpha - levels
    return 1 - d * (d >= CONN_PHI_THRESHOLD)


def connectivity_error(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray, step: float = CONN_STEP) -> float:
    """Connectivity error: sum over U of ``|phi(p) - phi(g)|`` with ``phi = 1 - d [d >= 0.15]``,
    ``d = alpha - l``; raw sum. The components are found over the whole image, not only U."""
    _check_same_shape(pred=pred, gt=gt, trimap=trimap)
    u = unknown_region(trimap)
    levels = connectivity_levels(pred, gt, step)[u]
    phi_pred = _connectivity_phi(to_unit_float32(pred)[u], levels)
    phi_gt = _connectivity_phi(to_unit_float32(gt)[u], levels)
    return float(np.abs(phi_pred - phi_gt).sum(dtype=np.float64))


# ---------------------------------------------------------------------------------------------------
# foreground


def foreground_mse(
    pred_fgr: np.ndarray, gt_fgr: np.ndarray, gt_alpha: np.ndarray, trimap: np.ndarray
) -> float:
    """Foreground MSE, times 1000: ``(1/3) sum_c sum_U ([g > 0] (Fp - Fg))^2 / |U|``.

    Only pixels with some ground-truth alpha count in the numerator, but the denominator is all of U.
    Foregrounds are HxWx3 (uint8, uint16 or float in [0, 1]). NaN if U is empty.
    """
    _check_same_shape(pred_fgr=pred_fgr, gt_fgr=gt_fgr, gt_alpha=gt_alpha, trimap=trimap)
    for name, fgr in (("predicted foreground", pred_fgr), ("ground-truth foreground", gt_fgr)):
        if np.ndim(fgr) != 3 or np.shape(fgr)[2] != 3:
            raise InputError(f"{name} has shape {np.shape(fgr)}; expected HxWx3 colour")
    u = unknown_region(trimap)
    n = int(u.sum())
    if n == 0:
        return math.nan
    visible = (to_unit_float32(gt_alpha)[u] > 0)[:, None]
    diff = (to_unit_float32(pred_fgr)[u] - to_unit_float32(gt_fgr)[u]) * visible
    return float(np.square(diff, dtype=np.float64).sum() / (3 * n) * 1e3)


# ---------------------------------------------------------------------------------------------------
# trimaps


def _erode(mask: np.ndarray, iterations: int) -> np.ndarray:
    # border_value=1: the outside counts as set, so erosion never eats in from the image border
    return ndimage.binary_erosion(mask, CROSS_3X3, iterations=iterations, border_value=1)


def _dilate(mask: np.ndarray, iterations: int) -> np.ndarray:
    return ndimage.binary_dilation(mask, CROSS_3X3, iterations=iterations)


def trimap_from_alpha(gt_alpha: np.ndarray, reading: str = "closing") -> np.ndarray:
    """The supplement's test trimap (uint8: 0 background, 128 unknown, 255 foreground).

    "Threshold the ground-truth alpha between 0.06 and 0.96, then 10 iterations of dilation followed
    by 10 of erosion with a 3x3 circular kernel" has two readings:

    - ``closing``: U = erode(dilate(0.06 < g < 0.96, 10), 10); foreground = g >= 0.96 outside U.
    - ``band``: background = not dilate(g > 0.06, 10); foreground = erode(g >= 0.96, 10); U = the rest.
    """
    if reading not in TRIMAP_READINGS:
        raise InputError(f"unknown trimap reading {reading!r}; use one of {', '.join(TRIMAP_READINGS)}")
    if np.ndim(gt_alpha) != 2:
        raise InputError(f"ground-truth alpha has shape {np.shape(gt_alpha)}; expected a 2-D HxW matte")
    g = to_unit_float32(gt_alpha)
    trimap = np.full(g.shape, BACKGROUND, dtype=np.uint8)
    if reading == "closing":
        unknown = _erode(_dilate((g > TRIMAP_LOW) & (g < TRIMAP_HIGH), TRIMAP_ITERATIONS), TRIMAP_ITERATIONS)
        trimap[(g >= TRIMAP_HIGH) & ~unknown] = FOREGROUND
    else:
        unknown = _dilate(g > TRIMAP_LOW, TRIMAP_ITERATIONS)  # everything not background, for now
        foreground = _erode(g >= TRIMAP_HIGH, TRIMAP_ITERATIONS)
        unknown &= ~foreground
        trimap[foreground] = FOREGROUND
    trimap[unknown] = UNKNOWN
    return trimap


# ---------------------------------------------------------------------------------------------------
# video metrics (whole frame, no trimap), as RobustVideoMatting reports them


def _frames(frames: np.ndarray, name: str) -> np.ndarray:
    frames = to_unit_float32(frames)
    if frames.ndim != 3:
        raise InputError(f"{name} has shape {frames.shape}; expected T x H x W alpha frames")
    return frames


def video_metrics(pred_frames: np.ndarray, gt_frames: np.ndarray) -> dict[str, float]:
    """MAD (x1e3), MSE (x1e3) and dtSSD (x1e2) of one clip, each the mean of its per-frame values.

    ``dtSSD_t = sqrt(sum(((p_t - p_{t-1}) - (g_t - g_{t-1}))^2) / (H W))`` for t >= 1, so the clip
    value is the mean of square roots (NaN for a single frame).
    """
    p, g = _frames(pred_frames, "predicted frames"), _frames(gt_frames, "ground-truth frames")
    if p.shape != g.shape:
        raise InputError(
            f"clips differ in shape: predicted {p.shape} vs ground truth {g.shape} (frames x H x W)"
        )
    if p.shape[0] == 0:
        raise InputError("the clip has no frames")
    diff = p.astype(np.float64) - g
    per_frame_axes = (1, 2)
    mad = np.abs(diff).mean(axis=per_frame_axes) * 1e3
    mse_ = np.square(diff).mean(axis=per_frame_axes) * 1e3
    temporal = diff[1:] - diff[:-1]  # (p_t - p_{t-1}) - (g_t - g_{t-1})
    dtssd = np.sqrt(np.square(temporal).mean(axis=per_frame_axes)) * 1e2
    return {
        "MAD": float(mad.mean()),
        "MSE": float(mse_.mean()),
        "dtSSD": float(dtssd.mean()) if len(dtssd) else math.nan,
    }
