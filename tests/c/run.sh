#!/usr/bin/env bash
# Build and run the standalone C test of the kernels (test_kernels.c) with the native compiler,
# with setup.py's optimisation flags; no Python needed.  Used by the wheel builds' test command;
# .ci/cross.sh adds the aarch64 cross build and .ci/sanitize.sh a sanitizer build.
#
#   usage: tests/c/run.sh [--isa NAME] [--quiet]      (CC / CFLAGS from the environment)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NATIVE="$HERE/../../src/tempscale/_native"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/tempscale-ctest.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
# shellcheck disable=SC2086  # CFLAGS is a list of flags
"${CC:-cc}" -O3 -std=gnu11 -fno-math-errno -fvisibility=hidden ${CFLAGS:-} -I"$NATIVE" \
    "$HERE/test_kernels.c" "$NATIVE/_dispatch.c" "$NATIVE/_reference.c" "$NATIVE/_job.c" \
    "$NATIVE/_pool.c" -o "$TMP/test_kernels" -lm -pthread
"$TMP/test_kernels" "$@"
