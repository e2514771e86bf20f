#!/bin/sh
# bench-cachesim.sh - cache misses per step of the MMIO pool benchmark,
# from callgrind's cache simulator rather than from a clock.
#
# Usage: tools/bench-cachesim.sh BINARY
#   BINARY is tests/bench/bench_mmio.c built with -DBENCH_CACHESIM (make
#   bench-cachesim does that).  It collects events only inside the timed
#   release+create pair, so the totals divided by the step count are the
#   pool's own work per step.  The simulated L1d is 32 KiB, 8-way; the
#   last level (standing in for a private L2) is 256 KiB to 2 MiB.  The
#   counts are exact and repeatable: they do not depend on the host's
#   caches or on what else runs, which is what makes them comparable
#   across machines and across versions of the pool (mm/mmio.c over
#   mm/vrange*.c).
set -e
bin=${1:?usage: bench-cachesim.sh BINARY}
command -v valgrind >/dev/null 2>&1 || {
    echo "bench-cachesim: valgrind not found (apt-get install valgrind)" >&2
    exit 1
}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "mmio pool, target row (10^4 live blocks, 4 KiB..1 GiB): per release+create pair"
printf '%-12s %12s %14s %14s\n' "last level" "instructions" "L1d misses" "LL misses"
for ll in 262144,8,64 524288,8,64 1048576,16,64 2097152,16,64; do
    valgrind --tool=callgrind --collect-atstart=no --cache-sim=yes \
        --D1=32768,8,64 --LL=$ll --callgrind-out-file="$out/cg" \
        "$bin" >"$out/stdout" 2>"$out/stderr" || {
        echo "bench-cachesim: valgrind failed:" >&2
        cat "$out/stderr" >&2
        exit 1
    }
    steps=$(sed -n 's/^cachesim: collected steps //p' "$out/stdout")
    # The "summary:" line of a callgrind file lists the events in the order
    # of its "events:" line: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw.
    awk -v steps="$steps" -v ll="${ll%%,*}" '
        /^events:/  { for (i = 2; i <= NF; i++) name[i - 1] = $i }
        /^summary:/ { for (i = 2; i <= NF; i++) v[name[i - 1]] = $i }
        END {
            if (steps == 0) { print "bench-cachesim: no step count" > "/dev/stderr"; exit 1 }
            printf "%-12s %12.1f %14.3f %14.4f\n", ll / 1024 " KiB",
                v["Ir"] / steps, (v["D1mr"] + v["D1mw"]) / steps,
                (v["DLmr"] + v["DLmw"]) / steps
        }' "$out/cg"
done
