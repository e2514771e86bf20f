/*
 * user/prog.c - the user program: runs in ring 3 in its own address space
 * (kernel/user.c loads it), talks to the kernel only through `int 0x80`
 * (kernel/user.h: number in rax, arguments in rdi/rsi/rdx, result in rax).
 *
 * Built freestanding and linked at 0x400000 by user/user.ld: text R+X,
 * rodata R, data RW, each on its own pages.  _start(mode, arg) does what
 * user/modes.h says for mode and ends with exit, or is killed trying.
 */
#include <stdint.h>
#include "modes.h"

#define SYS_WRITE  1
#define SYS_EXIT   2
#define SYS_GETCPU 3

static long syscall3(long nr, long a0, long a1, long a2)
{
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "D"(a0), "S"(a1), "d"(a2) : "memory");
    return ret;
}

static _Noreturn void sys_exit(long code)
{
    syscall3(SYS_EXIT, code, 0, 0);
    for (;;)
        ;
}

_Noreturn void _start(long mode, uint64_t arg);

static const char greeting[] = "hello from ring 3\n";

/* Data (RW, NX): a ret instruction that must never run from here. */
static volatile uint8_t data_code[16] = { 0xc3 };

/* Killed before the exit if the kernel protects itself; 0x5afe otherwise. */
static _Noreturn void touch(int mode, uint64_t arg)
{
    volatile uint8_t *p = (volatile uint8_t *)(uintptr_t)arg;
    if (mode == UMODE_READ)
        (void)*p;
    else if (mode == UMODE_WRITE)
        *p = 0x5a;
    else if (mode == UMODE_WRITE_TEXT)
        *(volatile uint8_t *)(uintptr_t)&_start = 0x90;
    else
        ((void (*)(void))(uintptr_t)data_code)();
    sys_exit(0x5afe);
}

__attribute__((section(".text.start"))) _Noreturn void _start(long mode, uint64_t arg)
{
    long n;
    switch (mode) {
    case UMODE_HELLO:
        n = syscall3(SYS_WRITE, (long)greeting, sizeof(greeting) - 1, 0);
        sys_exit(n == (long)sizeof(greeting) - 1 ? 0 : 1);
    case UMODE_WRITE_PTR:
        sys_exit(syscall3(SYS_WRITE, (long)arg, 16, 0));
    case UMODE_GETCPU:
        sys_exit(syscall3(SYS_GETCPU, 0, 0, 0));
    case UMODE_WAIT: {
        volatile uint32_t *word = (volatile uint32_t *)(uintptr_t)arg;
        word[1] = 1;
        while (word[0] == 0)
            __asm__ volatile("pause");
        sys_exit(word[0]);
    }
    default:
        touch((int)mode, arg);
    }
}
