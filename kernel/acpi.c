/*
 * acpi.c - locate the RSDP (multiboot2 ACPI tags first, then the BIOS
 * area scan), walk the XSDT or RSDT to the MADT ("APIC") and list the
 * enabled local APICs.
 *
 * Every firmware byte is read through mm_memremap(), which returns the
 * direct-map address when the bytes lie wholly inside the direct map and
 * otherwise a temporary write-back mapping in the MMIO pool; each view is
 * released with mm_memunmap() as soon as it has been read.  So a table
 * may sit anywhere: in ACPI RAM, in firmware-reserved memory the direct
 * map leaves out, or across the edge of a direct-mapped range (which
 * neither pa_to_ptr nor the uncached mm_ioremap can reach).  A table is
 * mapped twice: its header first to learn its length, then all of it.
 * Checksums are verified; a bad table is reported and skipped.
 *
 * Runs once, on the boot CPU, from smp_init; no locking of its own.
 */
#include "kernel.h"
#include "acpi.h"
#include <mm/init.h>
#include <mm/log.h>

#define ACPI_TABLE_MAX (1u << 20)     /* a longer table is taken as corrupt */

struct __attribute__((packed)) rsdp {
    char signature[8];
    uint8_t checksum;
    char oem[6];
    uint8_t revision;
    uint32_t rsdt_pa;
    uint32_t length;          /* revision >= 2 */
    uint64_t xsdt_pa;
    uint8_t ext_checksum;
    uint8_t reserved[3];
};

struct __attribute__((packed)) sdt_header {
    char signature[4];
    uint32_t length;
    uint8_t revision;
    uint8_t checksum;
    char oem[6];
    char oem_table[8];
    uint32_t oem_revision;
    uint32_t creator_id;
    uint32_t creator_revision;
};

/* Table fields are not naturally aligned (XSDT entries sit at offset 36,
 * MADT entries wherever the previous one ended): read them bytewise. */
static uint32_t read32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static uint64_t read64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static uint8_t sum_bytes(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint8_t s = 0;
    while (n--)
        s += *b++;
    return s;
}

/* A readable view of [pa, pa + size), or NULL (mm_memremap logged why). */
static const void *acpi_map(uint64_t pa, uint64_t size)
{
    return mm_memremap(PA(pa), size);
}

/* Release a view from acpi_map; it cannot fail for one acpi_map made. */
static void acpi_unmap(const void *p)
{
    int rc = mm_memunmap((void *)(uintptr_t)p);
    if (rc != 0)
        panic("acpi_unmap: mm_memunmap(%p) failed: %s", p, mm_strerror(rc));
}

/* Map a whole table: header first for its length, then all of it. */
static const struct sdt_header *map_table(uint64_t pa, uint32_t *len_out)
{
    const struct sdt_header *h = acpi_map(pa, sizeof(*h));
    if (!h)
        return NULL;
    uint32_t len = h->length;
    acpi_unmap(h);
    if (len < sizeof(*h) || len > ACPI_TABLE_MAX) {
        printk("acpi: table at %#lx has implausible length %u\n", (unsigned long)pa, len);
        return NULL;
    }
    h = acpi_map(pa, len);
    if (h && sum_bytes(h, len) != 0) {
        printk("acpi: table %c%c%c%c at %#lx: bad checksum\n", h->signature[0],
               h->signature[1], h->signature[2], h->signature[3], (unsigned long)pa);
        acpi_unmap(h);
        return NULL;
    }
    *len_out = len;
    return h;
}

static bool rsdp_valid(const struct rsdp *r, size_t avail)
{
    if (avail < 20 || memcmp(r->signature, "RSD PTR ", 8) != 0 || sum_bytes(r, 20) != 0)
        return false;
    if (r->revision >= 2 && avail >= sizeof(*r) && r->length >= sizeof(*r) &&
        r->length <= avail && sum_bytes(r, r->length) != 0)
        return false;
    return true;
}

/* Scan [pa, pa+len) on 16-byte boundaries for a valid RSDP; copy it out. */
static bool scan_for_rsdp(uint64_t pa, uint64_t len, struct rsdp *out)
{
    const uint8_t *p = acpi_map(pa, len);
    bool found = false;
    if (!p)
        return false;
    for (uint64_t off = 0; off + sizeof(struct rsdp) <= len; off += 16) {
        if (rsdp_valid((const struct rsdp *)(p + off), len - off)) {
            memcpy(out, p + off, sizeof(*out));
            found = true;
            break;
        }
    }
    acpi_unmap(p);
    return found;
}

static bool find_rsdp(struct rsdp *out, const char **source)
{
    const struct mb2_info *mbi = mm_boot_info();
    memset(out, 0, sizeof(*out));
    if (mbi && mbi->rsdp_new && rsdp_valid(mbi->rsdp_new, mbi->rsdp_new_len)) {
        memcpy(out, mbi->rsdp_new, mbi->rsdp_new_len < sizeof(*out) ? mbi->rsdp_new_len : sizeof(*out));
        *source = "multiboot2 ACPI 2.0 tag";
        return true;
    }
    if (mbi && mbi->rsdp_old && rsdp_valid(mbi->rsdp_old, mbi->rsdp_old_len)) {
        memcpy(out, mbi->rsdp_old, 20);
        out->revision = 0;
        *source = "multiboot2 ACPI 1.0 tag";
        return true;
    }
    /* BIOS: first KiB of the EBDA, then 0xE0000..0xFFFFF. */
    const uint16_t *ebda_seg = acpi_map(0x40e, 2);
    uint64_t ebda = 0;
    if (ebda_seg) {
        ebda = (uint64_t)*ebda_seg << 4;
        acpi_unmap(ebda_seg);
    }
    if (ebda >= 0x80000 && ebda < 0xa0000 && scan_for_rsdp(ebda, 1024, out)) {
        *source = "EBDA scan";
        return true;
    }
    if (scan_for_rsdp(0xe0000, 0x20000, out)) {
        *source = "BIOS area scan";
        return true;
    }
    return false;
}

/* The MADT: a header, the local APIC address and flags (4 + 4 bytes),
 * then variable-length entries.  Returns false if it is too short. */
static bool parse_madt(const struct sdt_header *madt, uint32_t len, struct acpi_cpus *out)
{
    const uint8_t *p = (const uint8_t *)madt;
    if (len < sizeof(*madt) + 8) {
        printk("acpi: MADT of %u bytes is too short for its fixed fields\n", len);
        return false;
    }
    out->lapic_pa = read32(p + sizeof(*madt));
    for (uint32_t off = sizeof(*madt) + 8; off + 2 <= len;) {
        uint8_t type = p[off], elen = p[off + 1];
        if (elen < 2 || off + elen > len)
            break;
        uint32_t apic_id = 0, flags = 0;
        bool cpu = false;
        if (type == 0 && elen >= 8) {            /* processor local APIC */
            apic_id = p[off + 3];
            flags = read32(p + off + 4);
            cpu = true;
        } else if (type == 9 && elen >= 16) {    /* processor local x2APIC */
            apic_id = read32(p + off + 4);
            flags = read32(p + off + 8);
            cpu = true;
        } else if (type == 5 && elen >= 12) {    /* local APIC address override */
            out->lapic_pa = read64(p + off + 4);
        }
        /* flags bit 0: enabled; bit 1: online capable (can be enabled). */
        if (cpu && (flags & 1)) {
            bool dup = false;
            for (unsigned i = 0; i < out->count; i++)
                dup |= out->apic_id[i] == apic_id;
            if (!dup && out->count < MM_MAX_CPUS)
                out->apic_id[out->count++] = apic_id;
        }
        off += elen;
    }
    return true;
}

int acpi_find_cpus(struct acpi_cpus *out)
{
    struct rsdp r;
    memset(out, 0, sizeof(*out));
    if (!find_rsdp(&r, &out->rsdp_source)) {
        printk("acpi: no RSDP found\n");
        return -MM_ENOENT;
    }
    bool xsdt = r.revision >= 2 && r.xsdt_pa != 0;
    uint32_t len;
    const struct sdt_header *root = map_table(xsdt ? r.xsdt_pa : r.rsdt_pa, &len);
    if (!root)
        return -MM_ENOENT;
    unsigned entry_size = xsdt ? 8 : 4;
    unsigned n = (len - sizeof(*root)) / entry_size;
    int rc = -MM_ENOENT;
    for (unsigned i = 0; i < n && rc != 0; i++) {
        const uint8_t *e = (const uint8_t *)root + sizeof(*root) + i * entry_size;
        uint64_t pa = xsdt ? read64(e) : read32(e);
        uint32_t tlen;
        const struct sdt_header *t = map_table(pa, &tlen);
        if (!t)
            continue;
        if (memcmp(t->signature, "APIC", 4) == 0 && parse_madt(t, tlen, out))
            rc = 0;
        acpi_unmap(t);
    }
    acpi_unmap(root);
    if (rc != 0)
        printk("acpi: no MADT in the %s\n", xsdt ? "XSDT" : "RSDT");
    return rc;
}
