// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * rdmig-workload: a real process for CRIU migrations, whose memory keeps
 * changing and can be checked at any time.
 *
 * It maps --size MiB of anonymous private memory and fills every page with
 * a pattern derived from the page's original address and a per-page
 * generation.  --threads threads then loop forever over their share of the
 * pages: each page is verified against its generation, the generation is
 * bumped and the page rewritten.  So the memory changes all the time, and a
 * wrong page is caught by the next pass over it.
 *
 * On SIGUSR1, or when the --check-file path exists, the main thread reads
 * one request word from the file (removed then; empty means "check") and
 * stops the workers (each holds its lock only while it works on one page):
 *   check    verify ALL pages (and, from the second check on, that a
 *            never-written 1 MiB mapping reads as zeros: left unread until
 *            then, a migration after the first check has never-dumped
 *            pages to fault in); "exit" does the same, then exits 0 or 1
 *   fork     fork a child that verifies every page as it was at the fork
 *            (COW-shared or still missing) and reports through a pipe,
 *            while the parent's workers resume rewriting at once
 *   mremap   move an eighth of the region elsewhere (MREMAP_FIXED into a
 *            reserved spot, so it surely moves), verify it there and the
 *            rest; the workers go on using it at its new place
 *   madvise  MADV_DONTNEED a sixteenth (it must read back as zeros, then
 *            it is filled again), munmap another sixteenth (the workers
 *            skip it from then on), verify all that remains
 * Each is done once per process.  Then it writes its verdict to --report
 * FILE, reopened by path each time (stdout need not survive a CRIU
 * restore), for example:
 *   workload: OK verified N MiB, generation G
 *   workload: CORRUPT at offset OFF (ADDR) page generation X word W: got V want E
 *   workload: fork OK: child verified N MiB at the fork ..., generation G
 *   workload: mremap CORRUPT at offset OFF ...
 * G counts the pages rewritten since start; OFF is from the region's start
 * (original addresses, also for the moved part).  The variants also say
 * how many pages were not yet in memory when they began (mincore), which
 * shows whether pages were still moving.
 *
 * --time-faults: once a restore is noticed (a new boot id or process start
 * time in /proc, looked at only after a thread saw its monotonic or wall
 * clock jump, as across a freeze: the main thread looks every 10 ms, a
 * worker between two pages; CRIU cannot dump an open /proc/self/stat, so
 * the process never reads it where a dump may freeze it), whichever
 * thread touches a page first times that touch, until every page was
 * touched; the first verdict after that (a check touches every page) has a
 * line with min/p50/p90/p99/max over the touches of pages that mincore()
 * called missing just before, and --fault-samples FILE gets those samples
 * (ns, one a line).  The fork child does not time.
 *
 * Only libc and pthread; the pattern is self-contained.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PG    4096u
#define WORDS (PG / sizeof(uint64_t))
/* Mapped but never written: after a restore, reads must still see zeros. */
#define ZERO_MIB 1
/* How long the parent waits for the fork child's verdict. */
#define FORK_WAIT_MS (900 * 1000)
/*
 * Longer between two looks of a thread: it may have been frozen for a dump.
 * A dump and a restore take seconds; a loaded host stalls a thread for a
 * few hundred ms now and then, and each such look is a read of /proc.
 */
#define RESTORE_GAP_NS (1000 * 1000 * 1000ull)
/* A verdict: a worker's description and some words around it. */
#define MSG_LEN 384

/* The first-touch times of one thread. */
struct timing {
	uint64_t *ns; /* touches of pages that were missing */
	size_t n, pages, resident;
	uint64_t resident_max;
};

struct worker {
	pthread_t tid;
	pthread_mutex_t lock; /* held while one page is checked or rewritten */
	size_t first, count;  /* pages */
	struct timing tm;     /* its share's first touches after the restore */
};

static struct {
	size_t mib;
	unsigned int threads;
	char report[PATH_MAX];
	char check_file[PATH_MAX];
	char pid_file[PATH_MAX];
	char samples[PATH_MAX];
	bool exit_after_check;
	bool time_faults;
	bool mlock;
	bool sp_page_aligned;
	unsigned int delay_us; /* per page, to slow the writers down */
} opt = {.mib = 64, .threads = 2};

enum req { REQ_CHECK, REQ_EXIT, REQ_FORK, REQ_MREMAP, REQ_MADVISE };
static const char *const req_names[] = {"check", "exit", "fork", "mremap", "madvise"};

static uint8_t *mem;	      /* the pattern's base: pages keep their offset from it */
static const uint64_t *zeros; /* ZERO_MIB never written: must read as zero */
static uint32_t *gens;	      /* per-page generation */
static size_t npages;
/* Changed only while every worker lock is held. */
static size_t moved_first, moved_count; /* pages living at moved_at */
static uint8_t *moved_at;
static size_t gone_first, gone_count; /* unmapped pages */
static bool done_req[REQ_MADVISE + 1];
static struct worker *workers;
static atomic_uint_fast64_t rewritten;
static atomic_int corrupt;    /* a worker found a bad page */
static char corrupt_msg[256]; /* its description */
static volatile sig_atomic_t check_req;
static unsigned int checks_done;
static char identity[96]; /* boot id and start time: a restore changes it */
/*
 * Set once a restore is noticed, after tflag and the timing buffers exist.
 * tflag[i]: page i was touched since (or left out); guarded like page i.
 */
static atomic_bool armed;
/* A thread saw its clock jump since /proc was last looked at for a restore. */
static atomic_bool clock_jumped;

/* A thread's last look at the clocks, for watch_restore (ns; 0: none yet). */
struct clock_marks {
	uint64_t mono, wall;
};
static uint8_t *tflag;
static struct timing main_tm;
static bool timing_reported;

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Keyed on the original address, so a moved page keeps its pattern. */
static uint64_t word_at(size_t page, size_t k, uint32_t gen)
{
	uint64_t addr = (uint64_t)(uintptr_t)mem + page * PG + k * sizeof(uint64_t);
	return mix(addr ^ ((uint64_t)gen << 44) ^ 0x776f726b6c6f6164ull);
}

static uint8_t *page_ptr(size_t i)
{
	if (i - moved_first < moved_count)
		return moved_at + (i - moved_first) * PG;
	return mem + i * PG;
}

static bool page_gone(size_t i)
{
	return i - gone_first < gone_count;
}

static size_t live_pages(void)
{
	return npages - gone_count;
}

static void fill_page(size_t i)
{
	uint64_t *w = (uint64_t *)page_ptr(i);
	for (size_t k = 0; k < WORDS; k++)
		w[k] = word_at(i, k, gens[i]);
}

/* Returns 0, or -EBADMSG with a description of the first bad word in msg. */
static int check_page(size_t i, char *msg, size_t len)
{
	const uint64_t *w = (const uint64_t *)page_ptr(i);
	for (size_t k = 0; k < WORDS; k++) {
		uint64_t want = word_at(i, k, gens[i]);
		if (w[k] != want) {
			snprintf(msg, len,
				 "CORRUPT at offset %#zx (%p) page generation %" PRIu32
				 " word %zu: got %#" PRIx64 " want %#" PRIx64,
				 i * PG + k * sizeof(uint64_t), (const void *)&w[k], gens[i], k,
				 w[k], want);
			return -EBADMSG;
		}
	}
	return 0;
}

/*
 * "BOOT_ID START_TIME": CRIU restores a process as a new task, so its start
 * time (and, on another machine, the boot id) differs from the original's.
 */
static int read_identity(char *out, size_t len)
{
	char boot[64] = "", stat[1024];
	int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n = read(fd, boot, sizeof(boot) - 1);
		close(fd);
		boot[n > 0 ? n : 0] = '\0';
		boot[strcspn(boot, "\n")] = '\0';
	}
	fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, stat, sizeof(stat) - 1);
	int err = errno;
	close(fd);
	if (n <= 0)
		return n < 0 ? -err : -EIO;
	stat[n] = '\0';
	/* The command name may hold blanks; the fields after it do not. */
	char *p = strrchr(stat, ')');
	if (!p)
		return -EPROTO;
	/* Field 22 (starttime) is the 20th after the name. */
	for (int f = 0; f < 20 && p; f++)
		p = strchr(p + 1, ' ');
	if (!p)
		return -EPROTO;
	unsigned long long start = strtoull(p + 1, NULL, 10);
	snprintf(out, len, "%s %llu", boot, start);
	return 0;
}

static bool restored_since_start(void)
{
	char now[sizeof(identity)];
	return identity[0] && read_identity(now, sizeof(now)) == 0 && strcmp(now, identity) != 0;
}

static uint64_t ns_clock(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t ns_now(void)
{
	return ns_clock(CLOCK_MONOTONIC);
}

/*
 * Times the first read of page p.  Only a page that mincore() calls missing
 * just before counts as a fault: a fixed threshold would either hide fast
 * faults (a few us on real NICs) or count a resident read that a timer
 * interrupt or preemption happened to lengthen.
 */
static void touch_timed(struct timing *tm, const uint8_t *p)
{
	unsigned char in = 1;

	if (mincore((void *)p, PG, &in) < 0)
		in = 1;
	uint64_t t0 = ns_now();
	(void)*(const volatile uint64_t *)p;
	uint64_t dt = ns_now() - t0;
	tm->pages++;
	if (in & 1) {
		tm->resident++;
		if (dt > tm->resident_max)
			tm->resident_max = dt;
	} else {
		tm->ns[tm->n++] = dt;
	}
}

/* Times page i if it is its first touch since the restore; page i's lock held. */
static void first_touch(struct timing *tm, size_t i)
{
	if (!atomic_load_explicit(&armed, memory_order_acquire) || tflag[i])
		return;
	tflag[i] = 1;
	touch_timed(tm, page_ptr(i));
}

/* Leaves pages out of the first-touch times; every lock held. */
static void timing_exclude(size_t first, size_t count)
{
	if (atomic_load(&armed))
		memset(tflag + first, 1, count);
}

/*
 * Arms the first-touch timing once a restore is noticed (by any thread: the
 * first to see it may be a worker about to fault); 0 or -ENOMEM.  /proc is
 * read only after a thread saw a clock jump (clock_jumped): a dump freezes
 * the process at any instruction, and one landing between the open and the
 * close of /proc/self/stat fails the dump, so before any freeze the process
 * keeps out of /proc; after one, the next freeze is a dump round away.
 */
static int timing_arm(void)
{
	static pthread_mutex_t arm_lock = PTHREAD_MUTEX_INITIALIZER;
	static bool failed;
	int ret = 0;

	pthread_mutex_lock(&arm_lock);
	if (failed || atomic_load(&armed) || !atomic_exchange(&clock_jumped, false) ||
	    !restored_since_start())
		goto out;
	tflag = calloc(npages, 1);
	main_tm.ns = calloc(npages, sizeof(*main_tm.ns));
	bool ok = tflag && main_tm.ns;
	for (unsigned int t = 0; t < opt.threads; t++) {
		workers[t].tm.ns = calloc(workers[t].count, sizeof(uint64_t));
		ok = ok && workers[t].tm.ns;
	}
	if (!ok) {
		fprintf(stderr, "workload: out of memory for the fault times\n");
		failed = true;
		ret = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < npages; i++)
		tflag[i] = page_gone(i);
	atomic_store_explicit(&armed, true, memory_order_release);
out:
	pthread_mutex_unlock(&arm_lock);
	return ret;
}

static bool clock_gap(clockid_t id, uint64_t *last)
{
	uint64_t now = ns_clock(id), was = *last;
	*last = now;
	return was && (now < was || now - was > RESTORE_GAP_NS);
}

/*
 * A thread's clock jumping between two looks means it was frozen (a dump)
 * or moved to another machine: worth a look at /proc for a restore, before
 * its next touch, which may be the first fault.  Both clocks: the monotonic
 * one of another machine may by chance be close to ours; the wall clocks of
 * two machines agree, and a dump and a restore take longer than the gap.
 */
static void watch_restore(struct clock_marks *m)
{
	if (!opt.time_faults || atomic_load_explicit(&armed, memory_order_acquire))
		return;
	bool mono = clock_gap(CLOCK_MONOTONIC, &m->mono);
	bool wall = clock_gap(CLOCK_REALTIME, &m->wall);
	if (mono || wall) {
		atomic_store(&clock_jumped, true);
		timing_arm();
	}
}

static void *worker_main(void *arg)
{
	struct worker *wk = arg;
	char msg[sizeof(corrupt_msg)];
	struct clock_marks last = {0, 0};

	for (;;) {
		for (size_t i = wk->first; i < wk->first + wk->count; i++) {
			watch_restore(&last);
			pthread_mutex_lock(&wk->lock);
			if (page_gone(i)) {
				pthread_mutex_unlock(&wk->lock);
				continue;
			}
			first_touch(&wk->tm, i);
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

static void lock_workers(void)
{
	for (unsigned int t = 0; t < opt.threads; t++)
		pthread_mutex_lock(&workers[t].lock);
}

static void unlock_workers(void)
{
	for (unsigned int t = 0; t < opt.threads; t++)
		pthread_mutex_unlock(&workers[t].lock);
}

static void on_usr1(int sig)
{
	(void)sig;
	check_req = 1;
}

static int write_all(int fd, const char *buf, size_t len)
{
	size_t off = 0;
	while (off < len) {
		ssize_t n = write(fd, buf + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		off += (size_t)n;
	}
	return 0;
}

static int write_line(const char *path, const char *line)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	int ret = write_all(fd, line, strlen(line));
	if (close(fd) && !ret)
		ret = -errno;
	return ret;
}

/*
 * Verifies every live page (and the zero mapping after the first check),
 * timing first touches into tm if not NULL.  Returns 0, or -EBADMSG with
 * msg set.
 */
static int verify_live(struct timing *tm, char *msg, size_t len)
{
	if (atomic_load(&corrupt)) {
		snprintf(msg, len, "%s (found by a worker)", corrupt_msg);
		return -EBADMSG;
	}
	for (size_t k = 0; checks_done && k < ZERO_MIB * (1u << 20) / sizeof(*zeros); k++)
		if (zeros[k]) {
			snprintf(msg, len, "CORRUPT at %p never-written page: got %#" PRIx64,
				 (const void *)&zeros[k], zeros[k]);
			return -EBADMSG;
		}
	for (size_t i = 0; i < npages; i++) {
		if (page_gone(i))
			continue;
		if (tm)
			first_touch(tm, i);
		if (check_page(i, msg, len) < 0)
			return -EBADMSG;
	}
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Nearest rank, as rdmig-dest's latency statistics. */
static double pct_us(const uint64_t *v, size_t n, unsigned int p)
{
	size_t rank = (p * n + 99) / 100;
	return (double)v[(rank ? rank : 1) - 1] / 1000.0;
}

/*
 * Once every page was touched since the restore, appends the fault
 * latency line to out (once) and writes the samples.  Every lock held.
 */
static void timing_report(char *out, size_t len)
{
	struct timing all = main_tm;
	size_t used = strlen(out);

	if (!atomic_load(&armed) || timing_reported)
		return;
	for (size_t i = 0; i < npages; i++)
		if (!tflag[i])
			return;
	timing_reported = true;
	for (unsigned int t = 0; t < opt.threads; t++) {
		struct timing *w = &workers[t].tm;
		memcpy(all.ns + all.n, w->ns, w->n * sizeof(*w->ns));
		all.n += w->n;
		all.pages += w->pages;
		all.resident += w->resident;
		if (w->resident_max > all.resident_max)
			all.resident_max = w->resident_max;
	}
	if (all.n == 0) {
		snprintf(
		    out + used, len - used,
		    "workload: fault latency: none of %zu pages was missing at its first touch "
		    "after restore (slowest resident read %.1f us)\n",
		    all.pages, (double)all.resident_max / 1000.0);
	} else {
		qsort(all.ns, all.n, sizeof(*all.ns), cmp_u64);
		snprintf(out + used, len - used,
			 "workload: fault latency us min/p50/p90/p99/max %.1f/%.1f/%.1f/%.1f/%.1f "
			 "over %zu faults, first touch of %zu pages after restore (%zu resident, "
			 "slowest resident read %.1f us)\n",
			 (double)all.ns[0] / 1000.0, pct_us(all.ns, all.n, 50),
			 pct_us(all.ns, all.n, 90), pct_us(all.ns, all.n, 99),
			 (double)all.ns[all.n - 1] / 1000.0, all.n, all.pages, all.resident,
			 (double)all.resident_max / 1000.0);
	}
	if (!opt.samples[0])
		return;
	FILE *f = fopen(opt.samples, "we");
	if (!f) {
		fprintf(stderr, "workload: cannot write %s: %s\n", opt.samples, strerror(errno));
		return;
	}
	for (size_t i = 0; i < all.n; i++)
		fprintf(f, "%" PRIu64 "\n", all.ns[i]);
	if (fclose(f))
		fprintf(stderr, "workload: cannot write %s: %s\n", opt.samples, strerror(errno));
}

/* Pages of the region not in memory right now (after a restore: not yet moved). */
static size_t missing_now(void)
{
	static unsigned char vec[4096];
	size_t missing = 0;

	for (size_t i = 0; i < npages;) {
		size_t run = 1;
		if (page_gone(i)) {
			i++;
			continue;
		}
		/* A run of pages that are contiguous in the address space. */
		while (i + run < npages && run < sizeof(vec) && !page_gone(i + run) &&
		       page_ptr(i + run) == page_ptr(i) + run * PG)
			run++;
		if (mincore(page_ptr(i), run * PG, vec) == 0)
			for (size_t k = 0; k < run; k++)
				missing += !(vec[k] & 1);
		i += run;
	}
	return missing;
}

static size_t mib_of(size_t pages)
{
	return pages * PG >> 20;
}

/* Plain check; with locks held.  Returns 0 OK, 1 corrupt. */
static int do_check(char *out, size_t len)
{
	char msg[MSG_LEN];
	int bad = verify_live(&main_tm, msg, sizeof(msg)) < 0;
	uint64_t g = atomic_load(&rewritten);
	if (bad)
		snprintf(out, len, "workload: %s\n", msg);
	else
		snprintf(out, len, "workload: OK verified %zu MiB, generation %" PRIu64 "\n",
			 mib_of(live_pages()), g);
	return bad;
}

/*
 * Forks a child that checks the memory as it was at the fork, while the
 * parent's workers go on.  Called with the locks held; releases them.
 */
static int do_fork(char *out, size_t len)
{
	char msg[MSG_LEN], buf[1024];
	int pfd[2], status;
	size_t missing = missing_now();

	if (pipe2(pfd, O_CLOEXEC) < 0) {
		unlock_workers();
		snprintf(out, len, "workload: fork FAILED: pipe: %s\n", strerror(errno));
		return 1;
	}
	uint64_t g0 = atomic_load(&rewritten);
	pid_t pid = fork();
	if (pid == 0) {
		/* Only this thread exists here; the workers' locks stay taken. */
		close(pfd[0]);
		/* Its own faults: the parent's first-touch times are not for it. */
		int bad = verify_live(NULL, msg, sizeof(msg)) < 0;
		if (bad)
			snprintf(buf, sizeof(buf), "workload: fork CORRUPT in the child: %s\n",
				 msg);
		else
			snprintf(
			    buf, sizeof(buf),
			    "workload: fork OK: child pid %d verified %zu MiB as it was at the "
			    "fork (%zu pages were not in yet)\n",
			    (int)getpid(), mib_of(live_pages()), missing);
		_exit(write_all(pfd[1], buf, strlen(buf)) < 0 ? 2 : bad);
	}
	unlock_workers();
	close(pfd[1]);
	if (pid < 0) {
		close(pfd[0]);
		snprintf(out, len, "workload: fork FAILED: %s\n", strerror(errno));
		return 1;
	}
	size_t got = 0;
	uint64_t t0 = ns_now();
	while (got < sizeof(buf) - 1) {
		struct pollfd p = {.fd = pfd[0], .events = POLLIN};
		int left = FORK_WAIT_MS - (int)((ns_now() - t0) / 1000000);
		if (left <= 0 || (poll(&p, 1, left) < 0 && errno != EINTR))
			break;
		ssize_t n = read(pfd[0], buf + got, sizeof(buf) - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(pfd[0]);
	buf[got] = '\0';
	if (waitpid(pid, &status, got ? 0 : WNOHANG) != pid) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		snprintf(out, len, "workload: fork FAILED: no verdict from child %d in %d s\n",
			 (int)pid, FORK_WAIT_MS / 1000);
		return 1;
	}
	bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
	char *nl = strchr(buf, '\n');
	if (ok && nl && !strncmp(buf, "workload: fork OK", 17)) {
		/* The parent's part goes on the verdict line. */
		uint64_t g = atomic_load(&rewritten);
		*nl = '\0';
		snprintf(out, len,
			 "%s; the parent rewrote %" PRIu64 " pages meanwhile, generation %" PRIu64
			 "\n%s",
			 buf, g - g0, g, nl + 1);
		return 0;
	}
	if (!got)
		snprintf(out, len, "workload: fork FAILED: child %d said nothing (status %#x)\n",
			 (int)pid, status);
	else
		snprintf(out, len, "%s%s", buf, buf[got - 1] == '\n' ? "" : "\n");
	return 1;
}

/* Moves an eighth of the region (from a quarter in) elsewhere; locks held. */
static int do_mremap(char *out, size_t len)
{
	char msg[MSG_LEN];
	size_t first = npages / 4, count = npages / 8 ? npages / 8 : 1;
	size_t missing = missing_now();

	if (first + count > npages || page_gone(first)) {
		snprintf(out, len, "workload: mremap FAILED: region too small\n");
		return 1;
	}
	/* A reserved spot to move to: MREMAP_FIXED guarantees a move. */
	void *to = mmap(NULL, count * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (to == MAP_FAILED) {
		snprintf(out, len, "workload: mremap FAILED: mmap: %s\n", strerror(errno));
		return 1;
	}
	uint8_t *from = mem + first * PG;
	void *r = mremap(from, count * PG, count * PG, MREMAP_MAYMOVE | MREMAP_FIXED, to);
	if (r == MAP_FAILED) {
		int err = errno;
		munmap(to, count * PG);
		snprintf(out, len, "workload: mremap FAILED: %s\n", strerror(err));
		return 1;
	}
	moved_first = first;
	moved_count = count;
	moved_at = r;
	int bad = 0;
	/* The moved part first, then everything (it again, cheaply). */
	for (size_t i = first; !bad && i < first + count; i++) {
		first_touch(&main_tm, i);
		bad = check_page(i, msg, sizeof(msg)) < 0;
	}
	if (!bad)
		bad = verify_live(&main_tm, msg, sizeof(msg)) < 0;
	uint64_t g = atomic_load(&rewritten);
	if (bad)
		snprintf(out, len, "workload: mremap %s\n", msg);
	else
		snprintf(
		    out, len,
		    "workload: mremap OK: moved %zu KiB at offset %#zx from %p to %p, verified "
		    "it there and the other %zu KiB (%zu pages were not in yet), generation "
		    "%" PRIu64 "\n",
		    count * PG >> 10, first * PG, (void *)from, r,
		    (live_pages() - count) * PG >> 10, missing, g);
	return bad;
}

/*
 * MADV_DONTNEED a sixteenth from half-way in (Linux then reads private
 * anonymous memory as zeros), fill it again, munmap a sixteenth from three
 * quarters in, verify the rest; locks held.
 */
static int do_madvise(char *out, size_t len)
{
	char msg[MSG_LEN] = "";
	size_t n16 = npages / 16 ? npages / 16 : 1;
	size_t dfirst = npages / 2, ufirst = npages * 3 / 4;
	size_t missing = missing_now();
	int bad = 0;

	if (ufirst + n16 > npages || dfirst + n16 > ufirst) {
		snprintf(out, len, "workload: madvise FAILED: region too small\n");
		return 1;
	}
	/* Touches from now on there are no first touches after the restore. */
	timing_exclude(dfirst, n16);
	timing_exclude(ufirst, n16);
	uint8_t *d = page_ptr(dfirst);
	if (madvise(d, n16 * PG, MADV_DONTNEED) < 0) {
		snprintf(out, len, "workload: madvise FAILED: MADV_DONTNEED: %s\n",
			 strerror(errno));
		return 1;
	}
	for (size_t i = dfirst; !bad && i < dfirst + n16; i++) {
		const uint64_t *w = (const uint64_t *)page_ptr(i);
		for (size_t k = 0; k < WORDS; k++)
			if (w[k]) {
				snprintf(
				    msg, sizeof(msg),
				    "CORRUPT at offset %#zx (%p) after MADV_DONTNEED: got %#" PRIx64
				    " want 0",
				    i * PG + k * sizeof(uint64_t), (const void *)&w[k], w[k]);
				bad = 1;
				break;
			}
	}
	if (bad) {
		snprintf(out, len, "workload: madvise %s\n", msg);
		return 1;
	}
	for (size_t i = dfirst; i < dfirst + n16; i++) {
		gens[i]++;
		fill_page(i);
	}
	if (munmap(page_ptr(ufirst), n16 * PG) < 0) {
		snprintf(out, len, "workload: madvise FAILED: munmap: %s\n", strerror(errno));
		return 1;
	}
	gone_first = ufirst;
	gone_count = n16;
	bad = verify_live(&main_tm, msg, sizeof(msg)) < 0;
	uint64_t g = atomic_load(&rewritten);
	if (bad)
		snprintf(out, len, "workload: madvise %s\n", msg);
	else
		snprintf(out, len,
			 "workload: madvise OK: MADV_DONTNEED %zu KiB at offset %#zx read back as "
			 "zeros and was filled again, munmap %zu KiB at offset %#zx, verified the "
			 "remaining %zu KiB (%zu pages were not in yet), generation %" PRIu64 "\n",
			 n16 * PG >> 10, dfirst * PG, n16 * PG >> 10, ufirst * PG,
			 live_pages() * PG >> 10, missing, g);
	return bad;
}

/* Serves one request; returns 0 OK, 1 corrupt or failed. */
static int serve(enum req r)
{
	char out[2048];
	int bad;

	timing_arm();
	lock_workers();
	if (r >= REQ_FORK && done_req[r]) {
		unlock_workers();
		snprintf(out, sizeof(out), "workload: %s FAILED: done already\n", req_names[r]);
		bad = 1;
	} else {
		done_req[r] = true;
		switch (r) {
		case REQ_FORK:
			bad = do_fork(out, sizeof(out)); /* it unlocks */
			break;
		case REQ_MREMAP:
			bad = do_mremap(out, sizeof(out));
			break;
		case REQ_MADVISE:
			bad = do_madvise(out, sizeof(out));
			break;
		default:
			bad = do_check(out, sizeof(out));
			break;
		}
		checks_done++;
		if (r != REQ_FORK)
			timing_report(out, sizeof(out));
		if (r != REQ_FORK && r != REQ_EXIT && !opt.exit_after_check)
			unlock_workers();
	}
	int ret = write_line(opt.report, out);
	if (ret < 0)
		fprintf(stderr, "workload: cannot write %s: %s\n", opt.report, strerror(-ret));
	return bad;
}

/* The request in the check file (removed); -ENOENT if there is none. */
static int read_request(enum req *r)
{
	char buf[64] = "";
	ssize_t n = 0;

	/* A writer may have created the file and not written it yet. */
	for (int tries = 0; tries < 3; tries++) {
		int fd = open(opt.check_file, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return errno == ENOENT && tries == 0 ? -ENOENT : -errno;
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n > 0)
			break;
		usleep(10000);
	}
	unlink(opt.check_file);
	buf[n > 0 ? n : 0] = '\0';
	char *w = buf + strspn(buf, " \t\n");
	w[strcspn(w, " \t\n")] = '\0';
	*r = REQ_CHECK;
	if (!*w)
		return 0;
	for (size_t i = 0; i < sizeof(req_names) / sizeof(req_names[0]); i++)
		if (!strcmp(w, req_names[i])) {
			*r = (enum req)i;
			return 0;
		}
	return -EINVAL;
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

/* The stack of --sp-page-aligned's thread: its pointer sits at the end. */
#define SP_STACK_SIZE (4 * PG)

#if defined(__x86_64__)
/*
 * Waits in pause(2), every signal blocked, with %rsp on a page boundary,
 * forever.  criu dump's is_stack() masks the offset in the page, not the
 * page, so one thread stopped with such a stack pointer makes it mark no
 * page of the process lazy: this is how a test gets that checkpoint.
 */
static void *sp_page_aligned_main(void *arg)
{
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	__asm__ volatile("mov %0, %%rsp\n"
			 "1: mov %1, %%eax\n"
			 "syscall\n"
			 "jmp 1b\n"
			 :
			 : "r"((uint8_t *)arg + SP_STACK_SIZE), "i"(SYS_pause)
			 : "rax", "rcx", "r11", "memory");
	__builtin_unreachable();
}

static int start_sp_page_aligned(void)
{
	pthread_t tid;
	void *stk =
	    mmap(NULL, SP_STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (stk == MAP_FAILED)
		return -errno;
	memset(stk, 0x5a, SP_STACK_SIZE);
	if (pthread_create(&tid, NULL, sp_page_aligned_main, stk))
		return -EAGAIN;
	return pthread_detach(tid) ? -EINVAL : 0;
}
#else
static int start_sp_page_aligned(void)
{
	fprintf(stderr, "workload: --sp-page-aligned is x86-64 only\n");
	return -ENOTSUP;
}
#endif

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "Usage: rdmig-workload --report FILE [OPTIONS]\n"
	    "A process whose memory keeps changing and can be verified (for CRIU tests).\n\n"
	    "  -s, --size MIB         anonymous memory to use (default 64)\n"
	    "  -T, --threads N        threads rewriting and verifying it (default 2)\n"
	    "  -r, --report FILE      where each verdict goes (reopened each time)\n"
	    "  -c, --check-file FILE  serve the request in FILE when it appears (removed then):\n"
	    "                         check (also an empty file), exit, fork, mremap, madvise;\n"
	    "                         SIGUSR1 asks for a check\n"
	    "  -p, --pid-file FILE    write getpid() there once the memory is filled\n"
	    "      --delay-us US      pause after each page rewrite (default 0)\n"
	    "  -x, --exit-after-check exit after the first request: 0 OK, 1 corrupt\n"
	    "      --time-faults      time the first touch of every page in the first pass\n"
	    "                         after a restore; report min/p50/p90/p99/max\n"
	    "      --fault-samples FILE  with --time-faults: every fault's time (ns) to FILE\n"
	    "      --mlock            lock all its memory (mlockall, on fault): CRIU then marks\n"
	    "                         no page lazy, and the dump carries every page\n"
	    "      --sp-page-aligned  one more thread, idle, its stack pointer on a page\n"
	    "                         boundary (x86-64): criu dump then marks no page lazy\n"
	    "  -h, --help             show this help\n");
}

int main(int argc, char **argv)
{
	enum { O_DELAY = 256, O_TIME, O_SAMPLES, O_MLOCK, O_SP };
	static const struct option lo[] = {
	    {"size", required_argument, NULL, 's'},
	    {"threads", required_argument, NULL, 'T'},
	    {"report", required_argument, NULL, 'r'},
	    {"check-file", required_argument, NULL, 'c'},
	    {"pid-file", required_argument, NULL, 'p'},
	    {"delay-us", required_argument, NULL, O_DELAY},
	    {"exit-after-check", no_argument, NULL, 'x'},
	    {"time-faults", no_argument, NULL, O_TIME},
	    {"fault-samples", required_argument, NULL, O_SAMPLES},
	    {"mlock", no_argument, NULL, O_MLOCK},
	    {"sp-page-aligned", no_argument, NULL, O_SP},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *report = NULL, *check = NULL, *pidf = NULL, *samples = NULL;
	char *end;
	unsigned long v;
	int c;

	while ((c = getopt_long(argc, argv, "s:T:r:c:p:xh", lo, NULL)) != -1) {
		switch (c) {
		case 's':
		case 'T':
		case O_DELAY:
			errno = 0;
			v = strtoul(optarg, &end, 10);
			if (errno || *end || !*optarg ||
			    (c != O_DELAY && (v == 0 || v > (c == 's' ? 1u << 20 : 1024))) ||
			    v > 10u * 1000 * 1000) {
				fprintf(stderr, "workload: bad value '%s'\n", optarg);
				return 2;
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
		case O_TIME:
			opt.time_faults = true;
			break;
		case O_SAMPLES:
			samples = optarg;
			break;
		case O_MLOCK:
			opt.mlock = true;
			break;
		case O_SP:
			opt.sp_page_aligned = true;
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
	    (pidf && abs_path(pidf, opt.pid_file) < 0) ||
	    (samples && abs_path(samples, opt.samples) < 0)) {
		fprintf(stderr, "workload: path too long\n");
		return 2;
	}
	if (opt.time_faults && read_identity(identity, sizeof(identity)) < 0) {
		fprintf(stderr, "workload: cannot read /proc/self/stat: no --time-faults\n");
		opt.time_faults = false;
	}

	/*
	 * Every VMA locked, without populating the never-written ones (on
	 * fault): CRIU marks no page of a locked VMA lazy, so this is how a
	 * test gets a checkpoint with no lazy page at all.
	 */
	if (opt.mlock && mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) < 0) {
		perror("workload: mlockall");
		return 3;
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
	if (opt.sp_page_aligned && start_sp_page_aligned() < 0) {
		fprintf(stderr, "workload: cannot start the thread of --sp-page-aligned\n");
		return 3;
	}
	if (pidf) {
		char line[32];
		snprintf(line, sizeof(line), "%d\n", (int)getpid());
		write_line(opt.pid_file, line);
	}
	fprintf(stderr, "workload: pid %d, %zu MiB, %u threads, report %s\n", (int)getpid(),
		opt.mib, opt.threads, opt.report);

	struct clock_marks marks = {0, 0};
	for (;;) {
		/* Until a restore is noticed, look often: its first faults are the news. */
		bool watch = opt.time_faults && !atomic_load(&armed);
		struct timespec ts = {0, (watch ? 10 : 50) * 1000 * 1000};
		nanosleep(&ts, NULL);
		if (watch)
			watch_restore(&marks);
		enum req r = REQ_CHECK;
		bool go = check_req;
		if (!go && check) {
			int ret = read_request(&r);
			if (ret == -EINVAL) {
				write_line(opt.report, "workload: FAILED: unknown request\n");
				continue;
			}
			go = ret == 0;
		}
		if (!go)
			continue;
		check_req = 0;
		int bad = serve(r);
		if (opt.exit_after_check || r == REQ_EXIT)
			_exit(bad);
	}
}
