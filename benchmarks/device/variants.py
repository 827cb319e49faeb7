"""Refiner formulations the device check times against the ones bgm_jax/models/refiner.py uses, so the
GPU figures can confirm (or overturn) the choices argued in docs/benchmarks.md ("The refiner on GPUs").

- selection: ``lax.top_k`` (used) against an exact threshold selection: the k-th largest error found by
  bisection over the float's bit pattern (32 fused counting passes, no sort), then the cells above it
  (ties towards the lower index, as top_k) compacted with a prefix sum. Same cells, in index order.
- replacement: the windowed scatter (used) against the previous formulation, a scatter over a
  (B, cells, 4, 4, C) view of the image (two full-resolution transposes around it).

Each candidate is checked against the used formulation on the same data before it is timed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from bgm_jax.models import refiner


def select_by_bisection(err_q: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """The top-``k`` cells of ``err_q`` (B, Hq, Wq, 1) per image, as (values, indices) in index order."""
    flat = err_q.reshape(err_q.shape[0], -1)
    bits = lax.bitcast_convert_type(flat, jnp.int32)
    keys = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # integer order = float order (negative floats flipped)

    def count_at_least(t):
        return jnp.sum(keys >= t[:, None], axis=1)

    def step(_, bounds):  # invariant: count(keys >= low) >= k > count(keys >= high)
        low, high = bounds
        mid = (low >> 1) + (high >> 1) + (low & high & 1)  # floor((low + high) / 2) without overflow
        ok = count_at_least(mid) >= k
        return jnp.where(ok, mid, low), jnp.where(ok, high, mid)

    batch = flat.shape[0]
    low = jnp.full((batch,), jnp.iinfo(jnp.int32).min, jnp.int32)
    high = jnp.full((batch,), jnp.iinfo(jnp.int32).max, jnp.int32)
    kth, _ = lax.fori_loop(0, 32, step, (low, high), unroll=True)
    greater = keys > kth[:, None]
    tie = keys == kth[:, None]
    room = k - jnp.sum(greater, axis=1, keepdims=True)
    take = greater | (tie & (jnp.cumsum(tie, axis=1) <= room))
    slot = jnp.where(take, jnp.cumsum(take, axis=1) - 1, k)  # k: out of range, dropped
    rows = jnp.broadcast_to(jnp.arange(batch)[:, None], slot.shape)
    cells = jnp.broadcast_to(jnp.arange(flat.shape[1], dtype=jnp.int32), slot.shape)
    indices = jnp.zeros((batch, k), jnp.int32).at[rows, slot].set(cells, mode="drop")
    return jnp.take_along_axis(flat, indices, axis=1), indices


def replace_via_cell_view(x: jax.Array, patches: jax.Array, indices: jax.Array, valid: jax.Array) -> jax.Array:
    """The previous ``replace_patches``: scatter whole cells into a (B, cells, 4, 4, C) view."""
    b, h, w, c = x.shape
    cells = x.reshape(b, h // 4, 4, w // 4, 4, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, -1, 4, 4, c)
    batch = jnp.arange(b)[:, None]
    new = jnp.where(valid[..., None, None, None], patches.astype(cells.dtype), cells[batch, indices])
    cells = cells.at[batch, indices].set(new, unique_indices=True)
    return cells.reshape(b, h // 4, w // 4, 4, 4, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)


def crop_both(half, full, indices, grid_width):
    """The refiner's two crops (8x8 windows at half and full resolution, kernel size 3)."""
    return (refiner.crop_patches(half, indices, grid_width, cell=2, pad=3),
            refiner.crop_patches(full, indices, grid_width, cell=4, pad=2))


def problems(height: int, width: int, k: int, batch: int, seed: int = 0) -> dict:
    """Inputs of one refiner call at this size, on the default device: error map, images (drawn there:
    gigabytes at 4K batch 8), patches and a selection."""
    rng = np.random.default_rng(seed)
    hq, wq = height // 4, width // 4
    # k/2 cells clearly above the rest, then k cells of exactly equal error: the k-th place is a tie,
    # which both selections must break towards the lower index
    err = 0.2 * rng.random((batch, hq * wq), np.float32)
    for row in err:
        order = rng.permutation(hq * wq)
        row[order[: k // 2]] = 0.5 + 0.5 * rng.random(k // 2)
        row[order[k // 2: k // 2 + k]] = 0.25
    indices = np.stack([rng.permutation(hq * wq)[:k] for _ in range(batch)]).astype(np.int32)
    keys = jax.random.split(jax.random.key(seed), 4)
    return {
        "err": jax.device_put(err.reshape(batch, hq, wq, 1)),
        "half": jax.random.uniform(keys[0], (batch, height // 2, width // 2, 42)),
        "full": jax.random.uniform(keys[1], (batch, height, width, 6)),
        "coarse": jax.random.uniform(keys[2], (batch, height, width, 4)),
        "patches": jax.random.uniform(keys[3], (batch, k, 4, 4, 4)),
        "indices": jax.device_put(indices),
        "valid": jax.device_put(rng.random((batch, k)) > 0.1),
    }


def cases(height: int, width: int, k: int) -> dict[str, tuple]:
    """name -> (function of the problem dict, used formulation name or None, what it computes)."""
    wq = width // 4
    return {
        "select/top_k": (lambda p: refiner.select_patches(p["err"], k), None),
        "select/bisection": (lambda p: select_by_bisection(p["err"], k), "select/top_k"),
        "crop/windowed_gather": (lambda p: crop_both(p["half"], p["full"], p["indices"], wq), None),
        "replace/windowed_scatter": (
            lambda p: refiner.replace_patches(p["coarse"], p["patches"], p["indices"], p["valid"]), None),
        "replace/cell_view_scatter": (
            lambda p: replace_via_cell_view(p["coarse"], p["patches"], p["indices"], p["valid"]),
            "replace/windowed_scatter"),
    }


def same_result(name: str, got, expected) -> bool:
    """Candidates must compute what the used formulation computes (selections as sets of cells)."""
    if name.startswith("select/"):
        got_idx, want_idx = np.sort(np.asarray(got[1]), axis=1), np.sort(np.asarray(expected[1]), axis=1)
        return bool(np.array_equal(got_idx, want_idx))
    return all(np.array_equal(np.asarray(a), np.asarray(b))
               for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected)))


def op_summary(hlo_text: str) -> dict[str, int]:
    """Counts of the operations that matter for the refiner in XLA's compiled HLO text (after the
    backend's passes: on a GPU, whether top-k became a CUB radix sort or XLA's own sort, etc.)."""
    import re

    counts: dict[str, int] = {}
    for op in ("sort", "gather", "scatter", "transpose", "convolution", "fusion", "while"):
        counts[op] = len(re.findall(rf"= \S+ {op}\(", hlo_text))
    for target in re.findall(r'custom_call_target="([^"]+)"', hlo_text):
        counts[f"custom-call:{target}"] = counts.get(f"custom-call:{target}", 0) + 1
    return counts


def main() -> None:
    """Time the formulations on this machine's default backend, e.g.

        python benchmarks/device/variants.py --size 1920x1080 --k 5000 --batch 1 --repeats 7
    """
    import argparse
    import os
    import statistics
    import time

    parser = argparse.ArgumentParser(description=main.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="1920x1080", help="WIDTHxHEIGHT")
    parser.add_argument("--k", type=int, default=5000, help="patches (sample pixels / 16)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    problem = problems(height, width, args.k, args.batch)
    cases_ = cases(height, width, args.k)
    compiled = {name: jax.jit(fn).lower(problem).compile() for name, (fn, _) in cases_.items()}
    outputs = {name: jax.block_until_ready(c(problem)) for name, c in compiled.items()}
    print(f"{jax.default_backend()} {width}x{height} k {args.k} batch {args.batch}, load {os.getloadavg()}")
    for _ in range(2):  # two rounds, interleaved, to show the spread
        for name, (_, used) in cases_.items():
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                jax.block_until_ready(compiled[name](problem))
                times.append(time.perf_counter() - start)
            same = "" if used is None else f" (same as {used}: {same_result(name, outputs[name], outputs[used])})"
            print(f"  {name:<28} median {statistics.median(times) * 1e3:8.2f} ms{same}")


if __name__ == "__main__":
    main()
