#!/usr/bin/env python3
"""Time to a restored, paused VM, for each way of restoring one snapshot.

Run by bench/restore.sh (which boots the test guest and makes the snapshot
files); this only times. Each contender is started N times, interleaved
with the others, from a warm page cache; the clock runs from the launch of
the command until QEMU's QMP says the VM is paused with its state loaded
(for fvmsnap restore: until the command returns, which it does at exactly
that point). Then `cont`, and the time until the guest's next heartbeat
line on the serial port: every contender restores the same guest at the
same moment of its one-second heartbeat loop, so this compares how soon
each resumed guest runs (a lazy load pays its page faults here). The
reference in the same run is QEMU started with no state.

With FVM_PQEMU naming the QEMU patched with the libfastvm hook
(contrib/qemu), its -incoming fvm: and fvm-lazy: and x-fvm-save run too.

usage: restore_time.py N WORKDIR QEMU FVMSNAP -- QEMU_ARGS...
writes a Markdown table to stdout and WORKDIR/restore.json
"""
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time


def qmp_connect(path, deadline):
    while True:
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            break
        except OSError:
            s.close()
            if time.monotonic() > deadline:
                raise TimeoutError("no QMP socket " + path)
            time.sleep(0.001)
    f = s.makefile("rwb", buffering=0)
    f.readline()  # greeting
    cmd(f, "qmp_capabilities")
    return s, f


EVENTS = []  # QMP events seen by cmd(), with their timestamps


def cmd(f, name, args=None):
    msg = {"execute": name}
    if args:
        msg["arguments"] = args
    f.write((json.dumps(msg) + "\n").encode())
    while True:
        line = json.loads(f.readline())
        if "event" in line:
            EVENTS.append(line)
        if "return" in line or "error" in line:
            return line


def stopped_for():
    """Seconds between the last STOP and RESUME events (QEMU's clock), or None."""
    def ts(e):
        return e["timestamp"]["seconds"] + e["timestamp"]["microseconds"] / 1e6
    stop = [ts(e) for e in EVENTS if e["event"] == "STOP"]
    res = [ts(e) for e in EVENTS if e["event"] == "RESUME"]
    if not stop or not res or res[-1] < stop[-1]:
        return None
    return res[-1] - stop[-1]


def wait_paused(sock, proc, deadline):
    s, f = qmp_connect(sock, deadline)
    while True:
        st = cmd(f, "query-status")["return"]["status"]
        if st != "inmigrate":
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("QEMU gave up: " + st)
        time.sleep(0.001)
    return s, f, st


def serial_path(args):
    for a in args:
        if a.startswith("file:") and "serial" in a:
            return a[5:]
    raise RuntimeError("no -serial file: in the QEMU arguments")


def heartbeat(f, serial, deadline):
    """cont, then the seconds until a new "HB n" line on the serial port."""
    pos = os.path.getsize(serial) if os.path.exists(serial) else 0
    t0 = time.monotonic()
    r = cmd(f, "cont")
    if "error" in r:
        raise RuntimeError("cont: %s" % r["error"])
    while True:
        with open(serial, "rb") as s:
            s.seek(pos)
            if re.search(rb"HB [0-9]+", s.read()):
                return time.monotonic() - t0
        if time.monotonic() > deadline:
            raise TimeoutError("no heartbeat after cont")
        time.sleep(0.001)


def run_qemu(qemu, args, sock, extra, hb=True):
    t0 = time.monotonic()
    p = subprocess.Popen([qemu] + args + extra + ["-qmp", "unix:%s,server=on,wait=off" % sock],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    s, f, st = wait_paused(sock, p, t0 + 120)
    t = time.monotonic() - t0
    if st not in ("paused", "prelaunch"):
        raise RuntimeError("status " + st)
    h = heartbeat(f, serial_path(args), time.monotonic() + 60) if hb else None
    cmd(f, "quit")
    s.close()
    p.wait(30)
    return t, h


def run_restore(fvmsnap, snap, qemu, args):
    # --force: the stock -loadvm runs of the same round rewrite the qcow2's
    # active L1 table (snapshot goto), which restore's disk check sees
    t0 = time.monotonic()
    out = subprocess.run([fvmsnap, "restore", snap, "--detach", "--paused", "--json", "-q", "--force",
                          "--", qemu] + args, capture_output=True, check=True, text=True)
    t = time.monotonic() - t0
    info = json.loads(out.stdout)
    s, f = qmp_connect(info["qmp"], time.monotonic() + 10)
    st = cmd(f, "query-status")["return"]["status"]
    if st != "paused":
        raise RuntimeError("restore left status " + st)
    h = heartbeat(f, serial_path(args), time.monotonic() + 60)
    cmd(f, "quit")
    s.close()
    for _ in range(300):
        try:
            os.kill(info["pid"], 0)
        except ProcessLookupError:
            break
        time.sleep(0.01)
    d = os.path.dirname(info["qmp"])
    for name in os.listdir(d):
        os.unlink(os.path.join(d, name))
    os.rmdir(d)
    return (t, h), info


# The stock -loadvm runs of a round rewrite the qcow2's active L1 table
# (snapshot goto), which the disk check of fvmsnap restore (--force) and of
# the hook sees.
NO_DISK_CHECK = ["-global", "migration.x-fvm-disk-check=off"]


def save_times(n, work, qemu, fvmsnap, args, sock):
    """Save time of the VM running: stock savevm into qcow2, stock migrate to a
    file, fvmsnap save (RAM from the backend file), each from a running VM."""
    snap = os.path.join(work, "s.fvm")
    disk = os.path.join(work, "disk.qcow2")
    drive = ["-drive", "file=%s,if=virtio" % disk]
    times = {"stock savevm (qcow2)": [], "stock migrate to a file": [], "fvmsnap save": []}
    stopped = {k: [] for k in times}
    # the floor: the snapshot's bytes written and made durable, dd conv=fsync
    times["reference: dd of the .fvm, conv=fsync"] = []
    for i in range(n):
        dst = os.path.join(work, "bench-dd.fvm")
        t0 = time.monotonic()
        subprocess.run(["dd", "if=" + snap, "of=" + dst, "bs=1M", "conv=fsync", "status=none"],
                       check=True)
        times["reference: dd of the .fvm, conv=fsync"].append(time.monotonic() - t0)
        os.unlink(dst)
    # a stock VM, running, restored from the snapshot: savevm, then migrate
    p = subprocess.Popen([qemu] + args + ["-m", os.environ.get("FVM_GUEST_MEM", "512M")] + drive +
                         ["-loadvm", "s1", "-qmp", "unix:%s,server=on,wait=off" % sock],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    s, f = qmp_connect(sock, time.monotonic() + 60)
    for i in range(n):
        t0 = time.monotonic()
        del EVENTS[:]
        r = cmd(f, "human-monitor-command", {"command-line": "savevm bench%d" % i})
        times["stock savevm (qcow2)"].append(time.monotonic() - t0)
        time.sleep(0.05)
        cmd(f, "query-status")  # collects the RESUME event
        stopped["stock savevm (qcow2)"].append(stopped_for())
        if r.get("return"):
            raise RuntimeError("savevm: " + r["return"])
        cmd(f, "human-monitor-command", {"command-line": "delvm bench%d" % i})
        out = os.path.join(work, "bench-save.mig")
        t0 = time.monotonic()
        cmd(f, "stop")
        cmd(f, "migrate", {"uri": "exec:cat > %s" % out})
        while cmd(f, "query-migrate")["return"].get("status") != "completed":
            time.sleep(0.002)
        times["stock migrate to a file"].append(time.monotonic() - t0)
        cmd(f, "cont")
        os.unlink(out)
    cmd(f, "quit")
    s.close()
    p.wait(30)
    # fvmsnap: a VM restored by fvmsnap, running, saved n times
    out = subprocess.run([fvmsnap, "restore", snap, "--detach", "--run", "--json", "-q", "--force", "--",
                          qemu] + args + drive, capture_output=True, check=True, text=True)
    info = json.loads(out.stdout)
    for i in range(n):
        dst = os.path.join(work, "bench-save.fvm")
        t0 = time.monotonic()
        subprocess.run([fvmsnap, "save", "--qmp", info["qmp"], "-o", dst, "-q"], check=True)
        times["fvmsnap save"].append(time.monotonic() - t0)
        os.unlink(dst)
    s, f = qmp_connect(info["qmp"], time.monotonic() + 10)
    cmd(f, "quit")
    s.close()
    time.sleep(0.5)
    d = os.path.dirname(info["qmp"])
    for name in os.listdir(d):
        os.unlink(os.path.join(d, name))
    os.rmdir(d)
    # the patched QEMU: a VM it restored, running, saved n times with x-fvm-save
    pq = os.environ.get("FVM_PQEMU")
    if pq:
        times["patched QEMU x-fvm-save"] = []
        stopped["patched QEMU x-fvm-save"] = []
        if os.path.exists(sock):
            os.unlink(sock)
        pl = os.environ.get("FVM_PQEMU_L", "").split()
        p = subprocess.Popen([pq] + pl + args + ["-m", os.environ.get("FVM_GUEST_MEM", "512M")] + drive +
                             NO_DISK_CHECK + ["-incoming", "fvm:" + snap,
                                              "-qmp", "unix:%s,server=on,wait=off" % sock],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        s, f, st = wait_paused(sock, p, time.monotonic() + 60)
        cmd(f, "cont")
        dst = os.path.join(work, "bench-save.fvm")
        for i in range(n):
            t0 = time.monotonic()
            del EVENTS[:]
            r = cmd(f, "x-fvm-save", {"path": dst})
            times["patched QEMU x-fvm-save"].append(time.monotonic() - t0)
            time.sleep(0.05)
            cmd(f, "query-status")
            stopped["patched QEMU x-fvm-save"].append(stopped_for())
            if "error" in r:
                raise RuntimeError("x-fvm-save: %s" % r["error"])
            os.unlink(dst)
        cmd(f, "quit")
        s.close()
        p.wait(30)
    return times, stopped


def main():
    n = int(sys.argv[1])
    work, qemu, fvmsnap = sys.argv[2:5]
    args = sys.argv[sys.argv.index("--") + 1:]
    sock = os.path.join(work, "bench-qmp.sock")
    snap = os.path.join(work, "s.fvm")
    disk = os.path.join(work, "disk.qcow2")
    mig = os.path.join(work, "vm.mig")
    drive = ["-drive", "file=%s,if=virtio" % disk]
    mem = ["-m", os.environ.get("FVM_GUEST_MEM", "512M")]
    contenders = [
        ("QEMU start, no state (-S)", lambda: run_qemu(qemu, args + mem + drive, sock, ["-S"],
                                                       hb=False)),
        ("stock -loadvm (qcow2)", lambda: run_qemu(qemu, args + mem + drive, sock,
                                                   ["-S", "-loadvm", "s1"])),
        ("stock -incoming exec:cat vm.mig", lambda: run_qemu(
            qemu, args + mem + drive, sock, ["-S", "-incoming", "exec:cat %s" % mig])),
        ("-incoming exec:fvmsnap export", lambda: run_qemu(
            qemu, args + mem + drive, sock, ["-S", "-incoming",
                                             "exec:%s export %s" % (fvmsnap, snap)])),
        ("fvmsnap restore --paused", lambda: run_restore(fvmsnap, snap, qemu, args + drive)[0]),
    ]
    pq = os.environ.get("FVM_PQEMU")
    pl = os.environ.get("FVM_PQEMU_L", "").split()
    if pq:
        contenders += [
            ("patched QEMU -incoming fvm:", lambda: run_qemu(
                pq, pl + args + mem + drive + NO_DISK_CHECK, sock,
                ["-S", "-incoming", "fvm:" + snap])),
            ("patched QEMU -incoming fvm-lazy:", lambda: run_qemu(
                pq, pl + args + mem + drive + NO_DISK_CHECK, sock,
                ["-S", "-incoming", "fvm-lazy:" + snap])),
        ]
    times = {name: [] for name, _ in contenders}
    hbs = {name: [] for name, _ in contenders}
    for i in range(n):
        for name, fn in contenders:
            if os.path.exists(sock):
                os.unlink(sock)
            t, h = fn()
            times[name].append(t)
            if h is not None:
                hbs[name].append(h)
        print("round %d/%d done" % (i + 1, n), file=sys.stderr)
    _, info = run_restore(fvmsnap, snap, qemu, args + drive)
    ref = statistics.median(times["stock -loadvm (qcow2)"])
    base = statistics.median(times["QEMU start, no state (-S)"])
    ref_hb = statistics.median([t + h for t, h in zip(times["stock -loadvm (qcow2)"],
                                                      hbs["stock -loadvm (qcow2)"])])
    rows = []
    print("| contender | paused: median s | min-max s | vs -loadvm | vs QEMU start "
          "| cont to heartbeat s | launch to heartbeat s | vs -loadvm |")
    print("|---|---|---|---|---|---|---|---|")
    for name, _ in contenders:
        v = times[name]
        med = statistics.median(v)
        row = {"contender": name, "median_s": med, "min_s": min(v), "max_s": max(v),
               "runs": v, "speedup_vs_loadvm": ref / med, "ratio_to_qemu_start": med / base}
        hb = "-"
        total = "-"
        hbr = "-"
        if hbs[name]:
            hmed = statistics.median(hbs[name])
            tmed = statistics.median([t + h for t, h in zip(v, hbs[name])])
            row.update({"cont_to_heartbeat_s": hmed, "heartbeat_runs": hbs[name],
                        "launch_to_heartbeat_s": tmed,
                        "heartbeat_speedup_vs_loadvm": ref_hb / tmed})
            hb, total, hbr = "%.3f" % hmed, "%.3f" % tmed, "%.2fx" % (ref_hb / tmed)
        rows.append(row)
        print("| %s | %.3f | %.3f-%.3f | %.2fx | %.2fx | %s | %s | %s |" % (
            name, med, min(v), max(v), ref / med, med / base, hb, total, hbr))
    print()
    print("fvmsnap restore phases (one more run): stream %.3f s, RAM %.3f s (%d MiB) while QEMU "
          "started, QMP up %.3f s after start, device state %.3f s, total %.3f s" % (
              info["stream_seconds"], info["ram_seconds"], info["ram_bytes"] >> 20,
              info["qemu_start_seconds"], info["device_state_seconds"], info["total_seconds"]))
    saves, stopped = save_times(n, work, qemu, fvmsnap, args, sock)
    ref = statistics.median(saves["stock savevm (qcow2)"])
    sv = [x for x in stopped["stock savevm (qcow2)"] if x is not None]
    ref_stop = statistics.median(sv) if sv else None
    print()
    print("| save, VM running | median s | min-max s | speed-up vs savevm | VM stopped s "
          "| vs savevm |")
    print("|---|---|---|---|---|---|")
    srows = []
    for name, v in saves.items():
        med = statistics.median(v)
        row = {"contender": name, "median_s": med, "runs": v, "speedup_vs_savevm": ref / med}
        st = [x for x in stopped.get(name, []) if x is not None]
        stop_s, stop_r = "-", "-"
        if st:
            row["stopped_s"] = statistics.median(st)
            row["stopped_runs"] = st
            stop_s = "%.3f" % row["stopped_s"]
            if ref_stop:
                stop_r = "%.2fx" % (ref_stop / row["stopped_s"])
        srows.append(row)
        print("| %s | %.3f | %.3f-%.3f | %.2fx | %s | %s |" % (name, med, min(v), max(v), ref / med,
                                                              stop_s, stop_r))
    with open(os.path.join(work, "restore.json"), "w") as f:
        json.dump({"runs": n, "contenders": rows, "restore_phases": info, "save": srows}, f,
                  indent=1)


if __name__ == "__main__":
    main()
