/*
 * user.h - user processes of the test kernel: one address space (mm/aspace.h),
 * the user program loaded into it, a user stack, and the ring-3 entry and
 * exit paths (kernel/user.c, kernel/isr.asm).
 *
 * A process runs on the CPU that calls user_process_run, to completion:
 * the call returns when the program exits (system call) or is killed (an
 * exception in ring 3).  One process per CPU at a time; nothing schedules.
 *
 * System calls: `int 0x80` with the number in rax, arguments in rdi, rsi,
 * rdx, the result in rax (a negative MM_E* code on failure); every other
 * register is preserved.  user/prog.c is the one program and its caller.
 */
#ifndef KERNEL_USER_H
#define KERNEL_USER_H

#include <stdbool.h>
#include <stdint.h>
#include <mm/aspace.h>
#include "trap.h"

#define USER_SYSCALL_VECTOR 0x80

#define SYS_WRITE  1    /* write(buf, len): to the console; bytes written or -MM_EFAULT */
#define SYS_EXIT   2    /* exit(code): does not return */
#define SYS_GETCPU 3    /* getcpu(): the dense id of the CPU running the caller */

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

struct user_process {
    struct mm_as as;
    uint64_t entry;                /* from the program's ELF header */
    enum user_end end;
    long exit_code;
    uint64_t fault_vector, fault_error, fault_rip, fault_va;   /* fault_va: page faults */
    struct kjmp_buf kernel_ctx;    /* where the exit and kill paths resume */
};

/* The entry frame user_enter (isr.asm) reads; offsets are fixed there. */
struct user_entry {
    uint64_t rip, rsp, arg0, arg1;
    void *tss_rsp0;                /* this CPU's TSS.RSP0 */
};
_Noreturn void user_enter(const struct user_entry *e);

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

/*
 * Run p on this CPU in ring 3 from its entry point with (mode, arg) as
 * its two arguments, until it exits or is killed; p->end says which.
 * Loads p's address space for the run and the kernel table afterwards.
 * Can be called again on the same process (the image is not reloaded).
 */
enum user_end user_process_run(struct user_process *p, uint64_t mode, uint64_t arg);

/* Destroy p's address space (every frame back).  0 or mm_as_destroy's error. */
int user_process_destroy(struct user_process *p);

/* Called by trap_dispatch for an exception raised in ring 3: report it,
 * kill the process, resume in user_process_run. */
_Noreturn void user_fault(struct trap_frame *tf);

#endif
