/*
 * memmap.c - lists of physical address ranges ("areas"), see mm/memmap.h.
 *
 * Invariant of a list (mm_area_list_check): sorted by start, disjoint,
 * non-adjacent, page-aligned, non-empty, below MM_AREA_MAX_PA.  No
 * locking: functions touch only their arguments.
 */
#include <mm/log.h>
#include <mm/memmap.h>

int mm_area_list_check(const struct mm_area_list *l, const char *who)
{
    if (l->count > MM_MAX_AREAS) {
        mm_printf("%s: %u areas, more than %u\n", who, l->count, MM_MAX_AREAS);
        return -MM_EINVAL;
    }
    for (unsigned i = 0; i < l->count; i++) {
        const struct mm_area *a = &l->area[i];
        const char *why = NULL;
        if (!is_aligned_u64(a->start.raw | a->end.raw, PAGE_SIZE))
            why = "is not page-aligned";
        else if (a->end.raw <= a->start.raw)
            why = "is empty";
        else if (a->end.raw > MM_AREA_MAX_PA)
            why = "reaches above 2^52";
        else if (i > 0 && a->start.raw <= l->area[i - 1].end.raw)
            why = "overlaps, touches or is below the previous area";
        if (why) {
            mm_printf("%s: area %u [%#lx, %#lx) %s\n", who, i, (unsigned long)a->start.raw,
                      (unsigned long)a->end.raw, why);
            return -MM_EINVAL;
        }
    }
    return 0;
}
