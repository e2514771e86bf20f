/*
 * fault.c - fault_catch(): run a function and survive an expected
 * exception (see fault.h).  The armed context lives in this CPU's percpu
 * area; trap_dispatch longjmps to it when an exception arrives.
 * fault_catch_on_stack runs the function on another stack through
 * call_on_stack (isr.asm) and, while it runs, lets this CPU's catch take
 * a double fault too (takes_df, read by trap_dispatch).
 */
#include "kernel.h"
#include "fault.h"
#include "percpu.h"
#include "trap.h"

/* isr.asm: call fn(arg) with rsp = stack_top, back on the old stack. */
void call_on_stack(void (*fn)(void *arg), void *arg, uint64_t stack_top);

/* Per CPU: the armed catch also takes a double fault.  Written only by
 * its own CPU. */
static bool takes_df[MM_MAX_CPUS];

bool fault_catch_takes_double_fault(void)
{
    return takes_df[smp_cpu_id()];
}

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

struct on_stack_args {
    void (*fn)(void *arg);
    void *arg;
    uint64_t stack_top;
};

static void do_on_stack(void *p)
{
    struct on_stack_args *a = p;
    call_on_stack(a->fn, a->arg, a->stack_top);
}

bool fault_catch_on_stack(void (*fn)(void *arg), void *arg, uint64_t stack_top,
                          struct fault_info *info)
{
    struct on_stack_args a = { fn, arg, stack_top };
    unsigned me = smp_cpu_id();
    takes_df[me] = true;
    bool faulted = fault_catch(do_on_stack, &a, info);
    takes_df[me] = false;
    return faulted;
}
