"""Score existing matting predictions against ground truth with the paper's metrics.

Pairs every ground-truth matte under --gt with the prediction of the same relative path and name under
--pred (.png/.jpg/.jpeg, extension free), and prints SAD (/1e3), MSE (x1e3), Grad, Conn and, with
--fgr-pred/--fgr-gt, FG MSE (x1e3) per image and their means, all summed over the trimap's unknown
region. Exit status: 0 when every file was scored, 1 when some could not be (listed on stderr), 2 for
unusable input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bgm_jax.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", required=True, metavar="DIR", help="folder of predicted alpha mattes")
    parser.add_argument("--gt", required=True, metavar="DIR", help="folder of ground-truth alpha mattes")
    parser.add_argument(
        "--trimap",
        metavar="DIR",
        help="folder of trimaps (128 = unknown) paired like the mattes; default: generate them from the "
        "ground truth with --trimap-mode",
    )
    parser.add_argument("--fgr-pred", metavar="DIR", help="folder of predicted foregrounds (adds FG MSE)")
    parser.add_argument("--fgr-gt", metavar="DIR", help="folder of ground-truth foregrounds (adds FG MSE)")
    parser.add_argument(
        "--trimap-mode",
        choices=("closing", "band"),
        help="reading of the supplement's trimap recipe used to generate trimaps (default: closing); "
        "see docs/evaluation.md",
    )
    parser.add_argument(
        "--quantize",
        choices=("round", "floor", "none"),
        default="round",
        help="how predictions stored with more than 8 bits are brought to 8 bits: round, floor (as the "
        "original saved them) or none (score at full precision); 8-bit files are used as stored "
        "(default: round)",
    )
    parser.add_argument("--csv", metavar="FILE", help="also write the table as CSV")
    parser.add_argument("--json", metavar="FILE", help="also write the table and settings as JSON")


def _check_output_path(path: str | None, option: str) -> None:
    # fail before minutes of scoring, not after
    if path is not None and Path(path).is_dir():
        raise InputError(f"{option} {path}: is a directory; give a file name to write")


def run(args: argparse.Namespace) -> int:
    from bgm_jax.evaluate import evaluate_directories

    if args.trimap is not None and args.trimap_mode is not None:
        raise InputError(
            "--trimap-mode generates trimaps, --trimap reads them; give one of the two, not both"
        )
    _check_output_path(args.csv, "--csv")
    _check_output_path(args.json, "--json")

    report = evaluate_directories(
        args.pred,
        args.gt,
        trimap_dir=args.trimap,
        trimap_mode=args.trimap_mode or "closing",
        quantize=args.quantize,
        fgr_pred_dir=args.fgr_pred,
        fgr_gt_dir=args.fgr_gt,
        progress=_progress_bar,
    )
    for name, problem in report.problems:
        print(f"problem: {name}: {problem}", file=sys.stderr)
    for name, note in report.notes:
        print(f"note: {name}: {note}", file=sys.stderr)
    if not report.rows:
        raise InputError(
            f"no image could be scored ({len(report.problems)} problem(s), listed above); "
            "check that --pred and --gt hold files with matching names"
        )

    print(report.format_table())
    if args.csv:
        report.write_csv(args.csv)
        print(f"wrote {args.csv}", file=sys.stderr)
    if args.json:
        report.write_json(args.json)
        print(f"wrote {args.json}", file=sys.stderr)
    if not report.complete:
        print(
            f"bgm-jax eval: {len(report.problems)} problem(s); the means cover only the "
            f"{len(report.rows)} scored image(s)",
            file=sys.stderr,
        )
        return 1
    return 0


def _progress_bar(items):
    from tqdm import tqdm

    # disable=None: a bar only when stderr is a terminal, so logs and tests stay clean
    return tqdm(items, desc="scoring", unit="image", file=sys.stderr, disable=None, leave=False)
