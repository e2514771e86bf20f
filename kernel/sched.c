/*
 * sched.c - the cooperative round-robin scheduler of the test kernel (see
 * sched.h): processes and their kernel stacks, context switches, fork,
 * wait, exit, yield.
 *
 * Process and kernel stack.  Each process of a scheduler is a struct
 * user_process in one frame from the buddy, and runs on the kernel stack
 * of its slot in the scheduler's table: PROC_STACK_SIZE from
 * mm_kstack_alloc (mm/kstack.h), named "proc slot N", with unmapped
 * guard pages below and above, so an overflow faults (and the
 * double-fault handler names the stack) instead of running into the
 * process or a neighbour.  A slot's stack is taken when a process first
 * needs the slot and kept for the next process of that slot until
 * sched_run ends, which gives them all back: a fork then costs no
 * mapping and no TLB shootdown for its stack.  TSS.RSP0 points at the
 * stack's top while the process is in ring 3, so its system calls and
 * exceptions run on its own stack and can be suspended there.
 *
 * Interrupts.  mm_kstack_alloc and mm_kstack_free take the kernel mapper
 * lock, and the free waits for a TLB shootdown; a CPU that waits for that
 * lock with interrupts off could never acknowledge the holder's
 * shootdown IPI.  Stacks are therefore taken only in sched_spawn (kernel
 * context) and sched_fork (a system call, which runs with interrupts on
 * as ring 3 did), and given back only by sched_spawn's failure path and
 * at the end of sched_run (whose caller has interrupts on).
 * slot_stack_get/put check it and panic otherwise.
 *
 * Switching.  sched_run's loop saves its context in s->ctx (ksetjmp) and
 * jumps to the chosen process's p->ctx (klongjmp); a process switches
 * back the same way (yield, wait) or ends (sched_exit) by jumping to
 * s->ctx without saving anything.  Every switch goes through the loop,
 * which loads the process's address space, its TSS.RSP0 and
 * this_cpu()->user before the jump, and the kernel table after it.  A new
 * process's context starts proc_first_run on an empty stack: the root
 * enters its program (user_enter), a forked child returns from fork with
 * the parent's registers and rax = 0 (user_resume).
 *
 * Lifetime.  An ended process becomes a zombie; the loop destroys its
 * address space at once (it is no longer loaded) and frees its frame
 * (the slot keeps the stack) when the parent reaps it in wait, or at once
 * when it has no parent.  A parent that ends first leaves its children
 * orphans.
 *
 * Locking: none.  A scheduler and its processes are touched only by the
 * CPU in sched_run; pids come from one atomic counter.
 */
#include "kernel.h"
#include "io.h"
#include "percpu.h"
#include "sched.h"
#include <mm/buddy.h>
#include <mm/cow.h>
#include <mm/init.h>
#include <mm/kstack.h>
#include <mm/log.h>

#define PROC_STACK_SIZE  (16 * KiB)

_Static_assert(sizeof(struct user_process) <= PAGE_SIZE, "a process fits one frame");

static long next_pid;

static bool irqs_enabled(void)
{
    uint64_t flags;
    __asm__ volatile("pushfq; popq %0" : "=r"(flags));
    return (flags & RFLAGS_IF) != 0;
}

/* A free slot of s, or SCHED_MAX_PROCS. */
static unsigned free_slot(struct sched *s)
{
    unsigned i = 0;
    while (i < SCHED_MAX_PROCS && s->procs[i])
        i++;
    return i;
}

static unsigned slot_of(struct sched *s, struct user_process *p)
{
    for (unsigned i = 0; i < SCHED_MAX_PROCS; i++)
        if (s->procs[i] == p)
            return i;
    panic("slot_of: process %ld is not in the scheduler of cpu %u", p->pid, s->cpu);
}

static uint64_t proc_stack_top(struct user_process *p)
{
    struct sched *s = p->sched;
    return s->stacks[slot_of(s, p)].top.raw;
}

/*
 * Give `slot` of s its kernel stack unless it has one (see the top).
 * 0, or -MM_ENOMEM (logged by mm_kstack_alloc).  Interrupts must be on.
 */
static int slot_stack_get(struct sched *s, unsigned slot)
{
    char name[MM_KSTACK_NAME_LEN];
    if (s->stacks[slot].size)
        return 0;
    if (!irqs_enabled())
        panic("slot_stack_get: interrupts off: mm_kstack_alloc could deadlock on a shootdown");
    mm_snprintf(name, sizeof(name), "proc slot %u", slot);
    return mm_kstack_alloc(PROC_STACK_SIZE, MM_KSTACK_NO_CPU, name, &s->stacks[slot]);
}

/* Give back the stack of `slot` (nobody runs on it).  Interrupts on. */
static void slot_stack_put(struct sched *s, unsigned slot)
{
    if (!irqs_enabled())
        panic("slot_stack_put: interrupts off: mm_kstack_free could deadlock on a shootdown");
    int rc = mm_kstack_free(&s->stacks[slot]);
    if (rc != 0)
        panic("slot_stack_put: freeing the stack of slot %u on cpu %u failed: %s", slot,
              s->cpu, mm_strerror(rc));
}

/* A zeroed process frame for `slot` of s, whose stack is ready; NULL
 * when there is no frame or no stack (the stack, if made, stays). */
static struct user_process *proc_alloc(struct sched *s, unsigned slot)
{
    phys_addr_t pa;
    if (slot_stack_get(s, slot) != 0 || buddy_alloc(mm_buddy(), 1, &pa) != 0)
        return NULL;
    struct user_process *p = pa_to_ptr(pa);
    memset(p, 0, sizeof(*p));
    return p;
}

static void proc_frame_free(struct user_process *p)
{
    MM_BUG_ON(buddy_free(mm_buddy(), direct_ptr_to_pa(p), 1) != 0);
}

/* Free p and its slot (the slot keeps its stack); its address space is
 * already destroyed. */
static void proc_free(struct sched *s, struct user_process *p)
{
    s->procs[slot_of(s, p)] = NULL;
    proc_frame_free(p);
}

/* A new process's first run, on its empty kernel stack (see the top). */
static _Noreturn void proc_first_run(void)
{
    struct percpu *pc = this_cpu();
    struct user_process *p = pc->user;
    void *rsp0 = (uint8_t *)pc->tss + TSS_RSP0_OFFSET;
    if (p->forked)
        user_resume(&p->first_return, rsp0);
    struct user_entry e = { p->entry, USER_STACK_TOP - 8, p->mode, p->arg, rsp0 };
    user_enter(&e);
}

/* Make p runnable in `slot`: its context starts proc_first_run with the
 * stack pointer as after a call (rsp + 8 16-aligned), interrupts off. */
static long proc_start(struct sched *s, unsigned slot, struct user_process *p)
{
    uint64_t *top = (uint64_t *)(uintptr_t)s->stacks[slot].top.raw;
    top[-1] = 0;                               /* the return address nobody uses */
    p->ctx = (struct kjmp_buf){ .rsp = (uint64_t)(uintptr_t)&top[-1],
                                .rip = (uint64_t)(uintptr_t)proc_first_run,
                                .rflags = 0x2 };
    p->sched = s;
    p->state = PROC_RUNNABLE;
    p->pid = __atomic_add_fetch(&next_pid, 1, __ATOMIC_RELAXED);
    s->procs[slot] = p;
    return p->pid;
}

struct user_process *sched_spawn(struct sched *s, struct frame_allocator *fa, uint64_t mode,
                                 uint64_t arg)
{
    unsigned slot = free_slot(s);
    if (slot == SCHED_MAX_PROCS) {
        mm_printf("sched_spawn: all %u process slots are taken\n", SCHED_MAX_PROCS);
        return NULL;
    }
    bool had_stack = s->stacks[slot].size != 0;
    struct user_process *p = proc_alloc(s, slot);
    if (p && user_process_create_fa(p, fa) != 0) {
        proc_frame_free(p);
        p = NULL;
    }
    if (!p) {
        if (!had_stack && s->stacks[slot].size)
            slot_stack_put(s, slot);       /* sched_run may never run to give it back */
        return NULL;
    }
    p->mode = mode;
    p->arg = arg;
    long pid = proc_start(s, slot, p);
    if (!s->root_pid)
        s->root_pid = pid;
    return p;
}

long sched_fork(struct user_process *p, const struct trap_frame *tf)
{
    struct sched *s = p->sched;
    unsigned slot = free_slot(s);
    if (slot == SCHED_MAX_PROCS)
        return -MM_EBUSY;
    struct user_process *c = proc_alloc(s, slot);
    if (!c)
        return -MM_ENOMEM;
    int rc = mm_as_clone(&c->as, &p->as, p->as.fa);
    if (rc) {
        proc_frame_free(c);
        return rc;
    }
    c->entry = p->entry;
    c->parent = p;
    c->forked = true;
    c->first_return = *tf;
    c->first_return.rax = 0;                   /* fork returns 0 in the child */
    s->forks++;
    return proc_start(s, slot, c);
}

/* Save p's context and run the scheduler loop; returns when p is next
 * chosen, with interrupts as they were (the context is saved with them
 * off, and sched_wait may go on to free a child's stack). */
static void switch_out(struct user_process *p)
{
    unsigned long flags = cpu_irq_save();
    if (ksetjmp(&p->ctx) == 0)
        klongjmp(&p->sched->ctx, 1);
    cpu_irq_restore(flags);
}

void sched_yield(struct user_process *p)
{
    switch_out(p);
}

long sched_wait(struct user_process *p, long *status)
{
    struct sched *s = p->sched;
    for (;;) {
        bool any = false;
        for (unsigned i = 0; i < SCHED_MAX_PROCS; i++) {
            struct user_process *q = s->procs[i];
            if (!q || q->parent != p)
                continue;
            any = true;
            if (q->state == PROC_ZOMBIE) {
                long pid = q->pid;
                *status = q->status;
                proc_free(s, q);
                return pid;
            }
        }
        if (!any)
            return -MM_ENOENT;
        p->state = PROC_WAITING;
        switch_out(p);
    }
}

_Noreturn void sched_exit(struct user_process *p, long status)
{
    __asm__ volatile("cli");
    p->status = status;
    p->state = PROC_ZOMBIE;
    klongjmp(&p->sched->ctx, 1);
}

/* p has just ended and is no longer loaded: give back its memory, orphan
 * its children, wake or spare its parent. */
static void proc_bury(struct sched *s, struct user_process *p)
{
    MM_BUG_ON(mm_as_destroy(&p->as) != 0);
    for (unsigned i = 0; i < SCHED_MAX_PROCS; i++) {
        struct user_process *q = s->procs[i];
        if (!q || q->parent != p)
            continue;
        q->parent = NULL;
        if (q->state == PROC_ZOMBIE)
            proc_free(s, q);
    }
    if (p->pid == s->root_pid)
        s->root_status = p->status;
    if (!p->parent)
        proc_free(s, p);
    else if (p->parent->state == PROC_WAITING)
        p->parent->state = PROC_RUNNABLE;
}

/* The next runnable process after the last one chosen, or NULL when
 * every process has ended.  Panics when processes remain but none can
 * run (they could only wait for each other). */
static struct user_process *sched_pick(struct sched *s)
{
    unsigned left = 0;
    for (unsigned i = 0; i < SCHED_MAX_PROCS; i++) {
        unsigned slot = (s->next + i) % SCHED_MAX_PROCS;
        struct user_process *p = s->procs[slot];
        if (p && p->state == PROC_RUNNABLE) {
            s->next = slot + 1;
            return p;
        }
        left += p != NULL;
    }
    if (left)
        panic("sched_pick: %u process(es) left on cpu %u but none can run", left, s->cpu);
    return NULL;
}

void sched_run(struct sched *s)
{
    struct percpu *pc = this_cpu();
    MM_BUG_ON(pc->user != NULL);
    s->cpu = smp_cpu_id();
    struct user_process *p;
    while ((p = sched_pick(s)) != NULL) {
        unsigned long flags = cpu_irq_save();
        uint64_t rsp0 = proc_stack_top(p);
        mm_as_switch(&p->as);
        memcpy((uint8_t *)pc->tss + TSS_RSP0_OFFSET, &rsp0, sizeof(rsp0));
        pc->user = p;
        s->switches++;
        if (ksetjmp(&s->ctx) == 0)
            klongjmp(&p->ctx, 1);
        /* Back: p yielded, waits or has ended. */
        pc->user = NULL;
        mm_as_switch(NULL);
        cpu_irq_restore(flags);
        if (p->state == PROC_ZOMBIE)
            proc_bury(s, p);
    }
    /* Every process has ended: give back the slots' stacks. */
    for (unsigned slot = 0; slot < SCHED_MAX_PROCS; slot++)
        if (s->stacks[slot].size)
            slot_stack_put(s, slot);
}
