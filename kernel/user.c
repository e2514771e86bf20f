/*
 * user.c - user processes: load the embedded user program into a new
 * address space, run it in ring 3, serve its system calls, and kill it
 * when it faults.
 *
 * Loading.  The build links user/prog.c at 0x400000 and embeds the ELF
 * file in the kernel's rodata (user/embed.asm).  Each PT_LOAD segment gets
 * fresh zeroed pages from mm_as_map_zeroed with its final protection
 * (text R+X, rodata R, data RW, never W+X) and its file bytes are copied
 * in through the direct map (mm_as_translate, pa_to_ptr), so a read-only
 * page is never writable, not even while it is filled.
 *
 * Entry and exit.  user_process_run saves the kernel context with ksetjmp
 * in the process, loads the address space and calls user_enter (isr.asm),
 * which makes the current stack TSS.RSP0 and irets to ring 3.  The
 * program comes back only through `int 0x80` (a DPL-3 gate) or an
 * exception; both arrive on the RSP0 stack, below the saved context.
 * SYS_EXIT and a ring-3 exception (user_exception) klongjmp to the saved
 * context, abandoning the entry stack; user_process_run then loads the
 * kernel table again and returns how the process ended.  A process of a
 * scheduler (kernel/sched.c) ends through sched_exit instead.
 *
 * Page faults.  A fault from ring 3 goes to the copy-on-write resolver
 * first (mm_cow_fault); only a fault it does not settle kills the process.
 *
 * User memory is only ever read through mm_copy_from_user (the direct
 * map), never through the user's pointer: SMAP stays on.  Messages go
 * through mm_printf, so they are KTAP diagnostics while suites run.
 *
 * Locking: none.  A process is run by one CPU at a time (the caller's
 * business, or its scheduler's); this_cpu()->user names it while it runs.
 */
#include "kernel.h"
#include "io.h"
#include "percpu.h"
#include "sched.h"
#include "user.h"
#include <mm/cow.h>
#include <mm/frame.h>
#include <mm/init.h>
#include <mm/log.h>

/* user/embed.asm: the user program's ELF file. */
extern const uint8_t user_image_start[], user_image_end[];

/* ------------------------------------------------------------ ELF loading */

struct elf64_ehdr {
    uint8_t ident[16];
    uint16_t type, machine;
    uint32_t version;
    uint64_t entry, phoff, shoff;
    uint32_t flags;
    uint16_t ehsize, phentsize, phnum, shentsize, shnum, shstrndx;
};

struct elf64_phdr {
    uint32_t type, flags;
    uint64_t offset, vaddr, paddr, filesz, memsz, align;
};

#define ELF_PT_LOAD 1
#define ELF_PF_X    1
#define ELF_PF_W    2
#define ELF_ET_EXEC 2
#define ELF_EM_X86_64 62

/* MM_PROT_* of a segment: text R+X, data RW, everything else R. */
static unsigned segment_prot(uint32_t flags)
{
    unsigned prot = MM_PROT_READ | MM_PROT_USER;
    if (flags & ELF_PF_W)
        prot |= MM_PROT_WRITE;
    if (flags & ELF_PF_X)
        prot |= MM_PROT_EXEC;
    return prot;
}

/* Check the ELF header: a 64-bit x86 executable whose program headers
 * lie inside the image.  Returns the header or NULL (logged). */
static const struct elf64_ehdr *elf_header(const uint8_t *img, uint64_t size)
{
    const struct elf64_ehdr *eh = (const struct elf64_ehdr *)img;
    if (size < sizeof(*eh) || memcmp(eh->ident, "\177ELF", 4) != 0 || eh->ident[4] != 2 ||
        eh->type != ELF_ET_EXEC || eh->machine != ELF_EM_X86_64 ||
        eh->phentsize != sizeof(struct elf64_phdr) || eh->phoff > size ||
        (uint64_t)eh->phnum * sizeof(struct elf64_phdr) > size - eh->phoff) {
        mm_printf("user: embedded program is not a valid x86_64 ELF executable (%lu bytes)\n",
                  (unsigned long)size);
        return NULL;
    }
    return eh;
}

/* Map one PT_LOAD segment into as and copy its file bytes in.  Returns 0,
 * -MM_EINVAL (logged: outside the image or the user half, W+X) or the
 * error of mm_as_map_zeroed; pages mapped before a failure stay mapped
 * (the caller destroys the address space). */
static int load_segment(struct mm_as *as, const uint8_t *img, uint64_t size,
                        const struct elf64_phdr *ph)
{
    unsigned prot = segment_prot(ph->flags);
    uint64_t start = align_down_u64(ph->vaddr, PAGE_SIZE);
    uint64_t end = ph->vaddr + ph->memsz;
    if (ph->filesz > ph->memsz || ph->offset > size || ph->filesz > size - ph->offset ||
        ph->vaddr < MM_USER_BASE || end < ph->vaddr || end > MM_USER_END ||
        (ph->flags & (ELF_PF_W | ELF_PF_X)) == (ELF_PF_W | ELF_PF_X)) {
        mm_printf("user: bad segment vaddr %#lx memsz %#lx flags %#x\n",
                  (unsigned long)ph->vaddr, (unsigned long)ph->memsz, ph->flags);
        return -MM_EINVAL;
    }
    for (uint64_t va = start; va < end; va += PAGE_SIZE) {
        int rc = mm_as_map_zeroed(as, VA(va), prot);
        if (rc)
            return rc;
    }
    /* Copy page by page through the direct map. */
    for (uint64_t done = 0; done < ph->filesz;) {
        uint64_t va = ph->vaddr + done;
        uint64_t n = PAGE_SIZE - (va & (PAGE_SIZE - 1));
        if (n > ph->filesz - done)
            n = ph->filesz - done;
        phys_addr_t pa;
        unsigned got;
        MM_BUG_ON(mm_as_translate(as, VA(va), &pa, &got) != 0);
        memcpy(pa_to_ptr(pa), img + ph->offset + done, n);
        done += n;
    }
    return 0;
}

/* Load every PT_LOAD segment of the embedded program into p. */
static int load_program(struct user_process *p)
{
    const uint8_t *img = user_image_start;
    uint64_t size = (uint64_t)(user_image_end - user_image_start);
    const struct elf64_ehdr *eh = elf_header(img, size);
    if (!eh)
        return -MM_EINVAL;
    const struct elf64_phdr *ph = (const struct elf64_phdr *)(img + eh->phoff);
    for (unsigned i = 0; i < eh->phnum; i++) {
        if (ph[i].type != ELF_PT_LOAD)
            continue;
        int rc = load_segment(&p->as, img, size, &ph[i]);
        if (rc)
            return rc;
    }
    p->entry = eh->entry;
    return 0;
}

_Static_assert(USER_ENOENT == MM_ENOENT && USER_ENOMEM == MM_ENOMEM,
               "user/abi.h error codes are the library's");

int user_process_create(struct user_process *p)
{
    return user_process_create_fa(p, mm_buddy_frames());
}

int user_process_create_fa(struct user_process *p, struct frame_allocator *fa)
{
    memset(p, 0, sizeof(*p));
    int rc = mm_as_create(&p->as, fa);
    if (rc)
        return rc;
    rc = load_program(p);
    for (unsigned i = 0; rc == 0 && i < USER_STACK_PAGES; i++)
        rc = mm_as_map_zeroed(&p->as, VA(USER_STACK_TOP - (i + 1) * PAGE_SIZE),
                              MM_PROT_READ | MM_PROT_WRITE | MM_PROT_USER);
    if (rc) {
        MM_BUG_ON(mm_as_destroy(&p->as) != 0);
        return rc;
    }
    return 0;
}

int user_process_destroy(struct user_process *p)
{
    return mm_as_destroy(&p->as);
}

/* ------------------------------------------------------------ running */

enum user_end user_process_run(struct user_process *p, uint64_t mode, uint64_t arg)
{
    struct percpu *pc = this_cpu();
    MM_BUG_ON(pc->user != NULL);
    p->end = USER_NOT_RUN;
    unsigned long flags = cpu_irq_save();
    mm_as_switch(&p->as);
    pc->user = p;
    if (ksetjmp(&p->kernel_ctx) == 0) {
        /* Entry address and stack: the user stack ends at USER_STACK_TOP;
         * rsp + 8 is 16-aligned, as after a call. */
        struct user_entry e = { p->entry, USER_STACK_TOP - 8, mode, arg,
                                (uint8_t *)pc->tss + TSS_RSP0_OFFSET };
        user_enter(&e);
    }
    /* Back from SYS_EXIT or user_exception, on this CPU, interrupts as saved. */
    pc->user = NULL;
    mm_as_switch(NULL);
    cpu_irq_restore(flags);
    return p->end;
}

/* End the running process with `status` (user/abi.h): back to
 * user_process_run on its kernel stack, or to its scheduler. */
static _Noreturn void user_leave(struct user_process *p, enum user_end end, long status)
{
    __asm__ volatile("cli");
    p->end = end;
    if (p->sched)
        sched_exit(p, status);
    klongjmp(&p->kernel_ctx, 1);
}

/* What a page-fault error code says, for the kill message. */
static const char *pf_cause(uint64_t err)
{
    bool present = err & 1, write = err & 2, fetch = err & 16;
    if (fetch)
        return present ? "instruction fetch from a protected page"
                       : "instruction fetch from an unmapped page";
    if (write)
        return present ? "write to a protected page" : "write to an unmapped page";
    return present ? "read of a protected page" : "read of an unmapped page";
}

/* Kill p for the exception in tf (va: the faulting address of a page
 * fault), naming `cause` in the one message. */
static _Noreturn void user_kill(struct user_process *p, struct trap_frame *tf, uint64_t va,
                                const char *cause, long status)
{
    p->fault_vector = tf->vector;
    p->fault_error = tf->error_code;
    p->fault_rip = tf->rip;
    p->fault_va = va;
    if (tf->vector == 14)
        mm_printf("user process killed: page fault at va %#lx (%s, error code %#lx, rip %#lx)\n",
                  (unsigned long)va, cause, (unsigned long)tf->error_code,
                  (unsigned long)tf->rip);
    else
        mm_printf("user process killed: %s (vector %lu, error code %#lx) at rip %#lx\n", cause,
                  (unsigned long)tf->vector, (unsigned long)tf->error_code,
                  (unsigned long)tf->rip);
    user_leave(p, USER_KILLED, status);
}

/*
 * The page-fault wiring for user faults, the part an integrating kernel
 * copies (docs/INTEGRATION.md):
 *   - read CR2 first: a later fault would overwrite it;
 *   - enable interrupts as they were in ring 3, since the resolver takes
 *     the address space's lock and may wait for a TLB shootdown;
 *   - REUSED / COPIED: return, and the CPU retries the access;
 *   - -MM_ENOMEM: no frame for the copy, kill the process (never panic);
 *   - NOT_COW: a real fault, handled as before (here: kill).
 */
void user_exception(struct trap_frame *tf)
{
    struct user_process *p = this_cpu()->user;
    if (!p)
        panic("user_exception: exception %lu from ring 3 at RIP %#lx but no process on cpu %u",
              (unsigned long)tf->vector, (unsigned long)tf->rip, smp_cpu_id());
    if (tf->vector != 14)
        user_kill(p, tf, 0, exception_names[tf->vector & 31],
                  USER_STATUS_KILLED | (long)tf->vector);

    uint64_t va = read_cr2();
    if (tf->rflags & RFLAGS_IF)
        __asm__ volatile("sti");
    int r = mm_cow_fault(&p->as, VA(va), tf->error_code);
    if (r == MM_COW_REUSED || r == MM_COW_COPIED)
        return;
    if (r == -MM_ENOMEM)
        user_kill(p, tf, va, "out of memory resolving a copy-on-write fault", USER_STATUS_OOM);
    user_kill(p, tf, va, pf_cause(tf->error_code), USER_STATUS_KILLED | 14);
}

/* ------------------------------------------------------------ system calls */

/* write(buf, len): up to WRITE_MAX bytes as one console line. */
#define WRITE_MAX 200

static long sys_write(struct user_process *p, uint64_t buf, uint64_t len)
{
    char text[WRITE_MAX + 1];
    if (len > WRITE_MAX)
        len = WRITE_MAX;
    int rc = mm_copy_from_user(&p->as, text, VA(buf), len);
    if (rc)
        return rc;
    text[len] = '\0';
    uint64_t shown = len;
    if (shown && text[shown - 1] == '\n')
        text[--shown] = '\0';
    mm_printf("user: %s\n", text);
    return (long)len;
}

static void syscall_irq(struct trap_frame *tf)
{
    struct user_process *p = this_cpu()->user;
    if ((tf->cs & 3) != 3 || !p)
        panic("syscall_irq: int %#x from ring %lu without a process (rip %#lx)",
              USER_SYSCALL_VECTOR, (unsigned long)(tf->cs & 3), (unsigned long)tf->rip);
    /* Interrupts on while the call runs, as in ring 3 (a CPU waiting for a
     * lock must be able to answer a shootdown). */
    if (tf->rflags & RFLAGS_IF)
        __asm__ volatile("sti");
    switch (tf->rax) {
    case SYS_WRITE:
        tf->rax = (uint64_t)sys_write(p, tf->rdi, tf->rsi);
        break;
    case SYS_EXIT:
        p->exit_code = (long)tf->rdi;
        user_leave(p, USER_EXITED, (long)tf->rdi & USER_STATUS_CODE_MASK);
    case SYS_GETCPU:
        tf->rax = smp_cpu_id();
        break;
    case SYS_FORK:
        tf->rax = (uint64_t)(p->sched ? sched_fork(p, tf) : -MM_EINVAL);
        break;
    case SYS_WAIT: {
        long status = 0;
        tf->rax = (uint64_t)(p->sched ? sched_wait(p, &status) : -MM_ENOENT);
        tf->rdx = (uint64_t)status;
        break;
    }
    case SYS_GETPID:
        tf->rax = (uint64_t)p->pid;
        break;
    case SYS_YIELD:
        if (p->sched)
            sched_yield(p);
        tf->rax = 0;
        break;
    default:
        tf->rax = (uint64_t)(long)-MM_EINVAL;
        break;
    }
}

void user_init(void)
{
    irq_register(USER_SYSCALL_VECTOR, syscall_irq);
}
