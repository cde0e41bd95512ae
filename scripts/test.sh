#!/bin/sh
# Builds rnc and runs the whole test suite twice: an optimized build (what
# users run) and an AddressSanitizer + UBSan build of the same tests, with
# LeakSanitizer on; then each libFuzzer target for a few seconds.
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
# The generated networks are built with the sanitizers too, so the golden,
# gradient-check, kill-and-resume and train_few_steps tests run generated
# code under them.  LeakSanitizer follows libgomp's and the loader's threads.
# The long end-to-end runs (every spec, real training, the README's
# command) run in the optimized build only; their code paths are in the
# sanitized tests.  So does the install test: it builds an outside project
# against the installed (here: sanitized) runtime, which tests the
# packaging, not memory safety, and the torchvision round trips through
# PyTorch (torchvision_reverse_*: PyTorch's side is what they test; skipped
# where PyTorch is missing anyway), and experiments_run, which builds its
# networks as experiments/run does (cc -O3, unsanitized) against the
# runtime.  ResNet-50's torchvision test is not
# built there (tests/CMakeLists.txt): ResNet-18's covers the same code, at a
# fraction of the sanitized cost.  tune_amx times its kernels in programs
# the tuner compiles (not sanitized either way); its compiler side and the
# emulated tiles run sanitized in bf16_mixed_b_amx_emulated.
ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions="$PWD/tests/lsan.supp" UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan --output-on-failure -j "$JOBS" \
          -E '^(every_spec|tune_amx|experiments_run|train_smoke|readme_train_command|train_script_elsewhere|install|torchvision_reverse_.*)$'

# Fuzzing: every target for 10 seconds on its corpus and regression inputs
# (clang's libFuzzer; skipped, with a note, where it is not installed).
rc=0
sh scripts/fuzz.sh 10 || rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
    exit "$rc"
fi
