# mm_paging.py - gdb commands over page tables: mm-ptdump, mm-translate,
# mm-aspace.
#
# The walk mirrors mm/ptdump.c: a depth-first visit of present entries,
# level-4 entries always tables, effective permissions combined down the
# levels (writable and user only if every level allows it, no-execute if
# any level forbids it), neighbouring leaves merged into one range when
# their va and pa continue, their page size and effective flags (accessed
# and dirty ignored) are equal.  Its lines have the kernel's format
# (ptdump_print), so they can be compared with the boot log; ranges that
# are writable and executable get a "W+X" mark.  Tables are read through
# the direct map; the walk takes no lock, so run it with the CPUs stopped
# (as gdb leaves them).

import gdb

from mm_util import (MmError, deref, format_size, has, num, parse_int,
                     read_phys_u64s, value)

# x86-64 page-table entry bits (architectural).
P, W, U, PWT, PCD, A, D, PS, G = (1 << n for n in (0, 1, 2, 3, 4, 5, 6, 7, 8))
PAT_4K, PAT_HUGE = 1 << 7, 1 << 12
NX = 1 << 63
ADDR_MASK = ((1 << 52) - 1) & ~0xfff
PERM = W | U | NX
LEVEL_SHIFT = {4: 39, 3: 30, 2: 21, 1: 12}

# The PAT the library programs on every CPU (MM_PAT_VALUE, include/mm/pat.h):
# entry index -> memory type name; write-back is not printed.
PAT_TYPES = {0: "UC", 1: "WC", 4: "WT", 5: "WP", 6: "WB", 7: "UC-"}
PAT_VALUE = 0x0007040600070106


def canonical(va):
    return va - (1 << 48) if va & (1 << 47) else va


def to_unsigned(va):
    return va & 0xffffffffffffffff


def leaf_flags(entry, level):
    """pte_leaf_flags: PS dropped, the PAT bit moved to bit 7."""
    flags = entry & ~ADDR_MASK
    if level == 1:
        return flags
    flags &= ~PS
    return flags | (PAT_4K if entry & PAT_HUGE else 0)


def mem_type(flags):
    index = (4 if flags & PAT_4K else 0) | (2 if flags & PCD else 0) | (1 if flags & PWT else 0)
    return PAT_TYPES.get((PAT_VALUE >> (8 * index)) & 7, "??")


def flags_str(flags):
    """ptdump_flags_str (mm/ptdump.c)."""
    mtype = mem_type(flags)
    return "%s %s%s%s%s" % ("RW" if flags & W else "R", "NX" if flags & NX else "X",
                            " U" if flags & U else "", " G" if flags & G else "",
                            "" if mtype == "WB" else " " + mtype)


def is_wx(flags):
    return bool(flags & W) and not flags & NX


def current_top():
    """Physical address of the level-4 table in the selected CPU's CR3."""
    try:
        return num(gdb.parse_and_eval("$cr3")) & ADDR_MASK
    except gdb.error as err:
        raise MmError("cannot read $cr3 (is gdb attached to QEMU?): %s" % err)


def walk(top, lo, hi, fn, level=4, base=0, eff=W | U):
    """Call fn(va, pa, level, size, flags, eff_flags) for every leaf
    overlapping [lo, hi) (unsigned canonical addresses), in va order."""
    shift = LEVEL_SHIFT[level]
    size = 1 << shift
    entries = read_phys_u64s(top, 512)
    for i, e in enumerate(entries):
        if not e & P:
            continue
        va = to_unsigned(canonical(base + (i << shift)))
        if va + size <= lo or va >= hi:
            continue
        here = (eff & e & (W | U)) | ((eff | e) & NX)
        if level == 4 or (level > 1 and not e & PS):
            walk(e & ADDR_MASK, lo, hi, fn, level - 1, base + (i << shift), here)
            continue
        flags = leaf_flags(e, level)
        pa = e & ADDR_MASK & ~(size - 1)
        fn(va, pa, level, size, flags, (flags & ~PERM) | here)


class RangePrinter:
    """ptdump_print's merging of leaves into ranges."""

    def __init__(self):
        self.cur = None
        self.lines = 0
        self.wx_pages = 0
        self.leaves = 0

    def leaf(self, va, pa, level, size, _flags, eff):
        eff &= ~(A | D)
        self.leaves += 1
        if is_wx(eff):
            self.wx_pages += size // 4096
        c = self.cur
        if c and va == c[1] and pa == c[3] and level == c[4] and eff == c[5]:
            c[1] += size
            c[3] += size
            return
        self.emit()
        self.cur = [va, va + size, pa, pa + size, level, eff]

    def emit(self):
        if not self.cur:
            return
        va, end, pa, _, level, eff = self.cur
        line = "%016x-%016x %6s  pages %s  pa %013x  %s" % (
            va, end, format_size(end - va), format_size(1 << LEVEL_SHIFT[level]), pa,
            flags_str(eff))
        gdb.write(line + ("   <-- W+X" if is_wx(eff) else "") + "\n")
        self.lines += 1
        self.cur = None


def top_from_options(argv):
    """Strip '--top PA' or '--as EXPR' from argv; return (top pa, argv)."""
    rest, top = [], None
    i = 0
    while i < len(argv):
        if argv[i] in ("--top", "--as") and i + 1 < len(argv):
            if argv[i] == "--top":
                top = parse_int(argv[i + 1]) & ADDR_MASK
            else:
                top = num(deref(value(argv[i + 1]))["top_pa"]) & ADDR_MASK
            i += 2
            continue
        rest.append(argv[i])
        i += 1
    return (current_top() if top is None else top), rest


class MmPtdump(gdb.Command):
    """Dump a page-table tree as ranges, in the format of the kernel's ptdump.
Usage: mm-ptdump [VA_START VA_END] [--top PA | --as MM_AS_EXPR]
Walks the table in the selected CPU's CR3 (or the level-4 table at PA, or
the address space *MM_AS_EXPR) through the direct map; prints each range of
leaves with equal page size and effective flags, marks writable+executable
ranges "<-- W+X", and ends with the W+X page count."""

    def __init__(self):
        super().__init__("mm-ptdump", gdb.COMMAND_DATA)

    def invoke(self, arg, from_tty):
        top, argv = top_from_options(gdb.string_to_argv(arg))
        lo, hi = 0, 1 << 64
        if len(argv) == 2:
            lo, hi = to_unsigned(parse_int(argv[0])), to_unsigned(parse_int(argv[1]))
        elif argv:
            raise MmError("usage: mm-ptdump [VA_START VA_END] [--top PA | --as EXPR]")
        span = "all" if argv == [] else "va [%#x, %#x)" % (lo, hi)
        gdb.write("page table at pa %#x, %s:\n" % (top, span))
        printer = RangePrinter()
        walk(top, lo, hi, printer.leaf)
        printer.emit()
        gdb.write("mm-ptdump: %d ranges, %d leaves; W+X check: %d writable+executable pages\n"
                  % (printer.lines, printer.leaves, printer.wx_pages))


class MmTranslate(gdb.Command):
    """Translate a virtual address through the page tables, level by level.
Usage: mm-translate VA [--top PA | --as MM_AS_EXPR]
Prints each level's index and entry, then the physical address, the page
size and the effective flags, or the level where the walk stops."""

    def __init__(self):
        super().__init__("mm-translate", gdb.COMMAND_DATA)

    def invoke(self, arg, from_tty):
        top, argv = top_from_options(gdb.string_to_argv(arg))
        if len(argv) != 1:
            raise MmError("usage: mm-translate VA [--top PA | --as EXPR]")
        va = to_unsigned(parse_int(argv[0]))
        if canonical(va & ((1 << 48) - 1)) & 0xffffffffffffffff != va:
            raise MmError("va %#x is not canonical" % va)
        table, eff = top, W | U
        for level in (4, 3, 2, 1):
            idx = (va >> LEVEL_SHIFT[level]) & 511
            e = read_phys_u64s(table + 8 * idx, 1)[0]
            gdb.write("  L%d table pa %#x [%3d] = %#018x\n" % (level, table, idx, e))
            if not e & P:
                gdb.write("mm-translate: %#x is not mapped (level %d entry not present)\n"
                          % (va, level))
                return
            eff = (eff & e & (W | U)) | ((eff | e) & NX)
            if level < 4 and (level == 1 or e & PS):
                size = 1 << LEVEL_SHIFT[level]
                flags = (leaf_flags(e, level) & ~PERM) | eff
                pa = (e & ADDR_MASK & ~(size - 1)) | (va & (size - 1))
                gdb.write("mm-translate: va %#x -> pa %#x (page %s, %s)%s\n" % (
                    va, pa, format_size(size), flags_str(flags & ~(A | D)),
                    "  W+X" if is_wx(flags) else ""))
                return
            table = e & ADDR_MASK


class MmAspace(gdb.Command):
    """Describe an address space (struct mm_as).
Usage: mm-aspace [MM_AS_EXPR]
With an expression (a struct mm_as or a pointer to one): its level-4 table,
the CPUs it is loaded on, its counters and what its user half maps (pages,
writable pages, ranges).  Without one: the address space loaded on each
CPU ('aspace.c'::as_current)."""

    def __init__(self):
        super().__init__("mm-aspace", gdb.COMMAND_DATA)

    def invoke(self, arg, from_tty):
        if arg.strip():
            self.describe(deref(value(arg)), arg.strip())
            return
        cur = value("'aspace.c'::as_current")
        lo, hi = cur.type.strip_typedefs().range()
        shown = 0
        for cpu in range(lo, hi + 1):
            if num(cur[cpu]) == 0:
                continue
            self.describe(cur[cpu].dereference(), "cpu %d: as_current[%d]" % (cpu, cpu))
            shown += 1
        gdb.write("mm-aspace: %d CPU(s) have a user address space loaded\n" % shown)

    @staticmethod
    def describe(a, label):
        cpus = num(a["cpus"]) if has(a, "cpus") else 0
        cpu_list = [str(i) for i in range(64) if cpus >> i & 1]
        gdb.write("%s: mm_as at %#x: top pa %#x, loaded on CPUs {%s}%s\n" % (
            label, num(a.address), num(a["top_pa"]), ",".join(cpu_list),
            ", DEAD" if has(a, "dead") and bool(a["dead"]) else ""))
        counters = [f for f in ("owned_frames", "table_frames") if has(a, f)]
        gdb.write("  " + ", ".join("%s %d" % (f, num(a[f])) for f in counters) + "\n")
        stats = {"pages": 0, "writable": 0, "wx": 0}

        def leaf(_va, _pa, _level, size, _flags, eff):
            stats["pages"] += size // 4096
            stats["writable"] += size // 4096 if eff & W else 0
            stats["wx"] += size // 4096 if is_wx(eff) else 0

        walk(num(a["top_pa"]) & ADDR_MASK, 0, 1 << 47, leaf)
        gdb.write("  user half: %d pages mapped (%s), %d writable, %d W+X\n" % (
            stats["pages"], format_size(stats["pages"] * 4096, False), stats["writable"],
            stats["wx"]))


def register():
    MmPtdump()
    MmTranslate()
    MmAspace()
