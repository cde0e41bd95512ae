#!/bin/sh
# cmake --install into a temporary prefix, then what a user does with it:
# the installed rnc finds its headers in the prefix (not the source tree),
# examples/hello-rnc builds against it with find_package(rnc) and
# rnc_add_network(), a generated network builds with pkg-config's flags, and
# the installed JIT runs (when rnc was built with it).
# Usage: install.sh BUILD_DIR SOURCE_DIR SPEC
set -eu
build=$1
src=$2
spec=$3
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
prefix=$dir/prefix
cmake --install "$build" --prefix "$prefix" > "$dir/install.log" || { cat "$dir/install.log"; fail "cmake --install"; }
for f in bin/rnc lib/librnrt.a include/rnc/model.h include/rnc/runtime.h include/rnc/kernels.h include/rnc/data.h \
         include/rnc/safetensors.h include/rnc/infer.h lib/cmake/rnc/rncConfig.cmake \
         lib/cmake/rnc/rncConfigVersion.cmake lib/cmake/rnc/rncTargets.cmake lib/pkgconfig/rnc.pc \
         share/rnc/specs/resnet20.spec; do
    [ -e "$prefix/$f" ] || fail "not installed: $f"
done
rnc=$prefix/bin/rnc
"$rnc" --version | tee "$dir/version.txt"
grep -q "^headers: $prefix/include\$" "$dir/version.txt" || fail "the installed rnc does not use the prefix's headers"

# rnc reads the prefix's headers: a mark in the installed infer.h shows up in an --infer file
echo "/* the installed copy */" >> "$prefix/include/rnc/infer.h"
"$rnc" --infer "$spec" -o "$dir/inf.c"
grep -q "the installed copy" "$dir/inf.c" || fail "rnc --infer did not read the prefix's infer.h"

# an out-of-tree CMake project
export CMAKE_BUILD_PARALLEL_LEVEL=2
cmake -S "$src/examples/hello-rnc" -B "$dir/hello" -DCMAKE_PREFIX_PATH="$prefix" -DHELLO_SPEC="$spec" \
      -DCMAKE_BUILD_TYPE=Release > "$dir/cmake.log" || { cat "$dir/cmake.log"; fail "find_package(rnc)"; }
cmake --build "$dir/hello" > "$dir/build.log" 2>&1 || { cat "$dir/build.log"; fail "building examples/hello-rnc"; }
"$dir/hello/resnet20" bench --steps 1 | tee "$dir/bench.txt"
grep -q "train images/s: [0-9]" "$dir/bench.txt" || fail "the CMake-built network"
"$dir/hello/hello" | tee "$dir/hello.txt"
grep -q "hello: .*, 4 classes, loss [0-9]" "$dir/hello.txt" || fail "hello (rnc_add_network ... CLASSES 4 NO_MAIN)"

# pkg-config
mkdir "$dir/pc"
"$rnc" "$spec" -o "$dir/pc/net.c"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
(cd "$dir/pc" && ${CC:-cc} -O2 -march=native $(pkg-config --cflags rnc) net.c $(pkg-config --libs rnc) -o net) ||
    fail "building with pkg-config --cflags --libs rnc"
"$dir/pc/net" bench --steps 1 | grep "train images/s: [0-9]" || fail "the pkg-config-built network"

# the installed JIT
if RNC_CACHE_DIR="$dir/jit" "$rnc" bench "$spec" --steps 1 > "$dir/jit.txt" 2>&1; then
    grep -q "train images/s: [0-9]" "$dir/jit.txt" || { cat "$dir/jit.txt"; fail "the installed JIT"; }
else
    grep -q "this build has no JIT" "$dir/jit.txt" || { cat "$dir/jit.txt"; fail "the installed JIT"; }
    echo "(rnc was built without the JIT)"
fi
echo "1 passed, 0 failed"
