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

#endif
