#!/usr/bin/env bash
# Download, here (with a network), the Python packages the GPU machine lacks and the device check needs,
# as Python 3.12 manylinux x86-64 wheels into .whl/ at the repository root (ignored by git). The device
# check (benchmarks/device/run.sh) installs them there without a network; `run` carries them with
# carry=[".whl"]. At most 64 MiB travels with the working tree: this prints the total.
#
#   av      PyAV (FFmpeg with libx264): `bgm-jax video` and the end-to-end section
#   dm-pix  imported by train/augment.py: the training-step section (its chex and jax are there)
#
# Everything else the check imports (jax + CUDA plugin, flax, optax, orbax, numpy, scipy, pillow, tqdm,
# torch) is already on that machine (/work/shared/reference/PERFORMANCE.md). Versions: the ones this
# project's tests run with.
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=.whl
packages=("av==18.1.0" "dm-pix==0.4.5")
rm -rf "$dest"
mkdir -p "$dest"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$dest" "${packages[@]}"
ls -l "$dest"
total=$(du -cb "$dest"/*.whl | tail -1 | cut -f1)
echo "wheels: $(ls "$dest"/*.whl | wc -l) files, $((total / 1024 / 1024)) MiB ($total bytes) in $dest"
if [ "$total" -gt $((48 * 1024 * 1024)) ]; then
    echo "too large: the working tree and the wheels must stay under 64 MiB together" >&2
    exit 1
fi
