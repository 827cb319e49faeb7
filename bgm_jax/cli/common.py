"""Arguments and helpers shared by the inference commands (images, video, bench).

Model arguments are the same everywhere, so a setting means one thing in every command:

    --model DIR                 checkpoint directory (`bgm-jax convert` writes one)
    --backbone-scale S          default: the model's own if it records one (trained at another scale),
                                else the paper's choice for the resolution (HD 0.25, 4K 0.125)
    --refine-mode M             sampling (default) | thresholding | full
    --refine-sample-pixels N    default: HD 80,000, 4K 320,000
    --refine-threshold T        thresholding mode only (default 0.1)
    --precision P               float32 (default; full float32, also on GPUs) | tf32 (float32 storage,
                                TF32 convolutions on NVIDIA GPUs) | bfloat16 | float16
    --flip-average              also matte each frame mirrored and average the two (2x the compute)
    --compilation-cache DIR     persistent XLA cache ("" turns it off)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from bgm_jax.errors import InputError
from bgm_jax.model_spec import BACKBONES, PRECISIONS, REFINE_MODES
# Named resolutions, as in the paper's speed tables.
NAMED_SIZES = {"hd": (1920, 1080), "4k": (3840, 2160)}


# ---------------------------------------------------------------------------------------------- arguments


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


EMBEDDED_MODEL_HELP = ("model directory (written by `bgm-jax convert` or by training); default: the model "
                       "embedded in bgm-jax, trained on synthetic composites (convert the official weights "
                       "for real footage)")


FLIP_AVERAGE_HELP = ("also matte each frame mirrored left to right and average the two answers: twice the "
                     "compute, a little lower error (off by default)")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model and the runtime settings (see the module docstring)."""
    group = parser.add_argument_group("model")
    group.add_argument("--model", metavar="DIR", help=EMBEDDED_MODEL_HELP)
    group.add_argument(
        "--backbone-scale", type=float, metavar="S",
        help="scale of the coarse pass, in (0, 0.5] (default: the model's own if it records one; else 0.25 up "
             "to QHD and 0.125 above, as the paper)",
    )
    group.add_argument("--refine-mode", choices=REFINE_MODES, default="sampling",
                       help="which pixels the refiner works on (default: sampling)")
    group.add_argument(
        "--refine-sample-pixels", type=int, metavar="N",
        help="pixels refined in sampling mode, in 4x4 patches (default: 80,000 up to QHD, 320,000 above)",
    )
    group.add_argument("--refine-threshold", type=float, default=0.1, metavar="T",
                       help="error threshold of thresholding mode (default: 0.1)")
    group.add_argument("--precision", choices=PRECISIONS, default="float32",
                       help="compute precision; parameters stay float32. float32 is full float32 also on GPUs; "
                       "tf32 lets NVIDIA GPUs run float32 convolutions in TF32 (faster, ~1e-3) (default: float32)")
    group.add_argument("--flip-average", action="store_true", help=FLIP_AVERAGE_HELP)
    group.add_argument(
        "--compilation-cache", metavar="DIR",
        help="persistent compilation cache, so a second run starts fast (default: $BGM_JAX_CACHE_DIR or "
        "~/.cache/bgm-jax/xla; '' turns it off)",
    )


def devices_value(text: str) -> str | int:
    """argparse type of --devices: ``all`` or a positive integer."""
    if text.strip().lower() == "all":
        return "all"
    return positive_int(text)


def add_devices_argument(parser: argparse.ArgumentParser) -> None:
    """--devices: split each batch over local devices (images, video)."""
    parser.add_argument(
        "--devices", type=devices_value, default=1, metavar="all|N",
        help="local devices (GPUs) to split each batch over, data parallel; --batch is per device "
        "(default: 1)",
    )


def settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The ``bgm_jax.load`` / ``Settings`` keyword arguments the model arguments describe."""
    return {
        "backbone_scale": args.backbone_scale,
        "refine_mode": args.refine_mode,
        "refine_sample_pixels": args.refine_sample_pixels,
        "refine_threshold": args.refine_threshold,
        "precision": args.precision,
        "flip_average": args.flip_average,
    }


PYTORCH_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors")


def check_model_dir(text: str) -> Path:
    """``--model`` must be a model directory; a PyTorch file gets told to be converted first."""
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    if path.is_file():
        from bgm_jax.convert.sources import sniff_format

        if path.suffix.lower() in PYTORCH_SUFFIXES or sniff_format(path) != "unknown":
            raise InputError(f"--model {text}: this is a PyTorch checkpoint: run `bgm-jax convert {text} MODEL_DIR` "
                             "first, then pass --model MODEL_DIR")
        raise InputError(f"--model {text}: is a file; --model takes a model directory written by `bgm-jax convert`")
    raise InputError(f"--model {text}: no such checkpoint directory; convert weights with "
                     "`bgm-jax convert MODEL.pth DIR` first")


def load_matting(args: argparse.Namespace):
    """The ``Matting`` for ``--model`` (the embedded model when it is not given, said in one line on
    stderr) with the settings given on the command line."""
    import bgm_jax

    if args.model is None:
        from bgm_jax import pretrained

        path = None
        print(f"model: {pretrained.describe()}", file=sys.stderr)
    else:
        path = check_model_dir(args.model)
    return bgm_jax.load(path, compilation_cache=args.compilation_cache, devices=getattr(args, "devices", None),
                        **settings_from_args(args))


def model_name(args: argparse.Namespace) -> str:
    """What ``--model`` names, for reports: the directory, or the embedded model."""
    if args.model is None:
        from bgm_jax import pretrained

        return f"embedded {pretrained.NAME}"
    return str(args.model)


# ---------------------------------------------------------------------------------------------- random weights


def random_variables(config: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """Random variables for the model ``config`` describes, drawn on the host without running ``init``.

    Flax's own ``init`` runs the whole network op by op (tens of seconds for MobileNetV2 on a small
    CPU) or compiles it; shapes from ``jax.eval_shape`` plus numpy draws take about a second. The
    distributions follow Flax's defaults (LeCun-normal kernels, zero biases, unit BatchNorm scale) so
    activations stay finite at every depth; running statistics are perturbed a little so the outputs
    are not trivially constant. Good for speed measurements and tests, meaningless as a matte.
    """
    import jax
    import numpy as np

    from bgm_jax.checkpoint import abstract_variables

    rng = np.random.default_rng(seed)
    shapes = abstract_variables(config)

    def draw(path, leaf):
        name = str(getattr(path[-1], "key", path[-1]))
        shape = tuple(leaf.shape)
        if name == "kernel":
            fan_in = int(np.prod(shape[:-1])) or 1
            return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
        if name == "mean":
            return (0.1 * rng.standard_normal(shape)).astype(np.float32)
        if name in ("var", "scale"):
            return rng.uniform(0.5, 1.5, shape).astype(np.float32)
        return (0.01 * rng.standard_normal(shape)).astype(np.float32)  # biases

    variables = jax.tree_util.tree_map_with_path(draw, shapes)
    return {"params": variables["params"], "batch_stats": variables["batch_stats"]}


def random_weight_matting(backbone: str, settings: dict[str, Any], compilation_cache=None, seed: int = 0,
                          devices=None):
    """A ``Matting`` around random weights for ``backbone`` (refine model, kernel size 3)."""
    from bgm_jax.inference import Matting, Settings, enable_compilation_cache

    if backbone not in BACKBONES:
        raise InputError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
    enable_compilation_cache(compilation_cache)
    config = {"model_type": "refine", "backbone": backbone, "refine_kernel_size": 3}
    return Matting(config, random_variables(config, seed), Settings(**settings), devices=devices)


# ---------------------------------------------------------------------------------------------- values


def parse_size(text: str, what: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT``, ``hd`` (1920x1080) or ``4k`` (3840x2160) -> (width, height)."""
    named = NAMED_SIZES.get(text.strip().lower())
    if named is not None:
        return named
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"{what} {text!r}: expected WIDTHxHEIGHT (e.g. 1280x720), hd or 4k") from None
    if width < 4 or height < 4:
        raise InputError(f"{what} {text!r}: width and height must be at least 4")
    return width, height


def parse_choices(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    """A comma-separated list of names from ``allowed``, duplicates dropped, order kept."""
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    if not names:
        raise InputError(f"{what}: empty; choose from {','.join(allowed)}")
    unknown = [name for name in names if name not in allowed]
    if unknown:
        raise InputError(f"{what} {text!r}: unknown {', '.join(unknown)}; choose from {','.join(allowed)}")
    return list(dict.fromkeys(names))


def resize_rgb(image, size: tuple[int, int]):
    """uint8 HxWx3 image resized to ``size = (width, height)`` (bilinear, antialiased when shrinking)."""
    import numpy as np
    from PIL import Image

    if (image.shape[1], image.shape[0]) == tuple(size):
        return image
    return np.asarray(Image.fromarray(image).resize(tuple(size), Image.Resampling.BILINEAR))


def describe_size(image) -> str:
    return f"{image.shape[1]}x{image.shape[0]}"


# ---------------------------------------------------------------------------------------------- progress


def add_progress_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (it is shown only when stderr is a terminal anyway)")


def progress_bar(args: argparse.Namespace, *, total: int | None, unit: str, desc: str):
    """A tqdm bar on stderr; off with --no-progress or when stderr is not a terminal."""
    from tqdm import tqdm

    disable = True if getattr(args, "no_progress", False) else None  # None: only on a terminal
    return tqdm(total=total, unit=unit, desc=desc, disable=disable, dynamic_ncols=True, file=sys.stderr)


def load_average() -> list[float] | None:
    """The 1/5/15-minute load averages (Linux, macOS), for benchmark reports on shared machines."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None
