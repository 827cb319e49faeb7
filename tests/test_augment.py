"""On-device augmentation (train/augment.py): ranges, identity, alignment, composite, shadow, crops, jit.

Full ``augment_batch`` compilations are few and shared (module-level configs, one canvas and batch shape),
because each takes seconds on a CPU.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageFilter

from bgm_jax.errors import InputError
from train import augment
from train.augment import AffineRange, AugmentConfig, ColourRange

CANVAS = 32
BATCH = 4
CROP = (24, 28)

# Geometry, blur and sharpen on every sample; no colour (so fgr = alpha stays comparable), no shadow,
# noise or misalignment (so src is exactly the composite of the outputs).
GEOMETRY = AugmentConfig(colour=ColourRange(), blur_p=1.0, sharpen_p=1.0, noise_p=0.0, shadow_p=0.0,
                         misalign_affine_p=0.0, misalign_colour_p=0.0, sample_size=None)


def _batch(seed=0, batch=BATCH, size=CANVAS):
    rng = np.random.default_rng(seed)
    fgr = rng.random((batch, size, size, 3), dtype=np.float32)
    bgr = rng.random((batch, size, size, 3), dtype=np.float32)
    # A soft disc plus noise: structure for the warps to move, values strictly inside and at 0 and 1.
    yy, xx = np.mgrid[:size, :size]
    disc = np.clip((size * 0.35 - np.hypot(yy - size / 2, xx - size / 2)) / 3, 0, 1)
    pha = np.clip(disc[None, :, :, None] + 0.2 * rng.standard_normal((batch, size, size, 1)), 0, 1)
    return fgr, pha.astype(np.float32), bgr


def _keys(seed):
    """One key per example, as the trainer passes them."""
    return jax.random.split(jax.random.key(seed), BATCH)


@pytest.fixture(scope="module")
def default_out():
    fgr, pha, bgr = _batch()
    return augment.augment_batch(_keys(0), fgr, pha, bgr, AugmentConfig(), crop_hw=CROP)


@pytest.fixture(scope="module")
def geometry_out():
    fgr, pha, bgr = _batch()
    return augment.augment_batch(jax.random.key(1), fgr, pha, bgr, GEOMETRY)


# ------------------------------------------------------------------------------------------------------
# Parameters


def _within(values, low, high, *, reach=0.9):
    """All values in [low, high] and the draws reach most of the range (not stuck at one value)."""
    values = np.asarray(values, np.float64)
    assert values.min() >= low - 1e-6 and values.max() <= high + 1e-6, (values.min(), values.max(), low, high)
    assert values.max() - values.min() >= reach * (high - low), (values.min(), values.max(), low, high)


def test_sample_params_stay_within_the_configured_ranges_and_probabilities():
    config = AugmentConfig()
    p = jax.device_get(augment.sample_params(jax.random.key(7), 4000, config))
    for layer, scale in (("fgr", (0.4, 1.0)), ("bgr", (1.0, 2.0))):
        affine = p[layer]["affine"]
        _within(affine["rotation"], -5, 5)
        _within(affine["scale"], *scale)
        _within(affine["translate"], -0.1, 0.1)
        _within(affine["shear"], -5, 5)
        colour = p[layer]["colour"]
        for name in ("brightness", "contrast", "saturation"):
            _within(colour[name], 0.85, 1.15)
        _within(colour["hue"], -0.05, 0.05)
        assert (np.sort(colour["order"], axis=1) == np.arange(4)).all()
        assert len({tuple(o) for o in colour["order"]}) == 24  # every order of the four adjustments occurs
        assert abs(p[layer]["flip"].mean() - 0.5) < 0.03
        assert abs(p[layer]["sharpen"].mean() - 0.1) < 0.02
        assert set(np.unique(p[layer]["blur_radius"])) == set(range(6))
        assert abs((p[layer]["blur_radius"] > 0).mean() - 0.1 * 5 / 6) < 0.02  # p=0.1, radius 0 is a no-op

    noise = p["noise"]
    assert abs(noise["on"].mean() - 0.4) < 0.03
    for name in ("src_sigma", "bgr_sigma"):
        _within(noise[name][noise["on"]], 0.0, 0.03)
        assert (noise[name][~noise["on"]] == 0).all()

    shadow = p["shadow"]
    assert abs(shadow["on"].mean() - 0.3) < 0.03
    _within(shadow["strength"][shadow["on"]], 0.0, 0.3)
    assert (shadow["strength"][~shadow["on"]] == 0).all()
    _within(shadow["affine"]["rotation"], -5, 5)
    _within(shadow["affine"]["scale"], 0.5, 1.5)
    _within(shadow["affine"]["translate"], -0.2, 0.2)
    _within(shadow["affine"]["shear"], -5, 5)
    assert set(np.unique(shadow["blur_size"])) == set(range(20, 40))

    misalign = p["misalign"]
    assert abs(misalign["affine_on"].mean() - 0.3) < 0.03
    _within(misalign["affine"]["rotation"][misalign["affine_on"]], -1, 1)
    _within(misalign["affine"]["translate"][misalign["affine_on"]], -0.01, 0.01)
    assert (misalign["affine"]["rotation"][~misalign["affine_on"]] == 0).all()
    assert (misalign["affine"]["scale"] == 1).all() and (misalign["affine"]["shear"] == 0).all()
    assert abs(misalign["colour_on"].mean() - 0.8) < 0.03  # the original code's p (the paper says 0.3)
    for name in ("brightness", "contrast", "saturation"):
        _within(misalign["colour"][name][misalign["colour_on"]], 0.82, 1.18)
        assert (misalign["colour"][name][~misalign["colour_on"]] == 1).all()
    _within(misalign["colour"]["hue"][misalign["colour_on"]], -0.1, 0.1)


def test_refine_preset_draws_foreground_scale_from_0_3():
    p = augment.sample_params(jax.random.key(0), 2000, AugmentConfig.refine())
    _within(p["fgr"]["affine"]["scale"], 0.3, 1.0)


def test_changing_one_probability_leaves_the_other_parameters_of_a_key_unchanged():
    a = augment.sample_params(jax.random.key(3), 8, GEOMETRY)
    b = augment.sample_params(jax.random.key(3), 8, dataclasses.replace(GEOMETRY, shadow_p=1.0))
    assert (b["shadow"]["on"]).all()
    for layer in ("fgr", "bgr"):
        jax.tree.map(np.testing.assert_array_equal, a[layer], b[layer])


def test_foreground_affine_share_draws_it_on_that_share_and_keeps_the_other_parameters():
    config = dataclasses.replace(AugmentConfig.refine(), fgr_affine_p=0.25)
    every = jax.device_get(augment.sample_params(jax.random.key(5), 4000, AugmentConfig.refine()))
    share = jax.device_get(augment.sample_params(jax.random.key(5), 4000, config))
    assert every["fgr"]["affine_on"].all()  # default 1: the original, every foreground warped
    on = share["fgr"]["affine_on"]
    assert abs(on.mean() - 0.25) < 0.03
    for name in ("rotation", "scale", "shear", "translate"):  # the same draws where on, the identity where off
        np.testing.assert_array_equal(share["fgr"]["affine"][name][on], every["fgr"]["affine"][name][on])
    assert (share["fgr"]["affine"]["rotation"][~on] == 0).all() and (share["fgr"]["affine"]["scale"][~on] == 1).all()
    assert (share["fgr"]["affine"]["shear"][~on] == 0).all() and (share["fgr"]["affine"]["translate"][~on] == 0).all()
    # Drawn after every other parameter: the rest of each key's draws (flip, filters, colours, background,
    # shadow, noise, misalignment, plate) are those of a config without it, so earlier runs reproduce.
    for group in ("bgr", "shadow", "misalign", "plate"):
        jax.tree.map(np.testing.assert_array_equal, share[group], every[group])
    for name in ("flip", "blur_radius", "sharpen", "colour"):
        jax.tree.map(np.testing.assert_array_equal, share["fgr"][name], every["fgr"][name])


def test_unwarped_foreground_keeps_a_one_pixel_strand_that_the_warp_spreads():
    # A one-pixel vertical strand at alpha 0.9 on a canvas stored at the sample's size, cropped to its full
    # width: with the affine off nothing is resampled; with it on (rotation, scale, shear) the strand's
    # pixels fall between input pixels and its peak drops.
    pha = np.zeros((BATCH, CANVAS, CANVAS, 1), np.float32)
    pha[:, :, 15] = 0.9
    fgr = np.repeat(pha, 3, axis=-1)
    bgr = np.zeros_like(fgr)
    still = dataclasses.replace(GEOMETRY, fgr_affine_p=0.0, flip_p=0.0, blur_p=0.0, sharpen_p=0.0,
                                sample_size=(CANVAS, CANVAS))
    out = augment.augment_batch(jax.random.key(2), fgr, pha, bgr, still, crop_hw=(CANVAS - 8, CANVAS))
    np.testing.assert_array_equal(out["pha"], pha[:, 4:-4])
    warped = augment.augment_batch(jax.random.key(2), fgr, pha, bgr, dataclasses.replace(still, fgr_affine_p=1.0),
                                   crop_hw=(CANVAS - 8, CANVAS))
    rows_peak = np.asarray(warped["pha"])[:, 4:-4].max(axis=2)  # the strand's brightest pixel in each row
    assert rows_peak.mean() < 0.8


def test_config_rejects_bad_ranges_with_input_error():
    with pytest.raises(InputError, match="scale"):
        AffineRange(scale=(1.0, 0.5))
    with pytest.raises(InputError, match="shadow_p"):
        AugmentConfig(shadow_p=1.5)
    with pytest.raises(InputError, match="fgr_affine_p"):
        AugmentConfig(fgr_affine_p=-0.1)
    with pytest.raises(InputError, match="crop_multiple"):
        AugmentConfig(crop_size=(1025, 1027), crop_multiple=4)


# ------------------------------------------------------------------------------------------------------
# Crop sizes (host side)


def test_base_crop_sizes_cover_256_to_511_with_every_size_like_the_original():
    config = AugmentConfig.base()  # every size by default, as the original
    sizes = np.array([augment.sample_crop_hw(0, step, config) for step in range(3000)])
    assert sizes.min() == 256 and sizes.max() == 511
    assert len(np.unique(sizes[:, 0])) > 200  # height and width drawn from all of the range
    assert (sizes[:, 0] != sizes[:, 1]).mean() > 0.9  # independently


def test_refine_crop_sizes_are_multiples_of_4_in_1024_to_2047():
    config = dataclasses.replace(AugmentConfig.refine(), crop_sizes_per_side=None)
    sizes = np.array([augment.sample_crop_hw(5, step, config) for step in range(3000)])
    assert (sizes % 4 == 0).all()
    assert sizes.min() == 1024 and sizes.max() == 2044


def test_buckets_draw_from_evenly_spaced_sizes_per_side_to_bound_recompilation():
    four = dict(crop_sizes_per_side=4)
    np.testing.assert_array_equal(augment.crop_sizes(dataclasses.replace(AugmentConfig.base(), **four)),
                                  [256, 341, 426, 511])
    refine_config = dataclasses.replace(AugmentConfig.refine(), **four)
    refine = augment.crop_sizes(refine_config)
    np.testing.assert_array_equal(refine, [1024, 1364, 1704, 2044])
    shapes = {augment.sample_crop_hw(0, step, refine_config) for step in range(500)}
    assert shapes == {(h, w) for h in refine for w in refine}  # 16 shapes, all of them used


def test_crop_size_is_a_function_of_seed_and_step():
    config = AugmentConfig.base()
    assert augment.sample_crop_hw(1, 17, config) == augment.sample_crop_hw(1, 17, config)
    assert len({augment.sample_crop_hw(1, step, config) for step in range(10)}) > 5
    assert augment.sample_crop_hw(1, 17, config) != augment.sample_crop_hw(2, 17, config)


# ------------------------------------------------------------------------------------------------------
# The whole batch


def test_zero_ranges_and_probabilities_give_the_identity_and_the_plain_composite():
    fgr, pha, bgr = _batch()
    out = augment.augment_batch(jax.random.key(0), fgr, pha, bgr, AugmentConfig.identity())
    np.testing.assert_allclose(out["fgr"], fgr, atol=1e-6, rtol=0)
    np.testing.assert_allclose(out["pha"], pha, atol=1e-6, rtol=0)
    np.testing.assert_allclose(out["bgr"], bgr, atol=1e-6, rtol=0)
    np.testing.assert_allclose(out["src"], pha * fgr + (1 - pha) * bgr, atol=1e-6, rtol=0)


def test_uint8_inputs_are_read_as_values_over_255():
    fgr, pha, bgr = (np.round(x * 255).astype(np.uint8) for x in _batch())
    out = augment.augment_batch(jax.random.key(0), fgr, pha, bgr, AugmentConfig.identity())
    np.testing.assert_allclose(out["pha"], pha / 255.0, atol=1e-6, rtol=0)


def test_foreground_and_alpha_share_warp_blur_and_sharpen():
    _, pha, bgr = _batch()
    fgr = np.repeat(pha, 3, axis=-1)  # foreground = alpha replicated: every step must keep them equal
    out = augment.augment_batch(jax.random.key(1), fgr, pha, bgr, GEOMETRY)
    for c in range(3):
        np.testing.assert_array_equal(out["fgr"][..., c], out["pha"][..., 0])
    assert np.abs(np.asarray(out["pha"]) - pha).mean() > 0.05  # the geometry did move the alpha


def test_src_is_the_composite_of_the_augmented_fgr_pha_and_bgr(geometry_out):
    out = geometry_out
    np.testing.assert_allclose(out["src"], out["pha"] * out["fgr"] + (1 - out["pha"]) * out["bgr"], atol=1e-6)


# Shadow on every sample, misalignment on some: one compilation tests both against GEOMETRY (same key).
SHADOW_AND_SOME_MISALIGNMENT = dataclasses.replace(GEOMETRY, shadow_p=1.0, misalign_affine_p=0.5,
                                                   misalign_colour_p=0.5)


@pytest.fixture(scope="module")
def shadowed_out():
    fgr, pha, bgr = _batch()
    return augment.augment_batch(jax.random.key(1), fgr, pha, bgr, SHADOW_AND_SOME_MISALIGNMENT)


def _misaligned_samples():
    misalign = augment.sample_params(jax.random.key(1), BATCH, SHADOW_AND_SOME_MISALIGNMENT)["misalign"]
    moved = np.asarray(misalign["affine_on"] | misalign["colour_on"])
    assert moved.any() and not moved.all()  # the key gives both kinds of sample, or this test proves little
    return moved


def test_shadow_only_darkens_src_behind_the_subject_and_leaves_the_network_bgr_clean(geometry_out, shadowed_out):
    for name in ("fgr", "pha"):
        np.testing.assert_array_equal(shadowed_out[name], geometry_out[name])
    darkening = np.asarray(geometry_out["src"] - shadowed_out["src"])
    assert darkening.min() >= -1e-6
    assert (darkening.reshape(BATCH, -1).max(axis=1) > 1e-3).all()  # every sample got its shadow
    # The shadow is behind the subject: it shows only as much as the subject is transparent.
    assert (darkening <= 0.3 * (1 - np.asarray(shadowed_out["pha"])) + 1e-6).all()
    clean = ~_misaligned_samples()
    np.testing.assert_array_equal(np.asarray(shadowed_out["bgr"])[clean], np.asarray(geometry_out["bgr"])[clean])


def test_misalignment_moves_only_the_network_bgr(geometry_out, shadowed_out):
    moved = _misaligned_samples()
    change = np.abs(np.asarray(shadowed_out["bgr"] - geometry_out["bgr"])).reshape(BATCH, -1).max(axis=1)
    assert (change[moved] > 1e-3).all()
    # src differs from GEOMETRY's by the shadow alone, bounded as above whether or not the sample moved:
    # the misaligned background never reaches src.
    assert (np.asarray(geometry_out["src"] - shadowed_out["src"]) >= -1e-6).all()


def test_outputs_have_the_crop_shape_and_stay_in_unit_range(default_out):
    for name, channels in (("src", 3), ("bgr", 3), ("fgr", 3), ("pha", 1)):
        x = np.asarray(default_out[name])
        assert x.shape == (BATCH, *CROP, channels) and x.dtype == np.float32
        assert x.min() >= 0.0 and x.max() <= 1.0


def test_same_key_gives_the_same_batch_and_another_key_another(default_out):
    fgr, pha, bgr = _batch()
    again = augment.augment_batch(_keys(0), fgr, pha, bgr, AugmentConfig(), crop_hw=CROP)
    other = augment.augment_batch(_keys(1), fgr, pha, bgr, AugmentConfig(), crop_hw=CROP)
    for name in default_out:
        np.testing.assert_array_equal(again[name], default_out[name])
        assert np.abs(np.asarray(other[name] - default_out[name])).max() > 1e-2


def test_each_sample_of_a_batch_draws_its_own_parameters():
    fgr, pha, bgr = (np.repeat(x[:1], BATCH, axis=0) for x in _batch())  # one sample, repeated
    out = augment.augment_batch(_keys(2), fgr, pha, bgr, AugmentConfig(), crop_hw=CROP)
    src = np.asarray(out["src"])
    for i in range(BATCH):
        for j in range(i):
            assert np.abs(src[i] - src[j]).max() > 1e-2


def test_per_example_keys_give_the_same_augmentation_however_the_batch_is_split_across_devices(default_out):
    fgr, pha, bgr = _batch()
    halves = lambda x: np.stack([x[:BATCH // 2], x[BATCH // 2:]])  # noqa: E731  (2 devices x 2 examples)
    step = jax.pmap(lambda k, f, p, b: augment.augment_batch(k, f, p, b, AugmentConfig(), crop_hw=CROP))
    out = step(_keys(0).reshape(2, BATCH // 2), halves(fgr), halves(pha), halves(bgr))
    for name in default_out:
        np.testing.assert_allclose(np.asarray(out[name]).reshape(default_out[name].shape), default_out[name],
                                   atol=1e-5)


def test_one_key_for_the_batch_is_split_into_one_key_per_example():
    one = augment.sample_params(jax.random.key(9), BATCH, GEOMETRY)
    split = augment.sample_params(jax.random.split(jax.random.key(9), BATCH), BATCH, GEOMETRY)
    for params in (one, split):  # the noise field's keys, as comparable integers
        params["noise"]["key"] = jax.random.key_data(params["noise"]["key"])
    jax.tree.map(np.testing.assert_array_equal, one, split)
    with pytest.raises(InputError, match="one per example"):
        augment.sample_params(jax.random.split(jax.random.key(9), 3), BATCH, GEOMETRY)


def test_bad_batch_shapes_raise_input_error():
    fgr, pha, bgr = _batch()
    with pytest.raises(InputError, match="pha"):
        augment.augment_batch(jax.random.key(0), fgr, pha[..., 0], bgr)


# ------------------------------------------------------------------------------------------------------
# Building blocks


def _warp(image, inverse, out_hw, valid_hw=None):
    warp = jax.jit(augment.warp_bilinear, static_argnums=2)  # one compilation instead of one per operation
    return np.asarray(warp(jnp.asarray(image, jnp.float32), inverse, tuple(out_hw), valid_hw))


def _identity_affine(**overrides):
    affine = {"rotation": 0.0, "scale": 1.0, "translate": jnp.zeros(2), "shear": 0.0}
    return {k: jnp.asarray(v, jnp.float32) for k, v in {**affine, **overrides}.items()}


def test_crop_takes_the_centre_of_the_canvas_resized_to_cover_it():
    image = np.random.default_rng(0).random((32, 32, 1), dtype=np.float32)
    wide = _warp(image, augment.crop_inverse((32, 32), (16, 32)), (16, 32))
    np.testing.assert_allclose(wide, image[8:24], atol=1e-6)
    # Half size: each output pixel sits at the corner of four input pixels, their mean.
    half = _warp(image, augment.crop_inverse((32, 32), (16, 16)), (16, 16))
    np.testing.assert_allclose(half, image.reshape(16, 2, 16, 2, 1).mean(axis=(1, 3)), atol=1e-6)


def test_valid_region_is_fitted_to_cover_the_canvas_and_padding_reads_as_zero():
    # A "contain" foreground: data in the top 16 rows, garbage padding below that must not leak in.
    image = np.full((32, 32, 1), 7.0, np.float32)
    image[:16] = 1.0
    inverse = augment.fitted_affine_inverse(_identity_affine(), jnp.array([16.0, 32.0]), (32, 32))
    out = _warp(image, inverse, (32, 32), jnp.array([16.0, 32.0]))
    np.testing.assert_allclose(out[1:-1], 1.0, atol=1e-6)  # scaled x2 about its centre: covers the canvas
    np.testing.assert_allclose(out[[0, -1]], 0.75, atol=1e-6)  # the last half pixel fades into the fill


def test_affine_scale_shrinks_and_translation_moves_right_and_down():
    image = np.ones((32, 32, 1), np.float32)
    whole = jnp.array([32.0, 32.0])
    shrunk = _warp(image, augment.fitted_affine_inverse(_identity_affine(scale=0.5), whole, (32, 32)), (32, 32))
    assert abs(shrunk.sum() - 0.25 * 32 * 32) < 0.05 * 32 * 32
    blob = np.zeros((32, 32, 1), np.float32)
    blob[14:18, 14:18] = 1.0
    moved = _warp(blob, augment.fitted_affine_inverse(_identity_affine(translate=[0.25, -0.125]), whole, (32, 32)),
                  (32, 32))
    np.testing.assert_allclose(moved[10:14, 22:26], 1.0, atol=1e-6)  # +8 px in x, -4 px in y
    assert abs(moved.sum() - blob.sum()) < 1e-4


def test_warp_samples_like_pil_affine_transform_inside_the_image():
    plane = np.random.default_rng(1).random((20, 24), dtype=np.float32)
    affine = _identity_affine(rotation=4.0, scale=0.8, translate=[0.05, -0.08], shear=3.0)
    inverse = np.asarray(augment.centred_affine_inverse(affine, (20, 24)))
    ours = _warp(plane[..., None], inverse, (20, 24))[..., 0]
    pil = Image.fromarray(plane, mode="F").transform((24, 20), Image.AFFINE, inverse[:2].ravel().tolist(),
                                                     resample=Image.BILINEAR)
    yy, xx = np.mgrid[:20, :24] + 0.5
    source_x = inverse[0, 0] * xx + inverse[0, 1] * yy + inverse[0, 2]
    source_y = inverse[1, 0] * xx + inverse[1, 1] * yy + inverse[1, 2]
    inside = (source_x > 1) & (source_x < 23) & (source_y > 1) & (source_y < 19)  # edges fill differently
    assert inside.sum() > 200
    np.testing.assert_allclose(ours[inside], np.asarray(pil)[inside], atol=1e-5)


def test_box_blur_and_sharpen_match_pil_filters_to_rounding():
    image = (np.random.default_rng(2).random((20, 24, 3)) * 255).astype(np.uint8)
    unit = jnp.asarray(image / 255.0, jnp.float32)
    for radius in (0, 1, 5):
        ours = np.asarray(augment.box_blur(unit, jnp.int32(radius), 5)) * 255
        pil = np.asarray(Image.fromarray(image).filter(ImageFilter.BoxBlur(radius)), np.float64)
        assert np.abs(ours - pil).max() <= 1.0  # PIL rounds after each of its two passes
    ours = np.asarray(augment.sharpen(unit)) * 255
    pil = np.asarray(Image.fromarray(image).filter(ImageFilter.SHARPEN), np.float64)
    assert np.abs(ours - pil).max() <= 0.5 + 1e-3


def test_shadow_box_filter_window_of_even_size_reaches_one_pixel_further_after():
    image = np.zeros((12, 12, 1), np.float32)
    image[:, 5] = 1.0  # a vertical line at column 5
    size = jnp.int32(4)  # kornia's window for size 4: [i - 1, i + 2]
    before = (size - 1) // 2
    out = np.asarray(augment.box_filter(jnp.asarray(image), before, size - 1 - before, 19, 19, "reflect"))
    expected = np.zeros(12)
    expected[3:7] = 0.25
    np.testing.assert_allclose(out[:, :, 0], np.broadcast_to(expected, (12, 12)), atol=1e-6)


def test_colour_adjustments_follow_torchvision_formulas():
    rgb = jnp.array([[[0.2, 0.5, 0.9], [0.6, 0.3, 0.1]]], jnp.float32)
    grey = 0.2989 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    np.testing.assert_allclose(augment.adjust_brightness(rgb, 1.2), np.clip(rgb * 1.2, 0, 1), atol=1e-6)
    np.testing.assert_allclose(augment.adjust_contrast(rgb, 0.8), 0.8 * rgb + 0.2 * grey.mean(), atol=1e-5)
    np.testing.assert_allclose(augment.adjust_saturation(rgb, 0.5), 0.5 * rgb + 0.5 * grey[..., None], atol=1e-5)
    red = jnp.array([[[1.0, 0.0, 0.0]]], jnp.float32)
    np.testing.assert_allclose(augment.adjust_hue(red, 1 / 3), [[[0.0, 1.0, 0.0]]], atol=1e-5)


@pytest.mark.parametrize("order", [(0, 1, 2, 3), (3, 2, 1, 0), (1, 3, 0, 2)])
def test_colour_jitter_applies_the_four_adjustments_in_the_drawn_order(order):
    image = jnp.asarray(np.random.default_rng(3).random((6, 5, 3)), jnp.float32)
    colour = {"brightness": 1.3, "contrast": 0.7, "saturation": 1.4, "hue": 0.08, "order": jnp.array(order)}
    steps = (lambda x: augment.adjust_brightness(x, 1.3), lambda x: augment.adjust_contrast(x, 0.7),
             lambda x: augment.adjust_saturation(x, 1.4), lambda x: augment.adjust_hue(x, 0.08))
    expected = image
    for op in order:
        expected = steps[op](expected)
    np.testing.assert_allclose(augment.colour_jitter(image, colour), expected, atol=1e-6)


def test_flip_mirrors_the_columns():
    image = np.random.default_rng(4).random((8, 10, 2), dtype=np.float32)
    np.testing.assert_allclose(_warp(image, augment.flip_matrix(jnp.bool_(True), 10), (8, 10)), image[:, ::-1],
                               atol=1e-6)
    np.testing.assert_array_equal(_warp(image, augment.flip_matrix(jnp.bool_(False), 10), (8, 10)), image)


def test_noise_has_the_drawn_sigma_and_sigma_zero_is_the_identity():
    grey = jnp.full((64, 64, 3), 0.5)
    key = jax.random.key(0)
    np.testing.assert_array_equal(augment.add_noise(grey, key, 0.0), grey)
    noisy = np.asarray(augment.add_noise(grey, key, 0.03))
    assert abs((noisy - 0.5).std() - 0.03) < 0.002 and abs((noisy - 0.5).mean()) < 0.002


def test_shadow_without_affine_or_blur_is_alpha_times_strength():
    pha = jnp.asarray(_batch()[1][0])
    cast = jax.jit(augment.cast_shadow, static_argnums=4)
    shadow = cast(pha, jnp.float32(0.3), _identity_affine(), jnp.int32(1), 39)
    np.testing.assert_allclose(shadow, 0.3 * pha, atol=1e-6)
