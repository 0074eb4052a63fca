#!/usr/bin/env bash
# GPU check, for a machine with a CUDA device (not CI): the core's contract tests on
# torch-on-CUDA, CuPy and JAX-on-GPU, then the torch path's timings against torch.softmax(x/T).
#   bash benchmarks/device_check.sh        (array-api-compat / -strict must be importable;
#                                           on an offline machine install their wheels first)
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" TEMPSCALE_TEST_GPU=1 JAX_PLATFORMS=cuda,cpu
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -m pytest -q -p no:cacheprovider -p no:warnings tests/test_softmax.py -k "torch-cuda or cupy or jax"
python3 benchmarks/bench_torch_path.py --device cuda --repeat 20
