"""Each shared definition exists once: the backbone, refine-mode and precision names, the pad-to-4
arithmetic, the bilinear taps, and the refiner's settings (``MattingRefine`` takes them, ``Refiner`` owns
their defaults and checks). Other modules import them, so they cannot drift apart."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bgm_jax import model_spec

ROOT = Path(__file__).resolve().parents[1]
# Literal spellings of the definitions that must appear only in bgm_jax/model_spec.py.
LITERALS = {
    "backbone names": re.compile(r'"resnet101",\s*"mobilenetv2"'),
    "refine modes": re.compile(r'"thresholding",\s*"full"'),
    "precisions": re.compile(r'"bfloat16",\s*"float16"|jnp\.bfloat16,\s*"float16"'),
    "pad-to-4 arithmetic": re.compile(r"\(-\s*\w+(\.\w+)*(\[\d\])?\)\s*%\s*4\b"),
}


def test_the_names_and_the_pad_arithmetic_are_spelled_out_only_in_model_spec():
    found = []
    for path in [*ROOT.glob("bgm_jax/**/*.py"), *ROOT.glob("train/**/*.py"), *ROOT.glob("benchmarks/*.py")]:
        if path.name == "model_spec.py":
            continue
        text = path.read_text()
        found += [f"{path.relative_to(ROOT)}: {what}" for what, pattern in LITERALS.items() if pattern.search(text)]
    assert found == []


def test_every_module_uses_the_one_definition_of_the_names():
    from bgm_jax import inference, models
    from bgm_jax.cli import build_parser, common
    from bgm_jax.models import layers, refiner
    from train import config, loop

    assert models.BACKBONES is common.BACKBONES is model_spec.BACKBONES
    assert models.REFINE_MODES is refiner.REFINE_MODES is inference.REFINE_MODES is model_spec.REFINE_MODES
    assert common.PRECISIONS is inference.PRECISIONS is config.PRECISIONS is model_spec.PRECISIONS
    assert loop.COMPUTE_DTYPES is layers.COMPUTE_DTYPES
    assert tuple(layers.COMPUTE_DTYPES) == model_spec.PRECISIONS
    # what the command line offers is the same list
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices
    for command, dest, names in (("demo", "backbone", model_spec.BACKBONES), ("images", "precision", model_spec.PRECISIONS),
                                 ("video", "refine_mode", model_spec.REFINE_MODES), ("demo", "precision", model_spec.PRECISIONS)):
        action = next(a for a in sub[command]._actions if a.dest == dest)
        assert tuple(action.choices) == names, (command, dest)


@pytest.mark.parametrize("height, width, padded", [(48, 64, (48, 64)), (50, 66, (52, 68)), (1081, 1917, (1084, 1920))])
def test_padded_size_is_the_next_multiple_of_4_for_a_refine_model_only(height, width, padded):
    assert model_spec.padded_size(height, width) == padded
    assert model_spec.padded_size(height, width, is_refine=False) == (height, width)
    assert model_spec.pad_amounts(height, width, 64) == ((-height) % 64, (-width) % 64)


def test_the_model_resize_and_the_host_upsampling_share_one_set_of_taps():
    import jax.numpy as jnp

    from bgm_jax.bilinear import bilinear_taps
    from bgm_jax.io.outputs import upsample_map
    from bgm_jax.models.layers import resize_bilinear

    small = np.random.default_rng(0).random((7, 9), np.float32)
    host = upsample_map(small, (30, 41), "bilinear")
    device = np.asarray(resize_bilinear(jnp.asarray(small)[None, ..., None], (30, 41)))[0, ..., 0]
    np.testing.assert_allclose(host, device, rtol=0, atol=1e-6)
    lo, hi, w_lo, w_hi = bilinear_taps(7, 30)
    np.testing.assert_allclose(host[:, 0], small[lo, 0] * w_lo + small[hi, 0] * w_hi, rtol=0, atol=1e-6)


def test_io_does_not_import_the_flax_models():
    code = ("import sys, bgm_jax.io.outputs, bgm_jax.io.render, bgm_jax.bilinear; "
            "print(sorted(m for m in sys.modules if m == 'flax' or m.startswith('bgm_jax.models')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_matting_refine_takes_its_refiner_defaults_and_checks_from_the_refiner():
    from bgm_jax.models import MattingRefine, Refiner

    for field in ("mode", "sample_pixels", "threshold", "kernel_size", "prevent_oversampling",
                  "threshold_capacity", "strategy"):
        assert getattr(MattingRefine, f"refine_{field}") == getattr(Refiner, field), field
    # one check, at construction, for both (the Refiner used to check only when called)
    with pytest.raises(ValueError, match="unknown refine mode 'bogus'"):
        Refiner(mode="bogus")
    with pytest.raises(ValueError, match="unknown refine mode 'bogus'"):
        MattingRefine(refine_mode="bogus")
    with pytest.raises(ValueError, match="^kernel_size must be 1 or 3"):
        Refiner(kernel_size=5)
    with pytest.raises(ValueError, match="^refine_kernel_size must be 1 or 3"):
        MattingRefine(refine_kernel_size=5)
    with pytest.raises(ValueError, match="refine_threshold_capacity must be >= 0"):
        MattingRefine(refine_threshold_capacity=-1)
