#!/bin/sh
# Installs the Debian packages rnc needs to build and test (run as root, or
# with sudo).  Safe to run again.
set -eu
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
    >/dev/null
echo "setup: packages installed"
