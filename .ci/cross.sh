#!/usr/bin/env bash
# Portability check of the compiled core, without Python: build the standalone C test of the
# kernels (tests/c/test_kernels.c + the Python-free sources of src/tempscale/_native) with the
# flags setup.py uses, and run it
#   1. natively (x86-64: every instruction set this CPU runs, the baseline path included, each
#      selected the way the module's set_isa selects it),
#   2. for aarch64 with Debian's cross compiler, under qemu-aarch64 (the x86 paths compiled out),
# plus a compile-only pass of the benchmark-only kernels (TS_BENCH_KERNELS) for both targets and,
# when clang is installed, the same two builds and runs with clang (CROSS_CLANG=0 skips them).
# Missing Debian packages are installed (gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user).
# About 20 s on two cores once installed (gcc only; clang adds about as much).  Every build and
# run happens at the same time (the machine's scheduler shares the CPUs).
#
#   usage: .ci/cross.sh            (CC=... for the native compiler; KEEP_TMP=1 keeps the build)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NATIVE="$ROOT/src/tempscale/_native"
CC="${CC:-cc}"
XCC=aarch64-linux-gnu-gcc
SYSROOT=/usr/aarch64-linux-gnu
TMP="$(mktemp -d "${TMPDIR:-/tmp}/tempscale-cross.XXXXXX")"
trap '[ -n "${KEEP_TMP:-}" ] || rm -rf "$TMP"' EXIT

# ---- Debian packages ------------------------------------------------------------------------
if ! command -v "$XCC" >/dev/null || ! command -v qemu-aarch64 >/dev/null ||
   [ ! -e "$SYSROOT/include/stdio.h" ]; then
  PKGS=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  echo "[cross] installing ${PKGS[*]}"
  $SUDO apt-get install -y -qq "${PKGS[@]}" >/dev/null ||
    { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${PKGS[@]}" >/dev/null; }
fi

# setup.py's flags, plus warnings as errors
CFLAGS=(-O3 -std=gnu11 -fno-math-errno -fvisibility=hidden -Wno-psabi -Wall -Wextra -Werror)
SRCS=("$ROOT/tests/c/test_kernels.c" "$NATIVE/_dispatch.c" "$NATIVE/_reference.c"
      "$NATIVE/_job.c" "$NATIVE/_pool.c")
build() { # build COMPILER OUTPUT [extra flags]
  local cc="$1" out="$2"; shift 2
  "$cc" "${CFLAGS[@]}" "$@" -I"$NATIVE" "${SRCS[@]}" -o "$out" -lm -pthread
}
bench_compile() { # the benchmark-only kernels compile too (-O0: a compile check, not a run)
  local cc="$1"; shift
  for f in _dispatch _job; do
    "$cc" "${CFLAGS[@]}" -O0 "$@" -DTS_BENCH_KERNELS=1 -I"$NATIVE" -c "$NATIVE/$f.c" \
      -o "$TMP/$f.$cc.bench.o"
  done
}

start=$(date +%s)
CLANG=""
if [ "${CROSS_CLANG:-1}" = 1 ] && command -v clang >/dev/null; then CLANG=clang; fi
echo "[cross] building and running: native ($("$CC" -dumpmachine)) and aarch64 ($XCC)${CLANG:+, with clang too}"
# Each target's build and run is one background job, all at once: a short build's run (the
# aarch64 ones under qemu take longest) starts while the other builds go on.  Each job writes
# its summary line (or its failure) to a log, printed in a fixed order at the end.
target() { # target LABEL COMPILER OUTPUT RUNNER... -- [extra build flags]
  local label="$1" cc="$2" out="$3"; shift 3
  local runner=()
  while [ "$1" != "--" ]; do runner+=("$1"); shift; done
  shift
  build "$cc" "$out" "$@" || { echo "$label build FAILED"; return 1; }
  local res
  res="$("${runner[@]}" "$out" 2>&1)" || { echo "$label $res"; return 1; }
  echo "$label $res"
}
QEMU=(qemu-aarch64 -L "$SYSROOT")
jobs_=()
target "native:       " "$CC" "$TMP/test_native" -- > "$TMP/native.log" 2>&1 & jobs_+=("$!:native")
target "aarch64:      " "$XCC" "$TMP/test_aarch64" "${QEMU[@]}" -- > "$TMP/aarch64.log" 2>&1 &
jobs_+=("$!:aarch64")
if [ -n "$CLANG" ]; then
  target "clang native: " clang "$TMP/test_clang" -- > "$TMP/clang.log" 2>&1 & jobs_+=("$!:clang")
  target "clang aarch64:" clang "$TMP/test_clang_aarch64" "${QEMU[@]}" -- \
    --target=aarch64-linux-gnu > "$TMP/clang_aarch64.log" 2>&1 & jobs_+=("$!:clang_aarch64")
fi
bench_compile "$CC" > "$TMP/bench_native.log" 2>&1 & jobs_+=("$!:bench_native")
bench_compile "$XCC" > "$TMP/bench_aarch64.log" 2>&1 & jobs_+=("$!:bench_aarch64")

rc=0
for j in "${jobs_[@]}"; do
  pid="${j%%:*}" name="${j#*:}"
  if wait "$pid"; then
    [ ! -s "$TMP/$name.log" ] || echo "[cross] $(cat "$TMP/$name.log")"
  else
    rc=1
    echo "[cross] $name FAILED:"; sed 's/^/[cross]   /' "$TMP/$name.log"
  fi
done
[ -n "$CLANG" ] || echo "[cross] clang not installed (or CROSS_CLANG=0): clang builds skipped"
[ "$rc" -eq 0 ] || { echo "[cross] FAILED"; exit 1; }
echo "[cross] passed in $(( $(date +%s) - start )) s"
