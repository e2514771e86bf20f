/*
 * ioremap.c - what the direct map covers, as the rest of the library sees
 * it, and mappings of physical ranges in the kernel table through the MMIO
 * pool: mm_ioremap (uncached, for devices) and mm_memremap (write-back,
 * read-only, for firmware tables).
 *
 * The description is the list of direct-map ranges (mm/directmap.h) and
 * the boot information it came from.  mm_init makes it while planning the
 * table it then builds; a kernel with its own page tables ("Path B" in
 * docs/INTEGRATION.md) makes it with mm_direct_map_describe().  Either way
 * mm_direct_map_contains() and mm_ioremap()'s alias check work from it.
 * Before any description the direct map is taken to be empty: nothing is
 * "contained", nothing is refused as an alias.
 *
 * Invariant: ranges_cur is NULL or points at a complete, valid list; a new
 * description is computed into the other buffer and then published by
 * switching the pointer, so a failed one leaves the old in place.
 *
 * Locking: descriptions are made on the boot CPU before other CPUs start,
 * and only read afterwards.  The mappings take the kernel mapper lock, then
 * the MMIO pool's (see mm/kmapper.h for the order).
 */
#include <mm/arch.h>
#include <mm/directmap.h>
#include <mm/init.h>
#include <mm/log.h>

/* Two buffers (16 KiB each, hence static): the published one and scratch. */
static struct directmap_ranges ranges_buf[2];
static const struct directmap_ranges *ranges_cur;
static struct mb2_info ranges_info;     /* the information ranges_cur came from */

/* Drop the parts of r at or above max_pa (r stays a valid list). */
static void clip_ranges(struct directmap_ranges *r, uint64_t max_pa)
{
    unsigned n = 0;
    while (n < r->count && r->area[n].start.raw < max_pa) {
        if (r->area[n].end.raw > max_pa)
            r->area[n].end = PA(max_pa);
        n++;
    }
    r->count = n;
}

int mm_direct_map_describe(const struct mb2_info *info, uint64_t max_pa)
{
    if (max_pa == 0 || !is_aligned_u64(max_pa, PAGE_SIZE)) {
        mm_printf("mm_direct_map_describe: max_pa %#lx is 0 or not page-aligned\n",
                  (unsigned long)max_pa);
        return -MM_EINVAL;
    }
    if (mm_buddy() != NULL) {
        mm_printf("mm_direct_map_describe: mm_init has built the direct map already\n");
        return -MM_EBUSY;
    }
    struct directmap_ranges *next = &ranges_buf[ranges_cur == &ranges_buf[0] ? 1 : 0];
    int rc = directmap_collect(info, arch_phys_addr_bits(), next);
    if (rc != 0) {
        mm_printf("mm_direct_map_describe: the %u-entry map at %#lx does not fit: %s\n",
                  info->map_count, (unsigned long)info->pa.raw, mm_strerror(rc));
        return rc;
    }
    clip_ranges(next, max_pa);
    ranges_info = *info;
    ranges_cur = next;
    return 0;
}

const struct directmap_ranges *mm_direct_map_ranges(void)
{
    return ranges_cur;
}

bool mm_direct_map_contains(phys_addr_t pa, uint64_t size)
{
    return ranges_cur != NULL && directmap_contains(ranges_cur, pa, size);
}

/*
 * Map [pa, pa + size) through the kernel's MMIO pool with the cache mode,
 * under the kernel mapper lock.  NULL on failure (logged by `who` or the
 * pool).
 */
static void *pool_map(const char *who, phys_addr_t pa, uint64_t size, enum mm_cache_mode mode)
{
    struct kmapper km;
    void *va = NULL;
    if (kmapper_lock(&km))
        va = mmio_ioremap_mode(mmio_pool_global(), &km.mapper, pa, size, mode);
    else
        mm_printf("%s: pa %#lx: kernel mapper already held by this CPU\n", who,
                  (unsigned long)pa.raw);
    kmapper_unlock(&km);
    return va;
}

/* mm_ioremap and mm_ioremap_wc: refuse a direct-map alias, then map. */
static void *device_map(const char *who, phys_addr_t pa, uint64_t size, enum mm_cache_mode mode)
{
    /*
     * The direct map already maps its ranges write-back.  An uncached or
     * write-combining second mapping of the same bytes is a memory-type
     * alias the SDM forbids (vol. 3, 11.12.4), so any page of the request
     * that the direct map holds is refused; only the legacy device window
     * below 1 MiB, which the fixed-range MTRRs keep uncached, is exempt.
     */
    struct mm_area hit;
    if (ranges_cur && directmap_ioremap_conflict(ranges_cur, &ranges_info, pa, size, &hit)) {
        mm_printf("%s: pa %#lx (+%#lx) overlaps the direct map's [%#lx, %#lx), "
                  "mapped write-back; use pa_to_ptr\n", who, (unsigned long)pa.raw,
                  (unsigned long)size, (unsigned long)hit.start.raw, (unsigned long)hit.end.raw);
        return NULL;
    }
    return pool_map(who, pa, size, mode);
}

void *mm_ioremap(phys_addr_t pa, uint64_t size)
{
    return device_map("mm_ioremap", pa, size, MM_CACHE_UC);
}

void *mm_ioremap_wc(phys_addr_t pa, uint64_t size)
{
    return device_map("mm_ioremap_wc", pa, size, MM_CACHE_WC);
}

int mm_iounmap(void *va)
{
    struct kmapper km;
    int rc = -MM_EPERM;
    if (kmapper_lock(&km))
        rc = mmio_iounmap(mmio_pool_global(), &km.mapper, va);
    else
        mm_printf("mm_iounmap: va %p: kernel mapper already held by this CPU\n", va);
    kmapper_unlock(&km);
    return rc;
}

void *mm_memremap(phys_addr_t pa, uint64_t size)
{
    if (size == 0 || size > UINT64_MAX - pa.raw) {
        mm_printf("mm_memremap: pa %#lx (+%#lx): empty or wraps past 2^64\n",
                  (unsigned long)pa.raw, (unsigned long)size);
        return NULL;
    }
    if (mm_direct_map_contains(pa, size))
        return pa_to_ptr(pa);
    /* Write-back like the direct map, so bytes it also holds get no
     * conflicting alias; read-only, so the copy cannot be written through. */
    return pool_map("mm_memremap", pa, size, MM_CACHE_WB_RO);
}

/* Is p a pointer into the direct map's ranges (what mm_memremap returns
 * for ranges inside it)? */
static bool is_direct_map_ptr(const void *p)
{
    uint64_t va = (uint64_t)(uintptr_t)p;
    return va >= mm_direct_map_offset && va - mm_direct_map_offset < MM_DIRECT_MAP_MAX_PA &&
           mm_direct_map_contains(direct_ptr_to_pa(p), 1);
}

int mm_memunmap(void *p)
{
    uint64_t va = (uint64_t)(uintptr_t)p;
    if (is_direct_map_ptr(p))
        return 0;
    if (va >= MMIO_POOL_BASE && va < MMIO_POOL_END)
        return mm_iounmap(p);
    mm_printf("mm_memunmap: %p is neither in the direct map nor in the MMIO pool\n", p);
    return -MM_EINVAL;
}
