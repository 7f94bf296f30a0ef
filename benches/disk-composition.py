#!/usr/bin/env python3
"""What the disk holds while a peers child runs: starts
`PEERS_BIN --child WORKLOAD ENGINE DIR THREADS` in a fresh DIR, lists every
file's allocated bytes (st_blocks) every 20 ms, and prints the moments
with the most bytes allocated (after the first second), file by file,
with the child's own figures.

    python3 benches/disk-composition.py target/release/deps/peers-HASH \\
        [--workload churn] [--engine journalstore] [--threads 4] [--secs 4]

Python 3, standard library only.
"""
import argparse
import os
import statistics
import subprocess
import tempfile
import time


def snapshot(d):
    files = []
    for root, _, names in os.walk(d):
        for name in names:
            path = os.path.join(root, name)
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            files.append((os.path.relpath(path, d), st.st_blocks * 512, st.st_size))
    return files


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("peers_bin")
    ap.add_argument("--workload", default="churn")
    ap.add_argument("--engine", default="journalstore")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--secs", type=int, default=4)
    ap.add_argument("--top", type=int, default=3)
    a = ap.parse_args()
    mib = 2**20
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, PEERS_SECS=str(a.secs))
        child = subprocess.Popen(
            [a.peers_bin, "--child", a.workload, a.engine, d, str(a.threads)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        t0 = time.time()
        samples = []
        while child.poll() is None:
            samples.append((time.time() - t0, snapshot(d)))
            time.sleep(0.02)
        out = child.stdout.read()
    totals = [(sum(b for _, b, _ in s), t, s) for t, s in samples if t > 1.0]
    if not totals:
        raise SystemExit("the child ended within a second: " + out)
    for total, t, files in sorted(totals, reverse=True)[:a.top]:
        print(f"t={t:.2f} s: {total / mib:.1f} MiB allocated")
        for name, blocks, size in sorted(files):
            if blocks >= 64 << 10:
                print(f"    {name:32s} {blocks / mib:7.2f} MiB allocated, size {size / mib:7.2f} MiB")
    print(f"median over {len(totals)} samples: "
          f"{statistics.median(x[0] for x in totals) / mib:.1f} MiB allocated")
    print(out, end="")


if __name__ == "__main__":
    main()
