/*
 * trap.c - the IDT and the common trap handler.
 *
 * An exception (vectors 0-31) raised in ring 3 goes to user_exception
 * (kernel/user.c): a copy-on-write fault is resolved and retried, anything
 * else kills the user process; the kernel carries on.  In ring 0 it is
 * fatal unless a self-test armed fault_catch() on this CPU: then the
 * handler records the fault and longjmps back into fault_catch, abandoning
 * the faulting code (a double fault only for fault_catch_on_stack).
 *
 * A fatal exception prints the vector, error code, RIP, CR2 and all
 * registers, then panics.  For a fatal page fault and for a double fault
 * it first prints what the library's fault classifier (mm/faultinfo.h)
 * says about CR2: a double fault in this kernel is almost always a page
 * fault that could not push its frame because the stack pointer had run
 * into a kernel stack's guard page, and then the panic names the overflow
 * and the stack.  The double fault runs on its own IST stack (cpu.c), so
 * it can report even then.
 *
 * Vectors 32-255 go to handlers registered with irq_register() (IPIs, and
 * the system call, whose gate alone ring 3 may use: DPL 3).
 */
#include "kernel.h"
#include "fault.h"
#include "io.h"
#include "percpu.h"
#include "trap.h"
#include "user.h"
#include <mm/faultinfo.h>
#include <mm/log.h>

struct __attribute__((packed)) idt_entry {
    uint16_t offset_lo;
    uint16_t selector;
    uint8_t ist;
    uint8_t type_attr;
    uint16_t offset_mid;
    uint32_t offset_hi;
    uint32_t zero;
};

extern const uint64_t isr_table[256];
static struct idt_entry idt[256] __attribute__((aligned(16)));
static irq_handler_t irq_handlers[256];

const char *const exception_names[32] = {
    "divide error", "debug", "NMI", "breakpoint", "overflow", "bound range",
    "invalid opcode", "device not available", "double fault", "coprocessor overrun",
    "invalid TSS", "segment not present", "stack fault", "general protection",
    "page fault", "reserved", "x87 FP error", "alignment check", "machine check",
    "SIMD FP error", "virtualization", "control protection", "reserved", "reserved",
    "reserved", "reserved", "reserved", "reserved", "hypervisor injection",
    "VMM communication", "security", "reserved",
};

void idt_init(void)
{
    for (int v = 0; v < 256; v++) {
        uint64_t off = isr_table[v];
        idt[v].offset_lo = off & 0xffff;
        idt[v].selector = GDT_KERNEL_CS;
        idt[v].ist = v == 8 ? 1 : v == 2 ? 2 : 0;  /* #DF on IST1, NMI on IST2 */
        /* Present interrupt gate; DPL 3 only for the system call. */
        idt[v].type_attr = v == USER_SYSCALL_VECTOR ? 0xee : 0x8e;
        idt[v].offset_mid = (off >> 16) & 0xffff;
        idt[v].offset_hi = off >> 32;
        idt[v].zero = 0;
    }
    idt_load();
}

void idt_load(void)
{
    struct __attribute__((packed)) { uint16_t limit; uint64_t base; } idtr = {
        sizeof(idt) - 1, (uint64_t)idt };
    __asm__ volatile("lidt %0" : : "m"(idtr));
}

void irq_register(uint8_t vector, irq_handler_t handler)
{
    irq_handlers[vector] = handler;
}

static void dump_frame(const struct trap_frame *tf)
{
    const char *name = tf->vector < 32 ? exception_names[tf->vector] : "interrupt";
    printk("\nUNEXPECTED EXCEPTION %lu (%s) on cpu %u\n", (unsigned long)tf->vector, name,
           smp_cpu_id());
    printk("  error code %#lx  RIP %016lx  CS %lx  RFLAGS %016lx\n",
           (unsigned long)tf->error_code, (unsigned long)tf->rip, (unsigned long)tf->cs,
           (unsigned long)tf->rflags);
    printk("  CR2 %016lx  CR3 %016lx  RSP %016lx\n", (unsigned long)read_cr2(),
           (unsigned long)read_cr3(), (unsigned long)tf->rsp);
    const uint64_t r[15] = { tf->rax, tf->rbx, tf->rcx, tf->rdx, tf->rsi, tf->rdi, tf->rbp,
                             tf->r8, tf->r9, tf->r10, tf->r11, tf->r12, tf->r13, tf->r14,
                             tf->r15 };
    static const char *const rname[15] = { "RAX", "RBX", "RCX", "RDX", "RSI", "RDI", "RBP",
                                           "R8 ", "R9 ", "R10", "R11", "R12", "R13", "R14",
                                           "R15" };
    for (unsigned i = 0; i < 15; i += 4) {
        char line[128];
        int n = 0;
        for (unsigned j = i; j < i + 4 && j < 15; j++)
            n += mm_snprintf(line + n, sizeof(line) - (size_t)n, " %s %016lx", rname[j],
                             (unsigned long)r[j]);
        printk(" %s\n", line);
    }
}

/* Raised by the interrupted instruction itself (not NMI, #DF or #MC):
 * a fault that a test may catch or that kills a user process. */
static bool caused_by_code(uint64_t vector)
{
    return vector != 2 && vector != 8 && vector != 18;
}

/*
 * Print the classifier's line for the fault at cr2 (error_code: the
 * page fault's, or MM_FAULT_EC_NONE) and fill *fi with its answer
 * (kind MM_FAULT_NR_KINDS if it has none).  The classifier takes no lock
 * and never faults, so this is safe in any handler.
 */
static void describe_fault(uint64_t cr2, uint64_t error_code, struct mm_fault_info *fi)
{
    char line[256];
    if (mm_fault_describe(NULL, VA(cr2), error_code, fi) != 0) {
        fi->kind = MM_FAULT_NR_KINDS;
        return;
    }
    mm_fault_format(fi, line, sizeof(line));
    printk("  %s\n", line);
}

static const char *kind_name(const struct mm_fault_info *fi)
{
    return fi->kind < MM_FAULT_NR_KINDS ? mm_fault_kind_name(fi->kind) : "not classified";
}

/* For a fault in a stack's guard page: "kernel stack overflow: stack
 * 'cpu0' of cpu 0" (or underflow; "(no cpu)" for a process's stack) in
 * buf; false, buf untouched, for any other fault. */
static bool name_stack_fault(const struct mm_fault_info *fi, char *buf, size_t len)
{
    const char *what = fi->kind == MM_FAULT_KSTACK_OVERFLOW ? "kernel stack overflow"
                     : fi->kind == MM_FAULT_KSTACK_UNDERFLOW ? "kernel stack underflow" : NULL;
    if (!what)
        return false;
    if (fi->stack.cpu == MM_KSTACK_NO_CPU)
        mm_snprintf(buf, len, "%s: stack '%s' (no cpu)", what, fi->stack.name);
    else
        mm_snprintf(buf, len, "%s: stack '%s' of cpu %u", what, fi->stack.name, fi->stack.cpu);
    return true;
}

/* A page fault in ring 0 that nobody catches: registers, the classifier's
 * line, panic (naming the stack if the access hit a stack guard). */
static _Noreturn void kernel_page_fault(struct trap_frame *tf, uint64_t cr2)
{
    struct mm_fault_info fi;
    char stack[96];
    dump_frame(tf);
    describe_fault(cr2, tf->error_code, &fi);
    if (name_stack_fault(&fi, stack, sizeof(stack)))
        panic("page fault at %#lx: %s (RIP %#lx)", (unsigned long)cr2, stack,
              (unsigned long)tf->rip);
    panic("trap_dispatch: unhandled page fault at %#lx (%s) at RIP %#lx", (unsigned long)cr2,
          kind_name(&fi), (unsigned long)tf->rip);
}

/*
 * A double fault (on IST1).  CR2 still holds the address of the page
 * fault that could not be delivered, if that is what happened: when it
 * lies in a stack's guard page, the stack overflowed (or underflowed).
 * The saved RSP is printed too: in an overflow it points into the guard.
 */
static _Noreturn void double_fault(struct trap_frame *tf)
{
    uint64_t cr2 = read_cr2();
    struct mm_fault_info fi;
    char stack[96];
    dump_frame(tf);
    describe_fault(cr2, MM_FAULT_EC_NONE, &fi);
    if (name_stack_fault(&fi, stack, sizeof(stack)))
        panic("double fault: %s, guard page touched at %#lx (RSP %#lx, RIP %#lx)", stack,
              (unsigned long)cr2, (unsigned long)tf->rsp, (unsigned long)tf->rip);
    panic("double fault on cpu %u at RIP %#lx (CR2 %#lx: %s)", smp_cpu_id(),
          (unsigned long)tf->rip, (unsigned long)cr2, kind_name(&fi));
}

void trap_dispatch(struct trap_frame *tf)
{
    if (tf->vector >= 32) {
        irq_handler_t h = irq_handlers[tf->vector];
        if (h) {
            h(tf);
            return;
        }
        dump_frame(tf);
        panic("trap_dispatch: no handler for vector %lu", (unsigned long)tf->vector);
    }

    if ((tf->cs & 3) == 3 && caused_by_code(tf->vector)) {
        user_exception(tf);                /* returns only to retry the access */
        return;
    }

    struct percpu *pc = this_cpu();
    if (pc && pc->fault_ctx && (caused_by_code(tf->vector) ||
                                (tf->vector == 8 && fault_catch_takes_double_fault()))) {
        struct kjmp_buf *ctx = pc->fault_ctx;
        pc->fault_ctx = NULL;
        if (pc->fault_out) {
            pc->fault_out->vector = tf->vector;
            pc->fault_out->error_code = tf->error_code;
            pc->fault_out->rip = tf->rip;
            pc->fault_out->cr2 = tf->vector == 14 || tf->vector == 8 ? read_cr2() : 0;
        }
        klongjmp(ctx, 1);
    }

    if (tf->vector == 8)
        double_fault(tf);
    if (tf->vector == 14)
        kernel_page_fault(tf, read_cr2());
    dump_frame(tf);
    panic("trap_dispatch: unhandled exception %lu (%s) at RIP %#lx", (unsigned long)tf->vector,
          exception_names[tf->vector], (unsigned long)tf->rip);
}
