/*
 * memmap_suite.c - the boot's multiboot2 information and the usable-RAM
 * areas mm init derived from it, checked on the real machine.
 *
 * The areas must form a valid area list, stay clear of everything that is
 * not free RAM (the low 1 MiB, the kernel image, the boot information, the
 * modules, every non-available map entry), lie inside available entries,
 * and be reachable through the direct map.  Re-parsing the live structure
 * must give the same answer as at boot.  Nothing here allocates.
 */
#include "fault.h"
#include "ktest.h"

#include <mm/frame.h>
#include <mm/init.h>
#include <mm/multiboot2.h>

/* Physical bounds of the kernel image, from linker.ld. */
extern char __kernel_phys_start[], __kernel_phys_end[];

static uint64_t kernel_pa_start(void) { return (uint64_t)(uintptr_t)__kernel_phys_start; }
static uint64_t kernel_pa_end(void) { return (uint64_t)(uintptr_t)__kernel_phys_end; }

static bool overlaps(uint64_t a0, uint64_t a1, uint64_t b0, uint64_t b1)
{
    return a0 < b1 && b0 < a1;
}

/* Fetch both or end the case as failed. */
#define GET_BOOT_DATA(t, info, areas)                                         \
    const struct mb2_info *info = mm_boot_info();                             \
    const struct mm_area_list *areas = mm_usable_areas();                     \
    KASSERT(t, info != NULL && areas != NULL)

static void areas_form_valid_list(struct ktest *t)
{
    GET_BOOT_DATA(t, info, areas);
    KASSERT(t, areas->count >= 1 && areas->count <= MM_MAX_AREAS);
    for (unsigned i = 0; i < areas->count; i++) {
        const struct mm_area *a = &areas->area[i];
        KEXPECT(t, a->start.raw % PAGE_SIZE == 0);
        KEXPECT(t, a->end.raw % PAGE_SIZE == 0);
        KEXPECT(t, a->end.raw > a->start.raw);
        if (i > 0)
            KEXPECT(t, a->start.raw > areas->area[i - 1].end.raw);
    }
    (void)info;
}

static void areas_avoid_low_memory_and_kernel(struct ktest *t)
{
    GET_BOOT_DATA(t, info, areas);
    uint64_t k0 = kernel_pa_start(), k1 = kernel_pa_end();

    KASSERT(t, k1 > k0);
    ktest_log(t, "kernel image [%#lx, %#lx), boot info [%#lx, +%#x)", (unsigned long)k0,
              (unsigned long)k1, (unsigned long)info->pa.raw, info->total_size);
    for (unsigned i = 0; i < areas->count; i++) {
        uint64_t s = areas->area[i].start.raw, e = areas->area[i].end.raw;
        KEXPECT(t, s >= MiB);
        KEXPECT(t, !overlaps(s, e, k0, k1));
        KEXPECT(t, !overlaps(s, e, info->pa.raw, info->pa.raw + info->total_size));
        struct mb2_module m;
        for (uint32_t cursor = 0; mb2_module_next(info, &cursor, &m);)
            KEXPECT(t, !overlaps(s, e, m.start.raw, m.end.raw));
    }
}

static void areas_inside_available_entries(struct ktest *t)
{
    GET_BOOT_DATA(t, info, areas);
    KASSERT(t, info->map_count > 0);
    for (unsigned i = 0; i < areas->count; i++) {
        uint64_t s = areas->area[i].start.raw, e = areas->area[i].end.raw;
        /* No entry of another type may touch an area... */
        for (unsigned j = 0; j < info->map_count; j++) {
            struct mb2_mmap_entry m;
            KASSERT(t, mb2_map_entry(info, j, &m) == 0);
            if (m.length && m.type != MB2_MEM_AVAILABLE)
                KEXPECT(t, !overlaps(s, e, m.base, m.base + m.length));
        }
        /* ...and available entries must cover it without a gap. */
        uint64_t x = s;
        while (x < e) {
            uint64_t reach = x;
            for (unsigned j = 0; j < info->map_count; j++) {
                struct mb2_mmap_entry m;
                mb2_map_entry(info, j, &m);
                if (m.type == MB2_MEM_AVAILABLE && m.base <= x && x < m.base + m.length &&
                    m.base + m.length > reach)
                    reach = m.base + m.length;
            }
            if (reach == x) {
                ktest_log(t, "area %u: %#lx is not in an available entry", i, (unsigned long)x);
                KEXPECT(t, reach > x);
                break;
            }
            x = reach;
        }
    }
}

static void usable_total_is_plausible(struct ktest *t)
{
    GET_BOOT_DATA(t, info, areas);
    uint64_t usable = 0, available = 0;

    for (unsigned i = 0; i < areas->count; i++)
        usable += mm_area_size(&areas->area[i]);
    for (unsigned j = 0; j < info->map_count; j++) {
        struct mb2_mmap_entry m;
        KASSERT(t, mb2_map_entry(info, j, &m) == 0);
        if (m.type == MB2_MEM_AVAILABLE)
            available += m.length;
    }
    ktest_log(t, "usable %lu KiB in %u areas, type-1 entries %lu KiB",
              (unsigned long)(usable / KiB), areas->count, (unsigned long)(available / KiB));
    KEXPECT(t, usable > 0);
    KEXPECT(t, usable <= available);
}

/* The live structure still parses to the same thing (nobody overwrote it). */
static void boot_info_reparses_identically(struct ktest *t)
{
    static struct mb2_info again;
    static struct mm_area_list recomputed;
    char err[MB2_ERR_LEN];
    GET_BOOT_DATA(t, info, areas);

    int rc = mb2_parse(&again, info->base, info->pa, info->total_size, err, sizeof err);
    if (rc)
        ktest_log(t, "%s", err);
    KASSERT(t, rc == 0);
    KEXPECT_EQ(t, again.total_size, info->total_size);
    KEXPECT_EQ(t, again.map_source, info->map_source);
    KEXPECT_EQ(t, again.map_count, info->map_count);
    KEXPECT_EQ(t, again.nmodules, info->nmodules);

    /*
     * Recomputing with only the kernel image reserved may keep more RAM
     * (mm init can pass extra ranges), never less: every boot area must lie
     * inside a recomputed one.
     */
    const struct mb2_reserved kernel = { PA(kernel_pa_start()), PA(kernel_pa_end()), "kernel" };
    KASSERT(t, mb2_usable_areas(&again, &kernel, 1, &recomputed, NULL) == 0);
    for (unsigned i = 0; i < areas->count; i++) {
        bool inside = false;
        for (unsigned j = 0; j < recomputed.count && !inside; j++)
            inside = recomputed.area[j].start.raw <= areas->area[i].start.raw &&
                     areas->area[i].end.raw <= recomputed.area[j].end.raw;
        KEXPECT(t, inside);
    }
}

/* Every area's first and last byte are readable through the direct map. */
static void areas_reachable_through_direct_map(struct ktest *t)
{
    GET_BOOT_DATA(t, info, areas);
    struct fault_info fi;
    (void)info;
    for (unsigned i = 0; i < areas->count; i++) {
        const volatile uint8_t *first = pa_to_ptr(areas->area[i].start);
        const volatile uint8_t *last = pa_to_ptr(PA(areas->area[i].end.raw - 1));
        bool fault_first = probe_read(first, &fi);
        bool fault_last = probe_read(last, &fi);
        if (fault_first || fault_last)
            ktest_log(t, "area %u [%#lx, %#lx): fault at cr2 %#lx", i,
                      (unsigned long)areas->area[i].start.raw,
                      (unsigned long)areas->area[i].end.raw, (unsigned long)fi.cr2);
        KEXPECT(t, !fault_first);
        KEXPECT(t, !fault_last);
    }
}

KTEST_SUITE(memmap_suite, "memmap",
            KTEST_CASE(areas_form_valid_list),
            KTEST_CASE(areas_avoid_low_memory_and_kernel),
            KTEST_CASE(areas_inside_available_entries),
            KTEST_CASE(usable_total_is_plausible),
            KTEST_CASE(boot_info_reparses_identically),
            KTEST_CASE(areas_reachable_through_direct_map));
