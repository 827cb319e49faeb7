"""How bright the strands are: the alpha of thin structures in a config's augmented training samples, in the
stored training records and in the held-out test records.

    python -m train.strand_stats --config train/configs/photo_refine20_mobilenetv2.py --data-dir ~/bgm-jax-data

A model learns how opaque a thin line is from the samples it trains on; the test images are never warped.
For ``--records`` records of each split, prints the share of strand pixels (``train.losses.thin_band``:
the foreground a 5x5 opening removes, grown by a pixel) above alpha 0.6 and 0.8, and the same for all soft
pixels (0.06 < alpha < 0.96), for: the stored training records; the config's augmentation of them
(``--keys`` draws each, at the config's largest crop); the same with the foreground affine off
(``fgr_affine=0``); and the stored test records. The background plays no part in these figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import numpy as np

from bgm_jax.errors import InputError


def load_records(dataset: str, split: str, data_dir: str, count: int) -> tuple[np.ndarray, ...]:
    """(fgr, pha, bgr) uint8 arrays of the first ``count`` records, cut to the foreground's size."""
    from bgm_jax.datasets.images import decode
    from train.loop import open_source

    source = open_source(dataset, split, data_dir)
    count = min(count, len(source))
    fgr, pha, bgr = [], [], []
    for index in range(count):
        record = source[index]
        f = decode(record["fgr"], "RGB")
        h, w = f.shape[:2]
        b = decode(record["bgr"], "RGB")
        if b.shape[0] < h or b.shape[1] < w:
            raise InputError(f"{dataset} {split} record {index}: background {b.shape[:2]} smaller than the "
                             f"foreground {(h, w)}; rebuild the dataset")
        fgr.append(f)
        pha.append(decode(record["pha"], "L")[..., None])
        bgr.append(b[:h, :w])
    return np.stack(fgr), np.stack(pha), np.stack(bgr)


def strand_shares(pha: np.ndarray) -> dict[str, float]:
    """Shares of strand pixels and of soft pixels above alpha 0.6 and 0.8; ``pha`` (N, H, W, 1) in [0, 1]."""
    import jax.numpy as jnp

    from train.losses import thin_band

    pha = np.asarray(pha, np.float32)
    strands = pha[np.asarray(thin_band(jnp.asarray(pha))) > 0]
    soft = pha[(pha > 0.06) & (pha < 0.96)]
    return {"strand_px": int(strands.size), "strand_above_0.6": float(np.mean(strands > 0.6)),
            "strand_above_0.8": float(np.mean(strands > 0.8)), "soft_above_0.6": float(np.mean(soft > 0.6)),
            "soft_above_0.8": float(np.mean(soft > 0.8))}


def augmented(fgr, pha, bgr, augment_config, crop_hw, keys: int) -> np.ndarray:
    """The alpha targets of ``keys`` augmentations of the batch."""
    import jax

    from train import augment

    outs = [augment.augment_batch(jax.random.key(k), fgr, pha, bgr, augment_config, crop_hw=crop_hw)["pha"]
            for k in range(keys)]
    return np.concatenate([np.asarray(o) for o in outs])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.strand_stats", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="training config file (its augmentation is measured)")
    parser.add_argument("--data-dir", default="~/bgm-jax-data")
    parser.add_argument("--records", type=int, default=48, help="records of each split")
    parser.add_argument("--keys", type=int, default=4, help="augmentations of each training record")
    args = parser.parse_args(argv)
    if args.records < 1 or args.keys < 1:
        parser.error("--records and --keys must be >= 1")

    from train import augment
    from train.config import load_config
    from train.loop import augment_config

    try:
        config = load_config(args.config)
        preset = augment_config(config)
        data_dir = os.path.expanduser(args.data_dir)
        fgr, pha, bgr = load_records(config.train_data, config.train_split, data_dir, args.records)
        _, test_pha, _ = load_records(config.valid_data or config.train_data, "test", data_dir, args.records)
    except InputError as e:
        print(f"strand_stats: error: {e}", file=sys.stderr)
        return 2
    crop_hw = None
    if config.crop_size is not None:
        largest = int(augment.crop_sizes(preset)[-1])
        crop_hw = (largest, largest)
    rows = [
        ("training records, stored", pha / 255.0),
        (f"training samples, {args.config}", augmented(fgr, pha, bgr, preset, crop_hw, args.keys)),
        ("training samples, foreground affine off",
         augmented(fgr, pha, bgr, dataclasses.replace(preset, fgr_affine_p=0.0), crop_hw, args.keys)),
        ("test records, stored", test_pha / 255.0),
    ]
    print(f"{len(fgr)} records of each split; crop {crop_hw}; {args.keys} draws each\n")
    print("| alpha of | strand pixels | strands > 0.6 | strands > 0.8 | soft > 0.6 | soft > 0.8 |")
    print("|---|---|---|---|---|---|")
    for name, values in rows:
        s = strand_shares(values)
        print(f"| {name} | {s['strand_px']} | {s['strand_above_0.6']:.1%} | {s['strand_above_0.8']:.1%} | "
              f"{s['soft_above_0.6']:.1%} | {s['soft_above_0.8']:.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
