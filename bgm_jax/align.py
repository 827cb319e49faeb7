"""Align a background plate to a source image taken from a slightly different position (handheld
shots), as the original's ``--preprocess-alignment`` did.

ORB features in both images, brute-force Hamming matches, the best 15% of matches by distance, a RANSAC
homography from background to source, the background warped onto the source's grid; where the warped
plate does not reach (the source's borders) the source's own pixels are used, so the model sees
"no difference" there instead of black.

Needs OpenCV, an optional extra: ``pip install 'bgm-jax[align]'`` (opencv-python-headless).

    from bgm_jax.align import align_background
    bgr_aligned = align_background(src, bgr)      # uint8 HxWx3 RGB in, uint8 HxWx3 out at src's size
"""

from __future__ import annotations

import logging

import numpy as np

from bgm_jax.errors import InputError

log = logging.getLogger(__name__)

KEEP_FRACTION = 0.15  # share of matches kept, best first (the original's choice)
MIN_MATCHES = 4  # a homography needs four point pairs


def require_opencv():
    """The ``cv2`` module, or an InputError saying how to install it."""
    try:
        import cv2
    except ImportError:
        raise InputError(
            "background alignment needs OpenCV, an optional extra: pip install 'bgm-jax[align]' "
            "(or pip install opencv-python-headless)"
        ) from None
    return cv2


def estimate_homography(src: np.ndarray, bgr: np.ndarray, *, max_features: int = 500,
                        keep_fraction: float = KEEP_FRACTION) -> np.ndarray | None:
    """The 3x3 homography taking background pixel coordinates to source ones, or None when too few
    features match (flat or very different images)."""
    cv2 = require_opencv()
    orb = cv2.ORB_create(nfeatures=max_features)
    points_src, features_src = orb.detectAndCompute(cv2.cvtColor(src, cv2.COLOR_RGB2GRAY), None)
    points_bgr, features_bgr = orb.detectAndCompute(cv2.cvtColor(bgr, cv2.COLOR_RGB2GRAY), None)
    if features_src is None or features_bgr is None:
        return None
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
    matches = sorted(matcher.match(features_bgr, features_src), key=lambda m: m.distance)
    matches = matches[: max(MIN_MATCHES, int(len(matches) * keep_fraction))]
    if len(matches) < MIN_MATCHES:
        return None
    from_bgr = np.float32([points_bgr[m.queryIdx].pt for m in matches])
    to_src = np.float32([points_src[m.trainIdx].pt for m in matches])
    homography, _ = cv2.findHomography(from_bgr, to_src, cv2.RANSAC)
    return homography


def align_background(src: np.ndarray, bgr: np.ndarray, **options) -> np.ndarray:
    """``bgr`` warped onto ``src`` (both uint8 HxWx3 RGB; sizes may differ), outside filled from ``src``.

    When no homography can be estimated the background is returned unchanged (resized to the source
    if needed) with a warning: matting then proceeds as without alignment.
    """
    cv2 = require_opencv()
    height, width = src.shape[:2]
    homography = estimate_homography(src, bgr, **options)
    if homography is None:
        log.warning("background alignment found too few matching features; using the background as it is")
        if bgr.shape[:2] != (height, width):
            return cv2.resize(bgr, (width, height), interpolation=cv2.INTER_LINEAR)
        return bgr
    warped = cv2.warpPerspective(bgr, homography, (width, height), flags=cv2.INTER_LINEAR)
    # Nearest-neighbour warp of an all-ones plate: 1 exactly where background pixels landed.
    reached = cv2.warpPerspective(np.ones(bgr.shape[:2], np.uint8), homography, (width, height),
                                  flags=cv2.INTER_NEAREST) == 1
    return np.where(reached[..., None], warped, src)
