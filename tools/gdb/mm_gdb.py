# mm_gdb.py - gdb commands that show the memory subsystem of a live kernel,
# in the spirit of Linux's scripts/gdb lx-* commands.  tools/gdbinit sources
# this file; `help mm-ptdump` (and so on) describes each:
#
#   mm-buddyinfo [EXPR]          free frames per order, per-CPU caches
#   mm-ptdump [LO HI] [--top PA | --as EXPR]   page-table ranges, W+X marked
#   mm-translate VA [--top PA | --as EXPR]     one address, level by level
#   mm-aspace [EXPR]             an address space (struct mm_as), or each CPU's
#   mm-mmio / mm-vmalloc         a vrange: free blocks per order, live blocks
#   mm-kstacks                   the kernel-stack registry
#   mm-slabinfo                  the heap's object caches
#
# They read the kernel's structures by symbol and DWARF type (the kernel is
# built with -g), never by fixed offsets.

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True      # no __pycache__ in the source tree

import mm_alloc    # noqa: E402
import mm_paging   # noqa: E402

mm_alloc.register()
mm_paging.register()
