#!/bin/sh
# bench/capture-runs.sh — the measuring half of bench/capture, in plain POSIX sh so that it also
# runs inside the cgroup v2 guest (busybox). Prints one table row per scenario.
#
#   capture-runs.sh GUARD ALLOC RUNS [PYTHON]
#     GUARD   the guard binary        ALLOC  bench/alloc.c, compiled
#     RUNS    runs per scenario       PYTHON a python3 for the bytearray allocators ("" to skip)
#
# Each run: guard --memory CAP --warn off --evidence-dir TMP -- <allocator>; the manifest of the
# bundle named in guard's kill line gives `capture`, `timings.trigger_to_frozen_ms` and
# `timings.capture_ms`.
set -u
GUARD=$1 ALLOC=$2 RUNS=$3 PY=${4:-}
EV=${TMPDIR:-/tmp}/guard-bench-capture.$$
mkdir -p "$EV"
trap 'rm -rf "$EV"' EXIT

PYALLOC='
import os, sys, time
mb, rate, n = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
def go(mb, rate):
    keep, t0 = [], time.monotonic()
    for i in range(mb):
        b = bytearray(1 << 20)
        b[::4096] = b"\x01" * 256       # touch every page: bytearray(n) alone maps zero pages
        keep.append(b)
        if rate > 0:
            d = t0 + (i + 1) / rate - time.monotonic()
            if d > 0:
                time.sleep(d)
    while True:
        time.sleep(60)
if n <= 0:
    go(mb, rate)
for i in range(n):
    if os.fork() == 0:
        go(mb // n, rate / n)
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
'

median() { sort -n | awk '{v[NR]=$1} END {if (NR==0) print "-"; else if (NR%2) printf "%.2f\n", v[(NR+1)/2]; else printf "%.2f\n", (v[NR/2]+v[NR/2+1])/2}'; }

# scenario LABEL CAP MB RATE CHILDREN KIND(c|py)
scenario() {
  label=$1 cap=$2 mb=$3 rate=$4 kids=$5 kind=$6
  pre=0 total=0 killed=0
  : > "$EV/frozen"; : > "$EV/capture"
  i=0
  while [ $i -lt "$RUNS" ]; do
    i=$((i + 1))
    if [ "$kind" = py ]; then
      "$GUARD" --memory "$cap" --warn off --evidence-dir "$EV" -- "$PY" -c "$PYALLOC" "$mb" "$rate" "$kids" 2>"$EV/err" >/dev/null
    else
      "$GUARD" --memory "$cap" --warn off --evidence-dir "$EV" -- "$ALLOC" "$mb" "$rate" "$kids" 2>"$EV/err" >/dev/null
    fi
    rc=$?
    total=$((total + 1))
    [ $rc = 137 ] && killed=$((killed + 1))
    b=$(sed -n 's/.*; evidence: //p' "$EV/err" | tail -n 1)
    [ -n "$b" ] && [ -f "$b/manifest.json" ] || continue
    m="$b/manifest.json"
    grep -q '"capture": "pre-kill"' "$m" && pre=$((pre + 1))
    sed -n 's/.*"trigger_to_frozen_ms": \([0-9.]*\).*/\1/p' "$m" >> "$EV/frozen"
    sed -n 's/.*"capture_ms": \([0-9.]*\).*/\1/p' "$m" >> "$EV/capture"
    rm -rf "$b"
  done
  printf '%-40s %5s %9s/%-3s %9s %12s %12s\n' "$label" "$cap" "$pre" "$total" "$killed" \
    "$(median < "$EV/frozen")" "$(median < "$EV/capture")"
}

printf '%-40s %5s %13s %9s %12s %12s\n' "allocator" "cap" "pre-kill" "exit 137" "frozen ms" "capture ms"
printf '%-40s %5s %13s %9s %12s %12s\n' "" "" "" "" "(median)" "(median)"
for kind in c py; do
  if [ "$kind" = py ] && [ -z "$PY" ]; then
    echo "(Python allocators skipped: no python3 here)"
    continue
  fi
  name=C; [ "$kind" = py ] && name="Python bytearray"
  scenario "$name ~10 MB/s, 1 process" 32M 200 10 0 $kind
  scenario "$name ~10 MB/s, 4 children" 32M 200 10 4 $kind
  scenario "$name ~200 MB/s, 1 process" 256M 1024 200 0 $kind
  scenario "$name ~200 MB/s, 4 children" 256M 1024 200 4 $kind
  scenario "$name full speed, 1 process" 256M 1024 0 0 $kind
  scenario "$name full speed, 4 children" 256M 1024 0 4 $kind
done
scenario "C full speed, 1 GiB process" 1G 2048 0 0 c
