"""Structure and behaviour of the Flax models: exact parameter counts, output shapes, refiner invariants,
precision, and the errors for inputs the original rejects."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bgm_jax.models import MattingBase, MattingRefine
from bgm_jax.models.refiner import crop_patches, replace_patches

REFINE_PARAMS = {"resnet50": 40_247_703, "resnet101": 59_239_831, "mobilenetv2": 5_006_839}
REFINER_PARAMS = 15_444


def count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


def abstract_init(model, shape):
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    return jax.eval_shape(lambda s, b: model.init_with_output(jax.random.key(0), s, b), x, x)


@pytest.mark.parametrize("backbone", sorted(REFINE_PARAMS))
def test_trainable_parameter_counts_equal_the_original(backbone):
    _, refine_vars = abstract_init(MattingRefine(backbone=backbone), (1, 64, 64, 3))
    _, base_vars = abstract_init(MattingBase(backbone=backbone), (1, 64, 64, 3))
    assert count(refine_vars["params"]) == REFINE_PARAMS[backbone]
    assert count(refine_vars["params"]["refiner"]) == REFINER_PARAMS
    assert count(base_vars["params"]) == REFINE_PARAMS[backbone] - REFINER_PARAMS


@pytest.mark.parametrize(
    "height,width,scale,coarse,ref",
    [
        (1080, 1920, 0.25, (270, 480), (270, 480)),
        (2160, 3840, 0.125, (270, 480), (540, 960)),
        (1084, 1924, 0.25, (271, 481), (271, 481)),
    ],
)
def test_output_shapes_at_hd_4k_and_odd_coarse_sizes(height, width, scale, coarse, ref):
    model = MattingRefine(backbone="resnet50", backbone_scale=scale)
    (pha, fgr, pha_sm, fgr_sm, err_sm, ref_sm), _ = abstract_init(model, (1, height, width, 3))
    assert pha.shape == (1, height, width, 1)
    assert fgr.shape == (1, height, width, 3)
    assert pha_sm.shape == (1, *coarse, 1)
    assert fgr_sm.shape == (1, *coarse, 3)
    assert err_sm.shape == (1, *coarse, 1)
    assert ref_sm.shape == (1, *ref, 1)


def test_matting_base_accepts_any_size():
    (pha, fgr, err, hid), _ = abstract_init(MattingBase(backbone="mobilenetv2"), (2, 50, 70, 3))
    assert (pha.shape, fgr.shape, err.shape, hid.shape) == (
        (2, 50, 70, 1),
        (2, 50, 70, 3),
        (2, 50, 70, 1),
        (2, 50, 70, 32),
    )


# ---------------------------------------------------------------------------------------------------------
# Refiner invariants (eval mode, small sizes, one small backbone so the suite stays fast).

H, W = 48, 64  # quarter-resolution grid 12 x 16 = 192 cells; coarse 24 x 32 at scale 1/2
NUM_CELLS = (H // 4) * (W // 4)


def random_pair(seed, batch=2):
    k1, k2 = jax.random.split(jax.random.key(seed))
    src = jax.random.uniform(k1, (batch, H, W, 3))
    bgr = jax.random.uniform(k2, (batch, H, W, 3))
    return src, bgr


@pytest.fixture(scope="module")
def variables():
    """Random weights whose error map lies inside (0, 1) with distinct values, so selections are
    unambiguous, and non-trivial BatchNorm running statistics."""
    model = MattingRefine(backbone="mobilenetv2", backbone_scale=0.5)
    src, bgr = random_pair(0)
    v = model.init(jax.random.key(1), src, bgr)
    keys = iter(jax.random.split(jax.random.key(2), 10_000))

    def perturb_stats(path, x):
        if path[-1].key == "var":
            return 0.5 + jax.random.uniform(next(keys), x.shape)
        return 0.1 * jax.random.normal(next(keys), x.shape)

    stats = jax.tree_util.tree_map_with_path(perturb_stats, v["batch_stats"])
    params = jax.tree_util.tree_map(lambda x: x, v["params"])
    conv4 = dict(params["decoder"]["conv4"])
    conv4["kernel"] = (conv4["kernel"] * 0.05).at[..., 4].multiply(10.0)
    conv4["bias"] = conv4["bias"].at[4].set(0.5)
    params["decoder"] = dict(params["decoder"], conv4=conv4)
    return {"params": params, "batch_stats": stats}


def run(variables, src, bgr, **kwargs):
    model = MattingRefine(backbone="mobilenetv2", backbone_scale=0.5, **kwargs)
    return jax.jit(lambda v, s, b: model.apply(v, s, b))(variables, src, bgr)


def coarse_upsample(pha_sm, fgr_sm, src):
    """Bilinear upsample of the coarse outputs, as the refiner does where it refines nothing."""
    pha = jax.image.resize(pha_sm, pha_sm.shape[:1] + (H, W, 1), "bilinear", antialias=False)
    src_sm = jax.image.resize(src, src.shape[:1] + pha_sm.shape[1:3] + (3,), "bilinear", antialias=False)
    fgr_res = jax.image.resize(fgr_sm - src_sm, src.shape, "bilinear", antialias=False)
    return pha, jnp.clip(fgr_res + src, 0, 1)


def test_error_map_of_test_weights_is_inside_zero_one(variables):
    src, bgr = random_pair(3)
    err_sm = run(variables, src, bgr, refine_mode="full")[4]
    assert 0.0 < float(err_sm.min()) and float(err_sm.max()) < 1.0
    for image in np.asarray(err_sm):  # top-k runs per image: no ties within one
        assert len(np.unique(image)) == image.size


@pytest.mark.parametrize("kernel_size", [3, 1])
def test_full_mode_equals_sampling_with_every_cell_selected(kernel_size):
    model_kwargs = dict(backbone="mobilenetv2", backbone_scale=0.5, refine_kernel_size=kernel_size)
    src, bgr = random_pair(4)
    v = MattingRefine(**model_kwargs).init(jax.random.key(5), src, bgr)
    full = MattingRefine(refine_mode="full", **model_kwargs).apply(v, src, bgr)
    # The gather/scatter path with a capacity of every cell and a threshold nothing falls below.
    patches = MattingRefine(
        refine_mode="thresholding", refine_threshold=-1.0, refine_threshold_capacity=NUM_CELLS,
        refine_strategy="patches", **model_kwargs
    ).apply(v, src, bgr)
    # Sampling with k larger than the number of cells: refines everything instead of crashing.
    sampling = MattingRefine(
        refine_sample_pixels=16 * NUM_CELLS * 4, refine_prevent_oversampling=False, **model_kwargs
    ).apply(v, src, bgr)
    for a, b, c in zip(full, patches, sampling):
        np.testing.assert_allclose(a, b, atol=1e-5)
        np.testing.assert_allclose(a, c, atol=1e-5)
    assert float(patches[5].min()) == 1.0


def test_partial_selection_equals_full_inside_cells_and_upsampled_coarse_elsewhere(variables):
    src, bgr = random_pair(6)
    k = 40
    full = run(variables, src, bgr, refine_mode="full")
    part = run(variables, src, bgr, refine_sample_pixels=16 * k, refine_strategy="patches")
    # The other eval strategies refine the same cells the same way: the first stage over the image and
    # the second on patches, or both over the image and a mask.
    for strategy in ("hybrid", "image"):
        other = run(variables, src, bgr, refine_sample_pixels=16 * k, refine_strategy=strategy)
        for a, b in zip(part, other):
            np.testing.assert_allclose(a, b, atol=1e-5, err_msg=strategy)
    pha_sm, fgr_sm, err_sm, ref_sm = part[2], part[3], part[4], part[5]
    assert ref_sm.shape == (2, H // 4, W // 4, 1)
    # Exactly k cells per image, and they are the top-k of the (identity-resized) error map.
    np.testing.assert_array_equal(np.asarray(ref_sm).reshape(2, -1).sum(1), [k, k])
    err_q = np.asarray(jax.image.resize(err_sm, (2, H // 4, W // 4, 1), "bilinear", antialias=False))
    for b in range(2):
        top = np.argsort(-err_q[b].ravel())[:k]
        assert set(top) == set(np.flatnonzero(np.asarray(ref_sm[b]).ravel()))

    mask = np.repeat(np.repeat(np.asarray(ref_sm) > 0, 4, axis=1), 4, axis=2)
    up_pha, up_fgr = coarse_upsample(pha_sm, fgr_sm, src)
    np.testing.assert_allclose(np.where(mask, full[0], up_pha), part[0], atol=1e-5)
    np.testing.assert_allclose(np.where(mask, full[1], up_fgr), part[1], atol=1e-5)
    # The coarse outputs do not depend on the refine mode.
    for i in (2, 3, 4):
        np.testing.assert_allclose(full[i], part[i], atol=1e-6)


def test_thresholding_refines_exactly_the_cells_above_the_threshold(variables):
    src, bgr = random_pair(7)
    err_sm = run(variables, src, bgr, refine_mode="full")[4]
    threshold = float(np.median(np.asarray(err_sm)))
    full = run(variables, src, bgr, refine_mode="full")
    exact = run(variables, src, bgr, refine_mode="thresholding", refine_threshold=threshold)
    err_q = jax.image.resize(err_sm, (2, H // 4, W // 4, 1), "bilinear", antialias=False)
    np.testing.assert_array_equal(np.asarray(exact[5]) > 0, np.asarray(err_q) > threshold)
    mask = np.repeat(np.repeat(np.asarray(exact[5]) > 0, 4, axis=1), 4, axis=2)
    up_pha, _ = coarse_upsample(exact[2], exact[3], src)
    np.testing.assert_allclose(np.where(mask, full[0], up_pha), exact[0], atol=1e-5)
    # A static capacity large enough for every cell above the threshold gives the same result...
    above = int((np.asarray(err_q) > threshold).reshape(2, -1).sum(1).max())
    capped = run(
        variables, src, bgr, refine_mode="thresholding", refine_threshold=threshold,
        refine_threshold_capacity=above,
    )
    np.testing.assert_allclose(capped[0], exact[0], atol=1e-5)
    np.testing.assert_array_equal(capped[5], exact[5])
    # ...and a smaller one refines the `capacity` cells of largest error.
    small = run(
        variables, src, bgr, refine_mode="thresholding", refine_threshold=threshold, refine_threshold_capacity=5,
        refine_strategy="patches",
    )
    np.testing.assert_array_equal(np.asarray(small[5]).reshape(2, -1).sum(1), [5, 5])


def test_prevent_oversampling_masks_cells_with_zero_error(variables):
    src, bgr = random_pair(8)
    params = jax.tree_util.tree_map(lambda x: x, variables["params"])
    conv4 = dict(params["decoder"]["conv4"])
    # Error channel: zero for the left half of the coarse map (negative before the clip).
    conv4["kernel"] = conv4["kernel"].at[..., 4].set(0.0)
    conv4["bias"] = conv4["bias"].at[4].set(-1.0)
    params["decoder"] = dict(params["decoder"], conv4=conv4)
    v = {"params": params, "batch_stats": variables["batch_stats"]}
    out = run(v, src, bgr, refine_sample_pixels=16 * 10)
    assert float(out[4].max()) == 0.0
    assert float(out[5].sum()) == 0.0  # nothing refined: all error is zero
    up_pha, up_fgr = coarse_upsample(out[2], out[3], src)
    np.testing.assert_allclose(out[0], up_pha, atol=1e-6)
    np.testing.assert_allclose(out[1], up_fgr, atol=1e-6)
    off = run(v, src, bgr, refine_sample_pixels=16 * 10, refine_prevent_oversampling=False)
    np.testing.assert_array_equal(np.asarray(off[5]).reshape(2, -1).sum(1), [10, 10])


def test_crop_patches_pads_with_zeros_outside_the_image():
    x = jnp.arange(2 * 8 * 12 * 1, dtype=jnp.float32).reshape(2, 8, 12, 1) + 1
    grid_width = 3  # an 8x12 image of 4x4 cells
    idx = jnp.array([[0, 5], [4, 2]])
    got = np.asarray(crop_patches(x, idx, grid_width, cell=4, pad=2))
    padded = np.pad(np.asarray(x), ((0, 0), (2, 2), (2, 2), (0, 0)))
    for b in range(2):
        for j in range(2):
            r, c = divmod(int(idx[b, j]), grid_width)
            np.testing.assert_array_equal(got[b, j], padded[b, 4 * r : 4 * r + 8, 4 * c : 4 * c + 8])
    assert got[0, 0, 0, 0, 0] == 0.0  # top-left corner window reaches outside the image


def test_replace_patches_writes_only_valid_slots_of_each_image():
    x = jnp.zeros((2, 8, 8, 1))
    patches = jnp.stack([jnp.full((2, 4, 4, 1), 1.0), jnp.full((2, 4, 4, 1), 2.0)])
    idx = jnp.array([[0, 3], [1, 2]])
    valid = jnp.array([[True, False], [True, True]])
    out = np.asarray(replace_patches(x, patches, idx, valid))[..., 0]
    expected = np.zeros((2, 8, 8))
    expected[0, 0:4, 0:4] = 1.0
    expected[1, 0:4, 4:8] = 2.0
    expected[1, 4:8, 0:4] = 2.0
    np.testing.assert_array_equal(out, expected)


# ---------------------------------------------------------------------------------------------------------
# Precision and training mode


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_runs_jitted_in_float32_and_bfloat16_with_float32_params(dtype):
    src, bgr = random_pair(9, batch=1)
    model = MattingRefine(backbone="mobilenetv2", backbone_scale=0.5, refine_sample_pixels=320, dtype=dtype)
    v = model.init(jax.random.key(0), src, bgr)
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(v))
    outs = jax.jit(model.apply)(v, src, bgr)
    names = ("pha", "fgr", "pha_sm", "fgr_sm", "err_sm", "ref_sm")
    for name, out in zip(names, outs):
        # The error map is float32 whatever the compute dtype: it chooses the refined patches.
        assert out.dtype == (jnp.float32 if name == "err_sm" else dtype), name
        assert bool(jnp.all(jnp.isfinite(out.astype(jnp.float32))))
    assert outs[0].shape == (1, H, W, 1)


def test_resnet50_runs_jitted():
    src, bgr = random_pair(10, batch=1)
    model = MattingRefine(backbone="resnet50", backbone_scale=0.25, refine_sample_pixels=16 * 20)
    v = model.init(jax.random.key(0), src, bgr)
    pha, fgr, *_ = jax.jit(model.apply)(v, src, bgr)
    assert pha.shape == (1, H, W, 1) and fgr.shape == (1, H, W, 3)


def test_training_mode_updates_batch_stats_and_uses_dropout():
    src, bgr = random_pair(11)
    model = MattingRefine(backbone="mobilenetv2", backbone_scale=0.5, refine_sample_pixels=16 * 30)
    v = model.init(jax.random.key(0), src, bgr)

    @jax.jit
    def train_apply(v, key):
        return model.apply(v, src, bgr, train=True, rngs={"dropout": key}, mutable=["batch_stats"])

    (pha, *_), new = train_apply(v, jax.random.key(1))
    (pha2, *_), _ = train_apply(v, jax.random.key(2))
    assert pha.shape == (2, H, W, 1)
    changed = jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)), v["batch_stats"], new["batch_stats"])
    assert all(jax.tree_util.tree_leaves(changed))
    assert not np.allclose(pha, pha2)  # different dropout masks


# ---------------------------------------------------------------------------------------------------------
# Clear errors where the original asserts or crashes


def test_mismatched_src_and_bgr_shapes_raise_value_error():
    model = MattingRefine(backbone="mobilenetv2")
    with pytest.raises(ValueError, match="same shape"):
        abstract_init_pair(model, (1, 64, 64, 3), (1, 64, 68, 3))


def abstract_init_pair(model, src_shape, bgr_shape):
    s = jax.ShapeDtypeStruct(src_shape, jnp.float32)
    b = jax.ShapeDtypeStruct(bgr_shape, jnp.float32)
    return jax.eval_shape(lambda s, b: model.init(jax.random.key(0), s, b), s, b)


@pytest.mark.parametrize("shape", [(1, 62, 64, 3), (1, 64, 66, 3)])
def test_height_or_width_not_multiple_of_four_raise_value_error(shape):
    with pytest.raises(ValueError, match="multiples of 4"):
        abstract_init_pair(MattingRefine(backbone="mobilenetv2"), shape, shape)


def test_backbone_scale_above_one_half_raises_value_error():
    with pytest.raises(ValueError, match="backbone_scale"):
        MattingRefine(backbone="mobilenetv2", backbone_scale=0.75)


@pytest.mark.parametrize("cls", [MattingBase, MattingRefine])
def test_unknown_backbone_raises_value_error(cls):
    with pytest.raises(ValueError, match="unknown backbone"):
        cls(backbone="vgg16")


def test_unknown_refine_mode_raises_value_error():
    with pytest.raises(ValueError, match="unknown refine mode"):
        MattingRefine(refine_mode="magic")


def test_unknown_refine_kernel_size_raises_value_error():
    with pytest.raises(ValueError, match="kernel_size"):
        MattingRefine(refine_kernel_size=5)


# ---------------------------------------------------------------------------------------------------------
# The refiner's masked BatchNorm


def test_batchnorm_without_mask_normalises_like_flax_and_updates_variance_unbiased():
    import flax.linen as nn

    from bgm_jax.models.layers import BatchNorm

    x = jax.random.normal(jax.random.key(0), (6, 5, 5, 7)) * 3 + 1
    ours = BatchNorm()
    ref = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5)
    v = ours.init(jax.random.key(1), x)
    y1, s1 = ours.apply(v, x, mutable=["batch_stats"])
    y2, s2 = ref.apply(v, x, mutable=["batch_stats"])
    np.testing.assert_allclose(y1, y2, atol=1e-5)
    np.testing.assert_allclose(s1["batch_stats"]["mean"], s2["batch_stats"]["mean"], atol=1e-6)
    # Flax updates with the biased variance, PyTorch (and this) with the unbiased one: n = 150 here.
    biased = (np.asarray(s2["batch_stats"]["var"]) - 0.9) / 0.1
    np.testing.assert_allclose(s1["batch_stats"]["var"], 0.9 + 0.1 * biased * 150 / 149, rtol=1e-5)


def test_masked_batchnorm_statistics_are_exact_across_replicas_with_unequal_counts():
    from bgm_jax.models.layers import BatchNorm

    devices = jax.local_devices()[:4]
    assert len(devices) == 4, "conftest sets four fake CPU devices"
    x = jax.random.normal(jax.random.key(0), (4, 3, 4, 4, 5)) * 2 + 0.5
    # Replica 0 selects all 3 patches, replica 1 one, replica 2 none, replica 3 two.
    mask = jnp.array([[1, 1, 1], [0, 1, 0], [0, 0, 0], [1, 0, 1]], bool).reshape(4, 3, 1, 1, 1)
    v = BatchNorm().init(jax.random.key(1), x[0])

    def step(x, mask):
        return BatchNorm(axis_name="batch").apply(v, x, mask, mutable=["batch_stats"])

    y, stats = jax.pmap(step, axis_name="batch", devices=devices)(x, mask)
    # The same on one device: statistics of exactly the selected patches.
    y1, stats1 = BatchNorm().apply(v, x.reshape(12, 4, 4, 5), mask.reshape(12, 1, 1, 1), mutable=["batch_stats"])
    np.testing.assert_allclose(y.reshape(y1.shape), y1, atol=1e-5)
    np.testing.assert_allclose(stats["batch_stats"]["mean"][0], stats1["batch_stats"]["mean"], atol=1e-6)
    np.testing.assert_allclose(stats["batch_stats"]["var"][2], stats1["batch_stats"]["var"], atol=1e-5)
    selected = np.asarray(x.reshape(12, 4, 4, 5))[np.asarray(mask).ravel()]
    np.testing.assert_allclose(
        stats1["batch_stats"]["mean"], 0.1 * selected.reshape(-1, 5).mean(0), atol=1e-5
    )


def test_masked_batchnorm_keeps_running_statistics_when_nothing_is_selected():
    from bgm_jax.models.layers import BatchNorm

    x = jnp.ones((2, 4, 4, 3))
    v = BatchNorm().init(jax.random.key(1), x)
    y, stats = BatchNorm().apply(v, x, jnp.zeros((2, 1, 1, 1), bool), mutable=["batch_stats"])
    assert bool(jnp.all(jnp.isfinite(y)))
    np.testing.assert_array_equal(stats["batch_stats"]["mean"], v["batch_stats"]["mean"])
    np.testing.assert_array_equal(stats["batch_stats"]["var"], v["batch_stats"]["var"])


@pytest.mark.parametrize(
    "shape,size",
    [((2, 8, 12, 3), (16, 24)), ((1, 36, 52, 2), (9, 13)), ((1, 1084, 20, 1), (271, 5)),
     ((1, 76, 4, 1), (9, 4)), ((1, 17, 23, 2), (68, 120)), ((1, 1, 1, 4), (5, 7))],
)
def test_bilinear_resize_matches_pytorch_coordinates(shape, size):
    """Against jax.image.resize without antialiasing (itself within ~6e-8 of torch's F.interpolate),
    for up- and downsampling, odd and non-integer ratios, and a 1x1 source."""
    from bgm_jax.models.layers import resize_bilinear

    x = jax.random.uniform(jax.random.key(0), shape)
    expected = jax.image.resize(x, (shape[0], *size, shape[3]), "bilinear", antialias=False)
    np.testing.assert_allclose(resize_bilinear(x, size), expected, atol=2e-6)


@pytest.mark.parametrize("stride, dilation", [(1, 1), (2, 1), (1, 2), (2, 2)])
@pytest.mark.parametrize("height, width", [(9, 14), (10, 7)])
def test_depthwise_taps_equal_the_grouped_convolution(stride, dilation, height, width):
    """MobileNetV2's CPU formulation of its 3x3 depthwise convolutions (nine shifted multiply-adds)
    against the feature_group_count convolution the other platforms run, odd sizes included."""
    from bgm_jax.models.mobilenetv2 import depthwise_taps

    x = jax.random.normal(jax.random.key(0), (2, height, width, 5))
    kernel = jax.random.normal(jax.random.key(1), (3, 3, 1, 5))
    expected = jax.lax.conv_general_dilated(
        x, kernel, (stride, stride), ((dilation, dilation),) * 2, rhs_dilation=(dilation, dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=5, precision="highest")
    got = depthwise_taps(x, kernel, stride, dilation)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("height, width", [(4, 4), (5, 7)])
def test_upsampled_conv_equals_convolving_the_nearest_upsampled_input(height, width):
    """The refiner's conv3 on the 2x nearest-upsampled first stage, computed as four 2x2 phase
    convolutions at the lower resolution (refiner.upsampled_conv)."""
    from bgm_jax.models.layers import upsample_nearest_2x
    from bgm_jax.models.refiner import conv_valid, upsampled_conv

    x = jax.random.normal(jax.random.key(2), (3, height, width, 16))
    kernel = jax.random.normal(jax.random.key(3), (3, 3, 16, 12))
    with jax.default_matmul_precision("highest"):
        expected = conv_valid(upsample_nearest_2x(x), kernel, jnp.float32)
        got = upsampled_conv(x, kernel, jnp.float32)
    assert got.shape == expected.shape == (3, 2 * height - 2, 2 * width - 2, 12)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-5)


def test_patch_strategy_takes_patches_for_small_selections_and_the_image_for_large_ones():
    from bgm_jax.models.refiner import patch_strategy

    # The paper's settings: 5,000 patches of 129,600 cells at HD, of 16,384 at 512x512.
    assert patch_strategy(5_000, 129_600) == "patches"
    assert patch_strategy(20_000, 518_400) == "patches"  # 4K, 320,000 sample pixels
    assert patch_strategy(5_000, 16_384) == "hybrid"
    assert patch_strategy(12_000, 16_384) == "image"
    # The cost of the choice never decreases as the selection grows: patches, then hybrid, then image.
    order = [patch_strategy(k, 16_384) for k in range(0, 16_385, 64)]
    assert order == sorted(order, key=["patches", "hybrid", "image"].index)
    assert patch_strategy(5_000, 16_384, strategy="patches") == "patches"  # forced
    assert patch_strategy(100, 16_384, kernel_size=1) == "patches"
    assert patch_strategy(10_000, 16_384, kernel_size=1) == "image"



def test_train_patch_strategy_runs_conv1_over_the_image_when_the_windows_would_hold_more():
    from bgm_jax.models.refiner import train_patch_strategy

    # A 384x512 crop has 12,288 cells; 48,000 refined pixels are 3,000 windows of 6x6 conv1 outputs
    # (108,000) against the image's 49,152: the hybrid. 16,000 (36,000) and HD at the paper's 80,000
    # pixels (5,000 of 129,600 cells) stay with the patches.
    assert train_patch_strategy(3_000, 12_288) == "hybrid"
    assert train_patch_strategy(1_000, 12_288) == "patches"
    assert train_patch_strategy(5_000, 129_600) == "patches"
    assert train_patch_strategy(3_000, 12_288, kernel_size=1) == "patches"  # 2x2 windows: never more
    assert train_patch_strategy(3_000, 12_288, strategy="patches") == "patches"  # forced
    assert train_patch_strategy(10, 12_288, strategy="hybrid") == "hybrid"
    assert train_patch_strategy(10, 12_288, strategy="image") == "hybrid"  # batch statistics need windows


def test_training_hybrid_gives_the_patches_outputs_statistics_and_gradients():
    """In training, conv1 over the image and then its windows is the original's conv1 on each window:
    the same outputs, BatchNorm updates (statistics over the windows of valid cells only: the threshold
    leaves some of the capacity's slots invalid here), and gradients for the refiner's parameters and
    for the coarse maps it reads (the way to the rest of the network). In float64, so that only the order
    of the sums differs (float32 leaves ~1e-3 of the largest gradient in the backbone's BatchNorm scales,
    where training-mode statistics cancel most of it)."""
    from bgm_jax.models.refiner import Refiner

    with jax.enable_x64(True):
        keys = iter(jax.random.split(jax.random.key(12), 8))
        full = [jax.random.uniform(next(keys), (2, H, W, 3), jnp.float64) for _ in range(2)]
        coarse = [jax.random.uniform(next(keys), (2, H // 2, W // 2, c), jnp.float64) for c in (1, 3, 1, 32)]
        threshold = float(np.median(np.asarray(coarse[2])))  # about half of the 192 cells pass

        def train_apply(strategy):
            refiner = Refiner(mode="thresholding", threshold=threshold, threshold_capacity=150, strategy=strategy,
                              dtype=jnp.float64)
            v = refiner.init(jax.random.key(3), *full, *coarse)
            v = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), v)

            def loss(params, pha, fgr, hid):
                outs, new = refiner.apply({"params": params, "batch_stats": v["batch_stats"]}, *full, pha, fgr,
                                          coarse[2], hid, train=True, mutable=["batch_stats"])
                weights = [jax.random.normal(jax.random.key(i), o.shape, jnp.float64) for i, o in enumerate(outs[:2])]
                return sum(jnp.sum(w * o) for w, o in zip(weights, outs[:2])), (outs, new["batch_stats"])

            grad = jax.value_and_grad(loss, argnums=(0, 1, 2, 3), has_aux=True)
            return jax.jit(grad)(v["params"], coarse[0], coarse[1], coarse[3])

        (loss_p, (outs_p, stats_p)), grads_p = train_apply("patches")
        (loss_h, (outs_h, stats_h)), grads_h = train_apply("hybrid")
    refined = float(np.asarray(outs_p[2]).sum())
    assert 20 < refined < 2 * 150, refined  # some cells refined, some slots invalid
    np.testing.assert_allclose(loss_h, loss_p, rtol=1e-12)
    for a, b in zip(outs_p, outs_h):
        np.testing.assert_allclose(b, a, atol=1e-12)
    flat_h = dict(jax.tree_util.tree_leaves_with_path((stats_h, grads_h)))
    leaves = jax.tree_util.tree_leaves_with_path((stats_p, grads_p))
    # 3 BatchNorms x 2 statistics; 4 kernels, a bias, 3 x 2 BatchNorm parameters; 3 coarse maps
    assert len(leaves) == 3 * 2 + (4 + 1 + 3 * 2) + 3 and all(x.dtype == jnp.float64 for _, x in leaves)
    for path, a in leaves:
        scale = float(np.max(np.abs(a))) or 1.0
        np.testing.assert_allclose(flat_h[path], a, rtol=0, atol=1e-10 * scale, err_msg=jax.tree_util.keystr(path))
    assert float(np.abs(np.asarray(grads_p[3])).max()) > 0  # the hidden features get a gradient

# ---------------------------------------------------------------------------------------------------------
# Patch selection on a float32 error map whatever the compute dtype


def near_tie_refine_case(dtype):
    """A MattingRefine whose coarse error is ``0.5 + 1e-3 * v`` with ``v`` one distinct value k/256 per
    quarter-resolution cell: in float32 every cell differs, rounded to bfloat16 (steps of 2^-8 at 0.5)
    they all tie at 0.5. Values and the resizes are exact in both dtypes, so a float32 error map gives
    identical errors, hence identical selections."""
    model = MattingRefine("mobilenetv2", backbone_scale=0.5, refine_sample_pixels=16 * 40,
                          refine_prevent_oversampling=False, refine_strategy="patches", dtype=dtype)
    v = np.random.default_rng(0).permutation(256).astype(np.float32).reshape(16, 16) / 256
    src = np.repeat(np.repeat(v, 4, axis=0), 4, axis=1)[None, :, :, None] * np.ones((1, 1, 1, 3), np.float32)
    bgr = np.zeros_like(src)
    variables = jax.jit(MattingRefine("mobilenetv2", backbone_scale=0.5).init)(jax.random.key(0), src, bgr)
    params = jax.tree_util.tree_map(np.array, variables["params"])
    kernel, bias = params["decoder"]["conv4"]["kernel"], params["decoder"]["conv4"]["bias"]
    kernel[..., 4] = 0.0
    kernel[1, 1, kernel.shape[2] - 6, 4] = 1e-3  # centre tap of src's red channel (x0 = [src, bgr] last)
    bias[4] = 0.5
    return model, {"params": params, "batch_stats": variables["batch_stats"]}, src, bgr, v


def test_bfloat16_compute_selects_the_same_cells_as_float32_on_near_ties():
    selected = {}
    for dtype in (jnp.float32, jnp.bfloat16):
        model, variables, src, bgr, v = near_tie_refine_case(dtype)
        *_, err_sm, ref_sm = jax.jit(model.apply)(variables, src, bgr)
        assert err_sm.dtype == jnp.float32
        selected[dtype] = np.asarray(ref_sm)[0, :, :, 0].astype(bool)
    np.testing.assert_array_equal(selected[jnp.bfloat16], selected[jnp.float32])
    # ... and those are the 40 cells of largest v, not the first 40 of the image.
    assert selected[jnp.float32].sum() == 40
    assert set(np.flatnonzero(selected[jnp.float32])) == set(np.argsort(-v.ravel())[:40])
