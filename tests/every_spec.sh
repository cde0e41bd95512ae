#!/usr/bin/env bash
# every_spec.sh - every network in specs/ compiles and trains.
#
# usage: tests/every_spec.sh RNC SOURCE_DIR [JOBS]
#
# For each specs/*.spec: generate C at a small batch (2 for ImageNet-sized
# inputs, 8 for CIFAR-sized ones), compile it with -Werror together with
# tests/one_step.c, and run one_step: two training steps around a plain SGD
# step and an inference pass on random data, checking that the losses,
# gradients and logits are finite and that every parameter tensor moves.
#
# Specs are compiled and run JOBS at a time (default: the number of CPUs, at
# most 2 unless JOBS is given), the largest generated file first; each run
# uses RUN_THREADS OpenMP threads (default 1: this checks that every network
# builds and trains, not speed, and one thread per job keeps the OpenMP
# barriers of a 1000-layer net from stalling on a loaded machine).  Prints
# one line per spec, then "N passed, M failed"; exits non-zero if any failed.
# Environment: CC (default cc), RNC_TEST_CFLAGS (default
# "-O1 -march=native -fopenmp -Wall -Wextra -Werror": -O1 compiles the
# thousand-layer nets a third faster; the kernels' optimized builds are the
# golden and gradient tests'), RUN_TIMEOUT (600 s), RUN_THREADS (1).
set -u

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
    echo "usage: $0 RNC SOURCE_DIR [JOBS]" >&2
    exit 2
fi
RNC=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
SRC=$(cd "$2" && pwd)
JOBS=${3:-$(n=$(nproc 2>/dev/null || echo 1); [ "$n" -gt 2 ] && n=2; echo "$n")}
CC=${CC:-cc}
CFLAGS=${RNC_TEST_CFLAGS:-"-O1 -march=native -fopenmp -Wall -Wextra -Werror"}
RUN_TIMEOUT=${RUN_TIMEOUT:-600}
RUN_THREADS=${RUN_THREADS:-1}

if [ ! -x "$RNC" ]; then
    echo "every_spec.sh: $RNC is not an executable" >&2
    exit 2
fi
shopt -s nullglob
SPECS=("$SRC"/specs/*.spec)
if [ ${#SPECS[@]} -eq 0 ]; then
    echo "every_spec.sh: no specs in $SRC/specs" >&2
    exit 2
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/every_spec.XXXXXX") || exit 2
trap 'rm -rf "$TMP"' EXIT

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# Per spec, files in $TMP: NAME.c, NAME.bin, NAME.log (tool output), and
# NAME.result: "ok" or "FAIL <why>" on the first line, timings on the next.

# gen SPEC: the network's name, its batch, and the generated C.
gen() {
    local spec=$1 base name h batch t0 t1
    base=$(basename "$spec" .spec)
    name=$(awk '$1 == "network" { print $2; exit }' "$spec")
    h=$(awk '$1 == "input" { split($2, d, "x"); print d[1]; exit }' "$spec")
    [ -n "$name" ] || name=$base
    batch=8
    if [ -n "$h" ] && [ "$h" -gt 64 ]; then
        batch=2
    fi
    echo "$name" > "$TMP/$base.name"
    echo "$batch" > "$TMP/$base.batch"
    t0=$(now)
    (cd "$SRC" && "$RNC" "specs/$base.spec" -o "$TMP/$base.c" -b "$batch") > "$TMP/$base.log" 2>&1
    local rc=$?
    if [ $rc -ne 0 ]; then
        [ $rc -gt 128 ] && rc="$rc (signal $((rc - 128)))"
        echo "FAIL rnc exited with status $rc: $(head -c 300 "$TMP/$base.log" | tr '\n' ' ')" > "$TMP/$base.result"
        return
    fi
    t1=$(now)
    echo "rnc $(elapsed "$t0" "$t1")s" > "$TMP/$base.times"
}

# build BASE: compile the generated C with one_step.c.
build() {
    local base=$1 name sym t0 t1
    [ -e "$TMP/$base.result" ] && return   # generation failed
    name=$(cat "$TMP/$base.name")
    sym=rnc_model_${name//-/_}
    t0=$(now)
    if ! "$CC" $CFLAGS -I"$SRC/include" -DRNC_NO_MAIN -DMODEL="$sym" "$TMP/$base.c" "$SRC/tests/one_step.c" \
            -o "$TMP/$base.bin" -lm >> "$TMP/$base.log" 2>&1; then
        echo "FAIL cc: $(grep -m1 -E 'error|warning' "$TMP/$base.log" | head -c 300)" > "$TMP/$base.result"
        return
    fi
    t1=$(now)
    echo "cc $(elapsed "$t0" "$t1")s" >> "$TMP/$base.times"
    run "$base"
}

# run BASE: one_step, with RUN_THREADS OpenMP threads.
run() {
    local base=$1 t0 t1 rc what
    t0=$(now)
    OMP_NUM_THREADS=$RUN_THREADS timeout "$RUN_TIMEOUT" "$TMP/$base.bin" > "$TMP/$base.out" 2>&1
    rc=$?
    t1=$(now)
    echo "run $(elapsed "$t0" "$t1")s" >> "$TMP/$base.times"
    if [ $rc -eq 0 ]; then
        echo "ok $(tail -n 1 "$TMP/$base.out")" > "$TMP/$base.result"
        return
    fi
    what="exited with status $rc"
    [ $rc -eq 124 ] && what="timed out after ${RUN_TIMEOUT}s"
    [ $rc -gt 128 ] && what="killed by signal $((rc - 128))"
    echo "FAIL one_step $what: $(grep -m1 FAIL "$TMP/$base.out" | head -c 300)" > "$TMP/$base.result"
}
export -f build run now elapsed
export TMP SRC CC CFLAGS RUN_THREADS RUN_TIMEOUT

for spec in "${SPECS[@]}"; do
    gen "$spec"
done

# Build and run, the biggest generated files first, so the slowest compile starts at once.
for spec in "${SPECS[@]}"; do
    base=$(basename "$spec" .spec)
    size=$(stat -c %s "$TMP/$base.c" 2>/dev/null || echo 0)
    echo "$size $base"
done | sort -rn | awk '{ print $2 }' | xargs -P "$JOBS" -I{} bash -c 'build "$1"' _ {}

passed=0
failed=0
for spec in "${SPECS[@]}"; do
    base=$(basename "$spec" .spec)
    batch=$(cat "$TMP/$base.batch")
    [ -e "$TMP/$base.result" ] || echo "FAIL no result (worker died)" > "$TMP/$base.result"
    result=$(head -n 1 "$TMP/$base.result")
    times=$(cat "$TMP/$base.times" 2>/dev/null | tr '\n' ' ' | sed 's/ $//')
    if [ "${result%% *}" = ok ]; then
        passed=$((passed + 1))
        printf 'PASS %-20s batch %d  [%s] %s\n' "$base" "$batch" "$times" "${result#*: }"
    else
        failed=$((failed + 1))
        printf 'FAIL %-20s batch %d  [%s] %s\n' "$base" "$batch" "$times" "${result#FAIL }"
    fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
