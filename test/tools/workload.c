// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * rdmig-workload: a real process for CRIU migrations, whose memory keeps
 * changing and can be checked at any time.
 *
 * It maps --size MiB of anonymous private memory and fills every page with
 * a pattern derived from the page's address and a per-page generation.
 * --threads threads then loop forever over their share of the pages: each
 * page is verified against its generation, the generation is bumped and
 * the page rewritten.  So the memory changes all the time, and a wrong
 * page is caught by the next pass over it.
 *
 * On SIGUSR1, or when the --check-file path exists (it is removed then),
 * the main thread stops the workers (each holds its lock only while it
 * works on one page), verifies ALL pages (and, from the second check on,
 * that a never-written 1 MiB mapping reads as zeros: left unread until
 * then, a migration after the first check has never-dumped pages to fault
 * in), and writes one line to
 * --report FILE, reopened by path each time (stdout need not survive a
 * CRIU restore):
 *   workload: OK verified N MiB, generation G
 *   workload: CORRUPT at ADDR page generation X word W: got V want E
 * G counts the pages rewritten since start.  With --exit-after-check it
 * then exits 0 (OK) or 1 (CORRUPT); else the workers resume.
 *
 * Only libc and pthread; the pattern is self-contained.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PG    4096u
#define WORDS (PG / sizeof(uint64_t))
/* Mapped but never written: after a restore, reads must still see zeros. */
#define ZERO_MIB 1

struct worker {
	pthread_t tid;
	pthread_mutex_t lock; /* held while one page is checked or rewritten */
	size_t first, count;  /* pages */
};

static struct {
	size_t mib;
	unsigned int threads;
	char report[PATH_MAX];
	char check_file[PATH_MAX];
	char pid_file[PATH_MAX];
	bool exit_after_check;
	unsigned int delay_us; /* per page, to slow the writers down */
} opt = {.mib = 64, .threads = 2};

static uint8_t *mem;
static const uint64_t *zeros; /* ZERO_MIB never written: must read as zero */
static uint32_t *gens;	      /* per-page generation */
static size_t npages;
static struct worker *workers;
static atomic_uint_fast64_t rewritten;
static atomic_int corrupt;    /* a worker found a bad page */
static char corrupt_msg[256]; /* its description */
static volatile sig_atomic_t check_req;
static unsigned int checks_done;

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static uint64_t word_at(uint64_t addr, uint32_t gen)
{
	return mix(addr ^ ((uint64_t)gen << 44) ^ 0x776f726b6c6f6164ull);
}

static void fill_page(size_t i)
{
	uint64_t *w = (uint64_t *)(mem + i * PG);
	for (size_t k = 0; k < WORDS; k++)
		w[k] = word_at((uint64_t)(uintptr_t)&w[k], gens[i]);
}

/* Returns 0, or -EBADMSG with a description of the first bad word in msg. */
static int check_page(size_t i, char *msg, size_t len)
{
	const uint64_t *w = (const uint64_t *)(mem + i * PG);
	for (size_t k = 0; k < WORDS; k++) {
		uint64_t want = word_at((uint64_t)(uintptr_t)&w[k], gens[i]);
		if (w[k] != want) {
			snprintf(msg, len,
				 "CORRUPT at %p page generation %" PRIu32 " word %zu: got %#" PRIx64
				 " want %#" PRIx64,
				 (const void *)&w[k], gens[i], k, w[k], want);
			return -EBADMSG;
		}
	}
	return 0;
}

static void *worker_main(void *arg)
{
	struct worker *wk = arg;
	char msg[sizeof(corrupt_msg)];

	for (;;) {
		for (size_t i = wk->first; i < wk->first + wk->count; i++) {
			pthread_mutex_lock(&wk->lock);
			if (!atomic_load(&corrupt) && check_page(i, msg, sizeof(msg)) < 0) {
				memcpy(corrupt_msg, msg, sizeof(msg));
				atomic_store(&corrupt, 1);
			}
			gens[i]++;
			fill_page(i);
			pthread_mutex_unlock(&wk->lock);
			atomic_fetch_add(&rewritten, 1);
			if (opt.delay_us)
				usleep(opt.delay_us);
		}
	}
	return NULL;
}

static void on_usr1(int sig)
{
	(void)sig;
	check_req = 1;
}

static int write_line(const char *path, const char *line)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	size_t len = strlen(line), off = 0;
	while (off < len) {
		ssize_t n = write(fd, line + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			close(fd);
			return -EIO;
		}
		off += (size_t)n;
	}
	return close(fd) ? -errno : 0;
}

/* Stops the workers, verifies every page, reports; returns 0 OK, 1 corrupt. */
static int check_all(void)
{
	char msg[sizeof(corrupt_msg)], line[512];
	int bad = 0;

	for (unsigned int t = 0; t < opt.threads; t++)
		pthread_mutex_lock(&workers[t].lock);
	if (atomic_load(&corrupt)) {
		memcpy(msg, corrupt_msg, sizeof(msg));
		bad = 1;
	}
	/*
	 * Not on the first check: left unread, those pages are never dumped.
	 * First, so that a restored process faults them in while pages move.
	 */
	for (size_t k = 0; !bad && checks_done && k < ZERO_MIB * (1u << 20) / sizeof(*zeros); k++)
		if (zeros[k]) {
			snprintf(msg, sizeof(msg),
				 "CORRUPT at %p never-written page: got %#" PRIx64,
				 (const void *)&zeros[k], zeros[k]);
			bad = 1;
		}
	for (size_t i = 0; !bad && i < npages; i++)
		if (check_page(i, msg, sizeof(msg)) < 0)
			bad = 1;
	checks_done++;
	uint64_t g = atomic_load(&rewritten);
	if (bad)
		snprintf(line, sizeof(line), "workload: %s\n", msg);
	else
		snprintf(line, sizeof(line),
			 "workload: OK verified %zu MiB, generation %" PRIu64 "\n", opt.mib, g);
	if (!opt.exit_after_check)
		for (unsigned int t = 0; t < opt.threads; t++)
			pthread_mutex_unlock(&workers[t].lock);
	int ret = write_line(opt.report, line);
	if (ret < 0)
		fprintf(stderr, "workload: cannot write %s: %s\n", opt.report, strerror(-ret));
	return bad;
}

static int abs_path(const char *arg, char *out)
{
	if (arg[0] == '/') {
		if (strlen(arg) >= PATH_MAX)
			return -ENAMETOOLONG;
		strcpy(out, arg);
		return 0;
	}
	char cwd[PATH_MAX];
	if (!getcwd(cwd, sizeof(cwd)))
		return -errno;
	if ((size_t)snprintf(out, PATH_MAX, "%s/%s", cwd, arg) >= PATH_MAX)
		return -ENAMETOOLONG;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: rdmig-workload --report FILE [OPTIONS]\n"
		   "A process whose memory keeps changing and can be verified (for CRIU tests).\n\n"
		   "  -s, --size MIB         anonymous memory to use (default 64)\n"
		   "  -T, --threads N        threads rewriting and verifying it (default 2)\n"
		   "  -r, --report FILE      where each verdict line goes (reopened each time)\n"
		   "  -c, --check-file FILE  verify when FILE appears (removed then); SIGUSR1 too\n"
		   "  -p, --pid-file FILE    write getpid() there once the memory is filled\n"
		   "      --delay-us US      pause after each page rewrite (default 0)\n"
		   "  -x, --exit-after-check exit after the first check: 0 OK, 1 corrupt\n"
		   "  -h, --help             show this help\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"size", required_argument, NULL, 's'},
	    {"threads", required_argument, NULL, 'T'},
	    {"report", required_argument, NULL, 'r'},
	    {"check-file", required_argument, NULL, 'c'},
	    {"pid-file", required_argument, NULL, 'p'},
	    {"delay-us", required_argument, NULL, 'u'},
	    {"exit-after-check", no_argument, NULL, 'x'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *report = NULL, *check = NULL, *pidf = NULL;
	char *end;
	unsigned long v;
	int c;

	while ((c = getopt_long(argc, argv, "s:T:r:c:p:xh", lo, NULL)) != -1) {
		switch (c) {
		case 's':
		case 'T':
		case 'u':
			errno = 0;
			v = strtoul(optarg, &end, 10);
			if (errno || *end || v == 0 || v > (c == 's' ? 1u << 20 : 1024)) {
				if (!(c == 'u' && v == 0 && !*end)) {
					fprintf(stderr, "workload: bad value '%s'\n", optarg);
					return 2;
				}
			}
			if (c == 's')
				opt.mib = v;
			else if (c == 'T')
				opt.threads = (unsigned int)v;
			else
				opt.delay_us = (unsigned int)v;
			break;
		case 'r':
			report = optarg;
			break;
		case 'c':
			check = optarg;
			break;
		case 'p':
			pidf = optarg;
			break;
		case 'x':
			opt.exit_after_check = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!report || optind != argc) {
		usage(stderr);
		return 2;
	}
	if (abs_path(report, opt.report) < 0 || (check && abs_path(check, opt.check_file) < 0) ||
	    (pidf && abs_path(pidf, opt.pid_file) < 0)) {
		fprintf(stderr, "workload: path too long\n");
		return 2;
	}

	npages = opt.mib * (1u << 20) / PG;
	if (opt.threads > npages)
		opt.threads = (unsigned int)npages;
	mem = mmap(NULL, npages * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	gens = calloc(npages, sizeof(*gens));
	/*
	 * Its own VMA, no transparent huge page (one would make some of it
	 * present, and dumped): none of it is in the dump.
	 */
	zeros =
	    mmap(NULL, ZERO_MIB << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (zeros != MAP_FAILED)
		madvise((void *)zeros, ZERO_MIB << 20, MADV_NOHUGEPAGE);
	workers = calloc(opt.threads, sizeof(*workers));
	if (mem == MAP_FAILED || zeros == MAP_FAILED || !gens || !workers) {
		fprintf(stderr, "workload: out of memory\n");
		return 3;
	}
	for (size_t i = 0; i < npages; i++)
		fill_page(i);

	struct sigaction sa = {.sa_handler = on_usr1};
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL) < 0) {
		perror("workload: sigaction");
		return 3;
	}
	size_t share = npages / opt.threads;
	for (unsigned int t = 0; t < opt.threads; t++) {
		struct worker *wk = &workers[t];
		wk->first = t * share;
		wk->count = t + 1 == opt.threads ? npages - wk->first : share;
		pthread_mutex_init(&wk->lock, NULL);
		if (pthread_create(&wk->tid, NULL, worker_main, wk)) {
			fprintf(stderr, "workload: cannot start threads\n");
			return 3;
		}
	}
	if (pidf) {
		char line[32];
		snprintf(line, sizeof(line), "%d\n", (int)getpid());
		write_line(opt.pid_file, line);
	}
	fprintf(stderr, "workload: pid %d, %zu MiB, %u threads, report %s\n", (int)getpid(),
		opt.mib, opt.threads, opt.report);

	for (;;) {
		struct timespec ts = {0, 50 * 1000 * 1000};
		nanosleep(&ts, NULL);
		bool go = check_req;
		if (!go && check && access(opt.check_file, F_OK) == 0) {
			unlink(opt.check_file);
			go = true;
		}
		if (!go)
			continue;
		check_req = 0;
		int bad = check_all();
		if (opt.exit_after_check)
			_exit(bad);
	}
}
