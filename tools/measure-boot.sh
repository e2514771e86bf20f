#!/bin/bash
# measure-boot.sh [SIZES...] - boot build/kernel.iso with large sparse guests
# (file-backed RAM, so the host only pays for pages the guest touches) on
# CPU=max (1 GiB pages) and CPU=qemu64 (2 MiB pages), and print mm init's
# summary lines: page-table pages of the direct map and the cycles of each
# init step.  The backing file lives in build/ and is removed afterwards.
set -u
cd "$(dirname "$0")/.."
sizes=${*:-1G 4G 16G 64G 256G}
# tmpfs when available: a disk-backed file adds host page-fault noise
if [ -d /dev/shm ] && [ -w /dev/shm ]; then mem=/dev/shm/mm-guestmem; else mem=build/guestmem; fi
for cpu in max qemu64; do
    for sz in $sizes; do
        rm -f "$mem"
        log=build/measure-$cpu-$sz.log
        EXTRA="-object memory-backend-file,id=mem,size=$sz,mem-path=$mem,share=on -machine memory-backend=mem" \
            MEM=$sz CPU=$cpu,phys-bits=46 TIMEOUT=600 LOG=$log \
            tools/run-qemu.sh test build/kernel.iso | tail -1
        grep -E '^mm: (direct map|kernel page table [0-9]|init cycles)' "$log" | sed "s/^/$cpu $sz: /"
    done
done
rm -f "$mem"
