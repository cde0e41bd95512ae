#!/bin/sh
# The reverse of test_torchvision: weights rnc trained (two SGD steps from the
# golden's), exported with torchvision's names, loaded by torchvision's own
# model (load_state_dict, strict) give rnc's logits.  Needs python3-torch and
# python3-torchvision; without them the check reports skipped (status 77).
# Usage: torchvision_reverse.sh TEST_BINARY ARCH SOURCE_DIR
set -eu
bin=$1
arch=$2
src=$3
py=${PYTHON:-/usr/bin/python3}
if ! "$py" -c "import torch, torchvision" 2>/dev/null; then
    echo "skipped: $py cannot import torch and torchvision (Debian: python3-torch python3-torchvision)"
    exit 77
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$bin" --train-export "$dir"
"$py" "$src/tools/torchvision_golden.py" --check "$dir/rnc.safetensors" --arch "$arch" --logits "$dir/logits.txt"
echo "1 passed, 0 failed"
