"""The model embedded in the package mattes: measured on held-out data, not assumed.

The held-out images are the first records of photo_matting/image's test split (photos and seeds never
seen in training), rebuilt here at full size (a few seconds, no downloads), under the paper's test-time
protocol. The bounds on SAD (the band around soft edges) and on the whole-frame alpha error fail for
random weights and for a broken loader, and the shipped model must stay well ahead of tuned difference
keying on the whole frame. (Issue 14's goal, half of keying's SAD in the band, is not met yet: see
docs/model.md.)
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bgm_jax import pretrained
from bgm_jax.errors import InputError

# The first 8 records of the held-out split. The keyer's settings (tuned on the training split) and the
# SAD bound (measured on these 8 images with margin; random weights score several times higher) are
# recorded with the weights (photo_mobilenetv2.json) by train/package.py.
HELD_OUT = 8


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    pytest.importorskip("skimage", reason="photo_matting needs scikit-image (the test extra)")
    from train.package import held_out_set

    return held_out_set(HELD_OUT, tmp_path_factory.mktemp("held_out"))


def test_embedded_weights_are_small_half_precision_and_restore_as_float32():
    info = pretrained.info()
    assert info["storage_dtype"] == "float16" and info["bytes"] <= 12 * 1024 * 1024
    config, variables = pretrained.load_embedded()
    # Its last stages trained the base network at half the image's size; the config records it so that
    # inference runs it there by default (docs/model.md).
    assert config == {"model_type": "refine", "backbone": "mobilenetv2", "refine_kernel_size": 3,
                      "backbone_scale": 0.5}
    leaves = [np.asarray(x) for x in __import__("jax").tree_util.tree_leaves(variables)]
    assert all(x.dtype == np.float32 for x in leaves) and sum(x.size for x in leaves) > 5_000_000


def test_changed_embedded_weights_are_refused(tmp_path):
    data = bytearray((Path(pretrained.__file__).parent / pretrained.WEIGHTS_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(InputError, match="do not match their recorded sha256"):
        pretrained.read_weights(bytes(data), pretrained.info(), source="copy")


def test_the_embedded_model_stays_within_its_recorded_bounds_and_beats_keying_on_the_whole_frame(held_out):
    import bgm_jax
    from bgm_jax.evaluation import keying, protocol
    from train.package import upper_median, whole_frame_errors, whole_frame_mad

    card = pretrained.info()
    model = bgm_jax.load()
    keyer = keying.DifferenceKeyer(**card["keying"])  # tuned on the training split (train/judge.py)
    scores = protocol.evaluate_model(model, held_out, batch_size=1).mean()
    errors = whole_frame_errors(model, held_out)
    mad, keyed_mad = float(np.mean(errors)), whole_frame_mad(keyer, held_out)
    # the per-record errors packaging recorded are these, and the demo's example is their upper median
    np.testing.assert_allclose(errors, card["held_out"]["model_whole_frame_per_record"], rtol=1e-3)
    assert card["example"]["record"] == upper_median(errors)
    assert upper_median([3.0, 1.0, 2.0]) == 2 and upper_median([4.0, 1.0, 3.0, 2.0]) == 2
    # Bounds measured at packaging with 10 % margin; random weights score SAD 5.3 and MAD 395 here.
    assert scores["SAD"] < card["ci_sad_bound"], scores
    assert mad < card["ci_mad_bound"], mad
    assert card["held_out"]["random"]["SAD"] > card["ci_sad_bound"]
    assert mad * 4 < keyed_mad, (mad, keyed_mad)


def test_the_wheel_carries_the_weights(tmp_path):
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(root)], check=True, capture_output=True, timeout=300)
    wheel = next(tmp_path.glob("bgm_jax-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert {f"bgm_jax/pretrained/{pretrained.WEIGHTS_FILE}", f"bgm_jax/pretrained/{pretrained.INFO_FILE}",
                "bgm_jax/pretrained/MODEL_CARD.md"} <= names
        data = z.read(f"bgm_jax/pretrained/{pretrained.WEIGHTS_FILE}")
        info = json.loads(z.read(f"bgm_jax/pretrained/{pretrained.INFO_FILE}"))
    assert pretrained.read_weights(data, info, source="wheel")  # the packaged bytes verify
    assert np.load(io.BytesIO(data)).files  # a plain npz
