"""Score matting with the paper's metrics: existing predictions, or a model run over a test set.

  bgm-jax eval --pred DIR --gt DIR [--trimap DIR] [--fgr-pred DIR --fgr-gt DIR]
      pairs every ground-truth matte under --gt with the prediction of the same relative path and name
      under --pred (.png/.jpg/.jpeg, extension free) and scores it.
  bgm-jax eval --model CKPT --dataset NAME --data-dir DIR   (or --dataset-dir DIR with fgr/ pha/ bgr/)
      composites every test sample over its clean background, gives the model the perturbed background
      (supplement D.2), runs it with the paper's photo settings (backbone scale 1/4, or the model's own
      if it records one; 320,000 sample pixels = 20,000 patches) and scores its alpha and foreground;
      --save-pred keeps them for --pred.

Both print SAD (/1e3), MSE (x1e3), Grad, Conn and FG MSE (x1e3) per image and their means, summed over
the unknown region of the trimap (generated from the ground truth with --trimap-mode, named in every
output). Exit status: 0 when every image was scored, 1 when some could not be (listed on stderr), 2 for
unusable input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bgm_jax.cli.common import (
    FLIP_AVERAGE_HELP,
    PRECISIONS,
    REFINE_MODES,
    add_progress_argument,
    positive_int,
)
from bgm_jax.errors import InputError

# option -> argparse dest, for telling the user which options belong to the other mode
PRED_MODE_OPTIONS = {"--pred": "pred", "--gt": "gt", "--trimap": "trimap", "--fgr-pred": "fgr_pred",
                     "--fgr-gt": "fgr_gt"}
MODEL_MODE_OPTIONS = {
    "--dataset": "dataset", "--data-dir": "data_dir", "--split": "split", "--dataset-dir": "dataset_dir",
    "--batch": "batch", "--seed": "seed", "--noise": "noise", "--save-pred": "save_pred",
    "--overwrite": "overwrite", "--backbone-scale": "backbone_scale", "--refine-mode": "refine_mode",
    "--refine-sample-pixels": "refine_sample_pixels", "--refine-threshold": "refine_threshold",
    "--precision": "precision", "--flip-average": "flip_average", "--compilation-cache": "compilation_cache",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the usage lines above
    files = parser.add_argument_group("scoring existing predictions")
    files.add_argument("--pred", metavar="DIR", help="folder of predicted alpha mattes")
    files.add_argument("--gt", metavar="DIR", help="folder of ground-truth alpha mattes")
    files.add_argument(
        "--trimap",
        metavar="DIR",
        help="folder of trimaps (128 = unknown) paired like the mattes; default: generate them from the "
        "ground truth with --trimap-mode",
    )
    files.add_argument("--fgr-pred", metavar="DIR", help="folder of predicted foregrounds (adds FG MSE)")
    files.add_argument("--fgr-gt", metavar="DIR", help="folder of ground-truth foregrounds (adds FG MSE)")

    model = parser.add_argument_group("evaluating a model")
    model.add_argument("--model", metavar="CKPT", help="model checkpoint directory (written by `bgm-jax convert` "
                       "or by training); default with --dataset/--dataset-dir: the model embedded in bgm-jax")
    model.add_argument(
        "--dataset", metavar="NAME|DIR",
        help="prepared test set with backgrounds: matting_testset/{aim,distinctions646,photomatte85}, "
        "synthetic_matting/<config>, photo_matting/<config> (with --data-dir), or its prepared directory",
    )
    model.add_argument("--data-dir", metavar="DIR", help="where `bgm-jax build-dataset` wrote --dataset")
    model.add_argument("--split", metavar="SPLIT", help="split of --dataset, e.g. test or 'test[:10]' (default: test)")
    model.add_argument(
        "--dataset-dir", metavar="DIR",
        help="instead of --dataset: a folder with fgr/, pha/ and bgr/ images paired by relative path "
        "(backgrounds of another size are fitted: shorter side, centre crop)",
    )
    model.add_argument(
        "--batch", type=positive_int, metavar="N",
        help="images of one size run together (default: 1 on a CPU, where batching is slower; 5 on an "
        "accelerator, the backgrounds of one AIM/Distinctions sample)",
    )
    model.add_argument(
        "--seed", type=int, metavar="N",
        help="mixed with each record's seed to draw its background perturbation (default: 0)",
    )
    model.add_argument(
        "--noise", choices=("std", "variance"),
        help="reading of the supplement's noise 0.08..0.15: standard deviation (default) or literal "
        "variance; see docs/evaluation.md",
    )
    model.add_argument(
        "--save-pred", metavar="DIR",
        help="write the scored predictions (DIR/pha, DIR/fgr) and ground truth (DIR/gt_pha, DIR/gt_fgr) as PNG "
        "so that --pred can score them again",
    )
    model.add_argument("--overwrite", action="store_true", default=None,
                       help="let --save-pred replace files in a folder that is not empty")

    settings = parser.add_argument_group("model settings (defaults: the paper's photo evaluation)")
    settings.add_argument("--backbone-scale", type=float, metavar="S",
                          help="scale of the coarse pass (default: the model's own if it records one, else 0.25)")
    settings.add_argument("--refine-mode", choices=REFINE_MODES,
                          help="which pixels the refiner works on (default: sampling)")
    settings.add_argument(
        "--refine-sample-pixels", type=int, metavar="N",
        help="pixels refined in sampling mode, in 4x4 patches (default: 320,000, i.e. k = 20,000 patches)",
    )
    settings.add_argument("--refine-threshold", type=float, metavar="T",
                          help="error threshold of thresholding mode (default: 0.1)")
    settings.add_argument("--precision", choices=PRECISIONS, help="compute precision (default: float32)")
    settings.add_argument("--flip-average", action="store_true", default=None, help=FLIP_AVERAGE_HELP)
    settings.add_argument(
        "--compilation-cache", metavar="DIR",
        help="persistent compilation cache (default: $BGM_JAX_CACHE_DIR or ~/.cache/bgm-jax/xla; '' turns it off)",
    )

    scoring = parser.add_argument_group("scoring and outputs (both modes)")
    scoring.add_argument(
        "--trimap-mode",
        choices=("closing", "band"),
        help="reading of the supplement's trimap recipe used to generate trimaps (default: closing); "
        "see docs/evaluation.md",
    )
    scoring.add_argument(
        "--quantize",
        choices=("round", "floor", "none"),
        default="round",
        help="how predictions are brought to 8 bits: round, floor (as the original saved them) or none "
        "(score at full precision); 8-bit prediction files are used as stored (default: round)",
    )
    scoring.add_argument("--csv", metavar="FILE", help="also write the table as CSV")
    scoring.add_argument("--json", metavar="FILE", help="also write the table and settings as JSON")
    add_progress_argument(scoring)


def _check_output_path(path: str | None, option: str) -> None:
    # fail before minutes of scoring, not after
    if path is not None and Path(path).is_dir():
        raise InputError(f"{option} {path}: is a directory; give a file name to write")


def _given(args: argparse.Namespace, options: dict[str, str]) -> list[str]:
    return [option for option, dest in options.items() if getattr(args, dest) is not None]


def run(args: argparse.Namespace) -> int:
    pred_options, model_options = _given(args, PRED_MODE_OPTIONS), _given(args, MODEL_MODE_OPTIONS)
    if args.model is not None or args.dataset is not None or args.dataset_dir is not None:
        if pred_options:
            raise InputError(
                f"{', '.join(pred_options)} belong to scoring existing predictions; when evaluating a model "
                "(--model, --dataset) the predictions come from the model and the trimaps from --trimap-mode"
            )
        return _run_model(args)
    if model_options:
        raise InputError(f"{', '.join(model_options)}: only when evaluating a model (--dataset NAME or "
                         "--dataset-dir DIR, with --model CKPT or the embedded model)")
    if args.pred is None or args.gt is None:
        raise InputError(
            "give --pred DIR and --gt DIR to score existing predictions, or --dataset NAME (or --dataset-dir "
            "DIR), with --model CKPT or the embedded model, to evaluate a model"
        )
    return _run_folders(args)


def _run_folders(args: argparse.Namespace) -> int:
    from bgm_jax.evaluation.files import evaluate_directories

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
        progress=lambda items: _progress_bar(args, items),
    )
    if not report.rows:
        _print_problems(report)
        raise InputError(
            f"no image could be scored ({len(report.problems)} problem(s), listed above); "
            "check that --pred and --gt hold files with matching names"
        )
    return _finish(report, args)


def _run_model(args: argparse.Namespace) -> int:
    from bgm_jax.cli.common import check_model_dir, load_matting, model_name, progress_bar
    from bgm_jax.evaluation import protocol

    if (args.dataset is None) == (args.dataset_dir is None):
        raise InputError("give one test set: --dataset NAME (a prepared dataset) or --dataset-dir DIR (image folders)")
    if args.dataset_dir is not None:
        misplaced = [opt for opt, dest in (("--data-dir", "data_dir"), ("--split", "split")) if getattr(args, dest)]
        if misplaced:
            raise InputError(f"{', '.join(misplaced)}: only with --dataset NAME, not with --dataset-dir")
    _check_output_path(args.csv, "--csv")
    _check_output_path(args.json, "--json")
    if args.model is not None:
        check_model_dir(args.model)
    # everything about the data and outputs is checked before the model is loaded and compiled
    test_set = protocol.open_test_set(
        args.dataset, data_dir=args.data_dir, split=args.split or "test", dataset_dir=args.dataset_dir
    )
    writer = protocol.PredictionWriter(args.save_pred, overwrite=bool(args.overwrite)) if args.save_pred else None
    _apply_model_defaults(args)
    matting = load_matting(args)
    if args.backbone_scale is None:  # the model's own scale when it records one, else the paper's
        args.backbone_scale = matting.config.get("backbone_scale", protocol.PAPER_PHOTO_BACKBONE_SCALE)
        matting = matting.with_settings(backbone_scale=args.backbone_scale)

    trimap_mode = args.trimap_mode or "closing"
    sources = {"model": model_name(args), "dataset": test_set.description}
    report = protocol.evaluate_model(
        matting,
        test_set,
        trimap_mode=trimap_mode,
        quantize=args.quantize,
        batch_size=args.batch,
        seed=args.seed,
        noise=args.noise,
        writer=writer,
        sources=sources,
        settings=_model_settings(args, matting),
        progress=lambda total: progress_bar(args, total=total, unit="image", desc="evaluating"),
    )
    if not report.rows:
        _print_problems(report)
        raise InputError(f"no test image could be scored ({len(report.problems)} problem(s), listed above)")
    code = _finish(report, args)
    if writer is not None:
        print(f"wrote the scored predictions and ground truth to {args.save_pred}; score them again with:\n"
              f"  {writer.rescore_command(trimap_mode, args.quantize)}", file=sys.stderr)
        if args.quantize == "none":
            print("note: unquantised alpha was saved as 16-bit PNG and foreground as 8-bit, so re-scoring the "
                  "files agrees with these numbers only to that precision", file=sys.stderr)
    return code


def _apply_model_defaults(args: argparse.Namespace) -> None:
    """Fill the model options left out with the paper's photo evaluation settings."""
    from bgm_jax.evaluation import protocol

    defaults = {  # the backbone scale is settled once the model is loaded (it may record its own)
        "refine_mode": "sampling",
        "refine_sample_pixels": protocol.PAPER_PHOTO_SAMPLE_PIXELS,
        "refine_threshold": 0.1,
        "precision": "float32",
        "flip_average": False,
        "batch": protocol.default_batch_size(),
        "seed": 0,
        "noise": "std",
    }
    for dest, value in defaults.items():
        if getattr(args, dest) is None:
            setattr(args, dest, value)


def _model_settings(args: argparse.Namespace, matting) -> dict[str, object]:
    """How the predictions were made, for the table header and the JSON."""
    config = matting.config
    settings: dict[str, object] = {
        "model": f"{config.get('backbone')} {config.get('model_type')}",
        "backbone_scale": args.backbone_scale,
    }
    if matting.is_refine:
        settings["refine_mode"] = args.refine_mode
        if args.refine_mode == "sampling":
            settings["refine_sample_pixels"] = args.refine_sample_pixels
            settings["refine_patches"] = args.refine_sample_pixels // 16
        elif args.refine_mode == "thresholding":
            settings["refine_threshold"] = args.refine_threshold
    settings.update(
        precision=args.precision,
        flip_average=args.flip_average,
        perturbation_seed=args.seed,
        noise=args.noise,
        batch=args.batch,
    )
    return settings


def _print_problems(report) -> None:
    for name, problem in report.problems:
        print(f"problem: {name}: {problem}", file=sys.stderr)
    for name, note in report.notes:
        print(f"note: {name}: {note}", file=sys.stderr)


def _finish(report, args: argparse.Namespace) -> int:
    """Print the problems, the table and the files asked for; the exit status."""
    _print_problems(report)
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


def _progress_bar(args: argparse.Namespace, items):
    from tqdm import tqdm

    # disable=None: a bar only when stderr is a terminal, so logs and tests stay clean
    disable = True if args.no_progress else None
    return tqdm(items, desc="scoring", unit="image", file=sys.stderr, disable=disable, leave=False)
