#!/usr/bin/env bash
# The GPU check in ONE call of the device tool: the GPU-only tests, then benchmarks/gpu_check.py.
#
# The call (about 3 minutes of running; the machine's start comes on top):
#
#     run(command="bash benchmarks/gpu_check.sh --device cuda", timeout_s=420)
#
# with no `carry`: nothing needs to travel. The GPU machine's image (KINDS.md, nvidia-h200)
# already has python3 3.12 with torch 2.11 (+cu130), numpy, scipy, pandas, pyarrow, PyYAML,
# pillow, torchvision and pytest, which is all that the check imports; raynas itself travels with
# the working tree and is found through PYTHONPATH (set below: the repo root). Ray and Optuna are
# NOT there, and cannot be carried whole: ray's wheel is 79 MB and a call carries 64 MiB at most,
# so the check never imports them (the `raynas` CLI does, so it cannot run there; the Python
# functions behind `raynas latency --device cuda` can, and are what is measured).
#
# Should a later check need a package that is missing there, bring it as wheels: here, in the
# repo root,
#
#     echo /.whl/ >> .git/info/exclude
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#         --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#         -d .whl NAME==VERSION          # e.g. optuna==5.1.0 (pure Python, 0.4 MB), and each missing dependency
#
# and call with carry=[".whl"]: this script installs every .whl/*.whl into /tmp/site and puts it on
# PYTHONPATH before the repo root (the device README's trick). Keep the wheels well under 60 MiB.
#
# What comes back in $OUT: gpu_check.json (the figures), gpu_check.log and gpu_tests.log.
# Arguments are passed on to gpu_check.py (e.g. --sections train latency). Without $OUT (run by
# hand) the logs go to benchmarks/out/.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LOGS=${OUT:-benchmarks/out}
mkdir -p "$LOGS"

if compgen -G ".whl/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv || true
"$PY" -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available(),
          torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-')" || exit 1

# The GPU-only tests: CUDA latency tables, calibration and BN scores against the CPU's. Their
# module imports no Ray; --noconftest skips tests/conftest.py, which does.
timeout 180 "$PY" -m pytest -q -p no:cacheprovider --noconftest tests/estimate/test_gpu_path.py -k "not quick_runs" \
    2>&1 | tee "$LOGS/gpu_tests.log"
tests=$?

timeout 330 "$PY" -m benchmarks.gpu_check "$@" 2>&1 | tee "$LOGS/gpu_check.log"
check=$?

echo "gpu tests exit $tests, gpu check exit $check"
exit $(( tests != 0 || check != 0 ))
