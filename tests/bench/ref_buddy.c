/*
 * ref_buddy.c - a C port of the reference design's (DragonOS) buddy frame
 * allocator, kept as a benchmark baseline (bench_frames.c includes this
 * file: each benchmark is built from its one source file).  Not part of
 * the library.
 *
 * Algorithm (as in the reference).  Block sizes are 2^shift bytes, shift
 * 12 (4 KiB) .. 30 (1 GiB).  The free list of each size is a chain of
 * 4 KiB list pages, each a header {entry_num, next_page} followed by up to
 * 510 block addresses.  Allocation takes the last entry of the first list
 * page that has one (an emptied head page with a successor is unlinked and
 * given back to the allocator as a 4 KiB block), trying larger sizes in
 * turn and freeing the upper halves of a split block down to the size
 * asked for.  Freeing scans the whole list of its size for the buddy
 * (base ^ size): found, the buddy's entry is overwritten with the last
 * entry of the first non-empty page and the merged block is freed one
 * size up; not found, the block is appended to the first page, a new list
 * page being pushed when that one is full (a 4 KiB block becomes the page
 * itself; for larger sizes one 4 KiB block is allocated).  No size search
 * mask, no bitmaps, no double-free detection: cost grows with the length
 * of the lists, which is short when little memory is fragmented.
 *
 * Where the port departs from the reference, so that it runs at all:
 *  - a 4 KiB block that becomes a new list page is not also listed as a
 *    free block (the reference does both);
 *  - a new list page is zeroed over 4 KiB, not over the block size of its
 *    list (the reference writes past the page for larger sizes);
 *  - an entry goes to the first list page with room, the second one if the
 *    first is full (the reference asserts the second is one short of full
 *    whenever it exists, which fails once a list outgrows one page).
 * One spinlock (interrupts saved) around alloc and free, as this project's
 * buddy has, so the comparison is of the algorithms.
 */
#include "ref_buddy.h"
#include <mm/log.h>

#define REF_PAGE     UINT64_C(4096)
#define REF_ENTRIES  ((REF_PAGE - 16) / 8)

struct ref_page_list {
    uint64_t entry_num;
    uint64_t next_page;              /* pa of the next list page, 0 = none */
};

static struct ref_page_list *page_list(uint64_t pa) { return pa_to_ptr(PA(pa)); }

static uint64_t *entry_at(uint64_t page, uint64_t j)
{
    return pa_to_ptr(PA(page + sizeof(struct ref_page_list) + j * 8));
}

static uint64_t *head(struct ref_buddy *r, unsigned shift)
{
    return &r->free_area[shift - REF_MIN_SHIFT];
}

static void free_locked(struct ref_buddy *r, uint64_t base, unsigned shift);
static uint64_t pop_front(struct ref_buddy *r, unsigned shift);

/* A zeroed list page at pa, linked in front of the list of `shift`. */
static void push_list_page(struct ref_buddy *r, unsigned shift, uint64_t pa)
{
    __builtin_memset(pa_to_ptr(PA(pa)), 0, REF_PAGE);
    page_list(pa)->next_page = *head(r, shift);
    *head(r, shift) = pa;
}

/* Take one block from the list of exactly `shift`; 0 if it is empty. */
static uint64_t take_exact(struct ref_buddy *r, unsigned shift)
{
    uint64_t pl_pa = *head(r, shift);
    struct ref_page_list *pl = page_list(pl_pa);
    while (pl->entry_num == 0) {
        if (pl->next_page == 0)
            return 0;
        *head(r, shift) = pl->next_page;
        free_locked(r, pl_pa, REF_MIN_SHIFT);      /* the empty page goes back */
        pl_pa = *head(r, shift);
        pl = page_list(pl_pa);
    }
    uint64_t *slot = entry_at(pl_pa, pl->entry_num - 1);
    uint64_t entry = *slot;
    *slot = 0;
    if (entry == 0 || (entry & ((UINT64_C(1) << shift) - 1)))
        mm_panic("ref_buddy: bad entry %#lx at shift %u", (unsigned long)entry, shift);
    pl->entry_num--;
    if (pl->entry_num == 0 && pl->next_page != 0) {
        *head(r, shift) = pl->next_page;
        free_locked(r, pl_pa, REF_MIN_SHIFT);
    }
    return entry;
}

/* A block of `shift`, splitting a larger one if needed; 0 if none. */
static uint64_t pop_front(struct ref_buddy *r, unsigned shift)
{
    uint64_t x = take_exact(r, shift);
    if (x)
        return x;
    unsigned cur = shift + 1;
    for (; cur < REF_MAX_SHIFT; cur++)
        if ((x = take_exact(r, cur)) != 0)
            break;
    if (!x)
        return 0;
    while (cur > shift) {
        cur--;
        free_locked(r, x + (UINT64_C(1) << cur), cur);
    }
    return x;
}

/* Append block base to the list of `shift` (no buddy of it is listed). */
static void list_insert(struct ref_buddy *r, uint64_t base, unsigned shift)
{
    if (page_list(*head(r, shift))->entry_num == REF_ENTRIES) {
        if (shift == REF_MIN_SHIFT) {
            push_list_page(r, shift, base);        /* the block is the page */
            return;
        }
        uint64_t pa = pop_front(r, REF_MIN_SHIFT);
        if (!pa)
            mm_panic("ref_buddy: no frame for a list page");
        push_list_page(r, shift, pa);
    }
    uint64_t pl_pa = *head(r, shift);
    struct ref_page_list *pl = page_list(pl_pa);
    if (pl->entry_num == REF_ENTRIES && pl->next_page) {
        pl_pa = pl->next_page;
        pl = page_list(pl_pa);
    }
    if (pl->entry_num >= REF_ENTRIES)
        mm_panic("ref_buddy: no room in the list of shift %u", shift);
    *entry_at(pl_pa, pl->entry_num) = base;
    pl->entry_num++;
}

/* Overwrite the buddy's slot with the last entry of the first non-empty page. */
static void remove_found(struct ref_buddy *r, unsigned shift, uint64_t *slot)
{
    uint64_t pl_pa = *head(r, shift);
    struct ref_page_list *pl = page_list(pl_pa);
    while (pl->entry_num == 0) {
        if (pl->next_page == 0)
            mm_panic("ref_buddy: listed buddy in an empty list");
        pl_pa = pl->next_page;
        pl = page_list(pl_pa);
    }
    uint64_t *last = entry_at(pl_pa, pl->entry_num - 1);
    if (last != slot)
        *slot = *last;
    *last = 0;
    pl->entry_num--;
}

/* Find the buddy's slot in the list of `shift` by a scan; NULL if absent. */
static uint64_t *find_entry(struct ref_buddy *r, unsigned shift, uint64_t buddy)
{
    for (uint64_t pl_pa = *head(r, shift); pl_pa; pl_pa = page_list(pl_pa)->next_page) {
        struct ref_page_list *pl = page_list(pl_pa);
        for (uint64_t i = 0; i < pl->entry_num; i++)
            if (*entry_at(pl_pa, i) == buddy)
                return entry_at(pl_pa, i);
    }
    return NULL;
}

static void free_locked(struct ref_buddy *r, uint64_t base, unsigned shift)
{
    for (;;) {
        if (base & ((UINT64_C(1) << shift) - 1))
            mm_panic("ref_buddy: unaligned free %#lx shift %u", (unsigned long)base, shift);
        uint64_t buddy = base ^ (UINT64_C(1) << shift);
        uint64_t *slot = shift != REF_MAX_SHIFT - 1 ? find_entry(r, shift, buddy) : NULL;
        if (!slot) {
            list_insert(r, base, shift);
            return;
        }
        remove_found(r, shift, slot);
        base = base < buddy ? base : buddy;
        shift++;
    }
}

/* Seed one area [pa, end) as the reference does: small blocks up to the
 * alignment of the largest size, 1 GiB blocks, then the rest downwards. */
static void seed_area(struct ref_buddy *r, uint64_t pa, uint64_t end)
{
    uint64_t remain = (end - pa) / REF_PAGE;
    for (unsigned s = REF_MIN_SHIFT; s < REF_MAX_SHIFT; s++) {
        if (remain < (UINT64_C(1) << (s - REF_MIN_SHIFT)))
            break;
        if (s != REF_MAX_SHIFT - 1) {
            if (pa & (UINT64_C(1) << s)) {
                free_locked(r, pa, s);
                pa += UINT64_C(1) << s;
                remain -= UINT64_C(1) << (s - REF_MIN_SHIFT);
            }
        } else {
            for (uint64_t n = (remain * REF_PAGE) >> s; n > 0; n--) {
                free_locked(r, pa, s);
                pa += UINT64_C(1) << s;
                remain -= UINT64_C(1) << (s - REF_MIN_SHIFT);
            }
        }
    }
    uint64_t bytes = remain * REF_PAGE;
    for (unsigned s = REF_MAX_SHIFT; s-- > REF_MIN_SHIFT;)
        if (bytes >= (UINT64_C(1) << s)) {
            free_locked(r, pa, s);
            pa += UINT64_C(1) << s;
            bytes -= UINT64_C(1) << s;
        }
}

int ref_buddy_init(struct ref_buddy *r, const struct mm_area_list *areas)
{
    if (areas->count == 0 || areas->area[0].start.raw == 0 ||
        mm_area_size(&areas->area[0]) < (REF_NR_ORDERS + 1) * REF_PAGE)
        return -1;
    *r = (struct ref_buddy){ .lock = MM_SPINLOCK_INIT };
    uint64_t pa = areas->area[0].start.raw;
    for (unsigned s = REF_MIN_SHIFT; s < REF_MAX_SHIFT; s++, pa += REF_PAGE) {
        __builtin_memset(pa_to_ptr(PA(pa)), 0, REF_PAGE);
        *head(r, s) = pa;
    }
    for (unsigned i = 0; i < areas->count; i++) {
        uint64_t start = i == 0 ? pa : areas->area[i].start.raw;
        r->total_npages += (areas->area[i].end.raw - start) / REF_PAGE;
        seed_area(r, start, areas->area[i].end.raw);
    }
    return 0;
}

int ref_buddy_alloc(struct ref_buddy *r, uint64_t npages, uint64_t *pa_out)
{
    unsigned shift = REF_MIN_SHIFT + (unsigned)__builtin_ctzll(npages);
    if (npages == 0 || (npages & (npages - 1)) || shift >= REF_MAX_SHIFT)
        return -1;
    unsigned long flags = mm_spin_lock_irqsave(&r->lock);
    uint64_t pa = pop_front(r, shift);
    mm_spin_unlock_irqrestore(&r->lock, flags);
    if (!pa)
        return -1;
    *pa_out = pa;
    return 0;
}

void ref_buddy_free(struct ref_buddy *r, uint64_t pa, uint64_t npages)
{
    unsigned shift = REF_MIN_SHIFT + (unsigned)__builtin_ctzll(npages);
    unsigned long flags = mm_spin_lock_irqsave(&r->lock);
    free_locked(r, pa, shift);
    mm_spin_unlock_irqrestore(&r->lock, flags);
}

uint64_t ref_buddy_free_npages(struct ref_buddy *r)
{
    uint64_t n = 0;
    unsigned long flags = mm_spin_lock_irqsave(&r->lock);
    for (unsigned s = REF_MIN_SHIFT; s < REF_MAX_SHIFT; s++)
        for (uint64_t pl = *head(r, s); pl; pl = page_list(pl)->next_page)
            n += page_list(pl)->entry_num << (s - REF_MIN_SHIFT);
    mm_spin_unlock_irqrestore(&r->lock, flags);
    return n;
}
