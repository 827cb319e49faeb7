"""bgm_jax.io.outputs and bgm_jax.io.atomic: rounding, output images, upsampling, atomic writes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bgm_jax.errors import InputError
from bgm_jax.io.atomic import atomic_output
from bgm_jax.io.outputs import (
    compose_rgba,
    composite_over,
    output_path,
    to_uint8,
    to_uint16,
    upsample_map,
    write_com,
    write_err,
    write_fgr,
    write_image,
    write_pha,
    write_ref,
)


def test_to_uint8_rounds_to_nearest_level_not_truncates():
    values = np.array([0.0, 0.4 / 255, 0.6 / 255, 100.49 / 255, 100.51 / 255, 0.999, 1.0], np.float32)
    assert to_uint8(values).tolist() == [0, 0, 1, 100, 101, 255, 255]
    assert (values * 255).astype(np.uint8).tolist() != to_uint8(values).tolist()  # what truncation gives


def test_to_uint8_clips_passes_uint8_and_takes_bfloat16():
    import ml_dtypes

    assert to_uint8(np.array([-0.5, 1.5])).tolist() == [0, 255]
    raw = np.array([3, 200], np.uint8)
    assert to_uint8(raw) is raw
    assert to_uint8(np.array([0.5, 1.0], ml_dtypes.bfloat16)).tolist() == [128, 255]
    with pytest.raises(TypeError):
        to_uint8(np.array([1, 2], np.int32))


def test_to_uint16_rounds():
    assert to_uint16(np.array([0.0, 0.5, 1.0, 1.4 / 65535, 1.6 / 65535])).tolist() == [0, 32768, 65535, 1, 2]
    assert to_uint16(np.array([255], np.uint8)).tolist() == [65535]


def test_compose_rgba_keeps_straight_alpha_and_zeroes_colour_where_alpha_rounds_to_zero():
    fgr = np.full((2, 3, 3), 0.8, np.float32)
    pha = np.array([[0.0, 0.001, 0.5], [1.0, 0.0025, 0.25]], np.float32)[..., None]
    rgba = compose_rgba(fgr, pha)
    assert rgba.dtype == np.uint8 and rgba.shape == (2, 3, 4)
    assert rgba[..., 3].tolist() == [[0, 0, 128], [255, 1, 64]]
    assert rgba[0, 0, :3].tolist() == [0, 0, 0] and rgba[0, 1, :3].tolist() == [0, 0, 0]
    assert rgba[1, 1, :3].tolist() == [204, 204, 204]  # not premultiplied


def test_composite_over_a_colour_or_an_image():
    fgr = np.ones((1, 2, 3), np.float32)
    pha = np.array([[0.0, 0.5]], np.float32)
    over_green = composite_over(fgr, pha)  # default target (120, 255, 155)
    assert over_green.tolist() == [[[120, 255, 155], [188, 255, 205]]]
    target = np.zeros((1, 2, 3), np.uint8)
    assert composite_over(fgr, pha, target).tolist() == [[[0, 0, 0], [128, 128, 128]]]


def test_upsample_nearest_is_exact_repeat_for_integer_factors():
    small = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert np.array_equal(upsample_map(small, (12, 16), "nearest"), small.repeat(4, 0).repeat(4, 1))
    assert np.array_equal(upsample_map(small[..., None], (6, 8), "nearest"), small.repeat(2, 0).repeat(2, 1))


def test_upsample_bilinear_of_a_constant_is_that_constant():
    assert np.allclose(upsample_map(np.full((3, 5), 0.25, np.float32), (13, 21), "bilinear"), 0.25)


@pytest.mark.parametrize(("size_in", "size_out"), [((6, 8), (24, 32)), ((5, 7), (23, 30)), ((4, 4), (4, 4))])
@pytest.mark.parametrize("method", ["bilinear", "nearest"])
def test_upsample_matches_the_original_pytorch_interpolation(size_in, size_out, method):
    from conftest import require_torch

    torch = require_torch()
    small = np.random.default_rng(0).random(size_in).astype(np.float32)
    kwargs = {"align_corners": False} if method == "bilinear" else {}
    expected = torch.nn.functional.interpolate(torch.from_numpy(small)[None, None], size_out, mode=method, **kwargs)
    np.testing.assert_allclose(upsample_map(small, size_out, method), expected[0, 0].numpy(), atol=1e-6)


def test_output_images_decode_with_the_right_mode_size_and_values(tmp_path):
    rng = np.random.default_rng(0)
    fgr = rng.random((6, 8, 3)).astype(np.float32)
    pha = rng.random((6, 8, 1)).astype(np.float32)
    com = Image.open(write_com(tmp_path / "com" / "a.png", fgr, pha))
    assert com.mode == "RGBA" and com.size == (8, 6)
    assert np.array_equal(np.asarray(com), compose_rgba(fgr, pha))
    pha8 = Image.open(write_pha(tmp_path / "pha8.png", pha))
    assert pha8.mode == "L" and np.array_equal(np.asarray(pha8), to_uint8(pha[..., 0]))
    pha16 = Image.open(write_pha(tmp_path / "pha16.png", pha, bits=16))
    assert pha16.mode.startswith("I") and np.array_equal(np.asarray(pha16), to_uint16(pha[..., 0]))
    fgr_png = Image.open(write_fgr(tmp_path / "fgr.png", fgr))
    assert fgr_png.mode == "RGB" and np.array_equal(np.asarray(fgr_png), to_uint8(fgr))
    assert Image.open(write_fgr(tmp_path / "fgr.jpg", fgr)).format == "JPEG"
    err = upsample_map(rng.random((3, 4)).astype(np.float32), (6, 8), "bilinear")
    assert np.array_equal(np.asarray(Image.open(write_err(tmp_path / "err.png", err))), to_uint8(err))
    ref = upsample_map((rng.random((3, 4)) > 0.5).astype(np.float32), (6, 8), "nearest")
    ref_png = np.asarray(Image.open(write_ref(tmp_path / "ref.png", ref)))
    assert ref_png.shape == (6, 8) and set(np.unique(ref_png)) <= {0, 255}


def test_existing_output_is_kept_unless_overwrite_and_the_message_names_it(tmp_path):
    path = tmp_path / "pha" / "a.png"
    write_pha(path, np.zeros((2, 2), np.float32))
    with pytest.raises(InputError, match=r"pha/a\.png: output already exists; pass --overwrite"):
        write_pha(path, np.ones((2, 2), np.float32))
    assert np.asarray(Image.open(path)).max() == 0
    write_pha(path, np.ones((2, 2), np.float32), overwrite=True)
    assert np.asarray(Image.open(path)).min() == 255


def test_failed_write_leaves_neither_output_nor_partial_file(tmp_path):
    target = tmp_path / "out" / "com.png"
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(target) as partial:
            partial.write_bytes(b"half a png")
            raise KeyboardInterrupt
    assert not target.exists()
    assert list((tmp_path / "out").iterdir()) == []
    with pytest.raises(ValueError):  # a bad array fails before anything is created
        write_image(tmp_path / "out" / "bad.png", np.zeros((2, 2, 2), np.uint8))
    assert list((tmp_path / "out").iterdir()) == []


def test_unwritable_output_folder_and_bad_extensions_are_input_errors(tmp_path):
    (tmp_path / "taken").write_text("a file, not a folder")
    with pytest.raises(InputError, match=r"taken/pha: cannot create the output folder"):
        write_pha(tmp_path / "taken" / "pha" / "a.png", np.zeros((2, 2), np.float32))
    with pytest.raises(InputError, match=r"a\.gif: unsupported output image extension"):
        write_pha(tmp_path / "a.gif", np.zeros((2, 2), np.float32))
    with pytest.raises(InputError, match="JPEG has no alpha"):
        write_com(tmp_path / "com.jpg", np.zeros((2, 2, 3)), np.zeros((2, 2)))


def test_output_path_mirrors_the_source_tree(tmp_path):
    assert output_path(tmp_path, "pha", "day1/shot.jpg") == tmp_path / "pha" / "day1" / "shot.png"
    assert output_path(tmp_path, "fgr", "shot.png", ".jpg") == tmp_path / "fgr" / "shot.jpg"
