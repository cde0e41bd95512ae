#!/bin/sh
# Generate, build and train a network in one go:
#   scripts/train.sh specs/resnet20.spec --data ../shared/data/cifar10 --epochs 5
# rnc writes generated/NAME.c, cc builds generated/NAME against the runtime,
# and the rest of the arguments go to `NAME train`.  Paths (the spec, --data,
# --log, --checkpoint) are taken from the folder you run it in; the build and
# the generated files stay in the repository.
set -eu
[ $# -ge 1 ] || { echo "usage: scripts/train.sh SPEC [train flags...]" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
spec=$1
shift
[ -r "$spec" ] || { echo "scripts/train.sh: cannot read $spec" >&2; exit 2; }
name=$(basename "$spec" .spec)
cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$root/build" -j "$(nproc)" --target rnc rnrt >/dev/null
mkdir -p "$root/generated"
"$root/build/rnc" "$spec" -o "$root/generated/$name.c"
cc -O3 -march=native -fopenmp -Wall -Wextra "$root/generated/$name.c" -I"$root/include" -L"$root/build" \
   -lrnrt -ljansson -lxxhash -ljpeg -lpthread -lm -o "$root/generated/$name"
exec "$root/generated/$name" train "$@"
