/*
 * fault.c - fault_catch(): run a function and survive an expected
 * exception (see fault.h).  The armed context lives in this CPU's percpu
 * area; trap_dispatch longjmps to it when an exception arrives.
 */
#include "kernel.h"
#include "fault.h"
#include "percpu.h"
#include "trap.h"

bool fault_catch(void (*fn)(void *arg), void *arg, struct fault_info *info)
{
    struct percpu *pc = this_cpu();
    struct kjmp_buf jb;
    struct fault_info scratch;

    pc->fault_out = info ? info : &scratch;
    if (ksetjmp(&jb) == 0) {
        __atomic_store_n(&pc->fault_ctx, &jb, __ATOMIC_SEQ_CST);
        fn(arg);
        __atomic_store_n(&pc->fault_ctx, NULL, __ATOMIC_SEQ_CST);
        pc->fault_out = NULL;
        return false;
    }
    pc->fault_out = NULL;
    return true;
}

struct probe_args {
    volatile uint8_t *addr;
    uint8_t value;
};

static void do_read(void *p)
{
    struct probe_args *a = p;
    a->value = *a->addr;
}

static void do_write(void *p)
{
    struct probe_args *a = p;
    *a->addr = a->value;
}

static void do_exec(void *p)
{
    struct probe_args *a = p;
    ((void (*)(void))(uintptr_t)a->addr)();
}

bool probe_read(const volatile void *addr, struct fault_info *info)
{
    struct probe_args a = { (volatile uint8_t *)(uintptr_t)addr, 0 };
    return fault_catch(do_read, &a, info);
}

bool probe_write(volatile void *addr, uint8_t value, struct fault_info *info)
{
    struct probe_args a = { addr, value };
    return fault_catch(do_write, &a, info);
}

bool probe_exec(const void *addr, struct fault_info *info)
{
    struct probe_args a = { (volatile uint8_t *)(uintptr_t)addr, 0 };
    return fault_catch(do_exec, &a, info);
}
