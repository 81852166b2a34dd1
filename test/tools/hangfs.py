#!/usr/bin/python3
# hangfs: a FUSE filesystem holding one file, FILE (default "secret";
# root's, mode 0600, 32 bytes; "DIR/NAME" puts it in a directory DIR, root's,
# 0755), whose read does not return until the file RELEASE exists: a secret
# file (host-net-callers) or a runc state.json (host-net-container) on a
# hung network or FUSE mount.
#
#   hangfs.py MOUNTPOINT RELEASE [FILE]
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
    def __init__(self, release, file):
        self.release = release
        self.file = "/" + file
        self.dir = os.path.dirname(self.file)

    def getattr(self, path, fh=None):
        if path in ("/", self.dir):
            return dict(st_mode=stat.S_IFDIR | 0o755, st_nlink=2, st_uid=0, st_gid=0)
        if path == self.file:
            return dict(st_mode=stat.S_IFREG | 0o600, st_nlink=1, st_size=SIZE, st_uid=0, st_gid=0)
        raise OSError(errno.ENOENT, "")

    def readdir(self, path, fh):
        inside = self.file if path == self.dir else self.dir if path == "/" else ""
        return [".", ".."] + ([os.path.basename(inside)] if inside else [])

    def read(self, path, size, offset, fh):
        # The hung server: nothing comes back until the test says so.
        print("read of %s waits for %s" % (path, self.release), flush=True)
        while not os.path.exists(self.release):
            time.sleep(0.05)
        data = b"h" * SIZE
        return data[offset:offset + size]


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: hangfs.py MOUNTPOINT RELEASE [FILE]")
    FUSE(HangFS(sys.argv[2], sys.argv[3] if len(sys.argv) == 4 else "secret"), sys.argv[1],
         foreground=True, direct_io=True)
