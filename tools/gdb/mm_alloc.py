# mm_alloc.py - gdb commands over the allocators' state: mm-buddyinfo,
# mm-mmio, mm-vmalloc, mm-kstacks, mm-slabinfo.
#
# Each reads the kernel-wide instance by its symbol (static ones as
# 'file.c'::name) and walks it by field name.  Where the kernel has a
# one-line dump of the same numbers (buddy_dump, mm_slabinfo_dump), the
# command prints a line in exactly that format, so a session can compare
# the two.  Nothing is written and no lock is taken: read with the CPUs
# stopped.

import struct

import gdb

from mm_util import (PAGE_SIZE, array_len, cstring, deref, first_value,
                     format_size, has, max_cpus, num, read_virt, value)

# ------------------------------------------------------------------ buddy


CHUNK_PAGES = 1 << 18                       # a 1 GiB chunk of the buddy's span
TOP_PER_WORD = 32                           # two state bits per chunk


def buddy_top_free(b):
    """Free 1 GiB blocks of the top tier (mm/buddy_top.c), as (high, low):
    the chunks whose two state bits read FREE (1)."""
    nchunks = (num(b["span_npages"]) + CHUNK_PAGES - 1) // CHUNK_PAGES
    high_chunk = (num(b["high_rel"]) + CHUNK_PAGES - 1) // CHUNK_PAGES
    nwords = (nchunks + TOP_PER_WORD - 1) // TOP_PER_WORD
    raw = read_virt(num(b["top_state"]), nwords * 8)
    words = struct.unpack("<%dQ" % nwords, raw)
    high = low = 0
    for c in range(nchunks):
        if (words[c // TOP_PER_WORD] >> (2 * (c % TOP_PER_WORD))) & 3 == 1:
            if c >= high_chunk:
                high += 1
            else:
                low += 1
    return high, low


def buddy_free_counts(b):
    """Free blocks per order, per zone name: the free lists, then (with a
    top tier) the free 1 GiB blocks as the last order."""
    if has(b, "list"):                      # list[zone][order].nfree
        lists = b["list"]
        zone_names = {0: "high", 1: "low"}
        top = buddy_top_free(b) if has(b, "top_state") else None
        out = {}
        for z in range(array_len(lists)):
            row = lists[z]
            counts = [num(row[k]["nfree"]) for k in range(array_len(row))]
            if top is not None:
                counts.append(top[z] if z < len(top) else 0)
            out[zone_names.get(z, "zone%d" % z)] = counts
        return out
    counts = b["nfree_blocks"]              # one list per order
    return {"all": [num(counts[k]) for k in range(array_len(counts))]}


def buddy_pcp_counts(b):
    pcp = b["pcp"]
    if num(pcp) == 0:
        return []
    return [num(pcp[cpu]["count"]) for cpu in range(max_cpus())]


class MmBuddyinfo(gdb.Command):
    """Free blocks per order of a buddy frame allocator (like /proc/buddyinfo).
Usage: mm-buddyinfo [STRUCT_BUDDY_EXPR]
Default: the kernel's buddy ('init.c'::kernel_buddy).  Prints the free
blocks of each order per zone, the frames in each CPU's cache, and a
line in the format of the kernel's buddy_dump."""

    def __init__(self):
        super().__init__("mm-buddyinfo", gdb.COMMAND_DATA)

    def invoke(self, arg, from_tty):
        b = deref(value(arg) if arg.strip() else first_value(["'init.c'::kernel_buddy"]))
        total = num(b["total_npages"])
        meta = (num(b["meta_end"]) - num(b["meta_start"])) // PAGE_SIZE
        gdb.write("buddy at %#x: base pfn %#x, span %d pages, total %d pages, meta %d pages%s\n"
                  % (num(b.address), num(b["base_pfn"]), num(b["span_npages"]), total, meta,
                     "" if bool(b["ready"]) else " (not ready)"))
        zones = buddy_free_counts(b)
        norders = len(next(iter(zones.values())))
        gdb.write("%-8s" % "order" + "".join("%6d" % k for k in range(norders)) + "\n")
        summed = [0] * norders
        listed = 0
        for name, counts in zones.items():
            gdb.write("%-8s" % name + "".join("%6d" % n for n in counts) + "\n")
            for k, n in enumerate(counts):
                summed[k] += n
                listed += n << k
        pcp = buddy_pcp_counts(b)
        cached = sum(pcp)
        busy = ["cpu%d %d" % (cpu, n) for cpu, n in enumerate(pcp) if n]
        gdb.write("per-CPU caches: %s\n" % (", ".join(busy) if busy else "all empty"))
        gdb.write("free in lists and top tier %d pages (%s), cached %d, used %d\n" % (
            listed, format_size(listed * PAGE_SIZE, False), cached, total - listed - cached))
        gdb.write("buddy: free blocks by order: %s; free %d / %d pages (%d in per-CPU caches),"
                  " meta %d\n" % (" ".join(str(n) for n in summed), listed + cached, total,
                                  cached, meta))

# ------------------------------------------------------------- vrange


def node_kind_names():
    try:
        t = gdb.lookup_type("enum vrange_node_kind")
        return {int(f.enumval): f.name.replace("VRANGE_NODE_", "").lower() for f in t.fields()}
    except gdb.error:
        return {}


def vrange_free_blocks(vr, order, limit):
    """(count walked, first `limit` block addresses) of free list `order`."""
    base, node, seen, vas = num(vr["base"]), vr["free_head"][order], 0, []
    while num(node) != 0 and seen < 1 << 24:
        if len(vas) < limit:
            vas.append(base + num(node["page"]) * PAGE_SIZE)
        seen += 1
        node = node["u"]["link"]["next"]
    return seen, vas


def vrange_live_blocks(vr):
    """Allocated and claimed blocks from the address hash: (va, size, kind, tag)."""
    base, out = num(vr["base"]), []
    segs = vr["hash_seg"]
    ptr_size = gdb.lookup_type("void").pointer().sizeof
    node_ptr = vr["free_head"][0].type
    for s in range(array_len(segs)):
        seg = num(segs[s])
        if seg == 0:
            continue
        words = struct.unpack("<512Q", read_virt(seg, 512 * ptr_size))
        for head in words:
            node = gdb.Value(head).cast(node_ptr)
            while num(node) != 0:
                out.append((base + num(node["page"]) * PAGE_SIZE,
                            PAGE_SIZE << num(node["order"]), num(node["kind"]),
                            num(node["u"]["use"]["tag"])))
                node = node["u"]["use"]["hnext"]
    out.sort()
    return out


def show_vrange(vr, label, limit=4):
    """Summary lines in the format of mmio_pool_dump (mm/mmio.c) with the
    vrange's label, then the first blocks of each free list and every live
    block."""
    kinds = node_kind_names()
    counts = vr["free_count"]
    norders = array_len(counts)
    free_bytes = sum(num(counts[k]) * (PAGE_SIZE << k) for k in range(norders))
    gdb.write("%s [%#x, %#x): %s free, %d blocks / %s allocated\n" % (
        label, num(vr["base"]), num(vr["end"]), format_size(free_bytes, False),
        num(vr["alloc_count"]), format_size(num(vr["alloc_bytes"]), False)))
    for k in range(norders):
        if num(counts[k]):
            gdb.write("  order %2d %10s blocks: %d free\n" % (
                k, format_size(PAGE_SIZE << k, False), num(counts[k])))
    gdb.write("  bookkeeping: %d node frames (%d nodes, %d free slots), %d hash frames\n" % (
        num(vr["node_frames"]), num(vr["nodes_in_use"]), num(vr["free_slots"]),
        num(vr["hash_frames"])))
    for k in range(norders):
        walked, vas = vrange_free_blocks(vr, k, limit)
        if walked == 0 and num(counts[k]) == 0:
            continue
        more = " ..." if walked > len(vas) else ""
        mismatch = "" if walked == num(counts[k]) else "  LIST HOLDS %d, COUNT SAYS %d" % (
            walked, num(counts[k]))
        gdb.write("  free order %2d: %s%s%s\n" % (k, " ".join("%#x" % v for v in vas), more,
                                                  mismatch))
    live = vrange_live_blocks(vr)
    gdb.write("  live blocks: %d\n" % len(live))
    for va, size, kind, tag in live:
        gdb.write("    %#x-%#x %6s  %-9s tag %#x\n" % (va, va + size, format_size(size),
                                                     kinds.get(kind, str(kind)), tag))
    return live


class MmMmio(gdb.Command):
    """The MMIO pool: free blocks per order and live (mapped or reserved) blocks.
Usage: mm-mmio [STRUCT_MMIO_POOL_EXPR]
Default: the kernel's pool ('mmio.c'::mmio_global_pool)."""

    def __init__(self):
        super().__init__("mm-mmio", gdb.COMMAND_DATA)

    def invoke(self, arg, from_tty):
        p = deref(value(arg) if arg.strip() else value("'mmio.c'::mmio_global_pool"))
        show_vrange(p["vr"], "mmio pool")


class MmVmalloc(gdb.Command):
    """The vmalloc space: free blocks per order and live areas (block, tag).
Usage: mm-vmalloc [STRUCT_VMALLOC_SPACE_EXPR]
Default: the kernel's vmalloc space ('vmalloc.c'::vmalloc_global)."""

    def __init__(self):
        super().__init__("mm-vmalloc", gdb.COMMAND_DATA)

    def invoke(self, arg, from_tty):
        v = deref(value(arg) if arg.strip() else value("'vmalloc.c'::vmalloc_global"))
        show_vrange(v["vr"], "vmalloc")


class MmKstacks(gdb.Command):
    """The kernel-stack registry (mm/kstack.c): every live stack, its CPU and
guard pages, and the stack space's vrange.
Usage: mm-kstacks"""

    def __init__(self):
        super().__init__("mm-kstacks", gdb.COMMAND_DATA)

    def invoke(self, arg, from_tty):
        slots = value("'kstack.c'::slots")
        live = 0
        gdb.write("slot  name             cpu  stack [base, top)                        size"
                  "  unmapped below/above\n")
        for i in range(array_len(slots)):
            s = slots[i]
            top = num(s["top"])
            if top == 0:
                continue
            live += 1
            base, blk, blk_end = num(s["base"]), num(s["block_va"]), num(s["block_end"])
            gdb.write("%4d  %-16s %3d  [%#x, %#x) %6s  %s/%s\n" % (
                i, cstring(s["name"]), num(s["cpu"]), base, top, format_size(top - base),
                format_size(base - blk), format_size(blk_end - top)))
        gdb.write("mm-kstacks: %d live stacks (registry says %d), %d of %d slots free\n" % (
            live, num(value("'kstack.c'::live")), num(value("'kstack.c'::nfree")),
            array_len(slots)))
        show_vrange(value("'kstack.c'::kstack_space")["vr"], "kstack space", limit=2)

# ------------------------------------------------------------------ slab


def cache_line(c, ncpus):
    """The numbers of mm_slabinfo_dump's line for cache c (a struct value)."""
    order = num(c["order"])
    cached = num(c["depot_n"])
    for cpu in range(ncpus):
        arr = c["cpu"][cpu]
        if num(arr) != 0:
            cached += num(arr["count"])
    slabs = num(c["nslabs"])
    live = slabs * num(c["nobjs"]) - num(c["nfree"]) - cached
    used = slabs * (PAGE_SIZE << order)
    waste = used - live * num(c["size"])
    line = "slab: %-14s %5d B %8d live %5d slabs %8s used %8s waste" % (
        cstring(c["name"]), num(c["size"]), live, slabs, format_size(used), format_size(waste))
    return line, cached


class MmSlabinfo(gdb.Command):
    """The heap's object caches (mm/slab*.c), one line each in the format of
the kernel's mm_slabinfo_dump, plus objects cached per CPU and in the depot.
Usage: mm-slabinfo"""

    def __init__(self):
        super().__init__("mm-slabinfo", gdb.COMMAND_DATA)

    def invoke(self, arg, from_tty):
        heap = value("heap")
        if not bool(heap["ready"]):
            gdb.write("slab: heap not set up\n")
            return
        ncpus = max_cpus()
        caches = []
        c = heap["caches"]
        while num(c) != 0 and len(caches) < 4096:
            caches.append(c.dereference())
            c = c["next"]
        caches += [heap["cache_cache"], heap["array_cache"]]
        for cache in caches:
            line, cached = cache_line(cache, ncpus)
            gdb.write("%s   (%d cached, %d objs/slab, order %d)\n" % (
                line, cached, num(cache["nobjs"]), num(cache["order"])))
        gdb.write("mm-slabinfo: %d caches\n" % len(caches))


def register():
    MmBuddyinfo()
    MmMmio()
    MmVmalloc()
    MmKstacks()
    MmSlabinfo()

