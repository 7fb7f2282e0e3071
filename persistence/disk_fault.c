/*
 * disk_fault.c — the fault-injecting twin of the disk seam, for tests and
 * the simulator.
 *
 * It forwards every call to another disk and keeps, per file path, what a
 * power cut would keep: the size at the last successful fdatasync and an
 * undo log of bytes overwritten (or truncated away) below it since then.
 * "Crash" replays the undo logs backwards, cuts every file to its durable
 * size, removes files created since their directory was last synced, and
 * fails every later call with PS_EIO. A failed fdatasync rolls that file
 * back the same way (the kernel dropped its dirty pages), so a caller that
 * retried the sync and trusted it would lose data, which tests detect.
 *
 * Planned failures count calls from the moment they are planned. It is
 * thread-safe (one mutex); its own bookkeeping uses malloc freely: it is
 * test machinery, not a hot path.
 */
#include "persistence/internal.h"

/* Open descriptors tracked at once; tests open a handful. */
#define FAULT_FDS_MAX 256
/* Files tracked at once (segments of a test journal). */
#define FAULT_FILES_MAX 1024

typedef struct fault_undo {
	struct fault_undo *next; /* newer first */
	uint64_t offset;
	size_t length;
	unsigned char bytes[];
} fault_undo;

typedef struct fault_file {
	char path[PS_PATH_BYTES_MAX];
	uint64_t durable_size;
	bool created_unsynced; /* directory entry not yet synced */
	bool unlinked;
	fault_undo *undo;
} fault_file;

typedef struct fault_plan {
	uint64_t after; /* calls to let through first */
	uint64_t count; /* calls to fail then; 0: no plan */
	int code;
} fault_plan;

struct ps_fault_disk {
	ps_disk disk; /* what users get: ops below, ctx = this */
	const ps_disk *under;
	pthread_mutex_t mutex;
	bool crashed;
	fault_plan writes;
	fault_plan syncs;
	uint64_t short_every;
	ps_fault_stats stats;
	struct {
		int fd;
		fault_file *file;
	} fds[FAULT_FDS_MAX];
	fault_file *files[FAULT_FILES_MAX];
};

static fault_file *
file_find(ps_fault_disk *f, const char *path)
{
	for (int i = 0; i < FAULT_FILES_MAX; i++)
		if (f->files[i] != NULL && !f->files[i]->unlinked &&
			strcmp(f->files[i]->path, path) == 0)
			return f->files[i];
	return NULL;
}

static fault_file *
file_of_fd(ps_fault_disk *f, int fd)
{
	for (int i = 0; i < FAULT_FDS_MAX; i++)
		if (f->fds[i].file != NULL && f->fds[i].fd == fd)
			return f->fds[i].file;
	return NULL;
}

static bool
plan_fires(fault_plan *plan)
{
	if (plan->count == 0)
		return false;
	if (plan->after > 0) {
		plan->after--;
		return false;
	}
	if (plan->count != UINT64_MAX)
		plan->count--;
	return true;
}

/* Saves the bytes of [offset, offset+length) that lie below the durable
 * size, so a crash can put them back. */
static int
undo_save(ps_fault_disk *f, fault_file *file, int fd, uint64_t offset,
	uint64_t length)
{
	if (offset >= file->durable_size)
		return PS_OK;
	if (offset + length > file->durable_size)
		length = file->durable_size - offset;
	fault_undo *u = malloc(sizeof *u + length);
	if (u == NULL)
		return PS_ENOMEM;
	size_t got = 0;
	int rc = f->under->ops->pread(f->under->ctx, fd, u->bytes, length,
		offset, &got);
	if (rc != 0) {
		free(u);
		return rc;
	}
	u->offset = offset;
	u->length = got;
	u->next = file->undo;
	file->undo = u;
	return PS_OK;
}

/* Puts the file back to its last synced state, keeping `keep` bytes of
 * what was appended past it (UINT64_MAX: a random share of them drawn
 * from *seed). */
static void
file_rollback_keep(ps_fault_disk *f, fault_file *file, uint64_t *seed)
{
	const ps_disk_ops *ops = f->under->ops;
	int fd;
	if (ops->open(f->under->ctx, file->path, 0, &fd) != 0)
		return;
	uint64_t size = 0;
	ops->size(f->under->ctx, fd, &size);
	uint64_t keep = 0;
	if (seed != NULL && size > file->durable_size) {
		/* splitmix64: a draw per file, in file-slot order */
		uint64_t z = (*seed += 0x9e3779b97f4a7c15ull);
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		keep = (z ^ (z >> 31)) % (size - file->durable_size + 1);
	}
	if (size > file->durable_size)
		f->stats.bytes_dropped += size - file->durable_size - keep;
	while (file->undo != NULL) {
		fault_undo *u = file->undo;
		file->undo = u->next;
		ps_iovec v = {u->bytes, u->length};
		size_t written;
		ops->pwritev(f->under->ctx, fd, &v, 1, u->offset, &written);
		f->stats.bytes_dropped += u->length;
		free(u);
	}
	ops->truncate(f->under->ctx, fd, file->durable_size + keep);
	ops->close(f->under->ctx, fd);
}

static void
file_rollback(ps_fault_disk *f, fault_file *file)
{
	file_rollback_keep(f, file, NULL);
}

static int
fault_open(void *ctx, const char *path, uint32_t flags, int *fd_out)
{
	ps_fault_disk *f = ctx;
	const ps_disk_ops *ops = f->under->ops;
	pthread_mutex_lock(&f->mutex);
	int rc = PS_EIO;
	if (f->crashed)
		goto out;
	bool created = false;
	rc = ops->open(f->under->ctx, path, flags & ~PS_DISK_TRUNCATE, fd_out);
	if (rc == PS_ENOTFOUND && (flags & PS_DISK_CREATE)) {
		rc = ops->open(f->under->ctx, path, flags, fd_out);
		created = true;
	}
	if (rc != 0)
		goto out;
	fault_file *file = file_find(f, path);
	if (file == NULL) {
		int slot = 0;
		while (slot < FAULT_FILES_MAX && f->files[slot] != NULL)
			slot++;
		ps__assert(slot < FAULT_FILES_MAX);
		file = calloc(1, sizeof *file);
		ps__assert(file != NULL);
		snprintf(file->path, sizeof file->path, "%s", path);
		if (!created)
			ops->size(f->under->ctx, *fd_out, &file->durable_size);
		file->created_unsynced = created;
		f->files[slot] = file;
	}
	if ((flags & PS_DISK_TRUNCATE) && !created) {
		undo_save(f, file, *fd_out, 0, file->durable_size);
		ops->truncate(f->under->ctx, *fd_out, 0);
	}
	int i = 0;
	while (i < FAULT_FDS_MAX && f->fds[i].file != NULL)
		i++;
	ps__assert(i < FAULT_FDS_MAX);
	f->fds[i].fd = *fd_out;
	f->fds[i].file = file;
out:
	pthread_mutex_unlock(&f->mutex);
	return rc;
}

static int
fault_close(void *ctx, int fd)
{
	ps_fault_disk *f = ctx;
	pthread_mutex_lock(&f->mutex);
	for (int i = 0; i < FAULT_FDS_MAX; i++)
		if (f->fds[i].file != NULL && f->fds[i].fd == fd)
			f->fds[i].file = NULL;
	int rc = f->under->ops->close(f->under->ctx, fd);
	pthread_mutex_unlock(&f->mutex);
	return rc;
}

static int
fault_pwritev(void *ctx, int fd, const ps_iovec *iov, int iovcnt,
	uint64_t offset, size_t *written_out)
{
	ps_fault_disk *f = ctx;
	pthread_mutex_lock(&f->mutex);
	int rc = PS_EIO;
	f->stats.writes++;
	if (f->crashed)
		goto out;
	if (plan_fires(&f->writes)) {
		f->stats.faults++;
		rc = f->writes.code;
		goto out;
	}
	ps_iovec v[64];
	ps__assert(iovcnt > 0 && iovcnt <= 64);
	size_t total = 0;
	for (int i = 0; i < iovcnt; i++) {
		v[i] = iov[i];
		total += iov[i].length;
	}
	if (f->short_every != 0 && f->stats.writes % f->short_every == 0 &&
		total > 1) {
		/* Keep the first half of the bytes: drop whole tail iovecs and
		 * shorten the one that straddles the cut. */
		size_t keep = total / 2;
		int n = 0;
		size_t acc = 0;
		while (n < iovcnt && acc + v[n].length <= keep)
			acc += v[n++].length;
		if (acc < keep)
			v[n++].length = keep - acc;
		iovcnt = n;
		total = keep;
		f->stats.faults++;
	}
	fault_file *file = file_of_fd(f, fd);
	ps__assert(file != NULL);
	rc = undo_save(f, file, fd, offset, total);
	if (rc != 0)
		goto out;
	rc = f->under->ops->pwritev(f->under->ctx, fd, v, iovcnt, offset,
		written_out);
out:
	pthread_mutex_unlock(&f->mutex);
	return rc;
}

static int
fault_pread(void *ctx, int fd, void *buffer, size_t length, uint64_t offset,
	size_t *read_out)
{
	ps_fault_disk *f = ctx;
	pthread_mutex_lock(&f->mutex);
	int rc = f->crashed ? PS_EIO
			    : f->under->ops->pread(f->under->ctx, fd, buffer,
				      length, offset, read_out);
	pthread_mutex_unlock(&f->mutex);
	return rc;
}

static int
fault_fdatasync(void *ctx, int fd)
{
	ps_fault_disk *f = ctx;
	pthread_mutex_lock(&f->mutex);
	int rc = PS_EIO;
	f->stats.syncs++;
	if (f->crashed)
		goto out;
	fault_file *file = file_of_fd(f, fd);
	ps__assert(file != NULL);
	if (plan_fires(&f->syncs)) {
		f->stats.faults++;
		file_rollback(f, file);
		rc = f->syncs.code;
		goto out;
	}
	rc = f->under->ops->fdatasync(f->under->ctx, fd);
	if (rc != 0)
		goto out;
	while (file->undo != NULL) {
		fault_undo *u = file->undo;
		file->undo = u->next;
		free(u);
	}
	f->under->ops->size(f->under->ctx, fd, &file->durable_size);
out:
	pthread_mutex_unlock(&f->mutex);
	return rc;
}

static int
fault_size(void *ctx, int fd, uint64_t *size_out)
{
	ps_fault_disk *f = ctx;
	pthread_mutex_lock(&f->mutex);
	int rc = f->crashed ? PS_EIO
			    : f->under->ops->size(f->under->ctx, fd, size_out);
	pthread_mutex_unlock(&f->mutex);
	return rc;
}

static int
fault_truncate(void *ctx, int fd, uint64_t size)
{
	ps_fault_disk *f = ctx;
	pthread_mutex_lock(&f->mutex);
	int rc = PS_EIO;
	if (f->crashed)
		goto out;
	fault_file *file = file_of_fd(f, fd);
	ps__assert(file != NULL);
	if (size < file->durable_size) {
		rc = undo_save(f, file, fd, size, file->durable_size - size);
		if (rc != 0)
			goto out;
	}
	rc = f->under->ops->truncate(f->under->ctx, fd, size);
out:
	pthread_mutex_unlock(&f->mutex);
	return rc;
}

static int
fault_unlink(void *ctx, const char *path)
{
	ps_fault_disk *f = ctx;
	pthread_mutex_lock(&f->mutex);
	int rc = PS_EIO;
	if (f->crashed)
		goto out;
	rc = f->under->ops->unlink(f->under->ctx, path);
	fault_file *file = file_find(f, path);
	if (rc == 0 && file != NULL)
		file->unlinked = true;
out:
	pthread_mutex_unlock(&f->mutex);
	return rc;
}

static int
fault_rename(void *ctx, const char *from, const char *to)
{
	ps_fault_disk *f = ctx;
	pthread_mutex_lock(&f->mutex);
	int rc = f->crashed ? PS_EIO
			    : f->under->ops->rename(f->under->ctx, from, to);
	fault_file *file = rc == 0 ? file_find(f, from) : NULL;
	if (file != NULL)
		snprintf(file->path, sizeof file->path, "%s", to);
	pthread_mutex_unlock(&f->mutex);
	return rc;
}

static int
fault_mkdir(void *ctx, const char *path)
{
	ps_fault_disk *f = ctx;
	pthread_mutex_lock(&f->mutex);
	int rc = f->crashed ? PS_EIO
			    : f->under->ops->mkdir(f->under->ctx, path);
	pthread_mutex_unlock(&f->mutex);
	return rc;
}

static int
fault_sync_dir(void *ctx, const char *path)
{
	ps_fault_disk *f = ctx;
	pthread_mutex_lock(&f->mutex);
	int rc = PS_EIO;
	if (f->crashed)
		goto out;
	rc = f->under->ops->sync_dir(f->under->ctx, path);
	if (rc != 0)
		goto out;
	size_t n = strlen(path);
	for (int i = 0; i < FAULT_FILES_MAX; i++) {
		fault_file *file = f->files[i];
		if (file != NULL && strncmp(file->path, path, n) == 0 &&
			file->path[n] == '/')
			file->created_unsynced = false;
	}
out:
	pthread_mutex_unlock(&f->mutex);
	return rc;
}

static int
fault_list(void *ctx, const char *path, ps_disk_list_callback cb, void *arg)
{
	ps_fault_disk *f = ctx;
	pthread_mutex_lock(&f->mutex);
	bool crashed = f->crashed;
	pthread_mutex_unlock(&f->mutex);
	if (crashed)
		return PS_EIO;
	return f->under->ops->list(f->under->ctx, path, cb, arg);
}

static const ps_disk_ops fault_ops = {
	.open = fault_open,
	.close = fault_close,
	.pwritev = fault_pwritev,
	.pread = fault_pread,
	.fdatasync = fault_fdatasync,
	.size = fault_size,
	.truncate = fault_truncate,
	.unlink = fault_unlink,
	.rename = fault_rename,
	.mkdir = fault_mkdir,
	.sync_dir = fault_sync_dir,
	.list = fault_list,
};

int
ps_fault_disk_create(const ps_disk *under, ps_fault_disk **out)
{
	ps__assert(under != NULL);
	ps__assert(out != NULL);
	ps_fault_disk *f = calloc(1, sizeof *f);
	if (f == NULL)
		return PS_ENOMEM;
	f->under = under;
	f->disk.ops = &fault_ops;
	f->disk.ctx = f;
	pthread_mutex_init(&f->mutex, NULL);
	*out = f;
	return PS_OK;
}

void
ps_fault_disk_destroy(ps_fault_disk *f)
{
	if (f == NULL)
		return;
	for (int i = 0; i < FAULT_FILES_MAX; i++) {
		fault_file *file = f->files[i];
		if (file == NULL)
			continue;
		while (file->undo != NULL) {
			fault_undo *u = file->undo;
			file->undo = u->next;
			free(u);
		}
		free(file);
	}
	pthread_mutex_destroy(&f->mutex);
	free(f);
}

const ps_disk *
ps_fault_disk_disk(ps_fault_disk *f)
{
	ps__assert(f != NULL);
	return &f->disk;
}

void
ps_fault_disk_fail_writes(ps_fault_disk *f, uint64_t after, uint64_t count,
	int code)
{
	ps__assert(code == PS_EIO || code == PS_ENOSPC);
	pthread_mutex_lock(&f->mutex);
	f->writes = (fault_plan){after, count, code};
	pthread_mutex_unlock(&f->mutex);
}

void
ps_fault_disk_fail_syncs(ps_fault_disk *f, uint64_t after, uint64_t count,
	int code)
{
	ps__assert(code == PS_EIO || code == PS_ENOSPC);
	pthread_mutex_lock(&f->mutex);
	f->syncs = (fault_plan){after, count, code};
	pthread_mutex_unlock(&f->mutex);
}

void
ps_fault_disk_short_writes(ps_fault_disk *f, uint64_t every)
{
	pthread_mutex_lock(&f->mutex);
	f->short_every = every;
	pthread_mutex_unlock(&f->mutex);
}

void
ps_fault_disk_heal(ps_fault_disk *f)
{
	pthread_mutex_lock(&f->mutex);
	memset(&f->writes, 0, sizeof f->writes);
	memset(&f->syncs, 0, sizeof f->syncs);
	f->short_every = 0;
	pthread_mutex_unlock(&f->mutex);
}

static void
crash(ps_fault_disk *f, uint64_t *seed)
{
	pthread_mutex_lock(&f->mutex);
	for (int i = 0; i < FAULT_FILES_MAX; i++) {
		fault_file *file = f->files[i];
		if (file == NULL || file->unlinked)
			continue;
		if (file->created_unsynced) {
			f->under->ops->unlink(f->under->ctx, file->path);
			file->unlinked = true;
			continue;
		}
		file_rollback_keep(f, file, seed);
	}
	f->crashed = true;
	pthread_mutex_unlock(&f->mutex);
}

void
ps_fault_disk_crash(ps_fault_disk *f)
{
	crash(f, NULL);
}

void
ps_fault_disk_crash_torn(ps_fault_disk *f, uint64_t seed)
{
	crash(f, &seed);
}

void
ps_fault_disk_stats(ps_fault_disk *f, ps_fault_stats *out)
{
	pthread_mutex_lock(&f->mutex);
	*out = f->stats;
	pthread_mutex_unlock(&f->mutex);
}
