"""The SPMD train step: pmap, jit over a batch-sharded array and one device on the global batch agree;
float16 loss scaling skips non-finite steps; the weights' moving average follows the raw weights without
changing them."""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from bgm_jax.models import MattingBase
from train.trainer import TrainState, make_optimizer, train_step

DEVICES = 4
PER_DEVICE = 2
SIZE = 64


def simple_prepare(keys, batch):
    """Composite with a per-example random background brightness (keyed per example)."""
    fgr = batch["fgr"].astype(jnp.float32) / 255
    pha = batch["pha"].astype(jnp.float32) / 255
    gain = jax.vmap(lambda k: jax.random.uniform(k, (), minval=0.8, maxval=1.2))(keys)
    bgr = jnp.clip(batch["bgr"].astype(jnp.float32) / 255 * gain[:, None, None, None], 0, 1)
    return {"src": pha * fgr + (1 - pha) * bgr, "bgr": bgr, "pha": pha, "fgr": fgr}


def simple_loss(outputs, targets):
    pha, fgr = outputs[0].astype(jnp.float32), outputs[1].astype(jnp.float32)
    terms = {"pha_l1": jnp.mean(jnp.abs(pha - targets["pha"])), "fgr_l1": jnp.mean(jnp.abs(fgr - targets["fgr"]))}
    return terms["pha_l1"] + terms["fgr_l1"], terms


def boosted_prepare(keys, batch):
    """simple_prepare, passing on the batch's loss multiplier: one compiled step makes both a normal and an
    overflowing step (float16 compiles slowly on CPUs)."""
    return {**simple_prepare(keys, batch), "boost": batch["boost"]}


def boosted_loss(outputs, targets):
    loss, terms = simple_loss(outputs, targets)
    return loss * targets["boost"][0], terms


def make_batch(seed):
    rng = np.random.default_rng(seed)
    n = DEVICES * PER_DEVICE
    return {
        "fgr": rng.integers(0, 256, (n, SIZE, SIZE, 3), np.uint8),
        "pha": rng.integers(0, 256, (n, SIZE, SIZE, 1), np.uint8),
        "bgr": rng.integers(0, 256, (n, SIZE, SIZE, 3), np.uint8),
    }


def make_state(model, precision_scale=None, tx=None, ema_decay=0.0):
    x = jnp.zeros((1, SIZE, SIZE, 3))
    variables = model.init(jax.random.key(0), x, x)
    if tx is None:
        tx = make_optimizer({"backbone": 1e-3, "aspp": 5e-3, "decoder": 5e-3}, params=variables["params"])
    return TrainState.create(variables["params"], variables["batch_stats"], tx, jax.random.key(1), precision_scale,
                             ema_decay=ema_decay)


def step_fn(model, axis_name):
    return functools.partial(
        train_step, model=model, prepare=simple_prepare, loss_fn=simple_loss, axis_name=axis_name
    )


def assert_trees_close(a, b, atol, rtol=0.0):
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(
            np.asarray(x), np.asarray(y), atol=atol, rtol=rtol, err_msg=jax.tree_util.keystr(path)
        )


def run_three_ways(pmap_bn_axis="batch", lr=1e-4, steps=2, with_jit=True):
    """The same steps on one device (global batch), under pmap, and under jit over a sharded batch."""
    import optax

    devices = jax.local_devices()[:DEVICES]
    assert len(devices) == DEVICES, "conftest sets four fake CPU devices"
    # Dropout masks are drawn per replica by design; switch it off to compare the rest exactly.
    model = MattingBase(backbone="mobilenetv2", aspp_dropout=0.0)
    pmodel = MattingBase(backbone="mobilenetv2", aspp_dropout=0.0, bn_axis_name=pmap_bn_axis)
    batches = [make_batch(s) for s in range(steps)]

    single = make_state(model, tx=optax.sgd(lr))
    single_step = jax.jit(step_fn(model, None))
    for batch in batches:
        single, single_metrics = single_step(single, batch)

    pstate = jax.tree_util.tree_map(lambda x: jnp.stack([x] * DEVICES), make_state(pmodel, tx=optax.sgd(lr)))
    pstep = jax.pmap(step_fn(pmodel, "batch"), axis_name="batch", devices=devices)
    for batch in batches:
        shard = jax.tree_util.tree_map(lambda x: x.reshape(DEVICES, PER_DEVICE, *x.shape[1:]), batch)
        pstate, pmetrics = pstep(pstate, shard)
    pstate = jax.tree_util.tree_map(lambda x: x[0], pstate)
    pmetrics = jax.tree_util.tree_map(lambda x: x[0], pmetrics)

    if not with_jit:
        return (single, single_metrics), (pstate, pmetrics), None
    mesh = Mesh(np.array(devices), ("batch",))
    jstate = jax.device_put(make_state(model, tx=optax.sgd(lr)), NamedSharding(mesh, P()))
    jstep = jax.jit(step_fn(model, None))
    for batch in batches:
        jstate, jmetrics = jstep(jstate, jax.device_put(batch, NamedSharding(mesh, P("batch"))))
    return (single, single_metrics), (pstate, pmetrics), (jstate, jmetrics)


def max_difference(a, b):
    return max(float(np.abs(np.asarray(x) - np.asarray(y)).max())
               for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def test_pmap_jit_sharded_and_single_device_steps_agree():
    """Two steps three ways, compared to 1e-5 in float32.

    Plain SGD with a small step, not Adam: the gradients of this randomly initialised network carry
    float-rounding noise of about 1 % of their largest value (a 1e-7 change of the input moves them that
    much: BatchNorm over few values, biases feeding another BatchNorm whose true gradient is zero), and
    Adam's first update, lr * g / |g|, turns that noise into full +-lr steps. The step is optimizer-agnostic;
    the negative control below shows the tolerance still catches a real sharding bug."""
    (single, sm), (pstate, pm), (jstate, jm) = run_three_ways()
    for other, metrics in ((pstate, pm), (jstate, jm)):
        assert_trees_close(single.params, other.params, atol=1e-5)
        # Running variances reach ~2; float32 E[x^2] - E[x]^2 differs in the 6th digit by summation order.
        assert_trees_close(single.batch_stats, other.batch_stats, atol=1e-5, rtol=1e-5)
        for name in ("loss", "pha_l1", "fgr_l1"):
            np.testing.assert_allclose(sm[name], metrics[name], atol=1e-5, err_msg=name)
        assert int(other.step) == int(single.step) == 2


def test_the_agreement_check_catches_per_replica_batchnorm():
    """Negative control: without the BatchNorm axis name, pmap normalises each replica by its own
    statistics; the difference must be far above the tolerance used above."""
    (single, _), (pstate, _), _ = run_three_ways(pmap_bn_axis=None, steps=1, with_jit=False)
    stats_gap = max_difference(single.batch_stats, pstate.batch_stats)
    params_gap = max_difference(single.params, pstate.params)
    assert stats_gap > 1e-2, stats_gap
    assert params_gap > 1e-4, params_gap


class TinyMatting(nn.Module):
    """A convolution and a BatchNorm: parameters and statistics for the average to follow, compiled in
    seconds (the average is the same tree arithmetic whatever the network)."""

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, src, bgr, train: bool = False):
        x = nn.Conv(4, (3, 3), dtype=self.dtype)(jnp.concatenate([src, bgr], axis=-1).astype(self.dtype))
        x = nn.BatchNorm(use_running_average=not train, dtype=self.dtype)(x)
        return jax.nn.sigmoid(x[..., :1]), jax.nn.sigmoid(x[..., 1:])


def test_the_weight_average_follows_the_raw_weights_and_leaves_them_unchanged():
    """Three steps with and without ``ema_decay``: the raw weights are the same to the bit, and the average
    is decay * average + (1 - decay) * weights after each step, from the initial weights."""
    import optax

    decay = 0.75
    model = TinyMatting()
    step = jax.jit(step_fn(model, None))
    plain, averaged = make_state(model, tx=optax.adam(1e-2)), make_state(model, tx=optax.adam(1e-2), ema_decay=decay)
    assert plain.ema is None
    weights = lambda s: {"params": s.params, "batch_stats": s.batch_stats}  # noqa: E731
    expected = jax.tree_util.tree_map(np.asarray, weights(averaged))
    for seed in range(3):
        batch = make_batch(seed)
        plain, _ = step(plain, batch)
        averaged, _ = step(averaged, batch)
        assert_trees_close(weights(plain), weights(averaged), atol=0)
        expected = jax.tree_util.tree_map(lambda e, w: decay * e + (1 - decay) * np.asarray(w), expected,
                                          weights(averaged))
        assert_trees_close(averaged.ema, expected, atol=1e-7, rtol=1e-6)
    # the average lags: it is neither the first nor the last weights
    assert max_difference(averaged.ema["params"], averaged.params) > 1e-4
    assert max_difference(averaged.ema, weights(make_state(model, tx=optax.adam(1e-2), ema_decay=decay))) > 1e-4


def test_float16_loss_scaling_skips_a_step_with_non_finite_gradients_and_keeps_the_weight_average():
    """Dynamic loss scaling: a finite step moves the weights and their average; a step whose scaled loss
    overflows leaves weights, statistics, optimizer state and average as they were, halves the scale and
    still counts. On a one-conv network (the scaling is the same tree arithmetic whatever the network; a
    MobileNetV2 float16 step took 96 s to compile here, and the refine stage's float16 step is lowered in
    tests/test_device_check.py)."""
    from flax.training.dynamic_scale import DynamicScale

    import optax

    model = TinyMatting(dtype=jnp.float16)
    # typed scalars, as the step returns them, so the second call does not compile again
    state = make_state(model, DynamicScale(scale=jnp.float32(2.0**15), fin_steps=jnp.int32(0)),
                       tx=optax.adam(1e-2), ema_decay=0.5)
    step = jax.jit(functools.partial(train_step, model=model, prepare=boosted_prepare, loss_fn=boosted_loss,
                                     axis_name=None))
    batch = make_batch(0)
    n = len(batch["fgr"])
    moved, metrics = step(state, {**batch, "boost": np.ones(n, np.float32)})
    assert float(metrics["finite"]) == 1.0
    assert max_difference(state.params, moved.params) > 1e-4  # a finite step moves the weights
    assert max_difference(state.ema, moved.ema) > 1e-4  # and their average

    # scaled by 2**15 a loss times 1e38 overflows float32
    skipped, metrics = step(moved, {**batch, "boost": np.full(n, 1e38, np.float32)})
    assert float(metrics["finite"]) == 0.0
    assert float(skipped.dynamic_scale.scale) == float(moved.dynamic_scale.scale) / 2
    for name in ("params", "batch_stats", "opt_state", "ema"):
        assert_trees_close(getattr(moved, name), getattr(skipped, name), atol=0)
    assert int(skipped.step) == int(moved.step) + 1


@pytest.mark.parametrize("decay", [-0.1, 1.0, 1.5])
def test_a_weight_average_decay_outside_zero_to_one_is_refused(decay):
    with pytest.raises(ValueError, match=r"ema_decay must be in \[0, 1\)"):
        TrainState.create({"w": jnp.ones(2)}, {}, make_optimizer({"w": 1e-3}), jax.random.key(0), ema_decay=decay)


def test_optimizer_needs_a_learning_rate_for_every_module():
    with pytest.raises(ValueError, match="refiner"):
        make_optimizer({"backbone": 1e-4}, params={"backbone": {}, "refiner": {}})
