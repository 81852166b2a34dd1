#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Regenerates test/fuzz/corpus/image/ from rdmig-mkimage output and the
test fixtures.  Input format: see test/fuzz/fuzz_image.c.  Usage:
    test/fuzz/gen_image_corpus.py BUILD/test/rdmig-mkimage test/fuzz/corpus/image
"""
import os
import shutil
import struct
import subprocess
import sys
import tempfile

INVENTORY, PSTREE, MM, PAGEMAP, BOTH = 0, 1, 2, 3, 4
V1 = 8


def strip_common(data):
    """Version 1 framing: the same file without the common magic."""
    return data[4:]


def main():
    mkimage, out = sys.argv[1], sys.argv[2]
    here = os.path.dirname(os.path.abspath(__file__))
    fixtures = os.path.join(here, '..', 'fixtures')
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    corpus = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs = {
            'mk42': ['--size', '256K', '--vmas', '3', '--zero-frac', '0.3', '--guard'],
            'mk317': ['--size', '128K', '--vmas', '2', '--encoding', '3.17', '--holes'],
            'lazy': ['--size', '64K', '--vmas', '2', '--lazy-only', '--tasks', '3',
                     '--zombies', '1', '--pid', '77'],
        }
        dirs = {}
        for name, args in runs.items():
            d = os.path.join(tmp, name)
            subprocess.run([mkimage, '-D', d] + args, check=True, stdout=subprocess.DEVNULL)
            dirs[name] = (d, 4242 if name != 'lazy' else 77)
        for name in ('criu-3.17', 'criu-4.2'):
            dirs[name] = (os.path.join(fixtures, name), 100)
        for name, (d, pid) in dirs.items():
            rd = lambda f: open(os.path.join(d, f), 'rb').read()
            mm, pm = rd('mm-%d.img' % pid), rd('pagemap-%d.img' % pid)
            corpus['mm-' + name] = bytes([MM]) + mm
            corpus['pagemap-' + name] = bytes([PAGEMAP]) + pm
            corpus['both-' + name] = bytes([BOTH]) + struct.pack('<I', len(mm)) + mm + pm
            corpus['pstree-' + name] = bytes([PSTREE]) + rd('pstree.img')
        d = dirs['mk317'][0]
        corpus['inventory'] = bytes([INVENTORY]) + open(os.path.join(d, 'inventory.img'), 'rb').read()
        mm = strip_common(open(os.path.join(d, 'mm-4242.img'), 'rb').read())
        pm = strip_common(open(os.path.join(d, 'pagemap-4242.img'), 'rb').read())
        corpus['both-v1'] = bytes([BOTH | V1]) + struct.pack('<I', len(mm)) + mm + pm
    for name, data in corpus.items():
        with open(os.path.join(out, name), 'wb') as f:
            f.write(data)


if __name__ == '__main__':
    main()
