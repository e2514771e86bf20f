/*
 * mm/types.h - basic types shared by the whole memory subsystem.
 *
 * Physical and virtual addresses are distinct one-member structs so the
 * compiler refuses to mix them up; they cost nothing at run time.  Names of
 * variables carry their unit: pa (physical address), va (virtual address),
 * pfn (page frame number), order (log2 of a block size in pages), npages,
 * size (bytes).
 *
 * Error convention: functions that can fail because of the caller (bad
 * input) or because memory ran out return a negative MM_E* code (or a
 * failure value that their contract names) and leave all state unchanged.
 */
#ifndef MM_TYPES_H
#define MM_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct phys_addr { uint64_t raw; } phys_addr_t;
typedef struct virt_addr { uint64_t raw; } virt_addr_t;

#define PA(x) ((phys_addr_t){ .raw = (uint64_t)(x) })
#define VA(x) ((virt_addr_t){ .raw = (uint64_t)(x) })

/* Paging sizes, derived from the 4 KiB page shift and 9 bits per level. */
#define PAGE_SHIFT      12
#define PAGE_SIZE       (UINT64_C(1) << PAGE_SHIFT)
#define PT_ENTRY_BITS   9
#define PT_ENTRIES      (1u << PT_ENTRY_BITS)
#define PAGE_2M_SHIFT   (PAGE_SHIFT + PT_ENTRY_BITS)
#define PAGE_1G_SHIFT   (PAGE_2M_SHIFT + PT_ENTRY_BITS)
#define PAGE_2M_SIZE    (UINT64_C(1) << PAGE_2M_SHIFT)
#define PAGE_1G_SIZE    (UINT64_C(1) << PAGE_1G_SHIFT)

#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)

static inline uint64_t align_down_u64(uint64_t x, uint64_t a) { return x & ~(a - 1); }
static inline uint64_t align_up_u64(uint64_t x, uint64_t a) { return (x + a - 1) & ~(a - 1); }
static inline bool is_aligned_u64(uint64_t x, uint64_t a) { return (x & (a - 1)) == 0; }
static inline bool is_pow2_u64(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

static inline uint64_t pa_to_pfn(phys_addr_t pa) { return pa.raw >> PAGE_SHIFT; }
static inline phys_addr_t pfn_to_pa(uint64_t pfn) { return PA(pfn << PAGE_SHIFT); }

/* Error codes (returned negated).  Values follow Linux errno numbers. */
#define MM_EPERM   1   /* operation not allowed (e.g. read-only mapper) */
#define MM_ENOENT  2   /* nothing mapped / not allocated */
#define MM_ENOMEM  12  /* out of memory */
#define MM_EFAULT  14  /* address outside the managed range */
#define MM_EBUSY   16  /* resource in use */
#define MM_EEXIST  17  /* already mapped / already allocated */
#define MM_ENODEV  19  /* the CPU lacks a feature */
#define MM_EINVAL  22  /* malformed argument (alignment, size, ...) */

const char *mm_strerror(int err);

#endif
