#!/bin/bash
# test-gdb.sh ISO ELF - a scripted gdb session against a halted QEMU that
# checks the mm-* commands (tools/gdb/) against the kernel's own dumps.
#
# QEMU starts halted (TCG, 2 CPUs, no display) with its gdb stub on a free
# local port and the serial log in a file.  gdb loads tools/gdbinit (the
# commands only, MM_GDB_ATTACH=0), attaches, and:
#   1. stops at kmain and takes a backtrace (must end at kernel_entry64);
#   2. stops at qemu_exit, after the self-tests, allocates two kmalloc
#      objects (so the heap and the buddy are not at rest), then runs each
#      mm-* command and right after it the kernel's own dump of the same
#      state through an inferior call (buddy_dump, mm_slabinfo_dump,
#      mmio_pool_dump), which prints on the serial log;
#   3. takes backtraces on both CPUs, then lets the kernel exit.
# tools/gdb/check_session.py compares the session with the serial log (see
# there for every check).  Files, next to ISO: gdb-session.out (gdb's
# output), serial-gdb.log (the kernel's).  Exit status 0 = pass.
# Environment: TIMEOUT (s, default 120), MEM (3G: whole free GiB for the top tier), SMP (2), CPU (max).
set -u
iso=${1:-}
elf=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=$(dirname "$iso")
out=$build/gdb-session.out
log=$build/serial-gdb.log
TIMEOUT=${TIMEOUT:-120}

for tool in gdb qemu-system-x86_64 python3; do
    command -v "$tool" >/dev/null || { echo "test-gdb: $tool not found (tools/install-deps.sh)" >&2; exit 2; }
done
if [ ! -f "$iso" ] || [ ! -f "$elf" ]; then
    echo "test-gdb: usage: $0 ISO ELF (both must exist)" >&2
    exit 2
fi

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
rm -f "$log" "$out"
start=$(date +%s)
timeout -k 5 "$TIMEOUT" qemu-system-x86_64 -cdrom "$iso" -boot d -m "${MEM:-3G}" \
    -smp "${SMP:-2}" -cpu "${CPU:-max}" -accel tcg -no-reboot -display none \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04 -serial "file:$log" -monitor none \
    -gdb "tcp:127.0.0.1:$port" -S </dev/null &
qemu=$!

# One gdb command per -ex, so an error in one does not stop the others;
# "@@ NAME" lines split the output into sections for the checker.
args=()
ex() { for c in "$@"; do args+=(-ex "$c"); done; }
mark() { args+=(-ex "echo \\n@@ $1\\n"); }
ex "target remote 127.0.0.1:$port" "hbreak kmain" continue
mark bt-kmain; ex bt
mark run; ex delete "hbreak qemu_exit" continue
ex "call (void *)kmalloc(100, 0)" "call (void *)kmalloc(600, 0)"
mark buddyinfo; ex mm-buddyinfo "call buddy_dump(&'init.c'::kernel_buddy)"
mark slabinfo; ex mm-slabinfo "call mm_slabinfo_dump()"
mark mmio; ex mm-mmio "call mmio_pool_dump(&'mmio.c'::mmio_global_pool)"
mark ptdump; ex mm-ptdump
mark translate; ex "mm-translate kernel_entry64" "mm-translate &kernel_stack_top"
mark kstacks; ex mm-kstacks
mark vmalloc; ex mm-vmalloc
mark aspace; ex mm-aspace
mark bt-cpu0; ex bt
mark switch; ex "thread 2"
mark bt-cpu1; ex bt
mark end; ex "thread 1" continue
(cd "$root" && MM_GDB_ATTACH=0 timeout -k 5 "$TIMEOUT" gdb -nx -batch -x tools/gdbinit "$elf" "${args[@]}") \
    >"$out" 2>&1
gdb_status=$?
# The session ends with the kernel's exit; if gdb stopped early, QEMU is
# still halted: give it a few seconds, then stop it.
for _ in 1 2 3 4 5; do
    kill -0 "$qemu" 2>/dev/null || break
    sleep 1
done
kill "$qemu" 2>/dev/null
wait "$qemu"
qemu_status=$?
secs=$(( $(date +%s) - start ))

echo "test-gdb: gdb exited $gdb_status, QEMU $qemu_status, ${secs}s; session $out, serial $log"
if [ "$qemu_status" -ne 33 ]; then
    echo "test-gdb: FAIL: QEMU status $qemu_status, not 33 (the kernel's success)"
    tail -20 "$out" | sed 's/^/  | /'
    exit 1
fi
python3 "$here/gdb/check_session.py" "$out" "$log"
