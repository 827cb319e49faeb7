"""The inference API: checkpoint round trip, padding to the model's needs and cropping back exactly,
one compilation per shape, settings from the resolution, and clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bgm_jax
from bgm_jax.checkpoint import build_model, load_model, read_config, save_model
from bgm_jax.errors import InputError
from bgm_jax.inference import Settings, recommended_settings

CONFIG = {"model_type": "refine", "backbone": "mobilenetv2", "refine_kernel_size": 3}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    x = jnp.zeros((1, 64, 64, 3))
    variables = build_model(CONFIG).init(jax.random.key(0), x, x)
    path = tmp_path_factory.mktemp("ckpt") / "mobilenetv2"
    save_model(path, variables, CONFIG)
    return path, variables


@pytest.fixture(scope="module")
def matting(checkpoint, tmp_path_factory):
    return bgm_jax.load(checkpoint[0], compilation_cache=tmp_path_factory.mktemp("xla"))


def images(height, width, seed=0, batch=None):
    rng = np.random.default_rng(seed)
    shape = (height, width, 3) if batch is None else (batch, height, width, 3)
    return rng.integers(0, 256, shape, np.uint8), rng.integers(0, 256, shape, np.uint8)


def test_checkpoint_round_trip_restores_every_array_and_the_config(checkpoint):
    path, variables = checkpoint
    config, restored = load_model(path)
    assert config["backbone"] == "mobilenetv2" and config["model_type"] == "refine"
    assert config["format"] == "bgm-jax-model"
    flat_a = jax.tree_util.tree_leaves_with_path({k: variables[k] for k in ("params", "batch_stats")})
    flat_b = dict(jax.tree_util.tree_leaves_with_path(restored))
    assert len(flat_a) == len(flat_b)
    for key, value in flat_a:
        np.testing.assert_array_equal(np.asarray(value), np.asarray(flat_b[key]))


def test_saving_over_an_existing_checkpoint_needs_overwrite(checkpoint):
    path, variables = checkpoint
    with pytest.raises(InputError, match="already exists"):
        save_model(path, variables, CONFIG)


def test_loading_a_folder_that_is_not_a_checkpoint_names_it(tmp_path):
    with pytest.raises(InputError, match="no such checkpoint directory"):
        read_config(tmp_path / "missing")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file.txt").write_text("x")
    with pytest.raises(InputError, match="not a bgm-jax model checkpoint"):
        bgm_jax.load(tmp_path / "junk", compilation_cache=False)


def test_output_for_a_multiple_of_four_equals_the_model(matting, checkpoint):
    src, bgr = images(48, 64)
    result = matting(src, bgr)
    fields = matting.model_fields(48, 64)
    model = build_model(CONFIG, **fields)
    expected = model.apply(checkpoint[1], src[None] / 255.0, bgr[None] / 255.0)
    np.testing.assert_allclose(result.pha, expected[0], atol=1e-6)
    np.testing.assert_allclose(result.fgr, expected[1], atol=1e-6)
    np.testing.assert_allclose(result.err, expected[4], atol=1e-6)
    np.testing.assert_array_equal(result.ref, expected[5])


def test_any_size_is_edge_padded_to_a_multiple_of_four_and_cropped_back_exactly(matting, checkpoint):
    src, bgr = images(50, 70, seed=1)
    result = matting(src, bgr)
    assert result.pha.shape == (1, 50, 70, 1) and result.fgr.shape == (1, 50, 70, 3)
    pad = ((0, 2), (0, 2), (0, 0))  # 50x70 -> 52x72, bottom/right
    src_p, bgr_p = np.pad(src, pad, mode="edge"), np.pad(bgr, pad, mode="edge")
    model = build_model(CONFIG, **matting.model_fields(52, 72))
    expected = model.apply(checkpoint[1], src_p[None] / 255.0, bgr_p[None] / 255.0)
    np.testing.assert_allclose(result.pha, expected[0][:, :50, :70], atol=1e-6)
    np.testing.assert_allclose(result.fgr, expected[1][:, :50, :70], atol=1e-6)
    assert result.ref.shape == (1, 13, 18, 1)


def test_uint8_float_hwc_and_nhwc_inputs_agree(matting):
    src, bgr = images(48, 64, seed=2)
    a = matting(src, bgr)
    b = matting(src[None].astype(np.float32) / 255, bgr[None].astype(np.float32) / 255)
    c = matting(jnp.asarray(src), jnp.asarray(bgr))
    np.testing.assert_allclose(a.pha, b.pha, atol=1e-6)
    np.testing.assert_allclose(a.pha, c.pha, atol=0)


def test_one_background_serves_a_whole_batch(matting):
    src, _ = images(48, 64, seed=3, batch=3)
    _, bgr = images(48, 64, seed=4)
    batch = matting(src, bgr)
    single = matting(src[1], bgr)
    assert batch.pha.shape == (3, 48, 64, 1)
    np.testing.assert_allclose(batch.pha[1], single.pha[0], atol=1e-5)


def test_a_repeated_shape_never_recompiles(checkpoint):
    compiles = []

    def listener(event, duration, **kwargs):
        if "backend_compile" in event:
            compiles.append(event)

    matting = bgm_jax.load(checkpoint[0], compilation_cache=False)
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        src, bgr = images(40, 56, seed=5)
        np.asarray(matting(src, bgr).pha)
        first = len(compiles)
        for seed in range(6, 9):
            src, bgr = images(40, 56, seed=seed)
            np.asarray(matting(src, bgr).pha)
        assert first >= 1
        assert len(compiles) == first, "a repeated shape triggered XLA compilation"
        assert matting.compile_count == 1
        matting(*images(44, 56, seed=9))  # a new shape compiles once more
        assert matting.compile_count == 2
    finally:
        jax.monitoring.clear_event_listeners()


def test_a_second_process_reads_compiled_code_from_the_persistent_cache(checkpoint, tmp_path):
    # JAX fixes its cache directory once per process, so this runs the way users meet it: two processes.
    import subprocess
    import sys

    cache = tmp_path / "xla"
    script = (
        "import sys, jax, numpy as np, bgm_jax\n"
        "hits = []\n"
        "jax.monitoring.register_event_listener(lambda e, **k: hits.append(e) if 'cache_hits' in e else None)\n"
        f"m = bgm_jax.load({str(checkpoint[0])!r}, compilation_cache={str(cache)!r})\n"
        "np.asarray(m(np.zeros((36, 52, 3), np.uint8), np.zeros((36, 52, 3), np.uint8)).pha)\n"
        "print(len(hits))\n"
    )
    env = {**__import__("os").environ, "JAX_PLATFORMS": "cpu"}
    first = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert any(cache.iterdir()), "no compiled executable was stored in the persistent cache"
    second = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert int(first.stdout.split()[-1]) == 0
    assert int(second.stdout.split()[-1]) >= 1, "the second process did not hit the persistent cache"


def test_background_of_another_size_is_an_error_unless_resizing_is_asked_for(matting):
    src, _ = images(48, 64)
    _, bgr = images(40, 64)
    with pytest.raises(InputError, match="background is 64x40 but the source is 64x48"):
        matting(src, bgr)
    assert matting(src, bgr, resize_background=True).pha.shape == (1, 48, 64, 1)


@pytest.mark.parametrize(
    "src_shape,match",
    [((48, 64), "RGB image"), ((48, 64, 4), "RGB image"), ((1, 1, 48, 64, 3), "RGB image")],
)
def test_inputs_that_are_not_rgb_images_are_rejected(matting, src_shape, match):
    with pytest.raises(InputError, match=match):
        matting(np.zeros(src_shape, np.uint8), np.zeros(src_shape, np.uint8))


def test_settings_follow_the_paper_for_hd_and_4k_and_can_be_overridden():
    assert recommended_settings(1080, 1920) == (0.25, 80_000)
    assert recommended_settings(2160, 3840) == (0.125, 320_000)
    fields = Settings(backbone_scale=0.5, refine_sample_pixels=1000).resolve(2160, 3840)
    assert fields["backbone_scale"] == 0.5 and fields["refine_sample_pixels"] == 1000
    with pytest.raises(InputError, match="precision"):
        Settings(precision="int8")
    with pytest.raises(InputError, match="backbone scale"):
        Settings(backbone_scale=0.75)


def test_a_backbone_scale_recorded_by_the_model_is_its_default_and_an_explicit_one_wins(matting):
    from bgm_jax.inference import Matting

    own = Matting({**matting.config, "backbone_scale": 0.5}, matting.variables)
    assert own.model_fields(2160, 3840)["backbone_scale"] == 0.5  # instead of the paper's 0.125 for 4K
    assert own.model_fields(2160, 3840)["refine_sample_pixels"] == 320_000  # the rest still the paper's
    assert own.with_settings(backbone_scale=0.25).model_fields(2160, 3840)["backbone_scale"] == 0.25
    assert matting.model_fields(2160, 3840)["backbone_scale"] == 0.125  # a model without one: the paper's
    src, bgr = images(48, 64, seed=3)
    halved = own(src, bgr).pha
    assert not np.allclose(np.asarray(halved), np.asarray(matting(src, bgr).pha))  # the scale is really used
    np.testing.assert_allclose(np.asarray(halved), np.asarray(matting.with_settings(backbone_scale=0.5)(src, bgr).pha),
                               atol=1e-6)


def test_bfloat16_precision_returns_float32_outputs_close_to_float32(matting):
    src, bgr = images(48, 64, seed=11)
    full = matting(src, bgr)
    half = matting.with_settings(precision="bfloat16")(src, bgr)
    assert half.pha.dtype == jnp.float32
    assert float(jnp.abs(half.pha - full.pha).mean()) < 0.05


def test_flip_average_is_the_mean_of_the_frame_and_its_mirror_image_and_exactly_mirror_symmetric(matting):
    src, _ = images(50, 70, seed=12, batch=2)  # 70 wide: padded to 72, so the mirror is taken before padding
    _, bgr = images(50, 70, seed=13)  # one plate for the batch
    averaged = matting.with_settings(flip_average=True)
    both = averaged(src, bgr)
    plain, mirrored = matting(src, bgr), matting(src[:, :, ::-1], bgr[:, ::-1])
    for name in ("pha", "fgr"):
        expected = (np.asarray(getattr(plain, name)) + np.asarray(getattr(mirrored, name))[:, :, ::-1]) / 2
        np.testing.assert_allclose(np.asarray(getattr(both, name)), expected, atol=1e-5)
    assert np.abs(np.asarray(both.pha) - np.asarray(plain.pha)).max() > 1e-3  # the weights are not symmetric
    flipped = averaged(src[:, :, ::-1], bgr[:, ::-1])
    np.testing.assert_allclose(np.asarray(flipped.pha), np.asarray(both.pha)[:, :, ::-1], atol=1e-5)
    assert both.err.shape == plain.err.shape and both.ref.shape == plain.ref.shape == (2, 13, 18, 1)
    assert set(np.unique(np.asarray(both.ref))) <= {0.0, 1.0}
    with pytest.raises(InputError, match="flip_average"):
        Settings(flip_average="yes")


def test_every_inference_command_takes_flip_average_and_passes_it_to_the_settings():
    from bgm_jax.cli import build_parser
    from bgm_jax.cli.common import settings_from_args
    from bgm_jax.cli.eval import _apply_model_defaults

    parser = build_parser()
    for argv in (["images", "--src", "s", "--bgr", "b", "--out", "o"], ["video", "--src", "s.mp4", "--bgr", "b.png",
                 "--out", "o"], ["demo"]):
        assert settings_from_args(parser.parse_args(argv))["flip_average"] is False
        assert Settings(**settings_from_args(parser.parse_args([*argv, "--flip-average"]))).flip_average is True
    off, on = parser.parse_args(["eval", "--dataset", "d"]), parser.parse_args(["eval", "--dataset", "d", "--flip-average"])
    _apply_model_defaults(off)
    _apply_model_defaults(on)
    assert settings_from_args(off)["flip_average"] is False and settings_from_args(on)["flip_average"] is True
    assert parser.parse_args(["bench", "--flip-average"]).flip_average is True
