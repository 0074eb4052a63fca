#!/usr/bin/env bash
# Build tempscale's native extension (with its benchmark-only kernels) with AddressSanitizer +
# UndefinedBehaviorSanitizer into a temporary directory and run tests/test_native.py and
# tests/test_native_hardening.py against that build (the torch path's forward and backward
# kernels are covered by the C test below); then build and run the standalone C test of
# the kernels (tests/c/test_kernels.c, no Python) with the same sanitizers.  Any ASan report or UB
# aborts the run (non-zero exit).  Needs only gcc, the Python in use (with numpy, pytest,
# hypothesis, mpmath) and the repository; the working tree's own build is not touched.
#
#   usage: .ci/sanitize.sh [extra pytest args]      (PYTHON=/path/to/python to pick the interpreter)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python}"
CC="${CC:-gcc}"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/tempscale-asan.XXXXXX")"
trap '[ -n "${KEEP_TMP:-}" ] || rm -rf "$TMP"' EXIT

mkdir -p "$TMP/pkg"
cp -r "$ROOT/src/tempscale" "$TMP/pkg/tempscale"
find "$TMP/pkg" -name '*.so' -delete
find "$TMP/pkg" -name '__pycache__' -prune -exec rm -rf {} +

NP_INC="$("$PY" -c 'import numpy; print(numpy.get_include())')"
PY_INC="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
SUFFIX="$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
OUT="$TMP/pkg/tempscale/_native/_tskernels$SUFFIX"

NATIVE="$ROOT/src/tempscale/_native"
# the kernels' extension only (other .c files of _native build other extensions)
SOURCES=()
for f in _dispatch _reference _job _pool _parse _memcache _tskernels; do SOURCES+=("$NATIVE/$f.c"); done
SAN=(-std=gnu11 -O1 -g -fno-omit-frame-pointer -Wall -Wno-psabi -fsanitize=address,undefined
     -fno-sanitize-recover=all -DTS_BENCH_KERNELS=1)
echo "[sanitize] building $OUT with -fsanitize=address,undefined"
"$CC" -shared -fPIC "${SAN[@]}" -DNPY_NO_DEPRECATED_API=NPY_1_7_API_VERSION \
    -I"$NP_INC" -I"$PY_INC" "${SOURCES[@]}" -o "$OUT" -lm -pthread

# the standalone C test of the kernels (every ISA, threads), same sanitizers
echo "[sanitize] tests/c/test_kernels.c with -fsanitize=address,undefined"
"$CC" "${SAN[@]}" -I"$NATIVE" "$ROOT/tests/c/test_kernels.c" "$NATIVE/_dispatch.c" \
    "$NATIVE/_reference.c" "$NATIVE/_job.c" "$NATIVE/_pool.c" -o "$TMP/test_kernels" -lm -pthread
ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:halt_on_error=1" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" "$TMP/test_kernels"

LIBASAN="$("$CC" -print-file-name=libasan.so)"
if [ ! -e "$LIBASAN" ]; then
    echo "[sanitize] libasan.so not found (install gcc's libasan)" >&2
    exit 2
fi

export LD_PRELOAD="$LIBASAN${LD_PRELOAD:+:$LD_PRELOAD}"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:strict_string_checks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export PYTHONPATH="$TMP/pkg${PYTHONPATH:+:$PYTHONPATH}"
export TEMPSCALE_REQUIRE_NATIVE=1
export PYTHONMALLOC=malloc   # let ASan see Python's allocations too

"$PY" - "$OUT" <<'PYEOF'
import sys
import tempscale._native._tskernels as k
assert k.__file__ == sys.argv[1], (k.__file__, sys.argv[1])
print("[sanitize] using", k.__file__)
PYEOF

# every instruction set the CPU offers is exercised by the tests' `isa` fixture
cd "$ROOT"
# (the C harness and the aarch64 compile are built with the sanitizers above, not re-run here)
"$PY" -m pytest tests/test_native.py tests/test_native_hardening.py -q -p no:cacheprovider \
    -o addopts="--strict-markers" \
    --deselect tests/test_native.py::test_c_harness_passes_natively \
    --deselect tests/test_native.py::test_core_compiles_for_aarch64_without_x86_paths "$@"
echo "[sanitize] clean: no AddressSanitizer / UBSan reports"
