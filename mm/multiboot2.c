/*
 * multiboot2.c - parse the multiboot2 boot information and derive the
 * usable-RAM areas from its memory map.
 *
 * Parsing.  The information is a u32 total_size, a reserved u32, then tags
 * {u32 type, u32 size, payload} each starting at an 8-byte boundary (size
 * counts the header and payload, not the padding), ending with the end tag
 * {0, 8}.  The boot loader is trusted no further than the bytes say: every
 * read is checked against total_size, and total_size against what the caller
 * can vouch for.  Anything malformed rejects the whole structure with a
 * message naming the byte offset; nothing is half-recorded.  Known tags are
 * recorded in struct mb2_info as pointers into the structure; unknown tags
 * are skipped.
 *
 * Which map.  GRUB gives the multiboot2 map (tag 6) under BIOS and under
 * UEFI; the EFI map (tag 17) is used only when tag 6 is missing, translated
 * to multiboot2 types (conventional, loader and boot-services memory become
 * available; if boot services are still running (tag 18) only conventional
 * memory does).
 *
 * Usable areas.  A byte is usable when some type-1 entry covers it, no entry
 * of any other type covers it (unknown types count as reserved, reserved
 * wins over available), and it lies outside the low 1 MiB, the information
 * itself, every module and the caller's reserved ranges.  The areas are the
 * maximal runs of usable bytes, shrunk inwards to page boundaries.  They are
 * found by a sweep over the interval end points: between two consecutive end
 * points the answer is constant, so each segment is classified once.  With
 * n intervals this is O(n^2) time and O(1) extra space, which is fine for
 * maps of a few hundred entries and needs no allocator (there is none yet).
 *
 * No locking: this runs once, on the boot CPU, before anything else.
 */
#include <mm/log.h>
#include <mm/multiboot2.h>

#define MB2_HEADER_SIZE       8     /* total_size + reserved */
#define MB2_TAG_HEADER_SIZE   8     /* type + size */
#define MB2_MMAP_HEADER_SIZE  16    /* tag header + entry_size + entry_version */
#define MB2_MMAP_ENTRY_MIN    24    /* base, length, type, reserved */
#define MB2_MODULE_MIN_SIZE   17    /* tag header, start, end, "" */
#define MB2_MEMINFO_SIZE      16
#define MB2_RSDP_V1_LEN       20    /* ACPI 1.0 RSDP */
#define MB2_RSDP_V2_LEN       36    /* ACPI 2.0 RSDP with XSDT address */
#define MB2_EFI_DESC_MIN      40    /* EFI_MEMORY_DESCRIPTOR */
#define MB2_EFI_DESC_VERSION  1
#define MB2_MAX_MAP_ENTRIES   4096  /* keeps the O(n^2) sweep bounded */
#define MB2_LOW_RESERVED      MiB   /* BIOS data, real-mode IVT, trampolines */

/* EFI memory types (UEFI specification, EFI_MEMORY_TYPE). */
enum {
    EFI_RESERVED = 0, EFI_LOADER_CODE, EFI_LOADER_DATA, EFI_BS_CODE,
    EFI_BS_DATA, EFI_RT_CODE, EFI_RT_DATA, EFI_CONVENTIONAL, EFI_UNUSABLE,
    EFI_ACPI_RECLAIM, EFI_ACPI_NVS, EFI_MMIO, EFI_MMIO_PORT, EFI_PAL_CODE,
    EFI_PERSISTENT, EFI_UNACCEPTED, EFI_NTYPES
};

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}

/* Format "multiboot2: <message>" into err and return -MM_EINVAL. */
__attribute__((format(printf, 3, 4)))
static int parse_fail(char *err, size_t err_len, const char *fmt, ...)
{
    if (err && err_len) {
        int n = mm_snprintf(err, err_len, "multiboot2: ");
        if (n >= 0 && (size_t)n < err_len) {
            va_list ap;
            va_start(ap, fmt);
            mm_vsnprintf(err + n, err_len - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return -MM_EINVAL;
}

static bool has_nul(const uint8_t *s, uint32_t len)
{
    for (uint32_t i = 0; i < len; i++)
        if (s[i] == 0)
            return true;
    return false;
}

/* The parser's working state: the information and where the error goes. */
struct parser {
    struct mb2_info *info;
    char *err;
    size_t err_len;
};

/* Is tag `type` one that may appear only once? */
static bool tag_is_single(uint32_t type)
{
    switch (type) {
    case MB2_TAG_CMDLINE: case MB2_TAG_LOADER_NAME: case MB2_TAG_BASIC_MEMINFO:
    case MB2_TAG_MMAP: case MB2_TAG_ACPI_OLD: case MB2_TAG_ACPI_NEW:
    case MB2_TAG_EFI_MMAP:
        return true;
    default:
        return false;
    }
}

static int parse_string(struct parser *p, uint32_t off, uint32_t type,
                        uint32_t size, const char **out)
{
    const uint8_t *s = p->info->base + off + MB2_TAG_HEADER_SIZE;
    if (!has_nul(s, size - MB2_TAG_HEADER_SIZE))
        return parse_fail(p->err, p->err_len,
                          "tag at offset 0x%x (type %u, size %u): string is not NUL-terminated",
                          off, type, size);
    *out = (const char *)s;
    return 0;
}

static int parse_module(struct parser *p, uint32_t off, uint32_t size)
{
    struct mb2_info *info = p->info;
    const uint8_t *t = info->base + off;

    if (size < MB2_MODULE_MIN_SIZE)
        return parse_fail(p->err, p->err_len,
                          "module tag at offset 0x%x has size %u, need at least %u",
                          off, size, MB2_MODULE_MIN_SIZE);
    uint32_t start = rd32(t + 8), end = rd32(t + 12);
    if (end < start)
        return parse_fail(p->err, p->err_len,
                          "module tag at offset 0x%x: mod_end 0x%x below mod_start 0x%x",
                          off, end, start);
    if (!has_nul(t + 16, size - 16))
        return parse_fail(p->err, p->err_len,
                          "module tag at offset 0x%x: string is not NUL-terminated", off);
    if (info->nmodules == MB2_MAX_MODULES)
        return parse_fail(p->err, p->err_len,
                          "module tag at offset 0x%x: more than %u modules",
                          off, MB2_MAX_MODULES);
    struct mb2_module *m = &info->modules[info->nmodules++];
    m->start = PA(start);
    m->end = PA(end);
    m->cmdline = (const char *)(t + 16);
    return 0;
}

/* Check that base + length of an entry does not wrap around 2^64. */
static int check_range(struct parser *p, const char *what, unsigned i,
                       uint32_t off, uint64_t base, uint64_t length)
{
    if (length > UINT64_MAX - base)
        return parse_fail(p->err, p->err_len,
                          "%s entry %u at offset 0x%x: base 0x%llx + length 0x%llx wraps",
                          what, i, off, (unsigned long long)base,
                          (unsigned long long)length);
    return 0;
}

static int parse_mmap(struct parser *p, uint32_t off, uint32_t size)
{
    struct mb2_info *info = p->info;
    const uint8_t *t = info->base + off;

    if (size < MB2_MMAP_HEADER_SIZE)
        return parse_fail(p->err, p->err_len,
                          "memory map tag at offset 0x%x has size %u, need at least %u",
                          off, size, MB2_MMAP_HEADER_SIZE);
    uint32_t esize = rd32(t + 8), version = rd32(t + 12);
    if (esize < MB2_MMAP_ENTRY_MIN || esize % 8 != 0)
        return parse_fail(p->err, p->err_len,
                          "memory map tag at offset 0x%x: entry_size %u (need a multiple of 8, >= %u)",
                          off, esize, MB2_MMAP_ENTRY_MIN);
    uint32_t bytes = size - MB2_MMAP_HEADER_SIZE;
    if (bytes % esize != 0)
        return parse_fail(p->err, p->err_len,
                          "memory map tag at offset 0x%x (size %u): %u bytes of entries is not a multiple of entry_size %u",
                          off, size, bytes, esize);
    uint32_t count = bytes / esize;
    if (count > MB2_MAX_MAP_ENTRIES)
        return parse_fail(p->err, p->err_len,
                          "memory map tag at offset 0x%x: %u entries, more than %u",
                          off, count, MB2_MAX_MAP_ENTRIES);
    for (uint32_t i = 0; i < count; i++) {
        uint32_t eoff = off + MB2_MMAP_HEADER_SIZE + i * esize;
        int r = check_range(p, "memory map", i, eoff, rd64(info->base + eoff),
                            rd64(info->base + eoff + 8));
        if (r)
            return r;
    }
    /*
     * The specification promises that later entry versions only append
     * fields, so the version-0 fields are read whatever the version says.
     */
    if (version != 0)
        mm_printf("multiboot2: memory map entry_version %u (expected 0); reading the version-0 fields\n",
                  version);
    info->mmap = t + MB2_MMAP_HEADER_SIZE;
    info->mmap_entry_size = esize;
    info->mmap_entry_version = version;
    info->mmap_count = count;
    return 0;
}

static int parse_efi_mmap(struct parser *p, uint32_t off, uint32_t size)
{
    struct mb2_info *info = p->info;
    const uint8_t *t = info->base + off;

    if (size < MB2_MMAP_HEADER_SIZE)
        return parse_fail(p->err, p->err_len,
                          "EFI memory map tag at offset 0x%x has size %u, need at least %u",
                          off, size, MB2_MMAP_HEADER_SIZE);
    uint32_t dsize = rd32(t + 8), version = rd32(t + 12);
    if (dsize < MB2_EFI_DESC_MIN || dsize % 8 != 0)
        return parse_fail(p->err, p->err_len,
                          "EFI memory map tag at offset 0x%x: descriptor_size %u (need a multiple of 8, >= %u)",
                          off, dsize, MB2_EFI_DESC_MIN);
    /*
     * GRUB sizes this tag from the firmware's map size, which is a whole
     * number of descriptors; a partial trailing descriptor is ignored.
     */
    uint32_t count = (size - MB2_MMAP_HEADER_SIZE) / dsize;
    if (count > MB2_MAX_MAP_ENTRIES)
        return parse_fail(p->err, p->err_len,
                          "EFI memory map tag at offset 0x%x: %u descriptors, more than %u",
                          off, count, MB2_MAX_MAP_ENTRIES);
    for (uint32_t i = 0; i < count; i++) {
        uint32_t doff = off + MB2_MMAP_HEADER_SIZE + i * dsize;
        uint64_t npages = rd64(info->base + doff + 24);
        if (npages > (UINT64_MAX >> PAGE_SHIFT))
            return parse_fail(p->err, p->err_len,
                              "EFI memory map descriptor %u at offset 0x%x: %llu pages overflow",
                              i, doff, (unsigned long long)npages);
        int r = check_range(p, "EFI memory map", i, doff, rd64(info->base + doff + 8),
                            npages << PAGE_SHIFT);
        if (r)
            return r;
    }
    info->efi_mmap = t + MB2_MMAP_HEADER_SIZE;
    info->efi_desc_size = dsize;
    info->efi_desc_version = version;
    info->efi_count = count;
    return 0;
}

static int parse_rsdp(struct parser *p, uint32_t off, uint32_t type, uint32_t size)
{
    struct mb2_info *info = p->info;
    uint32_t need = type == MB2_TAG_ACPI_OLD ? MB2_RSDP_V1_LEN : MB2_RSDP_V2_LEN;
    uint32_t len = size - MB2_TAG_HEADER_SIZE;

    if (len < need)
        return parse_fail(p->err, p->err_len,
                          "ACPI RSDP tag at offset 0x%x (type %u, size %u): RSDP copy of %u bytes, need %u",
                          off, type, size, len, need);
    const void *rsdp = info->base + off + MB2_TAG_HEADER_SIZE;
    if (type == MB2_TAG_ACPI_OLD) {
        info->rsdp_old = rsdp;
        info->rsdp_old_len = len;
    } else {
        info->rsdp_new = rsdp;
        info->rsdp_new_len = len;
    }
    return 0;
}

/* Record one tag whose header has already been bounds-checked. */
static int parse_tag(struct parser *p, uint32_t off, uint32_t type, uint32_t size,
                     uint32_t *seen_single)
{
    struct mb2_info *info = p->info;

    if (tag_is_single(type)) {
        if (*seen_single & (1u << type))
            return parse_fail(p->err, p->err_len,
                              "tag at offset 0x%x (type %u, size %u) is a duplicate",
                              off, type, size);
        *seen_single |= 1u << type;
    }

    switch (type) {
    case MB2_TAG_CMDLINE:
        return parse_string(p, off, type, size, &info->cmdline);
    case MB2_TAG_LOADER_NAME:
        return parse_string(p, off, type, size, &info->loader_name);
    case MB2_TAG_MODULE:
        return parse_module(p, off, size);
    case MB2_TAG_BASIC_MEMINFO:
        if (size < MB2_MEMINFO_SIZE)
            return parse_fail(p->err, p->err_len,
                              "basic meminfo tag at offset 0x%x has size %u, need %u",
                              off, size, MB2_MEMINFO_SIZE);
        info->has_meminfo = true;
        info->mem_lower_kib = rd32(info->base + off + 8);
        info->mem_upper_kib = rd32(info->base + off + 12);
        return 0;
    case MB2_TAG_MMAP:
        return parse_mmap(p, off, size);
    case MB2_TAG_ACPI_OLD:
    case MB2_TAG_ACPI_NEW:
        return parse_rsdp(p, off, type, size);
    case MB2_TAG_EFI_MMAP:
        return parse_efi_mmap(p, off, size);
    case MB2_TAG_EFI_BS:
        info->efi_boot_services = true;
        return 0;
    default:
        return 0;   /* framebuffer, ELF sections, SMBIOS, ...: not mm's business */
    }
}

int mb2_parse(struct mb2_info *info, const void *mbi, phys_addr_t mbi_pa,
              size_t max_size, char *err, size_t err_len)
{
    struct mb2_info tmp;
    struct parser p = { &tmp, err, err_len };

    if (err && err_len)
        err[0] = 0;
    __builtin_memset(&tmp, 0, sizeof tmp);
    if (!info || !mbi)
        return parse_fail(err, err_len, "no information structure (NULL pointer)");
    if (((uintptr_t)mbi | mbi_pa.raw) % 8 != 0)
        return parse_fail(err, err_len,
                          "information at 0x%llx (mapped at %p) is not 8-byte aligned",
                          (unsigned long long)mbi_pa.raw, mbi);
    if (max_size < MB2_HEADER_SIZE)
        return parse_fail(err, err_len,
                          "only %zu readable bytes, the header alone needs %u",
                          max_size, MB2_HEADER_SIZE);

    tmp.base = mbi;
    tmp.pa = mbi_pa;
    uint32_t total = rd32(tmp.base);
    tmp.total_size = total;
    if (total < MB2_HEADER_SIZE + MB2_TAG_HEADER_SIZE)
        return parse_fail(err, err_len,
                          "total_size 0x%x at offset 0x0 is below the minimum 0x%x (header + end tag)",
                          total, MB2_HEADER_SIZE + MB2_TAG_HEADER_SIZE);
    if (total > max_size)
        return parse_fail(err, err_len,
                          "total_size 0x%x at offset 0x0 exceeds the 0x%zx readable bytes",
                          total, max_size);
    /* The loader passes the address in a 32-bit register. */
    if (mbi_pa.raw > UINT32_MAX || mbi_pa.raw + total > (UINT64_C(1) << 32))
        return parse_fail(err, err_len,
                          "information [0x%llx, 0x%llx) does not lie below 4 GiB",
                          (unsigned long long)mbi_pa.raw,
                          (unsigned long long)(mbi_pa.raw + total));

    uint32_t seen_single = 0;
    uint32_t off = MB2_HEADER_SIZE;
    bool found_end = false;
    while (off < total) {
        if (total - off < MB2_TAG_HEADER_SIZE)
            return parse_fail(err, err_len,
                              "tag header at offset 0x%x does not fit in total_size 0x%x",
                              off, total);
        uint32_t type = rd32(tmp.base + off), size = rd32(tmp.base + off + 4);
        if (size < MB2_TAG_HEADER_SIZE)
            return parse_fail(err, err_len,
                              "tag at offset 0x%x (type %u) has size %u, below its 8-byte header",
                              off, type, size);
        if (size > total - off)
            return parse_fail(err, err_len,
                              "tag at offset 0x%x (type %u, size %u) overruns total_size 0x%x",
                              off, type, size, total);
        if (type == MB2_TAG_END) {
            if (size != MB2_TAG_HEADER_SIZE)
                return parse_fail(err, err_len,
                                  "end tag at offset 0x%x has size %u, expected 8", off, size);
            found_end = true;
            break;
        }
        int r = parse_tag(&p, off, type, size, &seen_single);
        if (r)
            return r;
        /* size <= total - off <= 1 GiB-ish, so this cannot wrap a uint64_t. */
        uint64_t next = off + align_up_u64(size, 8);
        if (next >= total)
            return parse_fail(err, err_len,
                              "no end tag: tag at offset 0x%x (type %u, size %u) reaches total_size 0x%x",
                              off, type, size, total);
        off = (uint32_t)next;
    }
    if (!found_end)   /* only reachable if the loop never ran */
        return parse_fail(err, err_len, "no end tag before total_size 0x%x", total);

    if (tmp.mmap) {
        tmp.map_source = MB2_MAP_MULTIBOOT;
        tmp.map_count = tmp.mmap_count;
    } else if (tmp.efi_mmap) {
        if (tmp.efi_desc_version != MB2_EFI_DESC_VERSION)
            return parse_fail(err, err_len,
                              "EFI memory map (the only map) has descriptor_version %u, only %u is understood",
                              tmp.efi_desc_version, MB2_EFI_DESC_VERSION);
        tmp.map_source = MB2_MAP_EFI;
        tmp.map_count = tmp.efi_count;
    } else {
        return parse_fail(err, err_len,
                          "no memory map: neither tag 6 nor tag 17 in 0x%x bytes", total);
    }

    *info = tmp;
    return 0;
}

/* Translate an EFI memory type to the multiboot2 map's vocabulary. */
static uint32_t efi_to_mb2_type(uint32_t efi_type, bool boot_services_live)
{
    switch (efi_type) {
    case EFI_CONVENTIONAL:
        return MB2_MEM_AVAILABLE;
    case EFI_LOADER_CODE: case EFI_LOADER_DATA:
    case EFI_BS_CODE: case EFI_BS_DATA:
        return boot_services_live ? MB2_MEM_RESERVED : MB2_MEM_AVAILABLE;
    case EFI_ACPI_RECLAIM:
        return MB2_MEM_ACPI_RECLAIM;
    case EFI_ACPI_NVS:
        return MB2_MEM_ACPI_NVS;
    case EFI_UNUSABLE:
        return MB2_MEM_BAD;
    default:
        return MB2_MEM_RESERVED;
    }
}

int mb2_map_entry(const struct mb2_info *info, unsigned i, struct mb2_mmap_entry *out)
{
    if (i >= info->map_count) {
        mm_printf("mb2_map_entry: index %u out of range (%u entries)\n", i, info->map_count);
        return -MM_EINVAL;
    }
    if (info->map_source == MB2_MAP_MULTIBOOT) {
        const uint8_t *e = info->mmap + (size_t)i * info->mmap_entry_size;
        out->base = rd64(e);
        out->length = rd64(e + 8);
        out->type = out->fw_type = rd32(e + 16);
    } else {
        const uint8_t *d = info->efi_mmap + (size_t)i * info->efi_desc_size;
        out->fw_type = rd32(d);
        out->base = rd64(d + 8);
        out->length = rd64(d + 24) << PAGE_SHIFT;
        out->type = efi_to_mb2_type(out->fw_type, info->efi_boot_services);
    }
    return 0;
}

const char *mb2_mem_type_name(uint32_t type)
{
    switch (type) {
    case MB2_MEM_AVAILABLE:    return "available";
    case MB2_MEM_RESERVED:     return "reserved";
    case MB2_MEM_ACPI_RECLAIM: return "ACPI reclaimable";
    case MB2_MEM_ACPI_NVS:     return "ACPI NVS";
    case MB2_MEM_BAD:          return "bad RAM";
    default:                   return "unknown";
    }
}

const char *mb2_efi_type_name(uint32_t efi_type)
{
    static const char *const names[EFI_NTYPES] = {
        "EfiReserved", "EfiLoaderCode", "EfiLoaderData", "EfiBootServicesCode",
        "EfiBootServicesData", "EfiRuntimeServicesCode", "EfiRuntimeServicesData",
        "EfiConventional", "EfiUnusable", "EfiACPIReclaim", "EfiACPINVS",
        "EfiMMIO", "EfiMMIOPortSpace", "EfiPalCode", "EfiPersistent",
        "EfiUnaccepted",
    };
    return efi_type < EFI_NTYPES ? names[efi_type] : "unknown";
}

/* Format a byte count with a unit that keeps it readable. */
static void format_size(char *buf, size_t len, uint64_t bytes)
{
    if (bytes >= 10 * GiB)
        mm_snprintf(buf, len, "%llu GiB", (unsigned long long)(bytes / GiB));
    else if (bytes >= 10 * MiB)
        mm_snprintf(buf, len, "%llu MiB", (unsigned long long)(bytes / MiB));
    else if (bytes >= 10 * KiB)
        mm_snprintf(buf, len, "%llu KiB", (unsigned long long)(bytes / KiB));
    else
        mm_snprintf(buf, len, "%llu B", (unsigned long long)bytes);
}

void mb2_print_map(const struct mb2_info *info)
{
    bool efi = info->map_source == MB2_MAP_EFI;

    mm_printf("firmware memory map (%s, %u entries):\n",
              efi ? "EFI map, tag 17" : "multiboot2 map, tag 6", info->map_count);
    mm_printf("  %-18s  %-18s  %10s  %s\n", "start", "end (exclusive)", "size", "type");
    for (unsigned i = 0; i < info->map_count; i++) {
        struct mb2_mmap_entry e;
        char size[24];
        if (mb2_map_entry(info, i, &e))
            break;
        format_size(size, sizeof size, e.length);
        if (efi)
            mm_printf("  0x%016llx  0x%016llx  %10s  %s (%u) -> %s\n",
                      (unsigned long long)e.base, (unsigned long long)(e.base + e.length),
                      size, mb2_efi_type_name(e.fw_type), e.fw_type,
                      mb2_mem_type_name(e.type));
        else
            mm_printf("  0x%016llx  0x%016llx  %10s  %s (%u)\n",
                      (unsigned long long)e.base, (unsigned long long)(e.base + e.length),
                      size, mb2_mem_type_name(e.type), e.type);
    }
}

/*
 * The intervals the sweep looks at, numbered 0..n-1: first the firmware map
 * entries, then the low 1 MiB, the information, the modules and the caller's
 * reserved ranges.
 */
struct sweep {
    const struct mb2_info *info;
    const struct mb2_reserved *reserved;
    unsigned nreserved;
    unsigned n;
};

enum interval_kind { IV_EMPTY, IV_RAM, IV_FW_RESERVED, IV_CARVED };

static enum interval_kind sweep_interval(const struct sweep *s, unsigned i,
                                         uint64_t *start, uint64_t *end)
{
    const struct mb2_info *info = s->info;

    if (i < info->map_count) {
        struct mb2_mmap_entry e;
        mb2_map_entry(info, i, &e);
        *start = e.base;
        *end = e.base + e.length;
        if (e.length == 0)
            return IV_EMPTY;
        return e.type == MB2_MEM_AVAILABLE ? IV_RAM : IV_FW_RESERVED;
    }
    i -= info->map_count;
    if (i == 0) {
        *start = 0;
        *end = MB2_LOW_RESERVED;
    } else if (i == 1) {
        *start = info->pa.raw;
        *end = info->pa.raw + info->total_size;
    } else if (i - 2 < info->nmodules) {
        *start = info->modules[i - 2].start.raw;
        *end = info->modules[i - 2].end.raw;
    } else {
        const struct mb2_reserved *r = &s->reserved[i - 2 - info->nmodules];
        *start = r->start.raw;
        *end = r->end.raw;
    }
    return *start < *end ? IV_CARVED : IV_EMPTY;
}

/* Smallest interval end point strictly above x; false if there is none. */
static bool sweep_next(const struct sweep *s, uint64_t x, uint64_t *next)
{
    bool found = false;
    for (unsigned i = 0; i < s->n; i++) {
        uint64_t a, b;
        if (sweep_interval(s, i, &a, &b) == IV_EMPTY)
            continue;
        if (a > x && (!found || a < *next)) {
            *next = a;
            found = true;
        }
        if (b > x && (!found || b < *next)) {
            *next = b;
            found = true;
        }
    }
    return found;
}

/* Classify point x: is it firmware RAM, and is it usable by mm? */
static void sweep_classify(const struct sweep *s, uint64_t x, bool *fw_ram, bool *usable)
{
    bool ram = false, fw_reserved = false, carved = false;
    for (unsigned i = 0; i < s->n; i++) {
        uint64_t a, b;
        enum interval_kind k = sweep_interval(s, i, &a, &b);
        if (k == IV_EMPTY || x < a || x >= b)
            continue;
        if (k == IV_RAM)
            ram = true;
        else if (k == IV_FW_RESERVED)
            fw_reserved = true;
        else
            carved = true;
    }
    *fw_ram = ram && !fw_reserved;
    *usable = *fw_ram && !carved;
}

/* Append a page-aligned area in address order, keeping the largest if full. */
static void areas_append(struct mm_area_list *out, struct mb2_usable_stats *st,
                         uint64_t start, uint64_t end)
{
    if (out->count == MM_MAX_AREAS) {
        unsigned smallest = 0;
        for (unsigned i = 1; i < out->count; i++)
            if (mm_area_size(&out->area[i]) < mm_area_size(&out->area[smallest]))
                smallest = i;
        uint64_t victim_start = start, victim_end = end;
        if (mm_area_size(&out->area[smallest]) < end - start) {
            victim_start = out->area[smallest].start.raw;
            victim_end = out->area[smallest].end.raw;
            for (unsigned i = smallest; i + 1 < out->count; i++)
                out->area[i] = out->area[i + 1];
            out->count--;
        }
        mm_printf("mb2_usable_areas: more than %u areas, dropping [0x%llx, 0x%llx) (%llu KiB)\n",
                  MM_MAX_AREAS, (unsigned long long)victim_start,
                  (unsigned long long)victim_end,
                  (unsigned long long)((victim_end - victim_start) / KiB));
        st->dropped_areas++;
        st->dropped_bytes += victim_end - victim_start;
        st->usable_bytes -= victim_end - victim_start;
        if (victim_start == start)
            return;
    }
    out->area[out->count].start = PA(start);
    out->area[out->count].end = PA(end);
    out->count++;
}

/* Emit the usable run [start, end) shrunk inwards to page boundaries. */
static void emit_run(struct mm_area_list *out, struct mb2_usable_stats *st,
                     uint64_t start, uint64_t end)
{
    if (start > UINT64_MAX - (PAGE_SIZE - 1))
        return;
    uint64_t s = align_up_u64(start, PAGE_SIZE), e = align_down_u64(end, PAGE_SIZE);
    if (s >= e)
        return;
    st->usable_bytes += e - s;
    areas_append(out, st, s, e);
}

int mb2_usable_areas(const struct mb2_info *info,
                     const struct mb2_reserved *reserved, unsigned nreserved,
                     struct mm_area_list *out, struct mb2_usable_stats *stats)
{
    for (unsigned i = 0; i < nreserved; i++) {
        if (reserved[i].end.raw < reserved[i].start.raw) {
            mm_printf("mb2_usable_areas: reserved range %u (%s) [0x%llx, 0x%llx) ends before it starts\n",
                      i, reserved[i].what ? reserved[i].what : "?",
                      (unsigned long long)reserved[i].start.raw,
                      (unsigned long long)reserved[i].end.raw);
            return -MM_EINVAL;
        }
    }

    struct sweep s = { info, reserved, nreserved,
                       info->map_count + 2 + info->nmodules + nreserved };
    struct mb2_usable_stats st = { 0 };
    out->count = 0;

    uint64_t x = 0, run_start = 0;
    bool in_run = false;
    for (;;) {
        bool fw_ram, usable, more;
        uint64_t next = 0;
        sweep_classify(&s, x, &fw_ram, &usable);
        more = sweep_next(&s, x, &next);
        if (usable && !in_run) {
            run_start = x;
            in_run = true;
        } else if (!usable && in_run) {
            emit_run(out, &st, run_start, x);
            in_run = false;
        }
        if (!more)
            break;
        if (fw_ram)
            st.ram_bytes += next - x;
        x = next;
    }
    /* Every interval ends, so beyond the last end point nothing is usable. */
    MM_BUG_ON(in_run);

    st.reserved_bytes = st.ram_bytes - st.usable_bytes - st.dropped_bytes;
    if (stats)
        *stats = st;
    return 0;
}

void mb2_print_summary(const struct mm_area_list *areas,
                       const struct mb2_usable_stats *stats)
{
    uint64_t usable = 0;
    for (unsigned i = 0; i < areas->count; i++)
        usable += mm_area_size(&areas->area[i]);
    if (!stats) {
        mm_printf("mm: usable RAM %llu MiB in %u areas\n",
                  (unsigned long long)(usable / MiB), areas->count);
        return;
    }
    char dropped[64] = "";
    if (stats->dropped_areas)
        mm_snprintf(dropped, sizeof dropped, "; dropped %u areas (%llu KiB)",
                    stats->dropped_areas, (unsigned long long)(stats->dropped_bytes / KiB));
    mm_printf("mm: usable RAM %llu MiB in %u areas; reserved %llu KiB of %llu MiB firmware RAM%s\n",
              (unsigned long long)(usable / MiB), areas->count,
              (unsigned long long)(stats->reserved_bytes / KiB),
              (unsigned long long)(stats->ram_bytes / MiB), dropped);
}
