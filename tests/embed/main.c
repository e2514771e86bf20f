/*
 * tests/embed/main.c - the embedding example's kernel main: bring up the
 * memory subsystem through embed_mm_setup() and use it the way a host
 * kernel would.
 *
 *   frames:   buddy_alloc / buddy_free of 1 and 16 frames, contents written
 *             and checked through the direct map (pa_to_ptr), and two
 *             refused calls (bad count, double free) that must change
 *             nothing;
 *   mapping:  kmapper_lock, pt_map_phys of a frame at a free kernel address,
 *             pt_flush, pt_translate, access through the new address, a
 *             nested kmapper_lock whose mapper is read-only, pt_unmap_phys,
 *             pt_flush, kmapper_unlock;
 *   ioremap:  mm_ioremap of the VGA text buffer at 0xB8000, check of the
 *             mapping (uncached, no-execute), a cell written and read back,
 *             mm_iounmap, and a second mm_iounmap that must be refused;
 *   aliases:  RAM the direct map covers must not get a second, uncached
 *             mapping: mm_ioremap of a buddy frame and of this image must
 *             return NULL, and mm_direct_map_contains must say true for
 *             the frame (on Path B this holds only because the set-up
 *             called mm_direct_map_describe);
 *   conformance: the library's mm_conformance suite (KTAP) on this glue;
 *   balance:  buddy usage and MMIO pool counters exactly as before.
 * The first failed check prints "embed: FAIL: ..." and exits QEMU with
 * EMBED_EXIT_FAIL (status 35); success prints "embed: PASS" and exits with
 * EMBED_EXIT_PASS (status 33).  A CPU exception prints the frame and exits
 * with EMBED_EXIT_PANIC (status 37), like a library panic.
 */
#include <mm/arch.h>
#include <mm/buddy.h>
#include <mm/conformance.h>
#include <mm/kmapper.h>
#include <mm/init.h>
#include <mm/log.h>
#include <mm/mmio.h>
#include <mm/multiboot2.h>
#include <mm/paging.h>
#include <mm/pat.h>
#include "embed.h"

/* A kernel address nothing else uses: 2 MiB into the GiB the layout keeps
 * for self-tests (slot 324), away from mm_conformance's page at its base.
 * It must lie in a range of include/mm/layout.h: after init the kernel
 * mapper refuses a kernel va whose top-level slot has no table (the
 * kernel half is fixed, so that address spaces can share it). */
#define TEST_VA (MM_SELFTEST_BASE + 2 * MiB)

#define VGA_TEXT_PA   UINT64_C(0xb8000)
#define VGA_TEXT_SIZE (80 * 25 * 2)

/* ---------------------------------------------------------------- image */

void embed_image_params(struct mm_boot_params *p, uint64_t data_flags)
{
    p->image_pa_start = PA((uint64_t)__image_pa_start);
    p->image_pa_end = PA(align_up_u64((uint64_t)__image_pa_end, PAGE_SIZE));
    p->image_va_offset = KERNEL_VMA;          /* va = pa + KERNEL_VMA */
    p->sections[0] = (struct mm_image_section){ "embed text", VA(__text_start),
        (uint64_t)(__text_end - __text_start), PTE_KERNEL_TEXT };
    p->sections[1] = (struct mm_image_section){ "embed rodata", VA(__rodata_start),
        (uint64_t)(__rodata_end - __rodata_start), PTE_KERNEL_RO };
    p->sections[2] = (struct mm_image_section){ "embed data+bss", VA(__data_start),
        (uint64_t)(__data_end - __data_start), data_flags };
    p->nsections = 3;
}

/* --------------------------------------------------------------- checks */

static _Noreturn void fail(const char *what, const char *func, int line)
{
    mm_printf("embed: FAIL: %s: line %d: %s\n", func, line, what);
    qemu_exit(EMBED_EXIT_FAIL);
}

/* Stop at the first false condition, naming it. */
#define CHECK(cond)                                                           \
    do {                                                                      \
        if (!(cond))                                                          \
            fail(#cond, __func__, __LINE__);                                  \
    } while (0)

/* Stop unless `call` returns 0; print the error it returned. */
#define CHECK_OK(call)                                                        \
    do {                                                                      \
        int rc_ = (call);                                                     \
        if (rc_ != 0) {                                                       \
            mm_printf("embed: %s returned %d (%s)\n", #call, rc_,             \
                      mm_strerror(rc_));                                      \
            fail(#call " == 0", __func__, __LINE__);                          \
        }                                                                     \
    } while (0)

/* ------------------------------------------------------------ exceptions */

struct exception_frame {            /* as pushed by entry.asm's stubs */
    uint64_t vector, error, rip, cs, rflags, rsp, ss;
};

struct idt_gate {
    uint16_t offset_low;
    uint16_t selector;
    uint8_t ist;
    uint8_t type_attr;
    uint16_t offset_mid;
    uint32_t offset_high;
    uint32_t zero;
} __attribute__((packed));

extern const uint64_t exception_stubs[32];     /* entry.asm */
static struct idt_gate idt[32];

static void idt_init(void)
{
    for (unsigned v = 0; v < 32; v++) {
        uint64_t a = exception_stubs[v];
        idt[v] = (struct idt_gate){ (uint16_t)a, 0x08, 0, 0x8e,   /* present, interrupt gate */
                                    (uint16_t)(a >> 16), (uint32_t)(a >> 32), 0 };
    }
    struct __attribute__((packed)) { uint16_t limit; uint64_t base; } idtr =
        { sizeof(idt) - 1, (uint64_t)idt };
    __asm__ volatile("lidt %0" : : "m"(idtr));
}

_Noreturn void embed_exception(const struct exception_frame *f);
_Noreturn void embed_exception(const struct exception_frame *f)
{
    uint64_t cr2;
    __asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
    mm_printf("\nembed: PANIC: CPU exception %lu (error %#lx) at rip %#lx, cr2 %#lx\n",
              (unsigned long)f->vector, (unsigned long)f->error,
              (unsigned long)f->rip, (unsigned long)cr2);
    qemu_exit(EMBED_EXIT_PANIC);
}

/* ----------------------------------------------------------------- frames */

static uint64_t pattern(phys_addr_t pa, uint64_t i)
{
    return (pa.raw + i) * UINT64_C(0x9e3779b97f4a7c15);
}

static void fill_frames(phys_addr_t pa, uint64_t npages)
{
    uint64_t *p = pa_to_ptr(pa);
    for (uint64_t i = 0; i < npages * PAGE_SIZE / 8; i++)
        p[i] = pattern(pa, i);
}

static bool frames_intact(phys_addr_t pa, uint64_t npages)
{
    const uint64_t *p = pa_to_ptr(pa);
    for (uint64_t i = 0; i < npages * PAGE_SIZE / 8; i++) {
        if (p[i] != pattern(pa, i))
            return false;
    }
    return true;
}

static void test_frames(struct buddy *b)
{
    phys_addr_t one, sixteen, unused;

    CHECK_OK(buddy_alloc(b, 1, &one));
    CHECK_OK(buddy_alloc(b, 16, &sixteen));
    CHECK(is_aligned_u64(one.raw, PAGE_SIZE));
    CHECK(is_aligned_u64(sixteen.raw, 16 * PAGE_SIZE));
    CHECK(one.raw + PAGE_SIZE <= sixteen.raw || one.raw >= sixteen.raw + 16 * PAGE_SIZE);

    fill_frames(one, 1);
    fill_frames(sixteen, 16);
    CHECK(frames_intact(one, 1));
    CHECK(frames_intact(sixteen, 16));

    mm_printf("embed: two refused calls follow; each logs one line\n");
    CHECK(buddy_alloc(b, 3, &unused) == -MM_EINVAL);     /* not a power of two */
    CHECK_OK(buddy_free(b, one, 1));
    CHECK(buddy_free(b, one, 1) == -MM_ENOENT);          /* double free */
    CHECK_OK(buddy_free(b, sixteen, 16));
    buddy_check(b);                                      /* panics if broken */
    mm_printf("embed: frames ok (1 frame at %#lx, 16 frames at %#lx)\n",
              (unsigned long)one.raw, (unsigned long)sixteen.raw);
}

/* ---------------------------------------------------------------- mapping */

static void test_mapping(struct buddy *b)
{
    phys_addr_t frame;
    struct pt_mapping m;
    struct kmapper km, nested;
    struct pt_flush tok PT_FLUSH_SCOPED = PT_FLUSH_INIT;

    CHECK_OK(buddy_alloc(b, 1, &frame));
    fill_frames(frame, 1);

    CHECK(kmapper_lock(&km));                            /* outermost: writable */
    CHECK(pt_translate(&km.mapper, VA(TEST_VA), &m) == -MM_ENOENT);
    CHECK_OK(pt_map_phys(&km.mapper, VA(TEST_VA), frame, PTE_KERNEL_RW, &tok));
    pt_flush(&tok);

    /* Re-entering on the same CPU (as an interrupt handler would) gives a
     * read-only mapper: it can look, not change. */
    CHECK(!kmapper_lock(&nested));
    CHECK(nested.mapper.readonly);
    CHECK_OK(pt_translate(&nested.mapper, VA(TEST_VA), &m));
    CHECK(pt_unmap_phys(&nested.mapper, VA(TEST_VA), true, NULL, &tok) == -MM_EPERM);
    CHECK(!pt_flush_pending(&tok));                      /* failed calls owe no flush */
    kmapper_unlock(&nested);

    CHECK_OK(pt_translate(&km.mapper, VA(TEST_VA), &m));
    CHECK(m.pa.raw == frame.raw);
    CHECK(m.page_size == PAGE_SIZE);
    CHECK((m.flags & (PTE_WRITE | PTE_NX)) == (PTE_WRITE | PTE_NX));

    volatile uint64_t *v = (volatile uint64_t *)TEST_VA;
    CHECK(v[0] == pattern(frame, 0) && v[511] == pattern(frame, 511));
    v[7] = UINT64_C(0x0123456789abcdef);
    CHECK(((uint64_t *)pa_to_ptr(frame))[7] == UINT64_C(0x0123456789abcdef));

    struct pt_mapping old;
    CHECK_OK(pt_unmap_phys(&km.mapper, VA(TEST_VA), true, &old, &tok));
    pt_flush(&tok);
    CHECK(old.pa.raw == frame.raw);
    CHECK(pt_translate(&km.mapper, VA(TEST_VA), &m) == -MM_ENOENT);
    kmapper_unlock(&km);

    CHECK_OK(buddy_free(b, frame, 1));
    mm_printf("embed: mapping ok (frame %#lx at va %#lx, mapped and unmapped)\n",
              (unsigned long)frame.raw, (unsigned long)TEST_VA);
}

/* ---------------------------------------------------------------- ioremap */

/*
 * Which physical window the VGA adapter decodes is set by its Graphics
 * Controller register 6 (memory map select, bits 2-3).  A BIOS boot leaves
 * text mode, window B8000-BFFFF.  UEFI firmware leaves a graphics mode whose
 * window is A0000-AFFFF only: a read at B8000 then returns all ones because
 * nothing answers, and QEMU keeps that window while the mode is set.
 */
#define VGA_GC_INDEX   0x3ce
#define VGA_GC_DATA    0x3cf
#define VGA_GC_MISC    6
#define VGA_MAP_MASK   0x0c
#define VGA_MAP_A0000_128K 0x00
#define VGA_MAP_B8000  0x0c
#define VGA_WINDOW_PA  UINT64_C(0xa0000)
#define VGA_WINDOW_SIZE (64 * KiB)

static bool vga_decodes_text_buffer(void)
{
    uint8_t misc;
    __asm__ volatile("outb %b0, %w1" : : "a"(VGA_GC_MISC), "Nd"(VGA_GC_INDEX));
    __asm__ volatile("inb %w1, %b0" : "=a"(misc) : "Nd"(VGA_GC_DATA));
    uint8_t map = misc & VGA_MAP_MASK;
    return map == VGA_MAP_B8000 || map == VGA_MAP_A0000_128K;
}

/* mm_ioremap, and check the new mapping in the kernel table: inside the
 * MMIO pool, pointing at pa, uncached and no-execute. */
static volatile void *ioremap_checked(phys_addr_t pa, uint64_t size)
{
    volatile void *p = mm_ioremap(pa, size);
    CHECK(p != NULL);
    uint64_t va = (uint64_t)(uintptr_t)p;
    CHECK(va >= MMIO_POOL_BASE && va < MMIO_POOL_END);

    struct pt_mapper kernel = kmapper_peek();
    struct pt_mapping m;
    CHECK_OK(pt_translate(&kernel, VA(va), &m));
    CHECK(m.pa.raw == pa.raw);
    CHECK((m.flags & (PTE_PCD | PTE_PWT | PTE_NX)) == (PTE_PCD | PTE_PWT | PTE_NX));
    mm_printf("embed: ioremap %#lx (+%#lx) -> %#lx\n", (unsigned long)pa.raw,
              (unsigned long)size, (unsigned long)va);
    return p;
}

/* mm_iounmap, and check the mapping is gone. */
static void iounmap_checked(volatile void *p)
{
    struct pt_mapper kernel = kmapper_peek();
    struct pt_mapping m;
    CHECK_OK(mm_iounmap((void *)p));
    CHECK(pt_translate(&kernel, VA((uint64_t)(uintptr_t)p), &m) == -MM_ENOENT);
}

static void test_ioremap(void)
{
    volatile uint16_t *text = ioremap_checked(PA(VGA_TEXT_PA), VGA_TEXT_SIZE);
    volatile uint16_t *cell = &text[80 * 25 - 1];        /* bottom-right cell */
    volatile uint16_t *window = NULL;
    if (!vga_decodes_text_buffer()) {
        mm_printf("embed: the VGA is in a graphics mode (UEFI) and decodes only "
                  "A0000-AFFFF; the round trip uses that window\n");
        window = ioremap_checked(PA(VGA_WINDOW_PA), VGA_WINDOW_SIZE);
        cell = window;
    }

    /* 'E', white on blue.  The page is not RAM: reading the value back
     * proves the mapping reaches the adapter's memory. */
    *cell = 0x1f45;
    uint16_t readback = *cell;
    if (readback != 0x1f45)
        mm_printf("embed: VGA cell read back as %#x\n", readback);
    CHECK(readback == 0x1f45);

    if (window)
        iounmap_checked(window);
    iounmap_checked(text);
    mm_printf("embed: a refused call follows; it logs one line\n");
    CHECK(mm_iounmap((void *)text) == -MM_ENOENT);       /* already unmapped */
    mm_printf("embed: ioremap ok\n");
}

/* Write-combining (docs/INTEGRATION.md, section 8e): after this CPU's
 * mm_pat_init_cpu, mm_ioremap_wc maps with PWT alone, PAT entry 1 = WC. */
static void test_ioremap_wc(void)
{
    CHECK(mm_pat_init_cpu() == 0);
    CHECK(arch_rdmsr(MM_MSR_PAT) == MM_PAT_VALUE);
    volatile uint16_t *text = mm_ioremap_wc(PA(VGA_TEXT_PA), VGA_TEXT_SIZE);
    CHECK(text != NULL);
    struct pt_mapper m = kmapper_peek();
    struct pt_mapping map;
    CHECK(pt_translate(&m, VA((uintptr_t)text), &map) == 0);
    CHECK(map.pa.raw == VGA_TEXT_PA);
    CHECK(mm_pat_type_of_flags(map.flags) == MM_PAT_WC);
    iounmap_checked(text);
    mm_printf("embed: ioremap_wc ok\n");
}

/* ---------------------------------------------------------------- aliases */

/*
 * x86 forbids mapping the same bytes write-back (direct map) and uncached
 * (ioremap) at once, so mm_ioremap refuses anything the direct map covers.
 * The library knows what that is from mm_init (Path A) or from
 * mm_direct_map_describe (Path B).
 */
static void test_ioremap_refuses_ram(struct buddy *b)
{
    phys_addr_t frame;
    phys_addr_t image = PA((uint64_t)__image_pa_start);

    CHECK_OK(buddy_alloc(b, 1, &frame));
    CHECK(mm_direct_map_contains(frame, PAGE_SIZE));
    CHECK(mm_direct_map_contains(image, PAGE_SIZE));
    mm_printf("embed: two refused calls follow; each logs one line\n");
    CHECK(mm_ioremap(frame, PAGE_SIZE) == NULL);         /* a buddy frame */
    CHECK(mm_ioremap(image, PAGE_SIZE) == NULL);         /* this kernel's image */
    CHECK_OK(buddy_free(b, frame, 1));
    mm_printf("embed: aliases ok (frame %#lx and the image at %#lx refused)\n",
              (unsigned long)frame.raw, (unsigned long)image.raw);
}

/* ---------------------------------------------------------- conformance */

/*
 * The library's mm_conformance suite over this example's glue: one CPU (no
 * run_on_cpu), the section list of the set-up, the buddy's frames.  It runs
 * with interrupts enabled, the 8259s masked, so that the irq check can
 * start from IF=1; interrupts are disabled again afterwards.  Output is a
 * top-level KTAP document of its own.
 */
static void test_conformance(const struct embed_mm *mm)
{
    struct mm_conformance_env env = {
        .ncpus = 1,
        .run_on_cpu = NULL,
        .params = mm->params,
        .frames = buddy_frame_allocator(mm->buddy),
        .indent = "    ",
    };
    pic_mask_all();
    mm_printf("KTAP version 1\n1..1\n");
    __asm__ volatile("sti" : : : "memory");
    int failed = mm_conformance_run(&env);
    __asm__ volatile("cli" : : : "memory");
    mm_printf("%sok 1 mm_conformance\n", failed ? "not " : "");
    if (failed) {
        mm_printf("embed: mm_conformance: %d check(s) failed\n", failed);
        qemu_exit(EMBED_EXIT_FAIL);
    }
}

/* ------------------------------------------------------------------- main */

_Noreturn void embed_main(uint32_t magic, uint64_t mbi_pa);
_Noreturn void embed_main(uint32_t magic, uint64_t mbi_pa)
{
    serial_init();
    idt_init();
    mm_printf("\nembed: libmm embedding example, multiboot2 information at %#lx\n",
              (unsigned long)mbi_pa);
    CHECK(magic == MB2_BOOTLOADER_MAGIC);

    struct embed_mm mm;
    embed_mm_setup(mbi_pa, &mm);
    CHECK(mm.buddy != NULL && mm.mmio != NULL);
    mm_printf("embed: memory set up with %s\n", mm.how);

    struct buddy_usage before, after;
    struct mmio_stats pool_before, pool_after;
    buddy_usage(mm.buddy, &before);
    mmio_pool_stats(mm.mmio, &pool_before);

    test_frames(mm.buddy);
    test_mapping(mm.buddy);
    test_ioremap();
    test_ioremap_wc();
    test_ioremap_refuses_ram(mm.buddy);
    test_conformance(&mm);

    buddy_usage(mm.buddy, &after);
    mmio_pool_stats(mm.mmio, &pool_after);
    mm_printf("embed: buddy used %lu -> %lu frames, free %lu -> %lu\n",
              (unsigned long)before.used_npages, (unsigned long)after.used_npages,
              (unsigned long)before.free_npages, (unsigned long)after.free_npages);
    CHECK(after.used_npages == before.used_npages);
    CHECK(after.free_npages == before.free_npages);
    CHECK(pool_after.alloc_blocks == 0 && pool_after.node_frames == 0);
    CHECK(pool_after.free_bytes == pool_before.free_bytes);
    mmio_pool_check(mm.mmio);
    buddy_check(mm.buddy);

    mm_printf("embed: PASS\n");
    qemu_exit(EMBED_EXIT_PASS);
}
