#!/bin/sh
# Data-parallel training under mpirun (docs/distributed.md), on mini_cifar at a
# global batch of 128: ONE is generated for one process (rnc -b 128), TWO for
# two (rnc -b 128 --ranks 2: 64 images per process).  Each process runs one
# thread.  Exits 77 (ctest: skipped) where mpirun or the MPI runtime is missing.
# RNC_MPI_TEST_STEPS (a multiple of 4; default 20) shortens the runs (the sanitized build).
#
# Usage: mpi_train.sh TEST HAVE_MPI MPIRUN ONE TWO CKPT_DIFF DATA_FILE RNC SPEC
#   equivalence  2 processes with --sync-bn = 1 process at the whole batch: the
#                losses of 20 steps and the weights to 1e-5; without --sync-bn
#                they are not; two identical runs are identical bit for bit
#   batch_split  a global batch that does not divide, a network for another
#                number of processes: refused, with a message, once
#   outputs      only rank 0 writes the log, step log and checkpoint and prints;
#                a run resumed under mpirun (the checkpoint on rank 0's disk
#                only) ends bit for bit where the uninterrupted run does
#   errors       a failure on one rank (its data missing; a fault injected
#                mid-run; the rank killed) stops every rank, the error printed
#                once, without a hang
set -eu
test=$1 have_mpi=$2 mpirun=$3 one=$4 two=$5 ckpt_diff=$6 data=$7 rnc=$8 spec=$9

fail() { echo "FAIL: $*"; exit 1; }
skip() { echo "skipped: $*"; exit 77; }

# What needs no MPI: the compiler refuses a batch that does not split.
if [ "$test" = batch_split ]; then
    out=$("$rnc" "$spec" -o /dev/null -b 100 --ranks 3 2>&1) && fail "rnc accepted -b 100 --ranks 3"
    echo "$out" | grep -q "a batch of 100 does not split evenly over 3 processes" ||
        fail "rnc -b 100 --ranks 3 said: $out"
    echo "rnc -b 100 --ranks 3: $out"
fi

[ "$have_mpi" = ON ] || skip "this build has no MPI (install libopenmpi-dev openmpi-bin and reconfigure)"
command -v "$mpirun" >/dev/null 2>&1 || skip "no mpirun ($mpirun)"
[ -r "$data" ] || fail "no CIFAR-10 data at $data"

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# 2560 images: 20 iterations of 128, one epoch
head -c $((3073 * 2560)) "$data" > "$dir/sub.bin"
# The CI runs as root; two processes may share a core here.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# In the sanitized build: Open MPI keeps allocations of components it
# dlopens and unloads at MPI_Finalize (unsymbolizable, so not suppressible
# by name); leak checking is off for these processes, the rest of ASan on.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
mpi="$mpirun --oversubscribe --bind-to none"
# A small learning rate: at 0.05 the first iterations of this net amplify
# rounding differences ~10x per step, and even one process with another
# summation order (rnc --schedule naive) drifts past 1e-5 within 20 steps.
run="train --data $dir/sub.bin --val 0 --threads 1 --seed 1 --lr 0.0005"
steps=${RNC_MPI_TEST_STEPS:-20}

# Largest relative difference of the losses of two step logs (step,loss,hits).
loss_diff() {
    awk -F, 'NR == FNR { a[$1] = $2; n++; next }
             { if (!($1 in a)) { print "missing"; exit } d = ($2 - a[$1]) / a[$1]; if (d < 0) d = -d
               if (d > m) m = d; k++ }
             END { if (k != n || k == 0) print "missing"; else printf "%.3g\n", m }' "$1" "$2"
}
# Does float $1 <= $2?
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 <= b + 0) }'; }
# How often stderr file $1 has the line pattern $2.
count() { grep -c "$2" "$1" || true; }

case $test in
equivalence)
    "$one" $run --steps $steps --quiet --step-log "$dir/one.csv" --checkpoint "$dir/one.ckpt" >/dev/null
    "$one" $run --steps 1 --quiet --checkpoint "$dir/one1.ckpt" >/dev/null
    # small buckets (4 for the 0.29 MiB of gradients), launched during the backward pass
    $mpi -np 2 "$two" $run --steps $steps --quiet --sync-bn --bucket-mb 0.05 --step-log "$dir/two.csv" \
        --checkpoint "$dir/two.ckpt" >/dev/null
    [ "$(wc -l < "$dir/two.csv")" -eq $steps ] || fail "the 2-process step log has $(wc -l < "$dir/two.csv") rows"
    d=$(loss_diff "$dir/one.csv" "$dir/two.csv")
    echo "losses of $steps steps, 2 processes --sync-bn vs 1: largest relative difference $d"
    le "$d" 1e-5 || fail "the losses differ by $d (more than 1e-5)"
    # The momentum buffers (sums of the last gradients) follow the weights'
    # tiny differences with a gain of some hundreds here: 1e-2 for them.
    "$ckpt_diff" "$dir/one.ckpt" "$dir/two.ckpt" 1e-5 1e-2 || fail "the weights differ by more than 1e-5"
    # ... while the weights moved well past the tolerance
    if "$ckpt_diff" "$dir/one1.ckpt" "$dir/one.ckpt" 1e-4 1 >/dev/null; then
        fail "the weights moved by less than 1e-4 after the first step: the comparison shows nothing"
    fi
    # Per-process batch statistics are another computation: visibly different.
    $mpi -np 2 "$two" $run --steps $steps --quiet --step-log "$dir/local.csv" >/dev/null
    d=$(loss_diff "$dir/one.csv" "$dir/local.csv")
    echo "without --sync-bn (per-process batch statistics): largest relative difference $d"
    le 1e-4 "$d" || fail "without --sync-bn the losses are within 1e-4 of one process's ($d): is BN synced?"
    le "$d" 0.1 || fail "without --sync-bn the losses are off by $d"
    # The same run again: bit for bit.
    $mpi -np 2 "$two" $run --steps $steps --quiet --sync-bn --bucket-mb 0.05 --step-log "$dir/again.csv" \
        --checkpoint "$dir/again.ckpt" >/dev/null
    cmp "$dir/two.ckpt" "$dir/again.ckpt" || fail "two identical 2-process runs wrote different checkpoints"
    cmp "$dir/two.csv" "$dir/again.csv" || fail "two identical 2-process runs logged different losses"
    echo "two identical 2-process runs: identical checkpoints and losses"
    ;;
batch_split)
    for np in 3 1; do
        set +e
        timeout 60 $mpi -np $np "$two" $run --steps 2 > "$dir/out" 2> "$dir/err"
        rc=$?
        set -e
        [ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "mpirun -np $np of a 2-process network: exit $rc"
        n=$(count "$dir/err" "generated for 2 processes")
        [ "$n" -eq 1 ] || { cat "$dir/err"; fail "mpirun -np $np: the refusal printed $n times"; }
        echo "mpirun -np $np: $(grep "generated for 2" "$dir/err")"
    done
    set +e
    timeout 60 $mpi -np 2 "$one" $run --steps 2 > "$dir/out" 2> "$dir/err"
    rc=$?
    set -e
    [ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "mpirun -np 2 of a 1-process network: exit $rc"
    n=$(count "$dir/err" "generated for one process")
    [ "$n" -eq 1 ] || { cat "$dir/err"; fail "mpirun -np 2 of a 1-process network: the refusal printed $n times"; }
    echo "mpirun -np 2 of a 1-process network: $(grep "generated for one" "$dir/err")"
    # rnc train SPEC (the JIT) under mpirun generates code for the launched processes
    if "$rnc" train --help >/dev/null 2>&1; then
        set +e
        timeout 60 $mpi -np 3 "$rnc" train "$spec" -b 128 --data "$dir/sub.bin" --steps 2 > "$dir/out" 2> "$dir/err"
        rc=$?
        set -e
        [ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "mpirun -np 3 rnc train -b 128: exit $rc"
        n=$(count "$dir/err" "a batch of 128 does not split evenly over 3 processes")
        [ "$n" -eq 1 ] || { cat "$dir/err"; fail "mpirun -np 3 rnc train -b 128: the refusal printed $n times"; }
        echo "mpirun -np 3 rnc train -b 128: $(grep "does not split" "$dir/err")"
    fi
    ;;
outputs)
    # half the steps, resumed halfway
    steps=$((steps / 2))
    half=$((steps / 2))
    mkdir "$dir/r0" "$dir/r1" "$dir/whole" "$dir/local"
    files="--log log.csv --checkpoint net.ckpt --step-log steps.csv"
    # Rank 0 and rank 1 in their own directories, as on two machines.
    two_dirs() {
        timeout 60 $mpi -np 1 -wdir "$dir/r0" "$two" "$@" : -np 1 -wdir "$dir/r1" "$two" "$@"
    }
    two_dirs $run --sync-bn --steps $half $files > "$dir/out1"
    for f in log.csv net.ckpt steps.csv; do
        [ -s "$dir/r0/$f" ] || fail "rank 0 did not write $f"
    done
    [ -z "$(ls -A "$dir/r1")" ] || fail "rank 1 wrote $(ls -A "$dir/r1")"
    [ "$(grep -c '^final:' "$dir/out1")" -eq 1 ] || { cat "$dir/out1"; fail "the run's last line is not printed once"; }
    [ "$(grep -c '^train mini_cifar' "$dir/out1")" -eq 1 ] || fail "the run's header is not printed once"
    grep -q "^data-parallel: 2 processes, batch 64 each" "$dir/out1" || fail "no data-parallel line: $(cat "$dir/out1")"
    echo "$half steps: only rank 0 wrote (log.csv net.ckpt steps.csv) and printed"
    # Resumed: rank 1 has no checkpoint to read; it starts from rank 0's.
    two_dirs $run --sync-bn --steps $steps --resume net.ckpt $files > "$dir/out2"
    grep -q "resumed from net.ckpt at epoch 0, step $half" "$dir/out2" || fail "not resumed: $(cat "$dir/out2")"
    [ -z "$(ls -A "$dir/r1")" ] || fail "rank 1 wrote $(ls -A "$dir/r1") when resuming"
    (cd "$dir/whole" && timeout 60 $mpi -np 2 "$two" $run --sync-bn --steps $steps $files --quiet >/dev/null)
    cmp "$dir/r0/net.ckpt" "$dir/whole/net.ckpt" || fail "resumed steps do not end where uninterrupted ones do"
    cmp "$dir/r0/steps.csv" "$dir/whole/steps.csv" || fail "resumed steps logged other losses than uninterrupted ones"
    [ "$(tail -n 1 "$dir/r0/log.csv" | cut -d, -f2)" = $steps ] || fail "the log does not end at step $steps"
    echo "--sync-bn: $half steps, then $half resumed under mpirun = $steps steps, bit for bit (checkpoint and losses)"
    # Without --sync-bn the ranks' running statistics differ and the
    # checkpoint holds their mean: the weights and momentum still replay.
    rm -f "$dir/r0/"*
    two_dirs $run --steps $half $files --quiet >/dev/null
    two_dirs $run --steps $steps --resume net.ckpt $files --quiet >/dev/null
    (cd "$dir/local" && timeout 60 $mpi -np 2 "$two" $run --steps $steps $files --quiet >/dev/null)
    "$ckpt_diff" "$dir/r0/net.ckpt" "$dir/local/net.ckpt" 0 ||
        fail "without --sync-bn, resumed steps have other weights than uninterrupted ones"
    cmp "$dir/r0/steps.csv" "$dir/local/steps.csv" || fail "without --sync-bn, resumed steps logged other losses"
    echo "per-process statistics: $half + $half resumed steps have the weights and losses of $steps, bit for bit"
    ;;
errors)
    # 1. rank 1's data file is missing: found in the setup, which all ranks agree on.
    set +e
    timeout 60 $mpi -np 1 "$two" $run --steps 5 : -np 1 "$two" train --data "$dir/missing.bin" --val 0 --threads 1 \
        --steps 5 > "$dir/out" 2> "$dir/err"
    rc=$?
    set -e
    [ $rc -ne 124 ] || fail "a rank without its data: the run hung"
    [ $rc -ne 0 ] || fail "a rank without its data: exit 0"
    n=$(count "$dir/err" "missing.bin")
    [ "$n" -eq 1 ] || { cat "$dir/err"; fail "the missing file is named $n times"; }
    grep -q "rank 1 of 2: .*missing.bin" "$dir/err" || fail "the error does not name rank 1: $(cat "$dir/err")"
    echo "rank 1 without its data: exit $rc, printed once: $(grep missing.bin "$dir/err")"
    # 2. rank 1 fails at iteration 3 while rank 0 waits for its gradients.
    set +e
    timeout 60 $mpi -np 2 -x RNC_TEST_FAIL_AT=3:1 "$two" $run --steps 20 > "$dir/out" 2> "$dir/err"
    rc=$?
    set -e
    [ $rc -ne 124 ] || fail "a rank failing mid-run: the run hung"
    [ $rc -ne 0 ] || fail "a rank failing mid-run: exit 0"
    n=$(count "$dir/err" "fault injected")
    [ "$n" -eq 1 ] || { cat "$dir/err"; fail "the mid-run error is printed $n times"; }
    grep -q "rank 1 of 2: iteration 3: fault injected" "$dir/err" || fail "the error: $(cat "$dir/err")"
    echo "rank 1 failing at iteration 3: exit $rc, printed once: $(grep "fault injected" "$dir/err")"
    # 3. every rank diverges alike: rank 0 says so, once.
    set +e
    timeout 60 $mpi -np 2 "$two" train --data "$dir/sub.bin" --val 0 --threads 1 --lr 1e4 --steps 20 \
        > "$dir/out" 2> "$dir/err"
    rc=$?
    set -e
    [ $rc -ne 124 ] && [ $rc -ne 0 ] || fail "a diverging run: exit $rc"
    n=$(count "$dir/err" "training diverged")
    [ "$n" -eq 1 ] || { cat "$dir/err"; fail "the divergence is reported $n times"; }
    echo "a diverging run: exit $rc, printed once: $(grep "training diverged" "$dir/err" | cut -c1-100)..."
    # 4. rank 1 is killed (SIGKILL) mid-run: mpirun ends the job.
    cat > "$dir/rank1.sh" <<EOF
#!/bin/sh
echo \$\$ > "$dir/rank1.pid"
exec "$two" "\$@"
EOF
    chmod +x "$dir/rank1.sh"
    timeout 60 $mpi -np 1 "$two" $run --steps 100000 --quiet : -np 1 "$dir/rank1.sh" $run --steps 100000 --quiet \
        > "$dir/out" 2> "$dir/err" &
    job=$!
    i=0
    while [ ! -s "$dir/rank1.pid" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
    [ -s "$dir/rank1.pid" ] || { kill $job; fail "rank 1 did not start"; }
    sleep 1   # into the training steps
    kill -9 "$(cat "$dir/rank1.pid")"
    set +e
    wait $job
    rc=$?
    set -e
    [ $rc -ne 124 ] || fail "a killed rank: the other one hung"
    [ $rc -ne 0 ] || fail "a killed rank: exit 0"
    echo "rank 1 killed: mpirun ended the job, exit $rc"
    ;;
*)
    fail "unknown test $test"
    ;;
esac
echo "1 passed, 0 failed"
