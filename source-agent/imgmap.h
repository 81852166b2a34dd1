/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * imgmap: a CRIU images directory mapped for serving.
 *
 * Opens the images with image_set_open(), maps every pages-<id>.img
 * read-only and private (the mapping ibv_reg_mr accepts for REMOTE_READ on
 * a read-only file), and computes an xxh3-64 checksum of every lazy range
 * and, optionally, of every lazy page, so the destination can verify what
 * it fetched.  The checkpoint is never modified.  A pre-copy chain (a
 * dump with a `parent` link, image.h) is served from every round's pages
 * file, each mapped and registered on its own, and its flat images for
 * the destination are written beside it (imgflat.h).
 *
 * Ownership: imgmap_open() returns a map the caller frees with
 * imgmap_close(); the image set, mappings and tables inside belong to it.
 * Memory regions registered over the mappings must be deregistered before
 * imgmap_close().
 *
 * Pages files that change while served (truncated, rewritten, replaced,
 * turned into a FIFO) must not kill the agent: every CPU read of a mapping
 * goes through imgmap_copy() or the checksumming in imgmap_open() and
 * imgmap_file_xxh3(), which turn the SIGBUS of a truncated file into
 * -EFAULT, and imgmap_check() notices any other change.  The migration then fails; the agent lives.
 * See the comment at the top of imgmap.c for why this way.
 *
 * Threading: imgmap_open() reads every byte of the lazy ranges, which
 * takes as long as reading the pages files once; the source agent runs it
 * on its offload thread (offload.h), never in the event loop.  A map is
 * used by one thread at a time; it holds no reference to anything else.
 */
#ifndef RDMIG_IMGMAP_H
#define RDMIG_IMGMAP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "image.h"

struct imgmap_file {
	uint32_t pages_id;
	char *path;
	void *base; /* NULL for an empty file */
	size_t len;
	int fd;	   /* the file mapped, kept open for imgmap_check(); -1 */
	dev_t dev; /* what it was when mapped */
	ino_t ino;
	struct timespec mtime;
};

/* One lazy range of one task, ready to advertise. */
struct imgmap_range {
	uint64_t img_vaddr;
	uint64_t len;
	uint32_t file;	       /* index into imgmap.files */
	uint64_t offset;       /* in that file */
	uint64_t csum;	       /* xxh3-64 of the range's bytes */
	uint64_t *page_hashes; /* page tags (msgauth.h), len / 4096 entries, or NULL */
};

struct imgmap_task {
	int32_t pid;
	struct imgmap_range *ranges; /* sorted by img_vaddr */
	size_t nr_ranges;
};

struct imgmap {
	struct img_set *set;
	struct imgmap_file *files;
	size_t nr_files;
	struct imgmap_task *tasks;
	size_t nr_tasks;
	uint64_t lazy_bytes;
	uint64_t digest; /* xxh3-64 over every range checksum, in table order */
	/*
	 * imgmap_open_lazy(): the images of criu dump --lazy-pages, whose lazy
	 * pages are only in the dump's page server: no file mapped, no range
	 * in the tasks (lazystage.h cuts and pulls them), digest 0.
	 */
	bool lazy_dump;
};

/*
 * Maps and checksums the images in dir; with page_key (NULL: none) also
 * tags every lazy page with it (msgauth_page_tag()).  stop (NULL: never)
 * is polled between steps of at most 16 MiB: once it is set the open gives
 * up with -ECANCELED.  Errors are logged with the file involved.
 */
int imgmap_open(const char *dir, const uint8_t *page_key, const atomic_bool *stop,
		struct imgmap **out);
/*
 * The images of a lazy dump: parsed, lazy_bytes summed, nothing mapped;
 * -EBADMSG when a lazy range has its pages in the images.
 */
int imgmap_open_lazy(const char *dir, const atomic_bool *stop, struct imgmap **out);
void imgmap_close(struct imgmap *map);

const struct imgmap_task *imgmap_task(const struct imgmap *map, int32_t pid);

/*
 * Finds the bytes of [img_vaddr, img_vaddr + len) of task pid.  The span must
 * lie inside one lazy range; anything else is -ERANGE (-ESRCH for an unknown
 * pid), so a peer can only ever read checkpoint pages it was offered.
 */
int imgmap_locate(const struct imgmap *map, int32_t pid, uint64_t img_vaddr, uint64_t len,
		  const void **data);

/*
 * memcpy() from a mapping of map's (src as imgmap_locate() gave it):
 * -EFAULT instead of a SIGBUS when the file shrank under the mapping.  Any
 * thread.
 */
int imgmap_copy(void *dst, const void *src, size_t len);

/*
 * Whether every pages file is still the one mapped, with the same size and
 * modification time: 0, or -ESTALE with why (naming the file) in why.
 */
int imgmap_check(const struct imgmap *map, char *why, size_t len);

/*
 * One pages file on its own: a pre-copy round's, mapped when the round
 * ended so that its registration is out of the freeze (prereg.h).
 * imgmap_file_open() maps path into f as imgmap_open() maps each of its
 * files (regular, not world-writable, no symbolic link); f is the
 * caller's, imgmap_file_close() releases it (also after a failed open).
 */
int imgmap_file_open(const char *path, struct imgmap_file *f);
void imgmap_file_close(struct imgmap_file *f);
/* Whether a and b were mapped from the same file as it was then (inode, size, mtime). */
bool imgmap_file_same(const struct imgmap_file *a, const struct imgmap_file *b);
/* NULL while f's path still names the file mapped, unchanged; else what changed. */
const char *imgmap_file_changed(const struct imgmap_file *f);
/*
 * Maps every pages-*.img of the pre-dump round in dir: *files (*n of
 * them) are the caller's, released with imgmap_files_free().
 */
int imgmap_round_open(const char *dir, struct imgmap_file **files, size_t *n);
void imgmap_files_free(struct imgmap_file *files, size_t n);
/*
 * The XXH3-64 of all of f's mapped bytes, read under the SIGBUS guard:
 * -EFAULT (logged) when the file shrank under the mapping.  Any thread.
 */
int imgmap_file_xxh3(const struct imgmap_file *f, uint64_t *xxh3);
/*
 * Which of map's files each of the n files pre is (same path): idx[j] is
 * its index in map->files, or -1 when the chain no longer needs it (a
 * round whose pages later rounds all rewrote).  -ESTALE, logged, when a
 * path names another file than pre's now: a round's file must not change
 * once its round ended.
 */
int imgmap_match(const struct imgmap *map, const struct imgmap_file *pre, size_t n, ssize_t *idx);

#endif
