"""Training checkpoints: a checkpoint whose state does not fit the run is a one-line error, not an Orbax
traceback; one that fits restores exactly."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bgm_jax.errors import InputError
from train.checkpointing import Checkpoints
from train.trainer import TrainState, make_optimizer


def state_with(tx, ema_decay=0.0):
    params = {"backbone": {"w": jnp.arange(6.0).reshape(2, 3)}, "decoder": {"b": jnp.ones(4)}}
    return TrainState.create(params, {}, tx, jax.random.key(0), ema_decay=ema_decay)


def test_a_checkpoint_of_another_optimizer_state_says_what_to_do(tmp_path):
    written = Checkpoints(tmp_path, 2, {})
    written.save(3, jax.device_get(state_with(optax.sgd(0.1))), {"next_index": 3})
    written.close()
    checkpoints = Checkpoints(tmp_path, 2, {})
    try:
        with pytest.raises(InputError, match=r"checkpoints/3: this checkpoint's training state does not fit"):
            checkpoints.restore_latest(state_with(make_optimizer({"backbone": 1e-3, "decoder": 1e-3})))
    finally:
        checkpoints.close()


def test_a_fitting_checkpoint_restores_state_and_data_position(tmp_path):
    tx = make_optimizer({"backbone": 1e-3, "decoder": 1e-3})
    state = state_with(tx)
    written = Checkpoints(tmp_path, 2, {})
    written.save(3, jax.device_get(state), {"next_index": 3})
    written.close()
    checkpoints = Checkpoints(tmp_path, 2, {})
    try:
        restored, data = checkpoints.restore_latest(state_with(tx))
    finally:
        checkpoints.close()
    assert data == {"next_index": 3}
    for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(restored)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_weight_average_is_saved_and_restored_and_a_run_without_one_refuses_it(tmp_path):
    tx = make_optimizer({"backbone": 1e-3, "decoder": 1e-3})
    state = state_with(tx, ema_decay=0.9)
    state = state.replace(ema=jax.tree_util.tree_map(lambda x: x + 0.5, state.ema))  # unlike the weights
    written = Checkpoints(tmp_path / "ema", 2, {})
    written.save(3, jax.device_get(state), {"next_index": 3})
    written.close()
    checkpoints = Checkpoints(tmp_path / "ema", 2, {})
    try:
        restored, _ = checkpoints.restore_latest(state_with(tx, ema_decay=0.9))
        with pytest.raises(InputError, match="does not fit this run"):
            checkpoints.restore_latest(state_with(tx))
    finally:
        checkpoints.close()
    for a, b in zip(jax.tree_util.tree_leaves(state.ema), jax.tree_util.tree_leaves(restored.ema)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    plain = Checkpoints(tmp_path / "plain", 2, {})
    plain.save(3, jax.device_get(state_with(tx)), {"next_index": 3})
    plain.close()
    checkpoints = Checkpoints(tmp_path / "plain", 2, {})
    try:
        with pytest.raises(InputError, match="does not fit this run"):
            checkpoints.restore_latest(state_with(tx, ema_decay=0.9))
    finally:
        checkpoints.close()
