/*
 * An LD_PRELOAD shim that fails one chosen libc I/O call of fvmsnap or the
 * library, without any change to either: the fault-injection seam of
 * tests/fault.sh (doc/RELIABILITY.md). It wraps the calls the library and
 * the tool make on files (open, read, pread, preadv, write, writev, pwrite,
 * splice, fsync, fdatasync, ftruncate, fallocate, msync, rename, renameat,
 * linkat)
 * and counts those that touch FVM_FAULT_DIR: files opened under it (the
 * directory itself too, so O_TMPFILE files count), and rename/linkat whose
 * new name lies under it. Standard streams, the dynamic loader and /proc are
 * never touched, so a test fails the program's own I/O and nothing else.
 *
 * Environment:
 *   FVM_FAULT_DIR  absolute, canonical directory (required; unset: inert)
 *   FVM_FAULT      "count": count only, FVM_FAULT_LOG gets "NAME COUNT" lines
 *                  at exit; or "call=NAME,nth=N,err=ERR": the Nth matching
 *                  call of NAME (1-based; "N+" for that one and every later
 *                  one) fails with errno ERR (EIO, ENOSPC, EDQUOT, ...) or,
 *                  with err=short, transfers half of what was asked (reads
 *                  and writes only; 1-byte transfers are left alone)
 *   FVM_FAULT_LOG  file that gets the counts, and "injected NAME N ERR" each
 *                  time a fault is injected ("... tmpfile" for an O_TMPFILE open)
 *   FVM_FAULT_STDIN set: standard input counts as a file under the directory
 *                  (a test redirects a snapshot or a pipe to it)
 *   FVM_FAULT_NOSYNC set: fsync and fdatasync of the files counted return 0
 *                  without syncing (a test's speed; durability is not
 *                  what it checks), the injected one still fails
 *   FVM_FAULT_TRACE set: a backtrace of the injected call goes to standard
 *                  error (to find the call site by hand)
 *   FVM_FAULT_CUT  N: a file under the directory that the program maps
 *                  (mmap of an fd) is cut to N bytes right after it is
 *                  mapped, as another process truncating it would: the
 *                  program's reads of the mapping past N raise a real
 *                  SIGBUS (with FVM_FAULT=count: nothing else is injected)
 *   FVM_FAULT_NO_TMPFILE set: every O_TMPFILE open under the directory
 *                  fails with EOPNOTSUPP, as on a file system without it
 *                  (with FVM_FAULT=count: nothing else is injected)
 *
 * io_uring reads are the kernel's and never pass through here: their faults
 * are injected by tests/test_uring_fault.c with -Wl,--wrap.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
/* the plain names (open, pread) are defined here, not their 64-bit redirects */
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

enum call {
	C_OPEN, C_READ, C_PREAD, C_PREADV, C_WRITE, C_WRITEV, C_PWRITE, C_PWRITEV,
	C_FSYNC, C_FDATASYNC, C_FTRUNCATE, C_FALLOCATE, C_MSYNC, C_RENAME, C_LINKAT,
	C_SPLICE, C_N
};
static const char *const names[C_N] = {
	"open", "read", "pread", "preadv", "write", "writev", "pwrite", "pwritev",
	"fsync", "fdatasync", "ftruncate", "fallocate", "msync", "rename", "linkat",
	"splice",
};

#define MAXFD 4096
static unsigned char tracked[MAXFD]; /* 1: a file under the directory, 2: a directory */
static unsigned long counts[C_N];
static char dir[PATH_MAX];
static size_t dirlen;
static long long cut_at = -1;
static int active, counting, nosync, no_tmpfile, target = -1, err_code, short_mode, persist;
static unsigned long nth;
static const char *logpath;

static ssize_t (*r_write)(int, const void *, size_t);
static int (*r_open)(const char *, int, ...);
static int (*r_close)(int);

#define REAL(name) \
	static __typeof__(&name) r_##name; \
	if (!r_##name) \
		r_##name = (__typeof__(&name))dlsym(RTLD_NEXT, #name)

static void logline(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	int fd, n;

	if (!logpath)
		return;
	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fd = r_open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	if (r_write(fd, buf, (size_t)n) < 0) {
		/* nothing to be done: the test sees the line missing */
	}
	r_close(fd);
}

static int parse_err(const char *s)
{
	static const struct { const char *n; int e; } t[] = {
		{ "EIO", EIO }, { "ENOSPC", ENOSPC }, { "EDQUOT", EDQUOT },
		{ "EACCES", EACCES }, { "EPERM", EPERM }, { "EMFILE", EMFILE },
		{ "ENOMEM", ENOMEM }, { "EROFS", EROFS }, { "EXDEV", EXDEV },
		{ "EFBIG", EFBIG }, { "EOPNOTSUPP", EOPNOTSUPP }, { "EINTR", EINTR }, { "EAGAIN", EAGAIN },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (!strcmp(s, t[i].n))
			return t[i].e;
	return EIO;
}

__attribute__((constructor)) static void fault_init(void)
{
	const char *d = getenv("FVM_FAULT_DIR"), *f = getenv("FVM_FAULT");
	char spec[256], *tok, *save;

	r_write = (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
	r_open = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open64");
	r_close = (int (*)(int))dlsym(RTLD_NEXT, "close");
	logpath = getenv("FVM_FAULT_LOG");
	if (!d || !*d || !f || strlen(d) >= sizeof(dir))
		return;
	strcpy(dir, d);
	dirlen = strlen(dir);
	while (dirlen > 1 && dir[dirlen - 1] == '/')
		dir[--dirlen] = '\0';
	active = 1;
	no_tmpfile = getenv("FVM_FAULT_NO_TMPFILE") != NULL;
	if (getenv("FVM_FAULT_CUT"))
		cut_at = atoll(getenv("FVM_FAULT_CUT"));
	nosync = getenv("FVM_FAULT_NOSYNC") != NULL;
	if (getenv("FVM_FAULT_STDIN"))
		tracked[0] = 1;
	if (!strcmp(f, "count")) {
		counting = 1;
		return;
	}
	snprintf(spec, sizeof(spec), "%s", f);
	for (tok = strtok_r(spec, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (!strncmp(tok, "call=", 5)) {
			for (int i = 0; i < C_N; i++)
				if (!strcmp(tok + 5, names[i]))
					target = i;
		} else if (!strncmp(tok, "nth=", 4)) {
			nth = strtoul(tok + 4, NULL, 10);
			persist = strchr(tok, '+') != NULL;
		} else if (!strncmp(tok, "err=", 4)) {
			if (!strcmp(tok + 4, "short"))
				short_mode = 1;
			else
				err_code = parse_err(tok + 4);
		}
	}
	if (!err_code && !short_mode)
		err_code = EIO;
}

__attribute__((destructor)) static void fault_fini(void)
{
	if (!active || !counting)
		return;
	for (int i = 0; i < C_N; i++)
		if (counts[i])
			logline("%s %lu\n", names[i], counts[i]);
}

static int under_dir(int dirfd, const char *path)
{
	char buf[PATH_MAX * 2];

	if (!active || !path)
		return 0;
	if (path[0] != '/') {
		if (dirfd != AT_FDCWD)
			return dirfd >= 0 && dirfd < MAXFD && tracked[dirfd];
		if (!getcwd(buf, PATH_MAX))
			return 0;
		size_t n = strlen(buf);
		snprintf(buf + n, sizeof(buf) - n, "/%s", path);
		path = buf;
	}
	return !strncmp(path, dir, dirlen) && (path[dirlen] == '\0' || path[dirlen] == '/');
}

static int fd_tracked(int fd)
{
	return active && fd >= 0 && fd < MAXFD && tracked[fd];
}

/*
 * A matching call of kind c: 0 to run it as it is, 1 to fail it (errno is
 * set), 2 to shorten it.
 */
static int hit_note(enum call c, const char *note)
{
	unsigned long n = __atomic_add_fetch(&counts[c], 1, __ATOMIC_RELAXED);

	if (counting || (int)c != target || !nth || n < nth || (n > nth && !persist))
		return 0;
	if (getenv("FVM_FAULT_TRACE")) {
		void *bt[32];

		backtrace_symbols_fd(bt, backtrace(bt, 32), 2);
	}
	if (short_mode) {
		logline("injected %s %lu short%s\n", names[c], n, note);
		return 2;
	}
	logline("injected %s %lu %d%s\n", names[c], n, err_code, note);
	errno = err_code;
	return 1;
}

static int hit(enum call c)
{
	return hit_note(c, "");
}

static void track(int fd, int yes)
{
	if (fd >= 0 && fd < MAXFD)
		tracked[fd] = (unsigned char)yes;
}

static int do_open(int dirfd, const char *path, int flags, mode_t mode)
{
	REAL(openat64);
	int match = under_dir(dirfd, path), fd;

	int tmpfile = (flags & __O_TMPFILE) == __O_TMPFILE;
	int isdir = !tmpfile && (flags & O_DIRECTORY);

	if (match && tmpfile && no_tmpfile) {
		errno = EOPNOTSUPP;
		return -1;
	}
	if (match && hit_note(C_OPEN, tmpfile ? " tmpfile" : isdir ? " dir" : "") == 1)
		return -1;
	fd = r_openat64(dirfd, path, flags, mode);
	if (fd >= 0)
		track(fd, match ? 1 + isdir : 0);
	return fd;
}

#define MODE_ARG(flags, mode) \
	mode_t mode = 0; \
	if (((flags) & O_CREAT) || ((flags) & __O_TMPFILE) == __O_TMPFILE) { \
		va_list ap; \
		va_start(ap, flags); \
		mode = (mode_t)va_arg(ap, int); \
		va_end(ap); \
	}

int open(const char *path, int flags, ...)
{
	MODE_ARG(flags, mode);
	return do_open(AT_FDCWD, path, flags, mode);
}
int open64(const char *path, int flags, ...) __attribute__((alias("open")));
int openat(int dirfd, const char *path, int flags, ...)
{
	MODE_ARG(flags, mode);
	return do_open(dirfd, path, flags, mode);
}
int openat64(int dirfd, const char *path, int flags, ...) __attribute__((alias("openat")));
int __open_2(const char *path, int flags)
{
	return do_open(AT_FDCWD, path, flags, 0);
}
int __open64_2(const char *path, int flags) __attribute__((alias("__open_2")));

int close(int fd)
{
	REAL(close);
	track(fd, 0);
	return r_close(fd);
}

/* Half of n, for a short transfer (n > 1). */
static size_t half(size_t n)
{
	return n > 1 ? n / 2 : n;
}

ssize_t read(int fd, void *buf, size_t n)
{
	REAL(read);
	if (fd_tracked(fd))
		switch (hit(C_READ)) {
		case 1: return -1;
		case 2: n = half(n); break;
		}
	return r_read(fd, buf, n);
}

ssize_t pread64(int fd, void *buf, size_t n, off_t off)
{
	REAL(pread64);
	if (fd_tracked(fd))
		switch (hit(C_PREAD)) {
		case 1: return -1;
		case 2: n = half(n); break;
		}
	return r_pread64(fd, buf, n, off);
}
ssize_t pread(int fd, void *buf, size_t n, off_t off) __attribute__((alias("pread64")));

ssize_t write(int fd, const void *buf, size_t n)
{
	REAL(write);
	if (fd_tracked(fd))
		switch (hit(C_WRITE)) {
		case 1: return -1;
		case 2: n = half(n); break;
		}
	return r_write(fd, buf, n);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
	REAL(pwrite64);
	if (fd_tracked(fd))
		switch (hit(C_PWRITE)) {
		case 1: return -1;
		case 2: n = half(n); break;
		}
	return r_pwrite64(fd, buf, n, off);
}
ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) __attribute__((alias("pwrite64")));

/*
 * A short vectored transfer: the first iovecs up to half of the total
 * (the last one cut). Returns the count of iovecs to pass, in fix.
 */
static int short_iov(const struct iovec *iov, int cnt, struct iovec *fix, int max)
{
	size_t total = 0, want, acc = 0;
	int i;

	for (i = 0; i < cnt; i++)
		total += iov[i].iov_len;
	want = half(total);
	for (i = 0; i < cnt && i < max && acc < want; i++) {
		fix[i] = iov[i];
		if (acc + fix[i].iov_len > want)
			fix[i].iov_len = want - acc;
		acc += fix[i].iov_len;
	}
	return i;
}

#define VEC_CALL(kind, realcall) \
	struct iovec fix[64]; \
	if (fd_tracked(fd)) \
		switch (hit(kind)) { \
		case 1: return -1; \
		case 2: cnt = short_iov(iov, cnt, fix, 64); iov = fix; break; \
		} \
	return realcall

ssize_t preadv64(int fd, const struct iovec *iov, int cnt, off_t off)
{
	REAL(preadv64);
	VEC_CALL(C_PREADV, r_preadv64(fd, iov, cnt, off));
}
ssize_t preadv(int fd, const struct iovec *iov, int cnt, off_t off)
	__attribute__((alias("preadv64")));

ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off)
{
	REAL(pwritev64);
	VEC_CALL(C_PWRITEV, r_pwritev64(fd, iov, cnt, off));
}
ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
	__attribute__((alias("pwritev64")));

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	REAL(writev);
	VEC_CALL(C_WRITEV, r_writev(fd, iov, cnt));
}

#define FD_CALL(kind, fn, args, ...) \
	int fn(__VA_ARGS__) \
	{ \
		REAL(fn); \
		if (fd_tracked(fd) && hit(kind) == 1) \
			return -1; \
		return r_##fn args; \
	}

/* the fsync of a directory (after a rename) is noted " dir" */
int fsync(int fd)
{
	REAL(fsync);
	if (fd_tracked(fd)) {
		if (hit_note(C_FSYNC, tracked[fd] == 2 ? " dir" : "") == 1)
			return -1;
		if (nosync)
			return 0;
	}
	return r_fsync(fd);
}
int fdatasync(int fd)
{
	REAL(fdatasync);
	if (fd_tracked(fd)) {
		if (hit(C_FDATASYNC) == 1)
			return -1;
		if (nosync)
			return 0;
	}
	return r_fdatasync(fd);
}
FD_CALL(C_FTRUNCATE, ftruncate64, (fd, len), int fd, off_t len)
int ftruncate(int fd, off_t len) __attribute__((alias("ftruncate64")));
FD_CALL(C_FALLOCATE, fallocate64, (fd, mode, off, len),
	int fd, int mode, off_t off, off_t len)
int fallocate(int fd, int mode, off_t off, off_t len) __attribute__((alias("fallocate64")));

/* posix_fallocate returns the error instead of setting errno. */
int posix_fallocate64(int fd, off_t off, off_t len)
{
	REAL(posix_fallocate64);
	if (fd_tracked(fd) && hit(C_FALLOCATE) == 1)
		return errno;
	return r_posix_fallocate64(fd, off, len);
}
int posix_fallocate(int fd, off_t off, off_t len) __attribute__((alias("posix_fallocate64")));

ssize_t splice(int in, loff_t *in_off, int out, loff_t *out_off, size_t n, unsigned flags)
{
	REAL(splice);
	if (fd_tracked(in) || fd_tracked(out))
		switch (hit(C_SPLICE)) {
		case 1: return -1;
		case 2: n = half(n); break;
		}
	return r_splice(in, in_off, out, out_off, n, flags);
}

/* msync has no fd: every msync of a process under test counts. */
int msync(void *addr, size_t len, int flags)
{
	REAL(msync);
	if (active && hit(C_MSYNC) == 1)
		return -1;
	return r_msync(addr, len, flags);
}

int rename(const char *from, const char *to)
{
	REAL(rename);
	if (under_dir(AT_FDCWD, to) && hit(C_RENAME) == 1)
		return -1;
	return r_rename(from, to);
}

int renameat(int fd1, const char *from, int fd2, const char *to)
{
	REAL(renameat);
	if (under_dir(fd2, to) && hit(C_RENAME) == 1)
		return -1;
	return r_renameat(fd1, from, fd2, to);
}

int renameat2(int fd1, const char *from, int fd2, const char *to, unsigned flags)
{
	REAL(renameat2);
	if (under_dir(fd2, to) && hit(C_RENAME) == 1)
		return -1;
	return r_renameat2(fd1, from, fd2, to, flags);
}

int linkat(int fd1, const char *from, int fd2, const char *to, int flags)
{
	REAL(linkat);
	if (under_dir(fd2, to) && hit(C_LINKAT) == 1)
		return -1;
	return r_linkat(fd1, from, fd2, to, flags);
}

/* FVM_FAULT_CUT: the mapped file cut short under the mapping. */
void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	REAL(mmap);
	void *p = r_mmap(addr, len, prot, flags, fd, off);

	if (p != MAP_FAILED && active && cut_at >= 0 && fd >= 0 && fd < MAXFD && tracked[fd] == 1) {
		char proc[64], path[PATH_MAX];
		ssize_t n;

		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
		n = readlink(proc, path, sizeof(path) - 1);
		if (n > 0) {
			path[n] = '\0';
			if (truncate(path, (off_t)cut_at) == 0)
				logline("injected mmap cut %lld\n", cut_at);
		}
	}
	return p;
}
void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
	__attribute__((alias("mmap")));
