#!/usr/bin/env python3
"""What a device charges for a block's first write, without any engine.

One thread writes groups of GROUP_KIB KiB with pwrite + fdatasync for
SECS seconds into a file in DIR prepared one of four ways:

  rewritten   1 GiB zeroed and synced before the clock starts (as
              raw-group's file): every write rewrites written blocks
  grows       a new empty file that every write extends
  sparse      a new 1 GiB file set to its length, no blocks
  fallocated  a new 1 GiB file reserved with fallocate (unwritten extents)
  over-freed  a new file that grows after a 1 GiB file was written,
              synced and deleted (blocks the file system may hand out
              again; with `discard` it gives them back to the device)

and, with --zeros-ahead MIB, a new file where zeros are written MIB ahead
of the data (in MIB-sized writes, synced by the next group's fdatasync),
printing the mean time of the iterations that wrote zeros. The data
written is random, or one repeated byte with --constant (as the
criterion benches' entries are).

    python3 benches/fresh-blocks.py [DIR] [--group-kib 256] [--secs 3] [--constant]
"""
import argparse
import os
import time

SIZE = 1 << 30


def prepare(path, mode):
    if mode == "over-freed":
        os.close(prepare(path, "rewritten"))
        os.unlink(path)
        os.sync()
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    if mode == "rewritten":
        zeros = bytes(1 << 20)
        for i in range(SIZE >> 20):
            os.pwrite(fd, zeros, i << 20)
    elif mode == "sparse":
        os.ftruncate(fd, SIZE)
    elif mode == "fallocated":
        os.posix_fallocate(fd, 0, SIZE)
    os.fsync(fd)
    return fd


def run(path, mode, group, secs, zeros_ahead, constant):
    fd = prepare(path, "grows" if zeros_ahead else mode)
    data = bytes([0xA5]) * group if constant else os.urandom(group)
    zeros = bytes(zeros_ahead)
    offset = zeroed = 0
    zero_times = []
    start = time.monotonic()
    while time.monotonic() - start < secs and offset + group <= SIZE:
        t0 = time.monotonic()
        wrote_zeros = False
        if zeros_ahead and offset + group > zeroed - zeros_ahead // 2:
            os.pwrite(fd, zeros, zeroed)
            zeroed += zeros_ahead
            wrote_zeros = True
        os.pwrite(fd, data, offset)
        os.fdatasync(fd)
        offset += group
        if wrote_zeros:
            zero_times.append(time.monotonic() - t0)
    elapsed = time.monotonic() - start
    os.close(fd)
    os.unlink(path)
    line = "%.0f MiB/s, %.0f syncs/s" % (offset / elapsed / 2**20, offset / group / elapsed)
    if zero_times:
        line += ", iterations writing zeros: %d, mean %.1f ms" % (
            len(zero_times),
            1e3 * sum(zero_times) / len(zero_times),
        )
    return line


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("dir", nargs="?", default="/tmp")
    p.add_argument("--group-kib", type=int, default=256)
    p.add_argument("--secs", type=float, default=3)
    p.add_argument("--zeros-ahead", type=int, default=0, metavar="MIB")
    p.add_argument("--constant", action="store_true")
    a = p.parse_args()
    path = os.path.join(a.dir, "fresh-blocks.tmp")
    group = a.group_kib << 10
    if a.zeros_ahead:
        print("zeros %d MiB ahead: %s" % (a.zeros_ahead, run(path, None, group, a.secs, a.zeros_ahead << 20, a.constant)))
        return
    for mode in ("rewritten", "grows", "sparse", "fallocated", "over-freed"):
        print("%-10s %s" % (mode, run(path, mode, group, a.secs, 0, a.constant)))


if __name__ == "__main__":
    main()
