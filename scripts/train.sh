#!/bin/sh
# Generate, build and train a network in one go:
#   scripts/train.sh specs/resnet20.spec --data ../shared/data/cifar10 --epochs 5
# rnc writes generated/NAME.c, cc builds generated/NAME against the runtime,
# and the rest of the arguments go to `NAME train`.
set -eu
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: scripts/train.sh SPEC [train flags...]" >&2; exit 2; }
spec=$1
shift
name=$(basename "$spec" .spec)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target rnc rnrt >/dev/null
./build/rnc "$spec" -o "generated/$name.c"
cc -O3 -march=native -fopenmp -Wall -Wextra "generated/$name.c" -Iinclude -Lbuild -lrnrt -ljansson -lxxhash -ljpeg -lpthread -lm \
   -o "generated/$name"
exec "./generated/$name" train "$@"
