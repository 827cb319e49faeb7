"""The training library: state, optimizer, and one pure SPMD train step.

``train_step(state, batch)`` takes a state and a batch and returns the next state and metrics. The same
function runs unchanged

- under ``jax.pmap(..., axis_name="batch")`` with ``axis_name="batch"``: BatchNorm statistics, gradients
  and metrics are reduced across replicas;
- under ``jax.jit`` over a batch-sharded global array with ``axis_name=None``: XLA inserts the collectives;
- on one device on the global batch.

All three give the same result (``tests/test_trainer.py``), because every random draw that touches data
is keyed by the example's global index (``example_keys``), never by device. Dropout is the exception: its
masks are drawn per replica (``fold_in(key, axis_index)``), as in any data-parallel trainer.

With ``ema_decay`` the state also carries an exponential moving average of the weights (parameters and
BatchNorm statistics, ``ema = decay * ema + (1 - decay) * weights`` after every step that updated them,
started at the initial weights); it never feeds back into training, so the raw trajectory is unchanged.

Mixed precision is a dtype policy: float32 parameters and BatchNorm statistics, bf16/fp16 compute, losses
on float32 casts; float16 uses dynamic loss scaling and skips steps whose gradients are not finite.
"""

from __future__ import annotations

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training.dynamic_scale import DynamicScale

MODULE_GROUPS = ("backbone", "aspp", "decoder", "refiner")


class TrainState(struct.PyTreeNode):
    """Everything a step changes, and so everything a checkpoint must hold to resume exactly."""

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: optax.OptState
    rng: jax.Array  # raw uint32 key data (checkpoint-friendly); ``jax.random.wrap_key_data`` to use
    dynamic_scale: DynamicScale | None
    ema: Any  # {"params", "batch_stats"} averaged over the steps, or None (no averaging)
    tx: optax.GradientTransformation = struct.field(pytree_node=False)
    ema_decay: float = struct.field(pytree_node=False, default=0.0)

    @classmethod
    def create(cls, params, batch_stats, tx, rng, dynamic_scale=None, ema_decay: float = 0.0) -> "TrainState":
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) (0 = no averaging), got {ema_decay!r}")
        # The average starts at the initial weights, in buffers of its own (a donated step must not see one
        # buffer twice).
        ema = jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), {"params": params, "batch_stats": batch_stats}) \
            if ema_decay else None
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            batch_stats=batch_stats,
            opt_state=tx.init(params),
            rng=jax.random.key_data(rng) if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key) else rng,
            dynamic_scale=dynamic_scale,
            ema=ema,
            tx=tx,
            ema_decay=float(ema_decay),
        )

    @property
    def key(self) -> jax.Array:
        return jax.random.wrap_key_data(self.rng)


def make_optimizer(
    learning_rates: dict[str, float],
    *,
    schedule: str = "constant",
    total_steps: int | None = None,
    warmup_steps: int = 0,
    grad_clip_norm: float | None = None,
    params: Any = None,
) -> optax.GradientTransformation:
    """Adam (0.9, 0.999, eps 1e-8, no weight decay) with one learning rate per top-level module, as the
    original (backbone / aspp / decoder / refiner), an optional schedule (constant or cosine, with linear
    warm-up) and optional global-norm gradient clipping."""
    missing = [g for g in (params or {}) if g not in learning_rates]
    if missing:
        raise ValueError(f"no learning rate for module(s) {missing}; give one for each of {sorted(params)}")

    def scheduled(lr: float):
        if schedule == "constant":
            base = optax.constant_schedule(lr)
        elif schedule == "cosine":
            if not total_steps:
                raise ValueError("a cosine schedule needs total_steps")
            base = optax.cosine_decay_schedule(lr, max(total_steps - warmup_steps, 1))
        else:
            raise ValueError(f"unknown schedule {schedule!r}; expected 'constant' or 'cosine'")
        if warmup_steps:
            return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup_steps), base], [warmup_steps])
        return base

    # inject_hyperparams keeps each group's learning rate of its last update in the optimizer state, so
    # what is logged is what the step used (`learning_rates`); the other arguments stay static constants.
    adam = optax.inject_hyperparams(optax.adam, static_args=("b1", "b2", "eps", "eps_root", "nesterov"))
    transforms = {group: adam(learning_rate=scheduled(lr), b1=0.9, b2=0.999, eps=1e-8)
                  for group, lr in learning_rates.items()}
    tx = optax.multi_transform(transforms, param_labels=lambda p: {k: jax.tree_util.tree_map(lambda _: k, v) for k, v in p.items()})
    if grad_clip_norm:
        tx = optax.chain(optax.clip_by_global_norm(grad_clip_norm), tx)
    return tx


def learning_rates(opt_state: optax.OptState) -> dict[str, jax.Array]:
    """Each module group's learning rate as its last update applied it: the schedule's value at that
    update's step (a float16 step skipped for overflow leaves it unchanged). Before the first update,
    the schedule's value at step 0."""
    groups = optax.tree_utils.tree_get(opt_state, "inner_states")
    return {group: optax.tree_utils.tree_get(state, "hyperparams")["learning_rate"] for group, state in groups.items()}


def example_keys(key: jax.Array, step: jax.Array, batch_size: int, axis_name: str | None) -> jax.Array:
    """One key per example, from its global index in the step's batch: the same example gets the same
    augmentation whatever the number of devices."""
    offset = jax.lax.axis_index(axis_name) * batch_size if axis_name is not None else 0
    step_key = jax.random.fold_in(key, step)
    return jax.vmap(lambda i: jax.random.fold_in(step_key, offset + i))(jnp.arange(batch_size))


def _mean_over_replicas(tree, axis_name):
    return jax.lax.pmean(tree, axis_name) if axis_name is not None else tree


def train_step(
    state: TrainState,
    batch: dict[str, jax.Array],
    *,
    model: flax.linen.Module,
    prepare: Callable[[jax.Array, dict[str, jax.Array]], dict[str, jax.Array]],
    loss_fn: Callable[[tuple, dict[str, jax.Array]], tuple[jax.Array, dict[str, jax.Array]]],
    axis_name: str | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimisation step. Pure: state in, state out.

    ``prepare(keys, batch)`` turns a raw batch into model inputs and targets (``src``, ``bgr`` and the
    ground truth ``pha``, ``fgr``) with one key per example (augmentation, crops); ``loss_fn(outputs,
    targets)`` returns the scalar loss and a dict of its terms.
    """
    batch_size = jax.tree_util.tree_leaves(batch)[0].shape[0]
    keys = example_keys(state.key, state.step, batch_size, axis_name)
    targets = prepare(keys, batch)
    dropout_key = jax.random.fold_in(jax.random.fold_in(state.key, state.step), 0x0D)
    if axis_name is not None:
        dropout_key = jax.random.fold_in(dropout_key, jax.lax.axis_index(axis_name))

    def compute_loss(params):
        outputs, updates = model.apply(
            {"params": params, "batch_stats": state.batch_stats},
            targets["src"],
            targets["bgr"],
            train=True,
            rngs={"dropout": dropout_key},
            mutable=["batch_stats"],
        )
        loss, terms = loss_fn(outputs, targets)
        return loss, (terms, updates["batch_stats"])

    if state.dynamic_scale is not None:
        grad_fn = state.dynamic_scale.value_and_grad(compute_loss, has_aux=True, axis_name=axis_name)
        dynamic_scale, finite, (loss, (terms, batch_stats)), grads = grad_fn(state.params)
    else:
        (loss, (terms, batch_stats)), grads = jax.value_and_grad(compute_loss, has_aux=True)(state.params)
        grads = _mean_over_replicas(grads, axis_name)
        dynamic_scale, finite = None, jnp.array(True)

    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = state.replace(
        step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state, dynamic_scale=dynamic_scale
    )
    if state.dynamic_scale is not None:
        # Skip a step whose gradients overflowed: keep parameters, optimizer and statistics; the loss
        # scale has already been reduced by DynamicScale.
        keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
        new_state = new_state.replace(
            params=keep(params, state.params),
            opt_state=keep(opt_state, state.opt_state),
            batch_stats=keep(batch_stats, state.batch_stats),
        )
    if state.ema is not None:
        current = {"params": new_state.params, "batch_stats": new_state.batch_stats}
        ema = optax.incremental_update(current, state.ema, step_size=1.0 - state.ema_decay)
        if state.dynamic_scale is not None:  # a skipped step leaves the average as it was
            ema = jax.tree_util.tree_map(lambda new, old: jnp.where(finite, new, old), ema, state.ema)
        new_state = new_state.replace(ema=ema)

    metrics = {"loss": loss, **terms, "grad_norm": optax.tree.norm(grads)}
    metrics = _mean_over_replicas(metrics, axis_name)
    metrics["finite"] = finite.astype(jnp.float32)
    if state.dynamic_scale is not None:
        metrics["loss_scale"] = state.dynamic_scale.scale
    return new_state, metrics
