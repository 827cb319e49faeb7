"""Model outputs -> the pixels the commands write, computed on the device (default) or on the host.

A "product" is one array per batch that a writer consumes:

==============  ==========================  ===================================================
product         dtype, shape                what
==============  ==========================  ===================================================
``rgba``        uint8 (B, H, W, 4)          foreground colour + alpha, colour zeroed where alpha
                                            rounds to 0 (``bgm_jax.io.outputs.compose_rgba``)
``composite``   uint8 (B, H, W, 3)          ``fgr * pha + target * (1 - pha)`` (``composite_over``)
``pha``         uint8 (B, H, W)             alpha
``pha_float``   float32 (B, H, W)           alpha for 16-bit files (rounded on the host in float64)
``fgr``         uint8 (B, H, W, 3)          foreground colour
``err``         uint8 (B, H, W)             error map, bilinear to the padded size, cropped
``ref``         uint8 (B, H, W)             refined 4x4 cells (0/255), cropped
==============  ==========================  ===================================================

Rounding is ``round(x * 255)`` everywhere, the same float32 operations as ``bgm_jax.io.outputs.to_uint8``,
so the device and host paths write the same bytes (``err`` may differ by one level where the two bilinear
implementations round differently). On the device the outputs cross to the host as uint8 instead of
float32 (a quarter of the bytes) and the conversion runs in XLA instead of in the Python encode thread.
"""

from __future__ import annotations

import functools

import numpy as np

PRODUCTS = ("rgba", "composite", "pha", "pha_float", "fgr", "err", "ref")


@functools.lru_cache(maxsize=None)
def _device_renderer():
    import jax
    import jax.numpy as jnp

    from bgm_jax.bilinear import resize_bilinear

    def to_uint8(x):
        # float32 x * 255, clip, round half to even: the exact operations of io.outputs.to_uint8
        return jnp.round(jnp.clip(x.astype(jnp.float32) * 255.0, 0.0, 255.0)).astype(jnp.uint8)

    @functools.partial(jax.jit, static_argnames=("products", "padded"))
    def render(pha, fgr, err, ref, target, *, products, padded):
        height, width = pha.shape[1:3]
        out = {}
        if "rgba" in products:
            alpha = to_uint8(pha)
            rgb = jnp.where(alpha == 0, jnp.uint8(0), to_uint8(fgr))
            out["rgba"] = jnp.concatenate([rgb, alpha], axis=-1)
        if "composite" in products:
            background = target.astype(jnp.float32) / 255.0
            out["composite"] = to_uint8(fgr * pha + background * (1.0 - pha))
        if "pha" in products:
            out["pha"] = to_uint8(pha[..., 0])
        if "pha_float" in products:
            out["pha_float"] = pha[..., 0]
        if "fgr" in products:
            out["fgr"] = to_uint8(fgr)
        if "err" in products:
            if err.shape[1:3] != padded:
                err = resize_bilinear(err, padded)
            out["err"] = to_uint8(err[:, :height, :width, 0])
        if "ref" in products:
            cells = jnp.repeat(jnp.repeat(ref, 4, axis=1), 4, axis=2)
            out["ref"] = to_uint8(cells[:, :height, :width, 0])
        return out

    return render


def render_on_device(result, products: tuple[str, ...], *, padded: tuple[int, int], target=None) -> dict:
    """The products as device arrays (dispatched asynchronously: no host sync here).

    ``result`` is a ``MattingResult``; ``target`` (for ``composite``) is uint8: an RGB triple, an
    HxWx3 image or a (B, H, W, 3) batch.
    """
    _check_products(products)
    return _device_renderer()(
        result.pha, result.fgr, result.err, result.ref, target, products=tuple(products), padded=tuple(padded)
    )


def render_on_host(result, products: tuple[str, ...], *, padded: tuple[int, int], target=None) -> dict:
    """The same products computed with numpy and ``bgm_jax.io.outputs`` (the reference and the
    ``--convert host`` benchmark path): every output crosses to the host as float32 first."""
    from bgm_jax.io.outputs import compose_rgba, composite_over, to_uint8, upsample_map

    _check_products(products)
    pha, fgr = np.asarray(result.pha), np.asarray(result.fgr)
    height, width = pha.shape[1:3]
    out = {}
    if "rgba" in products:
        out["rgba"] = np.stack([compose_rgba(f, p) for f, p in zip(fgr, pha)])
    if "composite" in products:
        target = np.asarray(target)
        targets = target if target.ndim == 4 else [target] * len(pha)
        out["composite"] = np.stack([composite_over(f, p, t) for f, p, t in zip(fgr, pha, targets)])
    if "pha" in products:
        out["pha"] = to_uint8(pha[..., 0])
    if "pha_float" in products:
        out["pha_float"] = pha[..., 0]
    if "fgr" in products:
        out["fgr"] = to_uint8(fgr)
    if "err" in products:
        err = np.asarray(result.err)
        out["err"] = np.stack([to_uint8(upsample_map(e, padded, "bilinear")[:height, :width]) for e in err])
    if "ref" in products:
        cells = np.repeat(np.repeat(np.asarray(result.ref), 4, axis=1), 4, axis=2)
        out["ref"] = to_uint8(cells[:, :height, :width, 0])
    return out


def _check_products(products) -> None:
    unknown = set(products) - set(PRODUCTS)
    if unknown:
        raise ValueError(f"unknown products {sorted(unknown)}; expected some of {PRODUCTS}")


def warm_up_device_renderer(compiled_model, products: tuple[str, ...], *, padded: tuple[int, int], target=None) -> None:
    """Compile the device renderer for a compiled model's output shapes now, so that the first batch
    of a timed run does not pay for it. ``target`` must have the shape and dtype later calls use."""
    import jax
    import jax.numpy as jnp

    from bgm_jax.inference import MattingResult

    # zeros placed as the model's outputs (split over devices for a data-parallel model)
    pha, fgr, err, ref = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype, device=s.sharding),
                                                compiled_model.out_info)
    jax.block_until_ready(render_on_device(MattingResult(pha, fgr, err, ref), products, padded=padded, target=target))
