// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Runs every file of the corpus directories given as arguments through a
 * libFuzzer entry point once, without libFuzzer, and reports TAP: so each
 * corpus is replayed in every build (and under ASan/UBSan in sanitizer
 * builds), not only in -Dfuzz=true builds.  A crash or abort fails the test.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int corpus_read(const char *path, uint8_t **data, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	struct stat st;
	int ret = 0;

	if (!f)
		return -errno;
	if (fstat(fileno(f), &st) < 0) {
		ret = -errno;
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		ret = -ENOMEM;
		goto out;
	}
	*len = fread(buf, 1, (size_t)st.st_size, f);
	if (ferror(f)) {
		ret = -EIO;
		goto out;
	}
	*data = buf;
	buf = NULL;
out:
	free(buf);
	fclose(f);
	return ret;
}

static int corpus_name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
	char **names = NULL;
	size_t nr = 0, cap = 0, n = 0;
	int failed = 0;

	for (int i = 1; i < argc; i++) {
		DIR *d = opendir(argv[i]);
		struct dirent *de;

		if (!d) {
			fprintf(stderr, "%s: opendir: %s\n", argv[i], strerror(errno));
			return 1;
		}
		while ((de = readdir(d))) {
			char path[PATH_MAX];

			if (de->d_name[0] == '.')
				continue;
			if (snprintf(path, sizeof(path), "%s/%s", argv[i], de->d_name) >=
			    (int)sizeof(path))
				continue;
			if (nr == cap) {
				char **nn =
				    realloc(names, (cap = cap ? cap * 2 : 64) * sizeof(*nn));

				if (!nn)
					return 1;
				names = nn;
			}
			names[nr] = strdup(path);
			if (!names[nr])
				return 1;
			nr++;
		}
		closedir(d);
	}
	/* A fixed order keeps TAP numbers stable between runs. */
	if (nr)
		qsort(names, nr, sizeof(*names), corpus_name_cmp);
	printf("1..%zu\n", nr);
	for (size_t i = 0; i < nr; i++) {
		uint8_t *data = NULL;
		size_t len = 0;
		int ret = corpus_read(names[i], &data, &len);

		n++;
		if (ret < 0) {
			printf("not ok %zu - %s: %s\n", n, names[i], strerror(-ret));
			failed = 1;
		} else {
			LLVMFuzzerTestOneInput(data, len);
			printf("ok %zu - %s (%zu bytes)\n", n, names[i], len);
		}
		fflush(stdout);
		free(data);
		free(names[i]);
	}
	free(names);
	return failed;
}
