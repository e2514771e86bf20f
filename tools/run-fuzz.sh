#!/bin/sh
# run-fuzz.sh SECONDS FUZZER... - run each libFuzzer target for SECONDS
# with its corpus in build/fuzz/corpus-<name> (created on demand).
# Fails on the first crash; the reproducer is left in build/fuzz/.
secs=$1
shift
[ $# -eq 0 ] && { echo "run-fuzz: no fuzz targets"; exit 0; }
for f in "$@"; do
    name=$(basename "$f")
    corpus=build/fuzz/corpus-$name
    mkdir -p "$corpus"
    echo "# fuzz: $name for ${secs}s"
    if ! "$f" -max_total_time="$secs" -print_final_stats=0 -artifact_prefix=build/fuzz/ \
            "$corpus" >build/fuzz/$name.log 2>&1; then
        tail -40 build/fuzz/$name.log
        echo "# fuzz FAIL: $name (see build/fuzz/$name.log)"
        exit 1
    fi
    grep -E "^#[0-9]+.*DONE" build/fuzz/$name.log | tail -1
done
