#!/bin/sh
# experiments_run_test.sh BUILD_DIR SOURCE_DIR DATA_BIN: experiments/run on
# a runs.txt of its own (RNC_RUNS), with this build's rnc and runtime
# (RNC_BUILD), on the first 600 images of DATA_BIN.  A run trains to its epochs and
# keeps log.csv, out.txt and final.ckpt (no checkpoint); started again it is
# skipped; --allow-changes on a run that starts afresh is taken (it used to
# stop the run); --precision goes to rnc (bf16 code), not to the binary; an
# unknown name, and --precision on a PyTorch run, are refused.
set -u
build=$1 src=$2 data=$3
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "experiments_run_test: FAIL: $*" >&2; exit 1; }
cat > "$dir/runs.txt" <<'RUNS'
# NAME     SPEC                              EPOCHS LR-STEPS EXTRA FLAGS
tiny       tests/specs/mini_cifar.spec       2      1        --val 100
tinybf16   tests/specs/mini_cifar.spec       1      1        --val 100 --precision bf16
tinytorch  torch:tests/specs/mini_cifar.spec 1      1        --precision bf16
RUNS
head -c $((600 * 3073)) "$data" > "$dir/small.bin"
run() { RNC_RUNS="$dir" RNC_BUILD="$build" RNC_DATA="$dir/small.bin" "$src/experiments/run" "$@"; }

run --allow-changes tiny > "$dir/first" 2>&1 || { cat "$dir/first" "$dir/runs/tiny/out.txt"; fail "tiny stopped"; }
grep -q "^tiny: finished, 2 epochs$" "$dir/first" || { cat "$dir/first"; fail "tiny did not finish"; }
[ "$(wc -l < "$dir/runs/tiny/log.csv")" -eq 3 ] || fail "tiny's log has not a header and 2 rows"
[ -s "$dir/runs/tiny/final.ckpt" ] || fail "no final.ckpt"
[ ! -e "$dir/runs/tiny/checkpoint.ckpt" ] || fail "checkpoint.ckpt kept after the run finished"
grep -q "^epoch 2/2 " "$dir/runs/tiny/out.txt" || fail "out.txt has not the run's console"
grep -q "(rnc_bf16 \*)(work" "$dir/bin/tiny.c" && fail "tiny (fp32) was generated with bf16 activations"

cp "$dir/runs/tiny/log.csv" "$dir/log.before"
run tiny > "$dir/second" 2>&1 || fail "a finished run started again: exit $?"
grep -q "^tiny: finished (" "$dir/second" || { cat "$dir/second"; fail "a finished run was not skipped"; }
cmp -s "$dir/log.before" "$dir/runs/tiny/log.csv" || fail "a skipped run's log changed"

run tinybf16 > "$dir/bf16" 2>&1 || { cat "$dir/bf16" "$dir/runs/tinybf16/out.txt"; fail "tinybf16 stopped"; }
grep -q "(rnc_bf16 \*)(work" "$dir/bin/tinybf16.c" || fail "--precision bf16 did not reach rnc"
[ -s "$dir/runs/tinybf16/final.ckpt" ] || fail "tinybf16 did not finish"

out=$(run nosuch 2>&1) && fail "an unknown run was accepted"
echo "$out" | grep -q "no run 'nosuch' in runs.txt" || fail "message: $out"
out=$(run tinytorch 2>&1) && fail "--precision on a PyTorch run was accepted"
echo "$out" | grep -q "tinytorch: PyTorch runs are fp32" || fail "message: $out"
echo "experiments_run_test: ok"
