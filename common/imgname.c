// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * imgname: the allow-list of CRIU image file names (see imgname.h).
 */
#include "imgname.h"

#include <string.h>

#include "util.h"

enum imgname_kind {
	IMGNAME_FIXED, /* "<name>.img" */
	IMGNAME_DEC,   /* "<name>-<decimal>.img" */
	IMGNAME_HEX,   /* "<name>-<hex>.img" */
	IMGNAME_TGZ,   /* "<name>-<decimal>.tar.gz.img" */
	IMGNAME_RAW,   /* "<name>", CRIU's service files */
};

struct imgname_rule {
	const char *name;
	enum imgname_kind kind;
};

/* CRIU's imgset_template, one row per entry (image-desc.c), by the shape of the name. */
static const struct imgname_rule imgname_rules[] = {
    {"inventory", IMGNAME_FIXED},
    {"reg-files", IMGNAME_FIXED},
    {"ext-files", IMGNAME_FIXED},
    {"ns-files", IMGNAME_FIXED},
    {"eventfd", IMGNAME_FIXED},
    {"eventpoll", IMGNAME_FIXED},
    {"eventpoll-tfd", IMGNAME_FIXED},
    {"signalfd", IMGNAME_FIXED},
    {"inotify", IMGNAME_FIXED},
    {"inotify-wd", IMGNAME_FIXED},
    {"fanotify", IMGNAME_FIXED},
    {"fanotify-mark", IMGNAME_FIXED},
    {"pipes", IMGNAME_FIXED},
    {"pipes-data", IMGNAME_FIXED},
    {"fifo", IMGNAME_FIXED},
    {"fifo-data", IMGNAME_FIXED},
    {"pstree", IMGNAME_FIXED},
    {"unixsk", IMGNAME_FIXED},
    {"inetsk", IMGNAME_FIXED},
    {"packetsk", IMGNAME_FIXED},
    {"netlinksk", IMGNAME_FIXED},
    {"sk-queues", IMGNAME_FIXED},
    {"remap-fpath", IMGNAME_FIXED},
    {"memfd", IMGNAME_FIXED},
    {"binfmt-misc", IMGNAME_FIXED},
    {"tty", IMGNAME_FIXED},
    {"tty-info", IMGNAME_FIXED},
    {"tty-data", IMGNAME_FIXED},
    {"filelocks", IMGNAME_FIXED},
    {"tunfile", IMGNAME_FIXED},
    {"cgroup", IMGNAME_FIXED},
    {"timerfd", IMGNAME_FIXED},
    {"cpuinfo", IMGNAME_FIXED},
    {"seccomp", IMGNAME_FIXED},
    {"files", IMGNAME_FIXED},
    {"bpfmap-file", IMGNAME_FIXED},
    {"bpfmap-data", IMGNAME_FIXED},
    {"apparmor", IMGNAME_FIXED},
    {"pidfd", IMGNAME_FIXED},
    {"fdinfo", IMGNAME_DEC},
    {"pagemap", IMGNAME_DEC},
    {"pagemap-shmem", IMGNAME_DEC},
    {"core", IMGNAME_DEC},
    {"ids", IMGNAME_DEC},
    {"mm", IMGNAME_DEC},
    {"vmas", IMGNAME_DEC},
    {"sigacts", IMGNAME_DEC},
    {"itimers", IMGNAME_DEC},
    {"posix-timers", IMGNAME_DEC},
    {"creds", IMGNAME_DEC},
    {"utsns", IMGNAME_DEC},
    {"ipcns-var", IMGNAME_DEC},
    {"ipcns-shm", IMGNAME_DEC},
    {"ipcns-msg", IMGNAME_DEC},
    {"ipcns-sem", IMGNAME_DEC},
    {"fs", IMGNAME_DEC},
    {"mountpoints", IMGNAME_DEC},
    {"netdev", IMGNAME_DEC},
    {"netns", IMGNAME_DEC},
    {"ifaddr", IMGNAME_DEC},
    {"route", IMGNAME_DEC},
    {"route6", IMGNAME_DEC},
    {"rule", IMGNAME_DEC},
    {"iptables", IMGNAME_DEC},
    {"ip6tables", IMGNAME_DEC},
    {"nftables", IMGNAME_DEC},
    {"autofs", IMGNAME_DEC},
    {"binfmt-misc", IMGNAME_DEC},
    {"rlimit", IMGNAME_DEC},
    {"pages", IMGNAME_DEC},
    {"pages-shmem", IMGNAME_DEC},
    {"signal-s", IMGNAME_DEC},
    {"signal-p", IMGNAME_DEC},
    {"userns", IMGNAME_DEC},
    {"netns-ct", IMGNAME_DEC},
    {"netns-exp", IMGNAME_DEC},
    {"timens", IMGNAME_DEC},
    {"pidns", IMGNAME_DEC},
    {"ghost-file", IMGNAME_HEX},
    {"tcp-stream", IMGNAME_HEX},
    {"tmpfs", IMGNAME_TGZ},
    {"tmpfs-dev", IMGNAME_TGZ},
    {"stats-dump", IMGNAME_RAW},
    {"stats-restore", IMGNAME_RAW},
    {"irmap-cache", IMGNAME_RAW},
    /* Not CRIU's: runc writes it at checkpoint and its restore reads it back. */
    {"descriptors.json", IMGNAME_RAW},
};

/* s starts with a number as printf writes it (%u or %x); returns its end or NULL. */
static const char *imgname_number(const char *s, bool hex)
{
	const char *p = s;

	while ((*p >= '0' && *p <= '9') || (hex && *p >= 'a' && *p <= 'f'))
		p++;
	if (p == s || p - s > (hex ? 16 : 20) || (s[0] == '0' && p - s > 1))
		return NULL;
	return p;
}

static bool imgname_match(const struct imgname_rule *r, const char *name)
{
	size_t n = strlen(r->name);
	const char *p;

	if (strncmp(name, r->name, n) != 0)
		return false;
	p = name + n;
	switch (r->kind) {
	case IMGNAME_RAW:
		return *p == '\0';
	case IMGNAME_FIXED:
		return strcmp(p, ".img") == 0;
	case IMGNAME_DEC:
	case IMGNAME_HEX:
	case IMGNAME_TGZ:
		if (*p++ != '-')
			return false;
		p = imgname_number(p, r->kind == IMGNAME_HEX);
		return p && strcmp(p, r->kind == IMGNAME_TGZ ? ".tar.gz.img" : ".img") == 0;
	}
	return false;
}

bool imgname_allowed(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(imgname_rules); i++)
		if (imgname_match(&imgname_rules[i], name))
			return true;
	return false;
}
