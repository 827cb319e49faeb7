"""bgm_jax.io.images: reading every image mode correctly, finding sources, pairing backgrounds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from bgm_jax.errors import InputError
from bgm_jax.io.images import collect_images, pair_backgrounds, read_image


def random_rgb(height=12, width=16, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def save(path: Path, pixels: np.ndarray | None = None, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(random_rgb() if pixels is None else pixels).save(path, **options)
    return path


def names(images) -> list[str]:
    return [str(image.relative) for image in images]


# ---------------------------------------------------------------------------------------------- reading


def test_read_image_returns_uint8_rgb_exactly_for_png(tmp_path):
    pixels = random_rgb()
    image = read_image(save(tmp_path / "a.png", pixels))
    assert image.dtype == np.uint8 and image.shape == (12, 16, 3)
    assert np.array_equal(image, pixels)


def test_read_image_converts_grey_palette_and_rgba_to_rgb(tmp_path):
    grey = np.arange(12 * 16, dtype=np.uint8).reshape(12, 16)
    assert np.array_equal(read_image(save(tmp_path / "l.png", grey)), np.repeat(grey[..., None], 3, -1))
    rgba = np.dstack([random_rgb(), np.full((12, 16), 7, np.uint8)])
    assert np.array_equal(read_image(save(tmp_path / "rgba.png", rgba)), rgba[..., :3])  # alpha dropped
    palette = Image.fromarray(random_rgb()).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    palette.info["transparency"] = 0
    palette.save(tmp_path / "p.png", transparency=0)
    expected = np.asarray(palette.convert("RGB"))
    assert np.array_equal(read_image(tmp_path / "p.png"), expected)
    Image.fromarray(grey > 100).save(tmp_path / "bits.png")
    assert set(np.unique(read_image(tmp_path / "bits.png"))) == {0, 255}


def test_read_image_scales_16_bit_grey_by_rounding_instead_of_clipping(tmp_path):
    levels = np.array([[0, 128, 32895, 32896, 65535, 1000]], np.uint16)  # 32895/257 = 127.996
    Image.fromarray(levels).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    image = read_image(tmp_path / "g16.png")
    assert image[0, :, 0].tolist() == [0, 0, 128, 128, 255, 4]  # Pillow's convert("L") gives 255 for most
    assert np.array_equal(image[..., 0], image[..., 2])


def test_read_image_reads_16_bit_colour_png_at_full_depth(tmp_path):
    import av

    deep = np.zeros((4, 6, 3), np.uint16)
    deep[0, 0] = (32895, 128, 65535)  # rounding gives 128, 0, 255; Pillow's high byte gives 128, 0, 255
    deep[0, 1] = (13000, 6500, 4333)  # 50.58 -> 51 (Pillow's high byte: 50), 25.29 -> 25, 16.86 -> 17
    with av.open(str(tmp_path / "c16.png"), "w", format="image2") as container:
        stream = container.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = 6, 4, "rgb48be"
        container.mux(stream.encode(av.VideoFrame.from_ndarray(deep, format="rgb48le")))
        container.mux(stream.encode(None))
    image = read_image(tmp_path / "c16.png")
    assert image.shape == (4, 6, 3)
    assert image[0, 0].tolist() == [128, 0, 255]
    assert image[0, 1].tolist() == [51, 25, 17]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_read_image_applies_exif_orientation_like_pillow(tmp_path, orientation):
    pixels = random_rgb(6, 10)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = save(tmp_path / "o.png", pixels, exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    image = read_image(path)
    assert image.shape == expected.shape
    assert np.array_equal(image, expected)
    if orientation in (5, 6, 7, 8):
        assert image.shape == (10, 6, 3)


def test_read_image_bad_files_name_the_file(tmp_path):
    with pytest.raises(InputError, match=r"missing\.png: no such file"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(InputError, match="is a folder"):
        read_image(tmp_path)
    (tmp_path / "noise.png").write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(InputError, match=r"noise\.png: not an image Pillow can read"):
        read_image(tmp_path / "noise.png")
    (tmp_path / "notes.jpg").write_text("hello")
    with pytest.raises(InputError, match=r"notes\.jpg: not an image"):
        read_image(tmp_path / "notes.jpg")
    full = save(tmp_path / "full.jpg", random_rgb(64, 64), quality=90).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(full[: len(full) // 2])
    with pytest.raises(InputError, match=r"cut\.jpg: corrupt or truncated image"):
        read_image(tmp_path / "cut.jpg")


# ---------------------------------------------------------------------------------------------- finding


def test_collect_images_searches_folders_recursively_sorted_and_skips_non_images(tmp_path):
    for name in ["b.png", "a.JPG", "sub/c.webp", "sub/deeper/d.tif", ".hidden.png", "notes.txt", ".git/e.png"]:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("txt"):
            path.write_text("x")
        else:
            save(path, format="PNG")
    images = collect_images(tmp_path)
    assert names(images) == ["a.JPG", "b.png", "sub/c.webp", "sub/deeper/d.tif"]
    assert [image.key for image in images] == ["a", "b", "sub/c", "sub/deeper/d"]
    assert images[2].path == tmp_path / "sub" / "c.webp"


def test_collect_images_accepts_a_file_or_a_glob(tmp_path):
    save(tmp_path / "shots" / "day1" / "x.png")
    save(tmp_path / "shots" / "day2" / "y.png")
    save(tmp_path / "shots" / "day2" / "z.jpg")
    assert names(collect_images(tmp_path / "shots" / "day1" / "x.png")) == ["x.png"]
    matched = collect_images(str(tmp_path / "shots" / "*" / "*.png"))
    assert names(matched) == ["day1/x.png", "day2/y.png"]  # relative to the pattern's fixed folder
    assert names(collect_images(str(tmp_path / "shots" / "**" / "*.jpg"))) == ["day2/z.jpg"]


def test_collect_images_missing_empty_and_colliding_sources_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="--src .*nowhere: no such file or folder"):
        collect_images(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: no images found"):
        collect_images(tmp_path / "empty")
    with pytest.raises(InputError, match="no images found"):
        collect_images(str(tmp_path / "*.png"))
    save(tmp_path / "both" / "a.png")
    save(tmp_path / "both" / "a.jpg")
    clash = r"both: images differing only in extension would write the same outputs \(a\.jpg and a\.png\)"
    with pytest.raises(InputError, match=clash):
        collect_images(tmp_path / "both")


# ---------------------------------------------------------------------------------------------- pairing


def test_one_background_image_pairs_with_every_source(tmp_path):
    save(tmp_path / "src" / "a.png")
    save(tmp_path / "src" / "b.png")
    sources = collect_images(tmp_path / "src")
    plate = save(tmp_path / "plate.jpg")
    pairing = pair_backgrounds(sources, plate)
    assert [(str(s.relative), b) for s, b in pairing.pairs] == [("a.png", plate), ("b.png", plate)]
    assert pairing.unpaired == []


def test_background_folder_pairs_by_relative_path_then_by_stem_across_extensions(tmp_path):
    for name in ["a.png", "b.png", "set1/c.png"]:
        save(tmp_path / "src" / name)
    for name in ["a.png", "b.jpg", "set1/c.webp", "c.png", "extra.png"]:
        save(tmp_path / "bgr" / name)
    pairing = pair_backgrounds(collect_images(tmp_path / "src"), tmp_path / "bgr")
    matched = {str(s.relative): b.relative_to(tmp_path / "bgr").as_posix() for s, b in pairing.pairs}
    assert matched == {"a.png": "a.png", "b.png": "b.jpg", "set1/c.png": "set1/c.webp"}
    assert pairing.unpaired == []


def test_unpaired_and_ambiguous_sources_are_reported_by_name(tmp_path):
    for name in ["a.png", "b.png", "sub/c.png"]:
        save(tmp_path / "src" / name)
    for name in ["a.png", "b.jpg", "b.webp", "c.png"]:  # c.png is not sub/c.png
        save(tmp_path / "bgr" / name)
    pairing = pair_backgrounds(collect_images(tmp_path / "src"), tmp_path / "bgr")
    assert [str(s.relative) for s, _ in pairing.pairs] == ["a.png"]
    reasons = {str(s.relative): reason for s, reason in pairing.unpaired}
    assert reasons["b.png"] == "several backgrounds match (b.jpg, b.webp); keep one"
    assert reasons["sub/c.png"].startswith("no background sub/c.* in")


def test_sorted_order_pairing_only_when_asked_and_counts_must_match(tmp_path):
    for name in ["img1.png", "img2.png"]:
        save(tmp_path / "src" / name)
    for name in ["plateA.png", "plateB.png"]:
        save(tmp_path / "bgr" / name)
    sources = collect_images(tmp_path / "src")
    by_name = pair_backgrounds(sources, tmp_path / "bgr")
    assert by_name.pairs == [] and len(by_name.unpaired) == 2
    by_order = pair_backgrounds(sources, tmp_path / "bgr", sorted_order=True)
    pairs = [(s.path.name, b.name) for s, b in by_order.pairs]
    assert pairs == [("img1.png", "plateA.png"), ("img2.png", "plateB.png")]
    save(tmp_path / "bgr" / "plateC.png")
    with pytest.raises(InputError, match="3 backgrounds for 2 sources"):
        pair_backgrounds(sources, tmp_path / "bgr", sorted_order=True)


def test_missing_background_is_an_input_error(tmp_path):
    sources = collect_images(save(tmp_path / "a.png"))
    with pytest.raises(InputError, match="--bgr .*nope: no such file or folder"):
        pair_backgrounds(sources, tmp_path / "nope")
