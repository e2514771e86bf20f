#!/bin/sh
# install-deps.sh - install the Debian packages the project needs, if any
# are missing.  Uses apt-get directly as root, sudo otherwise, and prints
# the exact command when neither is possible.  --quiet: say nothing when
# everything is already there.  Further arguments command-or-file:package
# add what one target alone needs (make bench-cachesim: valgrind:valgrind;
# make bench: the jemalloc and mimalloc headers, libjemalloc-dev and
# libmimalloc-dev, for bench_kmalloc).
set -e
quiet=0
if [ "${1:-}" = "--quiet" ]; then
    quiet=1
    shift
fi

# command-or-file : package
needs="
gcc:gcc
make:make
nasm:nasm
clang:clang
grub-mkrescue:grub-common
/usr/lib/grub/i386-pc/modinfo.sh:grub-pc-bin
/usr/lib/grub/x86_64-efi/modinfo.sh:grub-efi-amd64-bin
xorriso:xorriso
mformat:mtools
qemu-system-x86_64:qemu-system-x86
/usr/share/OVMF/OVMF_CODE_4M.fd:ovmf
gdb:gdb
prove:perl
python3:python3
pkg-config:pkg-config
$*
"
missing=""
for pair in $needs; do
    what=${pair%%:*}
    pkg=${pair#*:}
    case "$what" in
        /*) [ -e "$what" ] && continue ;;
        *) command -v "$what" >/dev/null 2>&1 && continue ;;
    esac
    case " $missing " in *" $pkg "*) ;; *) missing="$missing $pkg" ;; esac
done
# libFuzzer and the sanitizer runtimes for clang (Debian 12's clang is 14)
if command -v clang >/dev/null 2>&1; then
    ver=$(clang -dumpversion | cut -d. -f1)
else
    ver=14
fi
if ! ls /usr/lib/llvm-"$ver"/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
    missing="$missing libclang-rt-$ver-dev"
fi

if [ -z "$missing" ]; then
    [ $quiet = 1 ] || echo "install-deps: everything is installed"
    exit 0
fi

cmd="apt-get install -y --no-install-recommends$missing"
echo "install-deps: installing:$missing"
if [ "$(id -u)" = 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo"
else
    echo "install-deps: cannot install packages (not root, no sudo). Please run:" >&2
    echo "    sudo apt-get update && sudo $cmd" >&2
    exit 1
fi
# env: sudo's environment reset would drop an exported DEBIAN_FRONTEND.
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null || true
# shellcheck disable=SC2086
if ! $SUDO env DEBIAN_FRONTEND=noninteractive $cmd >/tmp/install-deps.log 2>&1; then
    tail -20 /tmp/install-deps.log >&2
    echo "install-deps: failed; the command was: $SUDO $cmd" >&2
    exit 1
fi
echo "install-deps: done"
