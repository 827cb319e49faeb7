"""Train BackgroundMattingV2 models.

    python -m train.main --config train/configs/tiny.py --workdir runs/tiny
    python -m train.main --config train/configs/stage1_base_videomatte.py --workdir runs/stage1 --set precision=bfloat16

Run again with the same --workdir to resume exactly where it stopped. Ctrl-C (SIGINT) or SIGTERM
stops after the current step, saves a checkpoint, prints the command that resumes, and exits 130 / 143;
a second Ctrl-C exits at once without saving.
"""

from __future__ import annotations

import argparse
import shlex
import signal
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
    from train.stopping import StopSignal, exit_code

    with StopSignal() as stop:  # before the heavy imports: Ctrl-C never raises inside JAX
        try:
            from train.config import apply_overrides, load_config
            from train.loop import train_and_evaluate

            config = apply_overrides(load_config(args.config), args.set)
            results = train_and_evaluate(config, args.workdir, progress=not args.no_progress, stop=stop)
        except InputError as e:
            print(f"train: error: {e}", file=sys.stderr)
            return 2
    if "stopped" in results:
        stopped = results["stopped"]
        resume = "python -m train.main " + shlex.join(sys.argv[1:] if argv is None else argv)
        name = signal.Signals(stopped["signal"]).name
        if stopped["checkpoint"]:
            print(f"{name}: stopped after step {stopped['step']}, checkpoint saved in {stopped['checkpoint']}; "
                  f"resume with: {resume}", flush=True)
        else:
            print(f"{name}: stopped before the first step, nothing to save; start again with: {resume}", flush=True)
        return exit_code(stopped["signal"])
    for key in ("valid_before", "valid"):
        if key in results:
            print(f"{key}: " + ", ".join(f"{k} {v:.4f}" for k, v in results[key].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
