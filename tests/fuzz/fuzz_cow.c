/*
 * fuzz_cow.c - libFuzzer target for fork with copy-on-write: mm_as_clone,
 * the COW fault resolver (mm/cow.c), the frame counts (mm/frameref.c) and
 * unmap / destroy dropping them (mm/aspace.c).
 *
 * The input is an operation sequence over FUZZ_PROCS process slots that
 * share one small kernel table, run on FUZZ_CPUS simulated CPUs of the
 * TLB model (tlb_model.h), with frames from an allocator the input can
 * make run dry:
 *   fork (clone a live process into a free slot), write a byte, read a
 *   byte, map a zeroed page (private or MM_PROT_SHARED), unmap, copy to
 *   user (the kernel's write), exit (destroy), switch a CPU, set the
 *   allocator's budget.
 * Every user access goes through the TLB model on the CPU the input names
 * (switched to that process first): tlb_model_access gives the frame
 * (tlb_model_lookup), the byte is read or written through pa_to_ptr, and
 * a write fault calls mm_cow_fault and retries.
 * The model is byte level: each mapped page of a process names a cell
 * (NOFF bytes); a fork gives the child a copy of each private cell and
 * the same cell for each shared page.  Every read must return what the
 * model holds: what that process (or a sharer of a shared page) last
 * wrote.  An -MM_ENOMEM (fork, fault, map, copy to user, and unmap when
 * the page's table is shared and no frame is left to unshare it) must
 * change nothing the model can see.  After every operation no CPU holds a
 * stale translation.  At the end every process exits and every frame,
 * count tree frames included, is back.
 */
#define FUZZ_NAME     "fuzz_cow"
#define FUZZ_SIM_SIZE (64 * MiB)
#define FUZZ_FIRST_PA (1 * MiB)
#include "fuzz_util.h"

#include <mm/aspace.h>
#include <mm/init.h>
#include <mm/cow.h>
#include <mm/frameref.h>
#include <mm/kmapper.h>

#define FUZZ_PROCS 5
#define FUZZ_CPUS  4
#define NPAGES     6
#define NOFF       4
#define NCELLS     (FUZZ_PROCS * NPAGES * 2)
#define FOREIGN_PA UINT64_C(0x10000)
#define RW (MM_PROT_READ | MM_PROT_WRITE | MM_PROT_USER)

static const uint64_t page_va[NPAGES] = {
    0x1000, 0x2000, 0x1ff000, 0x200000, 0x40000000, UINT64_C(0x7fffffffe000),
};
static const unsigned offs[NOFF] = { 0, 1, 0x800, 0xfff };

struct cell { unsigned refs; uint8_t b[NOFF]; };
struct proc { bool alive; int cell[NPAGES]; bool shared[NPAGES]; };

static struct cell cells[NCELLS];
static struct proc pr[FUZZ_PROCS];
static struct mm_as as[FUZZ_PROCS];
static int cur[FUZZ_CPUS];             /* -1: the kernel table */
static uint64_t kernel_frames;

static int cell_new(const uint8_t *init)
{
    for (int i = 0; i < NCELLS; i++)
        if (cells[i].refs == 0) {
            cells[i].refs = 1;
            memcpy(cells[i].b, init, NOFF);
            return i;
        }
    fail("model out of cells", 0, 0);
}

static void switch_cpu(unsigned cpu, int p)
{
    harness_cpu_id = cpu;
    mm_as_switch(p < 0 ? NULL : &as[p]);
    cur[cpu] = p;
}

/* The frame of va on cpu after an access (the access succeeded). */
static uint8_t *byte_ptr(unsigned cpu, uint64_t va)
{
    phys_addr_t pa;
    if (!tlb_model_lookup(cpu, VA(va), &pa))
        fail("no TLB entry after a successful access", va, cpu);
    return pa_to_ptr(pa);
}

/* A user access on cpu running p; a write fault goes to the resolver.
 * 0 done, 1 not present, -MM_ENOMEM. */
static int access(unsigned cpu, int p, uint64_t va, bool write, uint8_t *val)
{
    switch_cpu(cpu, p);
    unsigned how = TLB_ACCESS_USER | (write ? TLB_ACCESS_WRITE : 0);
    enum tlb_model_result r = tlb_model_access(cpu, VA(va), how);
    for (unsigned tries = 0; r == TLB_FAULT_WRITE && tries < 2; tries++) {
        int res = mm_cow_fault(&as[p], VA(va), MM_PF_PRESENT | MM_PF_WRITE | MM_PF_USER);
        if (res == -MM_ENOMEM)
            return res;
        if (res != MM_COW_REUSED && res != MM_COW_COPIED)
            fail("write fault on a writable page not resolved", va, (uint64_t)res);
        r = tlb_model_access(cpu, VA(va), how);
    }
    if (r == TLB_FAULT_NOT_PRESENT)
        return 1;
    if (r != TLB_OK)
        fail("user access faulted", va, r);
    if (write)
        *byte_ptr(cpu, va) = *val;
    else
        *val = *byte_ptr(cpu, va);
    return 0;
}

static void op_fork(unsigned p, unsigned c)
{
    if (!pr[p].alive || pr[c].alive)
        return;
    uint64_t out = fa_out, meta = mm_frameref_frames();
    int err = mm_as_clone(&as[c], &as[p], &ffa);
    if (err == -MM_ENOMEM) {
        if (fa_out != out || mm_frameref_frames() != meta)
            fail("failed fork kept frames", fa_out - out, 0);
        return;
    }
    if (err)
        fail("fork failed", (uint64_t)err, p);
    pr[c] = pr[p];
    for (unsigned i = 0; i < NPAGES; i++) {
        int ce = pr[p].cell[i];
        if (ce < 0)
            continue;
        if (pr[p].shared[i])
            cells[ce].refs++;
        else
            pr[c].cell[i] = cell_new(cells[ce].b);
    }
}

static void op_write(unsigned cpu, unsigned p, unsigned i, unsigned o, uint8_t v)
{
    if (!pr[p].alive)
        return;
    int r = access(cpu, (int)p, page_va[i] + offs[o], true, &v);
    if (r == 1 && pr[p].cell[i] >= 0)
        fail("mapped page not present", page_va[i], p);
    if (r == 0 && pr[p].cell[i] < 0)
        fail("unmapped page written", page_va[i], p);
    if (r == 0)
        cells[pr[p].cell[i]].b[o] = v;
}

static void op_read(unsigned cpu, unsigned p, unsigned i, unsigned o)
{
    if (!pr[p].alive)
        return;
    uint8_t v = 0;
    int r = access(cpu, (int)p, page_va[i] + offs[o], false, &v);
    if ((r == 1) != (pr[p].cell[i] < 0))
        fail("presence differs from the model", page_va[i], p);
    if (r == 0 && v != cells[pr[p].cell[i]].b[o])
        fail("read differs from the model", page_va[i] + offs[o],
             (uint64_t)v << 8 | cells[pr[p].cell[i]].b[o]);
}

static void op_map_unmap(unsigned cpu, unsigned p, unsigned i, unsigned how)
{
    if (!pr[p].alive)
        return;
    harness_cpu_id = cpu;
    if (pr[p].cell[i] >= 0) {
        int err = mm_as_unmap(&as[p], VA(page_va[i]));
        if (err == -MM_ENOMEM)
            return;             /* no frame to unshare the table: nothing changed */
        if (err)
            fail("unmap failed", page_va[i], (uint64_t)err);
        cells[pr[p].cell[i]].refs--;
        pr[p].cell[i] = -1;
        return;
    }
    bool shared = how & 1;
    int err = mm_as_map_zeroed(&as[p], VA(page_va[i]), RW | (shared ? MM_PROT_SHARED : 0));
    if (err == -MM_ENOMEM)
        return;
    if (err)
        fail("map failed", page_va[i], (uint64_t)err);
    static const uint8_t zero[NOFF];
    pr[p].cell[i] = cell_new(zero);
    pr[p].shared[i] = shared;
}

/* The kernel writes v at offset o of page i of p (mm_copy_to_user). */
static void op_copy_to_user(unsigned cpu, unsigned p, unsigned i, unsigned o, uint8_t v)
{
    if (!pr[p].alive)
        return;
    harness_cpu_id = cpu;
    int err = mm_copy_to_user(&as[p], VA(page_va[i] + offs[o]), &v, 1);
    if (err == -MM_ENOMEM)
        return;
    if ((err == 0) != (pr[p].cell[i] >= 0))
        fail("copy_to_user result differs from the model", page_va[i], (uint64_t)err);
    if (err == 0)
        cells[pr[p].cell[i]].b[o] = v;
}

static void op_exit(unsigned p)
{
    if (!pr[p].alive)
        return;
    for (unsigned c = 0; c < FUZZ_CPUS; c++)
        if (cur[c] == (int)p)
            switch_cpu(c, -1);
    if (mm_as_destroy(&as[p]) != 0)
        fail("exit failed", p, 0);
    for (unsigned i = 0; i < NPAGES; i++)
        if (pr[p].cell[i] >= 0)
            cells[pr[p].cell[i]].refs--;
    pr[p].alive = false;
}

static void op_spawn(unsigned p)
{
    if (pr[p].alive)
        return;
    int err = mm_as_create(&as[p], &ffa);
    if (err == -MM_ENOMEM)
        return;
    if (err)
        fail("mm_as_create failed", (uint64_t)err, p);
    pr[p].alive = true;
    for (unsigned i = 0; i < NPAGES; i++)
        pr[p].cell[i] = -1;
}

static void run_op(struct reader *r)
{
    unsigned op = next_byte(r), x = next_byte(r), y = next_byte(r);
    unsigned p = x % FUZZ_PROCS, cpu = (x >> 4) % FUZZ_CPUS;
    unsigned i = y % NPAGES, o = (y >> 4) % NOFF;
    switch (op % 12) {
    case 0: case 1: op_fork(p, y % FUZZ_PROCS); break;
    case 2: case 3: case 4: op_write(cpu, p, i, o, (uint8_t)next_byte(r)); break;
    case 5: case 6: op_read(cpu, p, i, o); break;
    case 7: op_map_unmap(cpu, p, i, op >> 4); break;
    case 8: op_copy_to_user(cpu, p, i, o, (uint8_t)next_byte(r)); break;
    case 9: op_exit(p); break;
    case 10: op_spawn(p); break;
    default:
        if (op & 0x10)
            fa_budget = (op & 0x20) ? -1 : (long)(y % 8);
        else
            switch_cpu(cpu, (y & 1) && pr[p].alive ? (int)p : -1);
        break;
    }
}

/* Every live process reads every page on one CPU and agrees with the model. */
static void check_all(unsigned n)
{
    for (unsigned p = 0; p < FUZZ_PROCS; p++)
        for (unsigned i = 0; i < NPAGES; i++)
            op_read((n + p) % FUZZ_CPUS, p, i, (n + i) % NOFF);
}

static void kernel_table_setup(void)
{
    phys_addr_t ktop = harness_kernel_table(&ffa, PA(FOREIGN_PA));
    kernel_frames = fa_out;
    fuzz_tlb_start(FUZZ_CPUS, ktop);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    harness_quiet = 1;
    ffa_reset();
    mm_frameref_reset();
    kernel_table_setup();
    memset(cells, 0, sizeof cells);
    memset(pr, 0, sizeof pr);
    for (unsigned c = 0; c < FUZZ_CPUS; c++)
        cur[c] = -1;
    op_spawn(0);

    struct reader r = { data, size };
    for (unsigned n = 0; r.n; n++) {
        tlb_model_fill_range(VA(MM_USER_BASE), MM_USER_END - MM_USER_BASE);
        run_op(&r);
        tlb_model_check("fuzz_cow: after an operation");
        if (n % 8 == 0)
            check_all(n);
    }
    fa_budget = -1;
    check_all(0);
    for (unsigned p = 0; p < FUZZ_PROCS; p++)
        op_exit(p);
    harness_cpu_id = 0;
    for (unsigned c = 0; c < NCELLS; c++)
        if (cells[c].refs)
            fail("model cell still referenced", c, cells[c].refs);
    if (fa_out != kernel_frames || mm_frameref_frames() != 0)
        fail("frames not back after every process exited", fa_out - kernel_frames,
             mm_frameref_frames());
    tlb_model_check("fuzz_cow: end");
    tlb_model_fini();
    return 0;
}
