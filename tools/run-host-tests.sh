#!/bin/sh
# Run each host test binary; print its TAP and one line per program.
status=0
for t in "$@"; do
    echo "# host: $t"
    if ! "$t"; then
        echo "# host FAIL: $t"
        status=1
    fi
done
exit $status
