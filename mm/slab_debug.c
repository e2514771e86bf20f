/*
 * mm/slab_debug.c - the heap's debug mode, statistics and slabinfo dump.
 *
 * Debug layout of one object (stride bytes, see cache_layout in
 * mm/slab.c): [0, size) the object, [size, link_off) the red zone, filled
 * with SLAB_RED, [link_off, stride) the free-list link word, so the link
 * never lands in bytes that are checked.  A free object's bytes hold
 * SLAB_POISON, unless the cache has a constructor (its free objects keep
 * their constructed state, so only the red zone is checked).
 * Checks: on free the red zone; on alloc the red zone and the poison (a
 * write after free).  The first byte that differs is reported in one log
 * line and kept as the last report.  The link word doubles as the free
 * tag (mm/slab.c, "Double frees"); past the red zone, it is checked
 * exactly on every debug alloc.
 *
 * Statistics read a cache's counters under its lock and the per-CPU
 * counts without one: a snapshot, exact when the heap is quiet.
 *
 * Locking: report_lock protects the last report; the registry is walked
 * under heap.lock.
 */
#include "slab_impl.h"

static mm_spinlock_t report_lock = MM_SPINLOCK_INIT;
static struct mm_slab_report last_report;

static void fill(uint8_t *p, uint64_t n, uint8_t v)
{
    for (uint64_t i = 0; i < n; i++)
        p[i] = v;
}

/* Red zone and, for caches without a constructor, poison. */
void slab_debug_init_object(const struct mm_cache *c, void *obj)
{
    if (c->ctor == NULL)
        fill(obj, c->size, SLAB_POISON);
    fill((uint8_t *)obj + c->size, c->link_off - c->size, SLAB_RED);
}

void slab_debug_poison(const struct mm_cache *c, void *obj)
{
    if (c->ctor == NULL)
        fill(obj, c->size, SLAB_POISON);
}

static void report(const struct mm_cache *c, const uint8_t *obj, uint64_t off,
                   uint8_t expected, const char *fn)
{
    uint8_t found = obj[off];
    unsigned long flags = mm_spin_lock_irqsave(&report_lock);
    unsigned i = 0;
    for (; c->name[i] != '\0'; i++)
        last_report.cache[i] = c->name[i];
    last_report.cache[i] = '\0';
    last_report.object = (uintptr_t)obj;
    last_report.addr = (uintptr_t)obj + off;
    last_report.offset = off;
    last_report.expected = expected;
    last_report.found = found;
    last_report.count++;
    mm_spin_unlock_irqrestore(&report_lock, flags);
    const char *what = off < c->size ? "poison (written after free)" : "red-zone";
    mm_printf("%s: cache '%s' object %p: %s byte %p (offset %lu) is %#x, expected %#x\n",
              fn, c->name, (const void *)obj, what, (const void *)(obj + off),
              (unsigned long)off, found, expected);
}

/* 0, or -MM_EFAULT after reporting the first damaged byte of obj. */
int slab_debug_check(const struct mm_cache *c, const void *obj, bool poisoned,
                     const char *fn)
{
    const uint8_t *p = obj;
    if (poisoned)
        for (uint64_t i = 0; i < c->size; i++)
            if (p[i] != SLAB_POISON) {
                report(c, p, i, SLAB_POISON, fn);
                return -MM_EFAULT;
            }
    for (uint64_t i = c->size; i < c->link_off; i++)
        if (p[i] != SLAB_RED) {
            report(c, p, i, SLAB_RED, fn);
            return -MM_EFAULT;
        }
    return 0;
}

/*
 * mm_cache_alloc of a debug cache: an object from this CPU's array (or a
 * refill) whose red zone and poison are checked (damage is reported and
 * repaired), then its tag word, which lies past the red zone where only
 * the heap writes: a free object without its tag was handed out twice, a
 * broken invariant.  The tag is cleared.  NULL when out of memory.
 */
void *slab_debug_alloc(struct mm_cache *c)
{
    unsigned long flags = mm_platform_irq_save();
    unsigned cpu = mm_platform_cpu_id();
    struct slab_cpu *pc = c->cpu[cpu];
    void *obj = pc->count != 0 ? pc->objs[--pc->count] : slab_alloc_slow(c, cpu);
    mm_platform_irq_restore(flags);
    if (obj == NULL)
        return NULL;
    uint64_t *tagp = (uint64_t *)(void *)obj_link(c, obj);
    if (slab_debug_check(c, obj, c->ctor == NULL, "mm_cache_alloc") != 0)
        slab_debug_init_object(c, obj);
    else if (*tagp != free_tag(obj))
        mm_panic("mm_cache_alloc: cache '%s' object %p handed out twice (tag word %#lx)",
                 c->name, obj, (unsigned long)*tagp);
    *tagp = 0;
    return obj;
}

bool mm_slab_last_report(struct mm_slab_report *r)
{
    unsigned long flags = mm_spin_lock_irqsave(&report_lock);
    *r = last_report;
    mm_spin_unlock_irqrestore(&report_lock, flags);
    return r->count != 0;
}

#ifdef MM_HOST
void slab_debug_reset(void)
{
    last_report = (struct mm_slab_report){ .count = 0 };
}
#endif

/* ----------------------------------------------------------- statistics */

static void cache_stats(struct mm_cache *c, struct mm_cache_stats *st)
{
    unsigned i = 0;
    for (; c->name[i] != '\0'; i++)
        st->name[i] = c->name[i];
    st->name[i] = '\0';
    st->object_size = c->size;
    st->stride = c->stride;
    st->align = c->align;
    st->objs_per_slab = c->nobjs;
    st->slab_bytes = PAGE_SIZE << c->order;
    unsigned long flags = mm_spin_lock_irqsave(&c->lock);
    st->slabs = c->nslabs;
    st->empty_slabs = c->nempty;
    st->cached = c->depot_n;
    mm_spin_unlock_irqrestore(&c->lock, flags);
    for (unsigned cpu = 0; cpu < MM_MAX_CPUS; cpu++)
        st->cached += __atomic_load_n(&c->cpu[cpu]->count, __ATOMIC_RELAXED);
    st->live = slab_live_objects(c);
    st->bytes_used = st->slabs * st->slab_bytes;
    /* A snapshot taken while other CPUs move objects can count more live
     * bytes than the slabs hold: no negative waste. */
    uint64_t live_bytes = st->live * st->object_size;
    st->waste = st->bytes_used > live_bytes ? st->bytes_used - live_bytes : 0;
}

int mm_cache_stats(struct mm_cache *c, struct mm_cache_stats *st)
{
    if (c == NULL || c->magic != CACHE_MAGIC || st == NULL) {
        mm_printf("mm_cache_stats: bad call (cache %p, out %p)\n", (void *)c, (void *)st);
        return -MM_EINVAL;
    }
    cache_stats(c, st);
    return 0;
}

static void dump_line(struct mm_cache *c)
{
    struct mm_cache_stats st;
    char used[24], waste[24];
    cache_stats(c, &st);
    mm_format_size(used, sizeof used, st.bytes_used, true);
    mm_format_size(waste, sizeof waste, st.waste, true);
    mm_printf("slab: %-14s %5lu B %8lu live %5lu slabs %8s used %8s waste\n", st.name,
              (unsigned long)st.object_size, (unsigned long)st.live,
              (unsigned long)st.slabs, used, waste);
}

void mm_slabinfo_dump(void)
{
    if (!heap.ready) {
        mm_printf("slab: heap not set up\n");
        return;
    }
    unsigned long flags = mm_spin_lock_irqsave(&heap.lock);
    for (struct mm_cache *c = heap.caches; c != NULL; c = c->next)
        dump_line(c);
    mm_spin_unlock_irqrestore(&heap.lock, flags);
    dump_line(&heap.cache_cache);
    dump_line(&heap.array_cache);
}

static void usage_add(struct mm_heap_usage *u, struct mm_cache *c)
{
    struct mm_cache_stats st;
    cache_stats(c, &st);
    u->slab_npages += st.bytes_used / PAGE_SIZE;
    if (!(c->flags & CACHE_STATIC))
        u->live_objects += st.live;
}

void mm_heap_usage(struct mm_heap_usage *u)
{
    *u = (struct mm_heap_usage){ .caches = 0 };
    if (!heap.ready)
        return;
    unsigned long flags = mm_spin_lock_irqsave(&heap.lock);
    for (struct mm_cache *c = heap.caches; c != NULL; c = c->next) {
        u->caches++;
        usage_add(u, c);
    }
    mm_spin_unlock_irqrestore(&heap.lock, flags);
    usage_add(u, &heap.cache_cache);
    usage_add(u, &heap.array_cache);
    kmalloc_big_usage(&u->big_npages, &u->big_allocs, &u->meta_npages);
}
