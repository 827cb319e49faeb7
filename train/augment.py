"""On-device training augmentation: the paper supplement's section D.1 as jitted JAX functions.

A key per example (or one for the batch) gives every random parameter of the batch (``sample_params``);
the application is ``vmap``-ed over the batch and runs wherever the arrays live, so a training step can
augment on the accelerator right before the forward pass. Per sample, in the original's order:

1. Foreground and alpha share one warp (affine: rotation, scale, translation, x-shear; horizontal flip;
   the crop), then one box blur and one sharpen; the colour jitter touches the foreground only.
2. The background gets its own warp, blur, sharpen and colour jitter.
3. Shadow: ``alpha * strength`` under its own affine and a large box blur darkens the background behind
   the subject: ``I_bg = clip(B - shadow, 0, 1)``.
4. Composite ``src = pha * fgr + (1 - pha) * I_bg``.
5. Gaussian noise on ``src`` and, independently, on the background the network sees.
6. Misalignment: the background the network sees gets a small extra affine and colour jitter.
7. Optionally (``plate_perturbation_p``, off in the original recipe), the test protocol's plate
   perturbation on the background the network sees: subpixel shift, gamma, noise.

Warps are single resamplings: affine, flip, crop (and, for the network's background, the misalignment)
compose into one 3x3 matrix that maps output pixels back to the input canvas, sampled bilinearly with
fill 0 (zero padding at the canvas edge and outside the valid region). Composing avoids the blur of
resampling twice, and makes the network's misaligned background as sharp as the one in ``src``: were it
resampled a second time, blur alone would tell the network which one was moved.

Crops have a static shape: the size is drawn on the host per step (``sample_crop_hw``) and passed as a
static argument, so every distinct size compiles the augmentation (and the train step) once. See
docs/training.md for the recompilation budget and the differences from the original code.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import dm_pix as pix
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from bgm_jax.errors import InputError

# 3x3 compositions run at full float32 precision: on GPUs the default matmul precision may be TF32, whose
# 10-bit mantissa would move a 2048-pixel coordinate by a pixel or two.
_matmul = functools.partial(jnp.matmul, precision=lax.Precision.HIGHEST)


# --------------------------------------------------------------------------------------------------------
# Configuration


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InputError(message + "; fix the training config")


def _pair(value, name: str, kind: type) -> tuple:
    try:
        low, high = value
        return kind(low), kind(high)
    except (TypeError, ValueError):
        raise InputError(f"AugmentConfig {name} must be a pair (low, high), got {value!r}; fix the training config")


@dataclasses.dataclass(frozen=True)
class AffineRange:
    """Ranges of one random affine transform (uniform draws).

    Attributes:
      rotation: degrees, drawn in [-rotation, rotation].
      scale: (low, high) multiplicative scale.
      translation: per axis, a fraction of the transformed image's size, drawn in [-t, t].
      shear: x-shear in degrees, drawn in [-shear, shear] (the original shears x only).
    """

    rotation: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    translation: float = 0.0
    shear: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "scale", _pair(self.scale, "AffineRange.scale", float))
        _require(self.rotation >= 0, f"AffineRange.rotation must be >= 0 degrees, got {self.rotation}")
        _require(0 <= self.shear < 90, f"AffineRange.shear must be in [0, 90) degrees, got {self.shear}")
        _require(self.translation >= 0, f"AffineRange.translation must be >= 0, got {self.translation}")
        _require(0 < self.scale[0] <= self.scale[1],
                 f"AffineRange.scale must be (low, high) with 0 < low <= high, got {self.scale}")


COLOUR_SEMANTICS = ("torchvision", "kornia")


@dataclasses.dataclass(frozen=True)
class ColourRange:
    """Ranges of one colour jitter, with torchvision's or kornia 0.4.1's ``ColorJitter`` semantics.

    Attributes:
      brightness, contrast, saturation: factors ``f`` drawn in [1 - x, 1 + x].
      hue: shift in turns of the colour wheel, drawn in [-hue, hue].
      semantics: how the factors act (the four adjustments come in a random order in both):
        ``torchvision`` (the original's foreground/background jitter): brightness ``x * f``, contrast a
        blend with the mean grey level, saturation a blend with the grey image;
        ``kornia`` (kornia 0.4.1, the original's background misalignment jitter): brightness **adds**
        ``f - 1``, contrast is a plain gain ``x * f``, saturation scales HSV S by ``f``.
        Hue rotates the HSV hue in both. Every adjustment clamps to [0, 1].
    """

    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    semantics: str = "torchvision"

    def __post_init__(self):
        _require(self.semantics in COLOUR_SEMANTICS,
                 f"ColourRange.semantics must be one of {COLOUR_SEMANTICS}, got {self.semantics!r}")
        for name in ("brightness", "contrast", "saturation"):
            value = getattr(self, name)
            _require(0 <= value <= 1, f"ColourRange.{name} must be in [0, 1] (factor 1 +- {name}), got {value}")
        _require(0 <= self.hue <= 0.5, f"ColourRange.hue must be in [0, 0.5], got {self.hue}")


_NO_AFFINE = AffineRange()
_NO_COLOUR = ColourRange()


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Every range and probability of the augmentation. Defaults: the original's base stage.

    Zero ranges and zero probabilities give the identity (``AugmentConfig.identity()``), apart from the
    composite and the crop, which are always applied.

    Attributes:
      fgr_affine: shared by foreground and alpha; scale is relative to the image fitted to cover the sample.
      fgr_affine_p: share of samples whose foreground and alpha get that affine (default 1, the original);
        the rest keep only the fit, the flip and the crop, which for a layer stored at the sample's size
        resample nothing: its strands stay as sharp as in the stored alpha. Every bilinear warp spreads a
        one-pixel strand over two, so the share of strand pixels above alpha 0.6 in the stage 2t recipe's
        warped samples is half that in the stored ones (docs/training.md, "Sharp foregrounds").
      bgr_affine: the background's own affine (same conventions).
      flip_p: horizontal flip, drawn separately for foreground and background.
      colour: colour jitter of foreground and background (drawn separately).
      blur_p, blur_max_radius: PIL ``BoxBlur`` with an integer radius in [0, max] (box 2r+1).
      sharpen_p: PIL ``SHARPEN`` 3x3 filter.
      noise_p, noise_max_sigma: gaussian noise with sigma = max * U(0, 1), independently on src and bgr.
      misalign_affine_p, misalign_affine: extra affine of the network's background (about the crop centre,
        translation relative to the crop).
      misalign_colour_p, misalign_colour: extra colour jitter of the network's background: p = 0.8 with
        kornia 0.4.1 semantics, as the original code (``paper_misalignment()``: the paper's 30 % with
        torchvision semantics, 4.5x weaker).
      plate_perturbation_p: the supplement's test-time background perturbation (D.2) on the network's
        background, in training: subpixel shift up to +-0.3 px, gamma 0.85..1.15, Gaussian noise of mean
        +-0.02 and standard deviation 0.08..0.15 (``bgm_jax.evaluation.perturb``'s ranges). Not in the
        original recipe (default 0); a model meant to be judged by that protocol learns to ignore such
        plate differences with it.
      shadow_p, shadow_max_strength: shadow = alpha * max * U(0, 1).
      shadow_affine: the shadow's affine (about the crop centre, translation relative to the crop).
      shadow_blur_size: (low, high) box blur size in pixels, both included.
      sample_size: (H, W) of the sample the layer affines produce, before the crop: the original's
        ``RandomAffineAndResize`` output (512 base, 2048 refine). Each image's valid region is fitted to
        cover it. None: the input canvas (the input is then assumed to be stored at that size). Store
        inputs at (at least) this resolution (pipeline fit "native") so that the warp never enlarges a
        shrunk copy: that loses the fine detail (hair) the network must learn.
      crop_size: (low, high) crop height and width, both included, drawn independently.
      crop_multiple: crop sides are multiples of this (4 for the refine stage, whose model needs it).
      crop_sizes_per_side: how many evenly spaced sizes of those (both ends included) a run draws from;
        None (default) for every one, as the original. Each distinct (height, width) compiles the
        augmentation and the train step once: cheap next to a GPU run, slow on a CPU, where a small
        number (a run compiles up to ``crop_sizes_per_side ** 2`` shapes) is the practical choice.
    """

    fgr_affine: AffineRange = AffineRange(rotation=5.0, scale=(0.4, 1.0), translation=0.1, shear=5.0)
    fgr_affine_p: float = 1.0
    bgr_affine: AffineRange = AffineRange(rotation=5.0, scale=(1.0, 2.0), translation=0.1, shear=5.0)
    flip_p: float = 0.5
    colour: ColourRange = ColourRange(brightness=0.15, contrast=0.15, saturation=0.15, hue=0.05)
    blur_p: float = 0.1
    blur_max_radius: int = 5
    sharpen_p: float = 0.1
    noise_p: float = 0.4
    noise_max_sigma: float = 0.03
    misalign_affine_p: float = 0.3
    misalign_affine: AffineRange = AffineRange(rotation=1.0, translation=0.01)
    misalign_colour_p: float = 0.8
    misalign_colour: ColourRange = ColourRange(brightness=0.18, contrast=0.18, saturation=0.18, hue=0.1,
                                               semantics="kornia")
    plate_perturbation_p: float = 0.0
    shadow_p: float = 0.3
    shadow_max_strength: float = 0.3
    shadow_affine: AffineRange = AffineRange(rotation=5.0, scale=(0.5, 1.5), translation=0.2, shear=5.0)
    shadow_blur_size: tuple[int, int] = (20, 39)
    sample_size: tuple[int, int] | None = (512, 512)
    crop_size: tuple[int, int] = (256, 511)
    crop_multiple: int = 1
    crop_sizes_per_side: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "shadow_blur_size", _pair(self.shadow_blur_size, "shadow_blur_size", int))
        object.__setattr__(self, "crop_size", _pair(self.crop_size, "crop_size", int))
        if self.sample_size is not None:
            object.__setattr__(self, "sample_size", _pair(self.sample_size, "sample_size", int))
            _require(min(self.sample_size) >= 1, f"AugmentConfig.sample_size must be positive, got {self.sample_size}")
        for name in ("fgr_affine_p", "flip_p", "blur_p", "sharpen_p", "noise_p", "misalign_affine_p",
                     "misalign_colour_p", "plate_perturbation_p", "shadow_p"):
            value = getattr(self, name)
            _require(0 <= value <= 1, f"AugmentConfig.{name} must be a probability in [0, 1], got {value}")
        _require(self.blur_max_radius >= 0, f"AugmentConfig.blur_max_radius must be >= 0, got {self.blur_max_radius}")
        _require(self.noise_max_sigma >= 0, f"AugmentConfig.noise_max_sigma must be >= 0, got {self.noise_max_sigma}")
        _require(self.shadow_max_strength >= 0,
                 f"AugmentConfig.shadow_max_strength must be >= 0, got {self.shadow_max_strength}")
        low, high = self.shadow_blur_size
        _require(1 <= low <= high, f"AugmentConfig.shadow_blur_size must be (low, high) with 1 <= low <= high, "
                                   f"got {self.shadow_blur_size}")
        low, high = self.crop_size
        _require(1 <= low <= high, f"AugmentConfig.crop_size must be (low, high) with 1 <= low <= high, "
                                   f"got {self.crop_size}")
        m = self.crop_multiple
        _require(m >= 1 and -(-low // m) * m <= high,
                 f"AugmentConfig.crop_multiple ({m}) must be >= 1 with a multiple inside crop_size {self.crop_size}")
        _require(self.crop_sizes_per_side is None or self.crop_sizes_per_side >= 1,
                 f"AugmentConfig.crop_sizes_per_side must be None or >= 1, got {self.crop_sizes_per_side}")

    @classmethod
    def base(cls) -> AugmentConfig:
        """The original's base stage: foreground scale 0.4..1, 512 samples, crops of every size in 256..511."""
        return cls()

    @classmethod
    def refine(cls) -> AugmentConfig:
        """The original's refine stage: foreground scale 0.3..1, 2048 samples, crops of every multiple of 4 in
        1024..2047."""
        return cls(fgr_affine=dataclasses.replace(cls().fgr_affine, scale=(0.3, 1.0)), sample_size=(2048, 2048),
                   crop_size=(1024, 2047), crop_multiple=4)

    def paper_misalignment(self) -> AugmentConfig:
        """This config with the paper's background colour misalignment (supplement D.1: 30 % of samples,
        torchvision semantics) instead of the original code's (80 %, kornia 0.4.1 semantics)."""
        return dataclasses.replace(self, misalign_colour_p=0.3,
                                   misalign_colour=dataclasses.replace(self.misalign_colour, semantics="torchvision"))

    @classmethod
    def identity(cls) -> AugmentConfig:
        """No augmentation: only the composite (and a crop, if one is asked for)."""
        return cls(fgr_affine=_NO_AFFINE, bgr_affine=_NO_AFFINE, flip_p=0.0, colour=_NO_COLOUR, blur_p=0.0,
                   sharpen_p=0.0, noise_p=0.0, misalign_affine_p=0.0, misalign_colour_p=0.0, shadow_p=0.0,
                   sample_size=None)


# --------------------------------------------------------------------------------------------------------
# Random parameters


def sample_params(key: jax.Array, batch_size: int, config: AugmentConfig) -> dict:
    """Every random parameter of a batch, drawn per sample: a pytree of arrays with leading axis ``batch_size``.

    ``key`` is one key for the batch (split into one per example) or already one key per example
    (see ``augment_batch``).

    Parameters of augmentations that were not drawn (probability) are set to their identity value
    (blur radius 0, shadow strength 0, sigma 0, factors 1, ...); the booleans ``flip``, ``sharpen``,
    ``on`` and ``*_on`` say which were drawn. Every parameter has a fixed slot in the sample's stream of
    uniforms, so changing one range or probability in the config leaves every other parameter of the same
    key unchanged.
    """
    return jax.vmap(functools.partial(_sample_one, config=config))(per_example_keys(key, batch_size))


def per_example_keys(key: jax.Array, batch_size: int) -> jax.Array:
    """``key`` split into ``batch_size`` keys, or ``key`` itself if it already holds one key per example:
    shape (batch_size,) for typed keys (``jax.random.key``), (batch_size, 2) for raw ``PRNGKey``s."""
    typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    single_ndim = 0 if typed else 1
    if key.ndim == single_ndim:
        return jax.random.split(key, batch_size)
    if key.ndim == single_ndim + 1 and key.shape[0] == batch_size:
        return key
    raise InputError(f"augment: expected one random key or {batch_size} (one per example), got a key array of "
                     f"shape {key.shape}; pass jax.random.key(...) or a batch of them")


class _Uniforms:
    """U[0, 1) draws handed out in a fixed order from one array: one threefry call per sample instead of
    sixty (which took seconds to compile on a CPU)."""

    SIZE = 72

    def __init__(self, key: jax.Array):
        self._values = jax.random.uniform(key, (self.SIZE,))
        self._used = 0

    def __call__(self, n: int | None = None) -> jax.Array:
        count = 1 if n is None else n
        if self._used + count > self.SIZE:
            raise AssertionError("augment: more random parameters than _Uniforms.SIZE")
        out = self._values[self._used:self._used + count]
        self._used += count
        return out[0] if n is None else out

    def between(self, low: float, high: float, n: int | None = None) -> jax.Array:
        return low + (high - low) * self(n)

    def symmetric(self, half_range: float, n: int | None = None) -> jax.Array:
        return self.between(-half_range, half_range, n)

    def bernoulli(self, p: float) -> jax.Array:
        return self() < p

    def integer(self, low: int, high: int) -> jax.Array:
        """Uniform over low..high, both included."""
        return jnp.minimum(low + jnp.floor(self() * (high - low + 1)), high).astype(jnp.int32)

    def permutation(self, n: int) -> jax.Array:
        return jnp.argsort(self(n)).astype(jnp.int32)


def _sample_one(key: jax.Array, config: AugmentConfig) -> dict:
    uniforms_key, noise_key = jax.random.split(key)
    draw = _Uniforms(uniforms_key)
    params = {
        "fgr": _sample_layer(draw, config.fgr_affine, config),
        "bgr": _sample_layer(draw, config.bgr_affine, config),
        "shadow": _sample_shadow(draw, config),
        "noise": _sample_noise(draw, noise_key, config),
        "misalign": _sample_misalignment(draw, config),
        "plate": _sample_plate_perturbation(draw, config),
    }
    # Drawn last, so that a config without it (fgr_affine_p = 1) draws every other parameter as before.
    affine_on = draw.bernoulli(config.fgr_affine_p)
    params["fgr"]["affine_on"] = affine_on
    params["fgr"]["affine"] = _where_affine(affine_on, params["fgr"]["affine"])
    return params


def _where_affine(on: jax.Array, affine: dict) -> dict:
    """``affine`` where ``on``, else the identity affine."""
    identity = {"rotation": 0.0, "scale": 1.0, "translate": jnp.zeros(2), "shear": 0.0}
    return jax.tree.map(lambda a, b: jnp.where(on, a, b), affine, identity)


def _sample_layer(draw: _Uniforms, affine: AffineRange, config: AugmentConfig) -> dict:
    """Geometry and filters of the foreground (+ alpha) or of the background."""
    return {
        "affine": _sample_affine(draw, affine),
        "flip": draw.bernoulli(config.flip_p),
        "blur_radius": jnp.where(draw.bernoulli(config.blur_p), draw.integer(0, config.blur_max_radius), 0),
        "sharpen": draw.bernoulli(config.sharpen_p),
        "colour": _sample_colour(draw, config.colour),
    }


def _sample_affine(draw: _Uniforms, r: AffineRange) -> dict:
    return {
        "rotation": draw.symmetric(r.rotation),
        "scale": draw.between(*r.scale),
        "translate": draw.symmetric(r.translation, 2),  # (x, y) fractions
        "shear": draw.symmetric(r.shear),
    }


def _sample_colour(draw: _Uniforms, r: ColourRange) -> dict:
    return {
        "brightness": 1.0 + draw.symmetric(r.brightness),
        "contrast": 1.0 + draw.symmetric(r.contrast),
        "saturation": 1.0 + draw.symmetric(r.saturation),
        "hue": draw.symmetric(r.hue),
        # torchvision's ColorJitter applies its four adjustments in a random order.
        "order": draw.permutation(4),
    }


def _sample_shadow(draw: _Uniforms, config: AugmentConfig) -> dict:
    on = draw.bernoulli(config.shadow_p)
    return {
        "on": on,
        "strength": jnp.where(on, draw.between(0.0, config.shadow_max_strength), 0.0),
        "affine": _sample_affine(draw, config.shadow_affine),
        "blur_size": draw.integer(*config.shadow_blur_size),
    }


def _sample_noise(draw: _Uniforms, key: jax.Array, config: AugmentConfig) -> dict:
    on = draw.bernoulli(config.noise_p)
    src_sigma = draw.between(0.0, config.noise_max_sigma)
    bgr_sigma = draw.between(0.0, config.noise_max_sigma)
    return {"on": on, "src_sigma": jnp.where(on, src_sigma, 0.0), "bgr_sigma": jnp.where(on, bgr_sigma, 0.0),
            "key": key}


def _sample_misalignment(draw: _Uniforms, config: AugmentConfig) -> dict:
    affine_on = draw.bernoulli(config.misalign_affine_p)
    affine = _sample_affine(draw, config.misalign_affine)
    colour_on = draw.bernoulli(config.misalign_colour_p)
    colour = _sample_colour(draw, config.misalign_colour)
    no_colour = {"brightness": 1.0, "contrast": 1.0, "saturation": 1.0, "hue": 0.0, "order": colour["order"]}
    return {
        "affine_on": affine_on,
        "affine": _where_affine(affine_on, affine),
        "colour_on": colour_on,
        "colour": jax.tree.map(lambda a, b: jnp.where(colour_on, a, b), colour, no_colour),
    }


def _sample_plate_perturbation(draw: _Uniforms, config: AugmentConfig) -> dict:
    from bgm_jax.evaluation import perturb  # the test protocol's ranges, one definition

    on = draw.bernoulli(config.plate_perturbation_p)
    shift = draw.symmetric(perturb.MAX_SHIFT_PX, 2)
    gamma = draw.between(*perturb.GAMMA_RANGE)
    mean = draw.symmetric(perturb.MAX_NOISE_MEAN)
    std = draw.between(*perturb.NOISE_SPREAD_RANGE)
    return {"on": on, "shift": jnp.where(on, shift, 0.0), "gamma": jnp.where(on, gamma, 1.0),
            "mean": jnp.where(on, mean, 0.0), "std": jnp.where(on, std, 0.0)}


def crop_sizes(config: AugmentConfig) -> np.ndarray:
    """The crop side lengths a run draws from: the multiples of ``config.crop_multiple`` in
    ``config.crop_size`` (both ends included), thinned to ``config.crop_sizes_per_side`` evenly spaced
    ones. Heights and widths are drawn from the same list, so a run has ``len(...) ** 2`` crop shapes."""
    low, high = config.crop_size
    m = config.crop_multiple
    sizes = np.arange(-(-low // m) * m, high + 1, m)
    if config.crop_sizes_per_side is not None and config.crop_sizes_per_side < len(sizes):
        sizes = sizes[np.round(np.linspace(0, len(sizes) - 1, config.crop_sizes_per_side)).astype(int)]
    return sizes


def sample_crop_hw(seed: int, step: int, config: AugmentConfig) -> tuple[int, int]:
    """The crop (height, width) of one training step, drawn on the host.

    Height and width are drawn independently and uniformly from ``crop_sizes(config)``, as the original
    drew each from ``range(lo, hi + 1)`` (rounded down to multiples of 4 for the refine stage). It is a
    function of ``(seed, step)`` only, so every host and device of a step agrees on it, a resumed run
    draws the same sizes, and choosing it needs no device-to-host transfer (which would stall the
    asynchronous dispatch of training steps).
    """
    h, w = np.random.default_rng([int(seed), int(step)]).choice(crop_sizes(config), size=2)
    return int(h), int(w)


# --------------------------------------------------------------------------------------------------------
# Geometry: 3x3 matrices on continuous pixel coordinates (x, y), the centre of pixel (row i, column j) at
# (j + 0.5, i + 0.5). Each maps output coordinates back to input coordinates ("inverse" or "pull" form).


def inverse_affine_matrix(rotation: jax.Array, scale: jax.Array, translate: jax.Array, shear: jax.Array,
                          src_centre: jax.Array, dst_centre: jax.Array) -> jax.Array:
    """Inverse of ``p_dst = scale * R(rotation) @ ShearX(shear) @ (p_src - src_centre) + dst_centre + translate``.

    The forward transform is torchvision's ``F.affine`` (rotation, scale and x-shear about a centre, then a
    translation in pixels) with separate source and destination centres. Angles in degrees, ``translate``
    and centres as (x, y) in pixels.
    """
    theta, phi = jnp.deg2rad(rotation), jnp.deg2rad(shear)
    cos, sin, tan = jnp.cos(theta), jnp.sin(theta), jnp.tan(phi)
    # (scale * R @ ShearX)^-1 = ShearX^-1 @ R^T / scale, written out.
    linear = jnp.stack([jnp.stack([cos - tan * sin, sin + tan * cos]), jnp.stack([-sin, cos])]) / scale
    # Element-wise rather than a matmul (see ``_matmul``).
    offset = src_centre - jnp.sum(linear * (dst_centre + translate)[None, :], axis=1)
    return _affine(linear, offset)


def fitted_affine_inverse(affine: dict, valid_hw: jax.Array, sample_hw: Sequence[int]) -> jax.Array:
    """The layer affine of the original's ``RandomAffineAndResize``, from the sample (``sample_hw``, e.g.
    512x512) back to the stored input.

    The valid region (``valid_hw`` rows and columns from the top left of the input) is scaled to cover
    the sample (as the original resized each native-resolution image to cover the output size), then by
    ``affine["scale"]``, rotated and sheared about its centre, which lands on the sample's centre moved by
    ``affine["translate"]`` times the fitted image size.
    """
    height, width = sample_hw
    valid_h, valid_w = valid_hw[0], valid_hw[1]
    fit = jnp.maximum(height / valid_h, width / valid_w)
    fitted_size = fit * jnp.stack([valid_w, valid_h])
    return inverse_affine_matrix(affine["rotation"], affine["scale"] * fit, affine["translate"] * fitted_size,
                                 affine["shear"], jnp.stack([valid_w, valid_h]) / 2,
                                 jnp.array([width / 2, height / 2], jnp.float32))


def centred_affine_inverse(affine: dict, hw: Sequence[int]) -> jax.Array:
    """An affine of an (h, w) image about its centre, translation relative to its size (torchvision's
    ``RandomAffine``): the shadow's and the misalignment's."""
    h, w = hw
    centre = jnp.array([w / 2, h / 2], jnp.float32)
    return inverse_affine_matrix(affine["rotation"], affine["scale"], affine["translate"] * jnp.array([w, h]),
                                 affine["shear"], centre, centre)


def flip_matrix(flip: jax.Array, width: int) -> jax.Array:
    """Horizontal flip of a ``width``-wide image where ``flip``, else the identity (its own inverse)."""
    flipped = jnp.array([[-1.0, 0.0, width], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], jnp.float32)
    return jnp.where(flip, flipped, jnp.eye(3, dtype=jnp.float32))


def crop_inverse(canvas_hw: Sequence[int], out_hw: Sequence[int]) -> jax.Array:
    """The original's ``random_crop``: resize the sample (``canvas_hw``) to cover ``out_hw``, then crop the centre."""
    (height, width), (h, w) = canvas_hw, out_hw
    zoom = max(h / height, w / width)
    return jnp.array([[1 / zoom, 0, width / 2 - w / (2 * zoom)], [0, 1 / zoom, height / 2 - h / (2 * zoom)],
                      [0, 0, 1]], jnp.float32)


def _affine(linear: jax.Array, offset: jax.Array) -> jax.Array:
    """3x3 homogeneous matrix of ``p -> linear @ p + offset``."""
    top = jnp.concatenate([linear, offset[:, None]], axis=1).astype(jnp.float32)
    return jnp.concatenate([top, jnp.array([[0.0, 0.0, 1.0]], jnp.float32)], axis=0)


def _chain(*matrices: jax.Array) -> jax.Array:
    """``m0 @ m1 @ ...``: the rightmost is applied to coordinates first."""
    return functools.reduce(_matmul, matrices)


def warp_bilinear(image: jax.Array, inverse: jax.Array, out_hw: Sequence[int],
                  valid_hw: jax.Array | None = None) -> jax.Array:
    """Resample an (H, W, C) image onto an ``out_hw`` grid, bilinear, fill 0.

    ``inverse`` (3x3) maps output pixel coordinates to input ones (see ``inverse_affine_matrix``).
    Input pixels outside the canvas or outside ``valid_hw`` (rows, columns from the top left) count as 0,
    so edges fade over one pixel as in ``grid_sample(padding_mode="zeros")``.
    """
    height, width = image.shape[:2]
    if valid_hw is not None:
        image = image * _valid_mask(valid_hw, (height, width))[..., None].astype(image.dtype)
    # A one-pixel zero border, read by the gather's edge clamping: fill 0 with soft edges.
    padded = jnp.pad(image, ((1, 1), (1, 1), (0, 0)))
    h, w = out_hw
    x = (jnp.arange(w, dtype=jnp.float32) + 0.5)[None, :]
    y = (jnp.arange(h, dtype=jnp.float32) + 0.5)[:, None]
    # Element-wise, not a matmul: exact for the identity and free of TF32 on GPUs.
    source_x = inverse[0, 0] * x + inverse[0, 1] * y + inverse[0, 2]
    source_y = inverse[1, 0] * x + inverse[1, 1] * y + inverse[1, 2]
    # Continuous coordinates to array indices (-0.5), into the padded array (+1).
    return _bilinear_gather(padded, source_y + 0.5, source_x + 0.5)


def _bilinear_gather(image: jax.Array, rows: jax.Array, cols: jax.Array) -> jax.Array:
    """Bilinear samples of an (H, W, C) image at fractional (rows, cols), indices clamped to the edge.

    Each of the four neighbours is one gather of whole pixels (all channels at once).
    """
    height, width, channels = image.shape
    flat = image.reshape(height * width, channels)
    row0, col0 = jnp.floor(rows), jnp.floor(cols)
    wy, wx = (rows - row0)[..., None], (cols - col0)[..., None]
    row0, col0 = row0.astype(jnp.int32), col0.astype(jnp.int32)

    def pixel(r, c):
        index = jnp.clip(r, 0, height - 1) * width + jnp.clip(c, 0, width - 1)
        return flat[index]

    top = (1 - wx) * pixel(row0, col0) + wx * pixel(row0, col0 + 1)
    bottom = (1 - wx) * pixel(row0 + 1, col0) + wx * pixel(row0 + 1, col0 + 1)
    return (1 - wy) * top + wy * bottom


def _valid_mask(valid_hw: jax.Array, canvas_hw: Sequence[int]) -> jax.Array:
    rows = jnp.arange(canvas_hw[0]) < valid_hw[0]
    cols = jnp.arange(canvas_hw[1]) < valid_hw[1]
    return rows[:, None] & cols[None, :]


# --------------------------------------------------------------------------------------------------------
# Filters


def box_filter(image: jax.Array, before: jax.Array, after: jax.Array, max_before: int, max_after: int,
               mode: str) -> jax.Array:
    """Mean over the window [i - before, i + after] along rows, then columns, of an (H, W, C) image.

    ``before``/``after`` may be traced (per-sample sizes under vmap) up to the static maxima; ``mode`` is
    the ``jnp.pad`` mode at the image edges.
    """
    for axis in (0, 1):
        image = _box_filter_1d(image, axis, before, after, max_before, max_after, mode)
    return image


def _box_filter_1d(x, axis, before, after, max_before, max_after, mode):
    # A loop over the window's offsets adding shifted copies, the ones outside this sample's window
    # masked out: exact (a one-pixel window is the identity), one small loop body to compile, and
    # element-wise passes that are cheap on any backend (a per-sample depthwise convolution was the
    # slowest part of the augmentation on a CPU).
    n = x.shape[axis]
    pad = [(0, 0)] * x.ndim
    pad[axis] = (max_before, max_after)
    padded = jnp.pad(x, pad, mode=mode)

    def add_shifted(k, total):
        offset = k - max_before
        window = lax.dynamic_slice_in_dim(padded, k, n, axis=axis)
        return total + jnp.where((offset >= -before) & (offset <= after), window, 0.0)

    total = lax.fori_loop(0, max_before + max_after + 1, add_shifted, jnp.zeros_like(x))
    return total / (before + after + 1).astype(x.dtype)


def box_blur(image: jax.Array, radius: jax.Array, max_radius: int) -> jax.Array:
    """PIL's ``ImageFilter.BoxBlur(radius)`` (integer radius, box of 2r+1, edge pixels repeated).
    Radius 0 is the identity."""
    return box_filter(image, radius, radius, max_radius, max_radius, "edge")


def sharpen(image: jax.Array) -> jax.Array:
    """PIL's ``ImageFilter.SHARPEN``: kernel -2 around 32, divided by 16, on an (H, W, C) image in [0, 1].

    PIL leaves the one-pixel border unfiltered and rounds to 8 bits; here the border is kept and the
    result clipped to [0, 1].
    """
    height, width = image.shape[:2]
    padded = jnp.pad(image, ((1, 1), (1, 1), (0, 0)), mode="edge")
    window_sum = sum(padded[dy:dy + height, dx:dx + width] for dy in range(3) for dx in range(3))
    sharpened = (32.0 * image - 2.0 * (window_sum - image)) / 16.0
    interior = jnp.zeros((height, width), bool).at[1:-1, 1:-1].set(True)[..., None]
    return jnp.clip(jnp.where(interior, sharpened, image), 0.0, 1.0)


# --------------------------------------------------------------------------------------------------------
# Colour (torchvision ColorJitter semantics; see docs/training.md for how dm-pix's versions differ)


def adjust_brightness(image: jax.Array, factor: jax.Array) -> jax.Array:
    """Multiply by ``factor`` (torchvision; dm-pix's ``adjust_brightness`` adds a delta instead)."""
    return jnp.clip(image * factor, 0.0, 1.0)


def adjust_contrast(image: jax.Array, factor: jax.Array) -> jax.Array:
    """Blend with the mean grey level of the whole image (torchvision; dm-pix blends each channel with its
    own mean, which shifts colours)."""
    mean = jnp.mean(pix.rgb_to_grayscale(image))
    return jnp.clip(factor * image + (1.0 - factor) * mean, 0.0, 1.0)


def adjust_saturation(image: jax.Array, factor: jax.Array) -> jax.Array:
    """Blend with the grey image (torchvision; dm-pix scales HSV saturation instead)."""
    grey = pix.rgb_to_grayscale(image)
    return jnp.clip(factor * image + (1.0 - factor) * grey, 0.0, 1.0)


def adjust_hue(image: jax.Array, delta: jax.Array) -> jax.Array:
    """Rotate the HSV hue by ``delta`` turns (dm-pix, same as torchvision). Exact identity at 0."""
    return jnp.where(delta == 0, image, jnp.clip(pix.adjust_hue(image, delta), 0.0, 1.0))


def colour_jitter(image: jax.Array, colour: dict, semantics: str = "torchvision") -> jax.Array:
    """``ColorJitter`` on an (H, W, 3) image: the four adjustments in ``colour["order"]``, with
    torchvision's semantics or kornia 0.4.1's (``kornia_colour_jitter``; see ``ColourRange``).

    torchvision:

    Brightness, contrast and saturation are all ``clip(f * x + (1 - f) * reference)`` (reference black, the
    mean grey, the grey image), so each slot is one blend whose factor and reference are picked by index;
    the hue rotation, the costly one, runs once between the blends before and after its slot.
    """
    if semantics == "kornia":
        return kornia_colour_jitter(image, colour)
    order = colour["order"]
    factors = jnp.stack([colour["brightness"], colour["contrast"], colour["saturation"]])
    hue_slot = jnp.argmax(order == 3)

    def blend(x, slot):
        op = order[slot]
        grey = pix.rgb_to_grayscale(x)
        reference = jnp.where(op == 0, 0.0, jnp.where(op == 1, jnp.mean(grey), grey))
        f = factors[jnp.minimum(op, 2)]
        return jnp.clip(f * x + (1.0 - f) * reference, 0.0, 1.0)

    for slot in range(3):  # slot 3 is never before the hue's
        image = jnp.where(slot < hue_slot, blend(image, slot), image)
    image = adjust_hue(image, colour["hue"])
    for slot in range(1, 4):  # nor slot 0 after it
        image = jnp.where(slot > hue_slot, blend(image, slot), image)
    return image


def kornia_colour_jitter(image: jax.Array, colour: dict) -> jax.Array:
    """kornia 0.4.1's ``ColorJitter`` on an (H, W, 3) image, the adjustments in ``colour["order"]``:
    brightness adds ``f - 1``, contrast multiplies by ``f``, saturation scales HSV S by ``f`` (clamped),
    hue rotates HSV H; each result is clamped to [0, 1]. A factor of 1 (shift 0) is the identity."""
    order = colour["order"]

    def adjust(x, op):
        brightness = jnp.clip(x + (colour["brightness"] - 1.0), 0.0, 1.0)
        contrast = jnp.clip(x * colour["contrast"], 0.0, 1.0)
        saturation = jnp.where(colour["saturation"] == 1.0, x,
                               jnp.clip(pix.adjust_saturation(x, colour["saturation"]), 0.0, 1.0))
        hue = adjust_hue(x, colour["hue"])
        return jnp.select([op == 0, op == 1, op == 2], [brightness, contrast, saturation], hue)

    for slot in range(4):
        image = adjust(image, order[slot])
    return image


# --------------------------------------------------------------------------------------------------------
# Shadow, composite, noise


def cast_shadow(pha: jax.Array, strength: jax.Array, affine: dict, blur_size: jax.Array,
                max_blur_size: int) -> jax.Array:
    """The original's shadow: ``pha * strength``, its own affine about the image centre, then kornia's
    ``box_blur`` of ``blur_size`` (even sizes reach one pixel further after than before; reflected edges).
    Returns (H, W, 1), to subtract from the background behind the subject."""
    shadow = warp_bilinear(pha * strength, centred_affine_inverse(affine, pha.shape[:2]), pha.shape[:2])
    before = (blur_size - 1) // 2
    return box_filter(shadow, before, blur_size - 1 - before, (max_blur_size - 1) // 2, max_blur_size // 2,
                      "reflect")


def composite(fgr: jax.Array, pha: jax.Array, bgr: jax.Array) -> jax.Array:
    """``I = pha * fgr + (1 - pha) * bgr``."""
    return pha * fgr + (1.0 - pha) * bgr


def perturb_plate(image: jax.Array, key: jax.Array, plate: dict) -> jax.Array:
    """The test protocol's gamma and noise (D.2) where ``plate["on"]`` (its shift is part of the warp):
    ``clip(image ** gamma + mean + std * N(0, 1))``. Off, the identity."""
    noisy = jnp.clip(jnp.clip(image, 0.0, 1.0) ** plate["gamma"] + plate["mean"]
                     + plate["std"] * jax.random.normal(key, image.shape, image.dtype), 0.0, 1.0)
    return jnp.where(plate["on"], noisy, image)


def add_noise(image: jax.Array, key: jax.Array, sigma: jax.Array) -> jax.Array:
    """Gaussian noise of standard deviation ``sigma``, clipped to [0, 1]. Sigma 0 is the identity."""
    return jnp.clip(image + sigma * jax.random.normal(key, image.shape, image.dtype), 0.0, 1.0)


# --------------------------------------------------------------------------------------------------------
# Entry point


def augment_batch(key: jax.Array, fgr: jax.Array, pha: jax.Array, bgr: jax.Array,
                  config: AugmentConfig = AugmentConfig(), *, crop_hw: Sequence[int] | None = None,
                  fgr_valid_hw: jax.Array | None = None, bgr_valid_hw: jax.Array | None = None) -> dict:
    """Augment a batch on the device and composite the network's input.

    Args:
      key: one JAX random key for the batch, or one per example (shape (B,), or (B, 2) for raw keys); the
        result is a deterministic function of the keys and the inputs. With one key per example derived
        from its global index, an example is augmented the same way however the batch is split across
        devices.
      fgr: (B, H, W, 3) foregrounds, float in [0, 1] (uint8 is converted).
      pha: (B, H, W, 1) alphas on the same canvas.
      bgr: (B, H, W, 3) backgrounds on the same canvas.
      config: ranges and probabilities (static: each distinct config compiles once).
      crop_hw: static (h, w) of the output, e.g. from ``sample_crop_hw``; None: no crop, the output is
        the sample (``config.sample_size``, or the canvas when that is None). Each distinct value
        compiles once.
      fgr_valid_hw, bgr_valid_hw: optional (B, 2) rows/columns of image data from the top left, as the
        input pipeline's ``*_valid_hw``; the rest of the canvas is padding, treated as fill. Default: the
        whole canvas.

    Returns:
      ``{"src", "bgr", "fgr", "pha"}``, float32 (B, h, w, C): the composite input, the background the
      network sees (misaligned, never shadowed), and the foreground and alpha targets.
    """
    fgr, pha, bgr = (_as_unit_float(x) for x in (fgr, pha, bgr))
    _check_batch(fgr, pha, bgr)
    if crop_hw is not None:
        crop_hw = tuple(int(v) for v in crop_hw)
        _require(len(crop_hw) == 2 and min(crop_hw) >= 1, f"crop_hw must be (height, width) >= 1, got {crop_hw}")
    batch, height, width = fgr.shape[:3]
    whole = jnp.broadcast_to(jnp.array([height, width], jnp.float32), (batch, 2))
    fgr_valid_hw = whole if fgr_valid_hw is None else jnp.asarray(fgr_valid_hw, jnp.float32)
    bgr_valid_hw = whole if bgr_valid_hw is None else jnp.asarray(bgr_valid_hw, jnp.float32)
    return _augment_batch(key, fgr, pha, bgr, fgr_valid_hw, bgr_valid_hw, config=config, crop_hw=crop_hw)


@functools.partial(jax.jit, static_argnames=("config", "crop_hw"))
def _augment_batch(key, fgr, pha, bgr, fgr_valid_hw, bgr_valid_hw, *, config, crop_hw):
    if crop_hw is not None:
        out_hw = crop_hw
    else:
        out_hw = fgr.shape[1:3] if config.sample_size is None else config.sample_size
    params = sample_params(key, fgr.shape[0], config)
    augment_one = functools.partial(_augment_one, out_hw=out_hw, config=config)
    return jax.vmap(augment_one)(params, fgr, pha, bgr, fgr_valid_hw, bgr_valid_hw)


def _augment_one(p, fgr, pha, bgr, fgr_valid_hw, bgr_valid_hw, *, out_hw, config: AugmentConfig) -> dict:
    # Geometry lives on the sample (the original's RandomAffineAndResize output); the stored canvas only
    # holds the images, at their own resolution.
    sample_hw = fgr.shape[:2] if config.sample_size is None else config.sample_size
    crop = crop_inverse(sample_hw, out_hw)

    fg_to_input = _chain(fitted_affine_inverse(p["fgr"]["affine"], fgr_valid_hw, sample_hw),
                         flip_matrix(p["fgr"]["flip"], sample_hw[1]), crop)
    rgba = warp_bilinear(jnp.concatenate([fgr, pha], axis=-1), fg_to_input, out_hw, fgr_valid_hw)
    rgba = _blur_and_sharpen(rgba, p["fgr"], config)
    fgr_out, pha_out = colour_jitter(rgba[..., :3], p["fgr"]["colour"], config.colour.semantics), rgba[..., 3:]

    # Two views of the background in one go: behind the subject in src, and as the network sees it
    # (misaligned). Same filters and colours; the misalignment joins the warp instead of resampling again.
    bg_to_input = _chain(fitted_affine_inverse(p["bgr"]["affine"], bgr_valid_hw, sample_hw),
                         flip_matrix(p["bgr"]["flip"], sample_hw[1]), crop)
    misalign = centred_affine_inverse(p["misalign"]["affine"], out_hw)

    def background_view(to_input):
        view = _blur_and_sharpen(warp_bilinear(bgr, to_input, out_hw, bgr_valid_hw), p["bgr"], config)
        return colour_jitter(view, p["bgr"]["colour"], config.colour.semantics)

    plate_shift = _affine(jnp.eye(2), -p["plate"]["shift"])  # content moves by +shift (x, y) pixels
    behind, seen = jax.vmap(background_view)(
        jnp.stack([bg_to_input, _chain(bg_to_input, misalign, plate_shift)]))

    shadow = cast_shadow(pha_out, p["shadow"]["strength"], p["shadow"]["affine"], p["shadow"]["blur_size"],
                         config.shadow_blur_size[1])
    src = composite(fgr_out, pha_out, jnp.clip(behind - shadow, 0.0, 1.0))

    src_key, bgr_key, plate_key = jax.random.split(p["noise"]["key"], 3)
    src = add_noise(src, src_key, p["noise"]["src_sigma"])
    seen = add_noise(seen, bgr_key, p["noise"]["bgr_sigma"])
    seen = colour_jitter(seen, p["misalign"]["colour"], config.misalign_colour.semantics)
    seen = perturb_plate(seen, plate_key, p["plate"])
    return {"src": src, "bgr": seen, "fgr": fgr_out, "pha": pha_out}


def _blur_and_sharpen(image: jax.Array, layer: dict, config: AugmentConfig) -> jax.Array:
    image = box_blur(image, layer["blur_radius"], config.blur_max_radius)
    return jnp.where(layer["sharpen"], sharpen(image), image)


def _as_unit_float(x) -> jax.Array:
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.integer):
        return x.astype(jnp.float32) / 255.0
    return x.astype(jnp.float32)


def _check_batch(fgr: jax.Array, pha: jax.Array, bgr: jax.Array) -> None:
    expected = {"fgr": 3, "pha": 1, "bgr": 3}
    for name, x in (("fgr", fgr), ("pha", pha), ("bgr", bgr)):
        _require_shape(x.ndim == 4 and x.shape[-1] == expected[name],
                       f"augment_batch: {name} must be (batch, height, width, {expected[name]}), got {x.shape}")
    _require_shape(fgr.shape[:3] == pha.shape[:3] == bgr.shape[:3],
                   f"augment_batch: fgr {fgr.shape}, pha {pha.shape} and bgr {bgr.shape} must share batch and canvas")


def _require_shape(condition: bool, message: str) -> None:
    if not condition:
        raise InputError(message + "; batch the input pipeline's arrays as (batch, height, width, channels)")

