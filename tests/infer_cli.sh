#!/bin/sh
# rnc --infer as a user would use it: the training binary (infer_ref) trains
# a few steps and exports its weights; in a separate folder, with nothing of
# rnc's but the two generated files, a program (infer_app.c) is built with
# a C compiler, OpenMP and libm, loads the weights (from the file, and again
# embedded with --embed-weights under another --prefix), and must match the
# training binary's evaluation-mode logits to 1e-4.  Its dynamic libraries
# must be libc, libm and OpenMP's only.  The first network is built with Clang
# too, where it is installed.
# Usage: infer_cli.sh RNC SOURCE_DIR "CFLAGS" SPEC:INFER_REF [SPEC:INFER_REF...]
set -eu
rnc=$1
src=$2
cflags=$3
shift 3
cc=${CC:-cc}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
passed=0
for pair in "$@"; do
    spec=${pair%%:*}
    ref=${pair#*:}
    name=$(basename "$spec" .spec)
    d=$dir/$name
    mkdir -p "$d/user" "$d/embedded"
    n=11   # not a multiple of the batch: the last batch is padded
    "$ref" "$d" $n

    # the weights from the file
    "$rnc" --infer "$spec" -b 4 -o "$d/user/net.c"
    cp "$src/tests/infer_app.c" "$d/user/app.c"
    (cd "$d/user" && $cc $cflags -std=c11 -Werror net.c app.c -lm -o app) || fail "$name: the inference file does not build"
    "$d/user/app" "$d/w.safetensors" "$d/images.f32" "$d/logits.f32" $n || fail "$name: logits"
    clang=$(command -v clang || command -v clang-14 || true)
    if [ -n "$clang" ] && [ $passed -eq 0 ]; then   # another compiler (the first network), its warnings as errors too
        (cd "$d/user" && "$clang" -O2 -march=native -fopenmp -Wall -Wextra -std=c11 -Werror net.c app.c -lm -o app-clang) ||
            fail "$name: clang cannot build it"
        "$d/user/app-clang" "$d/w.safetensors" "$d/images.f32" "$d/logits.f32" $n || fail "$name: logits (clang)"
    fi
    if command -v ldd > /dev/null; then
        extra=$(ldd "$d/user/app" | awk '{ print $1 }' | grep -v -E '^(linux-vdso|/lib64/ld-linux|libc\.so|libm\.so|libgomp\.so|libomp\.so|/lib/ld-linux)' |
                grep -v -E '^lib(asan|ubsan|stdc\+\+|gcc_s|pthread|dl|rt)\.so' || true)
        [ -z "$extra" ] || fail "$name: the program links more than libc, libm and OpenMP: $extra"
    fi

    # embedded, another prefix, another batch
    "$rnc" --infer "$spec" -b 3 --embed-weights "$d/w.safetensors" --prefix tiny -o "$d/embedded/tiny.c"
    grep -q "Weights: embedded from" "$d/embedded/tiny.c" || fail "$name: no embedded weights"
    cp "$src/tests/infer_app.c" "$d/embedded/app.c"
    (cd "$d/embedded" && $cc $cflags -std=c11 -Werror -DPREFIX=tiny -DUPREFIX=TINY '-DHEADER="tiny.h"' tiny.c app.c -lm -o app) ||
        fail "$name: the embedded inference file does not build"
    (cd "$d/embedded" && ./app - "$d/images.f32" "$d/logits.f32" $n) || fail "$name: embedded logits"
    passed=$((passed + 1))
done

# refusals: no -o FILE.c, weights of another network
[ $# -ge 2 ] || fail "give two networks"
first=${1%%:*}
second=${2%%:*}
if "$rnc" --infer "$first" -o "$dir/x.txt" 2> "$dir/err.txt"; then fail "--infer wrote x.txt"; fi
grep -q "give -o FILE.c" "$dir/err.txt" || fail "no message for -o x.txt"
other=$dir/$(basename "$second" .spec)/w.safetensors
if "$rnc" --infer "$first" --embed-weights "$other" -o "$dir/y.c" 2> "$dir/err.txt"; then fail "embedded another network's weights"; fi
cat "$dir/err.txt"
grep -q "rnc: error: " "$dir/err.txt" || fail "no message for another network's weights"
[ ! -e "$dir/y.c" ] && [ ! -e "$dir/y.h" ] || fail "a failed --infer left its output"
echo "$passed passed, 0 failed"
