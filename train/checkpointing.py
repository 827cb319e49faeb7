"""Training checkpoints (Orbax CheckpointManager), behind one small module.

Each checkpoint holds the whole TrainState (step, params, batch_stats, optimizer state, random key,
loss scale, the weights' moving average when the run keeps one), the data iterator's state and the
config, so a resumed run continues bit-identically.
``DIR/checkpoints`` keeps the latest ``keep`` steps; ``DIR/best`` keeps the one with the lowest
validation SAD.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization

from bgm_jax.errors import InputError


def _state_tree(state) -> dict[str, Any]:
    tree = serialization.to_state_dict(state)
    if tree.get("dynamic_scale") is None:
        tree.pop("dynamic_scale", None)  # float32/bfloat16 runs have no loss scale
    if tree.get("ema") is None:
        tree.pop("ema", None)  # nor do runs without weight averaging keep an average
    return jax.tree_util.tree_map(np.asarray, tree)


class Checkpoints:
    def __init__(self, workdir: str | Path, keep: int, config: dict[str, Any]):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        workdir = Path(workdir).absolute()
        self.config = config
        self.latest = ocp.CheckpointManager(
            workdir / "checkpoints",
            # a save cut short (a second SIGINT exits at once) leaves orbax's unfinished folder, which is never
            # restored; orbax is asked to clear such folders when a run opens the workdir
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, cleanup_tmp_directories=True),
        )
        self.best = ocp.CheckpointManager(
            workdir / "best",
            options=ocp.CheckpointManagerOptions(
                max_to_keep=1, best_fn=lambda metrics: metrics["valid_sad"], best_mode="min", create=True,
                cleanup_tmp_directories=True,
            ),
        )

    def _args(self, state, data_state):
        ocp = self._ocp
        return ocp.args.Composite(
            state=ocp.args.StandardSave(_state_tree(state)),
            data=ocp.args.JsonSave(data_state),
            config=ocp.args.JsonSave(self.config),
        )

    def save(self, step: int, state, data_state: dict, metrics: dict[str, float] | None = None) -> None:
        """Save asynchronously; ``state`` must be unreplicated (one copy)."""
        self.latest.save(step, args=self._args(state, data_state))
        if metrics and "valid_sad" in metrics:
            self.best.save(step, args=self._args(state, data_state), metrics={"valid_sad": float(metrics["valid_sad"])})

    def latest_step(self) -> int | None:
        return self.latest.latest_step()

    def restore_latest(self, template) -> tuple[Any, dict] | None:
        """(state, data_state) of the latest checkpoint, restored against ``template``'s structure, or None."""
        step = self.latest.latest_step()
        if step is None:
            return None
        ocp = self._ocp
        target = _state_tree(template)
        try:
            restored = self.latest.restore(
                step,
                args=ocp.args.Composite(state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore()),
            )
        except ValueError:  # Orbax: the saved tree's structure or shapes differ from the template's
            raise InputError(
                f"{self.latest.directory / str(step)}: this checkpoint's training state does not fit this run "
                "(another stage, backbone, precision or optimizer, or an older bgm-jax); resume it with what "
                "wrote it, or train in a new --workdir"
            ) from None
        tree = dict(restored["state"])
        if template.dynamic_scale is None:
            tree["dynamic_scale"] = None
        if template.ema is None:
            tree["ema"] = None
        return serialization.from_state_dict(template, tree), dict(restored["data"])

    def wait(self) -> None:
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.wait()
        self.latest.close()
        self.best.close()
