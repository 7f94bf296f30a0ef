#!/bin/bash
# Bytes a peers child sends to the disk, next to its own figures: runs
# `PEERS_BIN --child WORKLOAD ENGINE DIR THREADS` under `perf stat` in a
# fresh DIR and prints ops/s, the CPUs it used, the device's written MiB/s
# (from /sys/block/DEVICE/stat, over the whole child) and fdatasyncs/s.
#
#   benches/device-writes.sh target/release/deps/peers-HASH journalstore [durable-64k 4]
#
# Env: DEVICE (default vda), PEERS_SECS (default 3), TMPDIR. The device is
# the whole disk's counter: run it with nothing else writing.
set -euo pipefail
bin=$1 engine=$2 workload=${3:-durable-64k} threads=${4:-4}
dev=${DEVICE:-vda}
dir=$(mktemp -d "${TMPDIR:-/tmp}/device-writes.XXXX")
stat=$(mktemp)
trap 'rm -rf "$dir" "$stat"' EXIT
sectors() { awk '{print $7}' "/sys/block/$dev/stat"; }
s0=$(sectors); t0=$(date +%s.%N)
out=$(PEERS_SECS=${PEERS_SECS:-3} perf stat -x, -e task-clock,syscalls:sys_enter_fdatasync \
    -o "$stat" "$bin" --child "$workload" "$engine" "$dir" "$threads" 2>&1)
t1=$(date +%s.%N); s1=$(sectors)
ops=$(echo "$out" | awk '$1=="ops_per_s"||$1=="batches_per_s"{printf "%.0f", $2}')
cpu_ms=$(awk -F, '/task-clock/{print $1}' "$stat")
syncs=$(awk -F, '/fdatasync/{print $1}' "$stat")
python3 - "$engine" "$ops" "$cpu_ms" "$syncs" "$s0" "$s1" "$t0" "$t1" <<'PY'
import sys
engine, ops, cpu_ms, syncs, s0, s1, t0, t1 = sys.argv[1:]
el = float(t1) - float(t0)
mib = (int(s1) - int(s0)) * 512 / 2**20 / el
print(f"{engine}: {ops} ops/s, {float(cpu_ms) / 1e3 / el:.2f} CPUs, "
      f"device {mib:.0f} MiB/s written, {float(syncs) / el:.0f} fdatasync/s ({el:.1f} s)")
PY
