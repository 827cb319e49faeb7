"""Scoring one prediction against its ground truth, in the paper's units (Table 1).

:func:`quantize_alpha` (8 bits by rounding, by truncation as the original saved its outputs, or
float), :func:`crop_to_multiple_of_4` (the size the model processes) and :func:`score_sample`.
"""

from __future__ import annotations

import numpy as np
from bgm_jax.errors import InputError
from bgm_jax.evaluation import metrics
from bgm_jax.model_spec import REFINE_SIZE_MULTIPLE

QUANTIZE_MODES = ("round", "floor", "none")
ALPHA_METRICS = ("SAD", "MSE", "Grad", "Conn")
FOREGROUND_METRIC = "FG_MSE"
CROP_NOTE = "top-left to multiples of 4"


def quantize_alpha(image: np.ndarray, mode: str = "round") -> np.ndarray:
    """A predicted alpha (or foreground) as the evaluation sees it.

    8-bit input is already quantised and is returned unchanged. Otherwise the values (16-bit integers
    scaled by 1/65535, or floats) are clipped to [0, 1] and then

    - ``round``: ``rint(255 x)`` to uint8 (half to even, like ``torch.round``);
    - ``floor``: ``floor(255 x)`` to uint8, which is what the original's ``(x * 255).byte()`` saved;
    - ``none``: kept as float32, scored at full precision.

    The products are taken in float32, as the original computed them.
    """
    if mode not in QUANTIZE_MODES:
        raise InputError(f"unknown quantisation {mode!r}; use one of {', '.join(QUANTIZE_MODES)}")
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    unit = np.clip(metrics.to_unit_float32(image), 0.0, 1.0)
    if mode == "none":
        return unit
    scaled = unit * np.float32(255)
    return (np.rint(scaled) if mode == "round" else np.floor(scaled)).astype(np.uint8)


def crop_to_multiple_of_4(image: np.ndarray) -> np.ndarray:
    """The top-left ``(H // 4 * 4) x (W // 4 * 4)`` part, the size the model can process."""
    h, w = np.shape(image)[:2]
    return image[: h - h % REFINE_SIZE_MULTIPLE, : w - w % REFINE_SIZE_MULTIPLE]


def score_sample(
    pred_alpha: np.ndarray,
    gt_alpha: np.ndarray,
    trimap: np.ndarray | str,
    pred_fgr: np.ndarray | None = None,
    gt_fgr: np.ndarray | None = None,
) -> dict[str, float]:
    """All image metrics of one sample, in the paper's units.

    ``pred_alpha``/``gt_alpha`` are HxW (uint8 as stored, or float in [0, 1] for unquantised
    predictions). ``trimap`` is an HxW uint8 trimap (128 = unknown) or the name of a reading
    (``"closing"``/``"band"``) to generate from the ground truth. With ``pred_fgr`` and ``gt_fgr``
    (HxWx3) the result also has ``FG_MSE``. Every array is first cropped top-left to multiples of 4, so
    a prediction cropped that way scores against an uncropped ground truth; sizes that still differ
    raise :class:`InputError`. A trimap given by name is generated after cropping.
    """
    if (pred_fgr is None) != (gt_fgr is None):
        raise InputError("foreground MSE needs both the predicted and the ground-truth foreground; give both or neither")
    for name, alpha in (("predicted alpha", pred_alpha), ("ground-truth alpha", gt_alpha)):
        if np.ndim(alpha) != 2:
            raise InputError(f"{name} has shape {np.shape(alpha)}; expected a 2-D HxW matte")
    pred_alpha, gt_alpha = crop_to_multiple_of_4(pred_alpha), crop_to_multiple_of_4(gt_alpha)
    if gt_alpha.size == 0:
        raise InputError(f"ground-truth alpha is smaller than 4x4 ({np.shape(gt_alpha)} after cropping)")
    if isinstance(trimap, str):
        trimap = metrics.trimap_from_alpha(gt_alpha, trimap)
    elif np.ndim(trimap) != 2:
        raise InputError(f"trimap has shape {np.shape(trimap)}; expected a 2-D HxW map with 128 = unknown")
    else:
        trimap = crop_to_multiple_of_4(np.asarray(trimap))
    arrays = {"predicted alpha": pred_alpha, "ground-truth alpha": gt_alpha, "trimap": trimap}
    if pred_fgr is not None:
        arrays["predicted foreground"] = pred_fgr = crop_to_multiple_of_4(pred_fgr)
        arrays["ground-truth foreground"] = gt_fgr = crop_to_multiple_of_4(gt_fgr)
    sizes = {name: np.shape(a)[:2] for name, a in arrays.items()}
    if len(set(sizes.values())) != 1:
        described = ", ".join(f"{name} {h}x{w}" for name, (h, w) in sizes.items())
        raise InputError(f"sizes differ after cropping to multiples of 4: {described}")

    scores = {
        "SAD": metrics.sad(pred_alpha, gt_alpha, trimap),
        "MSE": metrics.mse(pred_alpha, gt_alpha, trimap),
        "Grad": metrics.gradient_error(pred_alpha, gt_alpha, trimap),
        "Conn": metrics.connectivity_error(pred_alpha, gt_alpha, trimap),
    }
    if pred_fgr is not None:
        scores[FOREGROUND_METRIC] = metrics.foreground_mse(pred_fgr, gt_fgr, gt_alpha, trimap)
    return scores
