#!/usr/bin/env bash
# The GPU device check in one command (see benchmarks/device/check.py and docs/benchmarks.md):
#
#   bash benchmarks/device/run.sh OUTDIR [check.py options, e.g. --smoke or --sections parity,model]
#
# Installs the wheels fetched by benchmarks/device/fetch_wheels.sh (.whl/, carried to the device) without a
# network, then runs the check with its own 500 s budget; a hard stop at 560 s still leaves the partial
# JSON, the Markdown summary and the log in OUTDIR (at most 8 files come back from the device: 3 here).
set -uo pipefail
out="${1:?usage: run.sh OUTDIR [check.py options]}"
shift
cd "$(dirname "$0")/../.."
mkdir -p "$out"
python="${PYTHON:-python3}"
if compgen -G ".whl/*.whl" >/dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/bgm-site \
        .whl/*.whl || echo "run.sh: installing .whl/ failed; sections that need av or dm_pix will report it" >&2
    export PYTHONPATH="/tmp/bgm-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
timeout -k 20 -s INT 560 "$python" benchmarks/device/check.py --out "$out" "$@" 2>&1 | tee "$out/log.txt"
status=${PIPESTATUS[0]}
echo "run.sh: check.py exited with $status; files in $out: $(ls "$out" | tr '\n' ' ')"
exit "$status"
