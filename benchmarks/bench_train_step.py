"""Images/second of one training step (augmentation + forward + backward + Adam), random weights.

    python benchmarks/bench_train_step.py --stage base --backbone resnet50 --crop 512 --batch 4
    python benchmarks/bench_train_step.py --stage refine --backbone resnet50 --crop 2048 --batch 1

Compilation is timed separately; steps are timed to block_until_ready; median over --repeats.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from train.config import TrainConfig  # noqa: E402
from train.loop import augment_config, build_model, make_loss, make_prepare  # noqa: E402
from train.trainer import TrainState, make_optimizer, train_step  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", default="base", choices=["base", "refine"])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--crop", type=int, default=512, help="square crop side (the canvas is the same)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    config = TrainConfig(stage=args.stage, backbone=args.backbone, precision=args.precision,
                         augment=args.stage, crop_size=None, canvas=(args.crop, args.crop))
    model = build_model(config)
    x = np.zeros((1, 64, 64, 3), np.float32)
    variables = jax.jit(model.init)(jax.random.key(0), x, x)
    tx = make_optimizer(config.learning_rates(), params=variables["params"])
    state = TrainState.create(variables["params"], variables["batch_stats"], tx, jax.random.key(1))
    step = jax.jit(functools.partial(train_step, model=model, prepare=make_prepare(augment_config(config), None),
                                     loss_fn=make_loss(config.stage)), donate_argnums=(0,))
    rng = np.random.default_rng(0)
    shape = (args.batch, args.crop, args.crop)
    batch = {"fgr": rng.integers(0, 256, shape + (3,), np.uint8), "pha": rng.integers(0, 256, shape + (1,), np.uint8),
             "bgr": rng.integers(0, 256, shape + (3,), np.uint8)}
    start = time.perf_counter()
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(json.dumps({**vars(args), "compile_and_first_step_s": round(compile_s, 1), "step_s": round(median, 2),
                      "images_per_second": round(args.batch / median, 3), "load_average": os.getloadavg()}))


if __name__ == "__main__":
    main()
