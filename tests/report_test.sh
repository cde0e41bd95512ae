#!/bin/sh
# report_test.sh RNC SOURCE_DIR: experiments/report on the runs of
# tests/report/ (a finished run, one in progress, one without an epoch, one
# not started, one PyTorch run without a folder) writes the table rows and
# figures it should, keeps the page's prose, gives the same files when run
# again, and reports a malformed log by file and line.
set -u
rnc=$1 src=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "report_test: FAIL: $*" >&2; exit 1; }
cp -R "$src/tests/report/runs" "$dir/runs"
cp "$src/tests/report/results.md" "$dir/results.md"
report() {
    "$src/experiments/report" --rnc "$rnc" --runs-file "$src/tests/report/runs.txt" \
        --figures-file "$src/tests/report/figures.txt" --runs "$dir/runs" --doc "$dir/results.md"
}
report || fail "experiments/report exited $?"
doc="$dir/results.md"
cat "$doc"
has() { grep -qF -- "$1" "$doc" || fail "no line with: $1"; }
has '| `done` | ResNet-20 | 20 | 269,722 | 30 epochs (10,530 it.), lr / 10 after epochs 15, 22 | 14.00% | 10.29% | 8.75% | 25m 23s | 1,036 | fp32 | finished |'
has '| `partial` | plain-20 | 20 | 269,722 | 30 epochs (10,530 it.), lr / 10 after epochs 15, 22 | 33.04% (epoch 5) | 31.45% (epoch 5) | — | 7m 18s | 432 | fp32 | in progress (5/30 epochs) |'
has '| `started` | mini_cifar | 8 | 75,290 | 3 epochs (4,638 it.), lr / 10 after epochs 2, `--val 500` | — | — | — | — | — | fp32 | started, no epoch logged yet |'
has '| `missing` | ResNet-56 | 56 | 853,018 | 30 epochs (10,530 it.), lr / 10 after epochs 15, 22 | — | — | 6.97% | — | — | fp32 | not started |'
has '| `torch` | ResNet-20 (PyTorch) | 20 | 269,722 |'
has '8 runs, 1 finished, 2 in progress, 5 not started.'
has '| `bf16flag` | ResNet-20 | 20 | 269,722 | 30 epochs (10,530 it.), lr / 10 after epochs 15, 22, `--precision bf16` | — | — | 8.75% | — | — | bf16 | not started |'
has '| `bf16spec` | ResNet-20 | 20 | 269,722 | 30 epochs (10,530 it.), lr / 10 after epochs 15, 22 | — | — | 8.75% | — | — | bf16 | not started |'
has "--label ResNet-20 --label 'plain-20 (5/30 epochs)' --title 'Finished and in progress' --ylim 0:60"
has "--label 'ResNet-20, 30 epochs' --label 'ResNet-20, 40 epochs (2/40 epochs)' --title 'One network, two schedules'"
has 'No epoch logged yet: `started`.'
has 'Not in `experiments/runs.txt` (not queued): `elsewhere`.'
has 'No run of this figure has logged an epoch yet.'
# the prose around the markers is kept, the stale part is gone
[ "$(sed -n 1,5p "$doc")" = "$(sed -n 1,5p "$src/tests/report/results.md")" ] || fail "the text before the markers changed"
[ "$(tail -n 2 "$doc")" = "$(tail -n 2 "$src/tests/report/results.md")" ] || fail "the text after the markers changed"
grep -q "stale text" "$doc" && fail "the old generated part is still there"
# figures: the two with data, as PNG and SVG; none for the empty one
for f in both queued twins; do
    [ "$(od -An -tx1 -N8 "$dir/figures/$f.png" | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "$f.png is not a PNG"
    grep -q '^<svg ' "$dir/figures/$f.svg" || fail "$f.svg has no <svg> root"
done
[ ! -e "$dir/figures/empty.png" ] || fail "a figure without data was drawn"
# the same logs give the same files
cp "$doc" "$dir/first.md"
cp "$dir/figures/both.png" "$dir/first.png"
report >/dev/null || fail "second run exited $?"
cmp -s "$doc" "$dir/first.md" || fail "a second run changed results.md"
cmp -s "$dir/figures/both.png" "$dir/first.png" || fail "a second run changed both.png"
# a malformed log stops the report with its file and line
printf '6,2106,0.1,0.83\n' >> "$dir/runs/partial/log.csv"
out=$(report 2>&1) && fail "a malformed log was accepted"
echo "$out" | grep -q "runs/partial/log.csv:7: error: 4 fields, the header has 9" || fail "message: $out"
echo "report_test: ok"
