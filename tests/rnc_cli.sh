#!/bin/sh
# rnc_cli.sh - the rnc command line as a user meets it: where -o writes, what
# it refuses, write errors on standard output, and specs at the size limits.
#
# usage: tests/rnc_cli.sh RNC SOURCE_DIR
# Prints one line per check and "N passed, M failed"; exits non-zero if any
# check failed.  Checks that need root (a device node) or /dev/full are
# reported as skipped where those are missing.
set -u
RNC=$1
SRC=$2
TMP=$(mktemp -d "${TMPDIR:-/tmp}/rnc_cli.XXXXXX") || exit 2
trap 'rm -rf "$TMP"' EXIT
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "PASS $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; }
check() {   # check NAME COMMAND...: passes when COMMAND succeeds
    name=$1
    shift
    if "$@"; then ok "$name"; else bad "$name"; fi
}
SPEC=$SRC/specs/resnet20.spec
cp "$SPEC" "$TMP/net.spec"

# -o onto a FIFO writes into it (a rename would replace it with a file).
mkfifo "$TMP/fifo"
cat "$TMP/fifo" > "$TMP/from_fifo" &
reader=$!
"$RNC" "$TMP/net.spec" -o "$TMP/fifo" --no-tune
rc=$?
wait $reader
check "-o FIFO writes through, the FIFO stays" test $rc -eq 0 -a -p "$TMP/fifo"
check "-o FIFO: the reader got the C file" grep -q 'rnc_model_resnet20' "$TMP/from_fifo"

# -o onto a device node (a private one: /dev/null itself is not put at risk).
if [ "$(id -u)" -eq 0 ] && mknod "$TMP/null" c 1 3 2>/dev/null; then
    "$RNC" "$TMP/net.spec" -o "$TMP/null" --no-tune
    check "-o device node writes through, the node stays" test $? -eq 0 -a -c "$TMP/null"
else
    echo "SKIP -o device node (needs root to make a device node)"
fi

# -o through a symbolic link replaces its target and keeps the link.
echo old > "$TMP/target.c"
ln -s target.c "$TMP/link.c"
"$RNC" "$TMP/net.spec" -o "$TMP/link.c" --no-tune
check "-o symlink keeps the link" test $? -eq 0 -a -L "$TMP/link.c"
check "-o symlink writes its target" grep -q 'rnc_model_resnet20' "$TMP/target.c"
ln -s dangling.c "$TMP/dangling_link.c"
"$RNC" "$TMP/net.spec" -o "$TMP/dangling_link.c" --no-tune
check "-o dangling symlink creates its target" grep -q 'rnc_model_resnet20' "$TMP/dangling.c"

# The output may not be the spec itself, under any name.
cp "$TMP/net.spec" "$TMP/before.spec"
"$RNC" "$TMP/net.spec" -o "$TMP/net.spec" 2> "$TMP/err"
check "-o SPEC is refused (exit 2)" test $? -eq 2
check "-o SPEC says why" grep -q 'is the spec' "$TMP/err"
ln "$TMP/net.spec" "$TMP/hard.c"
ln -s net.spec "$TMP/soft.c"
"$RNC" "$TMP/net.spec" -o "$TMP/hard.c" 2> /dev/null
check "-o a hard link to the spec is refused" test $? -eq 2
"$RNC" "$TMP/net.spec" -o "$TMP/soft.c" 2> /dev/null
check "-o a symlink to the spec is refused" test $? -eq 2
check "the spec is untouched" cmp -s "$TMP/net.spec" "$TMP/before.spec"
"$RNC" "$TMP/net.spec" -o "$TMP" 2> "$TMP/err"
check "-o FOLDER is refused" test $? -ne 0
check "no temporary files are left behind" test -z "$(find "$TMP" -name '*.tmp.*')"

# Write errors on standard output are errors.
if [ -w /dev/full ]; then
    "$RNC" --summary "$SPEC" > /dev/full 2> "$TMP/err"
    check "--summary > /dev/full exits 1" test $? -eq 1
    check "--summary > /dev/full says why" grep -q 'No space left' "$TMP/err"
    "$RNC" "$SPEC" -o - --no-tune > /dev/full 2> /dev/null
    check "-o - > /dev/full exits non-zero" test $? -ne 0
    "$RNC" --dump-graph "$SPEC" > /dev/full 2> /dev/null
    check "--dump-graph > /dev/full exits 1" test $? -eq 1
else
    echo "SKIP writes to /dev/full (no /dev/full)"
fi

# Reading stops at 1 MiB: a device that never ends is refused.
"$RNC" --summary /dev/zero 2> "$TMP/err"
check "--summary /dev/zero is refused" test $? -eq 1
check "--summary /dev/zero says why" grep -q 'more than 1 MiB' "$TMP/err"

# The summary ends with the training step's memory.
"$RNC" --summary "$SPEC" > "$TMP/summary"
check "--summary prints the step's memory" grep -q '^step-memory: [1-9][0-9]*$' "$TMP/summary"
check "--summary names activations, gradients, weights, scratch" \
    sh -c "grep -q '^  activations ' '$TMP/summary' && grep -q '^  gradients ' '$TMP/summary' && \
           grep -q '^  weights ' '$TMP/summary' && grep -q '^  scratch ' '$TMP/summary'"

# The documented limit: 100,000 blocks go through every pass but emit
# (--summary plans the whole step) and 20,000 through emit, in seconds (the
# test's timeout bounds them; before, fusion and the memory plan were
# quadratic and 10,000 blocks took two minutes).
if [ "${RNC_CLI_QUICK:-0}" = 1 ]; then   # the sanitized build: seconds become minutes
    echo "SKIP the 100,000-block spec (RNC_CLI_QUICK=1)"
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
fi
deep() {   # deep BLOCKS FILE
    printf 'network deep\ninput 32x32x3\nclasses 10\nblock basic\nshortcut A\nstem conv 3x3 16\n' > "$2"
    printf 'stage 16 blocks %d\n' "$1" >> "$2"
}
deep 100000 "$TMP/deep.spec"
"$RNC" --summary "$TMP/deep.spec" > "$TMP/deep.summary"
check "--summary of 100,000 blocks" grep -q '^parameters: 467200634$' "$TMP/deep.summary"
check "--summary of 100,000 blocks: memory" grep -q '^step-memory: ' "$TMP/deep.summary"
deep 20000 "$TMP/deep20k.spec"
mkfifo "$TMP/deep.fifo"
wc -c < "$TMP/deep.fifo" > "$TMP/deep.bytes" &
reader=$!
"$RNC" "$TMP/deep20k.spec" -o "$TMP/deep.fifo" --no-tune
rc=$?
wait $reader
check "-o of 20,000 blocks" test $rc -eq 0 -a "$(cat "$TMP/deep.bytes")" -gt 100000000
deep 100001 "$TMP/over.spec"
"$RNC" --summary "$TMP/over.spec" 2> "$TMP/err" > /dev/null
check "100,001 blocks are refused" grep -q 'between 1 and 100000, got 100001' "$TMP/err"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
