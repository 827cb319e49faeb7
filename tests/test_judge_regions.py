"""train.judge's split of the alpha error by region adds up to the project's SAD, and puts errors where they are."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from bgm_jax.evaluation import metrics, protocol
from bgm_jax.evaluation.score import quantize_alpha
from train.judge import (ALPHA_BINS, BAND_REGIONS, STRUCTURES, Remembered, bin_name, error_by_region,
                         error_by_true_alpha, image_scores, structure_masks)


class _TestSet:
    problems = ()

    def __init__(self, samples):
        self.samples = samples

    def __len__(self):
        return len(self.samples)

    def load(self, index):
        return self.samples[index]


def _sample(seed: int) -> protocol.TestSample:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64]
    disc = np.clip((20.0 - np.hypot(yy - 32, xx - 32)) / 6.0, 0.0, 1.0)  # solid centre, soft rim
    pha = np.round(disc * 255).astype(np.uint8)
    fgr = rng.integers(0, 256, (64, 64, 3), np.uint8)
    bgr = rng.integers(0, 256, (64, 64, 3), np.uint8)
    return protocol.TestSample(name=f"s{seed}", fgr=fgr, pha=pha, bgr=bgr, record_seed=seed)


def _constant(value: float):
    return lambda src, bgr: SimpleNamespace(pha=np.full(src.shape[:3] + (1,), value, np.float32))


def test_band_regions_add_up_to_sad_and_outside_is_kept_apart():
    test_set = _TestSet([_sample(1), _sample(2)])
    regions = error_by_region({"zero": _constant(0.0), "half": _constant(0.5)}, test_set, count=2)
    for name, value in (("zero", 0.0), ("half", 0.5)):
        sads, outside = [], []
        for sample in test_set.samples:
            inputs = protocol.protocol_input(sample)
            trimap = metrics.trimap_from_alpha(inputs.gt_pha, "closing")
            pred = quantize_alpha(np.full(inputs.gt_pha.shape, value, np.float32))
            sads.append(metrics.sad(pred, inputs.gt_pha, trimap))
            error = np.abs(metrics.to_unit_float32(pred) - metrics.to_unit_float32(inputs.gt_pha))
            outside.append(error[~metrics.unknown_region(trimap)].sum() / 1000)
        band_total = sum(regions[name][r[0]] for r in BAND_REGIONS)
        assert band_total == pytest.approx(np.mean(sads), rel=1e-6) and band_total > 0
        assert sum(regions[name][s] for s in STRUCTURES) == pytest.approx(band_total, rel=1e-6)
        assert regions[name]["outside_band"] == pytest.approx(np.mean(outside), rel=1e-6)
    # alpha 0 everywhere: no error where the truth is below 0.06, all of it on soft and solid pixels
    assert regions["zero"]["band_below_0.06"] < 1e-6
    assert regions["zero"]["band_soft"] > 0 and regions["zero"]["outside_band"] > 0


def test_structures_tell_a_strand_from_a_veil_from_a_solid_edge():
    truth = np.zeros((64, 64), np.float32)
    truth[8:56, 4:24] = 1.0  # a solid block: its edge is neither thin nor veil
    truth[8:56, 30] = 0.7  # a strand one pixel wide
    truth[8:56, 40:60] = 0.4  # a veil 20 px wide
    masks = structure_masks(truth)
    total = sum(m.astype(int) for m in masks.values())
    assert (total == 1).all()  # disjoint and covering
    assert masks["shape_thin"][8:56, 30].all() and not masks["shape_thin"][:, 4:24].any()
    assert masks["shape_veil"][20:44, 44:56].all() and not masks["shape_veil"][:, 30].any()
    assert masks["shape_rest"][8:56, 4:24].all()  # the block, edge included
    assert not masks["shape_veil"][:, 40].any()  # the veil's own rim is within 3 px of its edge: rest


def test_error_by_true_alpha_gives_the_bias_of_each_bin_and_its_share_of_sad():
    test_set = _TestSet([_sample(1), _sample(2)])
    sads = []
    for sample in test_set.samples:
        inputs = protocol.protocol_input(sample)
        trimap = metrics.trimap_from_alpha(inputs.gt_pha, "closing")
        sads.append(metrics.sad(quantize_alpha(np.zeros(inputs.gt_pha.shape, np.float32)), inputs.gt_pha, trimap))
    zero = error_by_true_alpha(_constant(0.0), test_set)
    assert list(zero) == [bin_name(low, high) for low, high in ALPHA_BINS]
    assert sum(b["sad"] for b in zero.values()) == pytest.approx(np.mean(sads), rel=1e-6)
    for (low, high), values in zip(ALPHA_BINS, zero.values()):
        assert values["pixels"] > 0 or low < 0  # this disc's closing band holds no pixel below 0.06
        # predicting 0 under-estimates every pixel by its true alpha: signed = -absolute, within the bin
        assert values["signed"] == pytest.approx(-values["absolute"])
        assert max(low, 0.0) - 1e-6 <= values["absolute"] < min(high, 1.0) + 1e-6
    one = error_by_true_alpha(_constant(1.0), test_set)
    assert one["0.4..0.6"]["signed"] == pytest.approx(1 - zero["0.4..0.6"]["absolute"], abs=1e-6)
    assert 0 <= one["from 0.96"]["signed"] < 0.04 and zero["from 0.96"]["signed"] < -0.96
    assert error_by_true_alpha(_constant(0.0), test_set, count=1)["0.4..0.6"]["pixels"] < zero["0.4..0.6"]["pixels"]


class _Keyed:
    """A predictor whose answer depends on its input (a clipped colour distance), counting its runs."""

    def __init__(self):
        self.calls = 0

    def __call__(self, src, bgr):
        self.calls += 1
        distance = np.abs(np.asarray(src) - np.asarray(bgr)).mean(axis=-1, keepdims=True)
        return SimpleNamespace(pha=np.clip(distance * 3, 0, 1).astype(np.float32), fgr=np.asarray(src) * 0.5)


def test_the_judge_runs_the_model_once_per_image_and_scores_the_same():
    test_set = _TestSet([_sample(1), _sample(2), _sample(3)])
    expected = (image_scores(_Keyed(), test_set), error_by_region({"m": _Keyed()}, test_set, count=3),
                error_by_true_alpha(_Keyed(), test_set))
    inner = _Keyed()
    model = Remembered(inner)
    got = (image_scores(model, test_set), error_by_region({"m": model}, test_set, count=3),
           error_by_true_alpha(model, test_set))
    assert inner.calls == model.calls == 3  # three passes over three images, each image run once
    assert got == expected and expected[0]["SAD"] > 0
    # another plate with the same source is another input: run again, answered apart
    inputs = protocol.protocol_input(test_set.samples[0])
    first = model(inputs.src[None], inputs.bgr[None])
    other = model(inputs.src[None], inputs.bgr[None][..., ::-1])
    assert inner.calls == 4 and not np.array_equal(first.pha, other.pha)
