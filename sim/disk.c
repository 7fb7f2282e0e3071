/*
 * sim/disk.c — each node's disk: a hashing layer over persistence's fault
 * disk over the real one, in the run's directory.
 *
 * The hashing layer sees every operation the journal asks for and what
 * it got back (offsets, lengths, CRCs of the bytes written, result codes)
 * and mixes them into the run's hash, so two runs of a seed agree on the
 * disk's whole history or the determinism check says where they parted.
 * Paths are hashed relative to the run's directory (which differs from
 * run to run); descriptors are never hashed (the process picks them).
 *
 * Faults come from the fault disk below (planned per journal step by
 * faults.c; a crash rolls unsynced bytes back, or keeps a torn prefix).
 * Snapshots (LMDB) do not go through this seam; see the README's gaps.
 */
#include "sim/internal.h"

enum {
	OP_OPEN = 1, OP_CLOSE, OP_WRITE, OP_READ, OP_SYNC, OP_SIZE,
	OP_TRUNCATE, OP_UNLINK, OP_RENAME, OP_MKDIR, OP_SYNC_DIR, OP_LIST,
};

static const ps_disk *
below(const sim_disk *d)
{
	return ps_fault_disk_disk(d->fault);
}

static void
note(sim_disk *d, uint32_t op, uint64_t a, uint64_t b, int rc)
{
	sim__hash(d->w, (uint64_t)d->node << 32 | op, a,
		b ^ (uint64_t)(uint32_t)rc << 40);
}

static uint64_t
path_hash(const sim_disk *d, const char *path)
{
	size_t n = strlen(path);
	size_t skip = n >= d->prefix_bytes ? d->prefix_bytes : 0;
	return sim__hash_bytes(0, path + skip, n - skip);
}

static int
d_open(void *ctx, const char *path, uint32_t flags, int *fd_out)
{
	sim_disk *d = ctx;
	int rc = below(d)->ops->open(below(d)->ctx, path, flags, fd_out);
	note(d, OP_OPEN, path_hash(d, path), flags, rc);
	return rc;
}

static int
d_close(void *ctx, int fd)
{
	sim_disk *d = ctx;
	int rc = below(d)->ops->close(below(d)->ctx, fd);
	note(d, OP_CLOSE, 0, 0, rc);
	return rc;
}

static int
d_pwritev(void *ctx, int fd, const ps_iovec *iov, int iovcnt,
	uint64_t offset, size_t *written_out)
{
	sim_disk *d = ctx;
	uint64_t h = 0;
	for (int i = 0; i < iovcnt; i++)
		h = sim__hash_bytes(h, iov[i].base, iov[i].length);
	size_t written = 0;
	int rc = below(d)->ops->pwritev(below(d)->ctx, fd, iov, iovcnt, offset,
		&written);
	*written_out = written;
	note(d, OP_WRITE, offset ^ h, written, rc);
	return rc;
}

static int
d_pread(void *ctx, int fd, void *buffer, size_t length, uint64_t offset,
	size_t *read_out)
{
	sim_disk *d = ctx;
	size_t got = 0;
	int rc = below(d)->ops->pread(below(d)->ctx, fd, buffer, length, offset,
		&got);
	*read_out = got;
	note(d, OP_READ, offset, got, rc);
	return rc;
}

static int
d_fdatasync(void *ctx, int fd)
{
	sim_disk *d = ctx;
	int rc = below(d)->ops->fdatasync(below(d)->ctx, fd);
	note(d, OP_SYNC, 0, 0, rc);
	return rc;
}

static int
d_size(void *ctx, int fd, uint64_t *size_out)
{
	sim_disk *d = ctx;
	uint64_t size = 0;
	int rc = below(d)->ops->size(below(d)->ctx, fd, &size);
	*size_out = size;
	note(d, OP_SIZE, size, 0, rc);
	return rc;
}

static int
d_truncate(void *ctx, int fd, uint64_t size)
{
	sim_disk *d = ctx;
	int rc = below(d)->ops->truncate(below(d)->ctx, fd, size);
	note(d, OP_TRUNCATE, size, 0, rc);
	return rc;
}

static int
d_unlink(void *ctx, const char *path)
{
	sim_disk *d = ctx;
	int rc = below(d)->ops->unlink(below(d)->ctx, path);
	note(d, OP_UNLINK, path_hash(d, path), 0, rc);
	return rc;
}

static int
d_rename(void *ctx, const char *from, const char *to)
{
	sim_disk *d = ctx;
	int rc = below(d)->ops->rename(below(d)->ctx, from, to);
	note(d, OP_RENAME, path_hash(d, from), path_hash(d, to), rc);
	return rc;
}

static int
d_mkdir(void *ctx, const char *path)
{
	sim_disk *d = ctx;
	int rc = below(d)->ops->mkdir(below(d)->ctx, path);
	note(d, OP_MKDIR, path_hash(d, path), 0, rc);
	return rc;
}

static int
d_sync_dir(void *ctx, const char *path)
{
	sim_disk *d = ctx;
	int rc = below(d)->ops->sync_dir(below(d)->ctx, path);
	note(d, OP_SYNC_DIR, path_hash(d, path), 0, rc);
	return rc;
}

/* Entries come in the file system's order, which no decision may see:
 * the journal sorts them, and the hash takes an order-free sum. */
typedef struct list_pass {
	ps_disk_list_callback cb;
	void *arg;
	uint64_t sum;
	uint64_t count;
} list_pass;

static void
list_one(void *arg, const char *name)
{
	list_pass *p = arg;
	p->sum += sim__hash_bytes(0, name, strlen(name));
	p->count++;
	p->cb(p->arg, name);
}

static int
d_list(void *ctx, const char *path, ps_disk_list_callback cb, void *arg)
{
	sim_disk *d = ctx;
	list_pass p = {cb, arg, 0, 0};
	int rc = below(d)->ops->list(below(d)->ctx, path, list_one, &p);
	note(d, OP_LIST, path_hash(d, path) ^ p.sum, p.count, rc);
	return rc;
}

static const ps_disk_ops hashing_ops = {
	.open = d_open,
	.close = d_close,
	.pwritev = d_pwritev,
	.pread = d_pread,
	.fdatasync = d_fdatasync,
	.size = d_size,
	.truncate = d_truncate,
	.unlink = d_unlink,
	.rename = d_rename,
	.mkdir = d_mkdir,
	.sync_dir = d_sync_dir,
	.list = d_list,
};

int
sim__disk_init(sim_disk *d, sim_world *w, uint32_t node, const char *dir)
{
	(void)dir;
	memset(d, 0, sizeof *d);
	if (ps_fault_disk_create(ps_disk_real(), &d->fault) != 0)
		return -1;
	d->w = w;
	d->node = node;
	d->prefix_bytes = strlen(w->dir);
	d->disk.ops = &hashing_ops;
	d->disk.ctx = d;
	return 0;
}

void
sim__disk_free(sim_disk *d)
{
	ps_fault_disk_destroy(d->fault);
	d->fault = NULL;
}
