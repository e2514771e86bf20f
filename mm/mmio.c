/*
 * mm/mmio.c - the MMIO pool: device mappings in a range of kernel virtual
 * addresses handed out by a VA-range allocator (mm/vrange.c).
 *
 * Algorithm.  mmio_create takes a block from the pool's vrange;
 * mmio_map_phys claims the block, maps it with the lock dropped, and
 * records what it mapped in the block's tag; mmio_release frees an
 * untagged block at once, or claims a tagged one, unmaps it, flushes every
 * CPU with one token (one shootdown) and only then frees it, so a reused
 * block never meets a stale TLB entry of its previous device.
 *
 * Invariants: a block's tag is 0 (nothing mapped) or the packed mapping
 * record below; a block with a nonzero tag maps exactly tag's pages from
 * its start, in the table tag names; the pool maps nothing reaching
 * 2^phys_bits.
 *
 * Locking.  The vrange's lock guards the blocks and their tags.  The
 * page-table mapper is never called with it held: the block is claimed
 * (vrange_claim / vrange_release), the lock dropped, the tables edited,
 * and the claim ended with the new tag (vrange_unclaim) or by freeing the
 * block (vrange_free_claimed).  A claimed block cannot be mapped or
 * released concurrently (-MM_EBUSY), merged or handed out.
 */
#include <mm/arch.h>
#include <mm/log.h>
#include <mm/mmio.h>
#include <mm/pat.h>

static struct mmio_pool mmio_global_pool;

struct mmio_pool *mmio_pool_global(void)
{
    return &mmio_global_pool;
}

static inline struct vrange_block block_of(const struct mmio_space *s)
{
    return (struct vrange_block){ s->va, s->size };
}

/* ------------------------------------------------------ mapping record */

/*
 * The tag of a mapped block, one word: bits 0..18 hold the number of
 * 4 KiB pages mapped (at most 2^18, one 1 GiB block), bits 19..30 the
 * offset within the first page of the pointer mmio_ioremap returned, bits
 * 31..62 the frame number of the top table the pages were mapped in (a
 * mapper reaches its tables through the direct map, so the table lies
 * below MM_DIRECT_MAP_MAX_PA).  A mapping covers at least one page, so 0
 * means "nothing mapped".
 */
#define TAG_PAGE_BITS   19u
#define TAG_OFFSET_BITS PAGE_SHIFT
#define TAG_TOP_SHIFT   (TAG_PAGE_BITS + TAG_OFFSET_BITS)

_Static_assert((MMIO_MAX_SIZE >> PAGE_SHIFT) < (UINT64_C(1) << TAG_PAGE_BITS),
               "the page count of a whole block fits in the tag");
_Static_assert(TAG_TOP_SHIFT + 32 <= 64 && (MM_DIRECT_MAP_MAX_PA >> PAGE_SHIFT) <=
               (UINT64_C(1) << 32), "a top table frame number fits above the offset");

static inline uint64_t tag_pack(uint64_t size, uint64_t offset, uint64_t top_pa)
{
    MM_BUG_ON(size == 0 || !is_aligned_u64(size, PAGE_SIZE) || size > MMIO_MAX_SIZE);
    MM_BUG_ON(offset >= PAGE_SIZE || !is_aligned_u64(top_pa, PAGE_SIZE) ||
              top_pa >= MM_DIRECT_MAP_MAX_PA);
    return (top_pa >> PAGE_SHIFT) << TAG_TOP_SHIFT | offset << TAG_PAGE_BITS |
           size >> PAGE_SHIFT;
}

static inline uint64_t tag_size(uint64_t tag)
{
    return (tag & ((UINT64_C(1) << TAG_PAGE_BITS) - 1)) << PAGE_SHIFT;
}

static inline uint64_t tag_offset(uint64_t tag)
{
    return (tag >> TAG_PAGE_BITS) & (PAGE_SIZE - 1);
}

static inline uint64_t tag_top_pa(uint64_t tag)
{
    return (tag >> TAG_TOP_SHIFT) << PAGE_SHIFT;
}

/* ------------------------------------------------------------- checks */

/*
 * Does [pa, pa + size) lie below 2^p->phys_bits?  If not, one log line
 * naming `fn`.  size >= 1.
 */
static bool pa_in_width(const struct mmio_pool *p, const char *fn, uint64_t pa,
                        uint64_t size)
{
    uint64_t limit = UINT64_C(1) << p->phys_bits;
    if (pa < limit && size <= limit - pa)
        return true;
    mm_printf("%s: pa %#lx size %#lx reaches beyond the CPU's %u-bit physical addresses\n",
              fn, (unsigned long)pa, (unsigned long)size, p->phys_bits);
    return false;
}

/* The checks of mmio_map_phys that need no lock.  0 or -MM_EINVAL (logged). */
static int map_args_check(struct mmio_pool *p, const char *fn, const struct mmio_space *space,
                          struct pt_mapper *mapper, phys_addr_t pa, uint64_t length)
{
    if (!mapper || mapper->top_pa.raw >= MM_DIRECT_MAP_MAX_PA) {
        mm_printf("%s: no usable mapper (top table %#lx) for va %#lx\n", fn,
                  mapper ? (unsigned long)mapper->top_pa.raw : 0ul,
                  (unsigned long)space->va.raw);
        return -MM_EINVAL;
    }
    if (!is_aligned_u64(pa.raw, PAGE_SIZE) || length == 0 || length > space->size) {
        mm_printf("%s: pa %#lx length %#lx do not fit space va %#lx size %#lx\n", fn,
                  (unsigned long)pa.raw, (unsigned long)length,
                  (unsigned long)space->va.raw, (unsigned long)space->size);
        return -MM_EINVAL;
    }
    if (!pa_in_width(p, fn, pa.raw, align_up_u64(length, PAGE_SIZE)))
        return -MM_EINVAL;
    return 0;
}

/* ------------------------------------------------------------- public API */

int mmio_pool_init(struct mmio_pool *p, struct frame_allocator *fa)
{
    if (!p) {
        mm_printf("mmio_pool_init: pool NULL, frame allocator %p\n", (void *)fa);
        return -MM_EINVAL;
    }
    int err = vrange_init(&p->vr, "mmio", MMIO_POOL_BASE, MMIO_POOL_END, p->root,
                          MMIO_NR_ROOTS, fa);
    if (err)
        return err;
    p->free_tables = true;
    p->phys_bits = arch_phys_addr_bits();
    return 0;
}

int mmio_create(struct mmio_pool *p, uint64_t size, struct mmio_space *out)
{
    struct vrange_block blk;
    int err = vrange_alloc(&p->vr, size, &blk);
    if (err)
        return err;
    out->va = blk.va;
    out->size = blk.size;
    return 0;
}

/*
 * mmio_map_phys with the leaf flags `flags`, recording `offset` (the page
 * offset of the pointer ioremap hands out) in the tag.  `fn` names the
 * public call in log lines.
 */
static int map_block(struct mmio_pool *p, const char *fn, const struct mmio_space *space,
                     struct pt_mapper *mapper, phys_addr_t pa, uint64_t length,
                     uint64_t offset, uint64_t flags)
{
    int err = map_args_check(p, fn, space, mapper, pa, length);
    if (err)
        return err;
    uint64_t map_size = align_up_u64(length, PAGE_SIZE);   /* <= space->size */
    uint64_t tag;
    err = vrange_claim(&p->vr, block_of(space), &tag);
    if (err)
        return err;
    if (tag != 0) {
        vrange_unclaim(&p->vr, space->va, tag);
        mm_printf("%s: va %#lx already maps %#lx bytes\n", fn,
                  (unsigned long)space->va.raw, (unsigned long)tag_size(tag));
        return -MM_EEXIST;
    }

    /* Nothing to flush: a block leaves the pool with no TLB entry on any
     * CPU (release flushes before giving it back, and the range starts out
     * unmapped), and x86 never caches not-present entries. */
    struct pt_flush tok PT_FLUSH_SCOPED = PT_FLUSH_INIT;
    err = pt_map_range(mapper, space->va, pa, map_size, flags, PAGE_1G_SIZE, &tok);
    pt_flush_ignore(&tok);
    vrange_unclaim(&p->vr, space->va, err ? 0 : tag_pack(map_size, offset, mapper->top_pa.raw));
    if (err)
        mm_printf("%s: mapping va %#lx -> pa %#lx (%#lx bytes) failed: %d\n", fn,
                  (unsigned long)space->va.raw, (unsigned long)pa.raw,
                  (unsigned long)map_size, err);
    return err;
}

int mmio_map_phys(struct mmio_pool *p, const struct mmio_space *space,
                  struct pt_mapper *mapper, phys_addr_t pa, uint64_t length)
{
    return map_block(p, "mmio_map_phys", space, mapper, pa, length, 0, MMIO_PTE_FLAGS);
}

/* Is `mapper` the one that may unmap what `tag` records?  0, or the error
 * with its one log line. */
static int mapper_check(const char *fn, uint64_t va, uint64_t tag, const struct pt_mapper *mapper)
{
    uint64_t top_pa = tag_top_pa(tag);
    if (mapper && mapper->top_pa.raw == top_pa && !mapper->readonly)
        return 0;
    if (mapper && mapper->top_pa.raw == top_pa) {
        mm_printf("%s: read-only mapper cannot unmap va %#lx\n", fn, (unsigned long)va);
        return -MM_EPERM;
    }
    mm_printf("%s: va %#lx was mapped in table %#lx, not in %#lx\n", fn, (unsigned long)va,
              (unsigned long)top_pa, mapper ? (unsigned long)mapper->top_pa.raw : 0ul);
    return -MM_EINVAL;
}

/*
 * Unmap the claimed block `space`, whose tag is `tag`, flush, and free it;
 * or, if that fails, end the claim and keep it.  `fn` names the caller in
 * logs.
 */
static int unmap_claimed(struct mmio_pool *p, const char *fn, const struct mmio_space *space,
                         struct pt_mapper *mapper, uint64_t tag)
{
    int err = mapper_check(fn, space->va.raw, tag, mapper);
    if (err) {
        vrange_unclaim(&p->vr, space->va, tag);
        return err;
    }
    struct pt_flush tok PT_FLUSH_SCOPED = PT_FLUSH_INIT;
    err = pt_unmap_range(mapper, space->va, tag_size(tag), p->free_tables, &tok);
    pt_flush(&tok);     /* one token for the whole range: one shootdown */
    if (err) {
        /* Someone changed our entries behind our back: keep the block. */
        vrange_unclaim(&p->vr, space->va, tag);
        mm_printf("%s: unmapping va %#lx (%#lx bytes) failed: %d\n", fn,
                  (unsigned long)space->va.raw, (unsigned long)tag_size(tag), err);
        return err;
    }
    vrange_free_claimed(&p->vr, space->va);
    return 0;
}

/*
 * Release the block `space` for mmio_release and mmio_iounmap: free it at
 * once when nothing is mapped (one hold of the lock), else claim it and
 * unmap_claimed().  `fn` names the caller in logs.
 */
static inline int release_block(struct mmio_pool *p, const char *fn,
                                const struct mmio_space *space, struct pt_mapper *mapper)
{
    uint64_t tag;
    int err = vrange_release(&p->vr, block_of(space), &tag);
    if (err != VRANGE_CLAIMED)
        return err;     /* 0: freed; < 0: refused (logged) */
    return unmap_claimed(p, fn, space, mapper, tag);
}

int mmio_release(struct mmio_pool *p, const struct mmio_space *space,
                 struct pt_mapper *mapper)
{
    /* size 0 is refused by vrange_release (-MM_EINVAL, one log line). */
    return release_block(p, "mmio_release", space, mapper);
}

/* The leaf flags of `mode`; false (logged) for an unknown mode, or WC
 * before the PAT is programmed (entry 1 would still mean WT). */
static bool mode_flags(phys_addr_t pa, enum mm_cache_mode mode, uint64_t *flags)
{
    switch (mode) {
    case MM_CACHE_UC:
        *flags = MMIO_PTE_FLAGS;
        return true;
    case MM_CACHE_WB_RO:
        *flags = MMIO_PTE_FLAGS_WB_RO;
        return true;
    case MM_CACHE_WC:
        *flags = MMIO_PTE_FLAGS_WC;
        if (mm_pat_programmed())
            return true;
        mm_printf("mmio_ioremap: pa %#lx: write-combining needs mm_pat_init_cpu() first\n",
                  (unsigned long)pa.raw);
        return false;
    }
    mm_printf("mmio_ioremap: pa %#lx: unknown cache mode %d\n", (unsigned long)pa.raw,
              (int)mode);
    return false;
}

void *mmio_ioremap_mode(struct mmio_pool *p, struct pt_mapper *mapper, phys_addr_t pa,
                        uint64_t size, enum mm_cache_mode mode)
{
    uint64_t offset = pa.raw & (PAGE_SIZE - 1);
    uint64_t flags;
    if (!mode_flags(pa, mode, &flags))
        return NULL;
    if (size == 0 || size > MMIO_MAX_SIZE - offset) {
        mm_printf("mmio_ioremap: pa %#lx size %#lx: size not in 1..%#lx\n",
                  (unsigned long)pa.raw, (unsigned long)size,
                  (unsigned long)(MMIO_MAX_SIZE - offset));
        return NULL;
    }
    if (!pa_in_width(p, "mmio_ioremap", pa.raw, size))
        return NULL;
    uint64_t length = align_up_u64(offset + size, PAGE_SIZE);
    struct mmio_space space;
    if (mmio_create(p, length, &space) != 0)
        return NULL;
    if (map_block(p, "mmio_ioremap", &space, mapper, PA(pa.raw - offset), length, offset,
                  flags) != 0) {
        /* Only a caller misusing a stale handle to this block (another
         * CPU mapping or releasing it right now) can make this fail. */
        int err = mmio_release(p, &space, mapper);
        if (err)
            mm_printf("mmio_ioremap: giving back va %#lx failed (%d): block lost\n",
                      (unsigned long)space.va.raw, err);
        return NULL;
    }
    return (void *)(uintptr_t)(space.va.raw + offset);
}

void *mmio_ioremap(struct mmio_pool *p, struct pt_mapper *mapper, phys_addr_t pa,
                   uint64_t size)
{
    return mmio_ioremap_mode(p, mapper, pa, size, MM_CACHE_UC);
}

int mmio_iounmap(struct mmio_pool *p, struct pt_mapper *mapper, void *va)
{
    uint64_t ptr = (uint64_t)(uintptr_t)va;
    struct vrange_block blk;
    uint64_t tag;
    /* Look-up and claim in one lock hold: a racing iounmap of the same
     * pointer cannot free the block and let a new ioremap reuse it. */
    int err = vrange_claim_at(&p->vr, VA(align_down_u64(ptr, PAGE_SIZE)), &blk, &tag);
    if (err)
        return err;
    if (tag_offset(tag) != (ptr & (PAGE_SIZE - 1))) {
        vrange_unclaim(&p->vr, blk.va, tag);
        mm_printf("mmio_iounmap: %p is not what mmio_ioremap returned (%#lx)\n", va,
                  (unsigned long)(blk.va.raw + tag_offset(tag)));
        return -MM_EINVAL;
    }
    if (tag == 0) {                 /* created but never mapped */
        vrange_free_claimed(&p->vr, blk.va);
        return 0;
    }
    struct mmio_space space = { blk.va, blk.size };
    return unmap_claimed(p, "mmio_iounmap", &space, mapper, tag);
}

/* ----------------------------------------------------- queries and checks */

void mmio_pool_free_counts(struct mmio_pool *p, uint64_t out[MMIO_NR_ORDERS])
{
    struct vrange_stats s;
    vrange_stats(&p->vr, &s);
    for (unsigned k = 0; k < MMIO_NR_ORDERS; k++)
        out[k] = s.free_blocks[k];
}

void mmio_pool_stats(struct mmio_pool *p, struct mmio_stats *out)
{
    struct vrange_stats s;
    vrange_stats(&p->vr, &s);
    for (unsigned k = 0; k < MMIO_NR_ORDERS; k++)
        out->free_blocks[k] = s.free_blocks[k];
    out->free_bytes = s.free_bytes;
    out->alloc_blocks = s.alloc_blocks;
    out->alloc_bytes = s.alloc_bytes;
    out->node_frames = s.node_frames;
    out->hash_frames = s.hash_frames;
    out->nodes_in_use = s.nodes_in_use;
    out->node_slots_free = s.node_slots_free;
}

void mmio_pool_dump(struct mmio_pool *p)
{
    struct mmio_stats s;
    char free_s[24], alloc_s[24], block_s[24];
    mmio_pool_stats(p, &s);
    mm_format_size(free_s, sizeof free_s, s.free_bytes, false);
    mm_format_size(alloc_s, sizeof alloc_s, s.alloc_bytes, false);
    mm_printf("mmio pool [%#lx, %#lx): %s free, %lu blocks / %s allocated\n",
              (unsigned long)MMIO_POOL_BASE, (unsigned long)MMIO_POOL_END, free_s,
              (unsigned long)s.alloc_blocks, alloc_s);
    for (unsigned k = 0; k < MMIO_NR_ORDERS; k++) {
        if (s.free_blocks[k] == 0)
            continue;
        mm_format_size(block_s, sizeof block_s, PAGE_SIZE << k, false);
        mm_printf("  order %2u %10s blocks: %lu free\n", k, block_s,
                  (unsigned long)s.free_blocks[k]);
    }
    mm_printf("  bookkeeping: %lu node frames (%lu nodes, %lu free slots), %lu hash frames\n",
              (unsigned long)s.node_frames, (unsigned long)s.nodes_in_use,
              (unsigned long)s.node_slots_free, (unsigned long)s.hash_frames);
}

int mmio_pool_check(struct mmio_pool *p)
{
    return vrange_check(&p->vr);
}
