#!/usr/bin/env python3
"""memory-svg.py - draw a picture of memory (SVG) from a boot log.

Usage: tools/memory-svg.py [-o OUT.svg] [--layout include/mm/layout.h] LOG

Reads what the test kernel prints on its serial log:
  - the firmware memory map ("firmware memory map (...)" and its table),
  - the "mm: usable RAM ..." summary and "smp: N CPUs online",
  - the "mm-picture:" lines of kernel/memreport.c (usable areas, kernel
    image, boot information, modules, bump frames, buddy usage and free
    blocks per order, at "boot" and at the "end" of the self-tests),
  - the kernel page-table dumps ("mm: kernel page table (top at ...):"),
    the last one being the table at the end of boot,
and writes one SVG with four parts: the physical address space as one
overview strip (firmware types, holes) and one strip per RAM entry of the
map (what mm_init made of it), the buddy's free blocks per order, the
virtual layout as one overview strip, and one strip per range of
include/mm/layout.h with what the page table maps there.

Scales.  Address ranges span from 4 KiB to 2^64 bytes, so a strip never
uses one linear scale: it is a row of pieces (a region, a hole, a mapped
range) whose widths grow with the logarithm of their size - a broken axis,
where each piece is labelled with its start address and size instead of
being read off an axis.

Labels.  Every text's box is estimated (monospace: 0.6 em per character)
and placed by Placer: inside its piece when it fits there, else in the
first of a few lanes below the strip where it overlaps nothing, else in a
shorter variant, else dropped (the piece still carries its data and a
<title> tooltip, and the row says how many labels it left out).  At the
end every text box is checked against every other; an overlap is a bug
and makes the tool fail.

Every piece is a <rect> with data-kind, data-start and data-end (hex), so
tests can find each region of the log in the picture
(tools/test-memory-svg.sh).  Standard library only; fonts are the generic
families monospace and sans-serif.
"""
import argparse
import math
import os
import re
import sys
from xml.sax.saxutils import escape, quoteattr

PAGE = 4096
KIB, MIB, GIB, TIB = 1 << 10, 1 << 20, 1 << 30, 1 << 40

# ------------------------------------------------------------------ parsing

MAP_HEAD = re.compile(r'^firmware memory map \((.*), (\d+) entries\):')
MAP_LINE = re.compile(r'^\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+\S+ \S+\s+(.*?) \((\d+)\)'
                      r'(?: -> (.*))?$')
PT_HEAD = re.compile(r'^mm: kernel page table \(top at (0x[0-9a-f]+)\):')
PT_LINE = re.compile(r'^([0-9a-f]{16})-([0-9a-f]{16})\s+(\S+)\s+pages (\S+)\s+'
                     r'pa ([0-9a-f]+)\s+(.*?)\s*$')
PIC = re.compile(r'^mm-picture: (\S+)((?: \S+=\S+)*)\s*$')
RAM = re.compile(r'^mm: usable RAM (\d+) MiB in (\d+) areas; .* of (\d+) MiB firmware RAM')
CPUS = re.compile(r'^smp: (\d+) CPUs? online')


def parse_log(text):
    """Everything the picture uses, from the log's text."""
    log = {'map': [], 'map_source': '?', 'phys': [], 'buddy': {}, 'buddy_free': {},
           'tables': [], 'usable_mib': None, 'firmware_mib': None, 'cpus': None,
           'uefi': 'BdsDxe: ' in text}     # OVMF's boot manager speaks first
    in_map = False
    table = None
    for raw in text.splitlines():
        line = re.sub(r'\x1b\[[0-9;=?]*[A-Za-z]', '', raw).rstrip('\r')
        m = MAP_HEAD.match(line)
        if m:
            log['map'], log['map_source'], in_map = [], m.group(1), True
            continue
        if in_map:
            m = MAP_LINE.match(line)
            if m:
                fw_name, fw_type, mm_name = m.group(3), int(m.group(4)), m.group(5)
                log['map'].append({'start': int(m.group(1), 16), 'end': int(m.group(2), 16),
                                   'fw_name': fw_name, 'fw_type': fw_type,
                                   'type': (mm_name or fw_name).split(' (')[0].strip()})
                continue
            if line.strip().startswith('start'):
                continue
            in_map = False
        m = PT_HEAD.match(line)
        if m:
            table = {'top': m.group(1), 'leaves': []}
            log['tables'].append(table)
            continue
        if table is not None:
            m = PT_LINE.match(line)
            if m:
                table['leaves'].append({'start': int(m.group(1), 16), 'end': int(m.group(2), 16),
                                        'size': m.group(3), 'page': m.group(4),
                                        'pa': int(m.group(5), 16), 'flags': m.group(6).split()})
                continue
            table = None
        m = PIC.match(line)
        if m:
            fields = dict(f.split('=', 1) for f in m.group(2).split())
            parse_picture_line(log, m.group(1), fields)
            continue
        m = RAM.match(line)
        if m:
            log['usable_mib'], log['firmware_mib'] = int(m.group(1)), int(m.group(3))
            continue
        m = CPUS.match(line)
        if m:
            log['cpus'] = int(m.group(1))
    return log


def parse_picture_line(log, what, f):
    if what == 'phys':
        log['phys'].append({'kind': f['kind'], 'start': int(f['start'], 16),
                            'end': int(f['end'], 16)})
    elif what == 'buddy':
        log['buddy'][f['when']] = {k: int(v) for k, v in f.items() if k != 'when'}
    elif what == 'buddy-free' and 'gib' not in f:
        # (a gib=N field, per 1 GiB of physical memory, is reserved for a
        # later buddy call that counts free blocks by place; not drawn yet)
        log['buddy_free'][f['when']] = [int(c) for c in f['counts'].split(',')]


def read_layout(path):
    """The constants of include/mm/layout.h (plain expressions of earlier ones)."""
    consts = {}
    try:
        text = open(path, encoding='utf-8').read()
    except OSError:
        return None
    for m in re.finditer(r'^#define\s+(MM_\w+|MMIO_\w+)\s+(.+?)\s*(?:/\*.*)?$', text, re.M):
        expr = re.sub(r'UINT64_C\(([^)]*)\)', r'(\1)', m.group(2))
        if '(va)' in m.group(1) or not re.fullmatch(r'[\w\s()<>+\-*]+', expr):
            continue
        try:
            consts[m.group(1)] = int(eval(expr, {'__builtins__': {}}, dict(consts)))
        except Exception:
            pass
    return consts


# ---------------------------------------------------------------- formatting

def fmt_size(n, short=False):
    """4 KiB, 1032 KiB, 2.9 GiB, ~128 TiB: the largest unit that keeps the
    number at least 1; exact sizes as integers, others with one decimal
    below 100 and rounded (with ~) above."""
    units = ((1 << 60, 'E'), (1 << 50, 'P'), (TIB, 'T'), (GIB, 'G'), (MIB, 'M'), (KIB, 'K'))
    for i, (unit, name) in enumerate(units):
        if n >= unit:
            v = n / unit
            finer = units[i + 1] if i + 1 < len(units) else (1, 'B')
            if n % unit and finer[0] >= KIB and n % finer[0] == 0 and n // finer[0] < 10000:
                unit, name, v = finer[0], finer[1], n // finer[0]
            if n % unit == 0:
                s = '%d' % v
            elif v < 100:
                s = '%.1f' % v
            else:
                s = '~%d' % round(v)
            return s + name if short else '%s %siB' % (s, name)
    return '%dB' % n if short else '%d bytes' % n


def fmt_addr(a):
    return '%#x' % a


def esc(s):
    return escape(str(s))


# ------------------------------------------------------------------- drawing

FONT = 11                       # label font size (monospace)
CHAR_W = 0.62 * FONT            # estimated advance of one monospace character
LANE_H = 13
STRIP_H = 22
LEFT_W = 300                    # row captions
WIDTH = 1400
STRIP_X0, STRIP_X1 = LEFT_W + 10, WIDTH - 20

PHYS_COLOURS = {
    'usable': ('#4caf50', 'usable RAM (buddy)'),
    'ram-excluded': ('#c8e6c9', 'RAM the allocators do not use (low 1 MiB, edges)'),
    'image': ('#1565c0', 'kernel image'),
    'bootinfo': ('#00acc1', 'multiboot2 boot information'),
    'module': ('#6d4c41', 'boot module'),
    'kept': ('#546e7a', 'range kept by the kernel (boot params)'),
    'bump': ('#e91e63', 'frames taken by bump (kernel page table)'),
    'reserved': ('#9e9e9e', 'firmware: reserved'),
    'ACPI reclaimable': ('#ffca28', 'firmware: ACPI reclaimable'),
    'ACPI NVS': ('#fb8c00', 'firmware: ACPI NVS'),
    'bad': ('#d32f2f', 'firmware: bad RAM'),
    'available': ('#81c784', 'firmware: available RAM'),
    'other': ('#9575cd', 'firmware: other type (treated as reserved)'),
    'hole': ('url(#hatch)', 'not in the map (hole)'),
}
VIRT_COLOURS = {
    'rx': ('#1565c0', 'mapped read + execute'),
    'ro': ('#90caf9', 'mapped read-only, no execute'),
    'rw': ('#66bb6a', 'mapped read-write, no execute'),
    'wx': ('#d32f2f', 'mapped writable AND executable (a bug)'),
    'user': ('#ff9800', 'mapped for user mode'),
    'unmapped': ('#eeeeee', 'reserved range, nothing mapped'),
    'gap': ('url(#hatch)', 'never mapped / non-canonical'),
}


# Fills dark enough to need white text.
DARK = {'#1565c0', '#6d4c41', '#546e7a', '#e91e63', '#d32f2f', '#00acc1'}


class Svg:
    """The output document, plus the box of every text for the overlap check."""

    def __init__(self):
        self.parts = []
        self.boxes = []         # (x0, y0, x1, y1, text)

    def add(self, s):
        self.parts.append(s)

    def text(self, x, y, s, size=FONT, anchor='start', family='monospace', weight=None,
             fill=None):
        w = len(s) * 0.62 * size if family == 'monospace' else len(s) * 0.6 * size
        x0 = x - w / 2 if anchor == 'middle' else x - w if anchor == 'end' else x
        self.boxes.append((x0, y - size * 0.8, x0 + w, y + size * 0.25, s))
        attrs = 'x="%.1f" y="%.1f" font-size="%s" font-family="%s"' % (x, y, size, family)
        if anchor != 'start':
            attrs += ' text-anchor="%s"' % anchor
        if weight:
            attrs += ' font-weight="%s"' % weight
        if fill:
            attrs += ' fill="%s"' % fill
        self.add('<text %s>%s</text>' % (attrs, esc(s)))

    def overlaps(self):
        bad = []
        boxes = sorted(self.boxes, key=lambda b: b[1])
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                if b[1] >= a[3]:
                    break
                if a[0] < b[2] and b[0] < a[2]:
                    bad.append((a[4], b[4]))
        return bad


class Placer:
    """Labels of one strip: inside the piece, else in lanes below it."""

    def __init__(self, x0, x1, lanes=4):
        self.x0, self.x1 = x0, x1
        self.lanes = [[] for _ in range(lanes)]
        self.leaders = []           # (x, lane): a line from the strip down to a lane
        self.dropped = 0

    def _free(self, lane, x, w, cx):
        """True if a label [x, x + w) fits in lane, and neither it covers a
        leader going deeper nor its own leader crosses a label above."""
        if any(x < b + 8 and a < x + w + 8 for a, b in self.lanes[lane]):
            return False
        if any(l > lane and x - 3 <= lx <= x + w + 3 for lx, l in self.leaders):
            return False
        return not any(a - 3 <= cx <= b + 3 for up in self.lanes[:lane] for a, b in up)

    def place(self, cx, width, variants):
        """(lane, text, x) for the first variant (most informative first)
        that fits inside the piece (lane -1) or in a free lane below; None
        if none does."""
        for text in variants:
            w = len(text) * CHAR_W
            if w + 6 <= width:
                return (-1, text, cx)
            x = min(max(cx - w / 2, self.x0), self.x1 - w)
            for lane in range(len(self.lanes)):
                if self._free(lane, x, w, cx):
                    self.lanes[lane].append((x, x + w))
                    self.leaders.append((cx, lane))
                    return (lane, text, x + w / 2)
        self.dropped += 1
        return None

    def lanes_used(self):
        return max([i + 1 for i, used in enumerate(self.lanes) if used] or [0])


def log_widths(sizes, total, min_w=3.0):
    """Widths that grow with log2(size) and add up to total."""
    weights = [1.0 + math.log2(max(s, PAGE) / PAGE) for s in sizes]
    spare = total - min_w * len(sizes)
    if spare <= 0:
        return [total / len(sizes)] * len(sizes)
    k = spare / sum(weights)
    return [min_w + w * k for w in weights]


def draw_strip(svg, y, pieces, colours, caption, sub=None):
    """One row: caption at the left, the pieces as a strip with labels.
    pieces: dicts with start, end, kind, label (list of variants), title.
    Returns the y below the row."""
    svg.text(10, y + 15, caption, size=12, family='sans-serif', weight='bold')
    if sub:
        svg.text(10, y + 30, sub, size=FONT)
    widths = log_widths([p['end'] - p['start'] for p in pieces], STRIP_X1 - STRIP_X0)
    placer = Placer(STRIP_X0, STRIP_X1)
    x = STRIP_X0
    labels = []
    for p, w in zip(pieces, widths):
        colour = colours.get(p['kind'], colours.get('other', ('#bbbbbb', '')))[0]
        dark = colour in DARK
        svg.add('<rect x="%.1f" y="%.1f" width="%.1f" height="%d" fill="%s" stroke="#ffffff" '
                'stroke-width="0.8" data-kind=%s data-start="%s" data-end="%s"><title>%s'
                '</title></rect>' % (x, y, w, STRIP_H, colour, quoteattr(p['kind']),
                                     fmt_addr(p['start']), fmt_addr(p['end']), esc(p['title'])))
        spot = placer.place(x + w / 2, w, p['label'])
        if spot:
            labels.append((spot, x + w / 2, dark))
        x += w
    for (lane, text, lx), px, dark in labels:
        if lane < 0:
            svg.text(lx, y + 15, text, anchor='middle', fill='#ffffff' if dark else None)
        else:
            ly = y + STRIP_H + 11 + lane * LANE_H
            svg.add('<line x1="%.1f" y1="%d" x2="%.1f" y2="%.1f" stroke="#777" '
                    'stroke-width="0.6"/>' % (px, y + STRIP_H, px, ly - 9))
            svg.text(lx, ly, text, anchor='middle')
    bottom = y + STRIP_H + 6 + placer.lanes_used() * LANE_H
    caption_bottom = y + (36 if sub else 20)
    if placer.dropped:
        note = '(%d label%s left out: hover)' % (placer.dropped, 's' * (placer.dropped > 1))
        svg.text(10, caption_bottom + 9, note, size=10)
        caption_bottom += 14
    return max(bottom, caption_bottom) + 10


def piece(start, end, kind, title, label):
    return {'start': start, 'end': end, 'kind': kind, 'title': title, 'label': label}


def region_labels(start, end, what):
    size = end - start
    return ['%s %s %s' % (fmt_addr(start), fmt_size(size, True), what),
            '%s %s' % (fmt_addr(start), fmt_size(size, True)),
            fmt_size(size, True)]


# ------------------------------------------------------------------ physical

def map_kind(entry):
    t = entry['type']
    if t in ('available', 'reserved', 'ACPI reclaimable', 'ACPI NVS', 'bad'):
        return t
    return 'other'


def phys_overview(log):
    pieces, at = [], 0
    for e in log['map']:
        if e['start'] > at:
            pieces.append(piece(at, e['start'], 'hole', 'hole %s..%s (%s)' % (
                fmt_addr(at), fmt_addr(e['start']), fmt_size(e['start'] - at)),
                region_labels(at, e['start'], 'hole')))
        name = e['fw_name'] if e['fw_name'] == e['type'] else '%s -> %s' % (e['fw_name'],
                                                                            e['type'])
        pieces.append(piece(e['start'], e['end'], map_kind(e), '%s..%s %s: %s (%d)' % (
            fmt_addr(e['start']), fmt_addr(e['end']), fmt_size(e['end'] - e['start']), name,
            e['fw_type']), region_labels(e['start'], e['end'], e['type'])))
        at = max(at, e['end'])
    return pieces


KIND_ORDER = ['image', 'bootinfo', 'module', 'kept', 'bump', 'usable']


def phys_detail(log, entry):
    """What mm_init made of one RAM entry: the kinds of its bytes."""
    s, e = entry['start'], entry['end']
    ranges = [r for r in log['phys'] if r['start'] < e and r['end'] > s]
    cuts = sorted({s, e} | {min(max(r[k], s), e) for r in ranges for k in ('start', 'end')})
    pieces = []
    for a, b in zip(cuts, cuts[1:]):
        kinds = [r['kind'] for r in ranges if r['start'] <= a and r['end'] >= b]
        kind = min(kinds, key=KIND_ORDER.index) if kinds else 'ram-excluded'
        if pieces and pieces[-1]['kind'] == kind:
            pieces[-1]['end'] = b
        else:
            pieces.append({'start': a, 'end': b, 'kind': kind})
    names = {'usable': 'usable', 'ram-excluded': 'not used', 'image': 'image',
             'bootinfo': 'boot info', 'module': 'module', 'kept': 'kept', 'bump': 'bump'}
    return [piece(p['start'], p['end'], p['kind'], '%s..%s %s: %s' % (
        fmt_addr(p['start']), fmt_addr(p['end']), fmt_size(p['end'] - p['start']),
        PHYS_COLOURS[p['kind']][1]), region_labels(p['start'], p['end'], names[p['kind']]))
        for p in pieces]


def draw_physical(svg, log, y):
    y = section(svg, y, 'Physical address space',
                'Firmware memory map (%s), %d entries; each piece\'s width grows with the '
                'logarithm of its size (broken axis).' % (log['map_source'], len(log['map'])))
    y = draw_strip(svg, y, phys_overview(log), PHYS_COLOURS, 'Whole map',
                   '%s .. %s' % (fmt_addr(0), fmt_addr(max(e['end'] for e in log['map']))))
    if not log['phys']:
        svg.text(10, y + 10, 'No "mm-picture: phys" lines in the log: RAM entries not '
                 'broken down.', size=FONT)
        return y + 24
    for e in log['map']:
        if e['type'] != 'available' and not any(
                r['start'] < e['end'] and r['end'] > e['start'] for r in log['phys']):
            continue
        y = draw_strip(svg, y, phys_detail(log, e), PHYS_COLOURS,
                       'RAM %s' % fmt_size(e['end'] - e['start']),
                       '%s..%s' % (fmt_addr(e['start']), fmt_addr(e['end'])))
    return y


# --------------------------------------------------------------------- buddy

def draw_buddy(svg, log, y):
    when = [w for w in ('boot', 'end') if w in log['buddy_free']]
    if not when:
        return y
    usage = log['buddy'].get(when[-1], {})
    sub = ('Free blocks per order in the free lists (per-CPU caches not included); bar '
           'length grows with the logarithm of the count.')
    y = section(svg, y, 'Buddy allocator: free blocks by order', sub)
    if usage:
        svg.text(10, y + 4, 'at the %s of boot: total %s, free %s (of which %s in per-CPU '
                 'caches), used %s, metadata %s' % (
                     when[-1], fmt_size(usage['total'] * PAGE), fmt_size(usage['free'] * PAGE),
                     fmt_size(usage['cached'] * PAGE), fmt_size(usage['used'] * PAGE),
                     fmt_size(usage['meta'] * PAGE)), size=FONT)
        y += 18
    colours = {'boot': '#90caf9', 'end': '#1565c0'}
    lx = 10
    for w in when:
        svg.add('<rect x="%d" y="%d" width="12" height="9" fill="%s"/>' % (lx, y - 8,
                                                                          colours[w]))
        label = 'after mm_init' if w == 'boot' else 'after the self-tests'
        svg.text(lx + 16, y, label, size=FONT)
        lx += 16 + len(label) * CHAR_W + 20
    y += 10
    counts = {w: log['buddy_free'][w] for w in when}
    top = max(max(c) for c in counts.values()) or 1
    bar_x0, bar_w = 170, 700
    for order in range(max(len(c) for c in counts.values())):
        block = PAGE << order
        svg.text(10, y + 10, 'order %2d %5s' % (order, fmt_size(block, True)))
        ty = y
        for w in when:
            c = counts[w][order] if order < len(counts[w]) else 0
            length = bar_w * math.log10(c + 1) / math.log10(top + 1)
            svg.add('<rect x="%d" y="%.1f" width="%.1f" height="6" fill="%s" '
                    'data-kind="buddy-order" data-order="%d" data-when="%s" data-count="%d">'
                    '<title>order %d (%s blocks), %s: %d free = %s</title></rect>' % (
                        bar_x0, ty + 1, length, colours[w], order, w, c, order,
                        fmt_size(block), w, c, fmt_size(c * block)))
            ty += 6
        c = counts[when[-1]][order] if order < len(counts[when[-1]]) else 0
        svg.text(bar_x0 + bar_w + 10, y + 10,
                 '%d free = %s' % (c, fmt_size(c * block)) if c else '0 free')
        y += 15
    return y + 10


# ------------------------------------------------------------------- virtual

def virt_ranges(L):
    """(start, end, name, what) of every range of the layout, gaps included."""
    top = 1 << 64
    named = [
        (0, L['MM_USER_BASE'], 'page 0', 'never mapped: null dereferences fault'),
        (L['MM_USER_BASE'], L['MM_USER_END'], 'user half',
         'per process; kernel table: only the low identity map, while APs start'),
        (L['MM_DIRECT_MAP_BASE'], L['MM_DIRECT_MAP_END'], 'direct map',
         'physical address + %s' % fmt_addr(L['MM_DIRECT_MAP_BASE'])),
        (L['MMIO_POOL_BASE'], L['MMIO_POOL_END'], 'MMIO pool', 'ioremap'),
        (L['MM_VMALLOC_BASE'], L['MM_VMALLOC_END'], 'vmalloc', 'guard page after each area'),
        (L['MM_KSTACK_BASE'], L['MM_KSTACK_END'], 'kernel stacks', 'guard pages around each'),
        (L['MM_SELFTEST_BASE'], L['MM_SELFTEST_END'], 'self-test slot', 'while tests run'),
        (L['MM_KERNEL_IMAGE_BASE'], top, 'kernel image', '-mcmodel=kernel, top 2 GiB'),
    ]
    out, at = [], 0
    for s, e, name, what in named:
        if at < L['MM_LOWER_HALF_END'] < s:
            out.append((at, L['MM_LOWER_HALF_END'], None, 'unused'))
            out.append((L['MM_LOWER_HALF_END'], L['MM_KERNEL_HALF_BASE'], None,
                        'non-canonical'))
            at = L['MM_KERNEL_HALF_BASE']
        if s > at:
            out.append((at, s, None, 'unused'))
        out.append((s, e, name, what))
        at = e
    return out


DEFAULT_LAYOUT = {
    'MM_USER_BASE': 0x1000, 'MM_USER_END': 0x7ffffffff000, 'MM_LOWER_HALF_END': 1 << 47,
    'MM_KERNEL_HALF_BASE': 0xffff800000000000,
    'MM_DIRECT_MAP_BASE': 0xffff800000000000, 'MM_DIRECT_MAP_END': 0xffff900000000000,
    'MMIO_POOL_BASE': 0xffffa10000000000, 'MMIO_POOL_END': 0xffffa20000000000,
    'MM_VMALLOC_BASE': 0xffffa20000000000, 'MM_VMALLOC_END': 0xffffa28000000000,
    'MM_KSTACK_BASE': 0xffffa28000000000, 'MM_KSTACK_END': 0xffffa30000000000,
    'MM_SELFTEST_BASE': 0xffffa30000000000, 'MM_SELFTEST_END': 0xffffa38000000000,
    'MM_KERNEL_IMAGE_BASE': 0xffffffff80000000,
}


def leaf_kind(flags):
    w, x, u = 'RW' in flags, 'NX' not in flags, 'U' in flags
    if w and x:
        return 'wx'
    if u:
        return 'user'
    return 'rx' if x else 'rw' if w else 'ro'


def virt_detail(start, end, leaves):
    pieces, at = [], start
    for f in leaves:
        s, e = max(f['start'], start), min(f['end'], end)
        if s >= e:
            continue
        if s > at:
            pieces.append(piece(at, s, 'unmapped', '%s..%s %s: nothing mapped' % (
                fmt_addr(at), fmt_addr(s), fmt_size(s - at)), region_labels(at, s, '')[1:]))
        flags = ' '.join(f['flags'])
        pieces.append(piece(s, e, leaf_kind(f['flags']), '%s..%s %s in %s pages -> pa %s, %s' % (
            fmt_addr(s), fmt_addr(e), fmt_size(e - s), f['page'], fmt_addr(f['pa']), flags), [
            '%s %s %s pages %s' % (fmt_addr(s), fmt_size(e - s, True), f['page'], flags),
            '%s %s %s' % (fmt_addr(s), fmt_size(e - s, True), flags),
            '%s %s' % (fmt_size(e - s, True), flags), fmt_size(e - s, True)]))
        at = e
    if at < end:
        pieces.append(piece(at, end, 'unmapped', '%s..%s %s: nothing mapped' % (
            fmt_addr(at), fmt_addr(end), fmt_size(end - at)),
            ['%s %s free' % (fmt_addr(at), fmt_size(end - at, True)),
             fmt_size(end - at, True)]))
    return pieces


def draw_virtual(svg, log, layout, y):
    table = log['tables'][-1] if log['tables'] else None
    when = ('at the end of boot' if len(log['tables']) > 1 else 'after mm_init')
    y = section(svg, y, 'Virtual address space (kernel page table %s)' % when,
                'Ranges of include/mm/layout.h; inside each, the mapped ranges of the '
                'page-table dump (top at %s).' % (table['top'] if table else '?'))
    L = dict(DEFAULT_LAYOUT)
    L.update({k: v for k, v in (layout or {}).items() if k in L})
    ranges = virt_ranges(L)
    overview = [piece(s, e, 'gap' if name is None else 'unmapped',
                      '%s..%s %s: %s' % (fmt_addr(s), fmt_addr(e), fmt_size(e - s),
                                         name or what),
                      ['%s %s %s' % (fmt_addr(s), name or what, fmt_size(e - s, True)),
                       '%s %s' % (name or what, fmt_size(e - s, True)), name or what])
                for s, e, name, what in ranges]
    y = draw_strip(svg, y, overview, VIRT_COLOURS, 'Whole 64-bit space',
                   '0 .. 2^64, canonical halves')
    leaves = table['leaves'] if table else []
    for s, e, name, what in ranges:
        if name is None or name == 'page 0':
            continue
        y = draw_strip(svg, y, virt_detail(s, e, leaves), VIRT_COLOURS,
                       '%s (%s)' % (name, fmt_size(e - s, True)), what)
    return y


# ------------------------------------------------------------ page furniture

def section(svg, y, title, sub):
    y += 14
    svg.text(10, y, title, size=16, family='sans-serif', weight='bold')
    svg.text(10, y + 18, sub, size=FONT)
    return y + 32


def legend(svg, y, colours, title):
    svg.text(10, y + 10, title, size=FONT, weight='bold')
    x, y0 = 10 + len(title) * CHAR_W + 16, y
    for kind, (colour, text) in colours.items():
        w = 16 + len(text) * CHAR_W + 18
        if x + w > WIDTH - 10:
            x, y = 10 + len(title) * CHAR_W + 16, y + 16
        svg.add('<rect x="%.1f" y="%d" width="12" height="12" fill="%s" stroke="#555" '
                'stroke-width="0.5"/>' % (x, y, colour))
        svg.text(x + 16, y + 10, text, size=FONT)
        x += w
    return y + 22


def title_line(log, name):
    ram = log['firmware_mib']
    ram_s = 'RAM %s' % ('%d MiB' % ram if ram is not None else 'unknown')
    if ram is not None and ram >= 1024:
        ram_s += ' (~%d GiB)' % round(ram / 1024)
    cpus = '%s CPU%s' % (log['cpus'] or '?', 's' * ((log['cpus'] or 2) != 1))
    return 'Memory of the mm test kernel: %s, %s, %s' % (
        ram_s, cpus, 'UEFI' if log['uefi'] else 'BIOS'), name


def render(log, layout, name):
    svg = Svg()
    title, sub = title_line(log, name)
    svg.text(10, 26, title, size=20, family='sans-serif', weight='bold')
    usable = ('; usable RAM %d MiB' % log['usable_mib']) if log['usable_mib'] else ''
    svg.text(10, 46, 'from the boot log %s%s' % (sub, usable), size=FONT)
    y = legend(svg, 58, PHYS_COLOURS, 'physical:')
    y = legend(svg, y + 2, VIRT_COLOURS, 'virtual: ')
    y = draw_physical(svg, log, y)
    y = draw_buddy(svg, log, y)
    y = draw_virtual(svg, log, layout, y)
    height = int(y + 10)
    head = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
            'viewBox="0 0 %d %d">\n'
            '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
            'patternTransform="rotate(45)"><rect width="6" height="6" fill="#fafafa"/>'
            '<line x1="0" y1="0" x2="0" y2="6" stroke="#bdbdbd" stroke-width="2"/>'
            '</pattern></defs>\n'
            '<rect width="100%%" height="100%%" fill="#ffffff"/>\n' % (WIDTH, height, WIDTH,
                                                                     height))
    return head + '\n'.join(svg.parts) + '\n</svg>\n', svg.overlaps()


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description='Draw memory (SVG) from a boot log.')
    ap.add_argument('log')
    ap.add_argument('-o', '--output', help='SVG file (default: standard output)')
    ap.add_argument('--layout', default=os.path.join(here, '..', 'include', 'mm', 'layout.h'),
                    help='include/mm/layout.h for the virtual ranges')
    args = ap.parse_args()
    with open(args.log, encoding='utf-8', errors='replace') as f:
        log = parse_log(f.read())
    if not log['map']:
        sys.exit('memory-svg: %s: no firmware memory map in the log' % args.log)
    doc, overlaps = render(log, read_layout(args.layout), os.path.basename(args.log))
    if overlaps:
        for a, b in overlaps[:10]:
            print('memory-svg: labels overlap: %r and %r' % (a, b), file=sys.stderr)
        sys.exit('memory-svg: %d overlapping labels (a bug in the placement)' % len(overlaps))
    if args.output:
        with open(args.output, 'w', encoding='utf-8') as f:
            f.write(doc)
    else:
        sys.stdout.write(doc)


if __name__ == '__main__':
    main()
