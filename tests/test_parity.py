"""Converted weights give the original's results: the PyTorch reference (tests/torch_reference.py) with
random, non-default weights and BatchNorm statistics is saved as a real .pth, converted by
`bgm-jax convert` in a process where torch cannot be imported, and both models run on the same
inputs. Every output must agree to PARITY_TOLERANCE in float32 and the refined cells must be the same.

The matrix is laid out for few compilations (each distinct model configuration and input shape
compiles the JAX model once): MobileNetV2 carries refine mode x kernel size and the 1/8-scale case;
ResNet-50 and ResNet-101 run one MattingRefine configuration each, plus MattingBase for ResNet-50.
Inputs are 2 x 76 x 100: at backbone scale 1/4 the coarse map is 19 x 25 (odd both ways); at 1/8 it
is 9 x 12 while 76 / 8 = 9.5, so only resizing like the original (size floor(H * scale), coordinate
scale in / out, i.e. recompute_scale_factor=True) matches.

Selections are made well defined before comparing: sample counts and thresholds are picked where the
quarter-resolution error has a gap wider than 2 x PARITY_TOLERANCE, and models with exactly-zero
error cells (for prevent_oversampling) have no positive error closer to 0 than that.

`python -m pytest -q -s tests/test_parity.py` prints the worst differences per output at the end.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

if os.environ.get("BGM_REQUIRE_TORCH") != "1":  # under CI a missing torch fails collection instead
    pytest.importorskip("torch")
import jax  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import torch_reference as ref  # noqa: E402
from bgm_jax.checkpoint import build_model, load_model, save_model  # noqa: E402
from bgm_jax.compile_options import compiler_options  # noqa: E402
from bgm_jax.convert.convert import convert_checkpoint, export_torch  # noqa: E402

PARITY_TOLERANCE = 1e-4  # max |JAX - PyTorch| allowed for every float32 output
BATCH, HEIGHT, WIDTH = 2, 76, 100
QUARTER = (HEIGHT // 4, WIDTH // 4)  # 19 x 25 = 475 refinement cells per image
CELLS = QUARTER[0] * QUARTER[1]
REFINE_OUTPUTS = ("pha", "fgr", "pha_sm", "fgr_sm", "err_sm", "ref_sm")
BASE_OUTPUTS = ("pha", "fgr", "err", "hid")


@dataclass(frozen=True)
class Weights:
    """One randomised reference model saved as ``<name>.pth``."""

    model_type: str
    backbone: str
    kernel_size: int | None
    seed: int
    err_bias: float = ref.ERR_BIAS  # < 0.5 makes some coarse error cells exactly 0


# Seeds and error biases chosen (and re-checked by the tests) so that: err is strictly positive
# ("distinct"), or part of it is exactly 0 with every positive value far from 0 ("zeros").
WEIGHTS = {
    "mobilenetv2-k3": Weights("refine", "mobilenetv2", 3, seed=0),
    "mobilenetv2-k3-zeros": Weights("refine", "mobilenetv2", 3, seed=29, err_bias=-0.05),
    "mobilenetv2-k1": Weights("refine", "mobilenetv2", 1, seed=2),
    "mobilenetv2-k1-zeros": Weights("refine", "mobilenetv2", 1, seed=19, err_bias=-0.05),
    "resnet50": Weights("refine", "resnet50", 3, seed=4),
    "resnet50-base": Weights("base", "resnet50", None, seed=5),
    "resnet101": Weights("refine", "resnet101", 3, seed=6),
}


@dataclass(frozen=True)
class Case:
    """A MattingRefine run: the weights, the backbone scale and the refiner mode.

    ``prevent_oversampling`` is None for modes where it does not apply. In sampling mode the number
    of patches is picked from the error map (see ``sampling_count``), or is every cell."""

    weights: str
    mode: str
    scale: float = 0.25
    prevent_oversampling: bool | None = None
    every_cell: bool = False


REFINE_CASES = {
    "mobilenetv2-k3-sampling": Case("mobilenetv2-k3-zeros", "sampling", prevent_oversampling=True),
    "mobilenetv2-k3-sampling-oversampling": Case("mobilenetv2-k3", "sampling", prevent_oversampling=False),
    # Zero-error cells refined too: as many patches as cells, without prevent_oversampling.
    "mobilenetv2-k3-sampling-every-cell": Case("mobilenetv2-k3-zeros", "sampling", prevent_oversampling=False,
                                               every_cell=True),
    "mobilenetv2-k3-thresholding": Case("mobilenetv2-k3", "thresholding"),
    "mobilenetv2-k3-full": Case("mobilenetv2-k3", "full"),
    "mobilenetv2-k1-sampling": Case("mobilenetv2-k1-zeros", "sampling", prevent_oversampling=True),
    "mobilenetv2-k1-sampling-oversampling": Case("mobilenetv2-k1", "sampling", prevent_oversampling=False),
    "mobilenetv2-k1-thresholding": Case("mobilenetv2-k1", "thresholding"),
    "mobilenetv2-k1-full": Case("mobilenetv2-k1", "full"),
    "mobilenetv2-k3-sampling-scale-1/8": Case("mobilenetv2-k3", "sampling", scale=0.125, prevent_oversampling=True),
    "resnet50-k3-sampling": Case("resnet50", "sampling", prevent_oversampling=True),
    "resnet101-k3-sampling": Case("resnet101", "sampling", prevent_oversampling=True),
}

# Runs in a fresh interpreter where `import torch` fails: the `bgm-jax convert` command converts
# each (pth, output) pair; exit codes, printed reports and the torch modules loaded go to a JSON file.
NO_TORCH_CONVERT = r"""
import contextlib, io, json, sys
sys.modules["torch"] = None  # every `import torch` / `import torch.x` now raises ImportError
from bgm_jax.cli import main
jobs, result_path = json.loads(sys.argv[1]), sys.argv[2]
runs = []
for pth, out in jobs:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["convert", pth, out])
    runs.append({"code": code, "stdout": stdout.getvalue(), "stderr": stderr.getvalue()})
torch_modules = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
with open(result_path, "w") as f:
    json.dump({"runs": runs, "torch_modules": torch_modules, "torch_entry": repr(sys.modules.get("torch"))}, f)
"""


@dataclass
class Converted:
    torch_model: torch.nn.Module
    directory: Path
    report: str  # what `bgm-jax convert` printed


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict[str, Converted]:
    """Every reference model in WEIGHTS, saved with torch.save and converted without torch (one process)."""
    root = tmp_path_factory.mktemp("parity")
    models, jobs = {}, []
    for name, w in WEIGHTS.items():
        kwargs = {"refine_kernel_size": w.kernel_size} if w.model_type == "refine" else {}
        models[name] = ref.random_model(w.model_type, w.backbone, seed=w.seed, err_bias=w.err_bias, **kwargs)
        pth = root / f"{name}.pth"
        torch.save(models[name].state_dict(), pth)
        jobs.append((str(pth), str(root / name)))
    result_path = root / "convert.json"
    proc = subprocess.run([sys.executable, "-c", NO_TORCH_CONVERT, json.dumps(jobs), str(result_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(result_path.read_text())
    # Nothing torch-like was imported: the only entry is the blocker itself.
    assert result["torch_modules"] == ["torch"] and result["torch_entry"] == "None"
    out = {}
    for (name, model), (_, directory), run in zip(models.items(), jobs, result["runs"]):
        assert run["code"] == 0, f"{name}: {run['stderr']}"
        out[name] = Converted(model, Path(directory), run["stdout"])
    return out


@pytest.fixture(scope="module")
def jax_weights(converted):
    """``name -> (config, variables)`` read back from the converted directories, loaded on first use."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = load_model(converted[name].directory)
        return cache[name]

    return get


@pytest.fixture(scope="module")
def inputs():
    src, bgr = ref.random_inputs(BATCH, HEIGHT, WIDTH, seed=7)
    return src, bgr


MEASURED: dict[str, dict[str, float]] = {}  # case -> output -> max |JAX - PyTorch|


@pytest.fixture(scope="module", autouse=True)
def print_measured_differences():
    """After the module, print max |JAX - PyTorch| per case and output (shown with `pytest -s`)."""
    yield
    if not MEASURED:
        return
    outputs = list(dict.fromkeys(o for diffs in MEASURED.values() for o in diffs))
    print("\nmax |JAX - PyTorch| (float32)")
    print(f"{'case':<40}" + "".join(f"{o:>10}" for o in outputs))
    for case, diffs in list(MEASURED.items()) + [("worst", {o: max(d.get(o, 0.0) for d in MEASURED.values())
                                                            for o in outputs})]:
        print(f"{case:<40}" + "".join(f"{diffs[o]:>10.2e}" if o in diffs else f"{'':>10}" for o in outputs))


def apply_compiled(model, variables, *inputs):
    """``model.apply`` compiled as ``bgm_jax.load`` compiles it: with ``bgm_jax.compile_options`` (YNNPACK
    convolutions on CPUs), so the parity covers the shipped kernels."""
    lowered = jax.jit(model.apply).lower(variables, *inputs)
    return lowered.compile(compiler_options(jax.devices()[0].platform))(variables, *inputs)


def nhwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(0, 2, 3, 1).contiguous().numpy()


def compare(name: str, jax_outputs, torch_outputs, names) -> dict[str, float]:
    """Max |difference| per float output (asserted <= PARITY_TOLERANCE) and exact equality of ref_sm."""
    diffs = {}
    for output, ours, theirs in zip(names, jax_outputs, torch_outputs):
        ours, theirs = np.asarray(ours), nhwc(theirs)
        assert ours.shape == theirs.shape and ours.dtype == np.float32, (name, output, ours.shape, theirs.shape)
        if output == "ref_sm":
            np.testing.assert_array_equal(ours, theirs, err_msg=f"{name}: different cells refined")
            continue
        diffs[output] = float(np.max(np.abs(ours - theirs)))
    MEASURED[name] = diffs
    assert all(d <= PARITY_TOLERANCE for d in diffs.values()), (name, diffs)
    return diffs


def quarter_error(model, src, bgr, scale: float) -> torch.Tensor:
    """The quarter-resolution error map the refiner selects from, (B, Hq * Wq), from the reference."""
    model.backbone_scale = scale
    small = (math.floor(HEIGHT * scale), math.floor(WIDTH * scale))
    with torch.no_grad():
        x = model.coarse(ref._resize(src, small), ref._resize(bgr, small))
    err_sm = x[:, 4:5].clamp(0.0, 1.0)
    return ref._resize(err_sm, QUARTER).reshape(BATCH, -1)


def sampling_count(err_q: torch.Tensor, case: Case) -> int:
    """Patches per image for a sampling case, such that the selected cells are well defined.

    With exact zeros: more than the positive cells of any image, so every positive cell is selected
    and prevent_oversampling drops the zero cells top-k adds. Without zeros: the k in
    [CELLS/5, 4 CELLS/5] with the widest gap between the k-th and (k+1)-th largest error of each image.
    """
    if case.every_cell:
        return CELLS
    if bool((err_q == 0).any()):
        positive = int((err_q > 0).sum(dim=1).max())
        return min(positive + CELLS // 8, CELLS - 1)
    return max(range(CELLS // 5, 4 * CELLS // 5), key=lambda k: ref.topk_margin(err_q, k))


def separated_threshold(err_q: torch.Tensor) -> float:
    """A threshold in the middle of the widest gap between error values in the central half of the range."""
    values = torch.unique(err_q.flatten())  # sorted
    lo, hi = len(values) // 4, 3 * len(values) // 4
    gaps = values[lo + 1:hi + 1] - values[lo:hi]
    i = int(torch.argmax(gaps)) + lo
    return float((values[i] + values[i + 1]) / 2)


def configure_reference(model, case: Case, k: int | None, threshold: float | None) -> None:
    model.backbone_scale = case.scale
    model.refiner.mode = case.mode
    model.refiner.sample_pixels = 16 * k if k else 80_000
    model.refiner.threshold = threshold if threshold is not None else 0.1
    model.refiner.prevent_oversampling = bool(case.prevent_oversampling)


@pytest.mark.parametrize("case_name", list(REFINE_CASES))
def test_converted_matting_refine_matches_pytorch_within_1e_4_with_the_same_refined_cells(
        case_name, converted, jax_weights, inputs):
    case = REFINE_CASES[case_name]
    torch_model = converted[case.weights].torch_model
    src, bgr = inputs
    err_q = quarter_error(torch_model, src, bgr, case.scale)
    has_zeros = bool((err_q == 0).any())

    k = threshold = None
    if case.mode == "sampling":
        k = sampling_count(err_q, case)
        positive = err_q[err_q > 0]
        if case.every_cell:
            assert int((err_q == 0).sum()) > 0  # zero-error cells are refined as well
        elif has_zeros:
            # Zero cells tie; only prevent_oversampling (which drops them all) makes top-k well defined.
            assert case.prevent_oversampling
            assert float(positive.min()) > 2 * PARITY_TOLERANCE  # no cell near the 0 cut
            assert int((err_q > 0).sum(dim=1).max()) < k < CELLS  # top-k picks zero cells in every image
        else:
            assert k < CELLS
            assert float(err_q.min()) > 2 * PARITY_TOLERANCE  # all k selected cells stay selected
            assert ref.topk_margin(err_q, k) > 2 * PARITY_TOLERANCE
    elif case.mode == "thresholding":
        threshold = separated_threshold(err_q)
        assert float((err_q - threshold).abs().min()) > 2 * PARITY_TOLERANCE

    configure_reference(torch_model, case, k, threshold)
    with torch.no_grad():
        expected = torch_model(src, bgr)

    config, variables = jax_weights(case.weights)
    w = WEIGHTS[case.weights]
    assert config["backbone"] == w.backbone and config["refine_kernel_size"] == w.kernel_size
    model = build_model(
        config, backbone_scale=case.scale, refine_mode=case.mode, refine_sample_pixels=16 * k if k else 80_000,
        refine_threshold=threshold if threshold is not None else 0.1,
        refine_prevent_oversampling=bool(case.prevent_oversampling),
    )
    ours = apply_compiled(model, variables, nhwc(src), nhwc(bgr))
    compare(case_name, ours, expected, REFINE_OUTPUTS)

    refined = nhwc(expected[5]).reshape(BATCH, -1).sum(axis=1)
    if case.mode == "sampling" and has_zeros and not case.every_cell:
        assert (refined == (err_q > 0).sum(dim=1).numpy()).all() and (refined < k).all()
    elif case.mode == "sampling":
        assert (refined == k).all()
    elif case.mode == "thresholding":
        assert 0 < refined.min() and refined.max() < CELLS
    else:
        assert (refined == CELLS).all()


def test_converted_matting_base_matches_pytorch_within_1e_4_at_an_odd_size(converted, jax_weights):
    # MattingBase takes any size; 38 x 50 is neither a multiple of 4 nor of the backbone's stride.
    src, bgr = ref.random_inputs(BATCH, 38, 50, seed=8)
    with torch.no_grad():
        expected = converted["resnet50-base"].torch_model(src, bgr)
    config, variables = jax_weights("resnet50-base")
    assert config["model_type"] == "base" and config["backbone"] == "resnet50"
    ours = apply_compiled(build_model(config), variables, nhwc(src), nhwc(bgr))
    compare("resnet50-base", ours, expected, BASE_OUTPUTS)


def test_the_reference_downsamples_like_the_original_and_the_1_8_case_tells_the_two_modes_apart(inputs):
    # The original: F.interpolate(scale_factor=s, recompute_scale_factor=True), i.e. output floor(H * s)
    # with coordinates scaled by in / out. The reference resizes to that size; at 1/8 of 76 x 100
    # (9.5 x 12.5 -> 9 x 12) the other mode (coordinates scaled by 1 / s) gives different pixels.
    src, _ = inputs
    small = ref._resize(src, (9, 12))
    original = F.interpolate(src, scale_factor=0.125, mode="bilinear", align_corners=False,
                             recompute_scale_factor=True)
    other = F.interpolate(src, scale_factor=0.125, mode="bilinear", align_corners=False,
                          recompute_scale_factor=False)
    assert torch.equal(small, original)
    assert other.shape == small.shape and float((other - small).abs().max()) > 0.01


def test_bgm_jax_convert_runs_without_torch_and_prints_what_it_found(converted):
    report = converted["resnet101"].report
    state = converted["resnet101"].torch_model.state_dict()
    counters = sum(k.endswith("num_batches_tracked") for k in state)
    lines = report.splitlines()
    assert "backbone    resnet101" in lines
    assert "model       MattingRefine (refiner kernel 3x3)" in lines
    assert (f"tensors     700: {700 - counters} converted ({700 - counters} float32), "
            f"{counters} num_batches_tracked skipped") in lines
    assert "parameters  59,239,831" in lines and "  backbone  42,509,568" in lines
    base = converted["resnet50-base"].report.splitlines()
    assert "model       MattingBase (no refiner)" in base
    assert [line for line in base if line.startswith("  ")] == [
        "  backbone  23,517,440", "  aspp      15,535,104", "  decoder    1,179,715"]  # no refiner line
    assert "refiner kernel 1x1" in converted["mobilenetv2-k1"].report


# -------------------------------------------------------------------------------- exact round trips


def random_variables(config: dict, seed: int) -> dict:
    """Random float32 values for every variable of the model ``config`` describes (no init, no compile)."""
    from bgm_jax.checkpoint import abstract_variables

    rng = np.random.default_rng(seed)
    shapes = abstract_variables(config)
    return {collection: jax.tree_util.tree_map(lambda s: rng.standard_normal(s.shape, dtype=np.float32),
                                               shapes[collection])
            for collection in ("params", "batch_stats")}


@pytest.mark.parametrize(("backbone", "model_type", "kernel_size"), [
    ("resnet50", "refine", 3), ("resnet101", "refine", 3), ("mobilenetv2", "refine", 1), ("mobilenetv2", "base", None),
])
def test_jax_to_pytorch_to_jax_round_trip_is_bit_exact(backbone, model_type, kernel_size, tmp_path):
    config = {"model_type": model_type, "backbone": backbone}
    if kernel_size:
        config["refine_kernel_size"] = kernel_size
    variables = random_variables(config, seed=len(backbone) + (kernel_size or 0))
    save_model(tmp_path / "jax", variables, config)
    export_torch(tmp_path / "jax", tmp_path / "model.pth")

    # The original code's strict load accepts the file, keys in the original's order.
    state = torch.load(tmp_path / "model.pth", weights_only=True)
    kwargs = {"refine_kernel_size": kernel_size} if kernel_size else {}
    with torch.device("meta"):
        original = ref.build_model(model_type, backbone, **kwargs)
    assert list(state) == list(original.state_dict())
    original.load_state_dict(state, strict=True, assign=True)

    report = convert_checkpoint(tmp_path / "model.pth", tmp_path / "back")
    assert report.config == config
    back_config, back = load_model(tmp_path / "back")
    assert {k: back_config[k] for k in config} == config
    flat_in = jax.tree_util.tree_leaves_with_path(variables)
    flat_back = dict(jax.tree_util.tree_leaves_with_path(back))
    assert len(flat_in) == len(flat_back)
    for path, value in flat_in:
        restored = np.asarray(flat_back[path])
        assert restored.dtype == value.dtype and restored.tobytes() == value.tobytes(), jax.tree_util.keystr(path)
