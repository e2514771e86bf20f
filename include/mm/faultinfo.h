/*
 * mm/faultinfo.h - the fault classifier: what is this faulting address?
 *
 * mm_fault_describe() looks at an address the way a page-fault or
 * double-fault handler needs it said: the null page, a kernel stack's
 * guard page (whose stack, which CPU, below = overflow, above =
 * underflow), a user address (mapped or not, a copy-on-write page), the
 * MMIO pool, a vmalloc area or the guard page after one, the direct map
 * (RAM, or a hole where the physical address is not RAM/ACPI), the kernel
 * image, an unmapped kernel address, a non-canonical address.
 * mm_fault_format() turns the answer into one line.
 *
 * Safe in a fault handler.  Neither call allocates, sleeps, prints or
 * takes a lock (so it cannot deadlock on a lock the faulting code holds):
 *   - the page tables are read without the kernel mapper's or the address
 *     space's lock, entry by entry, and a table is followed only if its
 *     frame lies in the direct map (so a racing edit can give a stale
 *     answer, never a second fault);
 *   - the kernel stacks come from mm_kstack_lookup (lock-free, see
 *     mm/kstack.h); if a registry slot kept changing while it was read,
 *     the answer says it could not look (info->unsure);
 *   - the direct map's description is read-only after boot.
 * The only failure is out == NULL (-MM_EINVAL, nothing else happens: no
 * log line, because a fault handler may hold the console).
 */
#ifndef MM_FAULTINFO_H
#define MM_FAULTINFO_H

#include <mm/aspace.h>
#include <mm/cow.h>
#include <mm/kstack.h>
#include <mm/types.h>

/* Page-fault error code bits (SDM vol. 3, 4.7): MM_PF_PRESENT, MM_PF_WRITE
 * and MM_PF_USER are in mm/cow.h; these two complete what is decoded. */
#define MM_PF_RSVD      0x8u     /* a reserved bit was set in an entry */
#define MM_PF_FETCH     0x10u    /* instruction fetch */
/* error_code for callers that have none (a double fault's CR2). */
#define MM_FAULT_EC_NONE UINT64_MAX

enum mm_fault_kind {
    MM_FAULT_NONCANONICAL,
    MM_FAULT_NULL_PAGE,             /* [0, 4 KiB) */
    MM_FAULT_USER_UNMAPPED,         /* user half, nothing mapped */
    MM_FAULT_USER_MAPPED,           /* user half, mapped: a protection fault */
    MM_FAULT_USER_COW,              /* user half, a copy-on-write page */
    MM_FAULT_KSTACK_OVERFLOW,       /* guard below a kernel stack */
    MM_FAULT_KSTACK_UNDERFLOW,      /* guard above a kernel stack */
    MM_FAULT_KSTACK,                /* inside a live kernel stack */
    MM_FAULT_KSTACK_RANGE,          /* kernel-stack range, no live stack there */
    MM_FAULT_VMALLOC,               /* a mapped vmalloc page */
    MM_FAULT_VMALLOC_GUARD,         /* the page right after a vmalloc area */
    MM_FAULT_VMALLOC_UNMAPPED,      /* vmalloc range, nothing mapped */
    MM_FAULT_MMIO,                  /* the MMIO pool */
    MM_FAULT_DIRECT_MAP,            /* the direct map of RAM/ACPI */
    MM_FAULT_DIRECT_MAP_HOLE,       /* direct-map range, pa not RAM/ACPI */
    MM_FAULT_IMAGE,                 /* the kernel image's range */
    MM_FAULT_SELFTEST,              /* the self-test range */
    MM_FAULT_KERNEL_UNMAPPED,       /* other kernel-half address, not mapped */
    MM_FAULT_KERNEL_MAPPED,         /* other kernel-half address, mapped */
    MM_FAULT_NR_KINDS
};

struct mm_fault_info {
    virt_addr_t va;
    uint64_t error_code;            /* as given (MM_FAULT_EC_NONE: none) */
    enum mm_fault_kind kind;
    bool mapped;                    /* a present leaf maps va (flags, pa valid) */
    uint64_t flags;                 /* that leaf's bits, without the address */
    bool shared_table;              /* its level-1 table is shared since a fork */
    phys_addr_t pa;                 /* of va: mapped, or the direct map's pa */
    bool unsure;                    /* a lock-free look-up gave up: kind is a guess */
    struct mm_kstack_info stack;    /* KSTACK_*: the stack */
    virt_addr_t area_end;           /* VMALLOC_GUARD: end of the area below */
};

/*
 * Classify va.  as: the address space whose user half to look in (NULL:
 * the table loaded in CR3); kernel addresses are looked up in the kernel
 * table (kmapper_peek; CR3 if there is no kernel mapper yet).  error_code
 * is the page-fault error code or MM_FAULT_EC_NONE.  0 and *out, or
 * -MM_EINVAL if out is NULL.  See above for why it is safe in a handler.
 */
int mm_fault_describe(struct mm_as *as, virt_addr_t va, uint64_t error_code,
                      struct mm_fault_info *out);

/* One line (no newline) naming the kind, the details and the access, in
 * buf of len bytes (truncated if short).  Returns what mm_snprintf does. */
int mm_fault_format(const struct mm_fault_info *info, char *buf, size_t len);

/* A short fixed name of a kind ("kernel stack overflow", ...). */
const char *mm_fault_kind_name(enum mm_fault_kind kind);

#endif
