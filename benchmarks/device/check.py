"""The GPU device check: one command, at most 9 minutes on an H200, JSON + Markdown into one folder.

    bash benchmarks/device/run.sh OUTDIR            # on the GPU machine (installs .whl/ first)
    python benchmarks/device/check.py --out OUTDIR --smoke   # the same code path on the CPU, tiny sizes

Sections, each next to the PyTorch reference of the tests (tests/torch_reference.py) on the same device,
in this order, each with its own time budget (a section that runs out records what it skipped and why;
the report is rewritten after every measurement, so a killed run still leaves its results):

  parity    float32 outputs against the reference in full float32 (<= 1e-4, same refined cells), what
            tf32 (XLA's GPU default) does, and bfloat16/float16 against float32 (max |diff|, SAD, share
            of identical selected cells)
  model     model-only FPS, the paper's settings with a fixed patch count: backbones x HD/4K x
            float32/bfloat16 at batch 1, the paper's Table 3 rows; reference in float32 and float16 (half)
  refiner   the compiled refiner's operations on this backend and the formulations of
            benchmarks/device/variants.py timed against the ones in use
  compile   compile time of the first call in a fresh process, and in a second process with the
            persistent compilation cache
  e2e       `bgm-jax video` on a generated 10 s 1920x1080 clip -> composited MP4, and the reference's
            sequential decode-model-encode loop on the same clip
  train     one training step (base 512 batch 8, refine 2048 batch 2), images/s, and the reference's
            autocast step

Each configuration compiles in the main thread when first needed, alone (a thread pool of compilations,
--compile-workers N, finished none in 200 s on the H200 next to torch); no clock runs during a compilation.
Precision policy, stated per measurement: ``float32`` = full float32 (matmul precision highest), ``tf32``
= the backend's default (TF32 convolutions on NVIDIA GPUs), ``bfloat16``/``float16`` compute with
float32 parameters. Never run this to produce numbers on a CPU: --smoke proves the code path only.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import datetime
import hashlib
import io
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("parity", "model", "refiner", "compile", "e2e", "train")
BACKBONES = ("mobilenetv2", "resnet50", "resnet101")
PRECISIONS = ("float32", "tf32", "bfloat16", "float16")
HD, UHD = (1920, 1080), (3840, 2160)
# The paper's model-only figures (RTX 2080 Ti), for context next to ours: (backbone, res, batch, precision).
PAPER_2080TI_FPS = {
    ("resnet50", "hd", 1, "float32"): 60.0, ("resnet50", "4k", 1, "float32"): 33.2,
    ("resnet101", "hd", 1, "float32"): 42.5, ("resnet101", "4k", 1, "float32"): 29.8,
    ("mobilenetv2", "hd", 1, "float32"): 100.6, ("mobilenetv2", "4k", 1, "float32"): 45.4,
    ("mobilenetv2", "hd", 8, "float32"): 138.4, ("mobilenetv2", "hd", 8, "float16"): 200.0,
    ("mobilenetv2", "4k", 8, "float16"): 64.2,
}
PARITY_TOLERANCE = 1e-4
# Packages the GPU machine does not have (PERFORMANCE.md, KINDS.md) and the check must not need: the smoke
# run makes importing them fail, as it would there (av and dm-pix travel as wheels).
DEVICE_LACKS = ("grain", "tensorflow_datasets", "array_record", "tensorboardX", "tensorflow", "starlette",
                "uvicorn", "selenium")


@dataclasses.dataclass(frozen=True)
class Plan:
    """What to measure and how long each section may take (seconds)."""

    sizes: dict  # "hd"/"4k" -> (width, height)
    scale_pixels: bool  # smoke: sample pixels scaled with the area so the refiner keeps the paper's ratio
    parity: tuple  # (backbone, res, precisions)
    model: tuple  # (backbone, res, batch, precision)
    model_repeats: int
    model_timing_reserve: float  # seconds of the model section kept for timing, not waiting for compiles
    torch_repeats: int
    warmup: int
    refiner_res: tuple
    refiner_batches: tuple
    refiner_repeats: int
    compile_case: tuple  # (backbone, res)
    clip: tuple  # (width, height, frames, fps)
    e2e: tuple  # (backbone, batch, precision)
    e2e_reference: tuple  # (backbone, precision) for the sequential reference loop
    train_backbone: str
    train: tuple  # (stage, crop, batch, precision)
    train_repeats: int
    budgets: dict
    total_budget: float
    compile_workers: int
    compile_s: float  # a typical inference compilation, the time left that an inline one needs to start


def full_plan() -> Plan:
    # in order of importance (compiled and timed in this order; a spent budget drops the tail):
    # the paper's Table 2 (batch 1 float32), its Table 3, bfloat16, and what TF32 buys
    backbones = ("resnet50", "mobilenetv2", "resnet101")
    model = [(b, r, 1, "float32") for b in backbones for r in ("hd", "4k")]
    model += [("mobilenetv2", "hd", 8, "float32"), ("mobilenetv2", "hd", 8, "float16"),
              ("mobilenetv2", "4k", 8, "float16")]
    model += [(b, r, 1, "bfloat16") for b in backbones for r in ("hd", "4k")]
    model += [("resnet50", "hd", 1, "tf32")]
    return Plan(
        sizes={"hd": HD, "4k": UHD}, scale_pixels=False,
        parity=(("resnet50", "hd", ("float32", "tf32", "bfloat16", "float16")),
                ("mobilenetv2", "hd", ("float32", "tf32"))),
        model=tuple(model), model_repeats=30, model_timing_reserve=75, torch_repeats=20, warmup=3,
        refiner_res=("hd", "4k"), refiner_batches=(1, 8), refiner_repeats=20,
        compile_case=("resnet50", "hd"),
        clip=(1920, 1080, 300, 30),
        e2e=(("resnet50", 1, "float32"), ("mobilenetv2", 8, "float16")),
        e2e_reference=("resnet50", "float32"),
        train_backbone="resnet50",
        train=(("base", 512, 8, "float16"), ("refine", 2048, 2, "float16"),
               ("base", 512, 8, "bfloat16"), ("refine", 2048, 2, "bfloat16")),
        train_repeats=5,
        # from the H200 runs of 2026-11-30: parity used 57 s, 13 model rows 118 s (without the reference),
        # compile 20 s, e2e 64 s; the two float16 training steps took about 130 s to compile
        budgets={"parity": 60, "model": 150, "refiner": 30, "compile": 25, "e2e": 70, "train": 160},
        # 0: compile in the main thread when a measurement needs it. On the H200 (2026-11-30) four compile
        # threads in this process, next to torch, had finished none of their compilations after 200 s, while
        # the same compilation took 10 s in a fresh process (the compile section) and 2.4 s inside `bgm-jax video`
        total_budget=500, compile_workers=0, compile_s=10,
    )


def smoke_plan() -> Plan:
    return Plan(
        sizes={"hd": (128, 72), "4k": (256, 144)}, scale_pixels=True,
        # the same loops with fewer items: every compilation costs seconds on a small CPU
        parity=(("mobilenetv2", "hd", ("float32", "bfloat16")),),
        model=(("mobilenetv2", "hd", 1, "float32"), ("mobilenetv2", "hd", 1, "bfloat16")),  # parity's compilations
        model_repeats=2, model_timing_reserve=0, torch_repeats=2, warmup=1,
        refiner_res=("hd",), refiner_batches=(2,), refiner_repeats=2,
        compile_case=("mobilenetv2", "hd"),
        clip=(128, 72, 6, 10),
        e2e=(("mobilenetv2", 1, "float32"),),
        e2e_reference=("mobilenetv2", "float32"),
        train_backbone="mobilenetv2",
        train=(("base", 64, 2, "bfloat16"),),  # the refine stage's code: tests/test_device_check.py
        train_repeats=1,
        budgets={"parity": 300, "model": 300, "refiner": 300, "compile": 300, "e2e": 300, "train": 300},
        total_budget=1200, compile_workers=0, compile_s=2,  # the device's path (--compile-workers 2: the pool's)
    )


# ---------------------------------------------------------------------------------------------- report


class Report:
    """The JSON document and its Markdown summary, rewritten (atomically) after every change."""

    def __init__(self, out: Path, data: dict):
        self.out, self.data = out, data
        self.lock = threading.Lock()

    def save(self) -> None:
        with self.lock:
            self.data["updated"] = now()
            for name, text in (("device_check.json", json.dumps(self.data, indent=2, default=str) + "\n"),
                               ("device_check.md", markdown(self.data))):
                partial = self.out / f".{name}.partial"
                partial.write_text(text)
                os.replace(partial, self.out / name)


class Section:
    """One section's record: measurements, skips with reasons, status, time used against its budget."""

    def __init__(self, report: Report, name: str, budget: float, deadline: float):
        self.report, self.name, self.budget = report, name, budget
        self.start = time.monotonic()
        self.deadline = min(deadline, self.start + budget)
        self.record = {"status": "running", "budget_s": round(budget, 1), "results": [], "skipped": []}
        report.data["sections"][name] = self.record
        report.save()

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def add(self, result: dict) -> dict:
        self.record["results"].append(result)
        self.report.save()
        return result

    def skip(self, what: str, reason: str) -> None:
        self.record["skipped"].append({"what": what, "reason": reason})
        self.report.save()

    def has_time(self, what: str, need: float = 1.0) -> bool:
        if self.remaining() >= need:
            return True
        self.skip(what, f"section budget ({self.budget:.0f} s) spent: {self.remaining():.1f} s left, "
                        f"about {need:.0f} s needed")
        return False

    def finish(self, status: str | None = None, error: str | None = None) -> None:
        failed = [r for r in self.record["results"] if r.get("status") == "error"]
        if status is None:
            status = "partial" if (self.record["skipped"] or failed) else "ok"
        self.record.update(status=status, seconds=round(time.monotonic() - self.start, 1))
        if error:
            self.record["error"] = error
        self.report.save()


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def failure(what: str, exc: BaseException) -> dict:
    return {"what": what, "status": "error", "error": f"{type(exc).__name__}: {exc}"[:2000],
            "traceback": traceback.format_exc()[-4000:]}


def median_ms(seconds: list[float]) -> float:
    return round(statistics.median(seconds) * 1e3, 3)


# ---------------------------------------------------------------------------------------------- environment


def source_digest() -> str:
    """sha256 over the Python sources that produce the figures (the device copy has no .git)."""
    digest = hashlib.sha256()
    for path in sorted([*ROOT.glob("bgm_jax/**/*.py"), *ROOT.glob("train/**/*.py"),
                        *ROOT.glob("benchmarks/device/*.py"), ROOT / "tests" / "torch_reference.py"]):
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def nvidia_smi() -> dict | None:
    """Read-only query of the GPU (name, driver, memory, clocks, power limit), if nvidia-smi exists."""
    if shutil.which("nvidia-smi") is None:
        return None
    fields = "name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,power.limit,temperature.gpu"
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError) as e:
        return {"error": str(e)}
    return {"query": fields, "gpus": out.splitlines()}


def environment(args, plan: Plan) -> dict:
    import jax
    import jaxlib
    import numpy as np
    import reference

    import bgm_jax

    versions = {"python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
                "numpy": np.__version__, "bgm_jax": bgm_jax.__version__}
    for name in ("flax", "optax", "orbax.checkpoint", "av", "dm_pix", "scipy", "PIL"):
        try:
            module = __import__(name, fromlist=["__version__"])
            versions[name] = getattr(module, "__version__", "?")
        except Exception as e:  # recorded, not fatal: the section that needs it reports the failure
            versions[name] = f"missing ({type(e).__name__})"
    devices = jax.devices()
    return {
        "backend": jax.default_backend(),
        "devices": [f"{d.platform}:{d.id} {d.device_kind}" for d in devices],
        "device_kind": devices[0].device_kind,
        "local_device_count": jax.local_device_count(),
        "nvidia_smi": nvidia_smi(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "versions": versions,
        "torch": reference.describe(),
        "jax_default_matmul_precision": jax.config.jax_default_matmul_precision,
        "xla_python_client_mem_fraction": os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION"),
        "source_digest": source_digest(),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


# ---------------------------------------------------------------------------------------------- shared setup


class DeferredFuture(concurrent.futures.Future):
    """A future whose work runs in the caller's thread the first time its result is asked for."""

    def __init__(self, fn):
        super().__init__()
        self._fn = fn

    def _run(self) -> None:
        if not self.done() and self.set_running_or_notify_cancel():
            try:
                self.set_result(self._fn())
            except BaseException as e:  # noqa: BLE001 - handed to whoever asks for the result
                self.set_exception(e)

    def result(self, timeout=None):
        self._run()
        return super().result(timeout)

    def exception(self, timeout=None):
        self._run()
        return super().exception(timeout)


class InlineExecutor:
    """The pool's interface with no threads: work runs when its result is first asked for."""

    def submit(self, fn, *args, **kwargs) -> DeferredFuture:
        return DeferredFuture(lambda: fn(*args, **kwargs))

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


class Setup:
    """Random-weight models, settings per resolution, and the compile pool (inline with 0 workers)."""

    def __init__(self, plan: Plan, cache_dir: Path):
        from bgm_jax.inference import recommended_settings

        self.plan, self.cache_dir = plan, cache_dir
        self.inline = plan.compile_workers == 0
        self.pool = (InlineExecutor() if self.inline else
                     concurrent.futures.ThreadPoolExecutor(plan.compile_workers, thread_name_prefix="compile"))
        self.futures: dict[tuple, concurrent.futures.Future] = {}
        self._models: dict[str, object] = {}
        self._lock = threading.Lock()
        self.recommended = recommended_settings

    def resolution(self, res: str) -> tuple[int, int, float, int]:
        """(width, height, backbone scale, sample pixels) of a named resolution, the paper's settings
        (smoke: pixels scaled with the area, so the same share of cells is refined)."""
        width, height = self.plan.sizes[res]
        paper_w, paper_h = HD if res == "hd" else UHD
        scale, pixels = self.recommended(paper_h, paper_w)
        if self.plan.scale_pixels:
            pixels = max(16, int(pixels * width * height / (paper_w * paper_h)))
        return width, height, scale, pixels

    def settings(self, res: str, precision: str, prevent_oversampling: bool = False) -> dict:
        _, _, scale, pixels = self.resolution(res)
        return {"backbone_scale": scale, "refine_sample_pixels": pixels,
                "refine_prevent_oversampling": prevent_oversampling, "precision": precision}

    def use_weights(self, backbone: str, variables: dict) -> None:
        """Weights for ``backbone`` from now on (parity registers the reference's, converted)."""
        from bgm_jax.inference import Matting

        config = {"model_type": "refine", "backbone": backbone, "refine_kernel_size": 3}
        self._models[backbone] = Matting(config, variables)

    def matting(self, backbone: str, res: str, precision: str):
        """The Matting for a backbone, resolution and precision: the paper's settings with a fixed patch
        count (prevent_oversampling off), one object per combination so parity and the model-only
        section share its compiled functions. Random weights unless parity registered the reference's."""
        from bgm_jax.cli.common import random_weight_matting

        with self._lock:
            if backbone not in self._models:
                self._models[backbone] = random_weight_matting(backbone, {}, compilation_cache=str(self.cache_dir))
            key = (backbone, res, precision)
            if key not in self._models:
                self._models[key] = self._models[backbone].with_settings(**self.settings(res, precision))
            return self._models[key]

    def compile(self, key: tuple, matting, shape, dtype, bgr_shape=None):
        """Compile ``matting`` for float/uint8 inputs of ``shape`` in the pool (once per matting and
        shape); the future gives the seconds it took."""
        import numpy as np

        bgr_shape = bgr_shape or shape
        compile_key = (id(matting), tuple(shape), str(dtype), tuple(bgr_shape))
        if compile_key not in self.futures:
            def work():
                start = time.perf_counter()
                matting.compiled_for(shape, np.dtype(dtype), bgr_shape, np.dtype(dtype))
                return time.perf_counter() - start

            self.futures[compile_key] = self.pool.submit(work)
        self.futures[key] = self.futures[compile_key]
        return self.futures[key]

    def wait(self, key: tuple, section: Section) -> float | None:
        """Seconds the compilation took, or None (recorded as skipped or failed) when it is not ready in
        the section's time."""
        future = self.futures.get(key)
        if future is None:
            return None
        # an inline compilation cannot be stopped once started: start it only with time for a typical one
        if self.inline and not future.done() and not section.has_time(f"compile {key}", need=self.plan.compile_s):
            return None
        try:
            return future.result(timeout=max(0.0, section.remaining()))
        except concurrent.futures.TimeoutError:
            future.cancel()
            section.skip(str(key), "not compiled within the section budget")
        except Exception as e:
            section.add(failure(f"compile {key}", e))
        return None

    def cancel_pending(self) -> None:
        """Stop the pool's queued compilations (inline ones cost nothing until asked for)."""
        if self.inline:
            return
        for future in self.futures.values():
            future.cancel()


# ---------------------------------------------------------------------------------------------- parity


def compare(a: dict, b: dict, sad_of: str = "pha") -> dict:
    """max |a - b| per output, the alpha's SAD (sum |diff| / 1000, the paper's unit) and cell agreement."""
    import numpy as np

    out = {f"max_abs_{k}": float(np.max(np.abs(a[k] - b[k]))) for k in ("pha", "fgr", "err")}
    out["pha_sad"] = float(np.sum(np.abs(a[sad_of] - b[sad_of])) / 1000)
    ref_a, ref_b = a["ref"] > 0.5, b["ref"] > 0.5
    out["selected_cells"] = int(ref_a.sum())
    out["same_cells"] = bool(np.array_equal(ref_a, ref_b))
    out["share_identical_cells"] = float((ref_a & ref_b).sum() / max(int(ref_a.sum()), 1))
    out["max_abs"] = max(out["max_abs_pha"], out["max_abs_fgr"], out["max_abs_err"])
    return out


def submit_parity(setup: Setup, plan: Plan) -> dict:
    """Reference models, converted weights and the JAX compilations for the parity cases (pool)."""
    import reference

    from bgm_jax.checkpoint import abstract_variables
    from bgm_jax.convert.keys import torch_to_flax

    cases = {}
    for backbone, res, precisions in plan.parity:
        width, height, scale, pixels = setup.resolution(res)
        # prevent_oversampling off: the settings the model-only section times, so both share compilations
        model = reference.inference_model(backbone, backbone_scale=scale, sample_pixels=pixels,
                                          prevent_oversampling=False)
        config = {"model_type": "refine", "backbone": backbone, "refine_kernel_size": 3}
        params, stats = torch_to_flax(reference.state_dict_numpy(model), abstract_variables(config))
        setup.use_weights(backbone, {"params": params, "batch_stats": stats})
        mattings = {p: setup.matting(backbone, res, p) for p in precisions}
        for p, matting in mattings.items():
            setup.compile(("parity", backbone, res, p), matting, (1, height, width, 3), "float32")
        cases[(backbone, res)] = (model, mattings)
    return cases


def run_parity(section: Section, setup: Setup, cases: dict) -> None:
    import numpy as np
    import reference

    for (backbone, res), (model, mattings) in cases.items():
        width, height, _, pixels = setup.resolution(res)
        what = f"{backbone} {width}x{height}"
        try:
            src, bgr = reference.inputs(1, height, width)
            ref32 = reference.run_outputs(model, src, bgr, "float32")
            ref_tf32 = reference.run_outputs(model, src, bgr, "tf32")
            margin = reference.selection_margin(model, src, bgr)
            src_np, bgr_np = reference.nhwc(src), reference.nhwc(bgr)
        except Exception as e:
            section.add(failure(f"reference {what}", e))
            continue
        ours = {}
        for precision, matting in mattings.items():
            key = ("parity", backbone, res, precision)
            if setup.wait(key, section) is None:
                continue
            try:
                result = matting(src_np, bgr_np)
                ours[precision] = {k: np.asarray(getattr(result, k), np.float32) for k in ("pha", "fgr", "err", "ref")}
            except Exception as e:
                section.add(failure(f"{what} {precision}", e))
        row = {"what": what, "backbone": backbone, "width": width, "height": height, "batch": 1,
               "sample_pixels": pixels, "patches": pixels // 16, "selection_margin": margin,
               "reference": "torch float32 (TF32 off)",
               "reference_tf32_vs_float32": compare(ref_tf32, ref32)}
        for precision, outputs in ours.items():
            against_ref = compare(outputs, ref32)
            entry = {"matmul_precision": mattings[precision].settings.matmul_precision, "vs_reference": against_ref}
            if precision == "float32":
                entry["pass"] = against_ref["max_abs"] <= PARITY_TOLERANCE and against_ref["same_cells"]
                entry["tolerance"] = PARITY_TOLERANCE
            elif "float32" in ours:
                entry["vs_jax_float32"] = compare(outputs, ours["float32"])
            row[precision] = entry
        row["status"] = "ok" if ours else "error"
        section.add(row)


# ---------------------------------------------------------------------------------------------- model only


def submit_model(setup: Setup, plan: Plan) -> dict:
    configs = {}
    for backbone, res, batch, precision in plan.model:
        width, height, _, _ = setup.resolution(res)
        matting = setup.matting(backbone, res, precision)
        key = ("model", backbone, res, batch, precision)
        setup.compile(key, matting, (batch, height, width, 3), "float32")
        configs[key] = matting
    return configs


def run_model(section: Section, setup: Setup, plan: Plan, configs: dict) -> None:
    import reference

    from bgm_jax.cli.bench import measure_model, xla_gflops

    torch_models: dict = {}
    torch_fps: dict = {}
    # every compilation first, so nothing compiles while the clocks run (the reference's eager launches
    # would feel a busy CPU most), as long as that leaves time to time them; later ones are waited for
    # one by one and their rows say so
    if not setup.inline:
        concurrent.futures.wait([setup.futures[key] for key in configs],
                                timeout=max(0.0, section.remaining() - plan.model_timing_reserve))
    for key, matting in configs.items():
        _, backbone, res, batch, precision = key
        width, height, scale, pixels = setup.resolution(res)
        what = f"{backbone} {res} batch {batch} {precision}"
        pending = 0 if setup.inline else sum(not setup.futures[k].done() for k in configs)
        compile_s = setup.wait(key, section)
        if compile_s is None:
            continue
        if not section.has_time(what, need=5):
            break
        try:
            result = measure_model(matting, width, height, batch, repeats=plan.model_repeats, warmup=plan.warmup,
                                   seed=0)
        except Exception as e:
            section.add(failure(what, e))
            continue
        result.pop("times_ms", None)
        compiled = matting.compiled_for((batch, height, width, 3), "float32", (batch, height, width, 3), "float32")
        row = {"what": what, "res": res, "status": "ok", **result, "compile_s": round(compile_s, 2),
               "compile_note": ("in the main thread, alone" if setup.inline
                                else "in the pool, concurrently with other compilations"),
               "compilations_running_meanwhile": pending,
               "xla_gflops": xla_gflops(compiled),
               "paper_2080ti_fps": PAPER_2080TI_FPS.get((backbone, res, batch, precision))}
        # the reference at the same backbone, size and batch: float32 (TF32 off) and float16 (the original's
        # speed test: model.half()), once each; a mode that fails is recorded alone
        ref_key = (backbone, res, batch)
        if ref_key not in torch_fps and section.has_time(f"reference {ref_key}", need=5):
            torch_fps[ref_key] = {}
            try:
                if backbone not in torch_models:
                    model = reference.inference_model(backbone, backbone_scale=scale, sample_pixels=pixels,
                                                      prevent_oversampling=False)
                    torch_models[backbone] = {"float32": model, "float16": reference.half_model(model)}
                src, bgr = reference.inputs(batch, height, width)
                for mode, model in torch_models[backbone].items():
                    reference.set_resolution(model, scale, pixels)
                    try:
                        times = reference.time_model(model, src, bgr, mode, repeats=plan.torch_repeats,
                                                     warmup=plan.warmup)
                        torch_fps[ref_key][mode] = batch * 1e3 / median_ms(times)
                    except Exception as e:
                        torch_fps[ref_key][f"{mode}_error"] = f"{type(e).__name__}: {e}"[:500]
                del src, bgr
            except Exception as e:
                torch_fps[ref_key]["error"] = f"{type(e).__name__}: {e}"[:500]
        reference_fps = torch_fps.get(ref_key, {})
        row["torch_fps"] = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in reference_fps.items()}
        mode = "float32" if precision in ("float32", "tf32") else "float16"
        if isinstance(reference_fps.get(mode), float):
            row["ratio_vs_torch"] = round(result["fps_median"] / reference_fps[mode], 3)
            row["ratio_vs_torch_mode"] = mode
        section.add(row)


# ---------------------------------------------------------------------------------------------- refiner


def run_refiner(section: Section, setup: Setup, plan: Plan, model_configs: dict) -> None:
    """The compiled model's refiner operations on this backend, and the formulations timed."""
    import jax
    import variants

    for key, matting in model_configs.items():
        _, backbone, res, batch, precision = key
        if backbone != plan.compile_case[0] or precision != "float32" or batch != 1:
            continue
        future = setup.futures.get(key)
        if future is None or not future.done() or future.exception() is not None:
            continue
        width, height, _, _ = setup.resolution(res)
        compiled = matting.compiled_for((1, height, width, 3), "float32", (1, height, width, 3), "float32")
        section.add({"what": f"compiled ops {backbone} {res} batch 1 float32", "status": "ok",
                     "ops": variants.op_summary(compiled.as_text())})
    for res in plan.refiner_res:
        width, height, _, pixels = setup.resolution(res)
        k = pixels // 16
        for batch in plan.refiner_batches:
            if not section.has_time(f"refiner {res} batch {batch}", need=3):
                return
            try:
                problem = variants.problems(height, width, k, batch)
                cases = variants.cases(height, width, k)
                compiled = {}
                futures = {name: setup.pool.submit(lambda f=fn, p=problem: jax.jit(f).lower(p).compile())
                           for name, (fn, _) in cases.items()}
                for name, future in futures.items():
                    compiled[name] = future.result(timeout=max(0.0, section.remaining()))
                outputs = {name: jax.block_until_ready(c(problem)) for name, c in compiled.items()}
                for name, (_, used) in cases.items():
                    times = []
                    for _ in range(plan.refiner_repeats):
                        start = time.perf_counter()
                        jax.block_until_ready(compiled[name](problem))
                        times.append(time.perf_counter() - start)
                    section.add({
                        "what": f"{name} {res} batch {batch}", "status": "ok", "formulation": name,
                        "in_use": used is None, "res": res, "batch": batch, "k": k, "median_ms": median_ms(times),
                        "same_result_as_in_use": None if used is None else variants.same_result(
                            name, outputs[name], outputs[used]),
                        "ops": variants.op_summary(compiled[name].as_text())})
            except concurrent.futures.TimeoutError:
                section.skip(f"refiner {res} batch {batch}", "not compiled within the section budget")
                return
            except Exception as e:
                section.add(failure(f"refiner {res} batch {batch}", e))


# ---------------------------------------------------------------------------------------------- compile


def child_compile(args) -> None:
    """--child compile: a fresh process that compiles one model with the persistent cache in --cache."""
    start = time.perf_counter()
    import jax
    import numpy as np

    from bgm_jax.cli.bench import CacheHits
    from bgm_jax.cli.common import random_weight_matting

    imported = time.perf_counter() - start
    setup = Setup(smoke_plan() if args.smoke else full_plan(), Path(args.cache))
    backbone, res = args.case.split(":")
    width, height, _, _ = setup.resolution(res)
    matting = random_weight_matting(backbone, setup.settings(res, "float32"), compilation_cache=args.cache)
    jax.block_until_ready(matting.variables)
    ready = time.perf_counter() - start
    shape = (1, height, width, 3)
    with CacheHits() as hits:
        t = time.perf_counter()
        compiled = matting.compiled_for(shape, np.uint8, shape, np.uint8)
        compile_s = time.perf_counter() - t
    src = np.random.default_rng(0).integers(0, 256, shape, np.uint8)
    t = time.perf_counter()
    jax.block_until_ready(compiled(matting.variables, src, src))
    first_call = time.perf_counter() - t
    print(json.dumps({"import_s": round(imported, 3), "weights_ready_s": round(ready, 3),
                      "compile_s": round(compile_s, 3), "cache_hits": hits.count,
                      "first_call_s": round(first_call, 4),
                      "to_first_result_s": round(time.perf_counter() - start, 3)}))
    setup.pool.shutdown(wait=False)


def run_compile(section: Section, plan: Plan, smoke: bool) -> None:
    backbone, res = plan.compile_case
    cache = Path(tempfile.mkdtemp(prefix="bgm-device-cold-cache-"))
    for run in ("first process, empty cache", "second process, persistent cache"):
        if not section.has_time(run, need=10):
            return
        command = [sys.executable, str(Path(__file__).resolve()), "--child", "compile", "--cache", str(cache),
                   "--case", f"{backbone}:{res}"] + (["--smoke"] if smoke else [])
        start = time.perf_counter()
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=max(1.0, section.remaining()),
                                  env=child_env())
        except subprocess.TimeoutExpired:
            section.skip(run, "the process did not finish within the section budget")
            return
        wall = time.perf_counter() - start
        line = next((l for l in reversed(proc.stdout.splitlines()) if l.startswith("{")), None)
        if proc.returncode != 0 or line is None:
            section.add({"what": run, "status": "error", "returncode": proc.returncode,
                         "error": proc.stderr[-3000:]})
            return
        section.add({"what": run, "status": "ok", "backbone": backbone, "res": res, "precision": "float32",
                     "input": "uint8 batch 1", "process_wall_s": round(wall, 2), **json.loads(line)})


def child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(ROOT)) if p)
    # this process and torch already hold most of the GPU's memory: the child allocates as it goes
    env.pop("XLA_PYTHON_CLIENT_MEM_FRACTION", None)
    env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    return env


# ---------------------------------------------------------------------------------------------- end to end


def write_clip(path: Path, width: int, height: int, frames: int, fps: int):
    """A subject (a textured disc) moving over a static textured background, H.264; returns the plate."""
    import av
    import numpy as np

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    plate = np.stack([xx / width, yy / height, 0.5 + 0.5 * np.sin(xx / 37 + yy / 23)], axis=-1) * 200
    plate = (plate + rng.integers(0, 30, (height, width, 3))).clip(0, 255).astype(np.uint8)
    texture = rng.integers(0, 256, (height, width, 3), np.uint8)
    radius = height / 3
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "20"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.thread_type = "AUTO"
        for i in range(frames):
            cx = width * (0.25 + 0.5 * i / max(frames - 1, 1))
            inside = (xx - cx) ** 2 + (yy - height / 2) ** 2 < radius ** 2
            frame = np.where(inside[..., None], texture, plate)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return plate


def count_frames(path: Path) -> int:
    from bgm_jax.io.video_reader import VideoReader

    with VideoReader(path) as reader:
        return sum(1 for _ in reader)


VIDEO_SUMMARY = re.compile(r"video: (\d+) frames in ([\d.]+) s = ([\d.]+) fps end to end .*compilation took ([\d.]+) s")


def submit_e2e(setup: Setup, plan: Plan) -> None:
    """Pre-compile what `bgm-jax video` will compile (same settings, shapes, cache): its run then reads
    the executable from the persistent cache, and the section's time goes to the video itself."""
    from bgm_jax.cli.common import random_weight_matting

    width, height = plan.clip[:2]
    for backbone, batch, precision in plan.e2e:
        settings = e2e_settings(setup, precision)
        matting = random_weight_matting(backbone, settings, compilation_cache=str(setup.cache_dir))
        setup.compile(("e2e", backbone, batch, precision), matting, (batch, height, width, 3), "uint8",
                      bgr_shape=(1, height, width, 3))


def e2e_settings(setup: Setup, precision: str) -> dict:
    """`bgm-jax video`'s defaults (the paper's settings for the frame size, prevent_oversampling on);
    smoke: the sample pixels scaled as everywhere else."""
    settings = {"precision": precision}
    if setup.plan.scale_pixels:
        settings["refine_sample_pixels"] = setup.resolution("hd")[3]
    return settings


def run_e2e(section: Section, setup: Setup, plan: Plan, work: Path) -> None:
    import reference

    from bgm_jax.checkpoint import save_model
    from bgm_jax.cli import main as cli_main
    from bgm_jax.cli.common import random_variables

    width, height, frames, fps = plan.clip
    clip, plate_path = work / "clip.mp4", work / "bgr.png"
    try:
        start = time.perf_counter()
        plate = write_clip(clip, width, height, frames, fps)
        from PIL import Image

        Image.fromarray(plate).save(plate_path)
        section.add({"what": "clip", "status": "ok", "width": width, "height": height, "frames": frames, "fps": fps,
                     "seconds_of_video": frames / fps, "bytes": clip.stat().st_size,
                     "generate_s": round(time.perf_counter() - start, 2)})
    except Exception as e:
        section.add(failure("clip", e))
        return
    for backbone, batch, precision in plan.e2e:
        what = f"bgm-jax video {backbone} batch {batch} {precision}"
        setup.wait(("e2e", backbone, batch, precision), section)
        if not section.has_time(what, need=10):
            return
        model_dir, out = work / f"model-{backbone}", work / f"com-{backbone}-{batch}-{precision}.mp4"
        try:
            if not model_dir.exists():
                config = {"model_type": "refine", "backbone": backbone, "refine_kernel_size": 3}
                save_model(model_dir, random_variables(config), config)
            argv = ["video", "--model", str(model_dir), "--src", str(clip), "--bgr", str(plate_path),
                    "--com", str(out), "--batch", str(batch), "--precision", precision, "--no-progress",
                    "--overwrite", "--compilation-cache", str(setup.cache_dir)]
            if plan.scale_pixels:
                argv += ["--refine-sample-pixels", str(e2e_settings(setup, precision)["refine_sample_pixels"])]
            stdout = io.StringIO()
            start = time.perf_counter()
            with contextlib.redirect_stdout(stdout):
                code = cli_main(argv)
            wall = time.perf_counter() - start
            match = VIDEO_SUMMARY.search(stdout.getvalue())
            if code != 0 or match is None:
                section.add({"what": what, "status": "error", "exit_code": code, "stdout": stdout.getvalue()[-2000:]})
                continue
            written = count_frames(out)
            section.add({"what": what, "status": "ok", "backbone": backbone, "batch": batch, "precision": precision,
                         "command": "bgm-jax " + " ".join(argv), "frames": int(match.group(1)),
                         "seconds": float(match.group(2)), "fps": float(match.group(3)),
                         "compile_s": float(match.group(4)), "command_wall_s": round(wall, 2),
                         "output_frames": written, "output_complete": written == frames,
                         "output_bytes": out.stat().st_size})
        except Exception as e:
            section.add(failure(what, e))
    backbone, mode = plan.e2e_reference
    what = f"reference sequential loop {backbone} {mode}"
    if not section.has_time(what, need=15):
        return
    try:
        _, _, scale, pixels = setup.resolution("hd")
        model = reference.inference_model(backbone, backbone_scale=scale, sample_pixels=pixels,
                                          prevent_oversampling=True)
        result = reference.sequential_video(model, clip, plate, work / "com-reference.mp4", mode)
        ours = next((r for r in section.record["results"]
                     if r.get("backbone") == backbone and r.get("precision") == mode and r.get("batch") == 1), None)
        row = {"what": what, "status": "ok", "backbone": backbone, "precision": mode, **result}
        if ours is not None:
            row["ratio_bgm_jax_vs_reference"] = float(f"{ours['fps'] / result['fps']:.4g}")
        section.add(row)
    except Exception as e:
        section.add(failure(what, e))


# ---------------------------------------------------------------------------------------------- training


def build_train_step(stage: str, backbone: str, crop: int, batch: int, precision: str):
    """The project's jitted train step (augmentation on the device + forward + loss + backward + Adam),
    as benchmarks/bench_train_step.py builds it; returns (step, state, batch) ready to compile."""
    import functools

    import jax
    import numpy as np
    from flax.training.dynamic_scale import DynamicScale

    from bgm_jax.cli.common import random_variables
    from train.config import TrainConfig
    from train.loop import augment_config, build_model, make_loss, make_prepare
    from train.trainer import TrainState, make_optimizer, train_step

    config = TrainConfig(stage=stage, backbone=backbone, precision=precision, augment=stage, crop_size=None,
                         canvas=(crop, crop))
    model = build_model(config)
    # drawn on the host (seconds) rather than by a compiled init (minutes on a small CPU); same tree
    variables = random_variables({"model_type": stage, "backbone": backbone, "refine_kernel_size": 3})
    tx = make_optimizer(config.learning_rates(), params=variables["params"])
    state = TrainState.create(variables["params"], variables["batch_stats"], tx, jax.random.key(1),
                              DynamicScale() if precision == "float16" else None)
    step = jax.jit(functools.partial(train_step, model=model, prepare=make_prepare(augment_config(config), None),
                                     loss_fn=make_loss(config.stage)), donate_argnums=(0,))
    rng = np.random.default_rng(0)
    shape = (batch, crop, crop)
    data = {"fgr": rng.integers(0, 256, shape + (3,), np.uint8), "pha": rng.integers(0, 256, shape + (1,), np.uint8),
            "bgr": rng.integers(0, 256, shape + (3,), np.uint8)}
    return step, jax.device_put(state), data


def run_train(section: Section, setup: Setup, plan: Plan) -> None:
    """Steps compile two at a time in the pool (in the plan's order of importance); each pair is timed
    once both are compiled, so no compilation competes with a timed step."""
    backbone = plan.train_backbone
    references: dict = {}
    for first in range(0, len(plan.train), 2):
        group = plan.train[first:first + 2]
        if not section.has_time(f"train steps {group}", need=20):
            return
        futures = {case: setup.pool.submit(compile_train_step, backbone, *case) for case in group}
        ready = {}
        for case, future in futures.items():
            what = train_label(backbone, case)
            try:
                ready[case] = future.result(timeout=max(0.0, section.remaining()))
            except concurrent.futures.TimeoutError:
                section.skip(what, "not compiled within the section budget")
            except Exception as e:
                section.add(failure(what, e))
        for case, prepared in ready.items():
            if not section.has_time(train_label(backbone, case), need=5):
                return
            time_train_case(section, plan, backbone, case, prepared, references)


def train_label(backbone: str, case: tuple) -> str:
    stage, crop, batch, precision = case
    return f"train {stage} {backbone} {crop}x{crop} batch {batch} {precision}"


def compile_train_step(backbone: str, stage: str, crop: int, batch: int, precision: str):
    step, state, data = build_train_step(stage, backbone, crop, batch, precision)
    start = time.perf_counter()
    compiled = step.lower(state, data).compile()
    return compiled, state, data, time.perf_counter() - start


def time_train_case(section: Section, plan: Plan, backbone: str, case: tuple, prepared, references: dict) -> None:
    import jax
    import reference

    stage, crop, batch, precision = case
    what = train_label(backbone, case)
    compiled, state, data, compile_s = prepared
    try:
        data = jax.device_put(data)
        state, metrics = compiled(state, data)
        jax.block_until_ready(metrics)
        times = []
        for _ in range(plan.train_repeats):
            start = time.perf_counter()
            state, metrics = compiled(state, data)
            jax.block_until_ready(metrics)
            times.append(time.perf_counter() - start)
        step_ms = median_ms(times)
        row = {"what": what, "status": "ok", "stage": stage, "backbone": backbone, "crop": crop, "batch": batch,
               "precision": precision, "matmul_precision": "default", "includes": "augmentation on the device",
               "compile_s": round(compile_s, 2), "step_ms": step_ms, "images_per_s": round(batch * 1e3 / step_ms, 3),
               "loss_finite": bool(jax.numpy.isfinite(metrics["loss"])),
               "loss_scale": float(metrics["loss_scale"]) if "loss_scale" in metrics else None}
    except Exception as e:
        section.add(failure(what, e))
        return
    finally:
        del state, data
    ref_key = (stage, crop, batch)
    if ref_key not in references and section.has_time(f"reference {what}", need=10):
        try:
            references[ref_key] = reference.time_train_step(stage, backbone, crop, batch,
                                                             repeats=plan.train_repeats, warmup=plan.warmup)
        except Exception as e:
            references[ref_key] = {"error": f"{type(e).__name__}: {e}"[:500]}
    if ref_key in references:
        row["reference"] = references[ref_key]
        if "images_per_s" in references[ref_key]:
            row["ratio_vs_reference"] = float(f"{row['images_per_s'] / references[ref_key]['images_per_s']:.4g}")
    section.add(row)


# ---------------------------------------------------------------------------------------------- markdown


def markdown(data: dict) -> str:
    env = data.get("environment", {})
    versions = env.get("versions", {})
    title = "# Device check" + (" (SMOKE: CPU, tiny sizes, not a measurement)" if data.get("smoke") else "")
    lines = [title, "", f"- command: `{data.get('command')}`",
             f"- started {data.get('started')}, updated {data.get('updated')}",
             f"- device: {env.get('device_kind')} ({env.get('backend')}), "
             f"{env.get('local_device_count')} local device(s); jax {versions.get('jax')}, "
             f"jaxlib {versions.get('jaxlib')}, torch {env.get('torch', {}).get('torch_version')}",
             f"- precision policy: {data.get('precision_policy')}", ""]
    sections = data.get("sections", {})
    lines += ["| section | status | seconds | budget s | results | skipped |", "|---|---|---|---|---|---|"]
    for name, s in sections.items():
        lines.append(f"| {name} | {s.get('status')} | {s.get('seconds', '')} | {s.get('budget_s')} | "
                     f"{len(s.get('results', []))} | {len(s.get('skipped', []))} |")
    parity = sections.get("parity", {}).get("results", [])
    if parity:
        lines += ["", "## Parity against the reference (torch float32, TF32 off)", "",
                  "| case | precision | max abs vs ref | same cells | vs jax float32: max abs | SAD | "
                  "identical cells |", "|---|---|---|---|---|---|---|"]
        nan = float("nan")
        for r in parity:
            for p in PRECISIONS:
                if p in r:
                    v, j = r[p]["vs_reference"], r[p].get("vs_jax_float32", {})
                    passed = " (pass)" if r[p].get("pass") else ""
                    lines.append(f"| {r['what']} | {p}{passed} | {v['max_abs']:.2e} | {v['same_cells']} | "
                                 f"{j.get('max_abs', nan):.2e} | {j.get('pha_sad', nan):.3f} | "
                                 f"{j.get('share_identical_cells', nan):.4f} |")
    model = [r for r in sections.get("model", {}).get("results", []) if r.get("status") == "ok"]
    if model:
        lines += ["", "## Model only (median FPS, batch / time per call)", "",
                  "| backbone | res | batch | precision | FPS | torch float32 | torch float16 | ratio | "
                  "paper 2080 Ti |", "|---|---|---|---|---|---|---|---|---|"]
        for r in model:
            t = r.get("torch_fps", {})
            lines.append(f"| {r['backbone']} | {r['res']} | {r['batch']} | {r['precision']} | {r['fps_median']:.1f} | "
                         f"{t.get('float32', '')} | {t.get('float16', '')} | {r.get('ratio_vs_torch', '')} "
                         f"({r.get('ratio_vs_torch_mode', '')}) | {r.get('paper_2080ti_fps') or ''} |")
    for name in ("refiner", "compile", "e2e", "train"):
        rows = [r for r in sections.get(name, {}).get("results", []) if r.get("status") == "ok"]
        if rows:
            lines += ["", f"## {name}", ""]
            for r in rows:
                keep = {k: v for k, v in r.items() if k not in ("what", "status", "ops", "command", "times_ms")
                        and not isinstance(v, (dict, list))}
                if "ops" in r and "median_ms" not in r:
                    keep = {op: n for op, n in r["ops"].items() if n}
                lines.append(f"- {r['what']}: " + ", ".join(f"{k} {v}" for k, v in keep.items()))
    errors = [(n, r) for n, s in sections.items() for r in s.get("results", []) if r.get("status") == "error"]
    skipped = [(n, s_) for n, s in sections.items() for s_ in s.get("skipped", [])]
    if errors or skipped:
        lines += ["", "## Errors and skips", ""]
        lines += [f"- {n}: {r.get('what')}: {r.get('error', '')[:300]}" for n, r in errors]
        lines += [f"- {n}: skipped {s['what']}: {s['reason']}" for n, s in skipped]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- main


PRECISION_POLICY = ("float32 = full float32 (jax.default_matmul_precision('highest'); torch TF32 off); tf32 = the "
                    "backend default (TF32 convolutions on NVIDIA GPUs; torch's own default); bfloat16/float16 = "
                    "compute dtype with float32 parameters (torch: autocast)")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="folder for device_check.json and device_check.md")
    parser.add_argument("--smoke", action="store_true", help="the same code path on the CPU at tiny sizes")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--budget", type=float, help="total seconds (default: 500 on the device, 1200 smoke)")
    parser.add_argument("--compile-workers", type=int,
                        help="compile threads (default 0: each compilation in the main thread when first needed)")
    parser.add_argument("--child", choices=["compile"], help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.smoke:
        for name in DEVICE_LACKS:
            sys.modules.setdefault(name, None)  # `import name` now fails, as on the GPU machine
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        # compile fast rather than well: the smoke run proves the code path, its speed means nothing
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
                                   " --xla_llvm_disable_expensive_passes=true").strip()
    else:
        # JAX takes 75% of the GPU's memory up front by default; leave the reference (torch) its share.
        os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.5")
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if args.child == "compile":
        child_compile(args)
        return 0
    if not args.out:
        print("--out is required", file=sys.stderr)
        return 2
    started = time.monotonic()
    plan = smoke_plan() if args.smoke else full_plan()
    if args.compile_workers is not None:
        plan = dataclasses.replace(plan, compile_workers=max(0, args.compile_workers))
    total = args.budget or plan.total_budget
    chosen = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        print(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bgm-device-check-"))
    report = Report(out, {
        "schema": 1, "smoke": args.smoke, "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started": now(), "total_budget_s": total, "section_budgets_s": plan.budgets, "sections_chosen": chosen,
        "precision_policy": PRECISION_POLICY, "plan": dataclasses.asdict(plan),
        "imports_blocked": list(DEVICE_LACKS) if args.smoke else [], "sections": {}})
    report.save()
    deadline = started + total
    try:
        import reference  # noqa: F401  (torch first: both frameworks then share the GPU from the start)

        report.data["environment"] = environment(args, plan)
        report.data["setup_s"] = round(time.monotonic() - started, 1)
        report.save()
        setup = Setup(plan, work / "xla-cache")
        from bgm_jax.inference import enable_compilation_cache

        enable_compilation_cache(setup.cache_dir)
        # everything the timed sections compile starts compiling now, in their order
        parity_cases = submit_parity(setup, plan) if "parity" in chosen else {}
        if "e2e" in chosen:
            submit_e2e(setup, plan)
        model_configs = submit_model(setup, plan) if {"model", "refiner"} & set(chosen) else {}
        report.data["submitted_s"] = round(time.monotonic() - started, 1)
        runners = {
            "parity": lambda s: run_parity(s, setup, parity_cases),
            "model": lambda s: run_model(s, setup, plan, model_configs),
            "refiner": lambda s: run_refiner(s, setup, plan, model_configs),
            "compile": lambda s: run_compile(s, plan, args.smoke),
            "e2e": lambda s: run_e2e(s, setup, plan, work),
            "train": lambda s: run_train(s, setup, plan),
        }
        planned = 0.0
        for name in SECTIONS:
            planned += plan.budgets[name]
            if name not in chosen:
                continue
            # a section may use its own budget plus what earlier sections left unspent, never past the end
            budget = min(plan.budgets[name] + max(0.0, planned - plan.budgets[name] - (time.monotonic() - started)),
                         deadline - time.monotonic())
            if budget <= 1:
                report.data["sections"][name] = {"status": "skipped", "reason": "total budget spent", "results": [],
                                                 "skipped": []}
                report.save()
                continue
            section = Section(report, name, budget, deadline)
            try:
                runners[name](section)
                section.finish()
            except Exception as e:
                section.add(failure(name, e))
                section.finish("error", f"{type(e).__name__}: {e}")
            if name == "refiner":
                setup.cancel_pending()  # timed sections are done with the pool's first batch of work
        setup.pool.shutdown(wait=False, cancel_futures=True)
    except KeyboardInterrupt:
        report.data["interrupted"] = True
        print("device check: interrupted; partial results written", file=sys.stderr)
    finally:
        report.data["finished"] = now()
        report.data["wall_s"] = round(time.monotonic() - started, 1)
        report.save()
        shutil.rmtree(work, ignore_errors=True)
    print(markdown(report.data))
    print(f"device check: wrote {out / 'device_check.json'} and {out / 'device_check.md'} "
          f"in {report.data['wall_s']} s", flush=True)
    sys.stderr.flush()
    os._exit(0)  # do not wait for compile threads still running past the budget


if __name__ == "__main__":
    sys.exit(main())
