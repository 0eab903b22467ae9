#!/usr/bin/env python3
"""Issue 9's codec choice from bench/codecs JSON (doc/BENCHMARKS.md).

For each eMMC-class device speed and core count, a codec/level qualifies when
its decoding on every core keeps well ahead of the device:

    headroom = decode MB/s per core x cores / (device MB/s x ratio) >= MARGIN

(the device delivers device MB/s of compressed bytes, i.e. device x ratio
MB/s of guest RAM to decode; MARGIN 2 leaves half the cores' time for the
reads' completions, the copy of frames stored raw and the guest's start).
Among those the highest ratio wins: the load then takes about
compressed bytes / device speed. Printed: per frame size, a table of the
estimated load time of the input's data (max of read time and decode time)
and the headroom, and the winners; also the best codec whose compression
runs at >= SAVE_MBPS per core (usable while saving, not only offline).

Usage: codecs-report.py FILE.json [MORE.json ...] [--margin 2] [--save-mbps 100]
A result in a later file replaces the one for the same codec, level and
frame size in an earlier one (e.g. zstd 19 measured again on every frame).
"""
import argparse
import json
import sys

DEVICES = (137, 250)  # MB/s: the seed's eMMC, a faster one
CORES = (2, 4)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("json", nargs="+")
    ap.add_argument("--margin", type=float, default=2.0)
    ap.add_argument("--save-mbps", type=float, default=100.0)
    a = ap.parse_args()
    d = json.load(open(a.json[0]))
    for more in a.json[1:]:
        m = json.load(open(more))
        if m["data_bytes"] != d["data_bytes"]:
            sys.exit(f"codecs-report: {more} measured other data than {a.json[0]}")
        key = lambda r: (r["codec"], r["level"], r["frame_size"])
        new = {key(r): r for r in m["results"]}
        d["results"] = [new.pop(key(r), r) for r in d["results"]] + list(new.values())
    data_mb = d["data_bytes"] / 1e6
    print(f"Input {d['input']}: {data_mb:.0f} MB of non-zero pages; "
          f"margin {a.margin:g}x; load time = max(stored / device, data / (decode x cores))\n")
    sizes = sorted({r["frame_size"] for r in d["results"]})
    for fs in sizes:
        rows = [r for r in d["results"] if r["frame_size"] == fs]
        print(f"Frames of {fs >> 10} KiB:\n")
        head = "| codec | ratio | decode MB/s |"
        for dev in DEVICES:
            for c in CORES:
                head += f" {dev} MB/s, {c} cores |"
        print(head)
        print("|---" * (3 + len(DEVICES) * len(CORES)) + "|")
        for r in rows:
            line = f"| {r['codec']} {r['level']} | {r['ratio']:.2f} | {r['decode_mbps']:.0f} |"
            for dev in DEVICES:
                for c in CORES:
                    line += " " + cell(r, dev, c, data_mb) + " |"
            print(line)
        print(f"\n(uncompressed: {data_mb / DEVICES[0]:.2f} s at {DEVICES[0]} MB/s, "
              f"{data_mb / DEVICES[1]:.2f} s at {DEVICES[1]} MB/s; cells: load s, headroom)")
        for dev in DEVICES:
            for c in CORES:
                ok = [r for r in rows if headroom(r, dev, c) >= a.margin]
                best = max(ok, key=lambda r: r["ratio"]) if ok else None
                save = [r for r in ok if r["compress_mbps"] >= a.save_mbps]
                bsave = max(save, key=lambda r: r["ratio"]) if save else None
                print(f"- {dev} MB/s, {c} cores: best {name(best)}; "
                      f"best compressing >= {a.save_mbps:g} MB/s per core: {name(bsave)}")
        print()
    return 0


def headroom(r, dev, cores):
    if r["decode_mbps"] <= 0:  # nothing decoded: every frame stored raw
        return float("inf")
    return r["decode_mbps"] * cores / (dev * r["ratio"])


def cell(r, dev, cores, data_mb):
    stored = data_mb / r["ratio"]
    dec = data_mb / (r["decode_mbps"] * cores) if r["decode_mbps"] > 0 else 0.0
    h = headroom(r, dev, cores)
    hs = "inf" if h == float("inf") else f"{h:.1f}x"
    return f"{max(stored / dev, dec):.2f} s, {hs}"


def name(r):
    if r is None:
        return "none"
    return f"{r['codec']} {r['level']} (ratio {r['ratio']:.2f}, decode {r['decode_mbps']:.0f} MB/s, " \
           f"compress {r['compress_mbps']:.0f} MB/s)"


if __name__ == "__main__":
    sys.exit(main())
