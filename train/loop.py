"""The training loop: data, initialisation, the compiled step, logging, validation, checkpoints.

``train_and_evaluate(config, workdir)`` is everything ``python -m train.main`` does; it resumes from the
latest checkpoint in ``workdir`` when there is one, and ends by exporting a model directory
(``workdir/export``) that ``bgm_jax.load`` and the next stage's ``init=checkpoint:...`` read.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bgm_jax.errors import InputError
from bgm_jax.models import MattingBase, MattingRefine
from bgm_jax.models.layers import COMPUTE_DTYPES
from train import augment as aug
from train import losses
from train.checkpointing import Checkpoints
from train.config import TrainConfig
from train.stopping import StopAgreement, StopSignal
from train.trainer import TrainState, learning_rates, make_optimizer, train_step


# ------------------------------------------------------------------------------------------------------
# Model, augmentation, loss


def build_model(config: TrainConfig, *, axis_name: str | None = None, train: bool = True):
    dtype = COMPUTE_DTYPES[config.precision] if train else jnp.float32
    if config.stage == "base":
        return MattingBase(config.backbone, aspp_dropout=config.aspp_dropout, dtype=dtype, bn_axis_name=axis_name)
    return MattingRefine(
        backbone=config.backbone,
        backbone_scale=config.backbone_scale,
        refine_mode="sampling",
        refine_sample_pixels=config.refine_sample_pixels,
        refine_kernel_size=config.refine_kernel_size,
        aspp_dropout=config.aspp_dropout,
        dtype=dtype,
        bn_axis_name=axis_name,
    )


def export_config(config: TrainConfig, step: int) -> dict:
    """The model config written with the export. A refine model trained at another backbone scale than the
    original's records it, and inference then uses it as the model's default (``bgm_jax.inference``); one
    trained at the original's follows the paper's per-resolution rule."""
    model_config = {"model_type": config.stage, "backbone": config.backbone,
                    "refine_kernel_size": config.refine_kernel_size, "source": f"train.main step {step}"}
    if config.stage == "refine" and config.backbone_scale != ORIGINAL_BACKBONE_SCALE:
        model_config["backbone_scale"] = config.backbone_scale
    return model_config


def augment_config(config: TrainConfig) -> aug.AugmentConfig:
    preset = {"base": aug.AugmentConfig.base, "refine": aug.AugmentConfig.refine,
              "identity": aug.AugmentConfig.identity}[config.augment]()
    preset = dataclasses.replace(preset, sample_size=tuple(config.sample_size))
    if config.misalignment == "paper":
        preset = preset.paper_misalignment()
    if config.plate_perturbation:
        preset = dataclasses.replace(preset, plate_perturbation_p=config.plate_perturbation)
    if config.misalign_affine is not None:
        preset = dataclasses.replace(preset, misalign_affine_p=float(config.misalign_affine))
    if config.fgr_affine is not None:
        preset = dataclasses.replace(preset, fgr_affine_p=float(config.fgr_affine))
    if config.fgr_scale is not None:
        preset = dataclasses.replace(preset, fgr_affine=dataclasses.replace(preset.fgr_affine, scale=config.fgr_scale))
    if config.crop_size is not None:
        preset = dataclasses.replace(preset, crop_size=tuple(config.crop_size),
                                     crop_multiple=4 if config.stage == "refine" else 1,
                                     crop_sizes_per_side=config.crop_sizes_per_side)
    return preset


def crop_for_step(config: TrainConfig, step: int) -> tuple[int, int] | None:
    if config.crop_size is None:
        return None
    return aug.sample_crop_hw(config.seed, step, augment_config(config))


def make_prepare(augment: aug.AugmentConfig, crop_hw):
    def prepare(keys, batch):
        return aug.augment_batch(
            keys, batch["fgr"], batch["pha"], batch["bgr"], augment, crop_hw=crop_hw,
            fgr_valid_hw=batch.get("fgr_valid_hw"), bgr_valid_hw=batch.get("bgr_valid_hw"),
        )

    return prepare


def make_loss(stage: str, soft_weight: float = 0.0, thin_weight: float = 0.0):
    if stage == "base":
        def loss_fn(outputs, targets):
            pha, fgr, err, _ = outputs
            return losses.base_loss(pha, fgr, err, targets["pha"], targets["fgr"], soft_weight,
                                    thin_weight)
    else:
        def loss_fn(outputs, targets):
            pha, fgr, pha_sm, fgr_sm, err_sm, _ = outputs
            return losses.refine_loss(pha, fgr, pha_sm, fgr_sm, err_sm, targets["pha"], targets["fgr"],
                                      soft_weight, thin_weight)
    return loss_fn


# ------------------------------------------------------------------------------------------------------
# Initialisation


def initial_variables(config: TrainConfig, model, key) -> tuple[dict, list[str]]:
    """Random variables, then whatever ``config.init`` provides; returns (variables, report lines)."""
    x = jnp.zeros((1, 64, 64, 3))
    variables = jax.jit(model.init)(key, x, x)
    variables = {"params": variables["params"], "batch_stats": variables["batch_stats"]}
    if not config.init:
        return variables, ["initialisation: random"]
    kind, _, path = config.init.partition(":")
    path = os.path.expanduser(path)
    if (kind == "embedded" and config.init != "embedded") or (kind in ("checkpoint", "pretrained") and not path):
        kind = ""  # "embedded:x", "checkpoint:" and "pretrained:" are malformed: refused below
    if kind in ("checkpoint", "embedded"):
        if kind == "embedded":
            from bgm_jax.pretrained import load_embedded

            path = "the embedded model"
            source_config, source = load_embedded()
        else:
            from bgm_jax.checkpoint import load_model

            source_config, source = load_model(path)
        if source_config["backbone"] != config.backbone:
            raise InputError(f"init {path}: a {source_config['backbone']} checkpoint cannot start a "
                             f"{config.backbone} run; set backbone={source_config['backbone']}")
        report = [f"initialisation: {path} ({source_config['model_type']})"]
        for collection in ("params", "batch_stats"):
            for module, value in source[collection].items():
                if module in variables[collection]:
                    variables[collection][module] = jax.tree_util.tree_map(jnp.asarray, value)
                    report.append(f"  {collection}/{module}: loaded")
        missing = sorted(set(variables["params"]) - set(source["params"]))
        report += [f"  {m}: fresh initialisation (not in the checkpoint)" for m in missing]
        return variables, report
    if kind == "pretrained":
        from bgm_jax.convert import init_from_pretrained  # torchvision ImageNet / DeepLabV3 .pth

        variables, lines = init_from_pretrained(path, variables)
        return variables, [f"initialisation: {path}", *lines]
    raise InputError(f"init {config.init!r}: expected 'checkpoint:DIR', 'pretrained:FILE.pth' or 'embedded'")


# ------------------------------------------------------------------------------------------------------
# Data


# Datasets that need no source folder (procedural, or from photos shipped inside a package): built on
# first use.
BUILT_ON_FIRST_USE = ("synthetic_matting", "photo_matting")
ORIGINAL_BACKBONE_SCALE = 0.25  # the original's refine training (and the paper's HD recommendation)


def open_source(name: str, split: str, data_dir: str):
    """A prepared dataset split; a procedural dataset (BUILT_ON_FIRST_USE) is built on first use."""
    from bgm_jax.datasets import catalog

    data_dir = os.path.expanduser(data_dir)
    try:
        return catalog.open_split(name, split, data_dir)
    except (InputError, FileNotFoundError):
        if not name.startswith(BUILT_ON_FIRST_USE):
            raise InputError(
                f"dataset {name!r} is not prepared under {data_dir}; prepare it with "
                f"`bgm-jax build-dataset {name} --data-dir {data_dir} --manual-dir ...`"
            ) from None
        catalog.build_dataset(name, data_dir)
        return catalog.open_split(name, split, data_dir)


def load_validation(config: TrainConfig) -> dict[str, np.ndarray] | None:
    """Up to ``valid_count`` validation samples fitted to ``valid_size``, composited over their own
    backgrounds without augmentation: the same images at every validation."""
    if not config.valid_data:
        return None
    from bgm_jax.datasets import images

    source = open_source(config.valid_data, config.valid_split, config.data_dir)
    if config.valid_data == config.background_data:
        backgrounds = source
    else:
        try:
            backgrounds = open_source(config.background_data, config.valid_split, config.data_dir)
        except InputError:  # a background folder without split subfolders has one split: the training one
            backgrounds = open_source(config.background_data, config.background_split, config.data_dir)
            if jax.process_index() == 0:
                print(f"validation: {config.background_data} has no {config.valid_split!r} split; "
                      f"composited over its {config.background_split!r} backgrounds")
    out = {"src": [], "bgr": [], "pha": []}
    for i in range(min(config.valid_count, len(source))):
        record = source[i]
        fgr, _ = images.decode_to_canvas(record["fgr"], "RGB", config.valid_size, "cover")
        size = images.image_size(record["fgr"]) if isinstance(record["fgr"], bytes) else None
        pha, _ = images.decode_to_canvas(record["pha"], "L", config.valid_size, "cover", size=size)
        bgr, _ = images.decode_to_canvas(backgrounds[i % len(backgrounds)]["bgr"], "RGB", config.valid_size, "cover")
        a = pha.astype(np.float32) / 255
        out["src"].append(a * fgr / 255 + (1 - a) * bgr / 255)
        out["bgr"].append(bgr.astype(np.float32) / 255)
        out["pha"].append(a)
    return {k: np.stack(v).astype(np.float32) for k, v in out.items()}


class Validation:
    """The held-out images and one compiled prediction function for the whole run.

    Every validation and every image grid reuses the same jitted function on batches of one shape
    (the last batch is padded), so validation compiles once per run, not at every call.
    """

    def __init__(self, eval_model, valid: dict[str, np.ndarray], batch_size: int = 4):
        self.valid = valid
        self.batch_size = batch_size
        self._predict = jax.jit(lambda variables, src, bgr: eval_model.apply(variables, src, bgr)[:2])

    def predict(self, variables, count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Predicted (alpha, foreground) of the first ``count`` (default all) samples, float32 numpy."""
        n = len(self.valid["src"]) if count is None else min(count, len(self.valid["src"]))
        pha, fgr = [], []
        for start in range(0, n, self.batch_size):
            stop = min(start + self.batch_size, n)
            pad = [(0, self.batch_size - (stop - start))] + [(0, 0)] * 3
            src, bgr = (np.pad(self.valid[k][start:stop], pad) for k in ("src", "bgr"))
            out = self._predict(variables, src, bgr)
            pha.append(np.asarray(out[0], np.float32)[: stop - start])
            fgr.append(np.asarray(out[1], np.float32)[: stop - start])
        return np.concatenate(pha), np.concatenate(fgr)

    def scores(self, variables) -> dict[str, float]:
        """Mean whole-image SAD and MSE of the predicted alpha, in the paper's units (SAD / 1000, MSE x 1e3),
        computed by ``bgm_jax.evaluation.metrics`` with every pixel in the unknown region."""
        from bgm_jax.evaluation import metrics

        pha, _ = self.predict(variables)
        sad, mse = [], []
        for pred, true in zip(pha[..., 0], self.valid["pha"][..., 0]):
            everywhere = np.full(true.shape, metrics.UNKNOWN, np.uint8)
            sad.append(metrics.sad(pred, true, everywhere))
            mse.append(metrics.mse(pred, true, everywhere))
        return {"valid_sad": float(np.mean(sad)), "valid_mse": float(np.mean(mse))}

    def grid(self, variables, count: int = 4) -> list[list[np.ndarray]]:
        """Rows of source, background, true alpha, predicted alpha, foreground, composite over green."""
        pha, fgr = self.predict(variables, count)
        green = np.array([120, 255, 155], np.float32) / 255
        grey = lambda a: np.repeat(a, 3, axis=-1)  # noqa: E731
        v = self.valid
        return [[v["src"][i], v["bgr"][i], grey(v["pha"][i]), grey(pha[i]), fgr[i],
                 pha[i] * fgr[i] + (1 - pha[i]) * green] for i in range(len(pha))]


# ------------------------------------------------------------------------------------------------------
# Logging


class MetricWriter:
    """Scalars to ``metrics.jsonl`` (always) and TensorBoard (when tensorboardX is installed); images as
    PNG grids under ``images/`` and in TensorBoard."""

    def __init__(self, workdir: Path, enabled: bool = True):
        self.enabled = enabled
        self.workdir = workdir
        self.tb = None
        if enabled:
            try:
                from tensorboardX import SummaryWriter

                self.tb = SummaryWriter(str(workdir / "tensorboard"))
            except ImportError:
                pass

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        with open(self.workdir / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": step, **{k: float(v) for k, v in values.items()}}) + "\n")
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(k, float(v), step)

    def image_grid(self, step: int, rows: list[np.ndarray]) -> None:
        """``rows`` of HxWx3 float images in [0, 1], one row per sample."""
        if not self.enabled:
            return
        from bgm_jax.io.outputs import to_uint8, write_image

        grid = np.concatenate([np.concatenate(row, axis=1) for row in rows], axis=0)
        write_image(self.workdir / "images" / f"step_{step:08d}.png", to_uint8(grid), overwrite=True)
        if self.tb is not None:
            self.tb.add_image("valid/src_bgr_true_pred_fgr_com", grid, step, dataformats="HWC")

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# ------------------------------------------------------------------------------------------------------
# The loop


def setup_distributed(config: TrainConfig) -> None:
    """Join a multi-process run. On CPU, collectives across processes need gloo (GPU/TPU ignore this)."""
    if config.coordinator_address:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(config.coordinator_address, config.num_processes, config.process_id)


def unreplicate(tree):
    """The first replica of each leaf of a pmap state, read from device 0's own shard: indexing the sharded
    array itself runs a program over every device (on CPUs it once aborted a test worker)."""

    def first(x):
        if isinstance(x, jax.Array) and len(x.addressable_shards) > 1:
            x = x.addressable_shards[0].data
        return x[0]

    return jax.tree_util.tree_map(first, tree)


def train_and_evaluate(config: TrainConfig, workdir: str | os.PathLike, *, progress: bool = True,
                       stop: StopSignal | None = None) -> dict[str, Any]:
    """Train per ``config`` in ``workdir``; returns the final metrics (and validation before/after).

    With ``stop`` (an installed ``train.stopping.StopSignal``), a SIGINT/SIGTERM ends the run between
    steps: the latest state is checkpointed (the save waited for) and the result has ``"stopped"``:
    the signal, the step and the checkpoint's folder (None when no step finished in this run and there
    was nothing new to save). No model is exported then.
    """
    from tqdm import tqdm

    from bgm_jax.checkpoint import save_model
    from bgm_jax.datasets.pipeline import PipelineConfig, matting_pipeline

    setup_distributed(config)
    workdir = Path(workdir).expanduser().absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    is_lead = jax.process_index() == 0
    writer = MetricWriter(workdir, enabled=is_lead)
    use_pmap = config.parallelism == "pmap"
    local_devices = jax.local_device_count()

    fg_source = open_source(config.train_data, config.train_split, config.data_dir)
    bg_source = open_source(config.background_data, config.background_split, config.data_dir)
    plan = config.plan(len(fg_source), len(bg_source), jax.device_count())
    num_steps = plan.num_steps
    if is_lead:
        print(plan.describe(config, jax.device_count()))

    model = build_model(config, axis_name="batch" if use_pmap else None)
    eval_model = build_model(config, train=False)
    variables, init_report = initial_variables(config, build_model(config), jax.random.key(config.seed))
    tx = make_optimizer(
        config.learning_rates(), schedule=config.schedule, total_steps=num_steps,
        warmup_steps=config.warmup_steps, grad_clip_norm=config.grad_clip_norm, params=variables["params"],
    )
    dynamic_scale = None
    if config.precision == "float16":
        from flax.training.dynamic_scale import DynamicScale

        dynamic_scale = DynamicScale()
    state = TrainState.create(variables["params"], variables["batch_stats"], tx,
                              jax.random.key(config.seed + 1), dynamic_scale, ema_decay=config.ema_decay)

    checkpoints = Checkpoints(workdir, config.keep_checkpoints, config.to_dict())
    data_state = None
    restored = checkpoints.restore_latest(state)
    if restored is not None:
        state, data_state = restored
        init_report = [f"resumed from step {int(state.step)} in {workdir / 'checkpoints'}"]
    if is_lead:
        for line in init_report:
            print(line)

    # Every image is stored at its own resolution (shrunk only to fit the canvas), so the augmentation's
    # single warp reads it at full detail: see TrainConfig.sample_size.
    pipeline = matting_pipeline(fg_source, bg_source, PipelineConfig(
        canvas=tuple(config.canvas), per_device_batch=plan.per_device_batch, seed=config.seed,
        num_threads=config.data_threads, fgr_fit="native", bgr_fit="native",
    ))
    batches = iter(pipeline)
    if data_state is not None:
        batches.set_state(data_state)
    valid = load_validation(config)

    augment = augment_config(config)
    loss_fn = make_loss(config.stage, config.soft_weight, config.thin_weight)
    if use_pmap:
        state = jax.tree_util.tree_map(lambda x: jnp.stack([x] * local_devices), state)
        compiled = {}

        def step_fn(crop):
            if crop not in compiled:
                fn = functools.partial(train_step, model=model, prepare=make_prepare(augment, crop),
                                       loss_fn=loss_fn, axis_name="batch")
                compiled[crop] = jax.pmap(fn, axis_name="batch", donate_argnums=(0,))
            return compiled[crop]

        def put(batch):
            return batch
    else:
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

        mesh = Mesh(np.array(jax.devices()), ("batch",))
        replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P("batch"))
        state = jax.device_put(state, replicated)
        compiled = {}

        def step_fn(crop):
            if crop not in compiled:
                fn = functools.partial(train_step, model=model, prepare=make_prepare(augment, crop),
                                       loss_fn=loss_fn, axis_name=None)
                compiled[crop] = jax.jit(fn, donate_argnums=(0,))
            return compiled[crop]

        def put(batch):
            flat = {k: v.reshape(-1, *v.shape[2:]) for k, v in batch.items()}
            return {k: jax.make_array_from_process_local_data(sharded, v) for k, v in flat.items()}

    def host_state():
        return unreplicate(state) if use_pmap else state

    def variables_of(s):
        """The weights the run exports: the moving average when it keeps one, else the raw weights."""
        return s.ema if s.ema is not None else raw_variables_of(s)

    def raw_variables_of(s):
        return {"params": s.params, "batch_stats": s.batch_stats}

    def validate(s) -> dict[str, float]:
        scores = validation.scores(variables_of(s))
        if s.ema is not None:
            scores.update({f"raw_{k}": v for k, v in validation.scores(raw_variables_of(s)).items()})
        return scores

    validation = Validation(eval_model, valid) if valid is not None else None
    agreement = StopAgreement(stop)
    results: dict[str, Any] = {}
    start_step = int(host_state().step)
    if validation is not None and start_step == 0:
        results["valid_before"] = validate(host_state())
        writer.scalars(0, results["valid_before"])

    keys_wanted = ("fgr", "pha", "bgr", "fgr_valid_hw", "bgr_valid_hw")
    timer, images_seen = time.perf_counter(), 0
    bar = tqdm(total=num_steps, initial=start_step, disable=not (progress and is_lead), unit="step")
    metrics, stopped_by = None, 0
    for step in range(start_step, num_steps):
        stopped_by = agreement.signal_to_stop(step)  # the same answer on every process
        if stopped_by:
            break
        raw = next(batches)
        batch = put({k: raw[k] for k in keys_wanted})
        state, metrics = step_fn(crop_for_step(config, step))(state, batch)
        images_seen += config.global_batch
        done = step + 1
        bar.update(1)
        if done % config.log_every == 0 or done == num_steps:
            values = {k: float(np.mean(v)) for k, v in jax.device_get(metrics).items()}
            now = time.perf_counter()
            values["images_per_second"] = images_seen / max(now - timer, 1e-9)
            for group, lr in jax.device_get(learning_rates(host_state().opt_state)).items():
                values[f"learning_rate_{group}"] = float(np.mean(lr))
            timer, images_seen = now, 0
            writer.scalars(done, values)
            bar.set_postfix(loss=f"{values['loss']:.4f}")
            results["train"] = values
        eval_metrics = None
        if validation is not None and (done % config.eval_every == 0 or done == num_steps):
            eval_metrics = validate(host_state())
            writer.scalars(done, eval_metrics)
            results["valid"] = eval_metrics
        if validation is not None and (done % config.image_every == 0 or done == num_steps):
            writer.image_grid(done, validation.grid(variables_of(host_state())))
        if done % config.checkpoint_every == 0 or done == num_steps:
            checkpoints.save(done, jax.device_get(host_state()), batches.get_state(), eval_metrics)
    bar.close()
    if stopped_by:
        # device_get waits for the step in flight; the pipeline's state is after the batches consumed.
        stopped_at = jax.device_get(host_state())
        step = int(stopped_at.step)
        folder = None
        if step > start_step and checkpoints.latest_step() != step:
            checkpoints.save(step, stopped_at, batches.get_state())
        if checkpoints.latest_step() == step:
            folder = str(workdir / "checkpoints" / str(step))
        checkpoints.close()  # waits until the save is on disk, on every process
        writer.close()
        results.update(step=step, stopped={"signal": stopped_by, "step": step, "checkpoint": folder})
        return results
    checkpoints.close()

    final = jax.device_get(host_state())
    model_config = export_config(config, int(final.step))
    # Every process takes part in an Orbax save (they synchronise; the primary one writes).
    save_model(workdir / "export", variables_of(final), model_config, overwrite=True)
    if is_lead:
        with open(workdir / "results.json", "w") as f:
            json.dump(results, f, indent=2)
    writer.close()
    results["step"] = int(final.step)
    return results
