/*
 * mm/dma.h - buffers for devices that address only part of physical
 * memory (mm/buddy_dma.c).
 *
 * A DMA buffer is physically contiguous, naturally aligned (to its size
 * rounded up to a power of two of pages), zeroed, and lies entirely below
 * max_pa, an exclusive limit that is a power of two (16 MiB for ISA DMA,
 * 4 GiB for 32-bit devices).  The CPU reaches it through the direct map
 * (write-back cached; the caller handles any cache maintenance its device
 * needs, none on x86 with coherent DMA).  Ordinary buddy allocations
 * prefer memory above 4 GiB, so low memory stays free for these.
 *
 * Locking: the buddy's lock, interrupts off while it is held; callable
 * from any CPU and from interrupt handlers (the zeroing runs outside the
 * lock and takes time proportional to the size).
 */
#ifndef MM_DMA_H
#define MM_DMA_H

#include <mm/buddy.h>

/*
 * Allocate a DMA buffer of `size` bytes (1 .. 1 GiB; rounded up to a power
 * of two of 4 KiB pages) below max_pa from buddy b.  Returns 0 and sets
 * *va_out (its direct-map address) and *pa_out; -MM_EINVAL (logged) for a
 * bad size or a max_pa that is not a power of two of at least the rounded
 * size; -MM_ENOMEM (not logged) when no free block of that size lies
 * below max_pa.
 */
int buddy_dma_alloc(struct buddy *b, uint64_t size, phys_addr_t max_pa, void **va_out,
                    phys_addr_t *pa_out);

/*
 * Free a buffer from buddy_dma_alloc: va as returned, size as requested
 * (any size that rounds to the same pages).  Returns 0; -MM_EINVAL
 * (logged) for a bad size or a va outside the direct map; otherwise
 * buddy_free's refusals (-MM_EINVAL, -MM_EFAULT, -MM_ENOENT, logged,
 * nothing changed).
 */
int buddy_dma_free(struct buddy *b, void *va, uint64_t size);

/* buddy_dma_alloc / buddy_dma_free on the kernel's buddy (mm_buddy());
 * before mm_init: -MM_EINVAL, logged. */
int mm_dma_alloc(uint64_t size, phys_addr_t max_pa, void **va_out, phys_addr_t *pa_out);
int mm_dma_free(void *va, uint64_t size);

#endif
