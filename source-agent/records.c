// SPDX-License-Identifier: GPL-2.0-or-later
#include "records.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "log.h"
#include "safepath.h"
#include "util.h"

#define REC_DIR	    ".records"
#define REC_VERSION 1
/* A record is a few hundred bytes; anything past this is not one of ours. */
#define REC_MAX_BYTES (64 * 1024)

struct src_records {
	int dirfd;
	char path[PATH_MAX];
};

int src_records_open(int root_fd, const char *root_path, struct src_records **out)
{
	struct src_records *r;
	int ret;

	*out = NULL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->dirfd = -1;
	if (snprintf(r->path, sizeof(r->path), "%s/%s", root_path, REC_DIR) >=
	    (int)sizeof(r->path)) {
		ret = -ENAMETOOLONG;
		goto out;
	}
	r->dirfd = safepath_mkdir(root_fd, REC_DIR, 0700);
	if (r->dirfd == -EEXIST)
		r->dirfd = safepath_openat(root_fd, REC_DIR, O_RDONLY | O_DIRECTORY, 0);
	ret = r->dirfd < 0 ? r->dirfd : safepath_check_trusted(r->dirfd);
out:
	if (ret < 0) {
		log_err("records: %s: %s", r->path, safepath_strerror(ret));
		src_records_close(r);
		return ret;
	}
	*out = r;
	return 0;
}

void src_records_close(struct src_records *r)
{
	if (!r)
		return;
	if (r->dirfd >= 0)
		close(r->dirfd);
	free(r);
}

const char *src_records_path(const struct src_records *r)
{
	return r->path;
}

/* name replaced by len bytes of buf, atomically and durably (see records.h). */
static int rec_write(struct src_records *r, const char *name, const void *buf, size_t len)
{
	char tmp[NAME_MAX + 1];
	const char *p = buf;
	int fd, ret = 0;
	ssize_t n;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", name) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	/* A crash may have left one: it was never renamed, so nothing refers to it. */
	if (unlinkat(r->dirfd, tmp, 0) < 0 && errno != ENOENT)
		return -errno;
	fd = openat(r->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	while (len > 0) {
		n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = n < 0 ? -errno : -EIO;
			goto out;
		}
		p += n;
		len -= (size_t)n;
	}
	if (fsync(fd) < 0) {
		ret = -errno;
		goto out;
	}
	if (renameat(r->dirfd, tmp, r->dirfd, name) < 0) {
		ret = -errno;
		goto out;
	}
	if (fsync(r->dirfd) < 0)
		ret = -errno;
out:
	close(fd);
	if (ret < 0)
		unlinkat(r->dirfd, tmp, 0);
	return ret;
}

static json_t *rec_criu_json(const struct src_criu_opts *c)
{
	return json_pack("{s:b, s:b, s:b, s:b, s:b, s:b, s:s, s:i}", "shell_job", c->shell_job,
			 "tcp_established", c->tcp_established, "ext_unix_sk", c->ext_unix_sk,
			 "file_locks", c->file_locks, "link_remap", c->link_remap, "leave_running",
			 c->leave_running, "manage_cgroups", c->manage_cgroups, "log_level",
			 c->log_level);
}

/* m's pre-copy: the mode, each round's figures, the final dump's pages; null when off. */
static json_t *rec_precopy_json(const struct src_migration *m)
{
	json_t *rounds, *r;
	size_t i;

	if (m->precopy == API_PRECOPY_OFF)
		return json_null();
	rounds = json_array();
	for (i = 0; rounds && i < m->nr_rounds; i++) {
		r = json_pack("{s:I, s:I, s:I, s:I}", "pages", (json_int_t)m->rounds[i].pages,
			      "bytes", (json_int_t)m->rounds[i].bytes, "ms",
			      (json_int_t)m->rounds[i].ms, "dirty_rate",
			      (json_int_t)m->rounds[i].dirty_rate);
		if (!r || json_array_append_new(rounds, r) < 0) {
			json_decref(rounds);
			return NULL;
		}
	}
	if (!rounds)
		return NULL;
	return json_pack("{s:i, s:o, s:I}", "mode", m->precopy, "rounds", rounds, "final_pages",
			 (json_int_t)m->final_pages);
}

/* A record's "precopy" into rec: a mode the API takes, at most API_PRECOPY_MAX rounds. */
static int rec_parse_precopy(json_t *p, struct src_record *rec)
{
	json_int_t mode, final, pages, bytes, ms, rate;
	json_t *rounds, *r;
	size_t i;

	if (json_unpack(p, "{s:I, s:o, s:I}", "mode", &mode, "rounds", &rounds, "final_pages",
			&final) < 0 ||
	    !json_is_array(rounds) || json_array_size(rounds) > API_PRECOPY_MAX ||
	    (mode != API_PRECOPY_AUTO && (mode < 1 || mode > API_PRECOPY_MAX)) || final < -1)
		return -EINVAL;
	json_array_foreach(rounds, i, r)
	{
		if (json_unpack(r, "{s:I, s:I, s:I, s:I}", "pages", &pages, "bytes", &bytes, "ms",
				&ms, "dirty_rate", &rate) < 0 ||
		    pages < 0 || bytes < 0 || ms < -1 || rate < 0)
			return -EINVAL;
		rec->rounds[i] = (struct api_precopy_round){
		    .pages = (uint64_t)pages,
		    .bytes = (uint64_t)bytes,
		    .ms = ms,
		    .dirty_rate = (uint64_t)rate,
		};
	}
	rec->precopy = (int)mode;
	rec->nr_rounds = json_array_size(rounds);
	rec->final_pages = final;
	return 0;
}

/* A lazy dump's tree and page server, or null. */
static json_t *rec_lazy_json(const struct src_migration *m)
{
	if (!m->lazy_dump)
		return json_null();
	return json_pack("{s:I, s:i}", "tree_start", (json_int_t)m->lazy_tree_start, "port",
			 m->lazy_port);
}

static int rec_parse_lazy(json_t *l, struct src_record *rec)
{
	json_int_t start;
	int port;

	if (json_unpack(l, "{s:I, s:i}", "tree_start", &start, "port", &port) < 0 || start < 0 ||
	    port < 0 || port > 65535)
		return -EINVAL;
	rec->lazy_dump = true;
	rec->lazy_tree_start = (uint64_t)start;
	rec->lazy_port = port;
	return 0;
}

static json_t *rec_json(const struct src_migration *m)
{
	json_t *j, *ctr, *pre, *lazy, *criu = rec_criu_json(&m->criu);
	char digest[24];

	if (!criu)
		return NULL;
	snprintf(digest, sizeof(digest), "%016" PRIx64, m->digest);
	ctr = m->ctr.id[0] ? json_pack("{s:s, s:s, s:s}", "id", m->ctr.id, "root", m->ctr.root,
				       "bundle", m->ctr.bundle)
			   : json_null();
	pre = rec_precopy_json(m);
	lazy = rec_lazy_json(m);
	if (!ctr || !pre || !lazy) {
		json_decref(criu);
		json_decref(ctr);
		json_decref(pre);
		json_decref(lazy);
		return NULL;
	}
	j = json_pack(
	    "{s:i, s:s, s:s, s:s, s:I, s:o, s:s, s:s, s:b, s:b, s:b, s:o, s:I, s:I, "
	    "s:I, s:I, s:I, s:s, s:o, s:o, s:o, s:{s:I, s:I, s:I}}",
	    "version", REC_VERSION, "id", m->id, "state", src_mig_state_str(m->state), "images_dir",
	    m->dir, "pid", (json_int_t)m->pid, "dest", m->dest ? json_string(m->dest) : json_null(),
	    "peer", m->peer, "error", m->error, "images_complete", m->images_complete, "verify",
	    m->verify, "restore_interrupted", m->restore_interrupted, "criu_opts", criu,
	    "created_unix_ms", (json_int_t)m->created_unix_ms, "finished_unix_ms",
	    (json_int_t)m->finished_unix_ms, "freeze_ms", (json_int_t)m->freeze_ms, "handover_ms",
	    (json_int_t)m->handover_ms, "lazy_bytes", (json_int_t)m->lazy_bytes, "digest", digest,
	    "container", ctr, "precopy", pre, "lazy_dump", lazy, "pause", "count",
	    (json_int_t)m->pauses, "total_ms", (json_int_t)(m->paused_ns / 1000000),
	    "since_unix_ms", (json_int_t)m->pause_since_unix_ms);
	return j;
}

/* The secret beside the record: written once, while the migration may still be served. */
static int rec_save_secret(struct src_records *r, const struct src_migration *m, const char *name)
{
	uint8_t buf[AUTH_SECRET_MAX];
	struct stat st;
	size_t len;
	int ret;

	if (fstatat(r->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
		return 0;
	ret = auth_secret_copy(m->secret, buf, sizeof(buf), &len);
	if (ret == 0)
		ret = rec_write(r, name, buf, len);
	OPENSSL_cleanse(buf, sizeof(buf));
	return ret;
}

int src_records_save(struct src_records *r, const struct src_migration *m)
{
	char name[NAME_MAX + 1], sname[NAME_MAX + 1];
	char *text = NULL;
	json_t *j = NULL;
	int ret;

	snprintf(name, sizeof(name), "%s.json", m->id);
	snprintf(sname, sizeof(sname), "%s.secret", m->id);
	if (src_mig_final(m) || !m->secret) {
		if (unlinkat(r->dirfd, sname, 0) < 0 && errno != ENOENT) {
			ret = -errno;
			goto out;
		}
	} else {
		/* Before the record: a record that says "serving" always has its secret. */
		ret = rec_save_secret(r, m, sname);
		if (ret < 0)
			goto out;
	}
	j = rec_json(m);
	text = j ? json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
	ret = text ? rec_write(r, name, text, strlen(text)) : -ENOMEM;
out:
	if (ret < 0)
		log_err("migration %s: cannot write its record in %s: %s (a restarted agent "
			"would find it as it was before)",
			m->id, r->path, strerror(-ret));
	free(text);
	json_decref(j);
	return ret;
}

void src_records_forget(struct src_records *r, const char *id)
{
	char name[NAME_MAX + 1];
	const char *ext[] = {"json", "secret"};
	size_t i;

	for (i = 0; i < sizeof(ext) / sizeof(ext[0]); i++) {
		snprintf(name, sizeof(name), "%s.%s", id, ext[i]);
		if (unlinkat(r->dirfd, name, 0) < 0 && errno != ENOENT)
			log_warn("records: cannot remove %s/%s: %s", r->path, name,
				 strerror(errno));
	}
}

/* The whole of a small regular file of root's beneath the records directory. */
static int rec_read(struct src_records *r, const char *name, char **out, size_t *len)
{
	struct stat st;
	int fd, ret;

	*out = NULL;
	fd = safepath_openat(r->dirfd, name, O_RDONLY | O_NONBLOCK, 0);
	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > REC_MAX_BYTES) {
		ret = -EINVAL;
		goto out;
	}
	if ((st.st_uid != 0 && st.st_uid != geteuid()) || (st.st_mode & 077)) {
		ret = -EACCES;
		goto out;
	}
	ret = read_fd_whole(fd, &st, out, len);
out:
	close(fd);
	return ret;
}

static int rec_parse_criu(json_t *c, struct src_criu_opts *o)
{
	const char *cg = "";
	int shell, tcp, unix_sk, locks, remap, leave, level = -1;

	if (json_unpack(c, "{s:b, s:b, s:b, s:b, s:b, s:b, s:s, s:i}", "shell_job", &shell,
			"tcp_established", &tcp, "ext_unix_sk", &unix_sk, "file_locks", &locks,
			"link_remap", &remap, "leave_running", &leave, "manage_cgroups", &cg,
			"log_level", &level) < 0)
		return -EINVAL;
	if (strlen(cg) >= sizeof(o->manage_cgroups) || level < -1 || level > 4)
		return -EINVAL;
	o->shell_job = shell;
	o->tcp_established = tcp;
	o->ext_unix_sk = unix_sk;
	o->file_locks = locks;
	o->link_remap = remap;
	o->leave_running = leave;
	snprintf(o->manage_cgroups, sizeof(o->manage_cgroups), "%s", cg);
	o->log_level = level;
	return 0;
}

/* A container migration's {id, root, bundle}: a valid id, absolute bundle. */
static int rec_parse_container(json_t *c, struct src_container *o)
{
	const char *id, *root, *bundle;

	if (json_unpack(c, "{s:s, s:s, s:s}", "id", &id, "root", &root, "bundle", &bundle) < 0 ||
	    !container_id_valid(id) || bundle[0] != '/' || (root[0] && root[0] != '/') ||
	    strlen(root) >= sizeof(o->root) || strlen(bundle) >= sizeof(o->bundle))
		return -EINVAL;
	snprintf(o->id, sizeof(o->id), "%s", id);
	snprintf(o->root, sizeof(o->root), "%s", root);
	snprintf(o->bundle, sizeof(o->bundle), "%s", bundle);
	return 0;
}

/* A record's "pause" into rec (absent in records written before it was kept). */
static int rec_parse_pause(json_t *p, struct src_record *rec)
{
	json_int_t count, total, since;

	if (json_unpack(p, "{s:I, s:I, s:I}", "count", &count, "total_ms", &total, "since_unix_ms",
			&since) < 0 ||
	    count < 0 || count > UINT32_MAX || total < 0 || since < 0)
		return -EINVAL;
	rec->pauses = (uint32_t)count;
	rec->paused_ms = total;
	rec->pause_since_unix_ms = since;
	return 0;
}

/* j (the record file name's id) into rec; its strings stay j's. */
static int rec_parse(json_t *j, const char *id, struct src_record *rec, const char **why)
{
	json_int_t version, pid, created, finished, freeze, handover, lazy;
	const char *rid, *state, *dir, *peer, *error, *digest;
	char *end;
	int complete, verify, interrupted;
	json_t *dest, *criu, *ctr = NULL, *pre = NULL, *pause = NULL, *lz = NULL;

	if (json_unpack(j,
			"{s:I, s:s, s:s, s:s, s:I, s:o, s:s, s:s, s:b, s:b, s:b, s:o, s:I, s:I, "
			"s:I, s:I, s:I, s:s, s?o, s?o, s?o, s?o}",
			"version", &version, "id", &rid, "state", &state, "images_dir", &dir, "pid",
			&pid, "dest", &dest, "peer", &peer, "error", &error, "images_complete",
			&complete, "verify", &verify, "restore_interrupted", &interrupted,
			"criu_opts", &criu, "created_unix_ms", &created, "finished_unix_ms",
			&finished, "freeze_ms", &freeze, "handover_ms", &handover, "lazy_bytes",
			&lazy, "digest", &digest, "container", &ctr, "precopy", &pre, "pause",
			&pause, "lazy_dump", &lz) < 0) {
		*why = "a field is missing or of the wrong type";
		return -EINVAL;
	}
	if (version != REC_VERSION) {
		*why = "an unknown record version";
		return -EINVAL;
	}
	if (strcmp(rid, id) != 0) {
		*why = "its id is not its file's name";
		return -EINVAL;
	}
	if (src_mig_state_parse(state, &rec->state) < 0) {
		*why = "an unknown state";
		return -EINVAL;
	}
	if (dir[0] != '/' || pid < 0 || pid > INT_MAX || lazy < 0 ||
	    (!json_is_null(dest) && !json_is_string(dest))) {
		*why = "a value out of range";
		return -EINVAL;
	}
	errno = 0;
	rec->digest = strtoull(digest, &end, 16);
	if (errno || *end || strlen(digest) != 16) {
		*why = "a bad digest";
		return -EINVAL;
	}
	if (rec_parse_criu(criu, &rec->criu) < 0) {
		*why = "bad criu_opts";
		return -EINVAL;
	}
	if (ctr && !json_is_null(ctr) && rec_parse_container(ctr, &rec->ctr) < 0) {
		*why = "a bad container";
		return -EINVAL;
	}
	rec->final_pages = -1;
	if (pre && !json_is_null(pre) && rec_parse_precopy(pre, rec) < 0) {
		*why = "a bad precopy";
		return -EINVAL;
	}
	if (pause && !json_is_null(pause) && rec_parse_pause(pause, rec) < 0) {
		*why = "a bad pause";
		return -EINVAL;
	}
	if (lz && !json_is_null(lz) && rec_parse_lazy(lz, rec) < 0) {
		*why = "a bad lazy_dump";
		return -EINVAL;
	}
	snprintf(rec->id, sizeof(rec->id), "%s", id);
	rec->dir = dir;
	rec->dest = json_is_string(dest) ? json_string_value(dest) : NULL;
	rec->peer = peer;
	rec->error = error;
	rec->pid = (pid_t)pid;
	rec->images_complete = complete;
	rec->verify = verify;
	rec->restore_interrupted = interrupted;
	rec->created_unix_ms = created;
	rec->finished_unix_ms = finished;
	rec->freeze_ms = freeze;
	rec->handover_ms = handover;
	rec->lazy_bytes = (uint64_t)lazy;
	return 0;
}

/* id's secret file, when there is one; a missing one leaves *out NULL. */
static int rec_load_secret(struct src_records *r, const char *id, struct auth_secret **out)
{
	char name[NAME_MAX + 1];
	size_t len = 0;
	char *buf;
	int ret;

	*out = NULL;
	snprintf(name, sizeof(name), "%s.secret", id);
	ret = rec_read(r, name, &buf, &len);
	if (ret == -ENOENT)
		return 0;
	if (ret < 0)
		return ret;
	ret = auth_secret_from_buf(buf, len, out);
	OPENSSL_cleanse(buf, len);
	free(buf);
	return ret;
}

/* One record file: parsed and handed to fn, or logged. 0, or -EINVAL when skipped. */
static int rec_load_one(struct src_records *r, const char *name, src_records_fn fn, void *arg)
{
	struct src_record rec = {.secret = NULL};
	char id[AUTH_MIGRATION_ID_MAX + 1];
	const char *why = NULL;
	json_error_t jerr;
	json_t *j = NULL;
	size_t len, nlen = strlen(name) - strlen(".json");
	char *text = NULL;
	int ret;

	if (nlen >= sizeof(id)) {
		why = "its name is not a migration id";
		ret = -EINVAL;
		goto out;
	}
	memcpy(id, name, nlen);
	id[nlen] = '\0';
	if (!migration_id_valid(id)) {
		why = "its name is not a migration id";
		ret = -EINVAL;
		goto out;
	}
	ret = rec_read(r, name, &text, &len);
	if (ret < 0) {
		why = ret == -EACCES   ? "not root's, or readable by others"
		      : ret == -EINVAL ? "not a regular file of at most 64 KiB"
				       : strerror(-ret);
		goto out;
	}
	j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j) {
		why = "not JSON";
		ret = -EINVAL;
		goto out;
	}
	ret = rec_parse(j, id, &rec, &why);
	if (ret < 0)
		goto out;
	if (!src_mig_final_state(rec.state)) {
		ret = rec_load_secret(r, id, &rec.secret);
		if (ret < 0) {
			why = "its secret file is unusable";
			goto out;
		}
	}
	fn(arg, &rec);
	ret = 0;
out:
	if (ret < 0) {
		log_err("records: %s/%s skipped: %s", r->path, name, why ? why : strerror(-ret));
		ret = -EINVAL;
	}
	auth_secret_free(rec.secret);
	json_decref(j);
	free(text);
	return ret;
}

static bool rec_has_suffix(const char *name, const char *suffix)
{
	size_t n = strlen(name), s = strlen(suffix);

	return n > s && strcmp(name + n - s, suffix) == 0;
}

int src_records_load(struct src_records *r, src_records_fn fn, void *arg)
{
	struct dirent *de;
	int ret, skipped = 0;
	DIR *d;

	ret = opendir_at(r->dirfd, &d);
	if (ret < 0)
		return ret;
	while ((de = readdir(d)) != NULL) {
		if (rec_has_suffix(de->d_name, ".tmp")) {
			/* Never renamed into place: a write the agent did not finish. */
			unlinkat(r->dirfd, de->d_name, 0);
			continue;
		}
		if (!rec_has_suffix(de->d_name, ".json"))
			continue;
		if (rec_load_one(r, de->d_name, fn, arg) < 0)
			skipped++;
	}
	closedir(d);
	return skipped;
}
