/*
 * user/prog.c - the user program: runs in ring 3 in its own address space
 * (kernel/user.c loads it), talks to the kernel only through `int 0x80`
 * (user/abi.h: number in rax, arguments in rdi/rsi/rdx, result in rax).
 *
 * Built freestanding and linked at 0x400000 by user/user.ld: text R+X,
 * rodata R, data RW, each on its own pages.  _start(mode, arg) does what
 * user/modes.h says for mode and ends with exit, or is killed trying.
 *
 * The fork modes check copy-on-write from the inside: every process
 * writes values of its own into pages it shares with its relatives at
 * fork, lets the others run (yield, wait), and checks it still reads
 * exactly what it wrote.  Data is touched through volatile pointers so
 * that each write really reaches memory.
 */
#include <stdint.h>
#include "abi.h"
#include "modes.h"

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

static long sys_fork(void)
{
    return syscall3(SYS_FORK, 0, 0, 0);
}

static void sys_yield(void)
{
    syscall3(SYS_YIELD, 0, 0, 0);
}

/* Reap one child: its pid (status in *status) or a negative error. */
static long sys_wait(long *status)
{
    long pid, st;
    __asm__ volatile("int $0x80" : "=a"(pid), "=d"(st) : "a"((long)SYS_WAIT) : "memory");
    *status = st;
    return pid;
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

/* ------------------------------------------------------------ fork modes */

#define WORDS_PER_PAGE 512
#define SHARED_PAGES   4

/* Pages in .bss that every fork shares copy-on-write. */
static volatile uint64_t shared[SHARED_PAGES][WORDS_PER_PAGE] __attribute__((aligned(4096)));

/* The value process `id` writes in round `round`. */
static uint64_t value_of(long id, long round)
{
    return UINT64_C(0x5eed000000000000) | (uint64_t)id << 16 | (uint64_t)round;
}

/* Write v to the first and last word of each shared page. */
static void fill_shared(uint64_t v)
{
    for (unsigned i = 0; i < SHARED_PAGES; i++) {
        shared[i][0] = v;
        shared[i][WORDS_PER_PAGE - 1] = v;
    }
}

static int shared_is(uint64_t v)
{
    for (unsigned i = 0; i < SHARED_PAGES; i++)
        if (shared[i][0] != v || shared[i][WORDS_PER_PAGE - 1] != v)
            return 0;
    return 1;
}

/* A child's status as this process's exit code: 0 stays 0, a failed
 * check keeps its number, a kill becomes 200. */
static long pass_on(long status)
{
    return (status & ~(long)USER_STATUS_CODE_MASK) ? 200 : status;
}

/* Reap `n` children, each of which must have exited 0. */
static long reap_all(long n)
{
    for (long i = 0; i < n; i++) {
        long st;
        if (sys_wait(&st) <= 0)
            return 90;
        if (st != 0)
            return pass_on(st);
    }
    long st;
    return sys_wait(&st) == -USER_ENOENT ? 0 : 91;
}

/* `children` children and the parent write the same pages in turns. */
static _Noreturn void fork_turns(long children)
{
    long id = 0;
    fill_shared(value_of(0, 0));
    for (long c = 1; c <= children; c++) {
        long pid = sys_fork();
        if (pid < 0)
            sys_exit(2);
        if (pid == 0) {
            id = c;
            break;
        }
    }
    if (id != 0 && !shared_is(value_of(0, 0)))
        sys_exit(3);                       /* a child sees the pages as at fork */
    for (long round = 1; round <= 3; round++) {
        fill_shared(value_of(id, round));
        sys_yield();
        if (!shared_is(value_of(id, round)))
            sys_exit(4);
    }
    sys_exit(id == 0 ? reap_all(children) : 0);
}

/* Word 0 of shared pages 0 and 1 holds p0 and p1. */
static int pages_are(uint64_t p0, uint64_t p1)
{
    return shared[0][0] == p0 && shared[1][0] == p1;
}

/* Let the others run, check pages 0 and 1 (else `code`), reap one child. */
static long yield_check_reap(uint64_t p0, uint64_t p1, long code)
{
    sys_yield();
    return pages_are(p0, p1) ? reap_all(1) : code;
}

/* Fork, and fork again in the child: page 0 is written by the child
 * before the second fork, page 1 only by the grandchild. */
static _Noreturn void fork_grand(void)
{
    const uint64_t a = value_of(0, 1), b = value_of(1, 1), c = value_of(2, 1);
    shared[0][0] = a;
    shared[1][0] = a;
    long pid = sys_fork(), r;
    if (pid < 0)
        sys_exit(2);
    if (pid == 0) {
        shared[0][0] = b;
        long pid2 = sys_fork();
        if (pid2 < 0)
            sys_exit(20);
        if (pid2 == 0) {
            if (!pages_are(b, a))
                sys_exit(30);
            shared[0][0] = c;
            shared[1][0] = c;
            sys_yield();
            sys_exit(pages_are(c, c) ? 0 : 31);
        }
        if ((r = yield_check_reap(b, a, 21)) != 0)
            sys_exit(r);
        shared[1][0] = b;
        sys_exit(pages_are(b, b) ? 0 : 22);
    }
    if ((r = yield_check_reap(a, a, 10)) != 0)
        sys_exit(r);
    shared[0][0] = c;
    sys_exit(pages_are(c, a) ? 0 : 11);
}

/*
 * Fork once.  Between the fork and the end of wait the parent writes no
 * memory (its values stay in registers), so when frames run out only
 * the child can need one; after wait its pages are its own again.  The
 * child writes several pages, so that some frame budgets let the fork
 * succeed and then fail one of the child's copies.
 */
static _Noreturn void fork_once(void)
{
    fill_shared(1);
    long pid = sys_fork();
    if (pid == 0) {
        fill_shared(2);                 /* a copy for each page */
        sys_exit(shared_is(2) ? 0 : 1);
    }
    if (pid < 0)
        sys_exit(pid == -USER_ENOMEM ? FORK_ONCE_NO_FORK : 40);
    long st;
    if (sys_wait(&st) != pid)
        sys_exit(41);
    if (!shared_is(1))
        sys_exit(42);
    fill_shared(3);
    if (!shared_is(3))
        sys_exit(43);
    sys_exit(st == 0 ? FORK_ONCE_CHILD_OK : st == USER_STATUS_OOM ? FORK_ONCE_CHILD_OOM : 44);
}

/* `rounds` times: fork; the child writes a page and exits with its pid;
 * wait. */
static _Noreturn void fork_cycles(uint64_t rounds)
{
    for (uint64_t i = 0; i < rounds; i++) {
        shared[0][0] = i;
        long pid = sys_fork();
        if (pid < 0)
            sys_exit(2);
        if (pid == 0) {
            shared[0][0] = ~i;
            sys_exit(shared[0][0] == ~i ? syscall3(SYS_GETPID, 0, 0, 0) & 0x7f : 0xff);
        }
        long st;
        if (sys_wait(&st) != pid)
            sys_exit(3);
        if (st != (pid & 0x7f))          /* the child's getpid is fork's result */
            sys_exit(4);
        if (shared[0][0] != i)
            sys_exit(5);
    }
    sys_exit(0);
}

/* Word 0 of sample page s of the big region (pages at USER_BIG_BASE). */
static volatile uint64_t *big_sample(uint64_t npages, unsigned s)
{
    uint64_t stride = npages / FORK_BIG_SAMPLES ? npages / FORK_BIG_SAMPLES : 1;
    uint64_t page = (uint64_t)s * stride % npages;
    return (volatile uint64_t *)(uintptr_t)(USER_BIG_BASE + page * 4096);
}

static int big_is(uint64_t npages, unsigned from, unsigned to, long id, long round)
{
    for (unsigned s = from; s < to; s++)
        if (*big_sample(npages, s) != value_of(id, round) + s)
            return 0;
    return 1;
}

static void big_fill(uint64_t npages, unsigned from, unsigned to, long id, long round)
{
    for (unsigned s = from; s < to; s++)
        *big_sample(npages, s) = value_of(id, round) + s;
}

/* Fork a process whose region is larger than the free RAM left, then
 * both write some of its pages. */
static _Noreturn void fork_big(uint64_t npages)
{
    const unsigned n = FORK_BIG_SAMPLES, half = FORK_BIG_SAMPLES / 2;
    big_fill(npages, 0, n, 0, 0);
    long pid = sys_fork();
    if (pid < 0)
        sys_exit(2);
    if (pid == 0) {
        if (!big_is(npages, 0, n, 0, 0))
            sys_exit(30);
        big_fill(npages, 0, n, 1, 1);
        sys_yield();
        sys_exit(big_is(npages, 0, n, 1, 1) ? 0 : 31);
    }
    big_fill(npages, 0, half, 0, 1);
    sys_yield();
    if (!big_is(npages, 0, half, 0, 1) || !big_is(npages, half, n, 0, 0))
        sys_exit(10);
    long r = reap_all(1);
    if (r)
        sys_exit(r);
    big_fill(npages, 0, n, 0, 2);
    sys_exit(big_is(npages, 0, n, 0, 2) ? 0 : 11);
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
    case UMODE_FORK_BIG:
        fork_big(arg);
    case UMODE_FORK_TURNS:
        fork_turns((long)arg);
    case UMODE_FORK_GRAND:
        fork_grand();
    case UMODE_FORK_ONCE:
        fork_once();
    case UMODE_FORK_CYCLES:
        fork_cycles(arg);
    default:
        touch((int)mode, arg);
    }
}
