"""ONNX export, written against the ONNX opset (17) with the ``onnx`` helper API.

Why not a converter: the maintained JAX-to-ONNX converter on PyPI (jax2onnx 0.17) pins
``orbax-checkpoint<0.11.37`` (this project uses 0.12) and pulls in huggingface-hub, netron and equinox;
and the refiner's gather (vmapped ``dynamic_slice``) and scatter are exactly the patterns converters
cover least. Writing the graph here keeps it small, readable and TensorRT-friendly (plain Conv, Gather,
ScatterND, TopK; no Resize, no Loop).

The graph mirrors ``bgm_jax.models`` layer by layer, and mirrors ``bgm_jax.inference``'s wrapper (uint8
or float input, edge padding to a multiple of 4, cropping back), for one static input size:

- BatchNorm is folded into the preceding convolution (see ``onnx_graph``);
- bilinear resizes are the same two-tap gathers as ``models.layers.resize_bilinear`` (same indices and
  weights, so the same float operations), not ``Resize``, whose rounding differs between runtimes;
- nearest 2x/4x upsampling is Reshape + Expand + Reshape (exact);
- sampling: ``TopK`` of the quarter-resolution error per image (ties to the lower index, as
  ``lax.top_k``); 8x8 windows gathered with one ``Gather`` on the flattened, zero-padded feature map
  (batch offsets included, so batch > 1 is correct, unlike the original's ONNX files); refined 4x4
  blocks written back with ``ScatterND`` over unique cell indices; the selection is refined on patches,
  hybrid or over the image as the model decides (``models.refiner.patch_strategy``);
- thresholding (eval): full-image refinement + mask ``err > threshold``, as the model;
- the batch dimension is symbolic (``batch``) unless the export fixes it.

Every model variable must be used exactly once (checked), so a layer added to the Flax model without
updating this file fails the export.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import numpy as np

from bgm_jax.errors import InputError
from bgm_jax.bilinear import bilinear_taps

OPSET = 17
PRECISION_DTYPES = {"float32": np.float32, "float16": np.float16}


class MattingGraph:
    """Builds the ONNX graph of a MattingRefine / MattingBase with given fields. All tensors NCHW."""

    def __init__(self, builder, model, batch: int | None = None):
        self.g = builder
        self.model = model  # the Flax module (its fields only: nothing is run)
        self.static_batch = batch  # None: symbolic, read from the input's shape
        self._batch = None

    # ------------------------------------------------------------------------------------------ helpers

    def batch(self, like: str) -> str:
        """The batch size as a 1-D int64 tensor [B], read from the input once."""
        if self._batch is None:
            if self.static_batch is not None:
                self._batch = self.g.ints([self.static_batch], "batch_size")
            else:
                self._batch = self.g.op("Shape", [like], "batch_size", start=0, end=1)
        return self._batch

    def batch_offsets(self, like: str, stride: int) -> str:
        """(B, 1) int64: b * stride for each image b (flat indices over the whole batch)."""
        g = self.g
        if self.static_batch is not None:  # a constant (onnxruntime's folding of Range trips on a fixed batch)
            return g.const((np.arange(self.static_batch, dtype=np.int64) * stride)[:, None], "batch_offsets")
        batch_range = g.op("Range", [g.const(np.int64(0)), g.op("Squeeze", [self.batch(like), g.ints([0])]),
                                     g.const(np.int64(1))], "batch_range")
        return g.op("Mul", [g.op("Unsqueeze", [batch_range, g.ints([1])]), g.const(np.int64(stride))], "batch_offsets")

    def slice_channels(self, x: str, start: int, end: int) -> str:
        g = self.g
        return g.op("Slice", [x, g.ints([start]), g.ints([end]), g.ints([1])], "channels")

    def concat(self, xs, axis: int = 1) -> str:
        return self.g.op("Concat", list(xs), "concat", axis=axis)

    def clip01(self, x: str, hint: str) -> str:
        return self.g.op("Clip", [x, self.g.scalar(0.0), self.g.scalar(1.0)], hint)

    def resize_bilinear(self, x: str, size_in: tuple[int, int], size_out: tuple[int, int]) -> str:
        """``models.layers.resize_bilinear`` on NCHW: per axis, x[lo] * w_lo + x[hi] * w_hi."""
        g = self.g
        for axis, n_in, n_out in ((2, size_in[0], size_out[0]), (3, size_in[1], size_out[1])):
            if n_in == n_out:
                continue
            lo, hi, w_lo, w_hi = bilinear_taps(n_in, n_out)
            shape = [1, 1, 1, 1]
            shape[axis] = n_out
            a = g.op("Gather", [x, g.const(lo.astype(np.int64), "resize_lo")], "take_lo", axis=axis)
            b = g.op("Gather", [x, g.const(hi.astype(np.int64), "resize_hi")], "take_hi", axis=axis)
            a = g.op("Mul", [a, g.const(w_lo.reshape(shape).astype(g.dtype), "resize_w_lo")])
            b = g.op("Mul", [b, g.const(w_hi.reshape(shape).astype(g.dtype), "resize_w_hi")])
            x = g.op("Add", [a, b], "resized")
        return x

    def repeat_spatial(self, x: str, channels: int, size: tuple[int, int], factor: int) -> str:
        """Nearest upsampling by an integer ``factor`` (= ``jnp.repeat`` on H and W): exact."""
        g = self.g
        h, w = size
        x = g.op("Reshape", [x, g.ints([-1, channels, h, 1, w, 1])])
        x = g.op("Expand", [x, g.ints([1, 1, 1, factor, 1, factor])])
        return g.op("Reshape", [x, g.ints([-1, channels, h * factor, w * factor])], "upsampled")

    # ------------------------------------------------------------------------------------------ encoders

    def resnet(self, x: str):
        from bgm_jax.models.matting import make_backbone
        from bgm_jax.models.resnet import bottleneck_layers

        g = self.g
        encoder = make_backbone(self.model.backbone, np.float32, None)
        x0 = x
        x = g.conv_bn(x, "backbone/conv1", "backbone/bn1", stride=2, pad=3, activation="relu")
        x1 = x
        x = g.op("MaxPool", [x], "maxpool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
        features = []
        for blocks in bottleneck_layers(encoder.stage_sizes):
            for block in blocks:
                x = self.bottleneck(x, f"backbone/{block.name}", block.planes, stride=block.stride,
                                    dilation=block.dilation, downsample=block.downsample)
            features.append(x)
        x2, x3, _, x4 = features
        return x4, x3, x2, x1, x0

    def bottleneck(self, x: str, name: str, planes: int, *, stride: int, dilation: int, downsample: bool) -> str:
        g = self.g
        out = g.conv_bn(x, f"{name}/conv1", f"{name}/bn1", activation="relu")
        out = g.conv_bn(out, f"{name}/conv2", f"{name}/bn2", stride=stride, pad=dilation, dilation=dilation,
                        activation="relu")
        out = g.conv_bn(out, f"{name}/conv3", f"{name}/bn3")
        if downsample:
            x = g.conv_bn(x, f"{name}/downsample_0", f"{name}/downsample_1", stride=stride)
        return g.op("Relu", [g.op("Add", [out, x], "residual")])

    def mobilenetv2(self, x: str):
        from bgm_jax.models.mobilenetv2 import FEATURE_TAPS, inverted_residual_blocks

        g = self.g
        x0 = x
        x = g.conv_bn(x, "backbone/features_0_0", "backbone/features_0_1", stride=2, pad=1, activation="relu6")
        out = {}
        for block in inverted_residual_blocks():
            x = self.inverted_residual(x, f"backbone/features_{block.index}", block.in_channels,
                                       block.expand_ratio, block.stride, block.dilation, block.use_residual)
            if block.index in FEATURE_TAPS:
                out[FEATURE_TAPS[block.index]] = x
        return out["x4"], out["x3"], out["x2"], out["x1"], x0

    def inverted_residual(self, x, name, in_channels, expand_ratio, stride, dilation, use_residual) -> str:
        g = self.g
        hidden = in_channels * expand_ratio  # as the model (integer ratios)
        i, out = 0, x
        if expand_ratio != 1:
            out = g.conv_bn(out, f"{name}/conv_0_0", f"{name}/conv_0_1", activation="relu6")
            i = 1
        out = g.conv_bn(out, f"{name}/conv_{i}_0", f"{name}/conv_{i}_1", stride=stride, pad=dilation,
                        dilation=dilation, groups=hidden, activation="relu6")
        out = g.conv_bn(out, f"{name}/conv_{i + 1}", f"{name}/conv_{i + 2}")
        return g.op("Add", [x, out], "residual") if use_residual else out

    # ------------------------------------------------------------------------------------------ aspp, decoder

    def aspp(self, x: str, size: tuple[int, int]) -> str:
        from bgm_jax.models.aspp import ASPP

        g = self.g
        branches = [g.conv_bn(x, "aspp/convs_0_0", "aspp/convs_0_1", activation="relu")]
        for i, rate in enumerate(ASPP.rates, start=1):
            branches.append(g.conv_bn(x, f"aspp/convs_{i}_0", f"aspp/convs_{i}_1", pad=rate, dilation=rate,
                                      activation="relu"))
        pool = len(ASPP.rates) + 1
        pooled = g.op("ReduceMean", [x], "pooled", axes=[2, 3], keepdims=1)
        pooled = g.conv_bn(pooled, f"aspp/convs_{pool}_1", f"aspp/convs_{pool}_2", activation="relu")
        branches.append(g.op("Expand", [pooled, g.ints([1, 1, *size])], "pooled_broadcast"))
        y = self.concat(branches)
        return g.conv_bn(y, "aspp/project_0", "aspp/project_1", activation="relu")  # Dropout: eval no-op

    def decoder(self, x4: str, skips, sizes) -> str:
        """``sizes``: the spatial size of x4 then of each skip (x3, x2, x1, x0)."""
        g = self.g
        x = x4
        for i, skip in enumerate(skips, start=1):
            x = self.resize_bilinear(x, sizes[i - 1], sizes[i])
            x = self.concat([x, skip])
            if i < 4:
                x = g.conv_bn(x, f"decoder/conv{i}", f"decoder/bn{i}", pad=1, activation="relu")
            else:
                x = g.conv_bn(x, "decoder/conv4", None, pad=1, bias=True)
        return x

    def coarse(self, src: str, bgr: str, size: tuple[int, int]) -> str:
        """Backbone -> ASPP -> decoder: the 37-channel map at ``size``."""
        x = self.concat([src, bgr])
        if self.model.backbone == "mobilenetv2":
            x4, x3, x2, x1, x0 = self.mobilenetv2(x)
        else:
            x4, x3, x2, x1, x0 = self.resnet(x)
        sizes = feature_sizes(self.model.backbone, size)  # x4, x3, x2, x1, x0
        x4 = self.aspp(x4, sizes[0])
        return self.decoder(x4, (x3, x2, x1, x0), sizes)

    # ------------------------------------------------------------------------------------------ refiner

    def refiner_first(self, x: str) -> str:
        """The refiner's first stage: conv1-bn1-relu, conv2-bn2-relu (unpadded convs)."""
        g = self.g
        x = g.conv_bn(x, "refiner/conv1", "refiner/bn1", activation="relu")
        x = g.conv_bn(x, "refiner/conv2", "refiner/bn2", activation="relu")
        return x

    def refiner_second(self, x: str, y: str) -> str:
        """The second stage, after the nearest 2x upsampling: concat y, conv3-bn3-relu, conv4."""
        g = self.g
        x = self.concat([x, y])
        x = g.conv_bn(x, "refiner/conv3", "refiner/bn3", activation="relu")
        return g.conv_bn(x, "refiner/conv4", None, bias=True)

    def refine(self, src_bgr: str, half: str, height: int, width: int, err_sm: str, coarse_pha_fgr: str,
               size_sm: tuple[int, int]):
        """The Refiner in eval mode; returns ``(out (B,4,H,W), ref (B,1,H/4,W/4))``. Follows
        ``bgm_jax.models.refiner.Refiner.__call__`` branch by branch."""
        g, m = self.g, self.model
        k = m.refine_kernel_size
        hq, wq = height // 4, width // 4
        cells = hq * wq
        half_size = (height // 2, width // 2)
        # Exactly one of the paths below runs the refiner's convs (the full-image pass or the patches),
        # so each refiner weight enters the graph once.

        def refine_full() -> str:
            """The refiner's convs over the whole image (zero padding 3 / 2 for kernel 3, as the model)."""
            x, y, grown = half, src_bgr, 0
            if k == 3:
                x = g.op("Pad", [half, g.ints([0, 0, 3, 3, 0, 0, 3, 3])], "half_padded")
                y = g.op("Pad", [src_bgr, g.ints([0, 0, 2, 2, 0, 0, 2, 2])], "src_bgr_padded")
                grown = 2  # 3 - 1 - 1 after two unpadded 3x3 convs
            x = self.refiner_first(x)
            x = self.repeat_spatial(x, 16, (half_size[0] + grown, half_size[1] + grown), 2)  # conv2: 16 ch
            return self.refiner_second(x, y)

        def ones_ref() -> str:
            shape = g.op("Concat", [self.batch(src_bgr), g.ints([1, hq, wq])], "ref_shape", axis=0)
            return g.op("ConstantOfShape", [shape], "ref_ones",
                        value=_onnx_tensor(np.ones(1, g.dtype)))

        if m.refine_mode == "full":
            return refine_full(), ones_ref()

        err_q = self.resize_bilinear(err_sm, size_sm, (hq, wq))
        coarse = self.resize_bilinear(coarse_pha_fgr, size_sm, (height, width))

        def masked(mask_bool: str):
            """where(mask repeated 4x, full refinement, coarse); mask (B,1,hq,wq) bool."""
            mask_f = g.op("Cast", [mask_bool], "mask_float", to=_onnx_type(g.dtype))
            mask_full = g.op("Cast", [self.repeat_spatial(mask_f, 1, (hq, wq), 4)], "mask_full", to=_onnx_type(bool))
            return g.op("Where", [mask_full, refine_full(), coarse], "refined"), mask_f

        if m.refine_mode == "sampling":
            capacity = min(m.refine_sample_pixels // 16, cells)
            floor = 0.0 if m.refine_prevent_oversampling else None
            dense = capacity == cells
        else:
            capacity = m.refine_threshold_capacity
            if capacity is None:
                capacity = m.refine_sample_pixels // 16
            capacity = min(capacity, cells)
            floor = m.refine_threshold
            dense = m.refine_threshold_capacity is None

        if dense:
            if floor is None:
                return refine_full(), ones_ref()
            return masked(g.op("Greater", [err_q, g.scalar(floor)], "mask"))

        if capacity == 0:
            return coarse, g.op("Mul", [ones_ref(), g.scalar(0.0)], "ref_zeros")

        flat_err = g.op("Reshape", [err_q, g.ints([-1, cells])], "err_flat")
        values, indices = g.op("TopK", [flat_err, g.ints([capacity])], "topk", outputs=2, axis=-1, largest=1,
                               sorted=1)
        if floor is None:
            valid = g.op("ConstantOfShape", [g.op("Shape", [values])], "valid", value=_onnx_tensor(np.ones(1, bool)))
        else:
            valid = g.op("Greater", [values, g.scalar(floor)], "valid")
        # Flat cell index over the whole batch: b * cells + index, shape (B * capacity, 1).
        batch = self.batch(src_bgr)
        offsets = self.batch_offsets(src_bgr, cells)
        cell_index = g.op("Reshape", [g.op("Add", [indices, offsets]), g.ints([-1, 1])], "cell_index")
        valid_flat = g.op("Reshape", [valid, g.ints([-1])], "valid_flat")
        total = g.op("Mul", [batch, g.ints([cells])], "total_cells")
        zeros = g.op("ConstantOfShape", [total], "ref_zeros", value=_onnx_tensor(np.zeros(1, g.dtype)))
        valid_float = g.op("Cast", [valid_flat], "valid_float", to=_onnx_type(g.dtype))
        selected = g.op("ScatterND", [zeros, cell_index, valid_float], "selected")
        selected = g.op("Reshape", [selected, g.ints([-1, 1, hq, wq])], "selected_map")

        from bgm_jax.models.refiner import patch_strategy

        strategy = patch_strategy(capacity, cells, k, m.refine_strategy)
        if strategy == "image":
            mask = g.op("Cast", [selected], "selected_bool", to=_onnx_type(bool))
            out, _ = masked(mask)
            return out, selected

        pad_half, pad_full = (3, 2) if k == 3 else (0, 0)
        y = self.crop_patches(src_bgr, 6, (height, width), indices, wq, cell=4, pad=pad_full)
        if strategy == "hybrid":
            # The first stage over the padded half-resolution image keeps 1 (kernel 3) real pixel around
            # it; each cell's 4x4 (2x2) window of that output starts at the cell's own corner.
            margin = pad_half - 2 * (k // 2)
            first = half
            if pad_half:
                first = g.op("Pad", [half, g.ints([0, 0, pad_half, pad_half, 0, 0, pad_half, pad_half])],
                             "half_padded")
            first = self.refiner_first(first)
            first_size = (half_size[0] + 2 * margin, half_size[1] + 2 * margin)
            x = self.crop_patches(first, 16, first_size, indices, wq, cell=2, pad=0, window=2 + 2 * margin)
        else:
            # half: hid (32) + pha (1) + fgr (3) + src (3) + bgr (3) = 42 channels; src_bgr: 6.
            x = self.crop_patches(half, 42, half_size, indices, wq, cell=2, pad=pad_half)
            x = self.refiner_first(x)  # 8x8 -> 4x4 (kernel 3) or 2x2 -> 2x2 (kernel 1)
        x = self.repeat_spatial(x, 16, (4, 4) if k == 3 else (2, 2), 2)
        patches = self.refiner_second(x, y)  # (B*capacity, 4, 4, 4)
        out = self.replace_patches(coarse, patches, cell_index, valid_flat, height, width)
        return out, selected

    def crop_patches(self, x: str, channels: int, size: tuple[int, int], indices: str, grid_width: int, *,
                     cell: int, pad: int, window: int | None = None) -> str:
        """``refiner.crop_patches`` on NCHW: the (cell + 2 pad)^2 window of each selected cell, zero
        outside the image, as one Gather on the flattened map. Returns (B * capacity, C, size, size).
        ``window`` (with ``pad=0``) crops windows of that size starting at the cells' corners instead
        (``refiner.crop_windows``)."""
        g = self.g
        h, w = size[0] + 2 * pad, size[1] + 2 * pad
        window = cell + 2 * pad if window is None else window
        if pad:
            x = g.op("Pad", [x, g.ints([0, 0, pad, pad, 0, 0, pad, pad])], "padded")
        rows = g.op("Mul", [g.op("Div", [indices, g.const(np.int64(grid_width))]), g.const(np.int64(cell))])
        cols = g.op("Mul", [g.op("Mod", [indices, g.const(np.int64(grid_width))]), g.const(np.int64(cell))])
        corner = g.op("Add", [g.op("Mul", [rows, g.const(np.int64(w))]), cols], "corner")  # (B, capacity)
        corner = g.op("Add", [corner, self.batch_offsets(indices, h * w)], "corner")
        dy, dx = np.meshgrid(np.arange(window), np.arange(window), indexing="ij")
        offsets = (dy * w + dx).reshape(1, 1, -1).astype(np.int64)
        flat_index = g.op("Add", [g.op("Unsqueeze", [corner, g.ints([2])]), g.const(offsets, "window")])
        table = g.op("Reshape", [g.op("Transpose", [x], perm=[0, 2, 3, 1]), g.ints([-1, channels])], "pixels")
        patches = g.op("Gather", [table, flat_index], "window_pixels", axis=0)  # (B, capacity, window^2, C)
        patches = g.op("Reshape", [patches, g.ints([-1, window, window, channels])])
        return g.op("Transpose", [patches], "patches", perm=[0, 3, 1, 2])

    def replace_patches(self, coarse: str, patches: str, cell_index: str, valid: str, height: int, width: int):
        """``refiner.replace_patches``: write the refined 4x4 blocks at their cells (ScatterND over
        unique indices); invalid slots write back the value already there."""
        g = self.g
        hq, wq = height // 4, width // 4
        cells = g.op("Transpose", [coarse], perm=[0, 2, 3, 1])  # (B, H, W, 4)
        cells = g.op("Reshape", [cells, g.ints([-1, hq, 4, wq, 4, 4])])
        cells = g.op("Transpose", [cells], perm=[0, 1, 3, 2, 4, 5])
        cells = g.op("Reshape", [cells, g.ints([-1, 64])], "cells")  # (B * hq * wq, 4*4*4)
        new = g.op("Reshape", [g.op("Transpose", [patches], perm=[0, 2, 3, 1]), g.ints([-1, 64])], "new_cells")
        keep = g.op("Gather", [cells, g.op("Reshape", [cell_index, g.ints([-1])])], "kept_cells", axis=0)
        new = g.op("Where", [g.op("Unsqueeze", [valid, g.ints([1])]), new, keep], "written_cells")
        cells = g.op("ScatterND", [cells, cell_index, new], "cells_refined")
        out = g.op("Reshape", [cells, g.ints([-1, hq, wq, 4, 4, 4])])
        out = g.op("Transpose", [out], perm=[0, 1, 3, 2, 4, 5])
        out = g.op("Reshape", [out, g.ints([-1, height, width, 4])])
        return g.op("Transpose", [out], "refined", perm=[0, 3, 1, 2])

    # ------------------------------------------------------------------------------------------ networks

    def matting_refine(self, src: str, bgr: str, height: int, width: int):
        """MattingRefine.__call__ (eval): returns pha, fgr (B,·,H,W), err_sm, ref (B,1,H/4,W/4)."""
        g, m = self.g, self.model
        small = (math.floor(height * m.backbone_scale), math.floor(width * m.backbone_scale))
        src_sm = self.resize_bilinear(src, (height, width), small)
        bgr_sm = self.resize_bilinear(bgr, (height, width), small)
        x = self.coarse(src_sm, bgr_sm, small)
        pha_sm = self.clip01(self.slice_channels(x, 0, 1), "pha_sm")
        fgr_sm = self.slice_channels(x, 1, 4)
        err_sm = self.clip01(self.slice_channels(x, 4, 5), "err_sm")
        hid_sm = g.op("Relu", [self.slice_channels(x, 5, 37)], "hid_sm")

        src_bgr = self.concat([src, bgr])
        half_size = (height // 2, width // 2)
        half = self.concat([
            self.resize_bilinear(self.concat([hid_sm, pha_sm, fgr_sm]), small, half_size),
            self.resize_bilinear(src_bgr, (height, width), half_size),
        ])
        coarse = self.concat([pha_sm, fgr_sm])
        out, ref = self.refine(src_bgr, half, height, width, err_sm, coarse, small)
        pha = self.clip01(self.slice_channels(out, 0, 1), "pha_full")
        fgr = self.clip01(g.op("Add", [self.slice_channels(out, 1, 4), src]), "fgr_full")
        return pha, fgr, err_sm, ref

    def matting_base(self, src: str, bgr: str, height: int, width: int):
        """MattingBase.__call__ (eval): pha, fgr, err at the input size."""
        g = self.g
        x = self.coarse(src, bgr, (height, width))
        pha = self.clip01(self.slice_channels(x, 0, 1), "pha_full")
        fgr = self.clip01(g.op("Add", [self.slice_channels(x, 1, 4), src]), "fgr_full")
        err = self.clip01(self.slice_channels(x, 4, 5), "err_full")
        return pha, fgr, err, None


@functools.lru_cache(maxsize=32)
def feature_sizes(backbone: str, size: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    """Spatial sizes of the encoder outputs (x4, x3, x2, x1, x0) for an input of ``size``, from the
    model itself (``jax.eval_shape``: no compute)."""
    import jax
    import jax.numpy as jnp

    from bgm_jax.models.matting import make_backbone

    encoder = make_backbone(backbone, jnp.float32, None)
    x = jax.ShapeDtypeStruct((1, *size, 6), jnp.float32)
    shapes = jax.eval_shape(lambda v: encoder.init_with_output(jax.random.key(0), v)[0], x)
    return tuple(tuple(s.shape[1:3]) for s in shapes)


def _onnx_type(dtype) -> int:
    from bgm_jax.deploy.onnx_graph import ONNX_TYPES

    return ONNX_TYPES[np.dtype(dtype)]


def _onnx_tensor(array: np.ndarray):
    from onnx import numpy_helper

    return numpy_helper.from_array(array)


def build_onnx(plan):
    """The ONNX ModelProto for ``plan`` (see ``bgm_jax.deploy.options.plan_export``)."""
    import json

    from bgm_jax.checkpoint import build_model
    from bgm_jax.deploy.onnx_graph import GraphBuilder, value_info

    iface = plan.interface
    precision = plan.matting.settings.precision
    if precision not in PRECISION_DTYPES:
        raise InputError(f"precision {precision}: ONNX export supports {', '.join(PRECISION_DTYPES)}")
    dtype = np.dtype(PRECISION_DTYPES[precision])
    model = build_model(plan.config, **plan.fields)
    g = GraphBuilder(plan.matting.variables, dtype)
    net = MattingGraph(g, model, iface.batch)
    height, width = iface.height, iface.width
    refine = plan.matting.is_refine
    pad_h, pad_w = (-height % 4, -width % 4) if refine else (0, 0)

    def prepare(name: str) -> str:
        x = name
        if iface.layout == "nhwc":
            x = g.op("Transpose", [x], f"{name}_nchw", perm=[0, 3, 1, 2])
        if iface.input_dtype == "uint8":
            x = g.op("Cast", [x], f"{name}_float", to=_onnx_type(np.float32))
            x = g.op("Div", [x, g.const(np.float32(255.0), "u8_scale")], f"{name}_unit")
        if pad_h or pad_w:
            x = g.op("Pad", [x, g.ints([0, 0, 0, 0, 0, 0, pad_h, pad_w])], f"{name}_padded", mode="edge")
        if dtype != np.float32:
            x = g.op("Cast", [x], f"{name}_{precision}", to=_onnx_type(dtype))
        return x

    src, bgr = prepare("src"), prepare("bgr")
    ph, pw = height + pad_h, width + pad_w
    if refine:
        pha, fgr, err, ref = net.matting_refine(src, bgr, ph, pw)
    else:
        pha, fgr, err, ref = net.matting_base(src, bgr, ph, pw)
    g.check_all_used()

    def crop(x: str, h: int, w: int) -> str:
        return g.op("Slice", [x, g.ints([0, 0]), g.ints([h, w]), g.ints([2, 3])], "cropped")

    results = {"pha": crop(pha, height, width), "fgr": crop(fgr, height, width), "err": err}
    if ref is not None:
        results["ref"] = crop(ref, math.ceil(height / 4), math.ceil(width / 4))
    nhwc_shapes = plan.shapes
    outputs = []
    for name in iface.outputs:
        x = results[name]
        if dtype != np.float32:
            x = g.op("Cast", [x], f"{name}_float32", to=_onnx_type(np.float32))
        _, h, w, c = nhwc_shapes[name]
        if iface.layout == "nhwc":
            x = g.op("Transpose", [x], f"{name}_nhwc", perm=[0, 2, 3, 1])
            shape = (iface.batch, h, w, c)
        else:
            shape = (iface.batch, c, h, w)
        g.nodes.append(_identity(x, name))
        outputs.append(value_info(name, np.float32, shape))

    in_dtype = np.dtype(iface.input_dtype)
    inputs = [value_info(name, in_dtype, iface.input_shape()) for name in ("src", "bgr")]
    meta = plan.metadata()
    doc = (
        f"bgm-jax {plan.config.get('backbone')} {plan.config.get('model_type')} model, "
        f"{width}x{height}, inputs src/bgr {iface.input_dtype} {iface.layout.upper()}"
    )
    return g.model(inputs, outputs, opset=OPSET, doc=doc, metadata={"bgm_jax": json.dumps(meta)})


def _identity(x: str, name: str):
    from onnx import helper

    return helper.make_node("Identity", [x], [name], name=f"output_{name}")


def export_onnx(plan, out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Build, check and write the ONNX file for ``plan`` at ``out`` (temporary name, renamed when done)."""
    import onnx

    from bgm_jax.io.atomic import atomic_output, check_can_write

    out = check_can_write(Path(out), overwrite)
    model = build_onnx(plan)
    onnx.checker.check_model(model)
    with atomic_output(out, overwrite=overwrite) as tmp:
        try:
            onnx.save_model(model, os.fspath(tmp))
        except OSError as e:
            raise InputError(f"{out}: cannot write the export ({e.strerror or e}); choose a writable OUT") from None
    return out
