#!/bin/sh
# --classes and --input on the JIT's command line: `rnc train SPEC --classes
# auto` on a 3-class image folder compiles a 3-way classifier and trains it;
# without it the run stops and says how to go on; `rnc bench` takes
# --classes N --input HxWxC; and `--init` with 10-class weights fine-tunes
# the 3-class network (all but the classifier).
# Usage: classes_cli.sh RNC SOURCE_DIR JPEG_SAMPLE_DIR
set -eu
rnc=$1
src=$2
sample=$3
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
export RNC_CACHE_DIR="$dir/jit" XDG_CACHE_HOME="$dir/cache"
fail() { echo "FAIL: $*"; exit 1; }

mkdir -p "$dir/three"
for c in airplane cat ship; do
    [ -d "$sample/$c" ] || { echo "no $sample/$c: skipped"; exit 77; }
    ln -s "$sample/$c" "$dir/three/$c"
done
spec=$src/tests/specs/mini_cifar.spec   # 10 classes

"$rnc" train "$spec" --data "$dir/three" --classes auto --steps 1 --val 30 > "$dir/auto.txt" 2>&1 ||
    { cat "$dir/auto.txt"; fail "rnc train --classes auto"; }
cat "$dir/auto.txt"
grep -q -- "--classes auto: 3 classes (the class folders of $dir/three)" "$dir/auto.txt" || fail "no --classes auto line"
grep -q "JPEG image folders, 3 classes" "$dir/auto.txt" || fail "not trained on 3 classes"
grep -q "^final: train loss [0-9]" "$dir/auto.txt" || fail "no final line"

if "$rnc" train "$spec" --data "$dir/three" --steps 1 --val 30 > "$dir/plain.txt" 2>&1; then
    fail "a 10-class network trained on 3 class folders"
fi
grep -q "has 10 classes but $dir/three has 3 class folders (compile the spec with --classes 3, or run rnc train SPEC --classes auto)" \
    "$dir/plain.txt" || { cat "$dir/plain.txt"; fail "no hint"; }

"$rnc" bench "$spec" --classes 4 --input 16x16x3 -b 8 --steps 1 > "$dir/bench.txt" 2>&1 ||
    { cat "$dir/bench.txt"; fail "rnc bench --classes --input"; }
grep -q "bench mini_cifar: batch 8, input 16x16x3" "$dir/bench.txt" || { cat "$dir/bench.txt"; fail "input not 16x16x3"; }
"$rnc" bench "$spec" --classes 4 --input 16x16x3 -b 8 --help > "$dir/help.txt" 2>&1
grep -q "input 16x16x3 (HxWxC), 4 classes" "$dir/help.txt" || { cat "$dir/help.txt"; fail "usage does not show the overrides"; }
if "$rnc" bench "$spec" --classes auto --steps 1 > "$dir/noauto.txt" 2>&1; then
    fail "--classes auto without --data"
fi
grep -q "give --data" "$dir/noauto.txt" || { cat "$dir/noauto.txt"; fail "no message for --classes auto without --data"; }
# fine-tuning: 10-class weights (trained on the whole sample, exported through
# the JIT) into the 3-class network: everything but the classifier
"$rnc" train "$spec" --data "$sample" --steps 1 --val 20 --quiet --checkpoint "$dir/c10.ckpt" > /dev/null 2>&1 ||
    fail "training on the 10 classes"
"$rnc" export "$spec" --weights "$dir/c10.ckpt" -o "$dir/c10.safetensors" > /dev/null || fail "rnc export"
"$rnc" train "$spec" --data "$dir/three" --classes auto --init "$dir/c10.safetensors" --steps 1 --val 30 \
    > "$dir/tune.txt" 2>&1 || { cat "$dir/tune.txt"; fail "fine-tuning"; }
grep -q "its classifier (fc.weight, fc.bias) is for 10 classes, this network has 3: the classifier starts from seed 1's initialization (fine-tuning)" \
    "$dir/tune.txt" || { cat "$dir/tune.txt"; fail "no fine-tuning message"; }
grep -q "^final: train loss [0-9]" "$dir/tune.txt" || fail "fine-tuning did not train"
echo "1 passed, 0 failed"
