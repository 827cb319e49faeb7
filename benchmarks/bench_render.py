"""Where should float outputs become uint8 pixels: on the device (XLA) or on the host (numpy)?

    python benchmarks/bench_render.py --size 1280x720 --size 1920x1080 --repeats 20

Times, per frame, what the video command's encode thread waits for before encoding: the device path
(``render_on_device`` + copying the uint8 products to the host) against the host path (copying float32
``pha``/``fgr`` to the host + ``render_on_host``), for the products of a composited MP4 plus an alpha
output. Model outputs are random device arrays; the model itself is not run. Prints the median and the
bytes each path moves from the device.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from bgm_jax.inference import MattingResult
from bgm_jax.io.render import render_on_device, render_on_host
from bgm_jax.model_spec import padded_size

PRODUCTS = ("composite", "pha")


def fake_result(batch: int, height: int, width: int, seed: int = 0) -> MattingResult:
    rng = np.random.default_rng(seed)
    pha = jax.device_put(rng.random((batch, height, width, 1), np.float32))
    fgr = jax.device_put(rng.random((batch, height, width, 3), np.float32))
    err = jax.device_put(rng.random((batch, height // 4, width // 4, 1), np.float32))
    ref = jax.device_put((rng.random((batch, height // 4, width // 4, 1)) > 0.9).astype(np.float32))
    return MattingResult(pha, fgr, err, ref)


def median_ms(fn, repeats: int) -> float:
    fn()  # compile / warm caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", action="append", help="WIDTHxHEIGHT (repeatable; default 1280x720, 1920x1080)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    sizes = args.size or ["1280x720", "1920x1080"]
    print(f"device {jax.devices()[0].device_kind}, load average {os.getloadavg()}")
    for text in sizes:
        width, height = (int(v) for v in text.split("x"))
        result = fake_result(args.batch, height, width)
        target = jnp.asarray(np.array([120, 255, 155], np.uint8))
        padded = padded_size(height, width)

        def on_device():
            products = render_on_device(result, PRODUCTS, padded=padded, target=target)
            return {k: np.asarray(v) for k, v in products.items()}

        def on_host():
            return render_on_host(result, PRODUCTS, padded=padded, target=np.array([120, 255, 155], np.uint8))

        device_ms = median_ms(on_device, args.repeats) / args.batch
        host_ms = median_ms(on_host, args.repeats) / args.batch
        pixels = height * width
        print(f"{width}x{height}: device {device_ms:.1f} ms/frame (moves {pixels * 4 / 1e6:.1f} MB uint8), "
              f"host {host_ms:.1f} ms/frame (moves {pixels * 16 / 1e6:.1f} MB float32); "
              f"host/device time {host_ms / device_ms:.2f}x")


if __name__ == "__main__":
    main()
