/*
 * trap.c - the IDT and the common trap handler.
 *
 * Exceptions (vectors 0-31) are fatal unless a self-test armed fault_catch()
 * on this CPU: then the handler records the fault and longjmps back into
 * fault_catch, abandoning the faulting code.  A fatal exception prints the
 * vector, error code, RIP, CR2 and all registers, then panics.  Vectors
 * 32-255 go to handlers registered with irq_register() (IPIs).
 */
#include "kernel.h"
#include "fault.h"
#include "io.h"
#include "smp.h"
#include "trap.h"

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

static const char *const exception_names[32] = {
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
        idt[v].selector = 0x08;
        idt[v].ist = v == 8 ? 1 : v == 2 ? 2 : 0;  /* #DF on IST1, NMI on IST2 */
        idt[v].type_attr = 0x8e;                   /* present, ring 0, interrupt gate */
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
    printk("\nUNEXPECTED EXCEPTION %lu (%s) on cpu %u\n", tf->vector, name, smp_cpu_id());
    printk("  error code %#lx  RIP %016lx  CS %lx  RFLAGS %016lx\n",
           tf->error_code, tf->rip, tf->cs, tf->rflags);
    printk("  CR2 %016lx  CR3 %016lx  RSP %016lx\n", read_cr2(), read_cr3(), tf->rsp);
    printk("  RAX %016lx RBX %016lx RCX %016lx RDX %016lx\n", tf->rax, tf->rbx, tf->rcx, tf->rdx);
    printk("  RSI %016lx RDI %016lx RBP %016lx R8  %016lx\n", tf->rsi, tf->rdi, tf->rbp, tf->r8);
    printk("  R9  %016lx R10 %016lx R11 %016lx R12 %016lx\n", tf->r9, tf->r10, tf->r11, tf->r12);
    printk("  R13 %016lx R14 %016lx R15 %016lx\n", tf->r13, tf->r14, tf->r15);
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
        panic("trap_dispatch: no handler for vector %lu", tf->vector);
    }

    struct percpu *pc = this_cpu();
    if (pc && pc->fault_ctx && tf->vector != 8 && tf->vector != 2 && tf->vector != 18) {
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
    panic("unhandled exception %lu (%s) at RIP %#lx", tf->vector,
          exception_names[tf->vector], tf->rip);
}
