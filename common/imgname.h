/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * imgname: the names of the files CRIU writes into an images directory.
 *
 * A peer names the files it sends; the destination creates them.  Only
 * names CRIU itself writes are accepted, so a peer cannot drop a crontab,
 * an authorized_keys or a dotfile into the directory, whatever it is:
 * the fixed names of CRIU's image set ("inventory.img", "pstree.img"),
 * "<prefix>-<decimal>.img" ("pages-1.img", "core-42.img"),
 * "<prefix>-<hex>.img" ("ghost-file-1a.img", "tcp-stream-3f.img"),
 * "tmpfs-<decimal>.tar.gz.img", "tmpfs-dev-<decimal>.tar.gz.img" and
 * CRIU's service files "stats-dump", "stats-restore", "irmap-cache"; and
 * runc's "descriptors.json" (the container's stdio descriptors, which
 * "runc restore" needs beside the images).
 * Numbers are written as CRIU's printf writes them: no sign, no leading
 * zero, at most 20 digits (16 in hex).  The table follows CRIU's
 * imgset_template (criu/image-desc.c) of CRIU 3.17 to 4.2; plugins'
 * images (amdgpu-*, cuda) are not on it.
 */
#ifndef RDMIG_IMGNAME_H
#define RDMIG_IMGNAME_H

#include <stdbool.h>

/* True when name is exactly one of the names above. */
bool imgname_allowed(const char *name);

#endif
