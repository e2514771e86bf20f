/*
 * user/modes.h - what the user program does, chosen by its first argument
 * (shared by user/prog.c and the kernel's tests/kernel/aspace_suite.c).
 */
#ifndef USER_MODES_H
#define USER_MODES_H

#define UMODE_HELLO        0   /* write a greeting, exit 0 (or 1 if write failed) */
#define UMODE_READ         1   /* read a byte at arg: expected to be killed */
#define UMODE_WRITE        2   /* write a byte at arg: expected to be killed */
#define UMODE_WRITE_TEXT   3   /* write to its own code: killed (text is R+X) */
#define UMODE_EXEC_DATA    4   /* jump into its own data: killed (data is NX) */
#define UMODE_WRITE_PTR    5   /* exit(write(arg, 16)): a bad pointer gives -MM_EFAULT */
#define UMODE_GETCPU       6   /* exit(getcpu()) */
#define UMODE_WAIT         7   /* set the word at arg + 4, spin until the word at
                                  arg is non-zero, exit with it */

/* Fork tests (tests/kernel/cow_suite.c).  Each exits 0 when every check
 * it makes passes, else with the number of the first failed check. */
#define UMODE_FORK_BIG     8   /* arg pages at USER_BIG_BASE (mapped by the kernel):
                                  fork, then parent and child both write */
#define UMODE_FORK_TURNS   9   /* fork arg children; all write the same pages in turn */
#define UMODE_FORK_GRAND   10  /* fork, and the child forks again */
#define UMODE_FORK_ONCE    11  /* fork; the child writes 4 pages and exits; the parent
                                  waits, writes: exits FORK_ONCE_* (frames may run out) */
#define UMODE_FORK_CYCLES  12  /* arg rounds of fork / child writes / exit / wait */

#define USER_BIG_BASE      0x100000000ull   /* 4 GiB: the kernel maps the region here */
#define FORK_BIG_SAMPLES   64               /* pages of the region that are written */

/* UMODE_FORK_ONCE's exit code: how the fork and the child ended. */
#define FORK_ONCE_NO_FORK    10    /* fork returned -MM_ENOMEM */
#define FORK_ONCE_CHILD_OK   20    /* the child exited 0 */
#define FORK_ONCE_CHILD_OOM  21    /* the child was killed: no frame for its COW fault */
/* anything else: a check failed */

#endif
