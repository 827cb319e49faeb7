"""photo_matting rendered in memory (``generated:photo_matting/<config>[:<count>]``), without tfds.

What is proven here: a generated record is the built dataset's record with the same index (same seed,
photos and pixels), counts beyond the built dataset continue the split's seed sequence, the sizes are the
builder's, bad specs and splits are refused with one clear line, and rendering needs no tfds at all (the
GPU machine has none).
"""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from bgm_jax.datasets import catalog, generated, images
from bgm_jax.datasets.builders import PhotoMattingConfig, photo_matting
from bgm_jax.errors import InputError

# The "small" sizes (128 px), fewer records: its records 0..3 are those of photo_matting/small.
BUILT = PhotoMattingConfig(name="small4", height=128, width=128, background_short_side=128, num_train=4, num_test=2)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("photo_matting")
    catalog.build_dataset("photo_matting", root, config=BUILT)
    return {split: catalog.open_split("photo_matting/small4", split, root) for split in ("train", "test")}


@pytest.mark.parametrize("split", ["train", "test"])
def test_generated_records_are_the_built_datasets_records(built, split):
    count = len(built[split])
    rendered = catalog.open_split(f"generated:photo_matting/small:{count + 3}", split)
    assert len(rendered) == count + 3
    for i in range(count):
        stored, record = built[split][i], rendered[i]
        assert int(stored["seed"]) == record["seed"]
        assert stored["photos"].decode() == record["photos"]
        for key, mode in (("fgr", "RGB"), ("pha", "L"), ("bgr", "RGB")):
            pixels = np.asarray(images.decode(stored[key], mode))  # small stores PNG: lossless
            np.testing.assert_array_equal(pixels.reshape(record[key].shape), record[key], err_msg=f"{split}[{i}] {key}")
    # Records past the built count are new subjects of the same split: new seeds, the split's photos only.
    allowed = {p.name for p in photo_matting.split_photos(split)}
    seeds = {record["seed"] for record in rendered}
    assert len(seeds) == count + 3
    for record in rendered:
        assert {part.split("=")[1] for part in record["photos"].split()} <= allowed
        assert record["fgr"].shape == (128, 128, 3) and record["pha"].shape == (128, 128)
        assert record["fgr"].dtype == np.uint8 and 0 < record["pha"].mean() < 255


def test_generated_sizes_and_counts_are_the_builders_configs():
    for config in photo_matting.PhotoMatting.BUILDER_CONFIGS:
        size = generated.PHOTO_MATTING[config.name]
        assert (size.height, size.width, size.background_short_side, size.num_train, size.num_test, size.seed) == (
            config.height, config.width, config.background_short_side, config.num_train, config.num_test, config.seed)
    assert set(generated.PHOTO_MATTING) == {c.name for c in photo_matting.PhotoMatting.BUILDER_CONFIGS}


def test_the_same_split_is_rendered_once_per_process():
    first = catalog.open_split("generated:photo_matting/small:2", "test")
    assert catalog.open_split("generated:photo_matting/small:2", "test") is first


@pytest.mark.parametrize(("spec", "split", "message"), [
    ("generated:videomatte240k", "train", "only photo_matting can be generated"),
    ("generated:photo_matting/huge", "train", "only photo_matting can be generated"),
    ("generated:photo_matting/small:0", "train", "'0' is not a positive integer"),
    ("generated:photo_matting/small:many", "train", "'many' is not a positive integer"),
    ("generated:photo_matting/small", "valid", "no split 'valid'; it has train, test"),
])
def test_bad_generated_specs_are_refused_in_one_line(spec, split, message):
    with pytest.raises(InputError) as error:
        catalog.open_split(spec, split)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert spec in str(error.value)


def test_rendering_needs_no_tfds():
    """A fresh interpreter where tensorflow_datasets cannot be imported renders a split (the GPU machine's case)."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["tensorflow_datasets"] = None  # any import of it now fails
        from bgm_jax.datasets import generated
        split = generated.open_generated("generated:photo_matting/small:2", "train", workers=1)
        print("RECORDS", len(split), split[1]["fgr"].shape, "TFDS", "tensorflow_datasets" in sys.modules
              and sys.modules["tensorflow_datasets"] is not None)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "RECORDS 2 (128, 128, 3) TFDS False" in result.stdout
