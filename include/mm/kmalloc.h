/*
 * mm/kmalloc.h - general-purpose kernel allocation over object caches.
 *
 * Sizes 1 .. KMALLOC_MAX_CLASS come from one of 15 size classes: 8, 16,
 * 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048 bytes
 * (the steps between powers of two keep the worst waste near a third
 * instead of a half).  Larger sizes get whole pages from the buddy, a
 * power of two of them (the buddy's block sizes), up to 1 GiB.
 *
 * Alignment: an object of class s is aligned to the largest power of two
 * that divides s (8 for 8; 16 for 16 and 48; 32 for 32 and 96; 64 for 64
 * and 192; ... 2048 for 2048): at least 8, at least 16 from 16 bytes up.
 * A big allocation is aligned to its own size in pages.
 *
 * kmalloc(0, f) returns NULL and logs nothing; kfree(NULL) does nothing;
 * so the pair is harmless.
 *
 * Locking: every call is safe on any CPU, with interrupts on or off and
 * from interrupt handlers (mm/slab.h, "Locking rules").  Big allocations
 * take the big-allocation table's lock and the buddy's.
 */
#ifndef MM_KMALLOC_H
#define MM_KMALLOC_H

#include <mm/types.h>

#define MM_KM_ZERO        0x1u          /* zero the memory */
#define KMALLOC_MAX_CLASS 2048u         /* largest size served from a class */

/* size bytes, or NULL: size 0 (not logged), out of memory (not logged),
 * unknown flags or a size over 1 GiB (logged). */
void *kmalloc(size_t size, unsigned flags);
/* kmalloc(size, flags | MM_KM_ZERO). */
void *kzalloc(size_t size, unsigned flags);
/* Free p from kmalloc.  NULL: no-op.  Anything else that is not a live
 * kmalloc pointer (double free, interior, foreign): one log line, the
 * heap unchanged. */
void kfree(const void *p);
/* Bytes usable at p (the class size, or the pages of a big allocation);
 * 0 for NULL or anything that is not a live kmalloc pointer (not logged). */
size_t kmalloc_usable_size(const void *p);

#endif
