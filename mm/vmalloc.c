/*
 * mm/vmalloc.c - virtually contiguous kernel areas with guard pages, on a
 * VA-range allocator (mm/vrange.c) and the kernel mapper (mm/kmapper.c).
 *
 * Algorithm.  Creating an area of n pages takes, in this order: the
 * frames (n fresh zeroed frames and a frame list, or the caller's
 * frames), one power-of-two block of at least n + 1 pages (n + 2 for a
 * stack), a claim on the block, the kernel mapper lock; then it maps the
 * n pages one by one and ends the claim with the tag that records the
 * area.  Whatever fails gives back everything taken before it: a partly
 * mapped area is unmapped and flushed, its new page tables freed after
 * that flush, the block freed, the frames returned.  Releasing claims the
 * block, unmaps all n pages with one pt_unmap_range, discharges its one
 * token (a single shootdown), and only then frees the block, the frames
 * and the list.
 *
 * The frame list.  An area that owns its frames must find them again to
 * free them after the flush, when the page tables no longer hold them.
 * They are kept in a chain of list frames: word 0 of each is the next
 * list frame's pa (0: the last), words 1..511 are data frames' pas, in
 * page order.  The list frames are the area's own, so nothing another CPU
 * can still write (a stale TLB entry reaches only data frames) ever
 * corrupts it.
 *
 * Tag of a block (0 while the area is being created):
 *   bits  0..18  mapped pages (>= 1, < 2^18)
 *   bit  19      placement: 1 = stack (a guard page above, the rest below)
 *   bit  20      the area owns its frames
 *   bits 21..52  page frame number of the first list frame (0: none)
 *   bits 53..63  the creator's word (kernel stacks: registry slot)
 *
 * Invariants: an allocated block with a nonzero tag maps exactly the
 * tag's pages at the tag's placement and nothing else; every other page
 * of the block is unmapped (the guards); no frame of an area is in any
 * allocator while the area exists, and none goes back before the flush
 * that follows its unmap.
 *
 * Locking: see mm/vmalloc.h ("kernel mapper, then vrange, then frame
 * allocator"; frames are taken and given back with no lock held).
 */
#include <mm/aspace.h>
#include <mm/init.h>
#include <mm/kmapper.h>
#include <mm/log.h>
#include <mm/vmalloc.h>

static struct vmalloc_space vmalloc_global;

struct vmalloc_space *vmalloc_space_global(void)
{
    return &vmalloc_global;
}

/* ------------------------------------------------------------------ tags */

#define TAG_PAGE_BITS   19u
#define TAG_STACK_BIT   (UINT64_C(1) << 19)
#define TAG_OWNS_BIT    (UINT64_C(1) << 20)
#define TAG_LIST_SHIFT  21u
#define TAG_USER_SHIFT  53u
#define TAG_PAGE_MASK   ((UINT64_C(1) << TAG_PAGE_BITS) - 1)
#define TAG_PFN_MASK    ((UINT64_C(1) << 32) - 1)

_Static_assert((VRANGE_MAX_SIZE >> PAGE_SHIFT) <= TAG_PAGE_MASK + 1,
               "the page count of an area fits in the tag");
_Static_assert((MM_DIRECT_MAP_MAX_PA >> PAGE_SHIFT) <= TAG_PFN_MASK + 1,
               "a list frame number fits in the tag");
_Static_assert(VMALLOC_USER_WORD_LIMIT == UINT64_C(1) << (64 - TAG_USER_SHIFT),
               "the user word fills the top of the tag");

static uint64_t tag_pack(const struct vmalloc_area *a)
{
    return a->npages | (a->place == VMALLOC_PLACE_STACK ? TAG_STACK_BIT : 0) |
           (a->owns_frames ? TAG_OWNS_BIT : 0) |
           (a->list_pa.raw >> PAGE_SHIFT) << TAG_LIST_SHIFT |
           (uint64_t)a->user_word << TAG_USER_SHIFT;
}

/* Where an area of npages pages sits in a block [block_va, +block_size). */
static uint64_t area_va(uint64_t block_va, uint64_t block_size, uint64_t npages,
                        enum vmalloc_place place)
{
    if (place == VMALLOC_PLACE_START)
        return block_va;
    return block_va + block_size - PAGE_SIZE - npages * PAGE_SIZE;
}

static void tag_unpack(uint64_t tag, struct vrange_block blk, struct vmalloc_area *a)
{
    a->block_va = blk.va;
    a->block_size = blk.size;
    a->npages = tag & TAG_PAGE_MASK;
    a->place = (tag & TAG_STACK_BIT) ? VMALLOC_PLACE_STACK : VMALLOC_PLACE_START;
    a->owns_frames = (tag & TAG_OWNS_BIT) != 0;
    a->list_pa = PA(((tag >> TAG_LIST_SHIFT) & TAG_PFN_MASK) << PAGE_SHIFT);
    a->user_word = (unsigned)(tag >> TAG_USER_SHIFT);
    a->va = VA(area_va(blk.va.raw, blk.size, a->npages, a->place));
}

/* Guard pages the placement needs besides the area. */
static uint64_t guard_pages(enum vmalloc_place place)
{
    return place == VMALLOC_PLACE_STACK ? 2 : 1;
}

/* ------------------------------------------------------------ frame list */

#define LIST_SLOTS (PAGE_SIZE / sizeof(uint64_t) - 1)    /* 511 data frames per list frame */

/* Walks the frames of an area: the caller's array or a frame list. */
struct frame_iter {
    const phys_addr_t *array;
    uint64_t *list;            /* the current list frame (direct map) */
    uint64_t slot;             /* next slot in it, 1..LIST_SLOTS */
};

static void iter_start(struct frame_iter *it, const phys_addr_t *array, phys_addr_t list_pa)
{
    it->array = array;
    it->list = array ? NULL : pa_to_ptr(list_pa);
    it->slot = 1;
}

/* The next slot of a frame list (moving on to the next list frame). */
static uint64_t *iter_slot(struct frame_iter *it)
{
    if (it->slot > LIST_SLOTS) {
        it->list = pa_to_ptr(PA(it->list[0]));
        it->slot = 1;
    }
    return &it->list[it->slot++];
}

static phys_addr_t iter_next(struct frame_iter *it)
{
    if (it->array)
        return *it->array++;
    return PA(*iter_slot(it));
}

/* Give back the first `ndata` data frames of the list at list_pa, then
 * the list frames themselves. */
static void free_frames(struct frame_allocator *fa, phys_addr_t list_pa, uint64_t ndata)
{
    struct frame_iter it;
    iter_start(&it, NULL, list_pa);
    for (uint64_t i = 0; i < ndata; i++)
        fa->free(fa, iter_next(&it));
    while (list_pa.raw != 0) {
        phys_addr_t next = PA(((uint64_t *)pa_to_ptr(list_pa))[0]);
        fa->free(fa, list_pa);
        list_pa = next;
    }
}

/* Take ceil(npages / 511) list frames, chained, then npages zeroed data
 * frames recorded in them.  0 and *list_out, or -MM_ENOMEM with every
 * frame given back. */
static int take_frames(struct frame_allocator *fa, uint64_t npages, phys_addr_t *list_out)
{
    uint64_t nlist = (npages + LIST_SLOTS - 1) / LIST_SLOTS;
    phys_addr_t head = PA(0);
    for (uint64_t i = 0; i < nlist; i++) {
        phys_addr_t pa;
        if (frame_alloc(fa, &pa) != 0) {
            free_frames(fa, head, 0);
            return -MM_ENOMEM;
        }
        ((uint64_t *)pa_to_ptr(pa))[0] = head.raw;
        head = pa;
    }
    struct frame_iter it;
    iter_start(&it, NULL, head);
    for (uint64_t i = 0; i < npages; i++) {
        phys_addr_t pa;
        if (frame_alloc(fa, &pa) != 0) {
            free_frames(fa, head, i);
            return -MM_ENOMEM;
        }
        __builtin_memset(pa_to_ptr(pa), 0, PAGE_SIZE);
        *iter_slot(&it) = pa.raw;
    }
    *list_out = head;
    return 0;
}

/* ------------------------------------------------------------- mapping */

/*
 * Map the area's pages in km's table.  No flush is owed for the new
 * leaves: they were not present and x86 caches no not-present entry.  On
 * failure the pages mapped so far are unmapped and flushed (another CPU
 * may have walked them speculatively) and the error returned.
 */
static int map_pages(struct pt_mapper *m, const struct vmalloc_area *a,
                     const phys_addr_t *frames, uint64_t flags)
{
    struct frame_iter it;
    iter_start(&it, frames, a->list_pa);
    uint64_t done = 0;
    int err = 0;
    for (; done < a->npages && err == 0; done++) {
        struct pt_flush tok PT_FLUSH_SCOPED = PT_FLUSH_INIT;
        err = pt_map_phys(m, VA(a->va.raw + done * PAGE_SIZE), iter_next(&it), flags, &tok);
        pt_flush_ignore(&tok);
    }
    if (err == 0)
        return 0;
    done--;                                     /* the page that failed */
    if (done != 0) {
        struct pt_flush tok PT_FLUSH_SCOPED = PT_FLUSH_INIT;
        int undo = pt_unmap_range(m, a->va, done * PAGE_SIZE, true, &tok);
        pt_flush(&tok);
        if (undo != 0)
            mm_panic("vmalloc: undoing %lu pages at %#lx failed: %d", (unsigned long)done,
                     (unsigned long)a->va.raw, undo);
    }
    return err;
}

/* The argument checks of vmalloc_area_create: 0 or -MM_EINVAL (logged). */
static int create_args_check(struct vmalloc_space *vs, const char *fn, uint64_t npages,
                             enum vmalloc_place place, const phys_addr_t *frames,
                             uint64_t pte_flags, unsigned user_word)
{
    uint64_t max_pages = (VRANGE_MAX_SIZE >> PAGE_SHIFT) - guard_pages(place);
    if (vs->fa == NULL) {
        mm_printf("%s: the space is not initialised (mm_init's vmalloc step)\n", fn);
        return -MM_EINVAL;
    }
    if (npages == 0 || npages > max_pages || user_word >= VMALLOC_USER_WORD_LIMIT ||
        !(pte_flags & PTE_PRESENT) || ((pte_flags & PTE_WRITE) && !(pte_flags & PTE_NX))) {
        mm_printf("%s: %lu pages (1..%lu), flags %#lx (present, not W+X), word %u\n", fn,
                  (unsigned long)npages, (unsigned long)max_pages, (unsigned long)pte_flags,
                  user_word);
        return -MM_EINVAL;
    }
    for (uint64_t i = 0; frames && i < npages; i++) {
        if (!is_aligned_u64(frames[i].raw, PAGE_SIZE) ||
            !mm_direct_map_contains(frames[i], PAGE_SIZE)) {
            mm_printf("%s: frame %lu (pa %#lx) is not a page of RAM in the direct map\n", fn,
                      (unsigned long)i, (unsigned long)frames[i].raw);
            return -MM_EINVAL;
        }
    }
    return 0;
}

/* Map the claimed block's area under the kernel mapper lock.  0, or the
 * error (logged) with nothing mapped. */
static int map_claimed(const char *fn, const struct vmalloc_area *a, const phys_addr_t *frames,
                       uint64_t flags)
{
    struct kmapper km;
    int err = -MM_EPERM;
    if (kmapper_lock(&km))
        err = map_pages(&km.mapper, a, frames, flags);
    kmapper_unlock(&km);
    if (err == -MM_EPERM)
        mm_printf("%s: cpu %u already holds the kernel mapper lock\n", fn,
                  mm_platform_cpu_id());
    else if (err)
        mm_printf("%s: mapping %lu pages at %#lx failed: %s\n", fn, (unsigned long)a->npages,
                  (unsigned long)a->va.raw, mm_strerror(err));
    return err;
}

int vmalloc_area_create(struct vmalloc_space *vs, const char *fn, uint64_t npages,
                        enum vmalloc_place place, const phys_addr_t *frames,
                        uint64_t pte_flags, unsigned user_word, struct vmalloc_area *out)
{
    int err = create_args_check(vs, fn, npages, place, frames, pte_flags, user_word);
    if (err)
        return err;
    struct vmalloc_area a = { .npages = npages, .place = place, .owns_frames = !frames,
                              .list_pa = PA(0), .user_word = user_word };
    if (!frames && take_frames(vs->fa, npages, &a.list_pa) != 0) {
        mm_printf("%s: out of frames for %lu pages\n", fn, (unsigned long)npages);
        return -MM_ENOMEM;
    }
    struct vrange_block blk;
    uint64_t tag;
    err = vrange_alloc(&vs->vr, (npages + guard_pages(place)) * PAGE_SIZE, &blk);
    if (err == 0) {
        err = vrange_claim(&vs->vr, blk, &tag);     /* fails only for a caller guessing blk */
        if (err == 0) {
            tag_unpack(tag_pack(&a), blk, &a);
            err = map_claimed(fn, &a, frames, pte_flags);
            if (err)
                vrange_free_claimed(&vs->vr, blk.va);
        }
    }
    if (err) {
        if (a.owns_frames)
            free_frames(vs->fa, a.list_pa, npages);
        return err;
    }
    vrange_unclaim(&vs->vr, blk.va, tag_pack(&a));
    *out = a;
    return 0;
}

/* ------------------------------------------------------------- release */

int vmalloc_area_claim(struct vmalloc_space *vs, const char *fn, virt_addr_t block_va,
                       struct vmalloc_area *out)
{
    struct vrange_block blk;
    uint64_t tag;
    if (vs->fa == NULL) {
        mm_printf("%s: va %#lx: the space is not initialised\n", fn, (unsigned long)block_va.raw);
        return -MM_EINVAL;
    }
    int err = vrange_claim_at(&vs->vr, block_va, &blk, &tag);
    if (err)
        return err;
    if (tag == 0) {
        vrange_unclaim(&vs->vr, blk.va, 0);
        mm_printf("%s: va %#lx: its area is still being created\n", fn,
                  (unsigned long)block_va.raw);
        return -MM_EBUSY;
    }
    tag_unpack(tag, blk, out);
    return 0;
}

void vmalloc_area_unclaim(struct vmalloc_space *vs, const struct vmalloc_area *a)
{
    vrange_unclaim(&vs->vr, a->block_va, tag_pack(a));
}

int vmalloc_area_release(struct vmalloc_space *vs, const char *fn, const struct vmalloc_area *a)
{
    struct kmapper km;
    int err = -MM_EPERM;
    if (kmapper_lock(&km)) {
        struct pt_flush tok PT_FLUSH_SCOPED = PT_FLUSH_INIT;
        err = pt_unmap_range(&km.mapper, a->va, a->npages * PAGE_SIZE, true, &tok);
        pt_flush(&tok);         /* one token for the whole area: one shootdown */
    }
    kmapper_unlock(&km);
    if (err) {
        vmalloc_area_unclaim(vs, a);
        mm_printf("%s: va %#lx (%lu pages): %s\n", fn, (unsigned long)a->va.raw,
                  (unsigned long)a->npages, err == -MM_EPERM ?
                  "this CPU already holds the kernel mapper lock" : mm_strerror(err));
        return err;
    }
    vrange_free_claimed(&vs->vr, a->block_va);
    if (a->owns_frames)             /* after the flush: no CPU reaches them any more */
        free_frames(vs->fa, a->list_pa, a->npages);
    return 0;
}

/* ---------------------------------------------------------- public calls */

int vmalloc_space_init(struct vmalloc_space *vs, const char *name, uint64_t base, uint64_t end,
                       struct frame_allocator *fa)
{
    if (!vs || end - base != VMALLOC_SIZE) {
        mm_printf("vmalloc_space_init(%s): space %p, range [%#lx, %#lx) is not %#lx bytes\n",
                  name ? name : "?", (void *)vs, (unsigned long)base, (unsigned long)end,
                  (unsigned long)VMALLOC_SIZE);
        return -MM_EINVAL;
    }
    int err = vrange_init(&vs->vr, name, base, end, vs->root, VMALLOC_NR_ROOTS, fa);
    vs->fa = err ? NULL : fa;
    return err;
}

int vmalloc_alloc(struct vmalloc_space *vs, uint64_t size, void **out)
{
    if (size == 0 || size > VMALLOC_MAX_SIZE) {
        mm_printf("vmalloc_alloc: size %#lx not in 1..%#lx\n", (unsigned long)size,
                  (unsigned long)VMALLOC_MAX_SIZE);
        return -MM_EINVAL;
    }
    struct vmalloc_area a;
    int err = vmalloc_area_create(vs, "vmalloc_alloc", align_up_u64(size, PAGE_SIZE) >> PAGE_SHIFT,
                                  VMALLOC_PLACE_START, NULL, VMALLOC_PTE_FLAGS, 0, &a);
    if (err == 0)
        *out = (void *)(uintptr_t)a.va.raw;
    return err;
}

int vmalloc_map(struct vmalloc_space *vs, const phys_addr_t *frames, uint64_t n, unsigned prot,
                void **out)
{
    bool w = (prot & MM_PROT_WRITE) != 0, x = (prot & MM_PROT_EXEC) != 0;
    if (!frames || (prot & ~(MM_PROT_READ | MM_PROT_WRITE | MM_PROT_EXEC)) != 0 || prot == 0 ||
        (w && x)) {
        mm_printf("vmalloc_map: frames %p, prot %#x: need frames and READ/WRITE/EXEC, "
                  "not WRITE|EXEC\n", (const void *)frames, prot);
        return -MM_EINVAL;
    }
    struct vmalloc_area a;
    int err = vmalloc_area_create(vs, "vmalloc_map", n, VMALLOC_PLACE_START, frames,
                                  mm_prot_to_pte(prot) | PTE_GLOBAL, 0, &a);
    if (err == 0)
        *out = (void *)(uintptr_t)a.va.raw;
    return err;
}

int vmalloc_free(struct vmalloc_space *vs, void *va)
{
    struct vmalloc_area a;
    int err = vmalloc_area_claim(vs, "vmalloc_free", VA((uint64_t)(uintptr_t)va), &a);
    if (err)
        return err;
    if (a.place != VMALLOC_PLACE_START) {
        vmalloc_area_unclaim(vs, &a);
        mm_printf("vmalloc_free: %p is a kernel stack's block: use mm_kstack_free\n", va);
        return -MM_EINVAL;
    }
    return vmalloc_area_release(vs, "vmalloc_free", &a);
}

void *mm_vmalloc(uint64_t size)
{
    void *p = NULL;
    return vmalloc_alloc(&vmalloc_global, size, &p) == 0 ? p : NULL;
}

void *mm_vmap(const phys_addr_t *frames, uint64_t n, unsigned prot)
{
    void *p = NULL;
    return vmalloc_map(&vmalloc_global, frames, n, prot, &p) == 0 ? p : NULL;
}

int mm_vfree(void *va)
{
    return vmalloc_free(&vmalloc_global, va);
}

void vmalloc_stats(struct vmalloc_space *vs, struct vmalloc_stats *out)
{
    struct vrange_stats s;
    vrange_stats(&vs->vr, &s);
    out->areas = s.alloc_blocks;
    out->block_bytes = s.alloc_bytes;
    out->bookkeeping_frames = s.node_frames + s.hash_frames;
}

int vmalloc_check(struct vmalloc_space *vs)
{
    return vrange_check(&vs->vr);
}
