#!/usr/bin/python3
# hangfs: a FUSE filesystem holding one file, "secret" (root's, mode 0600,
# 32 bytes), whose read does not return until the file RELEASE exists: a
# secret file on a hung network or FUSE mount, for host-net-callers.
#
#   hangfs.py MOUNTPOINT RELEASE
#
# Runs in the foreground until unmounted (or SIGTERM).  Debian's
# python3-fusepy, run by the system's /usr/bin/python3.
import errno
import os
import stat
import sys
import time

from fusepy import FUSE, Operations

SIZE = 32


class HangFS(Operations):
    def __init__(self, release):
        self.release = release

    def getattr(self, path, fh=None):
        if path == "/":
            return dict(st_mode=stat.S_IFDIR | 0o755, st_nlink=2, st_uid=0, st_gid=0)
        if path == "/secret":
            return dict(st_mode=stat.S_IFREG | 0o600, st_nlink=1, st_size=SIZE, st_uid=0, st_gid=0)
        raise OSError(errno.ENOENT, "")

    def readdir(self, path, fh):
        return [".", "..", "secret"]

    def read(self, path, size, offset, fh):
        # The hung server: nothing comes back until the test says so.
        print("read of %s waits for %s" % (path, self.release), flush=True)
        while not os.path.exists(self.release):
            time.sleep(0.05)
        data = b"h" * SIZE
        return data[offset:offset + size]


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: hangfs.py MOUNTPOINT RELEASE")
    FUSE(HangFS(sys.argv[2]), sys.argv[1], foreground=True, direct_io=True)
