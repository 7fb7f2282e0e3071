/*
 * disk_real.c — the real twin of the disk seam: the only file of flock
 * that calls open, pwritev, pread, fdatasync, ftruncate and friends.
 *
 * Every call retries EINTR and translates errno where it enters
 * (ps__from_errno). It adds no buffering and no policy: short writes are
 * returned as such, and the journal loops.
 */
#include "persistence/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/* Scatter entries one pwritev takes; the journal writes one iovec per
 * batch buffer, so a handful is plenty. */
#define DISK_IOV_MAX 64

int
ps__from_errno(int error)
{
	switch (error) {
	case 0: return PS_OK;
	case ENOSPC:
	case EDQUOT: return PS_ENOSPC;
	case ENOENT: return PS_ENOTFOUND;
	case ENOMEM: return PS_ENOMEM;
	case EINVAL:
	case EBADF: return PS_EINVAL;
	default: return PS_EIO;
	}
}

static int
real_open(void *ctx, const char *path, uint32_t flags, int *fd_out)
{
	(void)ctx;
	ps__assert(path != NULL);
	ps__assert(fd_out != NULL);
	int oflags = O_RDWR | O_CLOEXEC;
	if (flags & PS_DISK_CREATE)
		oflags |= O_CREAT;
	if (flags & PS_DISK_TRUNCATE)
		oflags |= O_TRUNC;
	int fd;
	do
		fd = open(path, oflags, 0644);
	while (fd < 0 && errno == EINTR);
	if (fd < 0)
		return ps__from_errno(errno);
	*fd_out = fd;
	return PS_OK;
}

static int
real_close(void *ctx, int fd)
{
	(void)ctx;
	/* No EINTR retry: on Linux the descriptor is gone either way. */
	return close(fd) == 0 ? PS_OK : ps__from_errno(errno);
}

static int
real_pwritev(void *ctx, int fd, const ps_iovec *iov, int iovcnt,
	uint64_t offset, size_t *written_out)
{
	(void)ctx;
	ps__assert(iovcnt > 0 && iovcnt <= DISK_IOV_MAX);
	ps__assert(written_out != NULL);
	struct iovec v[DISK_IOV_MAX];
	for (int i = 0; i < iovcnt; i++) {
		v[i].iov_base = (void *)iov[i].base;
		v[i].iov_len = iov[i].length;
	}
	ssize_t n;
	do
		n = pwritev(fd, v, iovcnt, (off_t)offset);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return ps__from_errno(errno);
	*written_out = (size_t)n;
	return PS_OK;
}

static int
real_pread(void *ctx, int fd, void *buffer, size_t length, uint64_t offset,
	size_t *read_out)
{
	(void)ctx;
	ps__assert(read_out != NULL);
	size_t done = 0;
	while (done < length) {
		ssize_t n = pread(fd, (char *)buffer + done, length - done,
			(off_t)(offset + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return ps__from_errno(errno);
		if (n == 0)
			break;
		done += (size_t)n;
	}
	*read_out = done;
	return PS_OK;
}

static int
real_fdatasync(void *ctx, int fd)
{
	(void)ctx;
	/* Never retried by the caller on failure (fsyncgate): one call, one
	 * answer. EINTR cannot lose the error, so it is safe to repeat. */
	int rc;
	do
		rc = fdatasync(fd);
	while (rc < 0 && errno == EINTR);
	return rc == 0 ? PS_OK : ps__from_errno(errno);
}

static int
real_size(void *ctx, int fd, uint64_t *size_out)
{
	(void)ctx;
	struct stat st;
	if (fstat(fd, &st) != 0)
		return ps__from_errno(errno);
	*size_out = (uint64_t)st.st_size;
	return PS_OK;
}

static int
real_truncate(void *ctx, int fd, uint64_t size)
{
	(void)ctx;
	int rc;
	do
		rc = ftruncate(fd, (off_t)size);
	while (rc < 0 && errno == EINTR);
	return rc == 0 ? PS_OK : ps__from_errno(errno);
}

static int
real_unlink(void *ctx, const char *path)
{
	(void)ctx;
	return unlink(path) == 0 ? PS_OK : ps__from_errno(errno);
}

static int
real_rename(void *ctx, const char *from, const char *to)
{
	(void)ctx;
	return rename(from, to) == 0 ? PS_OK : ps__from_errno(errno);
}

static int
real_mkdir(void *ctx, const char *path)
{
	(void)ctx;
	if (mkdir(path, 0755) == 0 || errno == EEXIST)
		return PS_OK;
	return ps__from_errno(errno);
}

static int
real_sync_dir(void *ctx, const char *path)
{
	(void)ctx;
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return ps__from_errno(errno);
	int rc = fsync(fd) == 0 ? PS_OK : ps__from_errno(errno);
	close(fd);
	return rc;
}

static int
real_list(void *ctx, const char *path, ps_disk_list_callback cb, void *arg)
{
	(void)ctx;
	DIR *d = opendir(path);
	if (d == NULL)
		return ps__from_errno(errno);
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		cb(arg, e->d_name);
	}
	closedir(d);
	return PS_OK;
}

static const ps_disk_ops real_ops = {
	.open = real_open,
	.close = real_close,
	.pwritev = real_pwritev,
	.pread = real_pread,
	.fdatasync = real_fdatasync,
	.size = real_size,
	.truncate = real_truncate,
	.unlink = real_unlink,
	.rename = real_rename,
	.mkdir = real_mkdir,
	.sync_dir = real_sync_dir,
	.list = real_list,
};

static const ps_disk real_disk = {.ops = &real_ops, .ctx = NULL};

const ps_disk *
ps_disk_real(void)
{
	return &real_disk;
}
