# mm_util.py - helpers shared by the mm-* gdb commands (tools/gdb/mm_gdb.py).
#
# Everything is read through gdb: symbols and their DWARF types (the kernel
# is built with -g), field names, array bounds.  No structure offset is
# written here; the only constants are architectural (page-table entry
# bits) or the fallback of a symbol that is missing.  Physical memory is
# read through the kernel's direct map (mm_direct_map_offset + pa).

import struct

import gdb

PAGE_SIZE = 4096
DIRECT_MAP_FALLBACK = 0xffff800000000000


class MmError(gdb.GdbError):
    """A command cannot go on: the message is printed without a traceback."""


def value(expr):
    """gdb.Value of a C expression, or MmError naming it."""
    try:
        return gdb.parse_and_eval(expr)
    except gdb.error as err:
        raise MmError("cannot evaluate '%s': %s" % (expr, err))


def first_value(exprs):
    """The value of the first expression of exprs that gdb can evaluate."""
    errors = []
    for expr in exprs:
        try:
            return gdb.parse_and_eval(expr)
        except gdb.error as err:
            errors.append("%s: %s" % (expr, err))
    raise MmError("none of these is known to gdb: " + "; ".join(errors))


def fields(val):
    """The field names of a struct value (or of the struct a pointer targets)."""
    t = val.type.strip_typedefs()
    if t.code == gdb.TYPE_CODE_PTR:
        t = t.target().strip_typedefs()
    return [f.name for f in t.fields()]


def has(val, name):
    return name in fields(val)


def deref(val):
    """A struct value from a struct value or a pointer to one."""
    if val.type.strip_typedefs().code == gdb.TYPE_CODE_PTR:
        return val.dereference()
    return val


def num(val):
    """An integer from a scalar, a pointer, a function (its address), or a
    one-field wrapper struct such as phys_addr_t ({ uint64_t raw; })."""
    t = val.type.strip_typedefs()
    if t.code == gdb.TYPE_CODE_FUNC:
        return num(val.address)
    if t.code == gdb.TYPE_CODE_STRUCT:
        names = [f.name for f in t.fields()]
        if len(names) != 1:
            raise MmError("cannot read %s as a number" % t)
        return num(val[names[0]])
    if t.code == gdb.TYPE_CODE_PTR:
        return int(val.cast(gdb.lookup_type("unsigned long")))
    return int(val) & 0xffffffffffffffff


def array_len(val):
    """Number of elements of an array value, from its DWARF bounds."""
    lo, hi = val.type.strip_typedefs().range()
    return hi - lo + 1


def cstring(val):
    """A char array or char pointer as a Python string ('' if unreadable)."""
    try:
        return val.string(length=-1).split("\0")[0]
    except (gdb.error, gdb.MemoryError, UnicodeDecodeError):
        return ""


def max_cpus():
    """MM_MAX_CPUS, from the bound of an array the library sizes with it."""
    for expr in ("'aspace.c'::as_current", "kmalloc_caches[0].cpu"):
        try:
            return array_len(gdb.parse_and_eval(expr))
        except gdb.error:
            continue
    raise MmError("cannot find MM_MAX_CPUS (no 'aspace.c'::as_current)")


def direct_map_offset():
    try:
        return num(gdb.parse_and_eval("mm_direct_map_offset"))
    except gdb.error:
        return DIRECT_MAP_FALLBACK


def read_virt(va, size):
    try:
        return bytes(gdb.selected_inferior().read_memory(va, size))
    except gdb.MemoryError as err:
        raise MmError("cannot read %#x bytes at va %#x: %s" % (size, va, err))


def read_phys_u64s(pa, count):
    """count 64-bit words at physical address pa, through the direct map."""
    data = read_virt(direct_map_offset() + pa, 8 * count)
    return struct.unpack("<%dQ" % count, data)


def parse_int(text):
    """An integer argument: a number or any gdb expression."""
    return num(value(text))


def format_size(nbytes, compact=True):
    """mm_format_size (mm/log.c): the largest unit that divides exactly,
    else '~' and the largest unit giving at least 10."""
    names = ("B", "K", "M", "G") if compact else (" B", " KiB", " MiB", " GiB")
    unit = 0 if nbytes == 0 else 3
    while unit > 0 and nbytes & ((1 << (10 * unit)) - 1):
        unit -= 1
    exact = nbytes == 0 or unit > 0
    if not exact:
        unit = 3
        while unit > 0 and (nbytes >> (10 * unit)) < 10:
            unit -= 1
        exact = unit == 0
    return "%s%d%s" % ("" if exact else "~", nbytes >> (10 * unit), names[unit])
