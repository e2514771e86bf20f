#!/usr/bin/env python3
"""check_session.py SESSION SERIAL_LOG - check the gdb session of
tools/test-gdb.sh against the kernel's serial log.

SESSION is gdb's output, cut into sections by "@@ NAME" lines.  The checks:
  session   no Python exception or gdb error anywhere in it
  boot      the log ends with "mm-kernel: all tests passed"
  buddy     mm-buddyinfo's buddy_dump-format line equals the "buddy:" line the
            kernel printed right after it (same state: CPUs stopped)
  slab      mm-slabinfo's lines equal the kernel's mm_slabinfo_dump lines,
            and at least one cache has live objects (the session allocated)
  mmio      mm-mmio's summary and per-order lines equal mmio_pool_dump's
  ptdump    every kernel-half range of the boot-time dump ("mm: kernel page
            table") is in mm-ptdump's output unchanged; the low identity
            map is gone if the log says it was removed; the W+X count equals
            the boot count
  translate the pa of kernel_entry64 and of kernel_stack_top is what the
            boot dump's range holding them implies
  kstacks   each stack the log names ("stack 'cpuN' of cpu N [b, t)") is
            listed by mm-kstacks with the same cpu and range
  bt        each backtrace ends, within a few frames and with no "Backtrace
            stopped", at the entry: kernel_entry64 (at kmain),
            stack_switch_call (boot CPU), ap_entry64 (the AP)
Prints one line per check and "test-gdb: PASS" or the failures; exit 1 on
any failure.
"""
import re
import sys

KERNEL_HALF = 0xffff800000000000
RANGE_RE = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16}) +\S+  pages \S+  pa ([0-9a-f]{13})  (.*)$")


def sections(text):
    out, name = {}, "start"
    for line in text.splitlines():
        m = re.match(r"^@@ (\S+)$", line)
        if m:
            name = m.group(1)
            continue
        out.setdefault(name, []).append(line.rstrip())
    return out


def after_pass(log_lines):
    """The serial lines printed after the kernel's final verdict."""
    for i, line in enumerate(log_lines):
        if line.startswith("mm-kernel: all tests passed"):
            return log_lines[i + 1:]
    return None


def boot_ranges(log_lines):
    """The boot-time ptdump lines (after 'mm: kernel page table')."""
    out, inside = [], False
    for line in log_lines:
        if line.startswith("mm: kernel page table (top at"):
            inside = True
            continue
        if inside:
            if not RANGE_RE.match(line):
                break
            out.append(line)
    return out


class Checker:
    def __init__(self, session_text, log_text):
        self.sec = sections(session_text)
        self.session = session_text
        self.log = [l.rstrip("\r\n") for l in log_text.replace("\r", "").split("\n")]
        self.failed = []

    def result(self, name, ok, detail):
        print("  %-9s %s  %s" % (name, "ok  " if ok else "FAIL", detail))
        if not ok:
            self.failed.append(name)

    def check_session(self):
        bad = [l for l in self.session.splitlines()
               if re.search(r"Python Exception|Error occurred in Python|^No symbol|cannot evaluate"
                            r"|Cannot access memory|not found in|mm-\w+: usage", l)]
        self.result("session", not bad, bad[0] if bad else "no errors")

    def check_buddy(self, tail):
        mine = [l for l in self.sec.get("buddyinfo", []) if l.startswith("buddy: free blocks")]
        kern = [l for l in tail if l.startswith("buddy: free blocks")]
        ok = len(mine) == 1 and len(kern) >= 1 and mine[0] == kern[0]
        self.result("buddy", ok, "gdb %r vs kernel %r" % (mine[:1], kern[:1]))

    def check_slab(self, tail):
        mine = [l.split("   (")[0] for l in self.sec.get("slabinfo", []) if l.startswith("slab: ")]
        kern = [l for l in tail if l.startswith("slab: ")]
        live = [l for l in mine if int(l.split()[4]) > 0]
        ok = mine == kern and len(mine) > 0 and len(live) > 0
        diff = [(a, b) for a, b in zip(mine, kern) if a != b][:1]
        self.result("slab", ok, "%d caches, %d with live objects; first difference %s; counts %d/%d"
                    % (len(mine), len(live), diff, len(mine), len(kern)))

    def check_mmio(self, tail):
        def pick(lines):
            out, inside = [], False
            for l in lines:
                if l.startswith("mmio pool ["):
                    inside = True
                    out.append(l)
                elif inside and re.match(r"^  order +\d+ ", l):
                    out.append(l)
                elif inside and out:
                    break
            return out
        mine, kern = pick(self.sec.get("mmio", [])), pick(tail)
        self.result("mmio", mine == kern and len(mine) > 1,
                    "%d lines; gdb %r vs kernel %r" % (len(mine), mine[:1], kern[:1]))

    def check_ptdump(self):
        dump = self.sec.get("ptdump", [])
        boot = boot_ranges(self.log)
        half = [l for l in boot if int(l[:16], 16) >= KERNEL_HALF]
        missing = [l for l in half if l not in dump]
        low = [l for l in dump if RANGE_RE.match(l) and int(l[:16], 16) < KERNEL_HALF]
        removed = any("low identity map" in l and "removed" in l for l in self.log)
        wx_boot = [int(m.group(1)) for m in
                   (re.search(r"mm: W\+X check: (\d+)", l) for l in self.log) if m]
        wx_gdb = [int(m.group(1)) for m in
                  (re.search(r"W\+X check: (\d+) writable", l) for l in dump) if m]
        ok = (len(half) > 0 and not missing and (not removed or not low)
              and wx_boot[:1] == wx_gdb[:1] and len(wx_gdb) == 1)
        self.result("ptdump", ok, "%d boot kernel-half ranges, %d missing %s; low ranges %d;"
                    " W+X boot %s gdb %s" % (len(half), len(missing), missing[:1], len(low),
                                             wx_boot[:1], wx_gdb))

    def check_translate(self):
        boot = [RANGE_RE.match(l) for l in boot_ranges(self.log)]
        got = [(int(m.group(1), 16), int(m.group(2), 16)) for m in
               (re.search(r"va (0x[0-9a-f]+) -> pa (0x[0-9a-f]+)", l)
                for l in self.sec.get("translate", [])) if m]
        bad = []
        for va, pa in got:
            want = [int(m.group(3), 16) + va - int(m.group(1), 16) for m in boot
                    if int(m.group(1), 16) <= va < int(m.group(2), 16)]
            if want[:1] != [pa]:
                bad.append("va %#x: gdb pa %#x, boot dump implies %s" % (va, pa, want))
        self.result("translate", len(got) == 2 and not bad,
                    "; ".join(bad) or "%d addresses agree with the boot dump" % len(got))

    def check_kstacks(self):
        named = set(re.findall(r"stack '(cpu\d+)' of cpu (\d+) \[(0x[0-9a-f]+), (0x[0-9a-f]+)\)",
                               "\n".join(self.log)))
        listed = set()
        for l in self.sec.get("kstacks", []):
            m = re.match(r"^ *\d+  (\S+) +(\d+)  \[(0x[0-9a-f]+), (0x[0-9a-f]+)\)", l)
            if m:
                listed.add(m.groups())
        ok = len(named) > 0 and named <= listed
        self.result("kstacks", ok, "log names %d stacks, gdb lists %d; missing %s"
                    % (len(named), len(listed), sorted(named - listed)[:1]))

    def check_bt(self, section, entry, max_frames):
        lines = self.sec.get(section, [])
        frames = [l for l in lines if re.match(r"^#\d+ ", l)]
        stopped = [l for l in lines if "Backtrace stopped" in l]
        ok = 0 < len(frames) <= max_frames and entry in frames[-1] and not stopped
        self.result("bt", ok, "%s: %d frames, last %r%s" % (
            section, len(frames), frames[-1] if frames else None,
            "; " + stopped[0] if stopped else ""))

    def run(self):
        self.check_session()
        tail = after_pass(self.log)
        self.result("boot", tail is not None, "'mm-kernel: all tests passed' in the log")
        tail = tail or []
        self.check_buddy(tail)
        self.check_slab(tail)
        self.check_mmio(tail)
        self.check_ptdump()
        self.check_translate()
        self.check_kstacks()
        self.check_bt("bt-kmain", "kernel_entry64", 3)
        self.check_bt("bt-cpu0", "stack_switch_call", 8)
        self.check_bt("bt-cpu1", "ap_entry64", 8)
        if self.failed:
            print("test-gdb: FAIL (%s)" % ", ".join(self.failed))
            return 1
        print("test-gdb: PASS")
        return 0


def main():
    if len(sys.argv) != 3:
        print("usage: check_session.py SESSION SERIAL_LOG", file=sys.stderr)
        return 2
    with open(sys.argv[1], errors="replace") as f:
        session = f.read()
    with open(sys.argv[2], errors="replace") as f:
        log = f.read()
    return Checker(session, log).run()


if __name__ == "__main__":
    sys.exit(main())
