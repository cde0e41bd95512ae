#!/bin/sh
# Builds rnc's libFuzzer targets (clang, -DRNC_FUZZ=ON, in build-fuzz/) and
# runs each one on its seed corpus and regression inputs:
#
#   sh scripts/fuzz.sh [SECONDS] [TARGET...]      each target for SECONDS (default 10)
#   sh scripts/fuzz.sh --runs N [TARGET...]       each target for N executions
#
# Targets: spec cifar checkpoint tunedb index (tests/fuzz/README.md).  They
# start from tests/fuzz/corpus/TARGET (the campaigns' inputs, minimized) and
# the seeds; new entries go to build-fuzz/corpus/TARGET (merge them in with
# -merge=1 after a long run); a crash, leak or timeout
# leaves its input in build-fuzz/artifacts/ and fails the script: copy it to
# tests/fuzz/regressions/TARGET/ once fixed, so the suite replays it.
# Exits 77 (skipped) when clang's libFuzzer is not installed
# (Debian: clang-14 libclang-rt-14-dev).
set -eu
cd "$(dirname "$0")/.."
CC=${FUZZ_CC:-clang-14}
limit="-max_total_time=10"
case "${1:-}" in
--runs) limit="-runs=$2"; shift 2 ;;
''|*[!0-9]*) ;;
*) limit="-max_total_time=$1"; shift ;;
esac
targets=${*:-spec cifar checkpoint tunedb index}

probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }' > "$probe/p.c"
if ! command -v "$CC" >/dev/null 2>&1 || ! "$CC" -fsanitize=fuzzer "$probe/p.c" -o "$probe/p" >/dev/null 2>&1; then
    echo "fuzz: skipped ($CC with libFuzzer not found; install clang-14 libclang-rt-14-dev)"
    exit 77
fi

CC=$CC cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DRNC_FUZZ=ON -DRNC_TESTS=OFF -DRNC_JIT=OFF >/dev/null
cmake --build build-fuzz -j "$(nproc 2>/dev/null || echo 2)" >/dev/null
./build-fuzz/tests/fuzz/fuzz_seeds build-fuzz/seeds . >/dev/null
mkdir -p build-fuzz/artifacts
failed=0
for t in $targets; do
    mkdir -p "build-fuzz/corpus/$t"
    dict=""
    [ "$t" = spec ] && dict="-dict=tests/fuzz/spec.dict"
    log="build-fuzz/fuzz_$t.log"
    # -close_fd_mask=3: the targets' own messages (every refused input has
    # one) are not written; libFuzzer's report of a crash still is.
    if ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        "./build-fuzz/tests/fuzz/fuzz_$t" $limit $dict -timeout=20 -rss_limit_mb=2048 -close_fd_mask=3 \
        -print_final_stats=1 -artifact_prefix="build-fuzz/artifacts/$t-" \
        "build-fuzz/corpus/$t" "tests/fuzz/corpus/$t" "build-fuzz/seeds/$t" "tests/fuzz/regressions/$t" > "$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        secs=$(sed -n 's/^stat::.*total_time\(_s\)\{0,1\}: *//p' "$log" | head -n 1)
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
        echo "fuzz $t: ok, ${runs:-?} executions, $cov, corpus $(ls "build-fuzz/corpus/$t" | wc -l) files"
    else
        failed=1
        echo "fuzz $t: FAILED (see $log; inputs in build-fuzz/artifacts/)"
        tail -n 30 "$log"
    fi
done
exit $failed
