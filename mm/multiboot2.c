/*
 * multiboot2.c - parse the multiboot2 boot information (see
 * mm/multiboot2.h); what the memory map means for mm is mm/memmap.c's.
 *
 * Parsing.  The information is a u32 total_size, a reserved u32, then tags
 * {u32 type, u32 size, payload} each starting at an 8-byte boundary (size
 * counts the header and payload, not the padding), ending with the end tag
 * {0, 8}.  The boot loader is trusted no further than the bytes say: every
 * read is checked against total_size, and total_size against what the caller
 * can vouch for.  Anything malformed rejects the whole structure with a
 * message naming the byte offset; nothing is half-recorded.  Known tags are
 * recorded in struct mb2_info as pointers into the structure (modules as a
 * count and the first tag's offset, read back by walking the tags); unknown
 * tags are skipped.
 *
 * Which map.  GRUB gives the multiboot2 map (tag 6) under BIOS and under
 * UEFI; the EFI map (tag 17) is used when tag 6 is missing or has no
 * entries, translated to multiboot2 types: conventional, loader and
 * boot-services memory become available (only conventional memory if boot
 * services are still running, tag 18), unless its attributes say it is
 * soft-reserved or not write-back capable, as Linux's EFI code decides.
 *
 * Printing the parsed map is here too: it shows the parser's view (source
 * types and their translation), not a computation over it.
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
    uint32_t mmap_off;          /* offset of tag 6, for messages */
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
    if (info->nmodules++ == 0)
        info->module_off = off;
    return 0;
}

/* How the two memory-map tags differ; everything else is shared. */
struct map_format {
    const char *name;           /* "memory map", "EFI memory map" */
    const char *entry;          /* "entry_size", "descriptor_size" */
    uint32_t min_entry;         /* smallest entry size */
    bool partial_tail_ok;       /* a trailing partial entry is ignored */
    uint32_t length_off;        /* offset of the u64 length field */
    unsigned length_shift;      /* length = field << shift (EFI: pages) */
};

static const struct map_format mb2_map_format = {
    "memory map", "entry_size", MB2_MMAP_ENTRY_MIN, false, 8, 0,
};
/* GRUB sizes tag 17 from the firmware's map size, a whole number of
 * descriptors; a partial trailing descriptor is ignored. */
static const struct map_format efi_map_format = {
    "EFI memory map", "descriptor_size", MB2_EFI_DESC_MIN, true, 24, PAGE_SHIFT,
};

/*
 * Check the map tag at `off` against its format: header, entry size,
 * count, and that no entry's base + length wraps past 2^64.  Sets
 * *entries, *esize, *version and *count.
 */
static int parse_map(struct parser *p, const struct map_format *f, uint32_t off,
                     uint32_t size, const uint8_t **entries, uint32_t *esize,
                     uint32_t *version, unsigned *count)
{
    const uint8_t *t = p->info->base + off;
    if (size < MB2_MMAP_HEADER_SIZE)
        return parse_fail(p->err, p->err_len, "%s tag at offset 0x%x has size %u, need at least %u",
                          f->name, off, size, MB2_MMAP_HEADER_SIZE);
    *esize = rd32(t + 8);
    *version = rd32(t + 12);
    if (*esize < f->min_entry || *esize % 8 != 0)
        return parse_fail(p->err, p->err_len,
                          "%s tag at offset 0x%x: %s %u (need a multiple of 8, >= %u)",
                          f->name, off, f->entry, *esize, f->min_entry);
    uint32_t bytes = size - MB2_MMAP_HEADER_SIZE;
    if (!f->partial_tail_ok && bytes % *esize != 0)
        return parse_fail(p->err, p->err_len,
                          "%s tag at offset 0x%x (size %u): %u bytes of entries is not a multiple of %s %u",
                          f->name, off, size, bytes, f->entry, *esize);
    *count = bytes / *esize;
    if (*count > MB2_MAX_MAP_ENTRIES)
        return parse_fail(p->err, p->err_len, "%s tag at offset 0x%x: %u entries, more than %u",
                          f->name, off, *count, MB2_MAX_MAP_ENTRIES);
    for (uint32_t i = 0; i < *count; i++) {
        uint32_t eoff = off + MB2_MMAP_HEADER_SIZE + i * *esize;
        uint64_t base = rd64(p->info->base + eoff);
        uint64_t field = rd64(p->info->base + eoff + f->length_off);
        if (field > (UINT64_MAX >> f->length_shift) ||
            field << f->length_shift > UINT64_MAX - base)
            return parse_fail(p->err, p->err_len,
                              "%s entry %u at offset 0x%x: base %#lx + length field %#lx wraps",
                              f->name, i, eoff, (unsigned long)base, (unsigned long)field);
    }
    *entries = t + MB2_MMAP_HEADER_SIZE;
    return 0;
}

static int parse_mmap(struct parser *p, uint32_t off, uint32_t size)
{
    struct mb2_info *info = p->info;
    int r = parse_map(p, &mb2_map_format, off, size, &info->mmap, &info->mmap_entry_size,
                      &info->mmap_entry_version, &info->mmap_count);
    if (r)
        return r;
    /*
     * The specification promises that later entry versions only append
     * fields, so the version-0 fields are read whatever the version says.
     */
    if (info->mmap_entry_version != 0)
        mm_printf("multiboot2: memory map entry_version %u (expected 0); reading the version-0 fields\n",
                  info->mmap_entry_version);
    p->mmap_off = off;
    return 0;
}

static int parse_efi_mmap(struct parser *p, uint32_t off, uint32_t size)
{
    struct mb2_info *info = p->info;
    return parse_map(p, &efi_map_format, off, size, &info->efi_mmap, &info->efi_desc_size,
                     &info->efi_desc_version, &info->efi_count);
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

/* Walk the tags of a structure of `total` bytes up to the end tag,
 * checking each header against total and recording each tag. */
static int parse_tags(struct parser *p, uint32_t total)
{
    uint32_t seen_single = 0;
    uint32_t off = MB2_HEADER_SIZE;
    bool found_end = false;
    while (off < total) {
        if (total - off < MB2_TAG_HEADER_SIZE)
            return parse_fail(p->err, p->err_len,
                              "tag header at offset 0x%x does not fit in total_size 0x%x",
                              off, total);
        uint32_t type = rd32(p->info->base + off), size = rd32(p->info->base + off + 4);
        if (size < MB2_TAG_HEADER_SIZE)
            return parse_fail(p->err, p->err_len,
                              "tag at offset 0x%x (type %u) has size %u, below its 8-byte header",
                              off, type, size);
        if (size > total - off)
            return parse_fail(p->err, p->err_len,
                              "tag at offset 0x%x (type %u, size %u) overruns total_size 0x%x",
                              off, type, size, total);
        if (type == MB2_TAG_END) {
            if (size != MB2_TAG_HEADER_SIZE)
                return parse_fail(p->err, p->err_len,
                                  "end tag at offset 0x%x has size %u, expected 8", off, size);
            found_end = true;
            break;
        }
        int r = parse_tag(p, off, type, size, &seen_single);
        if (r)
            return r;
        /* size <= total - off <= 1 GiB-ish, so this cannot wrap a uint64_t. */
        uint64_t next = off + align_up_u64(size, 8);
        if (next >= total)
            return parse_fail(p->err, p->err_len,
                              "no end tag: tag at offset 0x%x (type %u, size %u) reaches total_size 0x%x",
                              off, type, size, total);
        off = (uint32_t)next;
    }
    if (!found_end)   /* only reachable if the loop never ran */
        return parse_fail(p->err, p->err_len, "no end tag before total_size 0x%x", total);
    return 0;
}

/* Pick the map mm uses: tag 6 if it has entries, else tag 17. */
static int choose_map(struct parser *p, uint32_t total)
{
    struct mb2_info *info = p->info;
    if (info->mmap && info->mmap_count > 0) {
        info->map_source = MB2_MAP_MULTIBOOT;
        info->map_count = info->mmap_count;
    } else if (info->efi_mmap) {
        if (info->efi_desc_version != MB2_EFI_DESC_VERSION)
            return parse_fail(p->err, p->err_len,
                              "EFI memory map (the only map with entries) has descriptor_version %u, only %u is understood",
                              info->efi_desc_version, MB2_EFI_DESC_VERSION);
        info->map_source = MB2_MAP_EFI;
        info->map_count = info->efi_count;
    } else if (info->mmap) {
        return parse_fail(p->err, p->err_len,
                          "memory map tag at offset 0x%x has no entries and there is no EFI map (tag 17)",
                          p->mmap_off);
    } else {
        return parse_fail(p->err, p->err_len,
                          "no memory map: neither tag 6 nor tag 17 in 0x%x bytes", total);
    }
    return 0;
}

int mb2_parse(struct mb2_info *info, const void *mbi, phys_addr_t mbi_pa,
              size_t max_size, char *err, size_t err_len)
{
    struct mb2_info tmp;
    struct parser p = { &tmp, err, err_len, 0 };

    if (err && err_len)
        err[0] = 0;
    __builtin_memset(&tmp, 0, sizeof tmp);
    if (!info || !mbi)
        return parse_fail(err, err_len, "no information structure (NULL pointer)");
    if (((uintptr_t)mbi | mbi_pa.raw) % 8 != 0)
        return parse_fail(err, err_len,
                          "information at %#lx (mapped at %p) is not 8-byte aligned",
                          (unsigned long)mbi_pa.raw, mbi);
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
                          "information [%#lx, %#lx) does not lie below 4 GiB",
                          (unsigned long)mbi_pa.raw, (unsigned long)(mbi_pa.raw + total));

    int r = parse_tags(&p, total);
    if (r == 0)
        r = choose_map(&p, total);
    if (r)
        return r;
    *info = tmp;
    return 0;
}

/* Is this EFI descriptor's memory unfit to be ordinary RAM whatever its
 * type: soft-reserved, or not write-back capable? */
static bool efi_attr_refuses_ram(uint64_t attr)
{
    return (attr & MB2_EFI_MEMORY_SP) != 0 || (attr & MB2_EFI_MEMORY_WB) == 0;
}

/* Translate an EFI memory type and attributes to the multiboot2 map's
 * vocabulary. */
static uint32_t efi_to_mb2_type(uint32_t efi_type, uint64_t attr, bool boot_services_live)
{
    switch (efi_type) {
    case EFI_CONVENTIONAL:
        return efi_attr_refuses_ram(attr) ? MB2_MEM_RESERVED : MB2_MEM_AVAILABLE;
    case EFI_LOADER_CODE: case EFI_LOADER_DATA:
    case EFI_BS_CODE: case EFI_BS_DATA:
        return boot_services_live || efi_attr_refuses_ram(attr) ? MB2_MEM_RESERVED
                                                                : MB2_MEM_AVAILABLE;
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
        out->efi_attr = 0;
    } else {
        const uint8_t *d = info->efi_mmap + (size_t)i * info->efi_desc_size;
        out->fw_type = rd32(d);
        out->base = rd64(d + 8);
        out->length = rd64(d + 24) << PAGE_SHIFT;
        out->efi_attr = rd64(d + 32);
        out->type = efi_to_mb2_type(out->fw_type, out->efi_attr, info->efi_boot_services);
    }
    return 0;
}

bool mb2_module_next(const struct mb2_info *info, uint32_t *cursor, struct mb2_module *out)
{
    /* The tags were validated by mb2_parse: sizes fit, an end tag follows. */
    uint32_t off = *cursor != 0 ? *cursor : info->module_off;
    if (off == 0)
        return false;
    while (off < info->total_size) {
        const uint8_t *t = info->base + off;
        uint32_t type = rd32(t), size = rd32(t + 4);
        if (type == MB2_TAG_END)
            break;
        off += (uint32_t)align_up_u64(size, 8);
        if (type == MB2_TAG_MODULE) {
            out->start = PA(rd32(t + 8));
            out->end = PA(rd32(t + 12));
            out->cmdline = (const char *)(t + 16);
            *cursor = off;
            return true;
        }
    }
    *cursor = info->total_size;     /* past the end: later calls return false */
    return false;
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

/* Why the translation refused an EFI RAM type, or "". */
static const char *efi_refusal(const struct mb2_mmap_entry *e)
{
    if (e->type != MB2_MEM_RESERVED || !efi_attr_refuses_ram(e->efi_attr))
        return "";
    switch (e->fw_type) {
    case EFI_CONVENTIONAL: case EFI_LOADER_CODE: case EFI_LOADER_DATA:
    case EFI_BS_CODE: case EFI_BS_DATA:
        return (e->efi_attr & MB2_EFI_MEMORY_SP) ? " (soft-reserved, EFI_MEMORY_SP)"
                                                 : " (not write-back, no EFI_MEMORY_WB)";
    default:
        return "";
    }
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
        mm_format_size(size, sizeof size, e.length, false);
        if (efi)
            mm_printf("  0x%016lx  0x%016lx  %10s  %s (%u) -> %s%s\n", (unsigned long)e.base,
                      (unsigned long)(e.base + e.length), size, mb2_efi_type_name(e.fw_type),
                      e.fw_type, mb2_mem_type_name(e.type), efi_refusal(&e));
        else
            mm_printf("  0x%016lx  0x%016lx  %10s  %s (%u)\n", (unsigned long)e.base,
                      (unsigned long)(e.base + e.length), size, mb2_mem_type_name(e.type),
                      e.type);
    }
}
