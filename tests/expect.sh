#!/bin/sh
# expect.sh STATUS PATTERN [--not PATTERN] -- COMMAND [ARG...]
# Runs COMMAND and passes only when it exits with STATUS and its output
# (stdout and stderr together) matches the extended regular expression
# PATTERN, and not the --not one.  CTest's PASS_REGULAR_EXPRESSION alone
# ignores the exit status; this checks both.
set -u
[ $# -ge 4 ] || { echo "usage: expect.sh STATUS PATTERN [--not PATTERN] -- COMMAND..." >&2; exit 2; }
want=$1 pattern=$2
shift 2
bad=""
if [ "$1" = --not ]; then
    bad=$2
    shift 2
fi
[ "$1" = -- ] || { echo "expect.sh: '--' before the command expected" >&2; exit 2; }
shift
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$@" >"$out" 2>&1
status=$?
cat "$out"
if [ "$status" -ne "$want" ]; then
    echo "expect.sh: FAIL: exit status $status, expected $want" >&2
    exit 1
fi
if ! grep -Eq "$pattern" "$out"; then
    echo "expect.sh: FAIL: no line matches /$pattern/" >&2
    exit 1
fi
if [ -n "$bad" ] && grep -Eq "$bad" "$out"; then
    echo "expect.sh: FAIL: a line matches /$bad/" >&2
    exit 1
fi
exit 0
