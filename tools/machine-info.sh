#!/bin/sh
# machine-info.sh - one line naming the CPU and its caches, printed before
# the benchmarks so that every table can be traced to the machine it was
# measured on.
model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)
cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null)
cache() {
    v=$(getconf "$1" 2>/dev/null)
    case "$v" in
        ''|0|-1|undefined) echo "?" ;;
        *) if [ $((v % 1048576)) = 0 ]; then echo "$((v / 1048576)) MiB"; else echo "$((v / 1024)) KiB"; fi ;;
    esac
}
virt=""
grep -qw hypervisor /proc/cpuinfo 2>/dev/null && virt=", virtual machine"
echo "machine: ${model:-unknown CPU}, $cpus CPUs$virt;" \
     "L1d $(cache LEVEL1_DCACHE_SIZE), L2 $(cache LEVEL2_CACHE_SIZE), L3 $(cache LEVEL3_CACHE_SIZE)"
