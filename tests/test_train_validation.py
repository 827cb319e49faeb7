"""Validation during training compiles once per run and scores in the paper's units through
bgm_jax.evaluation; the logged learning rates are the optimizer's scheduled values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bgm_jax.models import MattingBase
from train.loop import Validation
from train.trainer import learning_rates, make_optimizer


@pytest.fixture(scope="module")
def model_and_variables():
    model = MattingBase(backbone="mobilenetv2")
    x = jnp.zeros((1, 32, 32, 3))
    return model, jax.jit(model.init)(jax.random.key(0), x, x)


def held_out(count=5, size=32, seed=0):
    rng = np.random.default_rng(seed)
    pha = rng.uniform(0, 1, (count, size, size, 1)).astype(np.float32)
    fgr = rng.uniform(0, 1, (count, size, size, 3)).astype(np.float32)
    bgr = rng.uniform(0, 1, (count, size, size, 3)).astype(np.float32)
    return {"src": pha * fgr + (1 - pha) * bgr, "bgr": bgr, "pha": pha}


def test_a_second_validation_and_the_image_grid_do_not_recompile(model_and_variables):
    model, variables = model_and_variables
    validation = Validation(model, held_out(5), batch_size=4)  # 4 + 1: the last batch is padded
    events = []

    def listener(event, duration, **kwargs):
        if event.endswith(("jaxpr_trace_duration", "backend_compile_duration")):
            events.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        first = validation.scores(variables)
        traced = len(events)
        second = validation.scores(variables)
        rows = validation.grid(variables, count=3)
        again = len(events)
    finally:
        jax.monitoring.clear_event_listeners()
    assert traced >= 1
    assert again == traced, f"a second validation traced or compiled {again - traced} more time(s)"
    assert validation._predict._cache_size() == 1  # one batch shape, one executable
    assert first == second
    assert len(rows) == 3 and all(len(row) == 6 for row in rows)


def test_validation_scores_are_whole_image_sad_and_mse_in_paper_units(model_and_variables):
    model, variables = model_and_variables
    valid = held_out(5, seed=1)
    scores = Validation(model, valid, batch_size=4).scores(variables)
    pha = np.asarray(model.apply(variables, valid["src"], valid["bgr"])[0], np.float64)
    diff = pha - valid["pha"]
    np.testing.assert_allclose(scores["valid_sad"], np.mean(np.abs(diff).sum(axis=(1, 2, 3)) / 1000), rtol=1e-5)
    np.testing.assert_allclose(scores["valid_mse"], np.mean((diff ** 2).mean(axis=(1, 2, 3)) * 1000), rtol=1e-5)


def test_logged_learning_rates_follow_each_groups_schedule():
    """Warm-up then cosine, per module group: after the update of step k, ``learning_rates`` holds the
    schedule's value at k (what that update applied), for every group."""
    params = {"backbone": {"w": jnp.ones(3)}, "decoder": {"w": jnp.ones(2)}}
    rates = {"backbone": 1e-4, "decoder": 5e-4}
    tx = make_optimizer(rates, schedule="cosine", total_steps=8, warmup_steps=2, grad_clip_norm=1.0, params=params)
    state = tx.init(params)
    update = jax.jit(tx.update)
    for k in range(8):
        _, state = update(params, state, params)
        logged = jax.device_get(learning_rates(state))
        for group, peak in rates.items():
            expected = peak * k / 2 if k < 2 else peak * 0.5 * (1 + np.cos(np.pi * (k - 2) / 6))
            np.testing.assert_allclose(logged[group], expected, rtol=1e-6, atol=1e-12, err_msg=f"{group} {k}")


def test_the_logged_rate_is_the_one_the_update_applied():
    """Adam's first update is -lr * g / (|g| + eps) after bias correction, i.e. -lr for every element up
    to float32 rounding: the step the optimizer applied equals the learning rate it logs."""
    params = {"decoder": {"w": jnp.full(4, 2.0)}}
    tx = make_optimizer({"decoder": 3e-4}, schedule="cosine", total_steps=5, warmup_steps=0, params=params)
    state = tx.init(params)
    updates, state = tx.update(params, state, params)
    np.testing.assert_allclose(-np.asarray(updates["decoder"]["w"]), float(learning_rates(state)["decoder"]), rtol=2e-5)
    assert float(learning_rates(state)["decoder"]) == pytest.approx(3e-4)
