"""The PyTorch reference (tests/torch_reference.py) is the original architecture: same state_dict keys,
shapes and parameter counts as the released checkpoints, and the refiner behaves as documented."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

if os.environ.get("BGM_REQUIRE_TORCH") != "1":  # under CI a missing torch fails collection instead
    pytest.importorskip("torch")
import torch  # noqa: E402

import torch_reference as ref  # noqa: E402

TSV_DIR = Path(__file__).parent / "data" / "state_dict_keys"
# ORIGINAL.md: exact parameter counts of MattingRefine (BatchNorm running statistics not counted).
PARAMETER_COUNTS = {
    "resnet50": {"total": 40_247_703, "backbone": 23_517_440, "aspp": 15_535_104, "decoder": 1_179_715,
                 "refiner": 15_444},
    "resnet101": {"total": 59_239_831, "backbone": 42_509_568, "aspp": 15_535_104, "decoder": 1_179_715,
                  "refiner": 15_444},
    "mobilenetv2": {"total": 5_006_839, "backbone": 1_812_576, "aspp": 2_706_432, "decoder": 472_387,
                    "refiner": 15_444},
}
STATE_DICT_ENTRIES = {"resnet50": 394, "resnet101": 700, "mobilenetv2": 382}
SIZE = 64  # full resolution used by the forward tests; coarse 16x16 at scale 1/4, 16x16 quarter-res cells


def read_tsv(backbone: str) -> list[tuple[str, str, str]]:
    lines = (TSV_DIR / f"{backbone}.tsv").read_text().splitlines()
    return [tuple(line.split("\t")) for line in lines]


def meta_model(model_type: str = "refine", backbone: str = "resnet50", **kwargs):
    # On the meta device: shapes without memory or initialisation time (ResNet-101 has 59M parameters).
    with torch.device("meta"):
        return ref.build_model(model_type, backbone, **kwargs)


def rows(state_dict) -> list[tuple[str, str, str]]:
    return [(k, str(tuple(v.shape)), str(v.dtype)) for k, v in state_dict.items()]


@pytest.mark.parametrize("backbone", ref.BACKBONES)
def test_reference_state_dict_keys_shapes_dtypes_and_order_equal_the_original_tsv(backbone):
    expected = read_tsv(backbone)
    assert len(expected) == STATE_DICT_ENTRIES[backbone]
    assert rows(meta_model("refine", backbone).state_dict()) == expected


@pytest.mark.parametrize("backbone", ref.BACKBONES)
def test_reference_parameter_counts_match_the_original_table(backbone):
    model = meta_model("refine", backbone)
    counts = {"total": sum(p.numel() for p in model.parameters())}
    for name in ("backbone", "aspp", "decoder", "refiner"):
        counts[name] = sum(p.numel() for p in getattr(model, name).parameters())
    assert counts == PARAMETER_COUNTS[backbone]


@pytest.mark.parametrize("backbone", ["resnet50", "mobilenetv2"])
def test_base_state_dict_is_the_refine_state_dict_without_refiner_keys(backbone):
    expected = [row for row in read_tsv(backbone) if not row[0].startswith("refiner.")]
    assert rows(meta_model("base", backbone).state_dict()) == expected


def test_kernel_size_1_refiner_has_1x1_convs_and_the_same_keys():
    k3 = meta_model("refine", "mobilenetv2", refine_kernel_size=3).state_dict()
    k1 = meta_model("refine", "mobilenetv2", refine_kernel_size=1).state_dict()
    assert list(k1) == list(k3)
    for key in k3:
        if key.startswith("refiner.conv") and key.endswith("weight"):
            assert tuple(k1[key].shape) == tuple(k3[key].shape[:2]) + (1, 1)
        else:
            assert k1[key].shape == k3[key].shape


# ------------------------------------------------------------------------------------ randomize_


def test_randomize_gives_every_tensor_a_non_default_value_deterministically_by_seed():
    model = ref.random_model("refine", "mobilenetv2", seed=5)
    again = ref.random_model("refine", "mobilenetv2", seed=5)
    other = ref.random_model("refine", "mobilenetv2", seed=6)
    state, state_again, state_other = model.state_dict(), again.state_dict(), other.state_dict()
    for key, value in state.items():
        assert torch.equal(value, state_again[key]), key
        if key.endswith("num_batches_tracked"):
            continue
        assert not torch.equal(value, state_other[key]), key
        if key.endswith("running_var"):
            assert bool((value > 0).all()) and not bool((value == 1).any()), key
        elif key.endswith(("running_mean", "bias")):
            assert not bool((value == 0).all()), key
        elif key.endswith("weight") and value.ndim == 1:  # BatchNorm scale
            assert not bool((value == 1).any()), key


def test_random_model_equals_randomizing_a_default_initialised_model():
    built = ref.randomize_(ref.build_model("refine", "mobilenetv2"), seed=2).state_dict()
    fast = ref.random_model("refine", "mobilenetv2", seed=2).state_dict()
    assert list(built) == list(fast)
    assert all(torch.equal(built[k], fast[k]) for k in built)


def test_randomize_does_not_touch_the_global_torch_rng():
    model = ref.build_model("base", "mobilenetv2")  # construction itself draws from the global RNG
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    ref.randomize_(model, seed=0)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("backbone", ref.BACKBONES)
def test_randomized_err_sm_is_strictly_inside_unit_interval_and_topk_is_well_separated(backbone):
    # The property parity tests rely on: err_sm is never clipped, and the k-th/(k+1)-th largest errors
    # differ by far more than float32 noise, so the selected cells are defined by the values.
    model = ref.random_model("refine", backbone, refine_mode="full", seed=1)
    src, bgr = ref.random_inputs(2, SIZE, SIZE, seed=2)
    with torch.no_grad():
        pha, fgr, pha_sm, fgr_sm, err_sm, ref_sm = model(src, bgr)
    assert 0.0 < float(err_sm.min()) and float(err_sm.max()) < 1.0
    assert ref.topk_margin(err_sm, 50) > 1e-5
    # Alpha is informative too: not saturated at the clip bounds.
    assert float(((pha == 0) | (pha == 1)).float().mean()) < 0.01
    assert float(pha.std()) > 0.01


def test_negative_err_bias_makes_some_err_exactly_zero_for_prevent_oversampling_tests():
    model = ref.random_model("refine", "mobilenetv2", refine_mode="full", seed=1, err_bias=-0.2)
    src, bgr = ref.random_inputs(2, SIZE, SIZE, seed=2)
    with torch.no_grad():
        err_sm = model(src, bgr)[4]
    zero_fraction = float((err_sm == 0).float().mean())
    assert 0.2 < zero_fraction < 0.9


# ------------------------------------------------------------------------------------- forward


@pytest.fixture(scope="module")
def mobilenet_state():
    return ref.random_model("refine", "mobilenetv2", seed=3).state_dict()


def refine_model(state, **kwargs):
    model = ref.build_model("refine", "mobilenetv2", **kwargs)
    model.load_state_dict(state)
    return model


def run(model, batch=2, size=SIZE, seed=4):
    src, bgr = ref.random_inputs(batch, size, size, seed=seed)
    with torch.no_grad():
        return model(src, bgr)


@pytest.mark.parametrize("mode", ["full", "sampling", "thresholding"])
@pytest.mark.parametrize("kernel_size", [3, 1])
def test_refine_forward_output_shapes_in_every_mode(mobilenet_state, mode, kernel_size):
    state = mobilenet_state
    if kernel_size == 1:
        state = ref.random_model("refine", "mobilenetv2", refine_kernel_size=1, seed=3).state_dict()
    model = refine_model(state, refine_mode=mode, refine_kernel_size=kernel_size, refine_sample_pixels=16 * 40,
                         refine_threshold=0.6)
    pha, fgr, pha_sm, fgr_sm, err_sm, ref_sm = run(model)
    assert pha.shape == (2, 1, SIZE, SIZE) and fgr.shape == (2, 3, SIZE, SIZE)
    assert pha_sm.shape == err_sm.shape == (2, 1, SIZE // 4, SIZE // 4) and fgr_sm.shape == (2, 3, SIZE // 4, SIZE // 4)
    assert ref_sm.shape == (2, 1, SIZE // 4, SIZE // 4)
    for out in (pha, fgr, pha_sm, fgr_sm, err_sm):
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert set(torch.unique(ref_sm).tolist()) <= {0.0, 1.0}


def test_base_forward_returns_clipped_pha_fgr_err_and_relu_hidden():
    model = ref.random_model("base", "mobilenetv2", seed=3)
    src, bgr = ref.random_inputs(2, 32, 48, seed=4)
    with torch.no_grad():
        pha, fgr, err, hid = model(src, bgr)
        raw = model.coarse(src, bgr)
    assert pha.shape == err.shape == (2, 1, 32, 48) and fgr.shape == (2, 3, 32, 48) and hid.shape == (2, 32, 32, 48)
    assert torch.equal(pha, raw[:, :1].clamp(0, 1))
    assert torch.equal(fgr, (raw[:, 1:4] + src).clamp(0, 1))
    assert torch.equal(hid, raw[:, 5:].relu())


@pytest.mark.parametrize("kernel_size", [3, 1])
def test_full_mode_equals_sampling_with_every_cell_selected_in_eval(kernel_size):
    state = ref.random_model("refine", "mobilenetv2", refine_kernel_size=kernel_size, seed=3).state_dict()
    cells = (SIZE // 4) ** 2
    full = run(refine_model(state, refine_mode="full", refine_kernel_size=kernel_size))
    sampled = run(refine_model(state, refine_mode="sampling", refine_kernel_size=kernel_size,
                               refine_sample_pixels=16 * cells, refine_prevent_oversampling=False))
    assert bool((sampled[5] == 1).all())
    for a, b in zip(full, sampled):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-6)


def test_odd_coarse_sizes_work_and_full_still_equals_sampling_everywhere(mobilenet_state):
    height, width = 76, 100  # coarse map 19 x 25 at scale 1/4; quarter-res grid 19 x 25
    src, bgr = ref.random_inputs(2, height, width, seed=4)
    cells = (height // 4) * (width // 4)
    with torch.no_grad():
        full = refine_model(mobilenet_state, refine_mode="full")(src, bgr)
        sampled = refine_model(mobilenet_state, refine_mode="sampling", refine_sample_pixels=16 * cells,
                               refine_prevent_oversampling=False)(src, bgr)
    assert full[2].shape == (2, 1, 19, 25) and full[0].shape == (2, 1, height, width)
    for a, b in zip(full, sampled):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-6)


def test_thresholding_refines_exactly_the_cells_above_threshold_and_equals_full_there(mobilenet_state):
    full = run(refine_model(mobilenet_state, refine_mode="full"))
    err_sm = full[4]
    threshold = float(err_sm.median())
    pha, fgr, pha_sm, fgr_sm, _, ref_sm = run(refine_model(mobilenet_state, refine_mode="thresholding",
                                                           refine_threshold=threshold))
    assert torch.equal(ref_sm, (err_sm > threshold).float())  # scale 1/4: err at quarter res is err_sm
    inside = torch.nn.functional.interpolate(ref_sm, scale_factor=4, mode="nearest").bool()
    coarse_pha = torch.nn.functional.interpolate(pha_sm, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(pha[inside.expand_as(pha)].numpy(), full[0][inside.expand_as(pha)].numpy(), atol=1e-6)
    np.testing.assert_allclose(pha[~inside].numpy(), coarse_pha.clamp(0, 1)[~inside].numpy(), atol=1e-6)
    assert 0 < int(ref_sm.sum()) < ref_sm.numel()


def test_sampling_selects_the_top_k_cells_of_each_image_separately(mobilenet_state):
    k = 40
    _, _, _, _, err_sm, ref_sm = run(refine_model(mobilenet_state, refine_mode="sampling", refine_sample_pixels=16 * k))
    assert ref.topk_margin(err_sm, k) > 1e-5
    for b in range(2):
        top = set(err_sm[b].flatten().topk(k).indices.tolist())
        assert set(torch.nonzero(ref_sm[b].flatten()).flatten().tolist()) == top


def test_prevent_oversampling_drops_selected_cells_whose_error_is_zero():
    model = ref.random_model("refine", "mobilenetv2", refine_sample_pixels=16 * 200, seed=1, err_bias=-0.2)
    state = model.state_dict()
    _, _, _, _, err_sm, ref_on = run(refine_model(state, refine_sample_pixels=16 * 200), seed=2)
    _, _, _, _, _, ref_off = run(refine_model(state, refine_sample_pixels=16 * 200,
                                              refine_prevent_oversampling=False), seed=2)
    positive = err_sm > 0
    assert int(positive.sum(dim=(1, 2, 3)).max()) < 200  # fewer nonzero cells than k in each image
    assert torch.equal(ref_on, positive.float())
    assert bool((ref_off.sum(dim=(1, 2, 3)) == 200).all())


def test_sampling_raises_like_the_original_when_k_exceeds_the_number_of_cells(mobilenet_state):
    model = refine_model(mobilenet_state, refine_mode="sampling", refine_sample_pixels=16 * ((SIZE // 4) ** 2 + 1))
    with pytest.raises(RuntimeError, match="out of range"):
        run(model)


def test_refine_rejects_sizes_not_divisible_by_4(mobilenet_state):
    with pytest.raises(ValueError, match="divisible by 4"):
        run(refine_model(mobilenet_state), size=66)


# ------------------------------------------------------------------------- patch crop / replace


def test_crop_patch_takes_each_cells_window_from_its_own_image_in_a_batch():
    x = torch.arange(2 * 3 * 8 * 12, dtype=torch.float32).reshape(2, 3, 8, 12)
    idx = (torch.tensor([0, 1, 1]), torch.tensor([0, 3, 1]), torch.tensor([5, 0, 2]))
    patches = ref.Refiner.crop_patch(x, idx, 2, 3)
    padded = torch.nn.functional.pad(x, (3, 3, 3, 3))
    for n, (b, y, xx) in enumerate(zip(*idx)):
        # rows [2y - 3, 2y + 5), cols [2x - 3, 2x + 5) of image b, zero outside
        assert torch.equal(patches[n], padded[b, :, 2 * y:2 * y + 8, 2 * xx:2 * xx + 8])
    assert patches.shape == (3, 3, 8, 8)


def test_replace_patch_writes_each_patch_into_its_own_image_and_cell_only():
    x = torch.zeros(2, 3, 8, 12)
    idx = (torch.tensor([1, 0]), torch.tensor([1, 0]), torch.tensor([2, 1]))
    patches = torch.stack([torch.full((3, 4, 4), 1.0), torch.full((3, 4, 4), 2.0)])
    out = ref.Refiner.replace_patch(x, patches, idx)
    expected = torch.zeros(2, 3, 8, 12)
    expected[1, :, 4:8, 8:12] = 1.0
    expected[0, :, 0:4, 4:8] = 2.0
    assert torch.equal(out, expected)
    assert bool((x == 0).all())  # the input is not modified in place
