# bench/common.sh: what bench/run and bench/tune_gain share (sourced, not run).
# Needs $root (the source tree) and $rnc (the compiler).

# bench_net NET: spec and name of NET, a name under specs/ or a .spec path,
# and its batch: 128 for CIFAR-sized inputs (at most 64x64), 16 for ImageNet;
# cifar=1 for the former.  Exits 2 when there is no such spec.
bench_net() {
    if [ -f "$1" ]; then spec="$1"; name="$(basename "$1" .spec)"
    else spec="$root/specs/$1.spec"; name="$1"; fi
    [ -f "$spec" ] || { echo "bench/$(basename "$0"): no spec $spec" >&2; exit 2; }
    local h
    h="$("$rnc" --dump-graph "$spec" -b 1 | awk '$1 == "network" { print $4 }')"
    if [ "$h" -le 64 ]; then batch=128; cifar=1; else batch=16; cifar=0; fi
}

# median: of the numbers on stdin, one per line; NA when there are none.
median() {
    sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "NA"; else if (NR % 2) print v[(NR + 1) / 2];
                                        else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
