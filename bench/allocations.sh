#!/usr/bin/env bash
# Allocations per request: how many times the gateway calls jemalloc's allocation entry points
# for each request it serves under keep-alive load. Counted exactly, by uprobes on
# `_rjem_malloc`, `_rjem_mallocx`, `_rjem_calloc`, `_rjem_realloc`, `_rjem_rallocx` and on
# `sekisho_protocol::ids::new_request_id` (called once per request), in the same one-second
# intervals; the first and last busy intervals are left out. Uprobes slow the gateway down
# many times, so the load's own figures mean nothing here; the ratio does not depend on speed.
#
# Needs root (tracefs), perf (Debian: linux-perf), binutils, and a release build:
#   cargo build --release -p sekisho -p sekisho-bench
#   bench/allocations.sh [path/to/sekisho]        # default: target/release/sekisho
# CONNS (32) and DUR (6 s) set the load.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(readlink -f "${1:-target/release/sekisho}")
BENCH=$(readlink -f "${CARGO_TARGET_DIR:-target}/release/sekisho-bench")
export PATH="$PATH:/usr/sbin"
T=/sys/kernel/tracing
[ -w "$T/uprobe_events" ] || { echo "needs root and tracefs at $T"; exit 2; }
work=$(mktemp -d)
cleanup() { echo "-:sk/malloc -:sk/mallocx -:sk/calloc -:sk/realloc -:sk/rallocx -:sk/rid" | tr ' ' '\n' | while read -r e; do echo "$e" >> "$T/uprobe_events" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
# A symbol's file offset: its address less its executable segment's address, plus the
# segment's offset in the file.
read -r seg_addr seg_off < <(readelf -lW "$BIN" | awk '$1=="LOAD" && $8=="E" && !f {print $3, $2; f=1}')
for pair in malloc:_rjem_malloc mallocx:_rjem_mallocx calloc:_rjem_calloc realloc:_rjem_realloc rallocx:_rjem_rallocx rid:new_request_id; do
  name=${pair%%:*}; sym=${pair#*:}
  if [ "$name" = rid ]; then
    addr=$(nm "$BIN" | awk '/sekisho_protocol.*new_request_id/ && !f {print $1; f=1}')
  else
    addr=$(nm "$BIN" | awk -v s="$sym" '$3==s && !f {print $1; f=1}')
  fi
  [ -n "$addr" ] || { echo "$sym not found in $BIN"; exit 2; }
  printf 'p:sk/%s %s:0x%x\n' "$name" "$BIN" $((0x$addr - seg_addr + seg_off)) >> "$T/uprobe_events"
done
"$BENCH" --sekisho "$BIN" --duration "${DUR:-6}" --warmup 2 --rounds 1 --store sqlite \
  --connections "${CONNS:-32}" --mode keep-alive --idle-connections 0 --fdatasync-secs 0 \
  --no-bare-stack > "$work/bench.log" 2>&1 &
load=$!
perf stat -a -x, -I 1000 -o "$work/counts.csv" \
  -e sk:malloc,sk:mallocx,sk:calloc,sk:realloc,sk:rallocx,sk:rid \
  -- sh -c "while kill -0 $load 2>/dev/null; do sleep 0.5; done"
wait "$load" || { cat "$work/bench.log"; exit 1; }
python3 - "$work/counts.csv" <<'PY'
import collections, sys
by_time = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    f = line.strip().split(',')
    if line.startswith('#') or len(f) < 4 or not f[1].isdigit():
        continue
    by_time[f[0]][f[3].split(':')[-1]] = int(f[1])
busy = [c for _, c in sorted(by_time.items(), key=lambda kv: float(kv[0])) if c.get('rid', 0) > 100]
busy = busy[1:-1] if len(busy) > 2 else busy
total = collections.Counter()
for c in busy:
    total.update(c)
n = total['rid']
if n == 0:
    sys.exit("no requests were counted")
allocs = total['malloc'] + total['mallocx'] + total['calloc']
print(f"{n} requests in {len(busy)} one-second intervals")
print(f"allocations per request: {allocs / n:.1f} (malloc {total['malloc'] / n:.1f}, mallocx {total['mallocx'] / n:.1f}, calloc {total['calloc'] / n:.1f}); reallocations {(total['realloc'] + total['rallocx']) / n:.1f}")
PY
