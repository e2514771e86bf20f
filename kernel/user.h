/*
 * user.h - user processes of the test kernel: one address space (mm/aspace.h),
 * the user program loaded into it, a user stack, and the ring-3 entry and
 * exit paths (kernel/user.c, kernel/isr.asm).
 *
 * A process runs in one of two ways.  user_process_run runs it on the
 * calling CPU, alone, to completion (it cannot fork).  Processes of a
 * scheduler (kernel/sched.h) run in turns on the scheduler's CPU, each on
 * its own kernel stack, and may fork, wait and yield.
 *
 * System calls: user/abi.h (`int 0x80`, number in rax, arguments in rdi,
 * rsi, rdx, result in rax).  user/prog.c is the one program.
 */
#ifndef KERNEL_USER_H
#define KERNEL_USER_H

#include <stdbool.h>
#include <stdint.h>
#include <mm/aspace.h>
#include "trap.h"

#define USER_SYSCALL_VECTOR 0x80

#include "../user/abi.h"

/* What user/prog.c does, chosen by its first argument; the second is an
 * address for the modes that need one.  Shared with user/prog.c. */
#include "../user/modes.h"

/* The user stack: USER_STACK_PAGES pages ending at MM_USER_END. */
#define USER_STACK_PAGES 4
#define USER_STACK_TOP   MM_USER_END

enum user_end {
    USER_NOT_RUN,
    USER_EXITED,     /* exit_code is valid */
    USER_KILLED,     /* fault_* describe the exception */
};

struct sched;

/* Where a process of a scheduler stands (kernel/sched.c). */
enum proc_state {
    PROC_RUNNABLE,   /* waits for its turn, or runs */
    PROC_WAITING,    /* in wait, until a child ends */
    PROC_ZOMBIE,     /* ended: only status and pid remain until reaped */
};

struct user_process {
    struct mm_as as;
    uint64_t entry;                /* from the program's ELF header */
    enum user_end end;
    long exit_code;
    uint64_t fault_vector, fault_error, fault_rip, fault_va;   /* fault_va: page faults */
    struct kjmp_buf kernel_ctx;    /* user_process_run: where exit and kill resume */

    /* Processes of a scheduler only (sched == NULL otherwise). */
    struct sched *sched;
    struct user_process *parent;   /* NULL: the root, or an orphan */
    long pid;
    long status;                   /* user/abi.h: what wait reports */
    enum proc_state state;
    struct kjmp_buf ctx;           /* its kernel context while switched out */
    bool forked;                   /* first run returns from fork (first_return) */
    struct trap_frame first_return;
    uint64_t mode, arg;            /* the root's arguments */
};

/* The entry frame user_enter (isr.asm) reads; offsets are fixed there. */
struct user_entry {
    uint64_t rip, rsp, arg0, arg1;
    void *tss_rsp0;                /* this CPU's TSS.RSP0 */
};
_Noreturn void user_enter(const struct user_entry *e);

/* Return to ring 3 with every register from *tf (isr.asm); the current
 * stack becomes TSS.RSP0 (tss_rsp0: this CPU's slot). */
_Noreturn void user_resume(const struct trap_frame *tf, void *tss_rsp0);

/* Register the system-call handler.  Once, before any process runs. */
void user_init(void);

/*
 * Create a process from the embedded user program (user/prog.c): a new
 * address space, the program's loadable segments at their link addresses
 * (text R+X, rodata R, data RW; every page user-accessible), and the user
 * stack (RW, no exec).  Returns 0, -MM_ENOMEM, or -MM_EINVAL (logged: the
 * embedded ELF is malformed); on failure nothing is left allocated.
 */
int user_process_create(struct user_process *p);
/* The same with every frame of the address space from fa. */
int user_process_create_fa(struct user_process *p, struct frame_allocator *fa);

/*
 * Run p on this CPU in ring 3 from its entry point with (mode, arg) as
 * its two arguments, until it exits or is killed; p->end says which.
 * Loads p's address space for the run and the kernel table afterwards.
 * Can be called again on the same process (the image is not reloaded).
 */
enum user_end user_process_run(struct user_process *p, uint64_t mode, uint64_t arg);

/* Destroy p's address space (every frame back).  0 or mm_as_destroy's error. */
int user_process_destroy(struct user_process *p);

/*
 * Called by trap_dispatch for an exception raised in ring 3.  A page fault
 * that the copy-on-write resolver settles returns (the access is retried);
 * anything else is reported and ends the process: user_process_run
 * returns, or the scheduler runs the next process.
 */
void user_exception(struct trap_frame *tf);

#endif
