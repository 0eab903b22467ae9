#!/usr/bin/env python3
"""The report of bench/run.sh: medians, spreads and verdicts, and the plots.

usage: report.py WORKDIR OUTDIR RUNS

Reads WORKDIR/raw/DEVICE/INPUT/{plain,zstd,lz4}.ROUND.json (fvmsnap bench
--json, one round each), stock.ROUND.txt (stock_load_ref), save.txt,
raw/scale-NAME.ROUND.json, restore.json (bench/restore.sh), devices.txt,
inputs.txt, notes.txt, machine-start.txt and machine-end.txt (bench/machine.sh
show); writes OUTDIR/run.json, OUTDIR/run.md and, with gnuplot, OUTDIR/load-vs-size.svg and OUTDIR/heartbeat.svg. MB = 10^6 bytes;
MB/s is the restored RAM (payload) per second, the same bytes for every
contender of an input; ratio is to the reference (a read() of the plain
file) of the same device and input.
"""
import glob
import json
import os
import re
import statistics
import subprocess
import sys

W, OUT, RUNS = sys.argv[1], sys.argv[2], int(sys.argv[3])
VARIANTS = ["plain", "zstd", "lz4"]
# (key, label): the contenders, in table order
CONTENDERS = [
    ("reference", "reference: read() of the plain file"),
    ("uring", "libfastvm eager (uring)"),
    ("zstd", "libfastvm zstd:3"),
    ("lz4", "libfastvm lz4:1"),
    ("lazy", "libfastvm lazy (map only)"),
    ("lazy_prefetch", "lazy+prefetch: load returns"),
    ("prefetch_wait", "lazy+prefetch: all read"),
    ("stock", "QEMU-like stock reader"),
    ("ref_zstd", "read() of the zstd file"),
    ("ref_lz4", "read() of the lz4 file"),
]
LABEL = dict(CONTENDERS)


def lines(path):
    try:
        with open(path) as f:
            return [ln.split() for ln in f if ln.strip()]
    except FileNotFoundError:
        return []


def stats(xs):
    xs = sorted(xs)
    return {"median_s": statistics.median(xs), "min_s": xs[0], "max_s": xs[-1],
            "runs_s": xs, "n": len(xs)}


def device_rows(dev, name):
    """{contender: [seconds per round]} and the facts of the input's files."""
    times, facts = {}, {}
    for v in VARIANTS:
        for p in sorted(glob.glob(os.path.join(W, "raw", dev, name, "%s.*.json" % v))):
            with open(p) as f:
                d = json.load(f)
            facts[v] = {"file_size": d["file_size"], "payload_bytes": d["payload_bytes"],
                        "stored_bytes": d.get("stored_bytes", d["payload_bytes"]),
                        "codec": d.get("codec", "none")}
            for r in d["results"]:
                key = r["config"]
                if v != "plain":
                    key = {"reference": "ref_" + v, "uring": v}.get(key)
                if key:
                    times.setdefault(key, []).append(r["median_ms"] / 1e3)
    for p in sorted(glob.glob(os.path.join(W, "raw", dev, name, "stock.*.txt"))):
        with open(p) as f:
            # "run K: S s" per run with --repeat, else only the median line
            t = f.read()
            m = re.findall(r"^run \d+: ([0-9.]+) s", t, re.M) or \
                re.findall(r"\bmedian:? ([0-9.]+) s", t)
        times.setdefault("stock", []).extend(float(x) for x in m)
    return times, facts


def machine(notes):
    """bench/machine.sh show at the start and the end: {"start": {...}, "end": {...}};
    a note for each setting that makes the loads noisy (doc/BENCHMARKS.md 9)."""
    m = {}
    for when in ("start", "end"):
        kv = dict(ln[0].split("=", 1) for ln in lines(os.path.join(W, "machine-%s.txt" % when))
                  if "=" in ln[0])
        if kv:
            m[when] = kv
    for when, kv in m.items():
        if kv.get("autogroup") == "1":
            notes.append("machine (%s): autogroup scheduling on: other sessions' nice jobs take "
                         "CPUs from the loads (bench/machine.sh quiet)" % when)
        if kv.get("page_reporting") == "on":
            notes.append("machine (%s): free page reporting to the host on: a fresh destination "
                         "may cost host faults (first touch %s us per page; bench/machine.sh "
                         "quiet)" % (when, kv.get("first_touch_us", "?")))
    return m


def main():
    devices = [(d, int(b)) for d, b in lines(os.path.join(W, "devices.txt"))]
    devs = [d for d, _ in devices] + ["disk-cold", "disk-warm"]
    inputs = [ln[0] for ln in lines(os.path.join(W, "inputs.txt"))]
    notes = [" ".join(ln) for ln in lines(os.path.join(W, "notes.txt"))]
    rep = {"schema": "fvm-bench-suite/1", "runs": RUNS, "devices": dict(devices),
           "loads": [], "save": {}, "scale": {}, "qemu": None, "targets": [], "notes": notes,
           "machine": machine(notes)}
    for dev in devs:
        for name in inputs:
            times, facts = device_rows(dev, name)
            if not times:
                continue
            plain = facts["plain"]
            ref = statistics.median(times["reference"])
            row = {"device": dev, "input": name, "file_bytes": plain["file_size"],
                   "payload_bytes": plain["payload_bytes"],
                   "files": facts, "contenders": {}}
            for key, _ in CONTENDERS:
                if key not in times:
                    continue
                s = stats(times[key])
                s["payload_mb_s"] = plain["payload_bytes"] / s["median_s"] / 1e6
                s["ratio_to_reference"] = s["median_s"] / ref
                row["contenders"][key] = s
            # the device's read rate as the reference read() measured it
            row["device_mb_s"] = plain["file_size"] / ref / 1e6
            rep["loads"].append(row)

    sv = lines(os.path.join(W, "save.txt"))
    if sv:
        payload = int(sv[0][sv[0].index("payload") + 1])
        t = {}
        copy_bytes = None
        dirty = []
        for ln in sv[1:]:
            t.setdefault(ln[0], []).append(float(ln[1]) / 1e3)
            if ln[0] == "copy":
                copy_bytes = int(ln[2])
            if ln[0] == "raw_write" and int(ln[2]) != payload:
                sys.exit("report.py: the save reference wrote %s bytes, not the %d of pack's payload"
                         % (ln[2], payload))
            if len(ln) > 3:
                dirty.append(int(ln[3]))
        # dirty_kb_max: the most dirty + writeback page cache left (kB) when
        # a timed write started, after bench/run.sh let writeback drain
        rep["save"] = {"payload_bytes": payload, "stream_bytes": copy_bytes,
                       "dirty_kb_max": max(dirty) if dirty else None,
                       "times": {k: stats(v) for k, v in t.items()}}
    for p in sorted(glob.glob(os.path.join(W, "raw", "scale-*.json"))):
        name = os.path.basename(p).split(".")[0][len("scale-"):]
        with open(p) as f:
            d = json.load(f)
        e = rep["scale"].setdefault(name, {"file_bytes": d["file_size"],
                                           "payload_bytes": d["payload_bytes"], "warm": [], "cold": []})
        for r in d["results"]:
            if r["config"] == "uring":
                e[r["cache"]].append(r["median_ms"] / 1e3)
    for e in rep["scale"].values():
        for c in ("warm", "cold"):
            e[c] = stats(e[c]) if e[c] else None
    rp = os.path.join(W, "restore.json")
    if os.path.exists(rp):
        with open(rp) as f:
            rep["qemu"] = json.load(f)
    rp = os.path.join(W, "hot.json")
    rep["qemu_emmc"] = None
    if os.path.exists(rp):
        with open(rp) as f:
            rep["qemu_emmc"] = json.load(f)
    targets(rep)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "run.json"), "w") as f:
        json.dump(rep, f, indent=1)
        f.write("\n")
    plots(rep)
    with open(os.path.join(OUT, "run.md"), "w") as f:
        f.write(markdown(rep))


def hot_verdict(rep):
    """The seed's lazy target, from bench/hot.sh on the 137 MB/s device (tests' guest)."""
    target = "emmc-137: fvm-lazy: paused VM < 0.1 s, first heartbeat < 0.5 s"
    h = rep.get("qemu_emmc")
    if not h:
        verdict(rep, target, None, "bench/hot.sh did not run (no patched QEMU 7.2 or no device)")
        return
    c = {e["case"]: e for e in h["cases"]}
    best = c.get("fvm-lazy: + prefetch, hot order")
    own = c.get("fvm-lazy: + prefetch, plain order")
    if not best:
        verdict(rep, target, None, "bench/hot.sh ran without the hot-order case")
        return
    launch_hb = best["paused_s"] + best["heartbeat_s"]
    text = ("working set first + prefetch: paused %.3f s, first heartbeat %.3f s after launch "
            "(%.3f s after cont)" % (best["paused_s"], launch_hb, best["heartbeat_s"]))
    if own:
        text += "; file order: paused %.3f s, heartbeat %.3f s after launch" % (
            own["paused_s"], own["paused_s"] + own["heartbeat_s"])
    verdict(rep, target, best["paused_s"] < 0.1 and launch_hb < 0.5, text)


def load(rep, dev, name):
    for r in rep["loads"]:
        if r["device"] == dev and r["input"] == name:
            return r
    return None


def verdict(rep, target, ok, text):
    rep["targets"].append({"target": target, "verdict": "NOT MEASURED" if ok is None
                           else "PASS" if ok else "FAIL", "figures": text})


def targets(rep):
    real = "real-guest"
    for dev in ("emmc-137", "emmc-250"):
        r = load(rep, dev, real)
        if not r or "zstd" not in r["contenders"]:
            verdict(rep, "%s: compressed load <= 1.10x compressed bytes / device rate" % dev, None,
                    "no real-content guest on this device")
            continue
        c = r["contenders"]
        for codec in ("zstd", "lz4"):
            if codec not in c:
                continue
            bound = r["files"][codec]["file_size"] / (r["device_mb_s"] * 1e6)
            x = c[codec]["median_s"] / bound
            verdict(rep, "%s, real guest: %s load <= 1.10x (its file / device rate)" % (dev, codec),
                    x <= 1.10, "%.3f s against %.3f s (%d MB at %.1f MB/s): %.3fx"
                    % (c[codec]["median_s"], bound, r["files"][codec]["file_size"] / 1e6,
                       r["device_mb_s"], x))
            x = c[codec]["median_s"] / c["uring"]["median_s"]
            verdict(rep, "%s, real guest: %s load <= 0.5x the uncompressed load" % (dev, codec),
                    x <= 0.5, "%.3f s against %.3f s: %.3fx" % (c[codec]["median_s"],
                                                              c["uring"]["median_s"], x))
        if dev == "emmc-137" and "lazy_prefetch" in c:
            x = c["lazy_prefetch"]["median_s"]
            verdict(rep, "emmc-137, real guest: lazy+prefetch load returns < 0.1 s (the library "
                    "part of a paused VM)", x < 0.1, "%.4f s; all RAM read after %.3f s"
                    % (x, c["prefetch_wait"]["median_s"]))
    if rep.get("qemu_emmc") or load(rep, "emmc-137", real):
        hot_verdict(rep)
    r = load(rep, "disk-warm", real)
    if r and "zstd" in r["contenders"]:
        c = r["contenders"]
        for codec in ("zstd", "lz4"):
            x = c[codec]["median_s"] / c["uring"]["median_s"]
            verdict(rep, "disk warm, real guest: %s load <= 2x the uncompressed load" % codec,
                    x <= 2.0, "%.3f s against %.3f s: %.2fx" % (c[codec]["median_s"],
                                                             c["uring"]["median_s"], x))
    s = rep["save"]
    if s:
        t = s["times"]
        x = t["raw_write"]["median_s"] / t["pack"]["median_s"]
        verdict(rep, "pack >= 0.8x the speed of a raw sequential write (fsync both)", x >= 0.8,
                "pack %.3f s, dd of the image's %d MB of non-zero pages conv=fsync %.3f s: %.2fx the speed"
                % (t["pack"]["median_s"], s["payload_bytes"] / 1e6, t["raw_write"]["median_s"], x))
        if "convert" in t:
            x = t["copy"]["median_s"] / t["convert"]["median_s"]
            verdict(rep, "convert >= the speed of a plain copy with fsync", x >= 1.0,
                    "convert %.3f s, dd of the %d MB stream conv=fsync %.3f s: %.2fx the speed"
                    % (t["convert"]["median_s"], s["stream_bytes"] / 1e6, t["copy"]["median_s"], x))
    sc = rep["scale"]
    if {"dense-1G", "4G-1G", "16G-512M"} <= set(sc):
        for c in ("warm", "cold"):
            a, b, z = sc["dense-1G"][c], sc["4G-1G"][c], sc["16G-512M"][c]
            x = b["median_s"] / a["median_s"]
            verdict(rep, "scale, %s: 4 GiB guest with 1 GiB non-zero <= 1.2x a 1 GiB dense one" % c,
                    x <= 1.2, "%.3f s against %.3f s: %.3fx" % (b["median_s"], a["median_s"], x))
            want = a["median_s"] * sc["16G-512M"]["payload_bytes"] / sc["dense-1G"]["payload_bytes"]
            x = z["median_s"] / want
            verdict(rep, "scale, %s: 16 GiB guest with 512 MiB non-zero as fast as its non-zero "
                    "bytes say (<= 1.2x)" % c, x <= 1.2,
                    "%.3f s against %.3f s (the dense 1 GiB's rate): %.3fx" % (z["median_s"], want, x))


def plots(rep):
    try:
        subprocess.run(["gnuplot", "--version"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        rep["notes"].append("no gnuplot: no plots")
        return
    devs = []
    for r in rep["loads"]:
        if r["device"] not in devs:
            devs.append(r["device"])
    if not devs and not rep["qemu"]:
        return  # bench/run.sh --only without loads or qemu: nothing to draw
    keys = ["reference", "uring", "zstd", "lz4", "lazy_prefetch", "prefetch_wait", "stock"]
    dat = os.path.join(OUT, "load-vs-size.dat")
    with open(dat, "w") as f:
        f.write("# device index, then per contender: file MB, median s, min s, max s\n")
        for di, dev in enumerate(devs):
            for k in keys:
                f.write("# %s %s\n" % (dev, k))
                for r in sorted((r for r in rep["loads"] if r["device"] == dev),
                                key=lambda r: r["file_bytes"]):
                    c = r["contenders"].get(k)
                    if c:
                        f.write("%.3f %.6f %.6f %.6f\n" % (r["file_bytes"] / 1e6, c["median_s"],
                                                          c["min_s"], c["max_s"]))
                f.write("\n\n")
    cols = 2
    rows = (len(devs) + 1) // 2
    g = [] if not devs else [
         "set terminal svg size 1000,%d dynamic font 'sans,10'" % (380 * rows),
         "set output '%s'" % os.path.join(OUT, "load-vs-size.svg"),
         "set multiplot layout %d,%d title 'Load time against snapshot size (plain file), "
         "medians of %d runs, bars: min..max'" % (rows, cols, rep["runs"]),
         "set logscale xy", "set xlabel 'plain snapshot file, MB'", "set ylabel 'seconds'",
         # the lines rise from bottom left to top right: the key goes into the
         # empty top left corner, made room for by the y range
         "set key top left reverse Left font 'sans,7' samplen 2 spacing 0.9",
         "set yrange [*:200]", "set grid"]
    for di, dev in enumerate(devs):
        g.append("set title '%s'" % dev)
        p = []
        for ki, k in enumerate(keys):
            p.append("'%s' index %d using 1:2:3:4 with yerrorlines title '%s'"
                     % (dat, di * len(keys) + ki, LABEL[k]))
        g.append("plot " + ", ".join(p))
    if devs:
        g.append("unset multiplot")
    q = rep["qemu"]
    if q:
        hb = os.path.join(OUT, "heartbeat.dat")
        with open(hb, "w") as f:
            f.write("# contender, to paused VM s, cont to first heartbeat s, "
                    "launch to first heartbeat s\n")
            for c in q["contenders"]:
                # tic labels wrapped onto lines of about 18 characters
                words, lab, cur = c["contender"].split(), [], ""
                for wd in words:
                    if cur and len(cur) + len(wd) > 18:
                        lab.append(cur)
                        cur = ""
                    cur = (cur + " " + wd).strip()
                lab.append(cur)
                f.write('"%s" %.6f %.6f %.6f\n' % ("\\n".join(lab), c["median_s"],
                                                    c.get("cont_to_heartbeat_s", 0) or 0,
                                                    c.get("launch_to_heartbeat_s", 0) or 0))
        g += ["reset", "set terminal svg size 1000,420 dynamic font 'sans,10'",
              "set output '%s'" % os.path.join(OUT, "heartbeat.svg"),
              "set title 'QEMU 7.2, the tests'' guest (512 MiB), warm: time from launch, medians "
              "of %d runs'" % q["runs"],
              "set style data histograms", "set style histogram clustered gap 1",
              "set style fill solid 0.8 border -1", "set boxwidth 0.9",
              "set xtics font 'sans,8' nomirror", "set bmargin 5",
              "set ylabel 'seconds'",
              "set grid ytics", "set key top left", "set yrange [0:%.3f]" % (1.45 * max(
                  max(c["median_s"], c.get("launch_to_heartbeat_s") or 0) for c in q["contenders"])),
              "plot '%s' using 2:xtic(1) title 'launch to a paused VM with its state', "
              "'' using 3 title 'cont to the first heartbeat', "
              "'' using 4 title 'launch to the first heartbeat (cont at pause)'" % hb]
    # gnuplot warns of one-point ranges (the smoke input); only a failure is news
    p = subprocess.run(["gnuplot"], input="\n".join(g) + "\n", text=True, capture_output=True)
    if p.returncode:
        sys.stderr.write(p.stderr)
        raise RuntimeError("gnuplot failed")


def markdown(rep):
    o = ["# bench/run.sh report", "",
         "%d rounds, interleaved; medians, spread = min..max of the rounds; MB/s = restored "
         "RAM (non-zero bytes) per second; ratio = median over the reference's (one read() of "
         "the plain file) on the same device. Devices: %s; disk-cold/disk-warm = this machine's "
         "disk with POSIX_FADV_DONTNEED / a read before each run." % (
             rep["runs"], ", ".join("%s = %d B/s" % kv for kv in rep["devices"].items()) or "none"),
         ""]
    for when, kv in rep["machine"].items():
        o.append("- machine at the %s: %s" % (when, ", ".join("%s=%s" % i for i in kv.items())))
    for n in rep["notes"]:
        o.append("- " + n)
    o += ["", "## Targets", "", "| target | verdict | figures |", "|---|---|---|"]
    for t in rep["targets"]:
        o.append("| %s | %s | %s |" % (t["target"], t["verdict"], t["figures"]))
    o += ["", "## Loads", ""]
    for r in rep["loads"]:
        f = r["files"]
        o.append("### %s, %s: plain %.1f MB (%.1f MB non-zero), zstd %.1f MB, lz4 %.1f MB; "
                 "device read %.1f MB/s" % (r["device"], r["input"], r["file_bytes"] / 1e6,
                                            r["payload_bytes"] / 1e6, f["zstd"]["file_size"] / 1e6,
                                            f["lz4"]["file_size"] / 1e6, r["device_mb_s"]))
        o += ["", "| contender | median s | spread s | MB/s | ratio |", "|---|---:|---:|---:|---:|"]
        for k, lab in CONTENDERS:
            c = r["contenders"].get(k)
            if c:
                o.append("| %s | %.4f | %.4f..%.4f | %.1f | %.3fx |" % (
                    lab, c["median_s"], c["min_s"], c["max_s"], c["payload_mb_s"],
                    c["ratio_to_reference"]))
        o.append("")
    s = rep["save"]
    if s:
        o += ["## Save and convert", "", "%.1f MB non-zero RAM; stream %s MB. Before each timed write: "
              "its input read into the page cache, writeback drained (at most %s kB dirty left); "
              "raw_write is dd of exactly the non-zero pages pack stores; the order alternates." % (
            s["payload_bytes"] / 1e6, "%.1f" % (s["stream_bytes"] / 1e6) if s["stream_bytes"] else "-",
            s["dirty_kb_max"] if s["dirty_kb_max"] is not None else "?"),
              "", "| step | median s | spread s | MB/s |", "|---|---:|---:|---:|"]
        for k, v in s["times"].items():
            b = s["stream_bytes"] if k in ("copy", "convert") else s["payload_bytes"]
            o.append("| %s | %.3f | %.3f..%.3f | %.1f |" % (k, v["median_s"], v["min_s"],
                                                          v["max_s"], b / v["median_s"] / 1e6))
        o.append("")
    if rep["scale"]:
        o += ["## Scale (sparse synthetic guests, uring load)", "",
              "%d rounds, the order rotating; medians (min..max)." % max(
                  (e[c]["n"] for e in rep["scale"].values() for c in ("warm", "cold") if e[c]),
                  default=0), "",
              "| guest | file MB | non-zero MB | warm s | cold s |", "|---|---:|---:|---:|---:|"]
        for k, e in rep["scale"].items():
            o.append("| %s | %.1f | %.1f | %s | %s |" % (
                k, e["file_bytes"] / 1e6, e["payload_bytes"] / 1e6,
                *["%.3f (%.3f..%.3f)" % (e[c]["median_s"], e[c]["min_s"], e[c]["max_s"])
                  if e[c] else "-" for c in ("warm", "cold")]))
        o.append("")
    h = rep.get("qemu_emmc")
    if h:
        o += ["## QEMU on the eMMC at %.0f MB/s (bench/hot.sh: the tests' guest, cold)" % (h["bps"] / 1e6),
              "", "| restore | to paused VM s | cont to first heartbeat s | launch to first heartbeat s |",
              "|---|---:|---:|---:|"]
        for e in h["cases"]:
            o.append("| %s | %.3f | %.3f | %.3f |" % (e["case"], e["paused_s"], e["heartbeat_s"],
                                                    e["paused_s"] + e["heartbeat_s"]))
        o.append("")
    q = rep["qemu"]
    if q:
        o += ["## QEMU (bench/restore.sh: the tests' guest, 512 MiB, warm)", "",
              "| contender | launch to paused s | cont to first heartbeat s | "
              "launch to first heartbeat s |", "|---|---:|---:|---:|"]
        for c in q["contenders"]:
            h = [c.get(k) for k in ("cont_to_heartbeat_s", "launch_to_heartbeat_s")]
            o.append("| %s | %.3f | %s |" % (c["contender"], c["median_s"], " | ".join(
                "%.3f" % x if x is not None else "-" for x in h)))
        o.append("")
    return "\n".join(o) + "\n"


main()
