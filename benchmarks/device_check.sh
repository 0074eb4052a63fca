#!/usr/bin/env bash
# GPU check, for a machine with a CUDA device (not CI), at most about 8 minutes:
#   1. the GPU's name;
#   2. the Triton kernels' tests compiled on the GPU (tests/test_triton.py with
#      TEMPSCALE_TEST_GPU=1: the contract matrix, gradients and KD rows against the generic
#      path on CUDA tensors, no interpreter);
#   3. the core's contract tests on torch-on-CUDA (tests/test_softmax.py, the torch-cuda cases);
#   4. benchmarks/bench_gpu.py: Markdown tables on stdout (softmax vs torch.softmax(x/T),
#      torch.softmax(x) and a copy of the same bytes; KDLoss vs the naive loss and Liger-Kernel).
#   bash benchmarks/device_check.sh            (from anywhere; needs torch with CUDA and triton)
# Each step has its own time limit, so the whole stays under 8 minutes; a failed step is
# reported and the next one still runs.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" TEMPSCALE_TEST_GPU=1
unset TRITON_INTERPRET
PY="${PYTHON:-python3}"
status=0
step() {  # step SECONDS DESCRIPTION COMMAND...
    local limit="$1" what="$2"
    shift 2
    echo
    echo "## $what"
    echo
    timeout --kill-after=10 "$limit" "$@"
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "**$what: exit status $rc$([ "$rc" -eq 124 ] && echo ' (time limit)')**"
        status=1
    fi
}
echo "# tempscale device check ($(date -u +%Y-%m-%dT%H:%MZ))"
echo
echo "GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -1)"
step 200 "Triton kernels on CUDA (tests/test_triton.py)" \
    "$PY" -m pytest -q -p no:cacheprovider tests/test_triton.py
step 70 "contract tests, torch on CUDA (tests/test_softmax.py -k torch-cuda)" \
    "$PY" -m pytest -q -p no:cacheprovider tests/test_softmax.py -k "torch-cuda"
step 200 "benchmarks (benchmarks/bench_gpu.py)" "$PY" benchmarks/bench_gpu.py --repeat 20
exit $status
