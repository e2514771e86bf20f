#!/bin/bash
# test-memory-svg.sh LOG... - test tools/memory-svg.py on boot logs.
#
# For each LOG: run the tool (it fails by itself on overlapping labels),
# then check that its output is well-formed XML with an <svg> root and
# that it holds every region of the log, each as an element whose
# data-start attribute is the region's start address:
#   - every entry of the firmware memory map,
#   - every "mm-picture: phys" range (kernel/memreport.c),
#   - every range of the last kernel page-table dump,
# with a piece of its own kind (data-kind) inside every "mm-picture: phys"
# range, and a buddy bar (data-order) for every order of every "mm-picture:
# buddy-free" line.  The regions are read from the log here, with their
# own patterns, not taken from the tool.
#
# Before that, two negative controls show on the first log that the check
# can fail: an SVG drawn from the log is checked against the same log with
# one more map entry injected (must fail: region missing), and a truncated
# SVG is checked (must fail: not XML).  If either passes, the test fails.
# Exit status: 0 if every log passed and both controls failed.
set -u
here=$(cd "$(dirname "$0")" && pwd)
tool="$here/memory-svg.py"
if [ $# -eq 0 ]; then
    echo "usage: $0 LOG..." >&2
    exit 2
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# check_svg LOG SVG: the checks above; prints what is missing.
check_svg() {
    python3 - "$1" "$2" <<'EOF'
import re, sys
import xml.etree.ElementTree as ET
log_path, svg_path = sys.argv[1], sys.argv[2]
try:
    root = ET.parse(svg_path).getroot()
except ET.ParseError as e:
    sys.exit('not well-formed XML: %s' % e)
if root.tag != '{http://www.w3.org/2000/svg}svg':
    sys.exit('root element is %s, not svg' % root.tag)
starts = set()
orders = set()
pieces = []         # (kind, start, end)
for el in root.iter():
    if 'data-start' in el.attrib:
        starts.add(int(el.attrib['data-start'], 16))
        pieces.append((el.attrib.get('data-kind'), int(el.attrib['data-start'], 16),
                       int(el.attrib['data-end'], 16)))
    if 'data-order' in el.attrib:
        orders.add((el.attrib['data-when'], int(el.attrib['data-order'])))
text = open(log_path, encoding='utf-8', errors='replace').read()
want = []           # (what, start)
dumps = []
in_map = False
for line in text.splitlines():
    if line.startswith('firmware memory map ('):
        in_map, want = True, [w for w in want if w[0] != 'map entry']
        continue
    m = re.match(r'\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s', line)
    if in_map and m:
        want.append(('map entry', int(m.group(1), 16)))
        continue
    in_map = in_map and line.strip().startswith('start')
    m = re.match(r'mm-picture: phys kind=(\S+) start=0x([0-9a-f]+) end=0x([0-9a-f]+)', line)
    if m:
        kind, start, end = m.group(1), int(m.group(2), 16), int(m.group(3), 16)
        want.append(('%s range' % kind, start))
        # ... and drawn as its kind somewhere inside it (not hidden by another)
        if not any(k == kind and s < end and e > start for k, s, e in pieces):
            want.append(('%s range %#x..%#x drawn as %s' % (kind, start, end, kind), None))
    if line.startswith('mm: kernel page table (top at'):
        dumps.append([])
    m = re.match(r'([0-9a-f]{16})-[0-9a-f]{16}\s', line)
    if m and dumps:
        dumps[-1].append(int(m.group(1), 16))
    m = re.match(r'mm-picture: buddy-free when=(\S+) counts=(\S+)', line)
    if m:
        for k in range(len(m.group(2).split(','))):
            if (m.group(1), k) not in orders:
                want.append(('buddy order %d at %s' % (k, m.group(1)), None))
want += [('mapped range', va) for va in (dumps[-1] if dumps else [])]
if not any(w[0] == 'map entry' for w in want):
    sys.exit('no firmware memory map in the log')
missing = [(w, s) for w, s in want if s is None or s not in starts]
for w, s in missing[:20]:
    print('missing: %s%s' % (w, '' if s is None else ' at %#x' % s))
if missing:
    sys.exit('%d of %d regions of the log are not in the picture' % (len(missing), len(want)))
print('%d regions of the log found in the picture' % len(want))
EOF
}

# Negative controls on the first log.
first=$1
controls_ok=true
if python3 "$tool" "$first" -o "$tmp/control.svg"; then
    awk '{ print } /^firmware memory map \(/ { getline; print;
         print "  0x00000000deadb000  0x00000000deadc000       4 KiB  reserved (2)" }' \
        "$first" > "$tmp/injected.log"
    if out=$(check_svg "$tmp/injected.log" "$tmp/control.svg" 2>&1); then
        echo "FAIL control: a region injected into the log was not missed: $out"
        controls_ok=false
    else
        echo "ok   control: injected region detected ($(echo "$out" | head -1))"
    fi
    head -c $(( $(wc -c < "$tmp/control.svg") / 2 )) "$tmp/control.svg" > "$tmp/truncated.svg"
    if out=$(check_svg "$first" "$tmp/truncated.svg" 2>&1); then
        echo "FAIL control: a truncated SVG passed the check"
        controls_ok=false
    else
        echo "ok   control: truncated SVG rejected ($out)"
    fi
else
    echo "FAIL control: the tool failed on $first"
    controls_ok=false
fi

failed=0
for log in "$@"; do
    svg="$tmp/$(basename "$log" .log).svg"
    if ! python3 "$tool" "$log" -o "$svg"; then
        echo "FAIL $log: memory-svg.py failed"
        failed=$((failed + 1))
    elif out=$(check_svg "$log" "$svg" 2>&1); then
        echo "ok   $log: $out"
    else
        echo "FAIL $log:"
        echo "$out" | sed 's/^/       /'
        failed=$((failed + 1))
    fi
done
echo "test-memory-svg: $# log(s), $failed failed"
[ "$failed" -eq 0 ] && $controls_ok
