/*
 * mm/kstack.c - kernel stacks with guard pages (mm/kstack.h), and the
 * registry that names the stack a guard page belongs to.
 *
 * Algorithm.  A stack is a vmalloc area of its own range (a struct
 * vmalloc_space over [MM_KSTACK_BASE, MM_KSTACK_END)) with the stack
 * placement: the guard page above, the rest of the block below.  Its
 * registry slot number (plus one) is the area's user word, so the block's
 * tag and the slot name each other.  Allocation takes a slot, creates the
 * area, then publishes the slot; freeing checks the caller's handle
 * against the slot (addresses and generation, so a stale handle cannot
 * free a newer stack in the same slot), hides the slot, releases the area
 * (one shootdown) and only then returns the slot; if the release fails
 * the slot is shown again.
 *
 * Registry.  MM_KSTACK_MAX slots, each one cache line: a sequence count,
 * the owner CPU, the block and the stack, the name.  A writer (holding
 * reg_lock) makes the count odd, writes, makes it even again, with
 * release ordering; mm_kstack_lookup reads a slot between two acquire
 * reads of the count and retries a few times if they differ or are odd.
 * The words of a slot are read and written with relaxed atomics, so a
 * racing reader sees old or new values, never torn ones.  Slots in use
 * lie below `high`, which only grows.
 *
 * Invariants: a slot with top != 0 describes exactly one live area of the
 * kernel-stack space whose user word is slot + 1; the free stack holds
 * each unused slot once.
 *
 * Locking: reg_lock protects the free stack, `high` and every slot's
 * contents (writers); readers take no lock.  reg_lock is never held while
 * the vmalloc calls run, so it nests inside nothing and nothing inside it.
 */
#include <mm/kstack.h>
#include <mm/log.h>
#include <mm/spinlock.h>
#include <mm/vmalloc.h>

struct kstack_slot {
    uint32_t seq;                   /* odd while being written */
    uint32_t cpu;
    uint64_t block_va, block_end;
    uint64_t base, top;             /* top == 0: free or hidden */
    uint32_t gen;                   /* bumped on every publish */
    char name[MM_KSTACK_NAME_LEN];
};

_Static_assert(sizeof(struct kstack_slot) == 64, "one slot per cache line");
_Static_assert(MM_KSTACK_MAX < VMALLOC_USER_WORD_LIMIT, "slot + 1 fits the user word");

#define SLOT_NAME_LEN MM_KSTACK_NAME_LEN
#define LOOKUP_TRIES  4

static struct vmalloc_space kstack_space;
static mm_spinlock_t reg_lock = MM_SPINLOCK_INIT;
static struct kstack_slot slots[MM_KSTACK_MAX];
static uint16_t free_stack[MM_KSTACK_MAX];
static unsigned nfree, high, live;

/* ------------------------------------------------------ slot writes */

/* Write a slot's contents (under reg_lock) so that readers see all or none. */
static void slot_write_locked(struct kstack_slot *s, const struct kstack_slot *v)
{
    MM_ASSERT_LOCKED(&reg_lock);
    uint32_t seq = s->seq;
    __atomic_store_n(&s->seq, seq + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    __atomic_store_n(&s->cpu, v->cpu, __ATOMIC_RELAXED);
    __atomic_store_n(&s->block_va, v->block_va, __ATOMIC_RELAXED);
    __atomic_store_n(&s->block_end, v->block_end, __ATOMIC_RELAXED);
    __atomic_store_n(&s->base, v->base, __ATOMIC_RELAXED);
    __atomic_store_n(&s->top, v->top, __ATOMIC_RELAXED);
    __atomic_store_n(&s->gen, v->gen, __ATOMIC_RELAXED);
    for (unsigned i = 0; i < SLOT_NAME_LEN; i++)
        __atomic_store_n(&s->name[i], v->name[i], __ATOMIC_RELAXED);
    __atomic_store_n(&s->seq, seq + 2, __ATOMIC_RELEASE);
}

/* A consistent copy of slot s, or false if it kept changing. */
static bool slot_read(const struct kstack_slot *s, struct kstack_slot *out)
{
    for (unsigned t = 0; t < LOOKUP_TRIES; t++) {
        uint32_t seq = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE);
        if (seq & 1)
            continue;
        out->cpu = __atomic_load_n(&s->cpu, __ATOMIC_RELAXED);
        out->block_va = __atomic_load_n(&s->block_va, __ATOMIC_RELAXED);
        out->block_end = __atomic_load_n(&s->block_end, __ATOMIC_RELAXED);
        out->base = __atomic_load_n(&s->base, __ATOMIC_RELAXED);
        out->top = __atomic_load_n(&s->top, __ATOMIC_RELAXED);
        out->gen = __atomic_load_n(&s->gen, __ATOMIC_RELAXED);
        for (unsigned i = 0; i < SLOT_NAME_LEN; i++)
            out->name[i] = __atomic_load_n(&s->name[i], __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&s->seq, __ATOMIC_RELAXED) == seq)
            return true;
    }
    return false;
}

/* Take a free slot: its number, or -1 if none is left. */
static int slot_take(void)
{
    unsigned long flags = mm_spin_lock_irqsave(&reg_lock);
    int slot = nfree ? free_stack[--nfree] : -1;
    if (slot >= 0 && (unsigned)slot >= high)
        __atomic_store_n(&high, (unsigned)slot + 1, __ATOMIC_RELEASE);
    mm_spin_unlock_irqrestore(&reg_lock, flags);
    return slot;
}

static void slot_give_back(unsigned slot)
{
    unsigned long flags = mm_spin_lock_irqsave(&reg_lock);
    MM_BUG_ON(nfree >= MM_KSTACK_MAX);
    free_stack[nfree++] = (uint16_t)slot;
    mm_spin_unlock_irqrestore(&reg_lock, flags);
}

/* Publish (top != 0) or hide (v->top == 0) a slot; `delta` adjusts live. */
static void slot_set(unsigned slot, const struct kstack_slot *v, int delta)
{
    unsigned long flags = mm_spin_lock_irqsave(&reg_lock);
    slot_write_locked(&slots[slot], v);
    live = (unsigned)((int)live + delta);
    mm_spin_unlock_irqrestore(&reg_lock, flags);
}

/* ---------------------------------------------------------- public calls */

int mm_kstack_init(struct frame_allocator *fa)
{
    int err = vmalloc_space_init(&kstack_space, "kstack", MM_KSTACK_BASE, MM_KSTACK_END, fa);
    if (err)
        return err;
    unsigned long flags = mm_spin_lock_irqsave(&reg_lock);
    for (unsigned i = 0; i < MM_KSTACK_MAX; i++) {
        struct kstack_slot empty = { .gen = slots[i].gen };
        slot_write_locked(&slots[i], &empty);
        free_stack[i] = (uint16_t)(MM_KSTACK_MAX - 1 - i);    /* slot 0 is taken first */
    }
    nfree = MM_KSTACK_MAX;
    high = live = 0;
    mm_spin_unlock_irqrestore(&reg_lock, flags);
    return 0;
}

int mm_kstack_alloc(uint64_t size, unsigned owner_cpu, const char *name, struct mm_kstack *out)
{
    if (size == 0 || size > MM_KSTACK_MAX_SIZE || !name || !out) {
        mm_printf("mm_kstack_alloc: size %#lx (1..%#lx), name %p, out %p\n",
                  (unsigned long)size, (unsigned long)MM_KSTACK_MAX_SIZE, (const void *)name,
                  (void *)out);
        return -MM_EINVAL;
    }
    int slot = slot_take();
    if (slot < 0) {
        mm_printf("mm_kstack_alloc: all %u registry slots in use (stack %s)\n", MM_KSTACK_MAX,
                  name);
        return -MM_ENOMEM;
    }
    struct vmalloc_area a;
    int err = vmalloc_area_create(&kstack_space, "mm_kstack_alloc",
                                  align_up_u64(size, PAGE_SIZE) >> PAGE_SHIFT,
                                  VMALLOC_PLACE_STACK, NULL, PTE_KERNEL_RW,
                                  (unsigned)slot + 1, &a);
    if (err) {
        slot_give_back((unsigned)slot);
        return err;
    }
    struct kstack_slot v = { .cpu = owner_cpu, .block_va = a.block_va.raw,
                             .block_end = a.block_va.raw + a.block_size, .base = a.va.raw,
                             .top = a.va.raw + a.npages * PAGE_SIZE,
                             .gen = slots[slot].gen + 1 };
    for (unsigned i = 0; i + 1 < SLOT_NAME_LEN && name[i]; i++)
        v.name[i] = name[i];
    slot_set((unsigned)slot, &v, 1);
    *out = (struct mm_kstack){ .base = VA(v.base), .top = VA(v.top), .size = v.top - v.base,
                               .slot = (unsigned)slot, .gen = v.gen };
    return 0;
}

/* The live slot *ks names, copied to *cur: true, or false (logged). */
static bool handle_matches(const struct mm_kstack *ks, struct kstack_slot *cur)
{
    bool ok = ks && ks->slot < MM_KSTACK_MAX;
    if (ok) {
        unsigned long flags = mm_spin_lock_irqsave(&reg_lock);
        *cur = slots[ks->slot];
        mm_spin_unlock_irqrestore(&reg_lock, flags);
        ok = cur->top != 0 && cur->base == ks->base.raw && cur->top == ks->top.raw &&
             cur->gen == ks->gen;
    }
    if (!ok)
        mm_printf("mm_kstack_free: %p (base %#lx, slot %u) is not a live kernel stack\n",
                  (const void *)ks, ks ? (unsigned long)ks->base.raw : 0ul, ks ? ks->slot : 0u);
    return ok;
}

int mm_kstack_free(struct mm_kstack *ks)
{
    struct kstack_slot cur;
    if (!handle_matches(ks, &cur))
        return -MM_EINVAL;
    struct vmalloc_area a;
    int err = vmalloc_area_claim(&kstack_space, "mm_kstack_free", VA(cur.block_va), &a);
    if (err)
        return err;
    if (a.user_word != ks->slot + 1 || a.va.raw != cur.base || a.place != VMALLOC_PLACE_STACK) {
        /* Another free of this handle won a race and the block was reused
         * meanwhile: a caller's double free, refused. */
        vmalloc_area_unclaim(&kstack_space, &a);
        mm_printf("mm_kstack_free: slot %u names block %#lx, which now holds another area "
                  "(%#lx, word %u): freed twice?\n", ks->slot, (unsigned long)cur.block_va,
                  (unsigned long)a.va.raw, a.user_word);
        return -MM_EINVAL;
    }
    struct kstack_slot hidden = cur;
    hidden.top = 0;
    slot_set(ks->slot, &hidden, -1);
    err = vmalloc_area_release(&kstack_space, "mm_kstack_free", &a);
    if (err) {
        slot_set(ks->slot, &cur, 1);        /* still live: show it again */
        return err;
    }
    slot_give_back(ks->slot);
    *ks = (struct mm_kstack){ .slot = MM_KSTACK_MAX };
    return 0;
}

enum mm_kstack_where mm_kstack_lookup(virt_addr_t va, struct mm_kstack_info *out)
{
    unsigned n = __atomic_load_n(&high, __ATOMIC_ACQUIRE);
    bool unknown = false;
    for (unsigned i = 0; i < n; i++) {
        struct kstack_slot s;
        if (!slot_read(&slots[i], &s)) {
            unknown = true;
            continue;
        }
        if (s.top == 0 || va.raw < s.block_va || va.raw >= s.block_end)
            continue;
        *out = (struct mm_kstack_info){ .block_va = VA(s.block_va), .base = VA(s.base),
                                        .top = VA(s.top), .block_end = VA(s.block_end),
                                        .cpu = s.cpu };
        for (unsigned k = 0; k < SLOT_NAME_LEN; k++)
            out->name[k] = s.name[k];
        if (va.raw < s.base)
            return MM_KSTACK_GUARD_BELOW;
        return va.raw < s.top ? MM_KSTACK_IN_STACK : MM_KSTACK_GUARD_ABOVE;
    }
    return unknown ? MM_KSTACK_UNKNOWN : MM_KSTACK_NOWHERE;
}

unsigned mm_kstack_count(void)
{
    return __atomic_load_n(&live, __ATOMIC_RELAXED);
}
