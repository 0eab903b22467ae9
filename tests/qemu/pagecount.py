#!/usr/bin/env python3
# Counts the zero and non-zero 4 KiB pages of a raw memory dump (pmemsave
# output), independently of fvmsnap, and optionally checks them against the
# block of the same name in an `fvmsnap inspect --json` document.
# Usage: pagecount.py DUMP [--offset BYTES] [--length BYTES]
#                         [--inspect JSONFILE --block NAME]
# Prints "pages P zero Z nonzero N runs R"; exit 1 on a mismatch.
import argparse
import json
import sys

PAGE = 4096
ZERO = bytes(PAGE)


def count(path, offset, length):
    pages = zero = runs = 0
    prev_data = False
    with open(path, 'rb') as f:
        f.seek(offset)
        left = length
        while left is None or left > 0:
            want = 1 << 20 if left is None else min(1 << 20, left)
            buf = f.read(want)
            if not buf:
                break
            if len(buf) % PAGE:
                sys.exit('pagecount: dump not a whole number of pages')
            for i in range(0, len(buf), PAGE):
                z = buf[i:i + PAGE] == ZERO
                pages += 1
                zero += z
                runs += (not z) and not prev_data
                prev_data = not z
            if left is not None:
                left -= len(buf)
    return pages, zero, runs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('dump')
    ap.add_argument('--offset', type=lambda s: int(s, 0), default=0)
    ap.add_argument('--length', type=lambda s: int(s, 0), default=None)
    ap.add_argument('--inspect')
    ap.add_argument('--block')
    a = ap.parse_args()
    pages, zero, runs = count(a.dump, a.offset, a.length)
    print(f'pages {pages} zero {zero} nonzero {pages - zero} runs {runs}')
    if not a.inspect:
        return 0
    with open(a.inspect) as f:
        doc = json.load(f)
    blocks = [b for b in doc.get('blocks', []) if b.get('name') == a.block]
    if len(blocks) != 1:
        print(f'pagecount: block {a.block!r} not in {a.inspect}', file=sys.stderr)
        return 1
    b = blocks[0]
    got = (b.get('pages'), b.get('data_pages'),
           b.get('zero_pages', 0) + b.get('absent_pages', 0))
    want = (pages, pages - zero, zero)
    print(f'inspect {a.block}: pages {got[0]} data {got[1]} zero+absent {got[2]}')
    if got != want:
        print(f'pagecount: MISMATCH for {a.block}: inspect (pages, data, zero) '
              f'{got} != dump {want}', file=sys.stderr)
        return 1
    return 0


sys.exit(main())
