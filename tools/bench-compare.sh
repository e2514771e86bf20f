#!/bin/bash
# bench-compare.sh REV [RUNS] - build the benchmarks of commit REV and of
# the working tree, then run them alternately (REV, tree, REV, tree, ...)
# RUNS times each (default 3), so that both see the same host load.  The
# output of every run is kept in build/bench-compare/; compare medians.
set -eu
cd "$(dirname "$0")/.."
rev=${1:?usage: tools/bench-compare.sh REV [RUNS]}
runs=${2:-3}
out=build/bench-compare
old=$out/tree-$rev
mkdir -p "$out"
if [ ! -d "$old" ]; then
    git worktree add --detach "$old" "$rev" >/dev/null
fi
benches="bench_buddy bench_mmio bench_kmapper"
make -s -C "$old" BUILD="$PWD/$out/old" $(for b in $benches; do echo "$PWD/$out/old/bench/$b"; done)
make -s BUILD="$out/new" $(for b in $benches; do echo "$out/new/bench/$b"; done)
tools/machine-info.sh
for i in $(seq "$runs"); do
    for b in $benches; do
        for side in old new; do
            log=$out/$b-$side-$i.txt
            "$out/$side/bench/$b" > "$log"
            echo "== $b ($side = $([ $side = old ] && echo "$rev" || echo "working tree")) run $i: $log"
        done
    done
done
git worktree remove --force "$old"
