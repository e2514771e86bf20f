/*
 * tlb_model.c - the simulated TLBs and paging-structure caches of the host
 * tests (interface and checks: tlb_model.h).
 *
 * Data.  One struct model_cpu per simulated CPU: its CR3, a TLB array and
 * a PSC array, each searched linearly (they are small) and refilled
 * round-robin.  A TLB entry stores the page's base va (aligned to its
 * size), the base pa, the leaf's level and the effective flags of the
 * walk in PTE bit positions (PTE_WRITE, PTE_USER, PTE_NX, PTE_GLOBAL,
 * PTE_PWT, PTE_PCD, and PTE_HUGE standing for the PAT bit).  A PSC entry
 * stores the level of the table it names, the base of the va prefix that
 * table covers and the table's frame.  A byte per simulated frame says
 * whether the frame is free (reported by tlb_model_frame_free and not
 * handed out again since).
 *
 * Walks.  hw_walk is the hardware walk: it starts from the longest PSC
 * match (or CR3), reads the tables through pa_to_ptr (frames outside the
 * simulated memory end the walk) and caches what it read.  ref_walk is
 * the checker's walk: from CR3, no caches, nothing filled.  An entry is
 * stale when ref_walk does not give at least what the entry gives.
 *
 * Locking: none; the model is used by single-threaded tests only.
 */
#include "tlb_model.h"
#include "harness.h"

#include <stdarg.h>
#include <mm/frame.h>
#include <mm/paging.h>
#include <mm/platform.h>

/* Flags a TLB entry keeps; PTE_HUGE stands for the leaf's PAT bit. */
#define TLB_FLAGS (PTE_WRITE | PTE_USER | PTE_NX | PTE_GLOBAL | PTE_PWT | PTE_PCD | PTE_HUGE)
#define PAT_4K    (UINT64_C(1) << 7)
#define PAT_LARGE (UINT64_C(1) << 12)

struct tlb_leaf {
    uint64_t va, pa, flags;
    unsigned level;             /* 0: empty slot */
};

struct psc_entry {
    uint64_t va, table_pa;
    uint64_t flags;             /* PTE_WRITE, PTE_USER, PTE_NX folded above */
    unsigned level;             /* level of the table named; 0: empty */
};

struct model_cpu {
    phys_addr_t cr3;
    struct tlb_leaf tlb[TLB_MODEL_TLB_ENTRIES];
    struct psc_entry psc[TLB_MODEL_PSC_ENTRIES];
    unsigned tlb_next, psc_next;    /* round-robin victims */
};

static bool active;
static unsigned ncpus;
static struct model_cpu cpus[TLB_MODEL_MAX_CPUS];
static uint8_t *frame_free;         /* 1 per frame while free */
static uint64_t nframes;

unsigned long tlb_model_violations;
char tlb_model_last_violation[256];
void (*tlb_model_violation_hook)(const char *msg);

/* Printed violations per tlb_model_init, so that one bug cannot flood. */
#define MAX_PRINTED 20
static unsigned printed;

static void violation(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void violation(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tlb_model_last_violation, sizeof tlb_model_last_violation, fmt, ap);
    va_end(ap);
    tlb_model_violations++;
    if (tlb_model_violation_hook) {
        tlb_model_violation_hook(tlb_model_last_violation);
        return;
    }
    if (printed++ < MAX_PRINTED)
        fprintf(stderr, "  TLB model: %s\n", tlb_model_last_violation);
    harness_failed++;
}

/* ------------------------------------------------------------ frames */

static bool frame_is_free(uint64_t pa)
{
    uint64_t pfn = pa / PAGE_SIZE;
    return pfn < nframes && frame_free[pfn];
}

static void frame_set_free(uint64_t pa, uint8_t v)
{
    uint64_t pfn = pa / PAGE_SIZE;
    if (pfn < nframes)
        frame_free[pfn] = v;
}

/* The table words of frame pa, or NULL outside the simulated memory. */
static const uint64_t *table_at(uint64_t pa)
{
    if (pa >= sim_mem_size() || sim_mem_size() - pa < PAGE_SIZE)
        return NULL;
    return (const uint64_t *)pa_to_ptr(PA(pa));
}

/* ---------------------------------------------------------- lifetime */

void tlb_model_init(unsigned n, phys_addr_t cr3)
{
    if (n == 0 || n > TLB_MODEL_MAX_CPUS) {
        fprintf(stderr, "tlb_model_init: %u CPUs (1..%d)\n", n, TLB_MODEL_MAX_CPUS);
        exit(2);
    }
    memset(cpus, 0, sizeof cpus);
    for (unsigned c = 0; c < n; c++)
        cpus[c].cr3 = cr3;
    free(frame_free);
    nframes = sim_mem_size() / PAGE_SIZE;
    frame_free = calloc(nframes ? nframes : 1, 1);
    ncpus = n;
    printed = 0;
    active = true;
}

void tlb_model_fini(void)
{
    active = false;
    memset(cpus, 0, sizeof cpus);
    free(frame_free);
    frame_free = NULL;
    nframes = 0;
    ncpus = 0;
}

bool tlb_model_active(void) { return active; }
unsigned tlb_model_ncpus(void) { return ncpus; }

static struct model_cpu *cpu_of(unsigned cpu)
{
    return active && cpu < ncpus ? &cpus[cpu] : NULL;
}

phys_addr_t tlb_model_cr3(unsigned cpu)
{
    struct model_cpu *c = cpu_of(cpu);
    return c ? c->cr3 : PA(0);
}

/* ------------------------------------------------------------ caches */

static uint64_t level_base(uint64_t va, unsigned level)
{
    return va & ~(pt_level_size(level) - 1);
}

/* Does [base, base + size) meet [lo, lo + len)?  len 0: everything. */
static bool meets(uint64_t base, uint64_t size, uint64_t lo, uint64_t len)
{
    if (len == 0)
        return true;
    return base - lo < len || lo - base < size;
}

static struct tlb_leaf *tlb_find(struct model_cpu *c, uint64_t va)
{
    for (unsigned i = 0; i < TLB_MODEL_TLB_ENTRIES; i++) {
        struct tlb_leaf *e = &c->tlb[i];
        if (e->level && level_base(va, e->level) == e->va)
            return e;
    }
    return NULL;
}

static void tlb_insert(struct model_cpu *c, const struct tlb_leaf *leaf)
{
    struct tlb_leaf *slot = tlb_find(c, leaf->va);
    if (!slot) {
        slot = &c->tlb[c->tlb_next];
        c->tlb_next = (c->tlb_next + 1) % TLB_MODEL_TLB_ENTRIES;
    }
    *slot = *leaf;
}

/* The PSC entry for the level-`level` table above va, if cached. */
static struct psc_entry *psc_find(struct model_cpu *c, uint64_t va, unsigned level)
{
    uint64_t base = level_base(va, level + 1);
    for (unsigned i = 0; i < TLB_MODEL_PSC_ENTRIES; i++) {
        struct psc_entry *p = &c->psc[i];
        if (p->level == level && p->va == base)
            return p;
    }
    return NULL;
}

static void psc_insert(struct model_cpu *c, uint64_t va, unsigned level, uint64_t table_pa,
                       uint64_t flags)
{
    struct psc_entry *slot = psc_find(c, va, level);
    if (!slot) {
        slot = &c->psc[c->psc_next];
        c->psc_next = (c->psc_next + 1) % TLB_MODEL_PSC_ENTRIES;
    }
    *slot = (struct psc_entry){ level_base(va, level + 1), table_pa, flags, level };
}

/* Drop cpu's entries meeting [va, va + len) (len 0: all); globals only
 * with `globals`; PSC entries only with `psc`. */
static void drop(struct model_cpu *c, uint64_t va, uint64_t len, bool globals, bool psc)
{
    for (unsigned i = 0; i < TLB_MODEL_TLB_ENTRIES; i++) {
        struct tlb_leaf *e = &c->tlb[i];
        if (e->level && (globals || !(e->flags & PTE_GLOBAL)) &&
            meets(e->va, pt_level_size(e->level), va, len))
            e->level = 0;
    }
    for (unsigned i = 0; psc && i < TLB_MODEL_PSC_ENTRIES; i++) {
        struct psc_entry *p = &c->psc[i];
        if (p->level && meets(p->va, pt_level_size(p->level + 1), va, len))
            p->level = 0;
    }
}

void tlb_model_invlpg(unsigned cpu, virt_addr_t va)
{
    struct model_cpu *c = cpu_of(cpu);
    if (c)
        drop(c, va.raw & ~(PAGE_SIZE - 1), PAGE_SIZE, true, true);
}

void tlb_model_load_cr3(unsigned cpu, phys_addr_t cr3)
{
    struct model_cpu *c = cpu_of(cpu);
    if (!c)
        return;
    c->cr3 = cr3;
    drop(c, 0, 0, false, true);
}

void tlb_model_flush_all(unsigned cpu)
{
    struct model_cpu *c = cpu_of(cpu);
    if (c)
        drop(c, 0, 0, true, true);
}

unsigned tlb_model_entries(enum tlb_model_cache cache, unsigned cpu)
{
    struct model_cpu *c = cpu_of(cpu);
    bool psc = cache == TLB_MODEL_PSC;
    unsigned n = 0, size = psc ? TLB_MODEL_PSC_ENTRIES : TLB_MODEL_TLB_ENTRIES;
    for (unsigned i = 0; c && i < size; i++)
        n += (psc ? c->psc[i].level : c->tlb[i].level) != 0;
    return n;
}

bool tlb_model_lookup(unsigned cpu, virt_addr_t va, phys_addr_t *pa_out)
{
    struct model_cpu *c = cpu_of(cpu);
    struct tlb_leaf *e = c ? tlb_find(c, va.raw) : NULL;
    if (e && pa_out)
        *pa_out = PA(e->pa + (va.raw - e->va));
    return e != NULL;
}

/* ------------------------------------------------------------- walks */

/* A finished walk: the leaf (level 0 if none) or the level that was not
 * present, or freed_pa (non-zero) for a walk stopped by a freed table. */
struct walk {
    struct tlb_leaf leaf;
    unsigned missing_level;
    uint64_t freed_pa;
};

/* Fold entry e of a level-`level` table into the effective flags. */
static uint64_t fold_flags(uint64_t acc, uint64_t e, unsigned level, bool leaf)
{
    acc &= e | ~(PTE_WRITE | PTE_USER);
    acc |= e & PTE_NX;
    if (leaf) {
        acc |= e & (PTE_GLOBAL | PTE_PWT | PTE_PCD);
        if (e & (level == PT_LEVEL_PT ? PAT_4K : PAT_LARGE))
            acc |= PTE_HUGE;
    }
    return acc;
}

/*
 * Walk va from table `table_pa` at `level` with flags `acc` so far.  With
 * cpu c (the hardware walk) each table entry read is cached in c's PSC
 * and every table is checked against the freed frames.
 */
static struct walk walk_from(struct model_cpu *c, uint64_t va, uint64_t table_pa,
                             unsigned level, uint64_t acc)
{
    struct walk w = { .leaf = { 0 } };
    for (;; level--) {
        if (c && frame_is_free(table_pa)) {
            w.freed_pa = table_pa;
            return w;
        }
        const uint64_t *t = table_at(table_pa);
        uint64_t e = t ? t[pt_index(VA(va), level)] : 0;
        if (!(e & PTE_PRESENT)) {
            w.missing_level = level;
            return w;
        }
        bool leaf = level == PT_LEVEL_PT || (level < PT_LEVEL_PML4 && (e & PTE_HUGE));
        acc = fold_flags(acc, e, level, leaf);
        if (leaf) {
            uint64_t size = pt_level_size(level);
            w.leaf = (struct tlb_leaf){ level_base(va, level),
                                        e & PTE_ADDR_MASK & ~(size - 1), acc, level };
            return w;
        }
        table_pa = e & PTE_ADDR_MASK;
        if (c)
            psc_insert(c, va, level - 1, table_pa, acc);
    }
}

/* The hardware walk on c: from the longest PSC match, caching the leaf.
 * A walk that meets a freed table is reported as (c). */
static struct walk hw_walk(struct model_cpu *c, uint64_t va)
{
    struct walk w;
    struct psc_entry *p = NULL;
    for (unsigned level = PT_LEVEL_PT; !p && level < PT_LEVEL_PML4; level++)
        p = psc_find(c, va, level);
    if (p)
        w = walk_from(c, va, p->table_pa, p->level, p->flags);
    else
        w = walk_from(c, va, c->cr3.raw, PT_LEVEL_PML4, PTE_WRITE | PTE_USER);
    if (w.leaf.level)
        tlb_insert(c, &w.leaf);
    if (w.freed_pa)
        violation("cpu %u walked va %#lx through a stale paging-structure entry: "
                  "table frame %#lx is free", (unsigned)(c - cpus), (unsigned long)va,
                  (unsigned long)w.freed_pa);
    return w;
}

/* The checker's walk of cpu c's current tables. */
static struct walk ref_walk(const struct model_cpu *c, uint64_t va)
{
    return walk_from(NULL, va, c->cr3.raw, PT_LEVEL_PML4, PTE_WRITE | PTE_USER);
}

/* ------------------------------------------------------------ access */

static enum tlb_model_result permission(const struct tlb_leaf *e, unsigned how)
{
    if ((how & TLB_ACCESS_USER) && !(e->flags & PTE_USER))
        return TLB_FAULT_USER;
    if ((how & TLB_ACCESS_WRITE) && !(e->flags & PTE_WRITE))
        return TLB_FAULT_WRITE;
    if ((how & TLB_ACCESS_EXEC) && (e->flags & PTE_NX))
        return TLB_FAULT_NX;
    return TLB_OK;
}

/* The frame an access to va through leaf e reaches, if it is free: (c). */
static bool reaches_freed(unsigned cpu, const struct tlb_leaf *e, uint64_t va, bool cached)
{
    uint64_t pa = e->pa + ((va - e->va) & ~(PAGE_SIZE - 1));
    if (!frame_is_free(pa))
        return false;
    violation("cpu %u accessed va %#lx through a %s TLB entry: frame %#lx is free", cpu,
              (unsigned long)va, cached ? "cached" : "new", (unsigned long)pa);
    return true;
}

enum tlb_model_result tlb_model_access(unsigned cpu, virt_addr_t va, unsigned how)
{
    struct model_cpu *c = cpu_of(cpu);
    if (!c)
        return TLB_FAULT_NOT_PRESENT;
    struct tlb_leaf *e = tlb_find(c, va.raw);
    if (e && permission(e, how) == TLB_OK)
        return reaches_freed(cpu, e, va.raw, true) ? TLB_FAULT_FREED : TLB_OK;
    if (e)
        e->level = 0;           /* a fault drops the entry; walk afresh */
    struct walk w = hw_walk(c, va.raw);
    if (w.freed_pa)
        return TLB_FAULT_FREED;
    if (!w.leaf.level)
        return TLB_FAULT_NOT_PRESENT;
    enum tlb_model_result r = permission(&w.leaf, how);
    if (r == TLB_OK && reaches_freed(cpu, &w.leaf, va.raw, false))
        return TLB_FAULT_FREED;
    return r;
}

/* ------------------------------------------------------------- fills */

void tlb_model_fill_page(unsigned cpu, virt_addr_t va)
{
    struct model_cpu *c = cpu_of(cpu);
    if (c)
        hw_walk(c, va.raw);
}

/* What one hardware walk of va on c covers: [*lo, *hi] inclusive. */
static void fill_one(struct model_cpu *c, uint64_t va, uint64_t *lo, uint64_t *hi)
{
    struct walk w = hw_walk(c, va);
    unsigned level = w.leaf.level ? w.leaf.level : w.missing_level ? w.missing_level : PT_LEVEL_PT;
    *lo = level_base(va, level);
    *hi = *lo + (pt_level_size(level) - 1);
}

/* Fill up to TLB_MODEL_FILL_LEAVES walks from each end of [va, last]. */
static void fill_ends(struct model_cpu *c, uint64_t va, uint64_t last)
{
    uint64_t lo, hi, fwd = va, back = last;
    for (unsigned n = 0; n < TLB_MODEL_FILL_LEAVES && fwd <= last; n++) {
        fill_one(c, fwd, &lo, &hi);
        if (hi >= last)
            return;             /* the whole range was seen from the front */
        fwd = hi + 1;
    }
    for (unsigned n = 0; n < TLB_MODEL_FILL_LEAVES && back >= fwd; n++) {
        fill_one(c, back, &lo, &hi);
        if (lo <= fwd)
            return;
        back = lo - 1;
    }
}

void tlb_model_fill_range(virt_addr_t va, uint64_t size)
{
    if (!active || size == 0)
        return;
    uint64_t start = va.raw & ~(PAGE_SIZE - 1);
    for (unsigned cpu = 0; cpu < ncpus; cpu++)
        fill_ends(&cpus[cpu], start, va.raw + (size - 1));
}

/* ------------------------------------------------------------ checks */

/* A leaf is stale when the tables map its page differently or allow less
 * than it does. */
static bool leaf_stale(const struct model_cpu *c, const struct tlb_leaf *e)
{
    struct walk w = ref_walk(c, e->va);
    const uint64_t more = PTE_WRITE | PTE_USER | PTE_GLOBAL;
    if (w.leaf.level != e->level || w.leaf.pa != e->pa || w.leaf.va != e->va)
        return true;
    if ((e->flags & more & ~w.leaf.flags) != 0 || ((w.leaf.flags & ~e->flags) & PTE_NX))
        return true;
    return ((e->flags ^ w.leaf.flags) & (PTE_PWT | PTE_PCD | PTE_HUGE)) != 0;
}

/* A PSC entry is stale unless the table above still links its frame. */
static bool psc_stale(const struct model_cpu *c, const struct psc_entry *p)
{
    uint64_t table_pa = c->cr3.raw;
    for (unsigned level = PT_LEVEL_PML4; level > p->level; level--) {
        const uint64_t *t = table_at(table_pa);
        uint64_t e = t ? t[pt_index(VA(p->va), level)] : 0;
        if (!(e & PTE_PRESENT) || (level < PT_LEVEL_PML4 && (e & PTE_HUGE)))
            return true;
        table_pa = e & PTE_ADDR_MASK;
    }
    return table_pa != p->table_pa;
}

/* Check (a) on cpu for entries meeting [va, va + len) (len 0: all). */
static unsigned check_cpu(unsigned cpu, uint64_t va, uint64_t len, const char *where)
{
    const struct model_cpu *c = &cpus[cpu];
    unsigned stale = 0;
    for (unsigned i = 0; i < TLB_MODEL_TLB_ENTRIES; i++) {
        const struct tlb_leaf *e = &c->tlb[i];
        if (!e->level || !meets(e->va, pt_level_size(e->level), va, len) || !leaf_stale(c, e))
            continue;
        stale++;
        violation("%s: cpu %u holds a stale TLB entry: va %#lx -> frame %#lx (%s, level %u)",
                  where, cpu, (unsigned long)e->va, (unsigned long)e->pa,
                  e->flags & PTE_GLOBAL ? "global" : "not global", e->level);
    }
    for (unsigned i = 0; i < TLB_MODEL_PSC_ENTRIES; i++) {
        const struct psc_entry *p = &c->psc[i];
        if (!p->level || !meets(p->va, pt_level_size(p->level + 1), va, len) ||
            !psc_stale(c, p))
            continue;
        stale++;
        violation("%s: cpu %u holds a stale paging-structure entry: level-%u table for "
                  "va %#lx is frame %#lx", where, cpu, p->level, (unsigned long)p->va,
                  (unsigned long)p->table_pa);
    }
    return stale;
}

unsigned tlb_model_check(const char *where)
{
    unsigned stale = 0;
    for (unsigned cpu = 0; active && cpu < ncpus; cpu++)
        stale += check_cpu(cpu, 0, 0, where);
    return stale;
}

/* A CPU still running when the request arrives touches its cached pages. */
static void touch_cached(unsigned cpu, uint64_t va, uint64_t len)
{
    struct model_cpu *c = &cpus[cpu];
    for (unsigned i = 0; i < TLB_MODEL_TLB_ENTRIES; i++) {
        struct tlb_leaf *e = &c->tlb[i];
        if (e->level && meets(e->va, pt_level_size(e->level), va, len))
            reaches_freed(cpu, e, e->va, true);
    }
}

void tlb_model_shootdown(uint64_t targets, virt_addr_t va, uint64_t npages)
{
    if (!active)
        return;
    unsigned self = mm_platform_cpu_id();
    uint64_t len = npages * PAGE_SIZE;
    for (unsigned cpu = 0; cpu < ncpus; cpu++) {
        if (cpu == self || !(targets >> cpu & 1))
            continue;
        touch_cached(cpu, va.raw, len);
        if (npages == 0)
            tlb_model_flush_all(cpu);
        for (uint64_t i = 0; i < npages; i++)
            tlb_model_invlpg(cpu, VA(va.raw + i * PAGE_SIZE));
    }
    for (unsigned cpu = 0; cpu < ncpus; cpu++)
        if (cpu == self || targets >> cpu & 1)
            check_cpu(cpu, va.raw & ~(PAGE_SIZE - 1), len, "after the shootdown");
}

/* ------------------------------------------------------------ frames */

void tlb_model_frame_alloc(phys_addr_t pa)
{
    if (active)
        frame_set_free(pa.raw, 0);
}

/* Check (b) for frame pa on cpu. */
static void check_free_on(unsigned cpu, uint64_t pa)
{
    const struct model_cpu *c = &cpus[cpu];
    if (c->cr3.raw == pa)
        violation("frame %#lx freed while cpu %u has it loaded as CR3", (unsigned long)pa, cpu);
    for (unsigned i = 0; i < TLB_MODEL_TLB_ENTRIES; i++) {
        const struct tlb_leaf *e = &c->tlb[i];
        if (e->level && pa - e->pa < pt_level_size(e->level))
            violation("frame %#lx freed while cpu %u's TLB maps va %#lx to it", (unsigned long)pa,
                      cpu, (unsigned long)(e->va + (pa - e->pa)));
    }
    for (unsigned i = 0; i < TLB_MODEL_PSC_ENTRIES; i++) {
        const struct psc_entry *p = &c->psc[i];
        if (p->level && p->table_pa == pa)
            violation("frame %#lx freed while cpu %u's paging-structure cache holds it as the "
                      "level-%u table for va %#lx", (unsigned long)pa, cpu, p->level,
                      (unsigned long)p->va);
    }
}

void tlb_model_frame_free(phys_addr_t pa)
{
    if (!active)
        return;
    for (unsigned cpu = 0; cpu < ncpus; cpu++)
        check_free_on(cpu, pa.raw);
    frame_set_free(pa.raw, 1);
}
