/*
 * mm/multiboot2.h - the multiboot2 boot information parser.
 *
 * mb2_parse() validates the whole information structure once (sizes,
 * alignment, every tag it knows, the end tag) and records what mm needs in a
 * struct mb2_info.  The recorded pointers point into the caller's copy of
 * the structure, which must stay mapped and untouched for as long as the
 * mb2_info is used (mb2_usable_areas() keeps the structure itself out of the
 * usable areas, so nothing in mm overwrites it).  The accessors below read
 * the parsed data; they never fail on a structure mb2_parse accepted.
 *
 * What the map means for mm (usable areas, queries over the firmware map)
 * lives in mm/memmap.h, included here because every user of the parser
 * needs it next.
 */
#ifndef MM_MULTIBOOT2_H
#define MM_MULTIBOOT2_H

#include <mm/memmap.h>
#include <mm/types.h>

/* The magic value the boot loader leaves in EAX. */
#define MB2_BOOTLOADER_MAGIC 0x36d76289u

/* Tag types (multiboot2 specification, section 3.6). */
#define MB2_TAG_END             0
#define MB2_TAG_CMDLINE         1
#define MB2_TAG_LOADER_NAME     2
#define MB2_TAG_MODULE          3
#define MB2_TAG_BASIC_MEMINFO   4
#define MB2_TAG_MMAP            6
#define MB2_TAG_ACPI_OLD        14
#define MB2_TAG_ACPI_NEW        15
#define MB2_TAG_EFI_MMAP        17
#define MB2_TAG_EFI_BS          18  /* EFI boot services were not exited */

/* Memory-map entry types of the multiboot2 map (type 6). */
#define MB2_MEM_AVAILABLE       1
#define MB2_MEM_RESERVED        2
#define MB2_MEM_ACPI_RECLAIM    3
#define MB2_MEM_ACPI_NVS        4
#define MB2_MEM_BAD             5

/* EFI memory attributes (UEFI specification, EFI_MEMORY_DESCRIPTOR). */
#define MB2_EFI_MEMORY_WB       (UINT64_C(1) << 3)   /* write-back cacheable */
#define MB2_EFI_MEMORY_SP       (UINT64_C(1) << 18)  /* specific purpose (soft-reserved) */

/* Most entries a memory map may have (either tag). */
#define MB2_MAX_MAP_ENTRIES     4096
/* Default upper bound on total_size when the caller knows no better. */
#define MB2_MAX_INFO_SIZE       (1u << 20)
/* Size of an error-message buffer that always holds a whole message. */
#define MB2_ERR_LEN             160

enum mb2_map_source {
    MB2_MAP_NONE = 0,       /* no memory map at all (mb2_parse rejects this) */
    MB2_MAP_MULTIBOOT,      /* tag 6 */
    MB2_MAP_EFI,            /* tag 17, used only when tag 6 is absent or empty */
};

struct mb2_module {
    phys_addr_t start;      /* first byte */
    phys_addr_t end;        /* one past the last byte (GRUB's mod_end) */
    const char *cmdline;    /* NUL-terminated, inside the information */
};

/* One firmware memory-map entry, whichever tag it came from. */
struct mb2_mmap_entry {
    uint64_t base;          /* bytes, not necessarily page-aligned */
    uint64_t length;        /* bytes; base + length does not wrap */
    uint32_t type;          /* MB2_MEM_*-style type (EFI types translated) */
    uint32_t fw_type;       /* the type as the source map gave it */
    uint64_t efi_attr;      /* EFI attribute bits (MB2_EFI_MEMORY_*); 0 for tag 6 */
};

struct mb2_info {
    const uint8_t *base;        /* the structure as the caller passed it */
    phys_addr_t pa;             /* its physical address */
    uint32_t total_size;        /* bytes, from its first field */

    const char *cmdline;        /* NULL if no tag; else NUL-terminated */
    const char *loader_name;    /* NULL if no tag; else NUL-terminated */

    bool has_meminfo;
    uint32_t mem_lower_kib;     /* tag 4 */
    uint32_t mem_upper_kib;

    unsigned nmodules;          /* any number; read them with mb2_module_next() */
    uint32_t module_off;        /* offset of the first module tag; 0 if none */

    /* Copies of the RSDP inside the information; NULL if absent. */
    const void *rsdp_old;       /* tag 14 (ACPI 1.0 RSDP) */
    uint32_t rsdp_old_len;
    const void *rsdp_new;       /* tag 15 (ACPI 2.0+ RSDP) */
    uint32_t rsdp_new_len;

    /* The map mm uses (see map_source) and the raw maps it came from. */
    enum mb2_map_source map_source;
    unsigned map_count;         /* entries in the chosen map */

    const uint8_t *mmap;        /* tag 6 entries, NULL if no tag 6 */
    uint32_t mmap_entry_size;
    uint32_t mmap_entry_version;
    unsigned mmap_count;

    const uint8_t *efi_mmap;    /* tag 17 descriptors, NULL if no tag 17 */
    uint32_t efi_desc_size;
    uint32_t efi_desc_version;
    unsigned efi_count;
    bool efi_boot_services;     /* tag 18 present: boot services still live */
};

/*
 * Validate and record the multiboot2 information at `mbi` (a readable
 * mapping of physical address `mbi_pa`).  `max_size` is how many bytes at
 * `mbi` the caller can vouch for (MB2_MAX_INFO_SIZE if it knows no better);
 * total_size beyond it is an error.
 * Preconditions: mbi is 8-byte aligned; err has err_len bytes (>= 1).
 * Returns 0 and fills *info, or -MM_EINVAL and writes a message naming the
 * problem and its byte offset into err (the message is not printed; the
 * caller decides).  Nothing from a rejected structure may be used.
 */
int mb2_parse(struct mb2_info *info, const void *mbi, phys_addr_t mbi_pa,
              size_t max_size, char *err, size_t err_len);

/*
 * Entry i (0 <= i < info->map_count) of the chosen map, translated to the
 * multiboot2 types.  An EFI descriptor of a RAM type (conventional, loader,
 * boot services) that is soft-reserved (MB2_EFI_MEMORY_SP) or not
 * write-back capable (MB2_EFI_MEMORY_WB clear) translates to
 * MB2_MEM_RESERVED: it is not ordinary RAM.
 * Returns 0, or -MM_EINVAL (logged) if i is out of range.
 */
int mb2_map_entry(const struct mb2_info *info, unsigned i,
                  struct mb2_mmap_entry *out);

/*
 * The modules, in tag order: start with *cursor = 0; each call that returns
 * true fills *out and advances *cursor; false means no more modules.
 * Walks the tags, so a full iteration costs O(number of tags).
 */
bool mb2_module_next(const struct mb2_info *info, uint32_t *cursor, struct mb2_module *out);

/* Human name of a MB2_MEM_* type; "unknown" for anything else. */
const char *mb2_mem_type_name(uint32_t type);
/* Human name of an EFI memory type; "unknown" for anything else. */
const char *mb2_efi_type_name(uint32_t efi_type);

/* Print the chosen firmware map as a table through mm_printf (one line
 * per entry, two header lines).  EFI rows name the source type, the
 * translation and why RAM was refused (soft-reserved, not write-back). */
void mb2_print_map(const struct mb2_info *info);

#endif
