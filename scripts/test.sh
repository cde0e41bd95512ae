#!/bin/sh
# Builds rnc and runs the whole test suite twice: an optimized build (what
# users run) and an AddressSanitizer + UBSan build of the same tests.
set -eu
cd "$(dirname "$0")/.."
JOBS=$(nproc 2>/dev/null || echo 2)

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$JOBS"
ctest --test-dir build --output-on-failure -j "$JOBS"

# (The JIT links LLVM, which is not built for the sanitizers: off in this build.)
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DRNC_SANITIZE=ON -DRNC_JIT=OFF \
      -DRNC_NET_CFLAGS="-O1 -march=native -fopenmp -Wall -Wextra -fsanitize=address,undefined -fno-sanitize-recover=undefined" >/dev/null
cmake --build build-asan -j "$JOBS"
# LeakSanitizer cannot follow OpenMP's thread pool; leaks are checked without it.
# The two long end-to-end runs (every spec, real training) run in the optimized
# build only; their code paths are in the sanitized unit tests.  So does the
# install test: it builds an outside project against the installed (here:
# sanitized) runtime, which tests the packaging, not memory safety, and the
# torchvision round trips through PyTorch (torchvision_reverse_*: PyTorch's
# side is what they test; skipped where PyTorch is missing anyway).  ResNet-50's
# torchvision test is not built there (tests/CMakeLists.txt): ResNet-18's
# covers the same code, at a fraction of the sanitized cost.
ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan --output-on-failure -j "$JOBS" \
          -E '^(every_spec|train_smoke|readme_train_command|install|torchvision_reverse_.*)$'
