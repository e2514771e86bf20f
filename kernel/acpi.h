/*
 * acpi.h - just enough ACPI to list the CPUs: find the RSDP, walk the
 * RSDT/XSDT to the MADT and collect the enabled local APIC ids
 * (kernel/acpi.c).  Call after mm_init: tables are read through
 * mm_memremap.
 */
#ifndef KERNEL_ACPI_H
#define KERNEL_ACPI_H

#include <stdint.h>
#include <mm/platform.h>

struct acpi_cpus {
    unsigned count;
    uint32_t apic_id[MM_MAX_CPUS];
    uint64_t lapic_pa;        /* from the MADT header */
    const char *rsdp_source;  /* "multiboot2 tag 15", "BIOS area scan", ... */
};

/* Find the MADT and list enabled local APICs.  0, or a negative MM_E*. */
int acpi_find_cpus(struct acpi_cpus *out);

#endif
