#!/usr/bin/env python3
"""Reads divan's table (the stdout of `cargo bench --bench NAME`, divan 0.1) on stdin and prints
one line per timed row: "PATH<TAB>median ns", PATH being the row's names from the bench down,
joined by "/" (e.g. "verify_and_check/HS256", "check_not_revoked").

divan 0.1 has no machine-readable output (its `--format` only applies to `--list`), so this
reads the tree it draws: each row is "<tree prefix><name> <fastest> │ <slowest> │ <median> │
<mean> │ <samples> │ <iters>", and a row's depth is where its "├─"/"╰─" stands. Rows are
found by name, so rows added to or missing from a bench change nothing here.
"""
import re
import sys

UNITS = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}
VALUE = re.compile(r"^\s*([0-9.]+)\s*(ps|ns|µs|us|ms|s)\s*$")


def main():
    stack = []
    for line in sys.stdin:
        line = line.rstrip("\n")
        m = re.search(r"[├╰]─ ", line)
        if not m:
            continue
        depth = m.start() // 3
        fields = line[m.end():].split("│")
        head = fields[0].split()
        if not head:
            continue
        name = head[0]
        del stack[depth:]
        stack.append(name)
        if len(fields) < 3:
            continue
        median = VALUE.match(fields[2])
        if median:
            ns = float(median.group(1)) * UNITS[median.group(2)]
            print(f"{'/'.join(stack)}\t{ns:.3f}")


if __name__ == "__main__":
    main()
