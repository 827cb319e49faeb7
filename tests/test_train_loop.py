"""The training application: exact resume, configs and their errors, what a run writes."""

import dataclasses
import json

import jax
import numpy as np
import pytest
from conftest import xla_flags

from bgm_jax.errors import InputError
from train.config import TrainConfig, apply_overrides, load_config
from train.loop import train_and_evaluate


@pytest.fixture(scope="module")
def compilation_cache(tmp_path_factory):
    # The three runs below compile the same step; the persistent cache lets later runs reuse it. Only
    # compilations of a second or more are cached (the training step, not every small eager op: reading
    # thousands of tiny XLA:CPU executables back is slow and once aborted a worker), and the settings are
    # restored for the worker's later tests.
    previous = {name: getattr(jax.config, name) for name in
                ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")}
    jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("xla")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    yield
    for name, value in previous.items():
        jax.config.update(name, value)


def small_config(tmp_path, **changes) -> TrainConfig:
    config = TrainConfig(
        stage="base",
        backbone="mobilenetv2",
        data_dir=str(tmp_path / "data"),
        train_data="synthetic_matting/small",
        background_data="synthetic_matting/small",
        sample_size=(64, 64),
        canvas=(64, 64),
        global_batch=4,
        augment="base",
        crop_size=(48, 63),
        crop_sizes_per_side=1,
        lr_backbone=1e-3,
        lr_aspp=1e-3,
        lr_decoder=1e-3,
        num_steps=6,
        parallelism="pmap",
        log_every=1,
        eval_every=1000,
        image_every=1000,
        checkpoint_every=3,
        keep_checkpoints=2,
        data_threads=1,
    )
    return config.replace(**changes)


def leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, compilation_cache):
    """With a moving average of the weights (``ema_decay``; runs without one resume bit for bit in
    test_train_stop): the average is checkpointed and resumed, the export is the average and not the raw
    weights, and validation scores both (``valid_*``, which the best checkpoint follows, and ``raw_valid_*``)."""
    import orbax.checkpoint as ocp

    from train.checkpointing import Checkpoints

    config = small_config(tmp_path, ema_decay=0.5, valid_data="synthetic_matting/small", valid_size=(64, 64),
                          valid_count=2)
    straight = train_and_evaluate(config, tmp_path / "straight", progress=False)
    train_and_evaluate(config.replace(num_steps=3), tmp_path / "resumed", progress=False)
    resumed = train_and_evaluate(config, tmp_path / "resumed", progress=False)
    assert straight["step"] == resumed["step"] == 6

    from bgm_jax.checkpoint import load_model

    _, a = load_model(tmp_path / "straight" / "export")
    _, b = load_model(tmp_path / "resumed" / "export")
    for x, y in zip(leaves(a), leaves(b)):
        np.testing.assert_array_equal(x, y)
    log_a = [json.loads(l) for l in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    log_b = [json.loads(l) for l in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    loss_a = {r["step"]: r["loss"] for r in log_a if "loss" in r}
    loss_b = {r["step"]: r["loss"] for r in log_b if "loss" in r}
    assert loss_a == loss_b  # the same batches, keys and crops at every step
    assert sorted(Checkpoints(tmp_path / "resumed", 2, {}).latest.all_steps()) == [3, 6]

    with ocp.CheckpointManager(tmp_path / "straight" / "checkpoints") as manager:
        saved = manager.restore(6, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
    for name in ("params", "batch_stats"):
        for x, y in zip(leaves(a[name]), leaves(saved["ema"][name])):
            np.testing.assert_array_equal(x, y)
    gap = max(float(np.abs(x - y).max()) for x, y in zip(leaves(a["params"]), leaves(saved["params"])))
    assert gap > 1e-6  # the raw weights went on without the average
    final = log_a[-1]
    assert final["step"] == 6 and {"valid_sad", "raw_valid_sad"} <= set(final)
    # at step 6 the two scored alike on these tiny images (seen once); at step 3, the first leg's end, they differ
    third = [r for r in log_b if r["step"] == 3 and "valid_sad" in r][0]
    assert third["valid_sad"] != third["raw_valid_sad"]
    assert straight["valid"] == resumed["valid"] == {
        k: final[k] for k in ("valid_sad", "valid_mse", "raw_valid_sad", "raw_valid_mse")}


def test_config_files_load_and_overrides_are_typed(tmp_path):
    config = load_config("train/configs/tiny.py")
    assert config.backbone == "mobilenetv2" and config.stage == "base"
    changed = apply_overrides(config, ["lr_backbone=5e-5", "canvas=96,80", "crop_size=none", "num_steps=7"])
    assert changed.lr_backbone == 5e-5 and changed.canvas == (96, 80)
    assert changed.crop_size is None and changed.num_steps == 7
    for name in ("stage1_base_videomatte", "stage2_refine_videomatte", "stage3_refine_photomatte",
                 "stage4_refine_distinctions"):
        stage = load_config(f"train/configs/{name}.py")
        assert set(stage.learning_rates()) == ({"backbone", "aspp", "decoder"} |
                                               ({"refiner"} if stage.stage == "refine" else set()))


def test_bad_config_input_names_the_problem(tmp_path):
    config = load_config("train/configs/tiny.py")
    with pytest.raises(InputError, match="expected NAME=VALUE"):
        apply_overrides(config, ["learning_rate=1"])
    with pytest.raises(InputError, match="stage must be"):
        config.replace(stage="final")
    with pytest.raises(InputError, match="no such config file"):
        load_config(tmp_path / "missing.py")
    with pytest.raises(InputError, match="fgr_scale must be"):
        config.replace(fgr_scale=(1.0, 0.5))
    with pytest.raises(InputError, match="fgr_scale must be"):
        config.replace(fgr_scale=0.5)
    with pytest.raises(InputError, match="misalign_affine must be"):
        config.replace(misalign_affine=1.5)
    with pytest.raises(InputError, match="fgr_affine must be"):
        config.replace(fgr_affine=2)
    with pytest.raises(InputError, match="thin_weight must be >= 0"):
        config.replace(thin_weight=-1.0)


def test_fgr_scale_overrides_only_the_foreground_scale_of_the_preset():
    from train.loop import augment_config

    refine = load_config("train/configs/tiny.py").replace(stage="refine", augment="refine")
    assert augment_config(refine).fgr_affine.scale == (0.3, 1.0)  # the original's refine preset
    near_native = apply_overrides(refine, ["fgr_scale=0.75,1"])
    assert near_native.fgr_scale == (0.75, 1.0)
    changed, kept = augment_config(near_native), augment_config(refine)
    assert changed.fgr_affine.scale == (0.75, 1.0)
    assert changed.fgr_affine.rotation == kept.fgr_affine.rotation and changed.bgr_affine == kept.bgr_affine


def test_fgr_affine_overrides_only_the_share_of_warped_foregrounds():
    from train.loop import augment_config

    refine = load_config("train/configs/tiny.py").replace(stage="refine", augment="refine")
    assert augment_config(refine).fgr_affine_p == 1.0  # the original: every foreground warped
    sharp = apply_overrides(refine, ["fgr_affine=0.25"])
    assert sharp.fgr_affine == 0.25
    changed, kept = augment_config(sharp), augment_config(refine)
    assert changed.fgr_affine_p == 0.25
    assert dataclasses.replace(changed, fgr_affine_p=1.0) == kept
    assert apply_overrides(sharp, ["fgr_affine=none"]).fgr_affine is None


def test_misalign_affine_overrides_only_the_share_of_moved_plates():
    from train.loop import augment_config

    refine = load_config("train/configs/tiny.py").replace(stage="refine", augment="refine")
    assert augment_config(refine).misalign_affine_p == 0.3  # paper and original code
    still = apply_overrides(refine, ["misalign_affine=0"])
    assert still.misalign_affine == 0.0
    changed, kept = augment_config(still), augment_config(refine)
    assert changed.misalign_affine_p == 0.0
    assert changed.misalign_affine == kept.misalign_affine and changed.misalign_colour_p == kept.misalign_colour_p
    assert apply_overrides(still, ["misalign_affine=none"]).misalign_affine is None


def test_an_export_records_a_backbone_scale_only_when_it_is_not_the_originals():
    from bgm_jax.checkpoint import config_problem
    from train.loop import export_config

    refine = load_config("train/configs/tiny.py").replace(stage="refine", augment="refine")
    assert "backbone_scale" not in export_config(refine, 7)  # the paper's per-resolution rule applies
    half = export_config(refine.replace(backbone_scale=0.5), 7)
    assert half["backbone_scale"] == 0.5 and half["source"] == "train.main step 7"
    assert config_problem(half) is None
    assert "backbone_scale" in config_problem({**half, "backbone_scale": 0.7})  # a damaged config is refused
    assert "backbone_scale" in config_problem({**half, "backbone_scale": "half"})
    assert "backbone_scale" not in export_config(refine.replace(stage="base", backbone_scale=0.5), 7)
    with pytest.raises(InputError, match="backbone_scale must be"):
        refine.replace(backbone_scale=0.75)


def test_a_dataset_that_is_not_prepared_says_how_to_prepare_it(tmp_path):
    config = small_config(tmp_path, train_data="videomatte240k")
    with pytest.raises(InputError, match="bgm-jax build-dataset videomatte240k"):
        train_and_evaluate(config, tmp_path / "run", progress=False)


MULTI_HOST_SCRIPT = """
import json, sys
from train.config import TrainConfig
from train.loop import train_and_evaluate
fields = json.loads(sys.argv[1])
config = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
result = train_and_evaluate(config, sys.argv[2], progress=False)
print("RESULT", json.dumps(result["train"]))
"""


def test_two_local_processes_train_as_one_global_batch(tmp_path):
    """Two CPU processes (gloo collectives), one device and 2 examples each, sharing one workdir, against
    this process (4 fake devices, 1 example each) on the same global batch. The hosts take interleaved
    items, so the global batch holds the same examples in another order; with identity augmentation the
    first step's loss (same initial weights, dropout off: its mask follows array order) must agree."""
    import os
    import socket
    import subprocess
    import sys

    from bgm_jax.datasets import catalog

    catalog.build_dataset("synthetic_matting/small", tmp_path / "data")
    # Global batch 4: 2 hosts x 1 device x 2 here, 4 fake devices x 1 in the single-process run.
    config = small_config(tmp_path, augment="identity", crop_size=None, sample_size=(32, 32), canvas=(32, 32),
                          global_batch=4, aspp_dropout=0.0, num_steps=1, parallelism="jit", checkpoint_every=1000)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "XLA_FLAGS": xla_flags(1), "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.getcwd(), "PYTHONUNBUFFERED": "1"}
    base = {k: list(v) if isinstance(v, tuple) else v for k, v in config.to_dict().items()}
    hosts = []
    for i in range(2):
        fields = {**base, "coordinator_address": f"127.0.0.1:{port}", "num_processes": 2, "process_id": i}
        hosts.append(subprocess.Popen(
            [sys.executable, "-c", MULTI_HOST_SCRIPT, json.dumps(fields), str(tmp_path / "multi")], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    single = train_and_evaluate(config, tmp_path / "single", progress=False)
    outputs = [p.communicate(timeout=900)[0] for p in hosts]
    for p, out in zip(hosts, outputs):
        assert p.returncode == 0, out[-3000:]
    losses = [json.loads(out.split("RESULT", 1)[1].splitlines()[0])["loss"] for out in outputs]
    assert losses[0] == losses[1]  # both hosts see the globally averaged loss
    np.testing.assert_allclose(losses[0], single["train"]["loss"], rtol=1e-5)
    assert (tmp_path / "multi" / "export").is_dir()


def test_refine_stage_starts_from_a_base_checkpoint_with_a_fresh_refiner(tmp_path):
    import jax.numpy as jnp

    from bgm_jax.checkpoint import save_model
    from train.loop import build_model, initial_variables

    base_config = small_config(tmp_path)
    x = jnp.zeros((1, 64, 64, 3))
    base_vars = jax.jit(build_model(base_config).init)(jax.random.key(7), x, x)
    save_model(tmp_path / "base", base_vars, {"model_type": "base", "backbone": "mobilenetv2"})

    refine_config = small_config(tmp_path, stage="refine", init=f"checkpoint:{tmp_path / 'base'}")
    variables, report = initial_variables(refine_config, build_model(refine_config), jax.random.key(0))
    for module in ("backbone", "aspp", "decoder"):
        for a, b in zip(leaves(base_vars["params"][module]), leaves(variables["params"][module])):
            np.testing.assert_array_equal(a, b)
    assert "refiner" in variables["params"]
    assert any("refiner: fresh initialisation" in line for line in report)
    with pytest.raises(InputError, match="cannot start a resnet50 run"):
        initial_variables(refine_config.replace(backbone="resnet50"), build_model(refine_config), jax.random.key(0))


@pytest.mark.parametrize("init", ["embedded:runs/x", "checkpoint:", "pretrained:", "imagenet:x.pth"])
def test_a_malformed_init_is_refused_with_the_accepted_forms(tmp_path, init):
    from train.loop import build_model, initial_variables

    config = small_config(tmp_path, stage="refine", init=init)
    with pytest.raises(InputError, match=r"expected 'checkpoint:DIR', 'pretrained:FILE.pth' or 'embedded'"):
        initial_variables(config, build_model(config), jax.random.key(0))

