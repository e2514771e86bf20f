#!/bin/bash
# test-all.sh - everything `make test` runs, in order, as one TAP stream:
# each step is a test point ("ok 3 - boot BIOS MEM=512M ..."), its output
# is shown as TAP comment lines ("# ..."), and the plan comes last.
# `make test` runs it under prove (Perl's TAP harness), whose summary
# ("All tests successful." / "Result: PASS") ends the run; running it
# directly shows the same stream.  A failed step does not stop the
# others.  Per-boot serial logs (KTAP) stay under build/.
set -u
cd "$(dirname "$0")/.."
MAKE=${MAKE:-make}
n=0
failed_steps=()

step() {
    local name=$1
    shift
    n=$((n + 1))
    echo "# === $name"
    local start=$SECONDS
    "$@" 2>&1 | sed -u 's/^/#   /'
    local rc=${PIPESTATUS[0]}
    if [ "$rc" -eq 0 ]; then
        echo "ok $n - $name ($((SECONDS - start)) s)"
    else
        failed_steps+=("$name")
        echo "not ok $n - $name (exit $rc, $((SECONDS - start)) s)"
    fi
}

# The ISO `make all` built: build/kernel.iso, or build/kernel-<INJECT>.iso
# for a deliberately broken kernel (make test INJECT=...).
ISO=build/kernel${INJECT:+-$INJECT}.iso

boot() {   # boot FIRMWARE MEM CPU SMP
    FIRMWARE=$1 MEM=$2 CPU=$3 SMP=$4 EXPECT_CPUS=$4 TIMEOUT=${BOOT_TIMEOUT:-240} \
        tools/run-qemu.sh test "$ISO"
}

step "build" $MAKE --no-print-directory -s all
step "host unit tests (ASan/UBSan)" $MAKE --no-print-directory -s test-host
step "fuzz smoke runs" $MAKE --no-print-directory -s fuzz-short
# The boot matrix: both firmwares, CPUs with and without 1 GiB pages,
# 64 MiB to 9 GiB (3G+ puts RAM above the hole below 4 GiB), 1-4 CPUs.
step "boot BIOS MEM=512M CPU=max    SMP=1" boot bios 512M max 1
step "boot UEFI MEM=512M CPU=max    SMP=2" boot uefi 512M max 2
step "boot BIOS MEM=64M  CPU=qemu64 SMP=1" boot bios 64M qemu64 1
step "boot BIOS MEM=3G   CPU=max    SMP=3" boot bios 3G max 3
step "boot BIOS MEM=5G   CPU=qemu64 SMP=4" boot bios 5G qemu64 4
step "boot UEFI MEM=9G   CPU=max    SMP=4" boot uefi 9G max 4
step "boot UEFI MEM=4G   CPU=qemu64 SMP=3" boot uefi 4G qemu64 3
step "boot BIOS MEM=2G   CPU=max    SMP=2" boot bios 2G max 2
step "boot UEFI MEM=64M  CPU=qemu64 SMP=1" boot uefi 64M qemu64 1
# The mm-* gdb commands on a halted kernel, checked against its own dumps
# (an INJECT kernel never gets as far as the session's breakpoint).
if [ -z "${INJECT:-}" ]; then
    step "gdb commands on a halted kernel (mm-buddyinfo, mm-ptdump, ...)" \
        $MAKE --no-print-directory -s test-gdb
fi
# The picture of memory drawn from each matrix boot log: valid SVG that
# holds every region of its log (tools/test-memory-svg.sh).
step "memory picture (SVG) from the matrix boot logs" tools/test-memory-svg.sh \
    build/serial-bios-512M-smp1-max.log build/serial-uefi-512M-smp2-max.log \
    build/serial-bios-64M-smp1-qemu64.log build/serial-bios-3G-smp3-max.log \
    build/serial-bios-5G-smp4-qemu64.log build/serial-uefi-9G-smp4-max.log \
    build/serial-uefi-4G-smp3-qemu64.log build/serial-bios-2G-smp2-max.log \
    build/serial-uefi-64M-smp1-qemu64.log
if [ -f tests/embed/Makefile ]; then
    step "embedding example (BIOS)" $MAKE --no-print-directory -s test-embed FIRMWARE=bios
    step "embedding example (UEFI)" $MAKE --no-print-directory -s test-embed FIRMWARE=uefi
    step "embedding example built through pkg-config (make install, libmm.pc)" \
        $MAKE --no-print-directory -s test-pkgconfig
fi
# Deliberately broken glue: each step passes only when mm_conformance
# names the fault with its own "not ok" line (Makefile, test-broken-*).
step "broken glue: shootdown skips a CPU (test kernel, SMP=2)" \
    $MAKE --no-print-directory -s test-broken-shootdown
# A kernel stack overflow must end in the double-fault handler's panic
# naming the overflow and the stack, not in a triple fault.
step "broken kernel: stack overflow names the stack (test kernel, SMP=2)" \
    $MAKE --no-print-directory -s test-broken-stackoverflow
if [ -f tests/embed/Makefile ]; then
    step "broken glue: irq_restore leaves IF off (embed, Path A)" \
        $MAKE --no-print-directory -s test-broken-irq
    step "broken glue: writable+executable section (embed, Path B)" \
        $MAKE --no-print-directory -s test-broken-wx
fi
for s in "${failed_steps[@]+"${failed_steps[@]}"}"; do
    echo "# failed: $s"
done
echo "1..$n"
[ ${#failed_steps[@]} -eq 0 ]
