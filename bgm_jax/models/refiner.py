"""The refiner: selects error-prone 4x4 patches and refines them at full resolution.

Everything is static-shaped so it compiles once per input size:

- ``select_patches`` takes ``lax.top_k`` of the quarter-resolution error per image (k fixed at trace time)
  and returns the cell indices with a validity mask (``prevent_oversampling`` masks cells with zero error;
  thresholding masks cells at or below the threshold).
- ``crop_patches`` gathers the 8x8 half- and full-resolution windows around each cell (one windowed gather).
- ``replace_patches`` writes the refined 4x4 blocks into the finished (clipped) upsampled coarse output
  with one windowed scatter over unique cells; invalid slots write back the value already there.
  Why these formulations (and top-k) suit GPUs: docs/benchmarks.md, "The refiner on GPUs".

Which strategy a mode uses (see ``Refiner.__call__``):

=============  ======================================  =============================================
mode           eval (``train=False``)                  train
=============  ======================================  =============================================
full           every pixel, convs over the image       same
sampling       top-k cells, k = sample_pixels // 16,   top-k patches; BatchNorm statistics over the
               refined by ``patch_strategy``           valid patches only (as the original, which
               (k >= cells: convs over the image)      drops them); ``train_patch_strategy``
thresholding   convs over the image, masked to         top-k patches with a static capacity
               ``err > threshold``: exact for any      (``threshold_capacity``, default
               number of cells (or top-k capacity      sample_pixels // 16), masked by ``err > threshold``
               if one is set)
=============  ======================================  =============================================

In eval BatchNorm uses running statistics, so a refined cell depends only on its 8x8 window, which
convolutions over the whole image see identically (zero padding at the borders). A top-k selection can
therefore be refined three ways with the same result (``PATCH_STRATEGIES``):

- ``patches``: both stages on each cell's overlapping 8x8 window (the original's way);
- ``hybrid``: the first stage (conv1, conv2, at half resolution) over the whole image, the second
  (conv3, conv4) on the patches, cropped from the first stage's output;
- ``image``: both stages over the whole image, then the selected cells are kept.

``patch_strategy`` picks the cheapest from costs measured on XLA:CPU: an 8x8 patch costs about four
times its cell's share of the first stage and twelve times the second, so small selections (HD and 4K at
the paper's settings: 4 % of the cells) use patches, medium ones (512x512: 30 %) the hybrid, and more
than about half of the cells the image. ``strategy`` forces one.

In training BatchNorm normalises with statistics over the selected windows, so the convolutions after
conv1 must see the windows. conv1 itself need not: its output at a cell's window is the same whether it
ran on the window or over the zero-padded image. ``train_patch_strategy`` takes that **hybrid** (conv1
over the half-resolution image, its windows gathered, the rest on them) when the windows would hold more
conv1 outputs than the image (384x512 crops at 48,000 refined pixels: a 17 % shorter step),
**patches** otherwise (the paper's HD training: 4 % of the cells). Same outputs, statistics and
gradients up to the order of float sums (``tests/test_models.py``).
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
    resize_bilinear,
    torch_default_bias_init,
    torch_default_kernel_init,
    upsample_nearest_2x,
)

from bgm_jax.model_spec import REFINE_MODES

Dtype = Any


PATCH_STRATEGIES = ("auto", "patches", "hybrid", "image")
# Eval cost of each strategy on XLA:CPU, in microseconds per refined patch and per quarter-resolution cell
# of the image (MobileNetV2, kernel size 3, 512x512 and 1920x1080, 1,000 to 40,000 patches; the model
# around the refiner subtracted): docs/benchmarks.md, "Choosing the patch strategy".
PATCH_COST = 32.0  # both stages on one patch
HYBRID_CELL_COST = 2.6  # the first stage over the image, per cell
HYBRID_PATCH_COST = 8.5  # the second stage on one patch
IMAGE_CELL_COST = 7.3  # both stages over the image, per cell


def patch_strategy(capacity: int, num_cells: int, kernel_size: int = 3, strategy: str = "auto") -> str:
    """How eval refines ``capacity`` top-k cells of ``num_cells``: ``strategy`` itself unless "auto", else
    the cheapest of "patches", "hybrid" and "image" by the measured costs above. With kernel size 1 a
    patch does no more work than its share of the image, so only the gather and scatter count: patches
    up to half of the cells, the image beyond."""
    if strategy != "auto":
        return strategy
    if kernel_size == 1:
        return "patches" if 2 * capacity <= num_cells else "image"
    costs = {
        "patches": PATCH_COST * capacity,
        "hybrid": HYBRID_CELL_COST * num_cells + HYBRID_PATCH_COST * capacity,
        "image": IMAGE_CELL_COST * num_cells,
    }
    return min(costs, key=costs.get)


def window_pads(kernel_size: int) -> tuple[int, int]:
    """Context around a cell's window at half and at full resolution: (3, 2) for kernel size 3 (two convs
    at each), none for kernel size 1."""
    return (3, 2) if kernel_size == 3 else (0, 0)


def conv1_window(kernel_size: int) -> int:
    """Side of conv1's output on a cell's half-resolution window (2 px plus context, less the kernel's)."""
    return 2 + 2 * window_pads(kernel_size)[0] - (kernel_size - 1)


def train_patch_strategy(capacity: int, num_cells: int, kernel_size: int = 3, strategy: str = "auto") -> str:
    """How training refines ``capacity`` top-k cells of ``num_cells``: "patches" (every conv on each cell's
    window, the original's way) or "hybrid" (conv1 over the whole half-resolution image, its windows
    gathered, the rest on them). BatchNorm's batch statistics come from the windows either way, so only
    conv1 can leave them. "auto" takes the hybrid when the windows would hold more of conv1's outputs than
    the image: a 6x6 window per cell (kernel size 3) against the image's 4 outputs per cell, 16,000 refined
    pixels of a 384x512 crop being about the break-even on XLA:CPU (docs/benchmarks.md, "The refiner in
    training"). Any other forced strategy ("hybrid", "image") gives the hybrid."""
    if strategy == "auto":
        return "hybrid" if conv1_window(kernel_size) ** 2 * capacity > 4 * num_cells else "patches"
    return "patches" if strategy == "patches" else "hybrid"


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


def crop_windows(x: jax.Array, indices: jax.Array, grid_width: int, cell: int, size: int) -> jax.Array:
    """The ``size`` x ``size`` window of ``x`` (B, H, W, C) starting at (cell * row, cell * column) of
    each flat cell index in ``indices`` (B, k): (B, k, size, size, C), from one batched gather. Every
    window must lie inside ``x``."""
    starts = cell_windows(indices, grid_width, cell)
    patches = lax.gather(x, starts, _WINDOW_GATHER, (1, size, size, x.shape[-1]), mode=_IN_BOUNDS)
    return patches.reshape(*indices.shape, size, size, x.shape[-1])


def crop_patches(x: jax.Array, indices: jax.Array, grid_width: int, cell: int, pad: int) -> jax.Array:
    """Crop a (cell + 2 pad)-sized square around each selected cell.

    ``x`` is (B, H, W, C) at a resolution where one quarter-resolution cell spans ``cell`` pixels;
    ``indices`` (B, k) are flat cell indices on a grid ``grid_width`` cells wide. The window of cell (r, c)
    covers rows ``[cell*r - pad, cell*r + cell + pad)`` (zeros outside the image), likewise columns.
    Returns (B, k, size, size, C), from one batched gather.
    """
    if pad:
        x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    return crop_windows(x, indices, grid_width, cell, cell + 2 * pad)


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
                           strategy: str = "auto", prefix: str = "") -> None:
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
    if strategy not in PATCH_STRATEGIES:
        raise ValueError(f"unknown patch strategy {strategy!r} ({prefix}strategy); expected one of {PATCH_STRATEGIES}")


def conv_valid(x: jax.Array, kernel: jax.Array, dtype: Dtype) -> jax.Array:
    """Unpadded stride-1 convolution of NHWC ``x`` with an HWIO ``kernel``, computed in ``dtype``."""
    return lax.conv_general_dilated(x.astype(dtype), kernel.astype(dtype), (1, 1), "VALID",
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


# Nearest 2x upsampling followed by an unpadded 3x3 convolution: output row 2m + p reads upsampled rows
# 2m + p .. 2m + p + 2, i.e. source rows m and m + 1; _PHASE_TAPS[p][d] lists the kernel rows that meet
# source row m + d (p = 0: rows 0, 1 | 2; p = 1: row 0 | 1, 2). Columns likewise.
_PHASE_TAPS = (((0, 1), (2,)), ((0,), (1, 2)))


def upsampled_conv(x: jax.Array, kernel: jax.Array, dtype: Dtype) -> jax.Array:
    """``conv_valid(upsample_nearest_2x(x), kernel)`` for a 3x3 ``kernel``, computed at ``x``'s resolution:
    each of the four output phases is a 2x2 convolution with summed kernel taps (4/9 of the work and no
    upsampled copy), one convolution with 4x the output channels, then the phases are interleaved.
    The same sums, grouped differently."""
    def taps(rows, cols):
        return sum(kernel[i, j] for i in rows for j in cols)

    # (dr, dc, in, pr, pc, out): source offset, input channel, output phase, output channel.
    phased = jnp.stack([
        jnp.stack([
            jnp.stack([jnp.stack([taps(_PHASE_TAPS[pr][dr], _PHASE_TAPS[pc][dc]) for pc in range(2)], axis=-2)
                       for pr in range(2)], axis=-3)
            for dc in range(2)])
        for dr in range(2)])
    cin, cout = kernel.shape[2], kernel.shape[3]
    y = conv_valid(x, phased.reshape(2, 2, cin, 4 * cout), dtype)
    n, h, w, _ = y.shape
    return y.reshape(n, h, w, 2, 2, cout).transpose(0, 1, 3, 2, 4, 5).reshape(n, 2 * h, 2 * w, cout)


class RefinerConv(nn.Module):
    """An unpadded convolution with ``nn.Conv``'s parameters (``kernel`` (k, k, in, out), optional
    ``bias``, PyTorch's default initialisation), declared in ``setup`` so that the refiner can also apply
    parts of the kernel (``Refiner.second_stage``)."""

    in_features: int
    features: int
    kernel_size: int
    use_bias: bool = False
    dtype: Dtype = jnp.float32

    def setup(self):
        k = self.kernel_size
        self.kernel = self.param("kernel", torch_default_kernel_init, (k, k, self.in_features, self.features),
                                 jnp.float32)
        if self.use_bias:
            self.bias = self.param("bias", torch_default_bias_init(self.in_features * k * k), (self.features,),
                                   jnp.float32)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = conv_valid(x, self.kernel, self.dtype)
        return y + self.bias.astype(self.dtype) if self.use_bias else y


class Refiner(nn.Module):
    """Refines the coarse output at full resolution.

    Called with full-resolution ``src``, ``bgr`` (B, H, W, 3), H and W multiples of 4, and the coarse
    ``pha`` (1 ch), ``fgr`` residual (3), ``err`` (1), ``hid`` (32). Returns ``(pha, fgr, ref)``: the
    finished alpha and foreground (clipped to [0, 1]; the foreground with ``src`` added) at (H, W), and
    the quarter-resolution selection map ``ref`` (B, H/4, W/4, 1). ``strategy``: how a top-k selection
    is refined, one of ``PATCH_STRATEGIES`` ("auto": ``patch_strategy`` decides in eval,
    ``train_patch_strategy`` in training, where only "patches" and "hybrid" exist).
    """

    mode: str = "sampling"
    sample_pixels: int = 80_000
    threshold: float = 0.1
    kernel_size: int = 3
    prevent_oversampling: bool = True
    threshold_capacity: int | None = None
    strategy: str = "auto"
    dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None

    def __post_init__(self):
        check_refiner_settings(self.mode, self.kernel_size, self.sample_pixels, self.threshold_capacity,
                               self.strategy)
        super().__post_init__()

    def setup(self):
        conv = functools.partial(RefinerConv, kernel_size=self.kernel_size, dtype=self.dtype)
        # BatchNorm over the selected patches only, with exact cross-replica statistics.
        norm = functools.partial(BatchNorm, axis_name=self.bn_axis_name, dtype=self.dtype)
        self.conv1 = conv(42, 24)
        self.bn1 = norm()
        self.conv2 = conv(24, 16)
        self.bn2 = norm()
        self.conv3 = conv(22, 12)
        self.bn3 = norm()
        self.conv4 = conv(12, 4, use_bias=True)

    def first_stage(self, x: jax.Array, train: bool = False, mask: jax.Array | None = None) -> jax.Array:
        """conv1-bn1-relu-conv2-bn2-relu at half resolution: [hid, pha, fgr, src, bgr] (42 channels) in,
        16 out (2 px less on each side with kernel size 3)."""
        return self.after_conv1(self.conv1(x), train, mask)

    def after_conv1(self, x: jax.Array, train: bool = False, mask: jax.Array | None = None) -> jax.Array:
        """The first stage from conv1's output on: bn1-relu-conv2-bn2-relu."""
        x = nn.relu(self.bn1(x, mask=mask, use_running_average=not train))
        return nn.relu(self.bn2(self.conv2(x), mask=mask, use_running_average=not train))

    def second_stage(self, x: jax.Array, y: jax.Array, train: bool = False,
                     mask: jax.Array | None = None) -> jax.Array:
        """conv3-bn3-relu-conv4 at full resolution on [upsample_nearest_2x(x) (16 ch), y (src, bgr)]:
        4 channels (alpha, foreground residual). The upsampled part is convolved at ``x``'s resolution
        (``upsampled_conv``; a 1x1 kernel commutes with the upsampling) and ``y``'s part apart: no
        upsampled copy and no concatenation."""
        kernel = self.conv3.kernel
        if self.kernel_size == 3:
            x = upsampled_conv(x, kernel[:, :, :16], self.dtype)
        else:
            x = upsample_nearest_2x(conv_valid(x, kernel[:, :, :16], self.dtype))
        x = x + conv_valid(y, kernel[:, :, 16:], self.dtype)
        return self.conv4(nn.relu(self.bn3(x, mask=mask, use_running_average=not train)))

    def __call__(self, src, bgr, pha, fgr, err, hid, train: bool = False):
        k = self.kernel_size
        batch, height, width, _ = src.shape
        hq, wq = height // 4, width // 4
        num_cells = hq * wq
        pad_half, pad_full = window_pads(k)
        half_size = (height // 2, width // 2)

        def pad(x, p):
            return jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0))) if p else x

        def half_maps():
            """conv1's input at half resolution, in its channel order: [hid, pha, fgr residual] (36),
            src (3), bgr (3); resized apart (the same values as resizing them concatenated)."""
            return [resize_bilinear(jnp.concatenate([hid, pha, fgr], axis=-1), half_size),
                    resize_bilinear(src, half_size), resize_bilinear(bgr, half_size)]

        def first_stage_image():
            """The first stage over the whole (padded) half-resolution image."""
            return self.first_stage(pad(jnp.concatenate(half_maps(), axis=-1), pad_half), train)

        def refine_image():
            """The refiner's convs over the whole image: (B, H, W, 4)."""
            return self.second_stage(first_stage_image(), pad(jnp.concatenate([src, bgr], axis=-1), pad_full),
                                     train)

        def finish(out):
            """Alpha and foreground from the 4-channel output (alpha, foreground residual), clipped."""
            return jnp.clip(out[..., :1], 0.0, 1.0), jnp.clip(out[..., 1:] + src, 0.0, 1.0)

        def as_map(ref):
            return ref.reshape(batch, hq, wq, 1).astype(src.dtype)

        if self.mode == "full":
            return *finish(refine_image()), jnp.ones((batch, hq, wq, 1), src.dtype)

        err_q = resize_bilinear(err, (hq, wq))
        # Alpha and foreground upsampled apart: slicing channels out of a full-resolution array costs
        # XLA:CPU several times more than a second, narrower resize.
        coarse_pha = jnp.clip(resize_bilinear(pha, (height, width)), 0.0, 1.0)
        coarse_fgr = jnp.clip(resize_bilinear(fgr, (height, width)) + src, 0.0, 1.0)

        def masked(mask):
            """The image refinement where ``mask`` (B, Hq, Wq, 1) is set, the coarse output elsewhere."""
            full = jnp.repeat(jnp.repeat(mask, 4, axis=1), 4, axis=2)
            refined_pha, refined_fgr = finish(refine_image())
            return jnp.where(full, refined_pha, coarse_pha), jnp.where(full, refined_fgr, coarse_fgr)

        if self.mode == "sampling":
            capacity = min(self.sample_pixels // 16, num_cells)
            floor = 0.0 if self.prevent_oversampling else None
            # k >= cells selects every cell: the image convs plus a mask give the identical result in
            # eval without sorting all cells (and without the original's crash).
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
                return *finish(refine_image()), jnp.ones((batch, hq, wq, 1), src.dtype)
            mask = err_q > floor
            return *masked(mask), as_map(mask)

        if capacity == 0:
            return coarse_pha, coarse_fgr, jnp.zeros((batch, hq, wq, 1), src.dtype)

        values, indices = select_patches(err_q, capacity)
        valid = values > floor if floor is not None else jnp.ones(values.shape, bool)
        selected = selection_map(indices, valid, num_cells)
        if train:
            strategy = train_patch_strategy(capacity, num_cells, k, self.strategy)
        else:
            strategy = patch_strategy(capacity, num_cells, k, self.strategy)

        if strategy == "image":
            return *masked(as_map(selected) > 0), as_map(selected)

        def patches_of(x):
            return x.reshape((-1,) + x.shape[2:])

        y = patches_of(jnp.concatenate([crop_patches(v, indices, wq, cell=4, pad=pad_full) for v in (src, bgr)],
                                       axis=-1))
        if strategy == "hybrid" and not train:
            # The first stage's output keeps pad_half - 2 real pixels around the image: each cell's
            # window of it starts at its own corner.
            margin = pad_half - 2 * (k // 2)
            x = patches_of(crop_windows(first_stage_image(), indices, wq, cell=2, size=2 + 2 * margin))
            out = self.second_stage(x, y)
        else:
            # BatchNorm statistics over the selected patches only, as the original (which drops the others).
            mask = valid.reshape(-1, 1, 1, 1) if train else None
            if strategy == "hybrid":
                # Training: conv1 over the image, then each cell's window of its output, which is exactly
                # conv1 of the cell's 8x8 input window; the batch statistics still come from the windows.
                c1 = self.conv1(pad(jnp.concatenate(half_maps(), axis=-1), pad_half))
                x = patches_of(crop_windows(c1, indices, wq, cell=2, size=conv1_window(k)))
                x = self.after_conv1(x, train, mask)
            else:
                x = [crop_patches(v, indices, wq, cell=2, pad=pad_half) for v in half_maps()]
                x = self.first_stage(patches_of(jnp.concatenate(x, axis=-1)), train, mask)
            out = self.second_stage(x, y, train, mask)
        # The refined cells, finished like the coarse output (clipped; src added to the foreground), are
        # written over it: no 4-channel full-resolution intermediate.
        out = out.reshape(batch, capacity, 4, 4, 4)
        src_cells = crop_patches(src, indices, wq, cell=4, pad=0)
        pha_cells = jnp.clip(out[..., :1], 0.0, 1.0)
        fgr_cells = jnp.clip(out[..., 1:] + src_cells, 0.0, 1.0)
        return (replace_patches(coarse_pha, pha_cells, indices, valid),
                replace_patches(coarse_fgr, fgr_cells, indices, valid), as_map(selected))
