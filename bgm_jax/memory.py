"""Memory a compiled model call needs, memory the device has, and the errors when one exceeds the other.

The estimate starts from XLA's own buffer assignment of the compiled call (``memory_analysis()``: the
temporary buffers, i.e. every activation alive at the peak, plus arguments and outputs), which is known
after compiling and before anything is allocated, for the exact size, batch and precision. XLA does
not see everything the runtime allocates, so the figure is scaled:

- CPU: x2.5 + 512 MiB. Measured on this project's CPU (peak RSS growth of one call, MobileNetV2 and
  ResNet-50, 512x512 to 4K, batch 1-2, float32/bfloat16): 1.3-2.4x XLA's figure plus ~200 MB of
  thread pools and convolution scratch on the first call. Compared with the physical RAM.
- accelerators: x1.2 (cuDNN/cuBLAS workspaces are XLA buffers there; the margin covers allocator
  fragmentation). Compared with what the device's allocator can still hand out.

It errs on the side of refusing: a refused size needs more than the machine has, up to that margin.
``BGM_JAX_SKIP_MEMORY_CHECK=1`` turns the check off (an out-of-memory error then comes from the device).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from bgm_jax.errors import DeviceMemoryError

CPU_FACTOR = 2.5
CPU_OVERHEAD_BYTES = 512 * 2**20
ACCELERATOR_FACTOR = 1.2
ADVICE = "try a smaller batch (--batch), --precision bfloat16 or a smaller image size"


def format_bytes(count: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(count) < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


def xla_call_bytes(compiled) -> int | None:
    """XLA's buffer assignment of a compiled call: temporaries + arguments + outputs - aliased; None when
    the backend does not report it."""
    try:
        stats = compiled.memory_analysis()
    except Exception:  # not every backend implements it
        return None
    if stats is None:
        return None
    return int(stats.temp_size_in_bytes + stats.argument_size_in_bytes + stats.output_size_in_bytes
               - stats.alias_size_in_bytes)


def estimate_call_bytes(compiled, platform: str) -> int | None:
    """The conservative estimate described in the module docstring, or None when XLA gives no figure."""
    xla = xla_call_bytes(compiled)
    if xla is None:
        return None
    if platform == "cpu":
        return int(CPU_FACTOR * xla + CPU_OVERHEAD_BYTES)
    return int(ACCELERATOR_FACTOR * xla)


def physical_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


@dataclass(frozen=True)
class Available:
    bytes: int
    what: str  # "the CPU's physical RAM", "free memory on cuda:0"


def available_memory(device, resident_bytes: int = 0) -> Available | None:
    """What a call on ``device`` can use. ``resident_bytes`` (the weights, already on the device and also
    part of the estimate) are added back to the free memory of an accelerator. None when unknown."""
    if device.platform == "cpu":
        total = physical_memory_bytes()
        return None if total is None else Available(total, "the CPU's physical RAM")
    try:
        stats = device.memory_stats()
    except Exception:
        stats = None
    if not stats or "bytes_limit" not in stats:
        return None
    free = stats["bytes_limit"] - stats.get("bytes_in_use", 0) + resident_bytes
    return Available(int(free), f"the free memory of {device.platform}:{device.id}")


def describe_call(shape, precision: str) -> str:
    batch, height, width = shape[0], shape[1], shape[2]
    return f"{width}x{height} at batch {batch}, {precision}"


def check_call_fits(compiled, device, *, shape, precision: str, resident_bytes: int = 0) -> int | None:
    """Raise ``DeviceMemoryError`` when the call cannot fit; returns the estimate (None when unknown)."""
    if os.environ.get("BGM_JAX_SKIP_MEMORY_CHECK", "") not in ("", "0"):
        return None
    needed = estimate_call_bytes(compiled, device.platform)
    available = available_memory(device, resident_bytes)
    if needed is None or available is None or needed <= available.bytes:
        return needed
    raise DeviceMemoryError(
        f"{describe_call(shape, precision)}: the model needs about {format_bytes(needed)} of memory "
        f"(estimated before allocating), more than {available.what} ({format_bytes(available.bytes)}); {ADVICE}"
    )


def is_out_of_memory(error: BaseException) -> bool:
    """An XLA allocation failure (jax raises it as a JaxRuntimeError with RESOURCE_EXHAUSTED)."""
    if type(error).__name__ not in ("JaxRuntimeError", "XlaRuntimeError"):
        return False
    text = str(error)
    return "RESOURCE_EXHAUSTED" in text or "ut of memory" in text


def out_of_memory_error(error: BaseException, *, shape, precision: str) -> DeviceMemoryError:
    first_line = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
    return DeviceMemoryError(f"{describe_call(shape, precision)}: the device ran out of memory ({first_line}); "
                             f"{ADVICE}")
