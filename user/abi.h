/*
 * user/abi.h - the system-call interface between the test kernel
 * (kernel/user.c, kernel/sched.c) and the user program (user/prog.c).
 *
 * `int 0x80`, the number in rax, arguments in rdi, rsi, rdx, the result in
 * rax (a negative MM_E* code on failure); SYS_WAIT also returns the
 * child's status in rdx.  Every other register is preserved.
 *
 * A status is what wait reports about a child: its exit code (0..255, the
 * low byte of exit's argument), USER_STATUS_KILLED | vector when an
 * exception killed it, or USER_STATUS_OOM when it was killed because no
 * frame was left to resolve one of its copy-on-write faults.
 */
#ifndef USER_ABI_H
#define USER_ABI_H

#define SYS_WRITE  1    /* write(buf, len): to the console; bytes written or -MM_EFAULT */
#define SYS_EXIT   2    /* exit(code): does not return */
#define SYS_GETCPU 3    /* getcpu(): the dense id of the CPU running the caller */
#define SYS_FORK   4    /* fork(): the child's pid to the parent, 0 to the child,
                           -MM_ENOMEM (no frames) or -MM_EBUSY (process table full) */
#define SYS_WAIT   5    /* wait(): reap one ended child, blocking until one has ended:
                           its pid (status in rdx), or -MM_ENOENT without children */
#define SYS_GETPID 6    /* getpid(): the caller's pid (> 0) */
#define SYS_YIELD  7    /* yield(): let the other runnable processes run; returns 0 */

/* The error codes the fork tests look at (the kernel checks they equal
 * its MM_E* codes). */
#define USER_ENOENT 2
#define USER_ENOMEM 12

#define USER_STATUS_CODE_MASK 0xff
#define USER_STATUS_KILLED    0x100     /* | the exception vector */
#define USER_STATUS_OOM       0x200

#endif
