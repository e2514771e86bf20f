#!/bin/bash
# run-qemu.sh MODE ISO - boot the kernel ISO in QEMU.
#   MODE run:   serial console on this terminal (Ctrl-A X quits)
#   MODE test:  unattended, serial log in build/, hard timeout, and a
#               verdict from QEMU's exit status
#   MODE debug: halted at start with a gdb stub on :1234
# Environment: MEM SMP CPU FIRMWARE=bios|uefi ACCEL=tcg|kvm TIMEOUT (s)
#   LOG (serial log path), EXTRA (more QEMU arguments), EXPECT_CPUS (test
#   mode: the log must say "smp: N CPUs online", else the boot fails even
#   if the kernel reported success), EXPECT_NOT_OK (test mode, a case name:
#   a deliberately broken kernel; the test passes only if the log has
#   "not ok <n> <name>" and the kernel reported failure), EXPECT_PANIC
#   (test mode, an extended regular expression: a kernel that must end in a
#   panic; the test passes only if a "KERNEL PANIC" line of the log matches
#   it and QEMU exited with the panic status, 37)
# In test mode the console marker lines of the mm_conformance suite
# (include/mm/conformance.h, check 7) must all arrive intact.
set -u
mode=$1
iso=$2
MEM=${MEM:-512M}
SMP=${SMP:-1}
CPU=${CPU:-max}
FIRMWARE=${FIRMWARE:-bios}
ACCEL=${ACCEL:-tcg}
TIMEOUT=${TIMEOUT:-180}
build=$(dirname "$iso")
LOG=${LOG:-$build/serial-$FIRMWARE-$MEM-smp$SMP-$CPU.log}

args=(-cdrom "$iso" -boot d -m "$MEM" -smp "$SMP" -cpu "$CPU" -accel "$ACCEL"
      -device isa-debug-exit,iobase=0xf4,iosize=0x04 -no-reboot)
case "$FIRMWARE" in
    bios) ;;
    uefi)
        code=/usr/share/OVMF/OVMF_CODE_4M.fd
        vars_tmpl=/usr/share/OVMF/OVMF_VARS_4M.fd
        if [ ! -e "$code" ]; then
            echo "run-qemu: OVMF not found ($code); run tools/install-deps.sh" >&2
            exit 2
        fi
        vars=$(mktemp "$build/ovmf-vars.XXXXXX")
        cp "$vars_tmpl" "$vars"
        trap 'rm -f "$vars"' EXIT
        args+=(-drive "if=pflash,format=raw,readonly=on,file=$code"
               -drive "if=pflash,format=raw,file=$vars")
        ;;
    *) echo "run-qemu: FIRMWARE must be bios or uefi, not '$FIRMWARE'" >&2; exit 2 ;;
esac
# shellcheck disable=SC2206
args+=(${EXTRA:-})

case "$mode" in
run)
    # The console on this terminal, and a copy of it in $LOG for the
    # picture of memory (make run draws build/memory.svg from it).
    rm -f "$LOG"
    qemu-system-x86_64 "${args[@]}" -display none \
        -chardev "stdio,id=con,mux=on,logfile=$LOG" -serial chardev:con -mon chardev=con
    status=$?
    case $status in
        33) echo "run-qemu: the kernel reported success (QEMU status 33)"; exit 0 ;;
        0)  echo "run-qemu: QEMU exited with status 0 (quit by hand, or a triple fault)"; exit 0 ;;
        *)  echo "run-qemu: the kernel reported failure (QEMU status $status)"; exit 1 ;;
    esac
    ;;
debug)
    exec qemu-system-x86_64 "${args[@]}" -display none -serial mon:stdio -s -S
    ;;
test)
    ;;
*)
    echo "run-qemu: unknown mode '$mode'" >&2; exit 2 ;;
esac

desc="FIRMWARE=$FIRMWARE MEM=$MEM SMP=$SMP CPU=$CPU"
rm -f "$LOG"
start=$(date +%s)
timeout --foreground -k 5 "$TIMEOUT" qemu-system-x86_64 "${args[@]}" \
    -display none -serial "file:$LOG" -monitor none </dev/null
status=$?
secs=$(( $(date +%s) - start ))

# Show the self-test results from the log.
if [ -f "$LOG" ]; then
    grep -E '^(KTAP|# Totals|ok |not ok |mm:|smp:|mm-kernel:|embed:)|not ok|EXPECTATION FAILED|PANIC|EXCEPTION|boot: error' "$LOG" |
        sed 's/\r$//' | sed 's/^/  | /'
fi

# mm_conformance_line_sum (mm/conformance.c): sum of (i + 1) * byte.
line_sum() {
    local s=$1 sum=0 i c
    for ((i = 0; i < ${#s}; i++)); do
        printf -v c '%d' "'${s:i:1}"
        sum=$(( (sum + (i + 1) * c) & 0xffffffff ))
    done
    printf '%08x' "$sum"
}

# The conformance suite's console check: every "# console_whole_lines: N
# marker lines" announces N marker lines, and each must be whole, with a
# sum that matches its text.  Prints what is wrong, or nothing.
check_console_markers() {
    local want intact=0 line body sum
    want=$(sed -n 's/.*# console_whole_lines: \([0-9]*\) marker lines.*/\1/p' "$LOG" |
           awk '{ n += $1 } END { print n + 0 }')
    [ "$want" -eq 0 ] && return 0
    while IFS= read -r line; do
        [[ $line =~ MM_CONFORMANCE_LINE\ (.*)\ sum=([0-9a-f]{8})$ ]] || continue
        body=${BASH_REMATCH[1]}
        sum=${BASH_REMATCH[2]}
        [ "$(line_sum "$body")" = "$sum" ] && intact=$((intact + 1))
    done < <(tr -d '\r' < "$LOG" | LC_ALL=C grep -a 'MM_CONFORMANCE_LINE')
    if [ "$intact" -ne "$want" ]; then
        echo "console hook: $intact of $want mm_conformance marker lines arrived intact"
    fi
}

verdict=""
console_damage=""
[ -f "$LOG" ] && console_damage=$(LC_ALL=C check_console_markers)
# A deliberately broken kernel passes only when its expected failure is in
# the log and QEMU exited with the matching status.
#   broken_verdict FOUND WANT_STATUS WHAT  (FOUND: 1 if the log shows it)
broken_verdict() {
    if [ "$1" = 1 ] && [ "$status" = "$2" ]; then
        echo "PASS: broken kernel ($desc) showed $3 as expected in ${secs}s; log: $LOG"
        exit 0
    fi
    echo "FAIL: broken kernel ($desc): expected $3 and QEMU status $2, got status $status; log: $LOG"
    [ -f "$LOG" ] && tail -n 15 "$LOG" | sed 's/\r$//' | sed 's/^/  > /'
    exit 1
}
if [ -n "${EXPECT_NOT_OK:-}" ]; then
    found=0
    [ -f "$LOG" ] && grep -Eq "^[[:space:]]*not ok [0-9]+ ${EXPECT_NOT_OK}([[:space:]]|\$)" "$LOG" &&
        found=1
    broken_verdict $found 35 "'not ok <n> $EXPECT_NOT_OK'"
fi
if [ -n "${EXPECT_PANIC:-}" ]; then
    found=0
    [ -f "$LOG" ] && tr -d '\r' < "$LOG" | grep -a 'KERNEL PANIC' | grep -Eq -- "$EXPECT_PANIC" &&
        found=1
    broken_verdict $found 37 "a 'KERNEL PANIC' line matching '$EXPECT_PANIC'"
fi
# Success must also be visible in the log: no failed case, and every CPU
# that was asked for online (an AP that never starts makes the SMP cases
# skip, which would otherwise pass silently).
if [ "$status" = 33 ] && [ -f "$LOG" ] && grep -Eq '^[[:space:]]*not ok ' "$LOG"; then
    verdict="the kernel reported success, but the log has a failed case (not ok)"
    status=fail
elif [ "$status" = 33 ] && [ -n "$console_damage" ]; then
    verdict=$console_damage
    status=fail
elif [ "$status" = 33 ] && [ "${EXPECT_CPUS:-1}" -gt 1 ] &&
     ! grep -q "^smp: ${EXPECT_CPUS} CPUs online" "$LOG" 2>/dev/null; then
    verdict="expected 'smp: ${EXPECT_CPUS} CPUs online' in the log: $(grep -m1 '^smp: .* online' "$LOG" 2>/dev/null | tr -d '\r' || true)"
    status=fail
fi
case $status in
    33) echo "PASS: boot test ($desc) in ${secs}s; log: $LOG"; exit 0 ;;
    fail) ;;
    35) verdict="self-test case(s) failed (QEMU status 35)" ;;
    37) verdict="kernel panic or unexpected exception (QEMU status 37)" ;;
    99) verdict="GRUB or the boot stub refused to start the kernel (QEMU status 99)" ;;
    0)  verdict="the guest reset or triple-faulted (QEMU status 0)" ;;
    124|137) verdict="timeout: no result after ${TIMEOUT}s (hang?)" ;;
    *)  verdict="QEMU exited with unexpected status $status" ;;
esac
echo "FAIL: boot test ($desc): $verdict; log: $LOG"
if [ -f "$LOG" ]; then
    echo "  last lines of the serial log:"
    tail -n 15 "$LOG" | sed 's/\r$//' | sed 's/^/  > /'
fi
exit 1
