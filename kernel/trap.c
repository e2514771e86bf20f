/*
 * trap.c - the IDT and the common trap handler.
 *
 * An exception (vectors 0-31) raised in ring 3 goes to user_exception
 * (kernel/user.c): a copy-on-write fault is resolved and retried, anything
 * else kills the user process; the kernel carries on.  In ring 0 it is
 * fatal unless a self-test armed fault_catch() on this CPU: then the
 * handler records the fault and longjmps back into fault_catch, abandoning
 * the faulting code.  A fatal exception prints the vector, error code,
 * RIP, CR2 and all registers, then panics.  Vectors 32-255 go to handlers
 * registered with irq_register() (IPIs, and the system call, whose gate
 * alone ring 3 may use: DPL 3).
 */
#include "kernel.h"
#include "fault.h"
#include "io.h"
#include "percpu.h"
#include "trap.h"
#include "user.h"
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
    if (pc && pc->fault_ctx && caused_by_code(tf->vector)) {
        struct kjmp_buf *ctx = pc->fault_ctx;
        pc->fault_ctx = NULL;
        if (pc->fault_out) {
            pc->fault_out->vector = tf->vector;
            pc->fault_out->error_code = tf->error_code;
            pc->fault_out->rip = tf->rip;
            pc->fault_out->cr2 = tf->vector == 14 ? read_cr2() : 0;
        }
        klongjmp(ctx, 1);
    }

    dump_frame(tf);
    panic("trap_dispatch: unhandled exception %lu (%s) at RIP %#lx", (unsigned long)tf->vector,
          exception_names[tf->vector], (unsigned long)tf->rip);
}
