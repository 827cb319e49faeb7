"""The procedural matting generator: what each sample contains, and that seeds determine it."""

import numpy as np
import pytest
from scipy import ndimage

from bgm_jax.datasets import synthetic


@pytest.fixture(scope="module")
def samples():
    return [synthetic.make_sample(seed, 96, 128) for seed in range(6)]


def test_make_sample_returns_uint8_fgr_pha_bgr_of_the_requested_size(samples):
    for s in samples:
        assert set(s) == {"fgr", "pha", "bgr"}
        assert s["fgr"].shape == (96, 128, 3) and s["bgr"].shape == (96, 128, 3) and s["pha"].shape == (96, 128)
        assert all(a.dtype == np.uint8 for a in s.values())


def test_same_seed_gives_identical_arrays_and_different_seeds_differ():
    a, b, c = synthetic.make_sample(7, 64, 64), synthetic.make_sample(7, 64, 64), synthetic.make_sample(8, 64, 64)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["pha"], c["pha"])
    assert not np.array_equal(a["bgr"], c["bgr"])


def test_alpha_spans_transparent_opaque_and_fractional_values(samples):
    for s in samples:
        pha = s["pha"]
        assert (pha == 0).mean() > 0.2, "subject must leave background visible"
        assert (pha == 255).mean() > 0.1, "subject must have an opaque core"
        fractional = (pha > 0) & (pha < 255)
        assert fractional.mean() > 0.01
        # Not only 2-level edges: many distinct fractional levels.
        assert len(np.unique(pha[fractional])) > 30


def test_semi_transparent_region_is_an_area_not_just_edges(samples):
    for s in samples:
        mid = (s["pha"] > 60) & (s["pha"] < 200)
        # Eroding away 1-2 px wide edge bands leaves the veil's interior.
        assert ndimage.binary_erosion(mid, iterations=2).sum() > 20


def test_every_sample_has_a_hole_enclosed_by_the_subject(samples):
    for s in samples:
        transparent = s["pha"] == 0
        labels, count = ndimage.label(transparent)
        border = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])))
        enclosed = [k for k in range(1, count + 1) if k not in border and (labels == k).sum() >= 4]
        assert enclosed, "expected a zero-alpha region not connected to the image border"


def test_hair_strands_produce_thin_fractional_structures_above_the_head():
    s = synthetic.make_sample(3, 256, 256)
    pha = s["pha"].astype(np.float32) / 255
    # Thin strands: pixels with partial alpha whose 3x3 neighbourhood is mostly transparent.
    neighbourhood_max_opaque = ndimage.maximum_filter(s["pha"] == 255, size=5)
    isolated_partial = (pha > 0.05) & (pha < 0.95) & ~neighbourhood_max_opaque
    assert isolated_partial.sum() > 50


def test_foreground_and_background_are_coloured_and_textured(samples):
    for s in samples:
        for key in ("fgr", "bgr"):
            image = s[key].astype(np.float32)
            assert image.std(axis=(0, 1)).max() > 5, f"{key} must not be flat"
        subject = s["pha"] > 250
        channel_spread = s["fgr"][subject].astype(np.float32).std(axis=0)
        assert channel_spread.max() > 3, "the subject must show texture or shading"
    assert np.unique(np.stack([s["bgr"].mean(axis=(0, 1)) for s in samples]).round(), axis=0).shape[0] == len(samples)


def test_composite_matches_the_matting_equation():
    s = synthetic.make_sample(1, 32, 32)
    alpha = s["pha"][..., None] / 255.0
    expected = alpha * s["fgr"] + (1 - alpha) * s["bgr"]
    np.testing.assert_allclose(synthetic.composite(s["fgr"], s["pha"], s["bgr"]), expected, atol=0.51)


def test_clip_moves_the_subject_over_a_static_background():
    clip = synthetic.make_clip(5, num_frames=4, height=64, width=80)
    assert clip["fgr"].shape == (4, 64, 80, 3) and clip["pha"].shape == (4, 64, 80)
    assert clip["bgr"].shape == (64, 80, 3)
    centroids = []
    for pha in clip["pha"]:
        ys, xs = np.nonzero(pha > 128)
        centroids.append((ys.mean(), xs.mean()))
    assert np.abs(np.diff(np.array(centroids), axis=0)).sum() > 0.5, "the subject must move between frames"
    assert not np.array_equal(clip["pha"][0], clip["pha"][-1])
    again = synthetic.make_clip(5, num_frames=4, height=64, width=80)
    np.testing.assert_array_equal(clip["pha"], again["pha"])


def test_too_small_sizes_are_rejected():
    with pytest.raises(ValueError, match="16"):
        synthetic.make_sample(0, 8, 64)


def test_subject_layers_composite_to_the_sample_and_can_be_repainted():
    sample = synthetic.make_sample(4, 64, 80)
    layers = synthetic.subject_layers(4, 64, 80)
    assert [layer.name for layer in layers] == ["torso", "head", "veil", "strands"]
    fgr, pha = synthetic.composite_layers(layers)
    np.testing.assert_array_equal(np.round(pha * 255).astype(np.uint8), sample["pha"])
    np.testing.assert_array_equal(np.round(fgr * 255).astype(np.uint8), sample["fgr"])
    # Repainting every layer one flat colour keeps alpha and gives that colour wherever alpha > 0.
    flat = [synthetic.Layer(layer.name, layer.coverage, np.array([0.2, 0.4, 0.6], np.float32)) for layer in layers]
    fgr, pha2 = synthetic.composite_layers(flat)
    np.testing.assert_array_equal(pha2, pha)
    np.testing.assert_allclose(fgr[pha > 0], np.broadcast_to([0.2, 0.4, 0.6], fgr[pha > 0].shape), atol=1e-5)
