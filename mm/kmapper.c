/*
 * mm/kmapper.c - the per-CPU recursive lock around the kernel page table.
 *
 * Algorithm: one 64-bit lock word holds the owner CPU and the nesting
 * depth (see mm/kmapper.h for the rules); the outermost acquisition is a
 * compare-and-swap, nested ones and releases are plain stores by the owner.
 *
 * Invariants: only the owner changes the word once it holds it; a nested
 * holder gets a read-only mapper; depth 0 <=> owner MM_NO_CPU.  Once
 * kmapper_fix_kernel_half has run, every mapper handed out has
 * kernel_top_fixed set (mm/paging.h): the kernel half's top-level entries
 * no longer change.
 *
 * Locking: this file is the lock.  Acquire ordering on the CAS and release
 * ordering on the store that frees the lock make the table edits of one
 * holder visible to the next.
 */
#include <mm/kmapper.h>
#include <mm/log.h>
#include <mm/spinlock.h>

static struct pt_mapper kernel_table;      /* set once by kmapper_setup */

/*
 * Lock word: owner CPU in the high 32 bits, depth in the low 32.  The
 * outermost acquisition sets both with one CAS, so an interrupt arriving
 * right after it already sees this CPU as owner at depth 1.  Only the
 * owner modifies the word afterwards; a nested acquisition interrupted
 * between its load and store finds the word restored by the time it
 * resumes, because nested holders release before returning.
 */
#define LOCK_FREE    ((uint64_t)MM_NO_CPU << 32)
static uint64_t lock_word = LOCK_FREE;

static inline unsigned word_owner(uint64_t w) { return (unsigned)(w >> 32); }
static inline unsigned word_depth(uint64_t w) { return (unsigned)w; }

void kmapper_setup(phys_addr_t top_pa, struct frame_allocator *fa)
{
    kernel_table = (struct pt_mapper){ .top_pa = top_pa, .fa = fa };
}

void kmapper_fix_kernel_half(void)
{
    kernel_table.kernel_top_fixed = true;   /* under the lock, or alone at init */
}

bool kmapper_kernel_half_fixed(void)
{
    return kernel_table.kernel_top_fixed;
}

bool kmapper_lock(struct kmapper *km)
{
    unsigned me = mm_platform_cpu_id();
    uint64_t w = __atomic_load_n(&lock_word, __ATOMIC_RELAXED);

    if (word_owner(w) == me) {
        /* Re-entry on this CPU: plain store, no atomic RMW needed. */
        __atomic_store_n(&lock_word, w + 1, __ATOMIC_RELAXED);
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
        km->depth = word_depth(w) + 1;
    } else {
        uint64_t mine = ((uint64_t)me << 32) | 1;
        uint64_t spins = 0;
        for (;;) {
            uint64_t expected = LOCK_FREE;
            if (__atomic_compare_exchange_n(&lock_word, &expected, mine, false,
                                            __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
                break;
            mm_cpu_relax();
            if (++spins == KMAPPER_SPIN_WARN) {
                w = __atomic_load_n(&lock_word, __ATOMIC_RELAXED);
                mm_printf("kmapper_lock: cpu %u still waiting after %lu spins; "
                          "owner cpu %u, depth %u\n", me, (unsigned long)spins,
                          word_owner(w), word_depth(w));
            }
        }
        km->depth = 1;
    }
    km->mapper = kernel_table;
    km->mapper.readonly = km->depth > 1;
    return !km->mapper.readonly;
}

/*
 * Release one level.  The reference design (DragonOS) drops the count
 * with interrupts disabled because it keeps owner and count in two
 * variables; here both live in one word that the release changes with a
 * single store, and an interrupt handler that nests between our load and
 * our store restores the word before we resume, so no interrupt masking
 * is needed for the same guarantee.
 */
void kmapper_unlock(struct kmapper *km)
{
    unsigned me = mm_platform_cpu_id();
    uint64_t w = __atomic_load_n(&lock_word, __ATOMIC_RELAXED);

    if (word_owner(w) != me)
        mm_panic("kmapper_unlock: cpu %u does not hold the kernel mapper lock "
                 "(owner cpu %d, depth %u)", me, (int)word_owner(w), word_depth(w));
    if (km->depth != word_depth(w))
        mm_panic("kmapper_unlock: cpu %u releases depth %u but the lock is at "
                 "depth %u (unlock order broken)", me, km->depth, word_depth(w));
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    if (word_depth(w) == 1)
        __atomic_store_n(&lock_word, LOCK_FREE, __ATOMIC_RELEASE);
    else
        __atomic_store_n(&lock_word, w - 1, __ATOMIC_RELAXED);
    km->depth = 0;
    km->mapper.readonly = true;
}

struct pt_mapper kmapper_peek(void)
{
    struct pt_mapper m = kernel_table;
    m.readonly = true;
    return m;
}

unsigned kmapper_owner(void)
{
    return word_owner(__atomic_load_n(&lock_word, __ATOMIC_RELAXED));
}

unsigned kmapper_depth(void)
{
    return word_depth(__atomic_load_n(&lock_word, __ATOMIC_RELAXED));
}
