"""The PyTorch side of the device check: the test suite's reference of the original (tests/torch_reference.py)
timed, run for parity, run through a sequential video loop, and trained one step, on the same device.

Precision of the reference, stated with every figure:
- ``float32``: full float32, TF32 off for convolutions and matmuls (the paper's RTX 2080 Ti has no TF32);
- ``tf32``: PyTorch's own default on NVIDIA GPUs (cuDNN convolutions in TF32);
- ``autocast``: ``torch.autocast`` in float16 on CUDA (training step only; on the CPU, where only the smoke
  run happens, autocast is off: PyTorch's CPU bfloat16 autocast is slow and proves nothing there);
- ``float16``: the original's inference speed test, ``model.half()`` with float16 inputs (autocast cannot run
  the refiner for inference: its patch write-back puts float16 patches into a float32 tensor, which
  torch refuses: "Index put requires the source and destination dtypes match", seen on the H200). Float32
  on the CPU, as autocast.
"""

from __future__ import annotations

import contextlib
import copy
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
import torch_reference  # noqa: E402

REFINE_CONFIG_KEYS = ("backbone_scale", "refine_sample_pixels")


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast_dtype() -> torch.dtype:
    """float16 on CUDA (the paper's mixed precision); float32 (autocast off) on the CPU."""
    return torch.float16 if device().type == "cuda" else torch.float32


def autocast():
    return torch.autocast(device().type, dtype=autocast_dtype(), enabled=device().type == "cuda")


def describe() -> dict:
    info = {"torch_version": torch.__version__, "device": str(device()),
            "autocast_dtype": str(autocast_dtype()).removeprefix("torch.")}
    if device().type == "cuda":
        info.update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                    gpu=torch.cuda.get_device_name(0))
    return info


@contextlib.contextmanager
def precision(mode: str):
    """``float32`` (TF32 off), ``tf32`` (PyTorch's GPU default) or ``autocast`` for the enclosed calls."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = mode == "tf32"
    try:
        if mode == "autocast":
            with autocast():
                yield
        else:
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@contextlib.contextmanager
def cudnn_benchmark(enabled: bool):
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved


def synchronize() -> None:
    if device().type == "cuda":
        torch.cuda.synchronize()


def inference_model(backbone: str, *, backbone_scale: float, sample_pixels: int, prevent_oversampling: bool,
                    seed: int = 0):
    """A randomised reference MattingRefine (sampling mode) on the device, in eval mode."""
    model = torch_reference.random_model("refine", backbone, seed=seed, backbone_scale=backbone_scale,
                                         refine_sample_pixels=sample_pixels,
                                         refine_prevent_oversampling=prevent_oversampling)
    return model.to(device()).eval()


def set_resolution(model, backbone_scale: float, sample_pixels: int) -> None:
    """Switch a reference model to another resolution's settings without rebuilding it."""
    model.backbone_scale = backbone_scale
    model.refiner.sample_pixels = sample_pixels


def state_dict_numpy(model) -> dict[str, np.ndarray]:
    return {key: value.detach().cpu().numpy() for key, value in model.state_dict().items()}


def inputs(batch: int, height: int, width: int, seed: int = 0):
    """(src, bgr) NCHW float32 on the device: a background and a source that differs in a block."""
    src, bgr = torch_reference.random_inputs(batch, height, width, seed=seed)
    return src.to(device()), bgr.to(device())


def nhwc(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().permute(0, 2, 3, 1).cpu().numpy()


@torch.inference_mode()
def run_outputs(model, src, bgr, mode: str) -> dict[str, np.ndarray]:
    """pha, fgr, err (coarse), ref (quarter-resolution cells) as NHWC float32 numpy."""
    with precision(mode):
        pha, fgr, _, _, err_sm, ref_sm = model(src, bgr)
    return {"pha": nhwc(pha), "fgr": nhwc(fgr), "err": nhwc(err_sm), "ref": nhwc(ref_sm)}


@torch.inference_mode()
def selection_margin(model, src, bgr) -> float:
    """The gap between the k-th and (k+1)-th largest quarter-resolution error (float32): two
    implementations agreeing to within e select the same cells when this exceeds 2e."""
    with precision("float32"):
        _, _, _, _, err_sm, _ = model(src, bgr)
    h, w = src.shape[2] // 4, src.shape[3] // 4
    err_q = F.interpolate(err_sm.float(), size=(h, w), mode="bilinear", align_corners=False)
    return torch_reference.topk_margin(err_q, model.refiner.sample_pixels // 16)


def half_model(model, dtype: torch.dtype | None = None):
    """A float16 copy of ``model`` (float32 on the CPU unless ``dtype`` says), as the original's speed test
    converts it."""
    return copy.deepcopy(model).to(dtype or autocast_dtype()).eval()


@torch.inference_mode()
def time_model(model, src, bgr, mode: str, *, repeats: int, warmup: int) -> list[float]:
    """Seconds per call, each call synchronised (as the JAX side waits for block_until_ready), with
    cuDNN's autotuner on, as the original's speed test (the patch count is fixed, so shapes are).
    ``mode`` float16: ``model`` is a half_model and the inputs are converted to its dtype here."""
    if mode == "float16":
        dtype = next(model.parameters()).dtype
        src, bgr = src.to(dtype), bgr.to(dtype)
    with precision("float32" if mode == "float16" else mode), cudnn_benchmark(True):
        for _ in range(warmup):
            model(src, bgr)
        synchronize()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(src, bgr)
            synchronize()
            times.append(time.perf_counter() - start)
    return times


# ---------------------------------------------------------------------------------------------- video


@torch.inference_mode()
def sequential_video(model, clip: Path, bgr: np.ndarray, out: Path, mode: str, target=(120, 255, 155)) -> dict:
    """The original's way: decode a frame, run the model, composite, copy to the host, encode; one
    frame at a time in one thread. Same reader and writer (and encoder settings) as ``bgm-jax video``.
    cuDNN's autotuner stays off, as in the original's video script: the patch count varies per frame."""
    from bgm_jax.io.video_reader import VideoReader
    from bgm_jax.io.video_writer import VideoWriter

    dev = device()
    bgr_t = torch.from_numpy(bgr).to(dev).permute(2, 0, 1)[None].float() / 255
    green = torch.tensor(target, device=dev, dtype=torch.float32).view(1, 3, 1, 1) / 255
    frames = 0
    with VideoReader(clip) as reader:
        info = reader.info
        start = time.perf_counter()
        with VideoWriter(out, width=info.width, height=info.height, fps=info.fps, time_base=info.time_base,
                         overwrite=True) as writer, precision(mode), cudnn_benchmark(False):
            for frame in reader:
                src = torch.from_numpy(frame.image).to(dev).permute(2, 0, 1)[None].float() / 255
                pha, fgr = model(src, bgr_t)[:2]
                com = pha.float() * fgr.float() + (1 - pha.float()) * green
                pixels = (com * 255).round().clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).cpu().numpy()
                writer.write(pixels, time=frame.time)
                frames += 1
        seconds = time.perf_counter() - start
    return {"frames": frames, "seconds": round(seconds, 3), "fps": round(frames / seconds, 3)}


# ---------------------------------------------------------------------------------------------- training


def _sobel(x: torch.Tensor) -> torch.Tensor:
    """kornia's sobel magnitude, as train/losses.py: 3x3 kernels / 8, replicate padding, sqrt(+1e-6)."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=x.device) / 8
    kernels = torch.stack([kx, kx.t()])[:, None]
    channels = x.shape[1]
    p = F.pad(x.reshape(-1, 1, *x.shape[2:]), (1, 1, 1, 1), mode="replicate")
    g = F.conv2d(p, kernels)
    g = g.reshape(x.shape[0], channels, 2, *x.shape[2:])
    return torch.sqrt(g[:, :, 0] ** 2 + g[:, :, 1] ** 2 + 1e-6)


def _resize(x, size):
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def base_loss(outputs, pha_t, fgr_t):
    pha, fgr, err = (o.float() for o in outputs[:3])
    mask = (pha_t > 0).float()
    return (F.l1_loss(pha, pha_t) + F.l1_loss(_sobel(pha), _sobel(pha_t)) + F.l1_loss(fgr * mask, fgr_t * mask)
            + F.mse_loss(err, (pha.detach() - pha_t).abs()))


def refine_loss(outputs, pha_t, fgr_t):
    pha, fgr, pha_sm, fgr_sm, err_sm = (o.float() for o in outputs[:5])
    size, small = pha_t.shape[2:], pha_sm.shape[2:]
    pha_t_sm, fgr_t_sm = _resize(pha_t, small), _resize(fgr_t, small)
    mask, mask_sm = (pha_t > 0).float(), (pha_t_sm > 0).float()
    return (F.l1_loss(pha, pha_t) + F.l1_loss(pha_sm, pha_t_sm) + F.l1_loss(_sobel(pha), _sobel(pha_t))
            + F.l1_loss(_sobel(pha_sm), _sobel(pha_t_sm)) + F.l1_loss(fgr * mask, fgr_t * mask)
            + F.l1_loss(fgr_sm * mask_sm, fgr_t_sm * mask_sm)
            + F.mse_loss(_resize(err_sm, size), (_resize(pha_sm, size) - pha_t).abs()))


def time_train_step(stage: str, backbone: str, crop: int, batch: int, *, repeats: int, warmup: int = 2) -> dict:
    """One optimisation step (forward, the paper's loss, backward, Adam) of the reference in autocast with
    a gradient scaler on CUDA, on random inputs (no augmentation: the original augments in DataLoader
    workers on the CPU). Returns seconds per step."""
    dev = device()
    if dev.type == "cuda":
        torch.cuda.empty_cache()  # what the inference sections cached goes back before a large step
    kind = "base" if stage == "base" else "refine"
    # the refine stage's 80k sample pixels (as the JAX step), capped at every cell: the reference's topk
    # cannot take more cells than there are (small crops)
    kwargs = {} if kind == "base" else {"backbone_scale": 0.25,
                                        "refine_sample_pixels": min(80_000, (crop // 4) ** 2 * 16)}
    model = torch_reference.random_model(kind, backbone, **kwargs).to(dev).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(dev.type, enabled=dev.type == "cuda")
    src, bgr = inputs(batch, crop, crop)
    generator = torch.Generator().manual_seed(1)
    pha_t = torch.rand((batch, 1, crop, crop), generator=generator).to(dev)
    fgr_t = torch.rand((batch, 3, crop, crop), generator=generator).to(dev)
    loss_fn = base_loss if kind == "base" else refine_loss

    def step():
        with autocast():
            outputs = model(src, bgr)
        loss = loss_fn(outputs, pha_t, fgr_t)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return loss

    start = time.perf_counter()
    for _ in range(warmup):
        loss = step()
    synchronize()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        loss = step()
        synchronize()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {"precision": f"autocast {str(autocast_dtype()).removeprefix('torch.')}", "warmup_s": round(first, 3),
            "step_ms": round(median * 1e3, 2), "images_per_s": round(batch / median, 3),
            "times_ms": [round(t * 1e3, 2) for t in times], "loss_finite": bool(math.isfinite(float(loss.detach())))}
