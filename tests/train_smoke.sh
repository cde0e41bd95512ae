#!/bin/sh
# A short training run on real CIFAR-10 images must drive the loss down:
# mini_cifar for 3 epochs on the first 3000 images of a data file (500 held
# out), then eval of the checkpoint it wrote.
# Usage: train_smoke.sh NETWORK_BINARY DATA_FILE
set -eu
net=$1
data=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
head -c $((3073 * 3000)) "$data" > "$dir/subset.bin"
"$net" train --data "$dir/subset.bin" --val 500 --epochs 3 --seed 7 --quiet \
    --log "$dir/log.csv" --checkpoint "$dir/net.ckpt"
cat "$dir/log.csv"
# Columns: epoch,step,lr,train_loss,train_err,val_loss,val_err,...
awk -F, 'NR == 2 { first = $4 }
         NR == 4 { last = $4; val_err = $7 }
         END {
    printf "train loss %.3f -> %.3f, validation error %.3f\n", first, last, val_err
    if (NR != 4) { print "FAIL: expected 3 epoch rows"; exit 1 }
    if (last > first - 0.15) { print "FAIL: the training loss did not go down"; exit 1 }
    if (val_err > 0.80) { print "FAIL: validation error not below 80% (chance: 90%)"; exit 1 }
}' "$dir/log.csv"
"$net" eval --data "$dir/subset.bin" --val 500 --weights "$dir/net.ckpt" | tee "$dir/eval.txt"
grep -q '^accuracy: 0\.[2-9]' "$dir/eval.txt" || { echo "FAIL: eval accuracy below 0.20"; exit 1; }
echo "1 passed, 0 failed"
