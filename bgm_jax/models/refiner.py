"""The refiner: selects error-prone 4x4 patches and refines them at full resolution.

Everything is static-shaped so it compiles once per input size:

- ``select_patches`` takes ``lax.top_k`` of the quarter-resolution error per image (k fixed at trace time)
  and returns the cell indices with a validity mask (``prevent_oversampling`` masks cells with zero error;
  thresholding masks cells at or below the threshold).
- ``crop_patches`` gathers the 8x8 half- and full-resolution windows around each cell (one windowed gather).
- ``replace_patches`` writes the refined 4x4 blocks back into the bilinearly upsampled coarse output with
  one windowed scatter over unique cells; invalid slots write back the value already there.
  Why these formulations (and top-k) suit GPUs: docs/benchmarks.md, "The refiner on GPUs".

Which strategy a mode uses (see ``Refiner.__call__``):

=============  ======================================  =============================================
mode           eval (``train=False``)                  train
=============  ======================================  =============================================
full           every pixel, convs over the image       same
sampling       top-k patches, k = sample_pixels // 16  same; BatchNorm statistics over the valid
               (k >= cells: full + mask)               patches only (as the original, which drops them)
thresholding   full + mask ``err > threshold``:        top-k patches with a static capacity
               exact for any number of cells           (``threshold_capacity``, default
               (or top-k capacity if one is set)       sample_pixels // 16), masked by ``err > threshold``
=============  ======================================  =============================================

"full + mask" is exact in eval because BatchNorm uses running statistics: a refined cell depends only on
its 8x8 window, which the full-image convolutions see identically (zero padding at the borders). So in
eval, a top-k selection covering more than ``dense_fraction`` of the cells (default 0.2) is also refined
that way: an overlapping 8x8 patch costs about five times the convolution work of its cell in the
full-image pass.
Beyond the capacity, thresholding with top-k refines the ``capacity`` cells with the largest error and
leaves the remaining above-threshold cells at the upsampled coarse output.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from bgm_jax.models.layers import (
    BatchNorm,
    conv_factory,
    resize_bilinear,
    torch_default_bias_init,
    upsample_nearest_2x,
)

from bgm_jax.model_spec import REFINE_MODES

Dtype = Any


def select_patches(err_q: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """Top-``k`` cells of the quarter-resolution error map ``err_q`` (B, Hq, Wq, 1) per image.

    Returns ``(values, indices)``, each (B, k), indices flattened over (Hq, Wq). Ties are broken
    towards the lower index (``lax.top_k``), which can differ from ``torch.topk`` only among cells of
    exactly equal error at the k-th place.
    """
    flat = err_q.reshape(err_q.shape[0], -1)
    return lax.top_k(flat, k)


def cell_windows(indices: jax.Array, grid_width: int, cell: int) -> jax.Array:
    """Start corners (B * k, 4) = (image, row, column, channel 0) of the windows of flat cell ``indices``
    (B, k) on a grid ``grid_width`` cells wide, where one cell spans ``cell`` pixels."""
    rows = (indices // grid_width) * cell
    cols = (indices % grid_width) * cell
    batch = jnp.broadcast_to(jnp.arange(indices.shape[0], dtype=indices.dtype)[:, None], indices.shape)
    return jnp.stack([batch, rows, cols, jnp.zeros_like(indices)], axis=-1).reshape(-1, 4)


# Whole-channel windows of one image at each start corner: one batched gather (or scatter) for every
# patch of every image, which XLA emits as a single kernel on GPUs.
_WINDOW_GATHER = lax.GatherDimensionNumbers(offset_dims=(1, 2, 3), collapsed_slice_dims=(0,),
                                            start_index_map=(0, 1, 2, 3))
_WINDOW_SCATTER = lax.ScatterDimensionNumbers(update_window_dims=(1, 2, 3), inserted_window_dims=(0,),
                                              scatter_dims_to_operand_dims=(0, 1, 2, 3))
_IN_BOUNDS = lax.GatherScatterMode.PROMISE_IN_BOUNDS  # every window lies inside the (padded) image


def crop_patches(x: jax.Array, indices: jax.Array, grid_width: int, cell: int, pad: int) -> jax.Array:
    """Crop a (cell + 2 pad)-sized square around each selected cell.

    ``x`` is (B, H, W, C) at a resolution where one quarter-resolution cell spans ``cell`` pixels;
    ``indices`` (B, k) are flat cell indices on a grid ``grid_width`` cells wide. The window of cell (r, c)
    covers rows ``[cell*r - pad, cell*r + cell + pad)`` (zeros outside the image), likewise columns.
    Returns (B, k, size, size, C), from one batched gather.
    """
    if pad:
        x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    size = cell + 2 * pad
    starts = cell_windows(indices, grid_width, cell)
    patches = lax.gather(x, starts, _WINDOW_GATHER, (1, size, size, x.shape[-1]), mode=_IN_BOUNDS)
    return patches.reshape(*indices.shape, size, size, x.shape[-1])


def replace_patches(x: jax.Array, patches: jax.Array, indices: jax.Array, valid: jax.Array) -> jax.Array:
    """Write refined 4x4 ``patches`` (B, k, 4, 4, C) into ``x`` (B, H, W, C) at cells ``indices`` (B, k).

    Slots with ``valid`` False keep what ``x`` already holds. Indices are unique per image (top-k), so
    one windowed scatter writes each cell once, in place and without atomics, and the image is never
    reordered into a cell view (two full-resolution transposes fewer).
    """
    starts = cell_windows(indices, x.shape[2] // 4, 4)
    keep = lax.gather(x, starts, _WINDOW_GATHER, (1, 4, 4, x.shape[-1]), mode=_IN_BOUNDS)
    new = jnp.where(valid.reshape(-1, 1, 1, 1), patches.reshape(keep.shape).astype(x.dtype), keep)
    return lax.scatter(x, starts, new, _WINDOW_SCATTER, unique_indices=True, mode=_IN_BOUNDS)


def selection_map(indices: jax.Array, valid: jax.Array, num_cells: int) -> jax.Array:
    """0/1 map (B, num_cells) with the valid selected cells set."""
    batch = jnp.arange(indices.shape[0])[:, None]
    return jnp.zeros((indices.shape[0], num_cells), valid.dtype).at[batch, indices].set(valid)


def check_refiner_settings(mode: str, kernel_size: int, sample_pixels: int, threshold_capacity: int | None,
                           prefix: str = "") -> None:
    """The refiner's settings, checked once for ``Refiner`` and for ``MattingRefine`` (which takes them as
    ``refine_*`` fields: ``prefix="refine_"``): a ValueError naming the field and what it accepts."""
    if mode not in REFINE_MODES:
        raise ValueError(f"unknown refine mode {mode!r} ({prefix}mode); expected one of {REFINE_MODES}")
    if kernel_size not in (1, 3):
        raise ValueError(f"{prefix}kernel_size must be 1 or 3, got {kernel_size}")
    if sample_pixels < 0:
        raise ValueError(f"{prefix}sample_pixels must be >= 0, got {sample_pixels}")
    if threshold_capacity is not None and threshold_capacity < 0:
        raise ValueError(f"{prefix}threshold_capacity must be >= 0 or None, got {threshold_capacity}")


class Refiner(nn.Module):
    """Refines the coarse output at full resolution.

    Called with full-resolution ``src``, ``bgr`` (B, H, W, 3), H and W multiples of 4, and the coarse
    ``pha`` (1 ch), ``fgr`` residual (3), ``err`` (1), ``hid`` (32). Returns ``(pha, fgr_residual, ref)``
    at (H, W) and the quarter-resolution selection map ``ref`` (B, H/4, W/4, 1).
    """

    mode: str = "sampling"
    sample_pixels: int = 80_000
    threshold: float = 0.1
    kernel_size: int = 3
    prevent_oversampling: bool = True
    threshold_capacity: int | None = None
    dense_fraction: float = 0.2
    dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None

    def __post_init__(self):
        check_refiner_settings(self.mode, self.kernel_size, self.sample_pixels, self.threshold_capacity)
        super().__post_init__()

    @nn.compact
    def __call__(self, src, bgr, pha, fgr, err, hid, train: bool = False):
        k = self.kernel_size
        conv = conv_factory(self.dtype)
        # BatchNorm over the selected patches only, with exact cross-replica statistics.
        norm = functools.partial(
            BatchNorm, use_running_average=not train, axis_name=self.bn_axis_name, dtype=self.dtype
        )
        conv1 = conv(24, (k, k), name="conv1")
        bn1 = norm(name="bn1")
        conv2 = conv(16, (k, k), name="conv2")
        bn2 = norm(name="bn2")
        conv3 = conv(12, (k, k), name="conv3")
        bn3 = norm(name="bn3")
        conv4 = conv(4, (k, k), use_bias=True, bias_init=torch_default_bias_init(12 * k * k), name="conv4")

        def first_stage(x, mask=None):
            x = nn.relu(bn1(conv1(x), mask=mask))
            return nn.relu(bn2(conv2(x), mask=mask))

        def second_stage(x, y, mask=None):
            x = jnp.concatenate([x, y], axis=-1)
            return conv4(nn.relu(bn3(conv3(x), mask=mask)))

        batch, height, width, _ = src.shape
        hq, wq = height // 4, width // 4
        num_cells = hq * wq
        src_bgr = jnp.concatenate([src, bgr], axis=-1)
        # conv1 input order: [hid(32), pha(1), fgr residual(3), src(3), bgr(3)] at half resolution.
        half = jnp.concatenate(
            [
                resize_bilinear(jnp.concatenate([hid, pha, fgr], axis=-1), (height // 2, width // 2)),
                resize_bilinear(src_bgr, (height // 2, width // 2)),
            ],
            axis=-1,
        )

        def refine_full():
            """The refiner's convs over the whole image: (B, H, W, 4)."""
            x, y = half, src_bgr
            if k == 3:
                x = jnp.pad(x, ((0, 0), (3, 3), (3, 3), (0, 0)))
                y = jnp.pad(y, ((0, 0), (2, 2), (2, 2), (0, 0)))
            return second_stage(upsample_nearest_2x(first_stage(x)), y)

        def split(out, ref):
            return out[..., :1], out[..., 1:], ref.reshape(batch, hq, wq, 1).astype(src.dtype)

        if self.mode == "full":
            return split(refine_full(), jnp.ones((batch, num_cells), src.dtype))

        err_q = resize_bilinear(err, (hq, wq))
        coarse = resize_bilinear(jnp.concatenate([pha, fgr], axis=-1), (height, width))

        if self.mode == "sampling":
            capacity = min(self.sample_pixels // 16, num_cells)
            floor = 0.0 if self.prevent_oversampling else None
            # k >= cells selects every cell: the full-image convs plus a mask give the identical result
            # in eval without sorting all cells (and without the original's crash).
            dense = not train and capacity == num_cells
        else:
            capacity = self.threshold_capacity
            if capacity is None:
                capacity = self.sample_pixels // 16
            capacity = min(capacity, num_cells)
            floor = self.threshold
            dense = not train and self.threshold_capacity is None

        if dense:
            if floor is None:
                return split(refine_full(), jnp.ones((batch, num_cells), src.dtype))
            mask = err_q > floor
            mask_full = jnp.repeat(jnp.repeat(mask, 4, axis=1), 4, axis=2)
            return split(jnp.where(mask_full, refine_full(), coarse), mask)

        if capacity == 0:
            return split(coarse, jnp.zeros((batch, num_cells), src.dtype))

        values, indices = select_patches(err_q, capacity)
        valid = values > floor if floor is not None else jnp.ones(values.shape, bool)
        selected = selection_map(indices, valid, num_cells)

        if not train and capacity > self.dense_fraction * num_cells:
            # A large selection is cheaper through the full-image convs (about 1/5 of the work per cell
            # of an overlapping 8x8 patch), masked to the selected cells: identical in eval.
            mask = selected.reshape(batch, hq, wq, 1)
            mask_full = jnp.repeat(jnp.repeat(mask, 4, axis=1), 4, axis=2)
            return split(jnp.where(mask_full, refine_full(), coarse), selected)

        pad_half, pad_full = (3, 2) if k == 3 else (0, 0)
        x = crop_patches(half, indices, wq, cell=2, pad=pad_half)
        y = crop_patches(src_bgr, indices, wq, cell=4, pad=pad_full)
        x = x.reshape((-1,) + x.shape[2:])
        y = y.reshape((-1,) + y.shape[2:])
        # BatchNorm statistics over the selected patches only, as the original (which drops the others).
        mask = valid.reshape(-1, 1, 1, 1) if train else None
        patches = second_stage(upsample_nearest_2x(first_stage(x, mask)), y, mask)
        patches = patches.reshape(batch, capacity, 4, 4, 4)
        out = replace_patches(coarse, patches, indices, valid)
        return split(out, selected)
