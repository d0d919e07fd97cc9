#!/usr/bin/env python3
"""Checks that sluiced was laid out in daemon/sluiced.link-order's order (CMakeLists.txt,
SLUICE_LINK_ORDER), and that the file still names the code: lld skips the names it does not find
in silence, so a file left behind by renames would lose its pages without a word. (A new function
the file does not name yet is not caught: bench/README.md, "The link order", says when to make it
again.)

    check_link_order.py SLUICED ORDER_FILE
"""
import subprocess
import sys

# Of the file's names, how many sluiced must still define; below it, regenerate the file
# (bench/README.md, "The link order").
MIN_PRESENT = 0.9


def main():
    binary, order_file = sys.argv[1:3]
    names = open(order_file).read().split()
    if not names:
        sys.exit(f"{order_file}: names no function")
    addresses = {}
    out = subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[1] in "tTwW":
            address = int(fields[0], 16)
            addresses[fields[2]] = min(address, addresses.get(fields[2], address))
    present = [name for name in names if name in addresses]
    if len(present) < MIN_PRESENT * len(names):
        sys.exit(f"{order_file}: sluiced defines only {len(present)} of the {len(names)} functions the file names; "
                 "make it again (bench/README.md, \"The link order\")")
    placed, last, last_name = set(), -1, None
    for name in present:
        address = addresses[name]
        if address in placed:  # an alias of a function placed before it, as a C1 constructor of its C2
            continue
        if address < last:
            sys.exit(f"{binary}: {name} lies at {address:#x}, before {last_name} ({last:#x}), which the order "
                     f"puts ahead of it: sluiced was not linked in {order_file}'s order")
        placed.add(address)
        last, last_name = address, name
    print(f"{len(present)} of {len(names)} functions in order")


if __name__ == "__main__":
    main()
