#!/usr/bin/env bash
# Continue the embedded model on the GPU machine, for as long as a lease allows, in one `run` call:
#
#   bash benchmarks/device/fetch_wheels.sh train          # here, once: .whl/ (carried: carry=[".whl"])
#   bash train/device/run.sh "$OUT" [SECONDS]               # there (run timeout_s=600); SECONDS: 420
#
# The GPU machine has neither tfds nor the built dataset (and only 64 MiB of files travel), so the data is
# photo_matting rendered in memory from scikit-image's photos (`generated:photo_matting/image`), and the
# start is the package's own embedded weights (`init="embedded"`). Steps: install the carried wheels;
# a calibration run (150 steps on 256 records, no validation) compiles the step into JAX's persistent
# cache and measures steps per second; the real run (train/configs/photo_gpu_mobilenetv2.py) gets the
# num_steps that rate fits into what is left of TRAIN_SECONDS, so its cosine schedule ends where it stops.
# A hard stop (SIGINT) past the budget still checkpoints, and the export is then written from that
# checkpoint. OUT receives export.tar (split into 15 MiB parts: files over 16 MiB do not come back),
# metrics.jsonl, the last validation grid and log.txt: unpack here with
#   cat OUT/export.tar.part-* | tar -x -C runs/photo_gpu
set -uo pipefail
out="${1:?usage: run.sh OUTDIR [TRAIN_SECONDS]}"
budget="${2:-420}"
cd "$(dirname "$0")/../.."
mkdir -p "$out"
exec > >(tee "$out/log.txt") 2>&1
started=$(date +%s)
python="${PYTHON:-python3}"
if [ -z "${NO_WHEELS:-}" ] && compgen -G ".whl/*.whl" >/dev/null; then  # NO_WHEELS=1: the CPU smoke test
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/bgm-site \
        .whl/*.whl || { echo "run.sh: installing .whl/ failed"; exit 1; }
    export PYTHONPATH="/tmp/bgm-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-/tmp/bgm-jax-cache}" JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
config=train/configs/photo_gpu_mobilenetv2.py
work="${WORKDIR:-/tmp/photo_gpu}"
calibrate="$work-calibrate"
rm -rf "$work" "$calibrate"
"$python" -c "import jax; print('devices:', jax.devices())"

# TRAIN_SET: more `--set` overrides for every run (the CPU smoke test makes everything tiny with it).
read -r -a extra <<< "${TRAIN_SET:-}"
sets=()
for item in "${extra[@]}"; do sets+=(--set "$item"); done
small="${CALIBRATE_DATA:-generated:photo_matting/image:256}"
"$python" -m train.main --config "$config" --workdir "$calibrate" --no-progress "${sets[@]}" \
    --set num_steps="${CALIBRATE_STEPS:-150}" --set train_data=$small --set background_data=$small \
    --set valid_data= --set checkpoint_every=100000 || { echo "run.sh: the calibration run failed"; exit 1; }
steps=$("$python" - "$config" "$calibrate/metrics.jsonl" "$started" "$budget" "${extra[@]}" <<'EOF'
import json, sys, time
from train.config import apply_overrides, load_config
config = apply_overrides(load_config(sys.argv[1]), sys.argv[5:])
lines = [json.loads(l) for l in open(sys.argv[2]) if "images_per_second" in l]
rate = lines[-1]["images_per_second"] / config.global_batch  # steps/s of the last logged steps: compiled
left = int(sys.argv[3]) + int(sys.argv[4]) - time.time() - 90  # rendering the records, validation, export
print(max(10, int(0.9 * rate * left)))
print(f"run.sh: {rate:.3f} steps/s measured, {left:.0f} s left for steps", file=sys.stderr)
EOF
) || { echo "run.sh: no rate measured"; exit 1; }
echo "run.sh: training $steps steps"
deadline=$(( started + budget + 60 - $(date +%s) ))
timeout -s INT "$(( deadline > 60 ? deadline : 60 ))" \
    "$python" -m train.main --config "$config" --workdir "$work" --no-progress "${sets[@]}" --set num_steps="$steps"
status=$?
if [ ! -d "$work/export" ]; then
    last=$(ls "$work/checkpoints" 2>/dev/null | grep -E '^[0-9]+$' | sort -n | tail -1)
    echo "run.sh: the run stopped (exit $status) before its end; exporting checkpoint ${last:-none}"
    [ -n "$last" ] && "$python" -m train.main --config "$config" --workdir "$work" --no-progress "${sets[@]}" \
        --set num_steps="$last" --set valid_data=
fi
[ -d "$work/export" ] || { echo "run.sh: no export was written"; exit 1; }
tar -C "$work" -cf - export | split -b 15M - "$out/export.tar.part-"
cp "$work/metrics.jsonl" "$out/"
grid=$(ls "$work"/images/step_*.png 2>/dev/null | tail -1)
[ -n "$grid" ] && cp "$grid" "$out/"
echo "run.sh: done in $(( $(date +%s) - started )) s; $(ls "$out" | tr '\n' ' ')"
