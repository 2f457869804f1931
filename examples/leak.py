#!/usr/bin/env python3
"""leak.py: leaks memory the way a cached Django QuerySet does.

A maintenance script iterates `Model.objects.filter(...)`. The QuerySet keeps every row it has
yielded in its result cache, and each row holds a ~250 KB file buffer, so memory grows with every
row until the process is killed. Run it under guard to see what that looks like with a cap:

    guard --memory 200M -- python3 examples/leak.py

Options: --rows N (default 100000), --row-kb K (default 250), --rate ROWS_PER_SEC (default: as
fast as possible).
"""

import argparse
import sys
import time


class Image:
    """One database row: an id and the file buffer the script loaded for it."""

    def __init__(self, pk, size):
        self.pk = pk
        self.data = bytearray(size)  # zero-filled: the pages are really allocated
        self.data[::4096] = b"\x01" * len(self.data[::4096])


class QuerySet:
    """Just enough of Django's QuerySet: iterating fills a result cache that lives as long as
    the QuerySet does."""

    def __init__(self, rows, row_size):
        self.rows = rows
        self.row_size = row_size
        self._result_cache = []

    def __iter__(self):
        for pk in range(self.rows):
            obj = Image(pk, self.row_size)
            self._result_cache.append(obj)  # the leak: every row stays reachable
            yield obj


def fix_images(rows, row_kb, rate):
    qs = QuerySet(rows, row_kb * 1024)
    start = time.monotonic()
    for n, image in enumerate(qs, 1):
        image.data[0] = 0  # "fix" the image
        if n % 200 == 0:
            print(f"fixed {n} images ({n * row_kb // 1024} MiB cached)", flush=True)
        if rate:
            due = start + n / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    print(f"done: {rows} images", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--row-kb", type=int, default=250)
    p.add_argument("--rate", type=float, default=0)
    a = p.parse_args()
    fix_images(a.rows, a.row_kb, a.rate)
    return 0


if __name__ == "__main__":
    sys.exit(main())
