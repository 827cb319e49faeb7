"""The grain input pipeline: zip epochs, determinism, host sharding, exact resume, canvas fitting."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from bgm_jax.datasets import images, pipeline
from bgm_jax.errors import InputError

CANVAS = (16, 16)


def _png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _fg_source(n, h=16, w=16):
    """Foreground i: red channel 10 + i everywhere, alpha 200."""
    return [
        {"fgr": _png(np.full((h, w, 3), (10 + i, 0, 0), np.uint8)), "pha": _png(np.full((h, w), 200, np.uint8))}
        for i in range(n)
    ]


def _bg_source(n, h=16, w=16):
    """Background j: green channel 10 + j everywhere."""
    return [{"bgr": _png(np.full((h, w, 3), (0, 10 + j, 0), np.uint8))} for j in range(n)]


def _iterate(fg, bg, config, batches, *, devices=1, host=0, hosts=1, state=None):
    iterator = iter(pipeline.matting_pipeline(fg, bg, config, local_device_count=devices,
                                              process_index=host, process_count=hosts))
    if state is not None:
        iterator.set_state(state)
    out = [next(iterator) for _ in range(batches)]
    final_state = iterator.get_state()
    iterator.close()
    return out, final_state


def _pairs(batch):
    return list(zip(batch["fg_index"].ravel().tolist(), batch["bg_index"].ravel().tolist()))


# ----------------------------------------------------------------------------------------------
# Zip epochs (index level)


def test_zip_epoch_pairs_sample_i_mod_nfg_with_background_i_mod_nbg():
    items = pipeline.zip_epochs(n_fg=6, n_bg=10, seed=0)
    epoch = [items[k] for k in range(10)]
    assert sorted((e["fg_index"], e["bg_index"]) for e in epoch) == sorted((i % 6, i % 10) for i in range(10))
    assert {e["epoch"] for e in epoch} == {0}


def test_epoch_length_is_max_of_the_two_counts_and_each_epoch_is_reshuffled():
    n_fg, n_bg = 7, 3
    items = pipeline.zip_epochs(n_fg, n_bg, seed=4)
    epochs = [[items[e * 7 + k] for k in range(7)] for e in range(3)]
    expected = sorted((i % n_fg, i % n_bg) for i in range(7))
    orders = []
    for e, epoch in enumerate(epochs):
        assert sorted((x["fg_index"], x["bg_index"]) for x in epoch) == expected
        assert all(x["epoch"] == e for x in epoch)
        orders.append([x["fg_index"] for x in epoch])
    assert len({tuple(o) for o in orders}) == 3, "every epoch must come in a new order"
    assert pipeline.steps_per_epoch(n_fg, n_bg, global_batch=2) == 3


def test_zip_order_depends_only_on_the_seed():
    first = [pipeline.zip_epochs(5, 9, seed=1)[k]["fg_index"] for k in range(27)]
    again = [pipeline.zip_epochs(5, 9, seed=1)[k]["fg_index"] for k in range(27)]
    other = [pipeline.zip_epochs(5, 9, seed=2)[k]["fg_index"] for k in range(27)]
    assert first == again and first != other


def test_single_item_epochs_work():
    items = pipeline.zip_epochs(1, 1, seed=0, num_epochs=3)
    assert len(items) == 3 and [items[k]["epoch"] for k in range(3)] == [0, 1, 2]


# ----------------------------------------------------------------------------------------------
# Full pipeline


def test_batches_have_pmap_layout_on_a_fixed_canvas():
    config = pipeline.PipelineConfig(canvas=CANVAS, per_device_batch=3, num_threads=1)
    (batch,), _ = _iterate(_fg_source(4, 12, 20), _bg_source(5, 30, 10), config, 1, devices=2)
    assert batch["fgr"].shape == (2, 3, 16, 16, 3) and batch["fgr"].dtype == np.uint8
    assert batch["pha"].shape == (2, 3, 16, 16, 1) and batch["bgr"].shape == (2, 3, 16, 16, 3)
    assert batch["fgr_valid_hw"].shape == (2, 3, 2) and batch["fg_index"].shape == (2, 3)


def test_decoded_images_are_the_paired_samples():
    config = pipeline.PipelineConfig(canvas=CANVAS, per_device_batch=4, num_threads=2)
    batches, _ = _iterate(_fg_source(3), _bg_source(5), config, 3)
    for batch in batches:
        for d, b in np.ndindex(batch["fg_index"].shape):
            assert (batch["fgr"][d, b, ..., 0] == 10 + batch["fg_index"][d, b]).all()
            assert (batch["bgr"][d, b, ..., 1] == 10 + batch["bg_index"][d, b]).all()
            assert (batch["pha"][d, b] == 200).all()
    seen = [p for batch in batches for p in _pairs(batch)]
    assert sorted(seen[:5]) == sorted((i % 3, i % 5) for i in range(5)), "first epoch = the zip of 3 and 5"


def test_decoded_arrays_work_as_sources_like_encoded_bytes():
    fg = [{"fgr": np.full((8, 12, 3), 10 + i, np.uint8), "pha": np.full((8, 12, 1), 255, np.uint8)} for i in range(2)]
    bg = [{"bgr": np.full((20, 20, 3), 7, np.uint8)}]
    config = pipeline.PipelineConfig(canvas=CANVAS, per_device_batch=2, num_threads=1)
    (batch,), _ = _iterate(fg, bg, config, 1)
    assert batch["fgr_valid_hw"][0, 0].tolist() == [11, 16]
    for b in range(2):
        assert (batch["fgr"][0, b, :11, :, 0] == 10 + batch["fg_index"][0, b]).all()
    assert (batch["bgr"] == 7).all()


def test_same_seed_gives_identical_batches_and_another_seed_differs():
    fg, bg = _fg_source(6), _bg_source(4)
    config = pipeline.PipelineConfig(canvas=CANVAS, per_device_batch=2, seed=3, num_threads=2)
    a, _ = _iterate(fg, bg, config, 4)
    b, _ = _iterate(fg, bg, config, 4)
    c, _ = _iterate(fg, bg, pipeline.PipelineConfig(canvas=CANVAS, per_device_batch=2, seed=4), 4)
    for x, y in zip(a, b):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])
    assert [_pairs(x) for x in a] != [_pairs(x) for x in c]


def test_host_shards_partition_every_global_batch():
    fg, bg = _fg_source(5), _bg_source(7)
    config = pipeline.PipelineConfig(canvas=CANVAS, per_device_batch=2, num_threads=1)
    single, _ = _iterate(fg, bg, config, 5, devices=2)  # one host, global batch 4
    host0, _ = _iterate(fg, bg, config, 5, devices=1, host=0, hosts=2)  # two hosts, global batch 4
    host1, _ = _iterate(fg, bg, config, 5, devices=1, host=1, hosts=2)
    for whole, part0, part1 in zip(single, host0, host1):
        assert sorted(_pairs(whole)) == sorted(_pairs(part0) + _pairs(part1))
    assert [_pairs(b) for b in host0] != [_pairs(b) for b in host1], "hosts must read different items"


def test_finite_epochs_give_every_host_the_same_number_of_whole_batches():
    fg, bg = _fg_source(10), _bg_source(3)
    config = pipeline.PipelineConfig(canvas=CANVAS, per_device_batch=2, num_epochs=1, num_threads=1)
    counts = []
    for host in range(2):
        iterator = iter(pipeline.matting_pipeline(fg, bg, config, local_device_count=1, process_index=host,
                                                  process_count=2))
        counts.append(sum(1 for _ in iterator))
        iterator.close()
    assert counts == [2, 2]  # 10 items, global batch 4: two whole global batches, 2 items dropped


def test_restored_iterator_continues_with_exactly_the_next_batches():
    fg, bg = _fg_source(5), _bg_source(3)
    config = pipeline.PipelineConfig(canvas=CANVAS, per_device_batch=2, seed=7, num_threads=2)
    uninterrupted, _ = _iterate(fg, bg, config, 7, devices=2)
    _, state = _iterate(fg, bg, config, 4, devices=2)
    state = json.loads(json.dumps(state))  # the state survives a text checkpoint
    resumed, _ = _iterate(fg, bg, config, 3, devices=2, state=state)
    for expected, got in zip(uninterrupted[4:], resumed):
        for key in expected:
            np.testing.assert_array_equal(expected[key], got[key])


def test_contain_keeps_all_content_and_reports_the_valid_region():
    fg = [{"fgr": _png(np.full((10, 20, 3), 90, np.uint8)), "pha": _png(np.full((10, 20), 255, np.uint8))}]
    config = pipeline.PipelineConfig(canvas=CANVAS, per_device_batch=1, num_threads=1)
    (batch,), _ = _iterate(fg, _bg_source(1, 10, 20), config, 1)
    assert batch["fgr_valid_hw"][0, 0].tolist() == [8, 16]
    mask = pipeline.valid_mask(batch["fgr_valid_hw"], CANVAS)[0, 0]
    assert mask.sum() == 8 * 16
    assert (batch["fgr"][0, 0][mask] == 90).all() and (batch["fgr"][0, 0][~mask] == 0).all()
    assert (batch["pha"][0, 0, ..., 0][mask] == 255).all()
    assert (batch["pha"][0, 0, ..., 0][~mask] == 0).all(), "padding must be transparent"
    assert batch["bgr_valid_hw"][0, 0].tolist() == [16, 16], "backgrounds cover the canvas"


def test_cover_fills_the_canvas_with_the_centre_of_the_image():
    ramp = np.tile(np.arange(64, dtype=np.uint8)[None, :, None] * 4, (16, 1, 3))  # 16x64, brightness = 4*x
    pixels, valid = images.decode_to_canvas(_png(ramp), "RGB", (16, 16), "cover")
    assert valid == (16, 16)
    np.testing.assert_allclose(pixels[0, :, 0].astype(float), 4 * np.arange(24, 40), atol=2)


def test_reduced_size_jpeg_decoding_stays_close_to_a_full_decode():
    sample = np.asarray(Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), np.uint8))
                        .resize((400, 320), Image.Resampling.BICUBIC))
    buffer = io.BytesIO()
    Image.fromarray(sample).save(buffer, format="JPEG", quality=95)
    fast, _ = images.decode_to_canvas(buffer.getvalue(), "RGB", (40, 50), "contain")
    full = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    reference = np.asarray(full.resize((50, 40), Image.Resampling.BILINEAR))
    assert np.abs(fast.astype(int) - reference.astype(int)).mean() < 3


def test_alpha_of_a_different_size_than_its_foreground_fails_clearly():
    fg = [{"fgr": _png(np.zeros((16, 16, 3), np.uint8)), "pha": _png(np.zeros((8, 16), np.uint8))}]
    config = pipeline.PipelineConfig(canvas=CANVAS, per_device_batch=1, num_threads=1)
    with pytest.raises(InputError, match="same size"):
        _iterate(fg, _bg_source(1), config, 1)


def test_bad_configs_are_input_errors():
    fg, bg = _fg_source(1), _bg_source(1)
    for config in (pipeline.PipelineConfig(fgr_fit="stretch"), pipeline.PipelineConfig(canvas=(0, 16)),
                   pipeline.PipelineConfig(per_device_batch=0)):
        with pytest.raises(InputError):
            pipeline.matting_pipeline(fg, bg, config, local_device_count=1, process_index=0, process_count=1)
    with pytest.raises(InputError, match="process_index"):
        pipeline.matting_pipeline(fg, bg, pipeline.PipelineConfig(), local_device_count=1, process_index=2,
                                  process_count=2)
    with pytest.raises(InputError, match="at least one"):
        pipeline.zip_epochs(0, 3, seed=0)


def test_device_and_host_counts_default_to_jax():
    import jax

    config = pipeline.PipelineConfig(canvas=CANVAS, per_device_batch=1, num_threads=1)
    iterator = iter(pipeline.matting_pipeline(_fg_source(2), _bg_source(2), config))
    batch = next(iterator)
    iterator.close()
    assert batch["fgr"].shape[:2] == (jax.local_device_count(), 1)
