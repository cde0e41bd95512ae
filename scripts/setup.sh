#!/bin/sh
# Installs the Debian packages rnc needs to build and test (run as root, or
# with sudo).  Safe to run again.
#
#   sh scripts/setup.sh           # what the build and the tests need (CI)
#   sh scripts/setup.sh --torch   # and PyTorch 1.13 + torchvision (Debian's, ~1 GB):
#                                 # bench/run, tools/*_golden.py, the PyTorch reference
#                                 # trainer, and the tests that round-trip through it
set -eu
torch=""
for arg in "$@"; do
    case "$arg" in
    --torch) torch="python3-torch python3-torchvision" ;;
    *) echo "setup: unknown option '$arg' (known: --torch)" >&2; exit 2 ;;
    esac
done
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
    build-essential cmake pkg-config \
    check libsubunit-dev \
    libxxhash-dev \
    libjansson-dev \
    libomp-dev \
    libjpeg62-turbo-dev \
    libcairo2-dev fonts-dejavu-core python3 \
    clang-14 libclang-14-dev libclang-cpp14-dev llvm-14-dev libomp-14-dev \
    gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user \
    libclang-rt-14-dev \
    libopenmpi-dev openmpi-bin \
    $torch >/dev/null
echo "setup: packages installed${torch:+ (with PyTorch)}"
