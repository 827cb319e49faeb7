"""Images/second of one training step (augmentation + forward + backward + Adam), random weights.

    python benchmarks/bench_train_step.py --stage base --backbone resnet50 --crop 512 --batch 4
    python benchmarks/bench_train_step.py --stage refine --backbone resnet50 --crop 2048 --batch 1
    python benchmarks/bench_train_step.py --stage refine --backbone mobilenetv2 --backbone-scale 0.5 --crop 384x512 \
        --refine-pixels 48000 --refine-strategy patches,hybrid     # the embedded model's stages 2t-2y

The refiner's training strategy (``refiner.train_patch_strategy``; "auto" by default) can be forced, several
comma-separated, timed interleaved.

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
    parser.add_argument("--crop", default="512", help="crop side, or HEIGHTxWIDTH (the canvas is the same)")
    parser.add_argument("--backbone-scale", type=float, default=0.25)
    parser.add_argument("--refine-pixels", type=int, default=80_000, help="refined pixels per image (sampling)")
    parser.add_argument("--refine-strategy", default="auto",
                        help="the refiner's training strategy: auto, patches or hybrid; several comma-separated")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    bad = [s for s in args.refine_strategy.split(",") if s not in ("auto", "patches", "hybrid")]
    if bad:
        parser.error(f"--refine-strategy: unknown {', '.join(bad)}; use auto, patches or hybrid")

    height, _, width = args.crop.partition("x")
    crop = (int(height), int(width or height))
    config = TrainConfig(stage=args.stage, backbone=args.backbone, precision=args.precision,
                         augment=args.stage, crop_size=None, canvas=crop, backbone_scale=args.backbone_scale,
                         refine_sample_pixels=args.refine_pixels)
    base_model = build_model(config)
    x = np.zeros((1, 64, 64, 3), np.float32)
    variables = jax.jit(base_model.init)(jax.random.key(0), x, x)
    tx = make_optimizer(config.learning_rates(), params=variables["params"])
    rng = np.random.default_rng(0)
    shape = (args.batch, *crop)
    batch = {"fgr": rng.integers(0, 256, shape + (3,), np.uint8), "pha": rng.integers(0, 256, shape + (1,), np.uint8),
             "bgr": rng.integers(0, 256, shape + (3,), np.uint8)}
    strategies = args.refine_strategy.split(",") if args.stage == "refine" else ["-"]
    steps, compile_s = {}, {}
    for strategy in strategies:
        model = base_model.clone(refine_strategy=strategy) if args.stage == "refine" else base_model
        steps[strategy] = jax.jit(functools.partial(train_step, model=model,
                                                    prepare=make_prepare(augment_config(config), None),
                                                    loss_fn=make_loss(config.stage)))
        state = TrainState.create(variables["params"], variables["batch_stats"], tx, jax.random.key(1))
        start = time.perf_counter()
        jax.block_until_ready(steps[strategy](state, batch))
        compile_s[strategy] = time.perf_counter() - start
    times = {strategy: [] for strategy in strategies}
    state = TrainState.create(variables["params"], variables["batch_stats"], tx, jax.random.key(1))
    for _ in range(args.repeats):
        for strategy in strategies:  # interleaved, from the same state
            start = time.perf_counter()
            jax.block_until_ready(steps[strategy](state, batch))
            times[strategy].append(time.perf_counter() - start)
    for strategy in strategies:
        median = statistics.median(times[strategy])
        print(json.dumps({**vars(args), "refine_strategy": strategy,
                          "compile_and_first_step_s": round(compile_s[strategy], 1), "step_s": round(median, 2),
                          "images_per_second": round(args.batch / median, 3), "load_average": os.getloadavg()}))


if __name__ == "__main__":
    main()
