#!/usr/bin/env bash
# Installs everything libbinv-cl needs to build, test and plot on a fresh
# Debian (bookworm or later) or Ubuntu (22.04 or later) machine:
#   compiler and build tools, the OpenCL ICD loader and headers, PoCL (a CPU
#   OpenCL device, so the tests run without a GPU), CLBlast (the benchmark's
#   comparison column), cmocka (tests), clinfo and gnuplot (plots), and
#   oclgrind (kernel checks) where the release has it.
#
# Runs as root (a minimal container has no sudo) or as a user with sudo.
# Idempotent: when every package is already installed it changes nothing and
# needs no network.  Set BINV_SKIP_DEPS=1 to skip it altogether (machines whose
# dependencies come from somewhere other than apt).
set -euo pipefail

if [ "${BINV_SKIP_DEPS:-0}" = "1" ]; then
    echo "install-deps: BINV_SKIP_DEPS=1, not installing anything"
    exit 0
fi

# --no-install-recommends is safe for all of these: PoCL's runtime kernel
# compiler is a hard dependency (libpocl2 -> clang-15, libclang-cpp15, libllvm15;
# clang-15 -> binutils, libc6-dev, libclang-common-15-dev), and gcc's libc6-dev,
# which is only a Recommends of gcc, is listed here explicitly.
packages=(
    ca-certificates
    gcc
    libc6-dev
    make
    cmake
    pkg-config
    ocl-icd-opencl-dev
    opencl-headers
    pocl-opencl-icd
    clinfo
    libclblast-dev
    libcmocka-dev
    gnuplot-nox
)

# Installed where the distribution has them, skipped where it does not:
# oclgrind (the kernel checker of the "oclgrind" test label; Debian 13 has
# no oclgrind package, and that test then reports itself skipped).
optional=(
    oclgrind
)

if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-query >/dev/null 2>&1; then
    echo "install-deps: apt-get/dpkg-query not found; this script supports Debian and Ubuntu only." >&2
    echo "install-deps: needed: a C11 compiler, make, CMake >= 3.20, pkg-config, the OpenCL" >&2
    echo "install-deps: ICD loader and headers, an OpenCL driver (e.g. PoCL), CLBlast, cmocka, gnuplot." >&2
    exit 1
fi

installed() {
    case "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null || true)" in
        ii*) return 0 ;;
        *) return 1 ;;
    esac
}

missing=()
for p in "${packages[@]}"; do
    installed "$p" || missing+=("$p")
done

# An optional package counts as missing only where the package lists that
# are already here know it, so that a machine with everything it can have
# needs no network.
for p in "${optional[@]}"; do
    installed "$p" || ! apt-cache show "$p" >/dev/null 2>&1 || missing+=("$p")
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-deps: all ${#packages[@]} packages already installed"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    echo "install-deps: not root and sudo not found; run as root or install: ${missing[*]}" >&2
    exit 1
fi

apt_opts=(-y -q -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=600)

echo "install-deps: installing ${missing[*]}"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq -o DPkg::Lock::Timeout=600 update
# After the update: every optional package this release has (a fresh
# machine's package lists were empty before it), none that it lacks.
wanted=()
for p in "${missing[@]}"; do
    case " ${optional[*]} " in *" $p "*) continue ;; esac
    wanted+=("$p")
done
for p in "${optional[@]}"; do
    installed "$p" && continue
    if apt-cache show "$p" >/dev/null 2>&1; then wanted+=("$p")
    else echo "install-deps: $p is not available on this release, skipped"; fi
done
missing=("${wanted[@]}")
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get "${apt_opts[@]}" install --no-install-recommends "${missing[@]}" >/dev/null

# Verify, so that a package that silently failed to configure is caught here
# and not as a confusing build error later.
for p in "${missing[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
    case "$status" in
        ii*) echo "install-deps:   $p $(dpkg-query -W -f='${Version}' "$p")" ;;
        *) echo "install-deps: $p did not install (status '$status')" >&2; exit 1 ;;
    esac
done

echo "install-deps: OpenCL devices:"
clinfo -l || echo "install-deps: warning: clinfo failed" >&2
