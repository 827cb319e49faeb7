#!/usr/bin/env bash
# Download, here (with a network), the Python packages the GPU machine lacks, as Python 3.12 manylinux
# x86-64 wheels into .whl/ at the repository root (ignored by git). The device scripts install them there
# without a network; `run` carries them with carry=[".whl"]. At most 64 MiB travels with the working tree:
# this prints the total.
#
#   bash benchmarks/device/fetch_wheels.sh [check]   for the device check (benchmarks/device/run.sh):
#     av            PyAV (FFmpeg with libx264): `bgm-jax video` and the end-to-end section
#     dm-pix        imported by train/augment.py: the training-step section (its chex and jax are there)
#   bash benchmarks/device/fetch_wheels.sh train     for training there (train/device/run.sh):
#     dm-pix        as above
#     grain         the input pipeline, with array-record and portpicker (its dependencies missing there)
#     scikit-image  0.26, whose bundled photographs photo_matting is rendered from (the machine's own
#                   scikit-image may ship other photos; photo_matting checks every photo's sha256)
#
# Everything else they import (jax + CUDA plugin, flax, optax, orbax, numpy, scipy, pillow, tqdm, torch,
# absl, etils, cloudpickle, protobuf) is already on that machine (/work/shared/reference/PERFORMANCE.md).
# Versions: the ones this project's tests run with.
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=.whl
case "${1:-check}" in
    check) packages=("av==18.1.0" "dm-pix==0.4.5") ;;
    train) packages=("dm-pix==0.4.5" "grain==0.2.18" "array-record==0.8.6" "portpicker==1.6.0"
                     "scikit-image==0.26.0") ;;
    *) echo "usage: fetch_wheels.sh [check|train]" >&2; exit 2 ;;
esac
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
