// SPDX-License-Identifier: GPL-2.0-or-later
#include "imgmap.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "ctrl.h"
#include "imgflat.h"
#include "log.h"
#include "msgauth.h"
#include "util.h"

/*
 * Pages files that change while they are served.
 *
 * The pages files are mapped, not copied: a checkpoint is as large as the
 * workload's memory, and RDMA serves it straight from the page cache.  But
 * a mapped file that is truncated under the mapping turns every CPU access
 * past its new end into SIGBUS, which killed the agent and every migration
 * it served (finding 6 of the security review).  The choices:
 *  - a private copy (read into anonymous memory, or MAP_POPULATE + mlock)
 *    doubles the memory and does not help: truncation drops the page cache
 *    pages from every mapping, private or locked, and the next access
 *    faults all the same;
 *  - fstat() checks before each access race with the truncation;
 *  - so every CPU read of a mapping runs under a SIGBUS guard: a
 *    thread-local sigjmp_buf that the SIGBUS handler jumps back to when the
 *    fault happened inside a guarded copy (imgmap_copy(), the checksums of
 *    imgmap_open()); the copy returns -EFAULT and the caller fails that
 *    migration.  A SIGBUS anywhere else still kills the process as before.
 * RDMA READs are served by the device (or rdma_rxe) from the pages the
 * memory region pinned: they stay valid after a truncation and a READ
 * returns the old bytes, never a fault.  What a truncation, a rewrite in
 * place or a file renamed over the original changes without any fault is
 * caught by imgmap_check() (the inode, size and mtime of the file mapped,
 * from its kept fd and from its path), which the session runs before it
 * streams the images and every second while it serves: the migration
 * fails within a second, naming the file, and the agent goes on.  Pages
 * files are opened O_NOFOLLOW | O_NONBLOCK and must be regular files (a
 * FIFO would block the opening thread forever); world-writable ones are
 * refused.
 */

/* Set while this thread runs a guarded read of a mapping; NULL otherwise. */
static _Thread_local sigjmp_buf *guard_jb;

static void guard_sigbus(int sig, siginfo_t *si, void *uc)
{
	if (guard_jb)
		siglongjmp(*guard_jb, 1);
	/* Not a guarded read: the default action once the fault repeats. */
	signal(SIGBUS, SIG_DFL);
}

static void guard_install(void)
{
	struct sigaction sa = {.sa_sigaction = guard_sigbus, .sa_flags = SA_SIGINFO};

	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGBUS, &sa, NULL) < 0)
		log_warn("cannot catch SIGBUS: a pages file truncated while served will stop "
			 "the agent: %s",
			 strerror(errno));
}

/* Runs fn(arg), turning a SIGBUS inside it into -EFAULT; fn holds nothing to release. */
static int guarded(int (*fn)(void *), void *arg)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	sigjmp_buf jb;
	int ret;

	pthread_once(&once, guard_install);
	if (sigsetjmp(jb, 1)) {
		guard_jb = NULL;
		return -EFAULT;
	}
	guard_jb = &jb;
	ret = fn(arg);
	guard_jb = NULL;
	return ret;
}

struct copy_args {
	void *dst;
	const void *src;
	size_t len;
};

static int copy_fn(void *arg)
{
	struct copy_args *c = arg;

	memcpy(c->dst, c->src, c->len);
	return 0;
}

int imgmap_copy(void *dst, const void *src, size_t len)
{
	struct copy_args c = {dst, src, len};

	return guarded(copy_fn, &c);
}

/*
 * A range is hashed in steps of this much, and page hashes in batches of
 * this many bytes' worth, so a cancelled open stops within one step.
 */
#define IMGMAP_STEP (16u << 20)

static bool imgmap_stopped(const atomic_bool *stop)
{
	return stop && atomic_load(stop);
}

/* The checksums of one range, computed under the SIGBUS guard. */
struct csum_args {
	const uint8_t *data;
	uint64_t len;
	const atomic_bool *stop;
	XXH3_state_t *st;	     /* allocated by the caller: nothing to free after a jump */
	uint64_t *csum;		     /* XXH3-64 of the range: the same value as one XXH3_64bits() */
	uint64_t *hashes;	     /* len / 4096 page tags, or NULL */
	struct msgauth_pages *pages; /* the keyed tagger, with hashes */
};

static int csum_fn(void *arg)
{
	struct csum_args *c = arg;
	uint64_t off, n, p;

	if (c->len <= IMGMAP_STEP) {
		*c->csum = XXH3_64bits(c->data, c->len);
	} else {
		if (XXH3_64bits_reset(c->st) != XXH_OK)
			return -EINVAL;
		for (off = 0; off < c->len; off += n) {
			if (imgmap_stopped(c->stop))
				return -ECANCELED;
			n = c->len - off < IMGMAP_STEP ? c->len - off : IMGMAP_STEP;
			if (XXH3_64bits_update(c->st, c->data + off, n) != XXH_OK)
				return -EINVAL;
		}
		*c->csum = XXH3_64bits_digest(c->st);
	}
	for (p = 0; c->hashes && p < c->len / IMG_PAGE_SIZE; p++) {
		int ret;

		if (p % (IMGMAP_STEP / IMG_PAGE_SIZE) == 0 && imgmap_stopped(c->stop))
			return -ECANCELED;
		ret = msgauth_page_tag(c->pages, c->data + p * IMG_PAGE_SIZE, IMG_PAGE_SIZE,
				       &c->hashes[p]);
		if (ret < 0)
			return ret;
	}
	return 0;
}

/* Opens and maps f->path into f (fd -1 and base NULL on entry). */
static int map_file(struct imgmap_file *f)
{
	struct stat st;
	int ret;

	/* Not a FIFO's open blocking this thread, not a symlink to anything. */
	f->fd = open(f->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (f->fd < 0) {
		ret = -errno;
		log_err("cannot open %s: %s", f->path, strerror(errno));
		return ret;
	}
	if (fstat(f->fd, &st) < 0) {
		ret = -errno;
		log_err("cannot stat %s: %s", f->path, strerror(errno));
		return ret;
	}
	if (!S_ISREG(st.st_mode)) {
		log_err("%s: not a regular file: refusing to serve it", f->path);
		return -EINVAL;
	}
	if (st.st_mode & S_IWOTH) {
		log_err("%s: writable by anyone: anyone could change the checkpoint while it is "
			"served; refusing it",
			f->path);
		return -EPERM;
	}
	f->dev = st.st_dev;
	f->ino = st.st_ino;
	f->mtime = st.st_mtim;
	f->len = (size_t)st.st_size;
	if (f->len == 0)
		return 0;
	f->base = mmap(NULL, f->len, PROT_READ, MAP_PRIVATE, f->fd, 0);
	if (f->base == MAP_FAILED) {
		ret = -errno;
		f->base = NULL;
		log_err("cannot map %s (%zu bytes): %s", f->path, f->len, strerror(errno));
		return ret;
	}
	return 0;
}

int imgmap_file_open(const char *path, struct imgmap_file *f)
{
	memset(f, 0, sizeof(*f));
	f->fd = -1;
	f->path = strdup(path);
	return f->path ? map_file(f) : -ENOMEM;
}

void imgmap_file_close(struct imgmap_file *f)
{
	if (f->base)
		munmap(f->base, f->len);
	if (f->fd >= 0)
		close(f->fd);
	free(f->path);
	memset(f, 0, sizeof(*f));
	f->fd = -1;
}

static bool same_time(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

bool imgmap_file_same(const struct imgmap_file *a, const struct imgmap_file *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->len == b->len &&
	       same_time(&a->mtime, &b->mtime);
}

const char *imgmap_file_changed(const struct imgmap_file *f)
{
	struct stat st;

	if (fstat(f->fd, &st) < 0)
		return strerror(errno);
	if ((size_t)st.st_size != f->len)
		return "its size changed";
	if (!same_time(&st.st_mtim, &f->mtime))
		return "rewritten";
	if (lstat(f->path, &st) < 0)
		return errno == ENOENT ? "removed" : strerror(errno);
	if (st.st_dev != f->dev || st.st_ino != f->ino)
		return "replaced by another file";
	return NULL;
}

void imgmap_files_free(struct imgmap_file *files, size_t n)
{
	size_t i;

	for (i = 0; files && i < n; i++)
		imgmap_file_close(&files[i]);
	free(files);
}

int imgmap_file_xxh3(const struct imgmap_file *f, uint64_t *xxh3)
{
	struct csum_args c = {.data = f->base, .len = f->len, .csum = xxh3};
	int ret;

	c.st = XXH3_createState();
	if (!c.st)
		return -ENOMEM;
	ret = guarded(csum_fn, &c);
	if (ret == -EFAULT)
		log_err("%s: changed while being read (truncated?): no checksum of it", f->path);
	XXH3_freeState(c.st);
	return ret;
}

int imgmap_round_open(const char *dir, struct imgmap_file **out, size_t *nr)
{
	struct imgmap_file *files = NULL, *more;
	char path[PATH_MAX];
	struct dirent *de;
	size_t n = 0;
	DIR *d;
	int ret = 0;

	d = opendir(dir);
	if (!d) {
		ret = -errno;
		log_err("cannot open the pre-dump round %s: %s", dir, strerror(errno));
		return ret;
	}
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, "pages-", 6) != 0 || !strstr(de->d_name, ".img"))
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= (int)sizeof(path)) {
			ret = -ENAMETOOLONG;
			break;
		}
		more = realloc(files, (n + 1) * sizeof(*files));
		if (!more) {
			ret = -ENOMEM;
			break;
		}
		files = more;
		ret = imgmap_file_open(path, &files[n]);
		n++;
		if (ret < 0)
			break;
	}
	closedir(d);
	if (ret < 0) {
		imgmap_files_free(files, n);
		return ret;
	}
	*out = files;
	*nr = n;
	return 0;
}

int imgmap_match(const struct imgmap *map, const struct imgmap_file *pre, size_t n, ssize_t *idx)
{
	size_t i, j;

	for (j = 0; j < n; j++) {
		idx[j] = -1;
		for (i = 0; i < map->nr_files; i++) {
			if (strcmp(map->files[i].path, pre[j].path) != 0)
				continue;
			if (!imgmap_file_same(&map->files[i], &pre[j])) {
				log_err("%s: changed since its pre-dump round ended (not the file "
					"mapped then): not served",
					pre[j].path);
				return -ESTALE;
			}
			idx[j] = (ssize_t)i;
		}
	}
	return 0;
}

/*
 * The index of the pages file holding lr, mapped on first use.  Files are
 * told apart by path: every round of a pre-dump chain numbers its pages
 * files from 1 again.
 */
static int file_index(struct imgmap *map, const struct img_task *t, const struct img_lazy_range *lr,
		      uint32_t *idx)
{
	char path[4096];
	struct imgmap_file *files;
	size_t i;
	int ret;

	ret = image_range_pages_path(map->set, t, lr, path, sizeof(path));
	if (ret < 0)
		return ret;
	for (i = 0; i < map->nr_files; i++) {
		if (strcmp(map->files[i].path, path) == 0) {
			*idx = (uint32_t)i;
			return 0;
		}
	}
	files = realloc(map->files, (map->nr_files + 1) * sizeof(*files));
	if (!files)
		return -ENOMEM;
	map->files = files;
	memset(&files[map->nr_files], 0, sizeof(*files));
	files[map->nr_files].fd = -1;
	files[map->nr_files].pages_id =
	    image_set_task(image_set_at(map->set, lr->src), t->pid)->pages_id;
	files[map->nr_files].path = strdup(path);
	if (!files[map->nr_files].path)
		return -ENOMEM;
	map->nr_files++;
	ret = map_file(&files[map->nr_files - 1]);
	if (ret < 0)
		return ret;
	*idx = (uint32_t)(map->nr_files - 1);
	return 0;
}

/*
 * A lazy dump's task: its lazy ranges are in the dump's page server, not
 * in a file; only their sizes are known now (lazystage.h pulls them).
 */
static int task_lazy(struct imgmap *map, const struct img_task *t)
{
	size_t i;

	for (i = 0; i < t->nr_lazy; i++) {
		/* Pages criu did not mark lazy: the stopped tree serves them (lazydump.h). */
		if (t->lazy[i].pages_off != IMG_NO_OFFSET && !map->set->relazied) {
			log_err("%s: task %d range 0x%" PRIx64 " has its pages in the images: "
				"not a criu dump --lazy-pages",
				map->set->dir, t->pid, t->lazy[i].vaddr);
			return -EBADMSG;
		}
		map->lazy_bytes += t->lazy[i].len;
	}
	return 0;
}

static int task_build(struct imgmap *map, const struct img_task *t, struct imgmap_task *mt,
		      struct msgauth_pages *pages, const atomic_bool *stop)
{
	struct csum_args c = {.stop = stop};
	const struct imgmap_file *f;
	uint32_t idx;
	size_t i;
	int ret;

	mt->pid = t->pid;
	if (!t->has_memory || t->nr_lazy == 0)
		return 0;
	if (map->lazy_dump)
		return task_lazy(map, t);
	mt->ranges = calloc(t->nr_lazy, sizeof(*mt->ranges));
	c.st = XXH3_createState();
	if (!mt->ranges || !c.st) {
		ret = -ENOMEM;
		goto out;
	}
	for (i = 0; i < t->nr_lazy; i++) {
		const struct img_lazy_range *lr = &t->lazy[i];
		struct imgmap_range *r = &mt->ranges[i];

		ret = -ECANCELED;
		if (imgmap_stopped(stop))
			goto out;
		if (lr->pages_off == IMG_NO_OFFSET) {
			/*
			 * A dump --lazy-pages image (the pages never reached the
			 * disk), or an in-parent range without a parent link.
			 */
			log_err("%s: task %d range 0x%" PRIx64 "+%" PRIu64
				" has no data in the images (dumped with --lazy-pages, or in a "
				"parent image that is not linked?)",
				map->set->dir, t->pid, lr->vaddr, lr->len);
			ret = -ENODATA;
			goto out;
		}
		ret = file_index(map, t, lr, &idx);
		if (ret < 0)
			goto out;
		f = &map->files[idx];
		if (lr->pages_off > f->len || lr->len > f->len - lr->pages_off) {
			log_err("%s: task %d range 0x%" PRIx64 " needs bytes %" PRIu64 "..%" PRIu64
				" but the file has %zu",
				f->path, t->pid, lr->vaddr, lr->pages_off, lr->pages_off + lr->len,
				f->len);
			ret = -EBADMSG;
			goto out;
		}
		r->img_vaddr = lr->vaddr;
		r->len = lr->len;
		r->file = idx;
		r->offset = lr->pages_off;
		if (pages) {
			r->page_hashes = calloc(lr->len / IMG_PAGE_SIZE, sizeof(uint64_t));
			if (!r->page_hashes) {
				ret = -ENOMEM;
				goto out;
			}
		}
		c.data = (const uint8_t *)f->base + lr->pages_off;
		c.len = lr->len;
		c.csum = &r->csum;
		c.hashes = r->page_hashes;
		c.pages = pages;
		ret = guarded(csum_fn, &c);
		if (ret == -EFAULT)
			log_err("%s: changed while being read (truncated?): cannot serve it",
				f->path);
		if (ret < 0)
			goto out;
		mt->nr_ranges++;
		map->lazy_bytes += lr->len;
	}
	ret = 0;
out:
	XXH3_freeState(c.st);
	return ret;
}

/*
 * Pages criu did not mark lazy by mistake are served lazily
 * (image_set_relazy()): a plain dump's from its pages files, a lazy
 * dump's from its stopped tree (lazydump.h).  The destination then needs
 * the flat images: written here for a dump without a parent (a chain's
 * are written below), and when they cannot be (an images directory the
 * agent may not write to), the set is read again as criu wrote it and
 * those pages go with the images, as before.
 */
static int map_relazy(struct imgmap *map, const char *dir)
{
	uint64_t n = 0;
	int ret;

	ret = image_set_relazy(map->set, &n);
	if (ret < 0 || map->set->parent)
		return ret;
	ret = imgflat_write(map->set);
	if (ret == 0 || !n)
		return ret;
	log_warn("%s: cannot write the images a destination gets with those %" PRIu64
		 " pages lazy (%s): they go with the images instead",
		 dir, n, strerror(-ret));
	image_set_free(map->set);
	map->set = NULL;
	return image_set_open(dir, &map->set);
}

static int map_open(const char *dir, const uint8_t *page_key, const atomic_bool *stop,
		    bool lazy_dump, struct imgmap **out)
{
	struct msgauth_pages pages = {0};
	uint64_t t0 = now_ns(), t1 = 0, t2 = 0;
	struct imgmap *map;
	size_t i, j;
	int ret;

	map = calloc(1, sizeof(*map));
	if (!map)
		return -ENOMEM;
	map->lazy_dump = lazy_dump;
	ret = page_key ? msgauth_pages_init(&pages, page_key) : 0;
	if (ret == 0)
		ret = image_set_open(dir, &map->set);
	if (ret == 0)
		ret = map_relazy(map, dir);
	if (ret < 0)
		goto out;
	t1 = now_ns();
	map->tasks = calloc(map->set->nr_tasks ? map->set->nr_tasks : 1, sizeof(*map->tasks));
	if (!map->tasks) {
		ret = -ENOMEM;
		goto out;
	}
	for (i = 0; i < map->set->nr_tasks; i++) {
		ret = task_build(map, &map->set->tasks[i], &map->tasks[i], page_key ? &pages : NULL,
				 stop);
		map->nr_tasks = i + 1;
		if (ret < 0)
			goto out;
	}
	t2 = now_ns();
	/* A pre-copy chain: what the destination gets instead of in-parent runs. */
	if (!lazy_dump && map->set->parent)
		ret = imgflat_write(map->set);
	if (ret < 0)
		goto out;
	/* The parts of a mapping inside a freeze, for its profile (performance.md). */
	log_info("%s: images read and resolved in %.3f s, %zu pages files mapped and %" PRIu64
		 " lazy bytes checksummed in %.3f s, flat images in %.3f s",
		 dir, (double)(t1 - t0) / 1e9, map->nr_files, map->lazy_bytes,
		 (double)(t2 - t1) / 1e9, (double)(now_ns() - t2) / 1e9);
	/*
	 * Nothing to serve from a dump is rare enough to say what each task
	 * had: its memory images not found, or a pagemap without a lazy run.
	 */
	for (i = 0; !map->lazy_bytes && i < map->set->nr_tasks; i++) {
		const struct img_task *t = &map->set->tasks[i];
		size_t k, anon = 0, locked = 0;

		/* criu marks no page of a locked VMA lazy (vma_entry_can_be_lazy). */
		for (k = 0; k < t->nr_vmas; k++) {
			if ((t->vmas[k].flags & (MAP_ANONYMOUS | MAP_PRIVATE)) ==
			    (MAP_ANONYMOUS | MAP_PRIVATE))
				anon++;
			if (t->vmas[k].flags & MAP_LOCKED)
				locked++;
		}
		log_warn(
		    "%s: no lazy pages: task %" PRId32 " %s, %zu VMAs (%zu anonymous "
		    "private, %zu locked), %zu pagemap entries, %" PRIu64 " bytes of pages%s",
		    dir, t->pid, t->has_memory ? "has memory images" : "has no mm or pagemap image",
		    t->nr_vmas, anon, locked, t->nr_entries, t->pages_file_size,
		    /* Made lazy above, unless the flat images could not be written. */
		    t->has_memory && image_task_unlazy_pages(t)
			? "; criu marked none lazy in memory it serves lazily, as it does when "
			  "it stops a thread with its stack pointer on a page boundary "
			  "(design.md §10.3), and they could not be made lazy here"
			: "");
	}
	/* The same fold the destination computes over the tables it receives. */
	map->digest = 0;
	for (i = 0; i < map->nr_tasks; i++)
		for (j = 0; j < map->tasks[i].nr_ranges; j++)
			map->digest = ctrl_digest_add(map->digest, map->tasks[i].ranges[j].csum);
	ret = 0;
out:
	msgauth_pages_free(&pages);
	if (ret < 0) {
		imgmap_close(map);
		map = NULL;
	}
	*out = map;
	return ret;
}

int imgmap_open(const char *dir, const uint8_t *page_key, const atomic_bool *stop,
		struct imgmap **out)
{
	return map_open(dir, page_key, stop, false, out);
}

int imgmap_open_lazy(const char *dir, const atomic_bool *stop, struct imgmap **out)
{
	return map_open(dir, NULL, stop, true, out);
}

void imgmap_close(struct imgmap *map)
{
	size_t i, j;

	if (!map)
		return;
	for (i = 0; i < map->nr_tasks; i++) {
		for (j = 0; j < map->tasks[i].nr_ranges; j++)
			free(map->tasks[i].ranges[j].page_hashes);
		free(map->tasks[i].ranges);
	}
	free(map->tasks);
	imgmap_files_free(map->files, map->nr_files);
	image_set_free(map->set);
	free(map);
}

const struct imgmap_task *imgmap_task(const struct imgmap *map, int32_t pid)
{
	size_t i;

	for (i = 0; i < map->nr_tasks; i++)
		if (map->tasks[i].pid == pid)
			return &map->tasks[i];
	return NULL;
}

int imgmap_locate(const struct imgmap *map, int32_t pid, uint64_t img_vaddr, uint64_t len,
		  const void **data)
{
	const struct imgmap_task *t = imgmap_task(map, pid);
	size_t lo = 0, hi;

	if (!t)
		return -ESRCH;
	if (len == 0 || img_vaddr + len < img_vaddr)
		return -ERANGE;
	hi = t->nr_ranges;
	/* Last range starting at or below img_vaddr. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (t->ranges[mid].img_vaddr <= img_vaddr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return -ERANGE;
	{
		const struct imgmap_range *r = &t->ranges[lo - 1];
		const struct imgmap_file *f = &map->files[r->file];

		if (img_vaddr + len > r->img_vaddr + r->len)
			return -ERANGE;
		*data = (const uint8_t *)f->base + r->offset + (img_vaddr - r->img_vaddr);
	}
	return 0;
}

int imgmap_check(const struct imgmap *map, char *why, size_t len)
{
	const char *what = NULL;
	size_t i;

	for (i = 0; i < map->nr_files && !what; i++)
		what = imgmap_file_changed(&map->files[i]);
	if (!what)
		return 0;
	snprintf(why, len, "pages file %s changed while served (%s)", map->files[i - 1].path, what);
	return -ESTALE;
}
