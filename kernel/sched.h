/*
 * sched.h - a cooperative round-robin scheduler for the test kernel's user
 * processes (kernel/sched.c): enough for fork, wait, exit and yield, so
 * that parents and children really run while they share pages
 * copy-on-write.
 *
 * A scheduler owns a process tree and runs it on the CPU that calls
 * sched_run, until every process has ended.  Trees on different CPUs are
 * independent (their own struct sched), which is how processes run on
 * more than one CPU at once.  Nothing preempts a process: it runs until it
 * makes a system call that switches (yield, wait with no ended child,
 * exit) or is killed.
 */
#ifndef KERNEL_SCHED_H
#define KERNEL_SCHED_H

#include <stdint.h>
#include <mm/kstack.h>
#include "trap.h"
#include "user.h"

#define SCHED_MAX_PROCS 64

struct sched {
    struct user_process *procs[SCHED_MAX_PROCS];   /* NULL: free slot */
    /* The kernel stack of slot i (size 0: none yet), kept across the
     * slot's processes until sched_run ends (kernel/sched.c). */
    struct mm_kstack stacks[SCHED_MAX_PROCS];
    unsigned next;                  /* where the round-robin search starts */
    struct kjmp_buf ctx;            /* the loop in sched_run, while a process runs */
    unsigned cpu;                   /* where sched_run ran */
    long root_pid, root_status;     /* the first process and how it ended */
    uint64_t forks, switches;       /* statistics for the tests */
};

/*
 * Create the root process of s from the embedded program, its address
 * space's frames from fa, to start at _start(mode, arg) when sched_run
 * runs.  The caller may map more pages into it before.  Returns the
 * process (s must be zeroed before the first spawn) or NULL: no frames
 * or no kernel stack, or the table is full (logged).  Interrupts on (it
 * takes a kernel stack: kernel/sched.c, "Interrupts").
 */
struct user_process *sched_spawn(struct sched *s, struct frame_allocator *fa, uint64_t mode,
                                 uint64_t arg);

/* Run s's processes on this CPU until all have ended, then give back
 * the kernel stacks of s.  Interrupts on, no process of this CPU running. */
void sched_run(struct sched *s);

/*
 * System calls of a process p of a scheduler, on p's kernel stack (tf:
 * its registers from ring 3).  sched_fork returns the child's pid, or
 * -MM_ENOMEM / -MM_EBUSY (table full) with nothing changed.  sched_wait
 * returns an ended child's pid and its status, -MM_ENOENT without
 * children.  sched_exit ends p with status (user/abi.h).
 */
long sched_fork(struct user_process *p, const struct trap_frame *tf);
long sched_wait(struct user_process *p, long *status);
void sched_yield(struct user_process *p);
_Noreturn void sched_exit(struct user_process *p, long status);

#endif
