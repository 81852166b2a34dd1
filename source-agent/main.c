// SPDX-License-Identifier: GPL-2.0-or-later
/* rdmig-source: serves CRIU images for one-sided RDMA READ. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "rdmig-config.h"

static void usage(FILE *f)
{
	fprintf(f, "Usage: rdmig-source [OPTIONS]\n"
		   "Serve a dumped process's memory to rdmig-dest over RDMA or TCP.\n\n"
		   "  -v, --verbose      more logging (repeat for debug)\n"
		   "  -h, --help         show this help and exit\n"
		   "  -V, --version      show the version and exit\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	enum log_level level = LOG_LVL_INFO;
	int c;

	log_init(argv[0], level);
	while ((c = getopt_long(argc, argv, "vhV", opts, NULL)) != -1) {
		switch (c) {
		case 'v':
			if (level < LOG_LVL_DEBUG)
				level++;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("rdmig-source %s\n", RDMIG_VERSION);
			return 0;
		default:
			fprintf(stderr, "rdmig-source: try --help\n");
			return 2;
		}
	}
	log_set_level(level);
	return 0;
}
