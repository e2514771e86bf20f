/*
 * harness.c - the host side of the platform interface, simulated physical
 * memory and the test runner for the host tests (see harness.h).
 */
#define _GNU_SOURCE
#include "harness.h"
#include <mm/init.h>
#include <mm/kmapper.h>
#include <mm/layout.h>
#include <mm/paging.h>
#include <mm/multiboot2.h>

#include <pthread.h>
#include <sys/mman.h>
#include <mm/frame.h>
#include <mm/platform.h>
#include "tlb_model.h"

int harness_failed, harness_total_failed, harness_count;
jmp_buf *harness_panic_jmp;
char harness_panic_msg[256];
int harness_quiet;
unsigned long harness_log_lines;
size_t harness_longest_line;

static void *sim_base;
static uint64_t sim_size;

void harness_run(const char *name, void (*fn)(void))
{
    harness_failed = 0;
    fn();
    harness_count++;
    if (harness_failed) {
        harness_total_failed++;
        printf("not ok %d - %s\n", harness_count, name);
    } else {
        printf("ok %d - %s\n", harness_count, name);
    }
    fflush(stdout);
}

int harness_finish(void)
{
    printf("1..%d\n", harness_count);
    printf("# %d passed, %d failed\n", harness_count - harness_total_failed,
           harness_total_failed);
    return harness_total_failed ? 1 : 0;
}

void mm_platform_puts(const char *s)
{
    harness_log_lines++;
    if (strlen(s) > harness_longest_line)
        harness_longest_line = strlen(s);
    if (!harness_quiet)
        fprintf(stderr, "  [mm] %s", s);
}

_Noreturn void mm_platform_panic(const char *msg)
{
    snprintf(harness_panic_msg, sizeof(harness_panic_msg), "%s", msg);
    if (harness_panic_jmp)
        longjmp(*harness_panic_jmp, 1);
    fprintf(stderr, "PANIC: %s\n", msg);
    abort();
}

/* The state behind the inlined hooks of mm_platform_inline.h: each thread
 * of an SMP-style host test sets its own simulated CPU id. */
__thread unsigned harness_cpu_id;
__thread unsigned long harness_irq_enabled = 1;

unsigned long harness_shootdowns;
uint64_t harness_shootdown_va, harness_shootdown_npages;
mm_cpumask_t harness_shootdown_targets;

void mm_platform_tlb_shootdown(mm_cpumask_t targets, virt_addr_t va, uint64_t npages)
{
    __atomic_store_n(&harness_shootdown_targets, targets, __ATOMIC_RELAXED);
    __atomic_store_n(&harness_shootdown_va, va.raw, __ATOMIC_RELAXED);
    __atomic_store_n(&harness_shootdown_npages, npages, __ATOMIC_RELAXED);
    __atomic_fetch_add(&harness_shootdowns, 1, __ATOMIC_RELAXED);
    tlb_model_shootdown(targets, va, npages);   /* those simulated CPUs, if on */
}

void *sim_mem_init(uint64_t size)
{
    sim_base = mmap(NULL, size, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (sim_base == MAP_FAILED) {
        perror("sim_mem_init: mmap");
        exit(2);
    }
    sim_size = size;
    mm_direct_map_offset = (uint64_t)(uintptr_t)sim_base;
    return sim_base;
}

void sim_mem_fini(void)
{
    if (sim_base)
        munmap(sim_base, sim_size);
    sim_base = NULL;
    sim_size = 0;
}

void *sim_mem_init_aligned(uint64_t size, uint64_t align)
{
    /* Map align bytes more, then give back the slack on both sides, so
     * that sim_mem_fini unmaps exactly what is left. */
    uint8_t *raw = mmap(NULL, size + align, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED) {
        perror("sim_mem_init_aligned: mmap");
        exit(2);
    }
    uint8_t *base = (uint8_t *)(uintptr_t)align_up_u64((uint64_t)(uintptr_t)raw, align);
    if (base > raw)
        munmap(raw, (size_t)(base - raw));
    if (raw + align > base)
        munmap(base + size, (size_t)(raw + align - base));
    sim_base = base;
    sim_size = size;
    mm_direct_map_offset = (uint64_t)(uintptr_t)sim_base;
    return sim_base;
}

uint64_t sim_mem_size(void)
{
    return sim_size;
}

/*
 * Describe the simulated RAM as the direct map (mm_direct_map_describe),
 * for tests whose code asks mm_direct_map_contains, e.g. the copy
 * helpers with a foreign frame.  A minimal multiboot2 structure in host
 * memory lists [0, sim_mem_size()) as RAM.
 */
void harness_describe_direct_map(void)
{
    static uint64_t blob[8];
    uint32_t *w = (uint32_t *)blob;
    w[0] = sizeof(blob);                 /* total_size */
    w[1] = 0;
    w[2] = 6;                            /* memory map tag */
    w[3] = 16 + 24;                      /* one 24-byte entry */
    w[4] = 24;                           /* entry_size */
    w[5] = 0;                            /* entry_version */
    blob[3] = 0;                         /* base_addr */
    blob[4] = sim_size;                  /* length */
    blob[5] = 1;                         /* type 1 (RAM), reserved 0 */
    w[12] = 0;                           /* end tag */
    w[13] = 8;
    static struct mb2_info info;
    char err[MB2_ERR_LEN];
    if (mb2_parse(&info, blob, PA(sim_size), sizeof(blob), err, sizeof(err)) != 0 ||
        mm_direct_map_describe(&info, sim_size) != 0) {
        fprintf(stderr, "harness_describe_direct_map: %s\n", err);
        exit(2);
    }
}

const uint64_t harness_kernel_vas[HARNESS_KERNEL_VAS] = {
    MM_DIRECT_MAP_BASE, MMIO_POOL_BASE + 0x5000, MM_KERNEL_IMAGE_BASE,
};

phys_addr_t harness_kernel_table(struct frame_allocator *fa, phys_addr_t data_pa)
{
    struct pt_mapper k;
    if (pt_mapper_create(fa, &k) != 0) {
        fprintf(stderr, "harness_kernel_table: no frame for the top table\n");
        exit(2);
    }
    for (unsigned i = 0; i < HARNESS_KERNEL_VAS; i++) {
        struct pt_flush tok = PT_FLUSH_INIT;
        if (pt_map_phys(&k, VA(harness_kernel_vas[i]), data_pa, PTE_KERNEL_RW, &tok) != 0) {
            fprintf(stderr, "harness_kernel_table: cannot map %#lx\n",
                    (unsigned long)harness_kernel_vas[i]);
            exit(2);
        }
        pt_flush_ignore(&tok);      /* the table is not loaded anywhere yet */
    }
    kmapper_setup(k.top_pa, fa);
    if (mm_kernel_half_prepare() != 0) {
        fprintf(stderr, "harness_kernel_table: mm_kernel_half_prepare failed\n");
        exit(2);
    }
    return k.top_pa;
}
