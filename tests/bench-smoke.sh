#!/bin/bash
# bench/run.sh --smoke: the benchmark suite's machinery (inputs, the
# emulated eMMC device, every contender, the report and its plot) on one
# tiny input, so that the suite cannot rot between its real runs. Checks
# the report's structure and that its figures agree with each other.
# Usage: bench-smoke.sh BUILDDIR. Exit 77 when python3, gnuplot or the
# FUSE export are missing (then with --no-emmc if only the export is).
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:?usage: bench-smoke.sh BUILDDIR}" && pwd)
w=$(mktemp -d "$build/bench-smoke.XXXXXX") || exit 1
trap 'rm -rf "$w"' EXIT
fail() { echo "bench-smoke: FAIL: $*" >&2; exit 1; }
command -v gnuplot >/dev/null || { echo "bench-smoke: no gnuplot (apt-get install gnuplot-nox)"; exit 77; }
command -v python3 >/dev/null || { echo "bench-smoke: no python3"; exit 77; }
. "$top/bench/emmc-lib.sh"
emmc=()
devs=1
if ! msg=$(emmc_check 2>&1); then
	echo "bench-smoke: $msg: without the eMMC device"
	emmc=(--no-emmc)
	devs=0
fi
"$top/bench/run.sh" --smoke -n 2 -b "$build" -w "$w/work" -o "$w/out" "${emmc[@]}" >"$w/log" 2>&1
rc=$?
[ $rc = 77 ] && { cat "$w/log"; exit 77; }
[ $rc = 0 ] || { cat "$w/log"; fail "run.sh --smoke exited $rc"; }
grep -qE '^\[[0-9:]+\] +[0-9]+ disk-warm round 2/2: smoke-16M$' "$w/log" ||
	fail "no progress line for the last round: $(tail -n 3 "$w/log")"
[ -s "$w/out/load-vs-size.svg" ] && grep -q '<svg' "$w/out/load-vs-size.svg" || fail "no plot"
grep -q '^| libfastvm zstd:3 | ' "$w/out/run.md" || fail "run.md has no zstd row"
python3 - "$w/out/run.json" $((devs + 2)) <<'PY' || fail "run.json"
import json, sys
d = json.load(open(sys.argv[1]))
loads = d["loads"]
assert len(loads) == int(sys.argv[2]), [l["device"] for l in loads]
want = {"reference", "uring", "zstd", "lz4", "lazy", "lazy_prefetch", "prefetch_wait",
        "ref_zstd", "ref_lz4"}
for l in loads:
    c = l["contenders"]
    assert set(c) == want, (l["device"], sorted(c))
    for k, s in c.items():
        assert s["n"] == 2 and 0 < s["min_s"] <= s["median_s"] <= s["max_s"], (k, s)
        assert abs(s["payload_mb_s"] * s["median_s"] * 1e6 - l["payload_bytes"]) < 1e3, (k, s)
        r = s["median_s"] / c["reference"]["median_s"]
        assert abs(s["ratio_to_reference"] - r) < 1e-9, (k, s)
    assert c["prefetch_wait"]["median_s"] >= c["lazy_prefetch"]["median_s"], c
    f = l["files"]
    assert f["zstd"]["codec"] == "zstd" and f["lz4"]["codec"] == "lz4", f
    assert f["zstd"]["file_size"] < f["plain"]["file_size"], f
    assert f["plain"]["file_size"] % 512 == 0, f
m = d["machine"]
assert set(m) == {"start", "end"}, m
for kv in m.values():
    assert kv["autogroup"] in ("0", "1", "absent") and kv["page_reporting"] in ("on", "off", "absent"), kv
    us = [float(x) for x in kv["first_touch_us"].split(",")]
    assert len(us) == 3 and all(0 < x < 1e4 for x in us), kv
PY
echo "bench-smoke: ok ($((devs + 2)) devices)"
