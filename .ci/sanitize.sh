#!/usr/bin/env bash
# Build tempscale's native extension (with its benchmark-only kernels) with AddressSanitizer +
# UndefinedBehaviorSanitizer into a temporary directory and run tests/test_native.py and
# tests/test_native_hardening.py against that build (the torch path's forward and backward
# kernels are covered by the C test); the standalone C test of the kernels
# (tests/c/test_kernels.c, no Python) is linked from the same sanitized objects and runs
# alongside.  Any ASan report or UB aborts the run (non-zero exit).  Needs only gcc, the Python in
# use (with numpy, pytest, hypothesis, mpmath; pytest-xdist spreads the tests over the CPUs when
# installed) and the repository; the working tree's own build is not touched.
#
#   usage: .ci/sanitize.sh [extra pytest args]      (PYTHON=/path/to/python to pick the interpreter,
#          SANITIZE_WORKERS=N for N pytest-xdist workers, 0 for none; default one per CPU)
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
SAN=(-std=gnu11 -O1 -g -fno-omit-frame-pointer -Wall -Wno-psabi -fsanitize=address,undefined
     -fno-sanitize-recover=all -DTS_BENCH_KERNELS=1)
# Every source is compiled once, all at the same time (-fPIC: the Python-free core's objects go
# into both the extension and the C test); then two links.
CORE=(_dispatch _reference _job _pool)      # the Python-free core (tests/c/test_kernels.c uses it)
EXT=(_parse _memcache _tskernels)           # the kernels' extension only (other .c files of
                                            # _native build other extensions)
mkdir -p "$TMP/obj"
t0=$(date +%s)
echo "[sanitize] compiling the kernels' extension and tests/c/test_kernels.c with -fsanitize=address,undefined"
pids=()
for f in "${CORE[@]}" "${EXT[@]}"; do
    "$CC" -c -fPIC "${SAN[@]}" -DNPY_NO_DEPRECATED_API=NPY_1_7_API_VERSION -I"$NATIVE" \
        -I"$NP_INC" -I"$PY_INC" "$NATIVE/$f.c" -o "$TMP/obj/$f.o" & pids+=($!)
done
"$CC" -c "${SAN[@]}" -I"$NATIVE" "$ROOT/tests/c/test_kernels.c" -o "$TMP/obj/test_kernels.o" & pids+=($!)
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
[ "$rc" -eq 0 ] || { echo "[sanitize] compilation failed" >&2; exit 1; }
core_objs=(); for f in "${CORE[@]}"; do core_objs+=("$TMP/obj/$f.o"); done
ext_objs=(); for f in "${EXT[@]}"; do ext_objs+=("$TMP/obj/$f.o"); done
"$CC" -shared -fPIC "${SAN[@]}" "${core_objs[@]}" "${ext_objs[@]}" -o "$OUT" -lm -pthread
"$CC" "${SAN[@]}" "$TMP/obj/test_kernels.o" "${core_objs[@]}" -o "$TMP/test_kernels" -lm -pthread
echo "[sanitize] built $OUT and the C test in $(( $(date +%s) - t0 )) s"

# the standalone C test of the kernels (every ISA, threads), same sanitizers: in the background,
# while the Python tests below start (its one-line summary is printed when it ends)
( ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:halt_on_error=1" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" "$TMP/test_kernels" \
  > "$TMP/test_kernels.log" 2>&1 ) & ctest=$!

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

# every instruction set the CPU offers is exercised by the tests' `isa` fixture; the tests run on
# pytest-xdist workers (one per CPU; they inherit LD_PRELOAD and PYTHONPATH) when it is installed
XDIST=()
if "$PY" -c "import xdist" 2>/dev/null; then XDIST=(-n "${SANITIZE_WORKERS:-auto}"); fi
cd "$ROOT"
t0=$(date +%s)
# (the C harness and the aarch64 compile are built with the sanitizers above, not re-run here)
prc=0
"$PY" -m pytest tests/test_native.py tests/test_native_hardening.py -q -p no:cacheprovider \
    -o addopts="--strict-markers" "${XDIST[@]}" \
    --deselect tests/test_native.py::test_c_harness_passes_natively \
    --deselect tests/test_native.py::test_core_compiles_for_aarch64_without_x86_paths "$@" || prc=$?
echo "[sanitize] Python tests: $(( $(date +%s) - t0 )) s"
crc=0
wait "$ctest" || crc=$?
echo "[sanitize] tests/c/test_kernels.c: $(cat "$TMP/test_kernels.log")"
[ "$crc" -eq 0 ] || { echo "[sanitize] the C test failed (exit $crc)" >&2; exit "$crc"; }
[ "$prc" -eq 0 ] || { echo "[sanitize] the Python tests failed (exit $prc)" >&2; exit "$prc"; }
echo "[sanitize] clean: no AddressSanitizer / UBSan reports"
