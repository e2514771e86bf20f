/*
 * mm/slab_refill.c - the heap's slow paths: refilling and draining the
 * per-CPU arrays through the depot, the slab lists, and the life of a
 * slab (made from a buddy block, given back when idle).
 *
 * Slab lists.  Every slab of a cache is on exactly one of its three lists,
 * chosen by how many objects are on the slab's own free list: none (FULL:
 * all handed out or cached in stacks), all (EMPTY), or some (PARTIAL).
 * Objects are taken from PARTIAL slabs first, so EMPTY ones stay empty
 * and can go back.  c->nfree counts the objects on all free lists, so
 * live = nslabs * nobjs - nfree - depot - per-CPU arrays.
 *
 * A refill moves one batch into a CPU's empty array: the depot's newest
 * objects first (still warm in some cache, copied in one run), then the
 * free list of the slab the CPU owns, then of a slab nobody owns (which
 * it then owns), then a new slab, made without the lock (the buddy call
 * and the constructors run unlocked) and added under it.  Objects taken
 * off a free list are marked OBJ_AWAY and tagged (mm/slab.c, "Double
 * frees"); each slab is relisted once per run.  Ownership keeps the
 * objects that two CPUs recycle on their fast paths in different slabs,
 * so the objects they write stay apart; it costs at most one partly used
 * slab per CPU and cache.
 * Invariant: s->owner == n + 1 iff c->cpu[n]->slab == s, both changed
 * under the lock; a slab that goes back to the buddy first loses its
 * owner (slab_detach_locked), a drained array its slab (slab_disown).
 * A full array gives its oldest batch to the depot in one run, the part
 * that does not fit to the slabs (slab_put_locked: each slab relisted
 * once per run of its objects).
 * Slabs that become empty beyond SLAB_KEEP_EMPTY are unlinked under the
 * lock and given to the buddy after it is dropped.
 *
 * Locking: see mm/slab.c.  Every function here runs with interrupts off
 * when it touches a per-CPU array; *_locked ones expect c->lock.
 */
#include "slab_impl.h"

/* ------------------------------------------------------------- lists */

static void list_push(struct slab_list *l, struct slab *s)
{
    s->prev = NULL;
    s->next = l->head;
    if (l->head != NULL)
        l->head->prev = s;
    l->head = s;
}

static void list_unlink(struct slab_list *l, struct slab *s)
{
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        l->head = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
}

/* Put s on the list its free count asks for. */
static void slab_relist_locked(struct mm_cache *c, struct slab *s)
{
    MM_ASSERT_LOCKED(&c->lock);
    uint32_t want = s->nfree == 0 ? SLAB_ON_FULL
                  : s->nfree == c->nobjs ? SLAB_ON_EMPTY : SLAB_ON_PARTIAL;
    if (s->list == want)
        return;
    list_unlink(&c->lists[s->list], s);
    if (s->list == SLAB_ON_EMPTY)
        c->nempty--;
    if (want == SLAB_ON_EMPTY)
        c->nempty++;
    s->list = want;
    list_push(&c->lists[want], s);
}

/* ------------------------------------------------------ slab life cycle */

/* A new slab, all objects free (constructed, debug-initialised), on no
 * list; NULL when the buddy has no block.  Called without c->lock. */
static struct slab *slab_new(struct mm_cache *c)
{
    phys_addr_t pa;
    if (buddy_alloc(heap.buddy, UINT64_C(1) << c->order, &pa) != 0)
        return NULL;
    struct slab *s = pa_to_ptr(pa);
    s->cache = c;
    s->first_off = c->first_off;
    s->inv = c->inv;
    s->shift = (uint8_t)c->shift;
    s->nobjs = c->nobjs;
    s->tag_off = c->link_off;
    s->kmalloc = (c->flags & CACHE_KMALLOC) != 0;
    s->prev = s->next = NULL;
    s->list = SLAB_ON_EMPTY;
    s->owner = 0;
    s->nfree = c->nobjs;
    void *head = NULL;
    for (uint32_t i = c->nobjs; i-- > 0;) {
        uint8_t *obj = obj_at(c, s, i);
        s->state[i] = OBJ_FREE;
        if (c->flags & MM_CACHE_DEBUG)
            slab_debug_init_object(c, obj);
        if (c->ctor != NULL)
            c->ctor(obj);
        *obj_link(c, obj) = head;
        head = obj;
    }
    s->free = head;
    s->magic = SLAB_MAGIC ^ (uint64_t)(uintptr_t)s;
    return s;
}

static void slab_add_locked(struct mm_cache *c, struct slab *s)
{
    MM_ASSERT_LOCKED(&c->lock);
    list_push(&c->lists[SLAB_ON_EMPTY], s);
    c->nslabs++;
    c->nempty++;
    c->nfree += c->nobjs;
}

/* Unlink an empty slab for release (its magic is cleared at once, so no
 * look-up finds it any more); it goes on *out through its next link. */
static void slab_detach_locked(struct mm_cache *c, struct slab *s, struct slab **out)
{
    MM_ASSERT_LOCKED(&c->lock);
    MM_BUG_ON(s->nfree != c->nobjs);
    if (s->owner != 0) {
        c->cpu[s->owner - 1]->slab = NULL;
        s->owner = 0;
    }
    list_unlink(&c->lists[SLAB_ON_EMPTY], s);
    c->nslabs--;
    c->nempty--;
    c->nfree -= c->nobjs;
    s->magic = 0;
    s->next = *out;
    *out = s;
}

/* Give the detached slabs to the buddy; returns the frames. */
static uint64_t slab_release(struct mm_cache *c, struct slab *list)
{
    uint64_t frames = 0;
    while (list != NULL) {
        struct slab *s = list;
        list = s->next;
        int err = buddy_free(heap.buddy, direct_ptr_to_pa(s), UINT64_C(1) << c->order);
        if (err != 0)
            mm_panic("slab_release: cache '%s' slab %p refused by the buddy (%d)", c->name,
                     (void *)s, err);
        frames += UINT64_C(1) << c->order;
    }
    return frames;
}

/* ------------------------------------------------- objects and free lists */

/* Up to n objects off the free list of s into out[], each marked away
 * and tagged (it goes to a stack); s is relisted once.  Returns how many. */
static uint32_t slab_pop_locked(struct mm_cache *c, struct slab *s, void **out, uint32_t n)
{
    MM_ASSERT_LOCKED(&c->lock);
    uint32_t k = 0;
    for (; k < n && s->nfree != 0; k++) {
        void *obj = s->free;
        uint32_t idx = slab_index(s, obj);
        MM_BUG_ON(idx >= s->nobjs || obj_state(s, idx) != OBJ_FREE);
        s->free = *obj_link(c, obj);
        obj_set_state(s, idx, OBJ_AWAY);
        *obj_tag_word(s, obj) = free_tag(obj);
        out[k] = obj;
        s->nfree--;
    }
    c->nfree -= k;
    slab_relist_locked(c, s);
    return k;
}

/* One object off the free lists (PARTIAL first), or NULL. */
static void *slab_take_locked(struct mm_cache *c)
{
    struct slab *s = c->lists[SLAB_ON_PARTIAL].head;
    if (s == NULL)
        s = c->lists[SLAB_ON_EMPTY].head;
    void *obj = NULL;
    if (s != NULL)
        slab_pop_locked(c, s, &obj, 1);
    return obj;
}

/* The first slab of list l that nobody owns and has free objects.  At
 * most one slab per CPU is owned, so looking at MM_MAX_CPUS + 1 of them
 * finds one if there is one. */
static struct slab *slab_unowned_locked(struct slab_list *l)
{
    unsigned n = 0;
    for (struct slab *s = l->head; s != NULL && n <= MM_MAX_CPUS; s = s->next, n++)
        if (s->owner == 0 && s->nfree != 0)
            return s;
    return NULL;
}

/* The slab CPU cpu refills from, taking one nobody owns if its own is
 * used up; NULL if none is free. */
static struct slab *slab_owned_locked(struct mm_cache *c, struct slab_cpu *pc, unsigned cpu)
{
    MM_ASSERT_LOCKED(&c->lock);
    struct slab *s = pc->slab;
    if (s != NULL && s->nfree != 0)
        return s;
    if (s != NULL)
        s->owner = 0;
    pc->slab = NULL;
    s = slab_unowned_locked(&c->lists[SLAB_ON_PARTIAL]);
    if (s == NULL)
        s = slab_unowned_locked(&c->lists[SLAB_ON_EMPTY]);
    if (s != NULL) {
        s->owner = (uint16_t)(cpu + 1);
        pc->slab = s;
    }
    return s;
}

/* Let go of the slab CPU cpu owns (its array is being drained). */
static void slab_disown(struct mm_cache *c, struct slab_cpu *pc)
{
    unsigned long flags = mm_spin_lock_irqsave(&c->lock);
    if (pc->slab != NULL)
        pc->slab->owner = 0;
    pc->slab = NULL;
    mm_spin_unlock_irqrestore(&c->lock, flags);
}

/* Relist s after objects came back to it; an empty slab beyond the ones
 * kept is detached onto *release. */
static void slab_settle_locked(struct mm_cache *c, struct slab *s, struct slab **release)
{
    MM_ASSERT_LOCKED(&c->lock);
    slab_relist_locked(c, s);
    if (s->list == SLAB_ON_EMPTY && c->nempty > SLAB_KEEP_EMPTY)
        slab_detach_locked(c, s, release);
}

/*
 * objs[0 .. n) (free, from stacks) back on their slabs' free lists; each
 * slab is relisted once per run of its objects.  An object found already
 * on its free list was pushed twice (a double free the tag missed
 * because the caller wrote into the freed object): it is dropped with a
 * log line, which also makes the count of live objects right again.
 */
static void slab_put_locked(struct mm_cache *c, void *const *objs, uint32_t n,
                            struct slab **release)
{
    MM_ASSERT_LOCKED(&c->lock);
    struct slab *cur = NULL;
    for (uint32_t i = 0; i < n; i++) {
        void *obj = objs[i];
        struct slab *s = slab_of(c, obj);
        if (s->magic != (SLAB_MAGIC ^ (uint64_t)(uintptr_t)s) || s->cache != c) {
            /* The second copy of an object freed twice (written after the
             * first free), whose slab went back to the buddy meanwhile:
             * caller misuse, not a broken invariant. */
            mm_printf("slab_put: %p of cache '%s': its slab was given back already "
                      "(freed twice, written after the first free); dropped\n", obj, c->name);
            continue;
        }
        if (s != cur) {
            if (cur != NULL)
                slab_settle_locked(c, cur, release);
            cur = s;
        }
        uint32_t idx = slab_index(s, obj);
        MM_BUG_ON(idx >= s->nobjs);
        if (obj_state(s, idx) != OBJ_AWAY) {
            mm_printf("slab_put: %p of cache '%s' was freed twice (written after the "
                      "first free); dropped\n", obj, c->name);
            continue;
        }
        MM_BUG_ON(s->nfree >= c->nobjs);
        obj_set_state(s, idx, OBJ_FREE);
        *obj_link(c, obj) = s->free;
        s->free = obj;
        s->nfree++;
        c->nfree++;
    }
    if (cur != NULL)
        slab_settle_locked(c, cur, release);
}

/* For the internal caches (no arrays): one object, locking each time. */
static void *slab_take_one(struct mm_cache *c)
{
    struct slab *fresh = NULL;
    for (;;) {
        unsigned long flags = mm_spin_lock_irqsave(&c->lock);
        if (fresh != NULL)
            slab_add_locked(c, fresh);
        void *obj = slab_take_locked(c);
        mm_spin_unlock_irqrestore(&c->lock, flags);
        if (obj != NULL)
            return obj;
        if ((fresh = slab_new(c)) == NULL)
            return NULL;
    }
}

static void slab_put_one(struct mm_cache *c, void *obj)
{
    struct slab *release = NULL;
    unsigned long flags = mm_spin_lock_irqsave(&c->lock);
    slab_put_locked(c, &obj, 1, &release);
    mm_spin_unlock_irqrestore(&c->lock, flags);
    slab_release(c, release);
}

/* ------------------------------------------------------ per-CPU arrays */

/* A new empty array for a cache, or NULL. */
static struct slab_cpu *slab_cpu_new(struct mm_cache *c)
{
    struct slab_cpu *pc = mm_cache_alloc(&heap.array_cache);
    if (pc != NULL) {
        pc->count = 0;
        pc->limit = 2 * c->batch;
        pc->slab = NULL;
    }
    return pc;
}

/* Fill the empty array pc of CPU cpu with up to one batch: a whole run
 * of the depot, then runs off slab free lists.  Without a new slab from
 * the buddy, any slab will do.  False when nothing is left and the buddy
 * has no block. */
static bool slab_refill(struct mm_cache *c, struct slab_cpu *pc, unsigned cpu)
{
    struct slab *fresh = NULL;
    bool any = false;
    for (;;) {
        unsigned long flags = mm_spin_lock_irqsave(&c->lock);
        if (fresh != NULL)
            slab_add_locked(c, fresh);
        uint32_t n = c->batch < c->depot_n ? c->batch : c->depot_n;
        c->depot_n -= n;
        for (uint32_t i = 0; i < n; i++)
            pc->objs[pc->count++] = c->depot[c->depot_n + i];
        struct slab *s;
        while (pc->count < c->batch && (s = slab_owned_locked(c, pc, cpu)) != NULL)
            pc->count += slab_pop_locked(c, s, pc->objs + pc->count, c->batch - pc->count);
        while (any && pc->count < c->batch &&
               ((s = c->lists[SLAB_ON_PARTIAL].head) != NULL ||
                (s = c->lists[SLAB_ON_EMPTY].head) != NULL))
            pc->count += slab_pop_locked(c, s, pc->objs + pc->count, c->batch - pc->count);
        mm_spin_unlock_irqrestore(&c->lock, flags);
        if (pc->count != 0 || any)
            return pc->count != 0;
        fresh = slab_new(c);
        any = fresh == NULL;
    }
}

/* Move pc->objs[0 .. n) to the depot as one run, the part that does not
 * fit to the slabs; the rest of the array slides down.  Returns the
 * frames given back. */
static uint64_t slab_flush(struct mm_cache *c, struct slab_cpu *pc, uint32_t n)
{
    struct slab *release = NULL;
    unsigned long flags = mm_spin_lock_irqsave(&c->lock);
    uint32_t room = c->depot_cap - c->depot_n, k = n < room ? n : room;
    for (uint32_t i = 0; i < k; i++)
        c->depot[c->depot_n++] = pc->objs[i];
    slab_put_locked(c, pc->objs + k, n - k, &release);
    mm_spin_unlock_irqrestore(&c->lock, flags);
    for (uint32_t i = n; i < pc->count; i++)
        pc->objs[i - n] = pc->objs[i];
    pc->count -= n;
    return slab_release(c, release);
}

void *slab_alloc_slow(struct mm_cache *c, unsigned cpu)
{
    if (!(c->flags & CACHE_PERCPU))
        return slab_take_one(c);
    struct slab_cpu *pc = c->cpu[cpu];
    if (pc == &slab_cpu_none) {
        if ((pc = slab_cpu_new(c)) == NULL)
            return slab_take_one(c);
        c->cpu[cpu] = pc;
    }
    if (!slab_refill(c, pc, cpu))
        return NULL;
    return pc->objs[--pc->count];
}

void slab_free_slow(struct mm_cache *c, unsigned cpu, void *obj)
{
    if (!(c->flags & CACHE_PERCPU)) {
        slab_put_one(c, obj);
        return;
    }
    struct slab_cpu *pc = c->cpu[cpu];
    if (pc == &slab_cpu_none) {
        if ((pc = slab_cpu_new(c)) == NULL) {
            slab_put_one(c, obj);
            return;
        }
        c->cpu[cpu] = pc;
    } else {
        slab_flush(c, pc, c->batch);
    }
    pc->objs[pc->count++] = obj;
}

/*
 * Empty CPU cpu's array of c into the depot and slabs and give the array
 * back (the CPU gets a new one when it next needs it).  The caller runs
 * on cpu with interrupts off, or vouches that cpu is quiet.  Returns the
 * frames of c given back (slabs that became empty beyond the ones kept).
 */
uint64_t slab_cpu_drain(struct mm_cache *c, unsigned cpu)
{
    struct slab_cpu *pc = c->cpu[cpu];
    if (pc == &slab_cpu_none)
        return 0;
    uint64_t frames = slab_flush(c, pc, pc->count);
    slab_disown(c, pc);
    c->cpu[cpu] = &slab_cpu_none;
    if (mm_cache_free(&heap.array_cache, pc) != 0)
        mm_panic("slab_cpu_drain: array %p of cache '%s' not freed", (void *)pc, c->name);
    return frames;
}

/* Move the depot back to the slabs and give back every empty slab.
 * Returns the frames given back. */
uint64_t slab_release_idle(struct mm_cache *c)
{
    struct slab *release = NULL;
    unsigned long flags = mm_spin_lock_irqsave(&c->lock);
    slab_put_locked(c, c->depot, c->depot_n, &release);
    c->depot_n = 0;
    while (c->nempty > 0)
        slab_detach_locked(c, c->lists[SLAB_ON_EMPTY].head, &release);
    mm_spin_unlock_irqrestore(&c->lock, flags);
    return slab_release(c, release);
}

/* Objects handed out: exact when no other CPU is using c. */
uint64_t slab_live_objects(struct mm_cache *c)
{
    unsigned long flags = mm_spin_lock_irqsave(&c->lock);
    uint64_t out = c->nslabs * c->nobjs - c->nfree - c->depot_n;
    mm_spin_unlock_irqrestore(&c->lock, flags);
    for (unsigned cpu = 0; cpu < MM_MAX_CPUS; cpu++)
        out -= __atomic_load_n(&c->cpu[cpu]->count, __ATOMIC_RELAXED);
    return out;
}
