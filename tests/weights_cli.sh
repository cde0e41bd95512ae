#!/bin/sh
# The weights on a network binary's command line: train writes a
# checkpoint, export turns it into a safetensors file, eval gives the same
# numbers from either, train --init starts from it, and bad uses are refused.
# Usage: weights_cli.sh NETWORK_BINARY CIFAR_FILE
set -eu
net=$1
data=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
head -c $((3073 * 600)) "$data" > "$dir/subset.bin"
"$net" train --data "$dir/subset.bin" --val 100 --steps 3 --quiet --checkpoint "$dir/a.ckpt"
"$net" export --weights "$dir/a.ckpt" -o "$dir/a.safetensors" | tee "$dir/out"
grep -q "exported .* to $dir/a.safetensors (torchvision's names)" "$dir/out" || fail "export"
head -c 200 "$dir/a.safetensors" | grep -q '"conv1.weight"' || fail "no conv1.weight in the export's header"
"$net" eval --data "$dir/subset.bin" --val 100 --weights "$dir/a.ckpt" | grep -E '^(loss|accuracy):' > "$dir/ckpt.txt"
"$net" eval --data "$dir/subset.bin" --val 100 --weights "$dir/a.safetensors" | grep -E '^(loss|accuracy):' > "$dir/st.txt"
cat "$dir/st.txt"
cmp -s "$dir/ckpt.txt" "$dir/st.txt" || fail "eval differs between the checkpoint and its export"
# re-export from the safetensors file: the same bytes
"$net" export --weights "$dir/a.safetensors" -o "$dir/b.safetensors" > /dev/null
cmp -s "$dir/a.safetensors" "$dir/b.safetensors" || fail "export of an export differs"
"$net" train --data "$dir/subset.bin" --val 100 --steps 1 --init "$dir/a.safetensors" | tee "$dir/init.txt"
grep -q "^init $dir/a.safetensors: all [0-9]* tensors loaded" "$dir/init.txt" || fail "train --init"
grep -q "^final: train loss [0-9]" "$dir/init.txt" || fail "train --init did not train"
# refusals
if "$net" train --data "$dir/subset.bin" --steps 1 --init "$dir/a.safetensors" --resume "$dir/a.ckpt" 2> "$dir/err"; then
    fail "--init with --resume"; fi
grep -q "give --init or --resume, not both" "$dir/err" || fail "no message for --init with --resume"
if "$net" export --weights "$dir/a.ckpt" 2> "$dir/err"; then fail "export without -o"; fi
grep -q "export needs --weights FILE and -o FILE.safetensors" "$dir/err" || fail "no message for export without -o"
head -c 1000 "$dir/a.safetensors" > "$dir/cut.safetensors"
if "$net" train --data "$dir/subset.bin" --val 100 --steps 1 --init "$dir/cut.safetensors" 2> "$dir/err"; then fail "a truncated --init"; fi
grep -q "cut.safetensors" "$dir/err" || fail "no message for a truncated file"
if "$net" eval --data "$dir/subset.bin" --val 100 --weights "$dir/subset.bin" 2> "$dir/err"; then fail "eval of a data file"; fi
grep -q "not a safetensors file" "$dir/err" || { cat "$dir/err"; fail "no message for weights that are not weights"; }
echo "1 passed, 0 failed"
