#!/bin/sh
# plot_cli.sh RNC LOGDIR: `rnc plot` writes a PNG and an SVG of two logs whose
# headers are right (PNG signature, IHDR width and height; the SVG's root
# element), and refuses bad option values.
set -u
rnc=$1 logs=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "plot_cli: FAIL: $*" >&2; exit 1; }

"$rnc" plot "$logs/resnet20.csv" "$logs/plain20_10epochs.csv" --label ResNet-20 --label plain-20 \
    --title "Figure 6" --ylim 0:40 -o "$dir/fig.png" || fail "rnc plot to PNG exited $?"
# 8-byte signature, then the IHDR chunk: length 13, "IHDR", width, height (big-endian)
head=$(od -An -tx1 -N24 "$dir/fig.png" | tr -d ' \n')
[ "$head" = "89504e470d0a1a0a0000000d49484452000003200000""01f4" ] || fail "PNG header $head (expected 800x500)"

"$rnc" plot "$logs/resnet20.csv" --xlabel epochs --size 1000x600 -o "$dir/fig.svg" || fail "rnc plot to SVG exited $?"
sed -n 2p "$dir/fig.svg" | grep -q '^<svg xmlns="http://www.w3.org/2000/svg".* width="1000px" height="600px"' ||
    fail "no <svg> root of 1000x600px: $(sed -n 2p "$dir/fig.svg")"
[ "$(tail -n 1 "$dir/fig.svg")" = "</svg>" ] || fail "SVG does not end with </svg>"

"$rnc" plot "$logs/resnet20.csv" --size 600x400 -o "$dir/small.png" || fail "rnc plot --size exited $?"
head=$(od -An -tx1 -j16 -N8 "$dir/small.png" | tr -d ' \n')
[ "$head" = "0000025800000190" ] || fail "PNG size $head (expected 600x400)"

[ "$(ls "$dir" | wc -l)" -eq 3 ] || fail "files left behind: $(ls "$dir")"

for bad in "--ylim 20:10" "--ylim 0:x" "--xlabel seconds" "--size 10x10" "--label a --label b" "--bogus"; do
    # shellcheck disable=SC2086
    out=$("$rnc" plot "$logs/resnet20.csv" $bad -o "$dir/bad.png" 2>&1)
    status=$?
    [ "$status" -eq 2 ] || fail "'$bad' exited $status, expected 2 ($out)"
    echo "$out" | grep -q "^rnc plot: error: " || fail "'$bad': $out"
done
[ ! -e "$dir/bad.png" ] || fail "a refused command wrote its output"
echo "plot_cli: ok"
