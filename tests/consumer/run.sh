#!/usr/bin/env bash
# Out-of-tree consumer test of an installed libbinv-cl.
#   run.sh <libbinv-cl source dir> <libbinv-cl build dir> <scratch dir>
# Installs the build into <scratch>/prefix, then builds and runs
# tests/consumer/main.c twice against that prefix:
#   1. with CMake: find_package(binv-cl) + binv-cl::binv-cl (and -static);
#   2. with pkg-config: cc main.c $(pkg-config --cflags --libs binv-cl).
# <scratch> is deleted and recreated.
set -euo pipefail

if [ $# -ne 3 ]; then
    echo "usage: $0 <libbinv-cl source dir> <libbinv-cl build dir> <scratch dir>" >&2
    exit 2
fi
src=$(cd "$1" && pwd)
bld=$(cd "$2" && pwd)
here="$src/tests/consumer"
rm -rf "$3"
mkdir -p "$3"
scratch=$(cd "$3" && pwd)
prefix="$scratch/prefix"

step() { echo "== consumer: $*"; }
die() { echo "consumer: FAILED: $*" >&2; exit 1; }

step "cmake --install $bld --prefix $prefix"
cmake --install "$bld" --prefix "$prefix"

# --- 1. CMake package -------------------------------------------------------
step "CMake consumer (find_package(binv-cl))"
cmake -S "$here" -B "$scratch/cmake-build" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$prefix"
found_dir=$(sed -n 's/^binv-cl_DIR:PATH=//p' "$scratch/cmake-build/CMakeCache.txt")
case "$found_dir" in
    "$prefix"/*) ;;
    *) die "find_package found binv-cl in '$found_dir', not under $prefix" ;;
esac
cmake --build "$scratch/cmake-build"
step "run binv-consumer (shared)"
"$scratch/cmake-build/binv-consumer"
step "run binv-consumer-static"
"$scratch/cmake-build/binv-consumer-static"

# --- 2. pkg-config ----------------------------------------------------------
step "pkg-config consumer"
pc=$(find "$prefix" -name binv-cl.pc -path '*/pkgconfig/*' | head -n 1)
[ -n "$pc" ] || die "no binv-cl.pc installed under $prefix"
PKG_CONFIG_PATH="$(dirname "$pc")${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export PKG_CONFIG_PATH
flags=$(pkg-config --cflags --libs binv-cl) || die "pkg-config --cflags --libs binv-cl"
echo "pkg-config --cflags --libs binv-cl: $flags"
libdir=$(pkg-config --variable=libdir binv-cl)
includedir=$(pkg-config --variable=includedir binv-cl)
for d in "$libdir" "$includedir"; do
    case "$(cd "$d" 2>/dev/null && pwd -P)" in
        "$(cd "$prefix" && pwd -P)"/*) ;;
        *) die "binv-cl.pc points at '$d', which is not inside the install prefix $prefix" ;;
    esac
done
# shellcheck disable=SC2086  # $flags is a list of compiler flags
${CC:-cc} -std=c11 -Wall -Wextra -Werror "$here/main.c" -o "$scratch/binv-consumer-pc" $flags
step "run binv-consumer-pc"
LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$scratch/binv-consumer-pc"

# --- 3. installed programs start from the prefix -------------------------
# The prefix is outside the loader's default paths and not in
# LD_LIBRARY_PATH: the programs must find libbinv-cl through their own RPATH,
# and find the copy in this prefix (not one installed elsewhere).  The
# caller's LD_LIBRARY_PATH stays, for dependencies that live off the
# default paths (CLBlast under /opt, say).
case ":${LD_LIBRARY_PATH:-}:" in
    *":$prefix/"*) die "LD_LIBRARY_PATH already points into $prefix" ;;
esac
for tool in binv-study binv-bench binv-llm; do
    exe="$prefix/bin/$tool"
    [ -x "$exe" ] || { echo "consumer: $tool not built, not checked"; continue; }
    step "$exe --help"
    "$exe" --help >/dev/null || die "$exe --help failed (exit $?)"
    if command -v ldd >/dev/null 2>&1; then
        lib=$(ldd "$exe" | sed -n 's/^[[:space:]]*libbinv-cl\.so[^ ]* => \([^ ]*\).*/\1/p')
        case "$lib" in
            "$prefix"/*) ;;
            *) die "$tool loads libbinv-cl from '$lib', not from $prefix" ;;
        esac
    fi
done

step "all OK"
