/*
 * mm/faultinfo.c - the fault classifier (mm/faultinfo.h): which part of
 * the address map a faulting address lies in, and what is there.
 *
 * Algorithm.  The range comes from the layout (mm/layout.h) alone: a
 * handful of comparisons.  Then, by range:
 *   - user half: a walk of the address space's table (or CR3's); a
 *     present leaf with PTE_AS_COW is a copy-on-write page;
 *   - kernel stacks: the registry (mm_kstack_lookup) says whose block it
 *     is and whether va is below the stack, in it or above it;
 *   - vmalloc: a walk of the kernel table for va; if va is not mapped but
 *     the page below is, va is the guard page after the area ending there;
 *   - direct map: whether pa = va - MM_DIRECT_MAP_BASE is in the direct
 *     map's description (RAM/ACPI) or a hole;
 *   - MMIO pool, image, self-test range, the rest: a walk says mapped or
 *     not.
 *
 * The walk.  Entries are read one at a time with relaxed atomic loads,
 * without any lock, and a table is followed only if its frame is
 * page-aligned and inside the direct map (MM_DIRECT_MAP_MAX_PA, and the
 * description once there is one), so a table freed and reused under the
 * walk yields a wrong answer at worst, never a fault.  The answer is a
 * snapshot: the tables may change the moment after.
 *
 * Locking: none taken; nothing allocated or printed (see the header).
 */
#include <mm/arch.h>
#include <mm/faultinfo.h>
#include <mm/init.h>
#include <mm/kmapper.h>
#include <mm/layout.h>
#include <mm/log.h>
#include <mm/paging.h>

/* May the walk read the table frame at pa? */
static bool table_readable(uint64_t pa)
{
    if (pa == 0 || !is_aligned_u64(pa, PAGE_SIZE) || pa >= MM_DIRECT_MAP_MAX_PA)
        return false;
    return mm_direct_map_ranges() == NULL || mm_direct_map_contains(PA(pa), PAGE_SIZE);
}

/* The leaf that maps va in the table at top_pa: true with *flags (without
 * the address) and *pa (of va itself), or false. */
static bool walk(uint64_t top_pa, uint64_t va, uint64_t *flags, uint64_t *pa, bool *shared)
{
    *shared = false;
    uint64_t table = top_pa & PTE_ADDR_MASK;
    for (unsigned level = PT_LEVELS; level >= 1; level--) {
        if (!table_readable(table))
            return false;
        const uint64_t *entries = pa_to_ptr(PA(table));
        unsigned idx = pt_index(VA(va), level);
        uint64_t e = __atomic_load_n(&entries[idx], __ATOMIC_RELAXED);
        if (!(e & PTE_PRESENT))
            return false;
        if (pte_is_leaf((pt_entry_t){ e }, level)) {
            uint64_t size = pt_level_size(level);
            *flags = pte_leaf_flags((pt_entry_t){ e }, level);
            *pa = (e & PTE_ADDR_MASK & ~(size - 1)) + (va & (size - 1));
            return true;
        }
        if (level == PT_LEVEL_PD)
            *shared = mm_cow_table_entry_shared(e);
        table = e & PTE_ADDR_MASK;
    }
    return false;
}

/* The kernel table: the kernel mapper's, or CR3's before there is one. */
static uint64_t kernel_top(void)
{
    uint64_t top = kmapper_peek().top_pa.raw;
    return top ? top : arch_read_cr3().raw;
}

/* Walk the table at top_pa for out->va and record the result in *out. */
static void look_up(struct mm_fault_info *out, uint64_t top_pa)
{
    uint64_t flags = 0, pa = 0;
    out->mapped = walk(top_pa, out->va.raw, &flags, &pa, &out->shared_table);
    out->flags = out->mapped ? flags : 0;
    out->pa = PA(out->mapped ? pa : 0);
}

static void describe_user(struct mm_fault_info *out, struct mm_as *as)
{
    look_up(out, as ? as->top_pa.raw : arch_read_cr3().raw);
    if (!out->mapped)
        out->kind = MM_FAULT_USER_UNMAPPED;
    else
        /* A COW leaf, or a writable one under a level-1 table still
         * shared since a fork (mm/cow_table.c): both are the resolver's.
         * A read-only leaf under a shared table is a real fault. */
        out->kind = (out->flags & PTE_AS_COW) ||
                            (out->shared_table && (out->flags & PTE_WRITE))
                        ? MM_FAULT_USER_COW : MM_FAULT_USER_MAPPED;
}

static void describe_kstack(struct mm_fault_info *out)
{
    look_up(out, kernel_top());
    switch (mm_kstack_lookup(out->va, &out->stack)) {
    case MM_KSTACK_GUARD_BELOW:
        out->kind = MM_FAULT_KSTACK_OVERFLOW;
        break;
    case MM_KSTACK_GUARD_ABOVE:
        out->kind = MM_FAULT_KSTACK_UNDERFLOW;
        break;
    case MM_KSTACK_IN_STACK:
        out->kind = MM_FAULT_KSTACK;
        break;
    case MM_KSTACK_UNKNOWN:
        out->unsure = true;
        out->kind = MM_FAULT_KSTACK_RANGE;
        break;
    default:
        out->kind = MM_FAULT_KSTACK_RANGE;
        break;
    }
}

static void describe_vmalloc(struct mm_fault_info *out)
{
    uint64_t top = kernel_top();
    look_up(out, top);
    if (out->mapped) {
        out->kind = MM_FAULT_VMALLOC;
        return;
    }
    uint64_t page = align_down_u64(out->va.raw, PAGE_SIZE), flags, pa;
    bool shared;
    if (page > MM_VMALLOC_BASE && walk(top, page - PAGE_SIZE, &flags, &pa, &shared)) {
        out->kind = MM_FAULT_VMALLOC_GUARD;
        out->area_end = VA(page);
        return;
    }
    out->kind = MM_FAULT_VMALLOC_UNMAPPED;
}

static void describe_direct_map(struct mm_fault_info *out)
{
    look_up(out, kernel_top());
    uint64_t pa = out->va.raw - MM_DIRECT_MAP_BASE;
    out->pa = PA(pa);
    out->unsure = mm_direct_map_ranges() == NULL;
    out->kind = mm_direct_map_contains(PA(pa), 1) ? MM_FAULT_DIRECT_MAP : MM_FAULT_DIRECT_MAP_HOLE;
}

/* Other kernel ranges: `kind` for the range, mapped or not from the walk. */
static void describe_kernel(struct mm_fault_info *out, enum mm_fault_kind kind)
{
    look_up(out, kernel_top());
    if (kind == MM_FAULT_KERNEL_UNMAPPED && out->mapped)
        kind = MM_FAULT_KERNEL_MAPPED;
    out->kind = kind;
}

static inline bool in(uint64_t va, uint64_t base, uint64_t end)
{
    return va >= base && va < end;
}

int mm_fault_describe(struct mm_as *as, virt_addr_t va, uint64_t error_code,
                      struct mm_fault_info *out)
{
    if (!out)
        return -MM_EINVAL;
    *out = (struct mm_fault_info){ .va = va, .error_code = error_code };
    uint64_t v = va.raw;
    if (!pt_va_is_canonical(va))
        out->kind = MM_FAULT_NONCANONICAL;
    else if (v < PAGE_SIZE)
        out->kind = MM_FAULT_NULL_PAGE;
    else if (v < MM_LOWER_HALF_END)
        describe_user(out, as);
    else if (in(v, MM_KSTACK_BASE, MM_KSTACK_END))
        describe_kstack(out);
    else if (in(v, MM_VMALLOC_BASE, MM_VMALLOC_END))
        describe_vmalloc(out);
    else if (in(v, MM_DIRECT_MAP_BASE, MM_DIRECT_MAP_END))
        describe_direct_map(out);
    else if (in(v, MMIO_POOL_BASE, MMIO_POOL_END))
        describe_kernel(out, MM_FAULT_MMIO);
    else if (in(v, MM_SELFTEST_BASE, MM_SELFTEST_END))
        describe_kernel(out, MM_FAULT_SELFTEST);
    else if (v >= MM_KERNEL_IMAGE_BASE)
        describe_kernel(out, MM_FAULT_IMAGE);
    else
        describe_kernel(out, MM_FAULT_KERNEL_UNMAPPED);
    return 0;
}

/* ------------------------------------------------------------ formatting */

static const char *const kind_names[MM_FAULT_NR_KINDS] = {
    [MM_FAULT_NONCANONICAL] = "non-canonical address",
    [MM_FAULT_NULL_PAGE] = "null page",
    [MM_FAULT_USER_UNMAPPED] = "user address, not mapped",
    [MM_FAULT_USER_MAPPED] = "user address, mapped",
    [MM_FAULT_USER_COW] = "user copy-on-write page",
    [MM_FAULT_KSTACK_OVERFLOW] = "kernel stack overflow",
    [MM_FAULT_KSTACK_UNDERFLOW] = "kernel stack underflow",
    [MM_FAULT_KSTACK] = "kernel stack",
    [MM_FAULT_KSTACK_RANGE] = "kernel-stack range, no stack there",
    [MM_FAULT_VMALLOC] = "vmalloc area",
    [MM_FAULT_VMALLOC_GUARD] = "vmalloc guard page",
    [MM_FAULT_VMALLOC_UNMAPPED] = "vmalloc range, not mapped",
    [MM_FAULT_MMIO] = "MMIO space",
    [MM_FAULT_DIRECT_MAP] = "direct map of RAM",
    [MM_FAULT_DIRECT_MAP_HOLE] = "direct-map hole (not RAM)",
    [MM_FAULT_IMAGE] = "kernel image",
    [MM_FAULT_SELFTEST] = "self-test range",
    [MM_FAULT_KERNEL_UNMAPPED] = "unmapped kernel address",
    [MM_FAULT_KERNEL_MAPPED] = "mapped kernel address",
};

const char *mm_fault_kind_name(enum mm_fault_kind kind)
{
    return (unsigned)kind < MM_FAULT_NR_KINDS ? kind_names[kind] : "?";
}

/* The kind-specific details, written to buf; returns mm_snprintf's count. */
static int format_detail(const struct mm_fault_info *i, char *buf, size_t len)
{
    const struct mm_kstack_info *s = &i->stack;
    switch (i->kind) {
    case MM_FAULT_KSTACK_OVERFLOW:
    case MM_FAULT_KSTACK_UNDERFLOW:
    case MM_FAULT_KSTACK: {
        uint64_t off = i->kind == MM_FAULT_KSTACK_OVERFLOW ? s->base.raw - i->va.raw
                     : i->kind == MM_FAULT_KSTACK_UNDERFLOW ? i->va.raw - s->top.raw
                     : s->top.raw - i->va.raw;
        const char *rel = i->kind == MM_FAULT_KSTACK_OVERFLOW ? "below its base"
                        : i->kind == MM_FAULT_KSTACK_UNDERFLOW ? "above its top"
                        : "below its top";
        if (s->cpu == MM_KSTACK_NO_CPU)
            return mm_snprintf(buf, len, ": stack '%s' (no cpu) [%#lx, %#lx), %#lx bytes %s",
                               s->name, (unsigned long)s->base.raw, (unsigned long)s->top.raw,
                               (unsigned long)off, rel);
        return mm_snprintf(buf, len, ": stack '%s' of cpu %u [%#lx, %#lx), %#lx bytes %s",
                           s->name, s->cpu, (unsigned long)s->base.raw,
                           (unsigned long)s->top.raw, (unsigned long)off, rel);
    }
    case MM_FAULT_VMALLOC_GUARD:
        return mm_snprintf(buf, len, ": %#lx bytes past the area ending at %#lx",
                           (unsigned long)(i->va.raw - i->area_end.raw),
                           (unsigned long)i->area_end.raw);
    case MM_FAULT_DIRECT_MAP:
    case MM_FAULT_DIRECT_MAP_HOLE:
        return mm_snprintf(buf, len, ": pa %#lx", (unsigned long)i->pa.raw);
    default:
        if (i->mapped)
            return mm_snprintf(buf, len, ": mapped to pa %#lx, flags %#lx",
                               (unsigned long)i->pa.raw, (unsigned long)i->flags);
        return mm_snprintf(buf, len, "%s", "");
    }
}

int mm_fault_format(const struct mm_fault_info *info, char *buf, size_t len)
{
    char detail[160];
    char access[96];
    uint64_t ec = info->error_code;
    format_detail(info, detail, sizeof detail);
    if (ec == MM_FAULT_EC_NONE)
        mm_snprintf(access, sizeof access, "no error code");
    else
        mm_snprintf(access, sizeof access, "%s, %s mode, %s%s%s",
                    (ec & MM_PF_FETCH) ? "fetch" : (ec & MM_PF_WRITE) ? "write" : "read",
                    (ec & MM_PF_USER) ? "user" : "kernel",
                    (ec & MM_PF_PRESENT) ? "protection" : "not present",
                    (ec & MM_PF_RSVD) ? ", reserved bit" : "",
                    (info->mapped && !(ec & MM_PF_PRESENT)) ? ", mapped now" : "");
    return mm_snprintf(buf, len, "fault at %#lx: %s%s (%s)%s", (unsigned long)info->va.raw,
                       mm_fault_kind_name(info->kind), detail, access,
                       info->unsure ? " [could not look: registry busy or no description]"
                                    : "");
}
