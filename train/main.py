"""Train BackgroundMattingV2 models.

    python -m train.main --config train/configs/tiny.py --workdir runs/tiny
    python -m train.main --config train/configs/stage1_base_videomatte.py --workdir runs/stage1 --set precision=bfloat16

Run again with the same --workdir to resume exactly where it stopped.
"""

from __future__ import annotations

import argparse
import sys

from bgm_jax.errors import InputError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.main", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="a config file, e.g. train/configs/tiny.py")
    parser.add_argument("--workdir", required=True, help="checkpoints, logs and the exported model go here")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a config field")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        from train.config import apply_overrides, load_config
        from train.loop import train_and_evaluate

        config = apply_overrides(load_config(args.config), args.set)
        results = train_and_evaluate(config, args.workdir, progress=not args.no_progress)
    except InputError as e:
        print(f"train: error: {e}", file=sys.stderr)
        return 2
    for key in ("valid_before", "valid"):
        if key in results:
            print(f"{key}: " + ", ".join(f"{k} {v:.4f}" for k, v in results[key].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
