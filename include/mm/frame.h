/*
 * mm/frame.h - the frame-allocator interface and the direct map.
 *
 * The page-table mapper takes a struct frame_allocator so the same code can
 * build tables with the bump allocator during boot and with the buddy
 * allocator afterwards.  A frame is 4 KiB of physical memory.
 *
 * The direct map makes all physical RAM visible at pa + mm_direct_map_offset.
 * In the kernel the offset is 0xffff800000000000; the host tests point it at
 * a buffer that simulates physical memory.  It holds physical addresses
 * below MM_DIRECT_MAP_MAX_PA only (mm/directmap.h says which bytes).
 */
#ifndef MM_FRAME_H
#define MM_FRAME_H

#include <mm/layout.h>
#include <mm/types.h>

struct frame_allocator {
    /* Allocate one 4 KiB frame into *pa_out.  Returns 0 or -MM_ENOMEM. */
    int (*alloc)(struct frame_allocator *self, phys_addr_t *pa_out);
    /* Return one frame obtained from alloc.  NULL if frames cannot be freed. */
    void (*free)(struct frame_allocator *self, phys_addr_t pa);
};

static inline int frame_alloc(struct frame_allocator *fa, phys_addr_t *pa_out)
{
    return fa->alloc(fa, pa_out);
}

/* Kernel virtual address at which physical address 0 appears. */
extern uint64_t mm_direct_map_offset;

/* MM_DIRECT_MAP_BASE and MM_DIRECT_MAP_MAX_PA (16 TiB) are in mm/layout.h. */

static inline void *pa_to_ptr(phys_addr_t pa)
{
    return (void *)(uintptr_t)(pa.raw + mm_direct_map_offset);
}

static inline virt_addr_t pa_to_direct_va(phys_addr_t pa)
{
    return VA(pa.raw + mm_direct_map_offset);
}

/* Inverse of pa_to_ptr for pointers into the direct map. */
static inline phys_addr_t direct_ptr_to_pa(const void *p)
{
    return PA((uint64_t)(uintptr_t)p - mm_direct_map_offset);
}

#endif
