/*
 * Shared helpers of the fvmsnap subcommands (see cli.h): the exit-code
 * mapping, the one error format, standard input as a snapshot (opened as a
 * file or a stream, peeked at, spooled), the load environment, size
 * parsing, atomic small files and safe file names. Escaping, the histogram
 * buckets, the progress bar and the signal flag are one layer down, in
 * tools/common/, shared with tools/stock/.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "common/progress.h"
#include "common/util.h"

const char *cli_prog = "fvmsnap";
const char *cli_output;

int cli_exit_code(int code)
{
	switch (code) {
	case FVM_OK:
		return EXIT_OK;
	case FVM_EINVAL:
		return EXIT_USAGE;
	case FVM_EMAGIC:
	case FVM_ETRUNCATED:
	case FVM_ECHECKSUM:
	case FVM_ECORRUPT:
	case FVM_ERANGE:
	case FVM_EAUTH: /* another key, or a MAC or tag that does not verify */
		return EXIT_INVALID;
	case FVM_EVERSION:
	case FVM_EFEATURE:
	case FVM_EMAPPING:
	case FVM_ENOTFOUND:
	case FVM_EUNSUPPORTED:
		return EXIT_UNSUPPORTED;
	case FVM_ECANCELED:
		return EXIT_INTERRUPTED;
	case FVM_ENOMEM:
	case FVM_EIO:
	case FVM_ESTATE:
	default:
		return EXIT_SYSTEM;
	}
}

/*
 * The detail without its leading "WHAT: " when it starts with the name the
 * message starts with: the library and the stock code name their input in
 * every detail, and the message names it once.
 */
static const char *detail_after(const char *detail, const char *what)
{
	size_t n = strlen(what);

	if (n && !strncmp(detail, what, n) && detail[n] == ':' && detail[n + 1] == ' ')
		return detail + n + 2;
	return detail;
}

int cli_fail_as(const char *what, int code, const char *not_what)
{
	const char *text = code == FVM_EMAGIC && not_what ? not_what
			   : fvm_strerror(code);
	const char *detail = fvm_error_detail();

	/* the output failed, not the input the caller names */
	if (cli_output && detail_after(detail, cli_output) != detail)
		what = cli_output;
	detail = detail_after(detail, what);

	progress_clear_current();
	if (code == FVM_ECANCELED && util_interrupted()) {
		/* canceled by our own progress callback: say why, not how */
		fprintf(stderr, "%s: %s: interrupted by %s\n", cli_prog, what,
			util_interrupted() == SIGINT ? "SIGINT" : "SIGTERM");
		return cli_exit_code(code);
	}
	if (*detail)
		fprintf(stderr, "%s: %s: %s: %s\n", cli_prog, what, text, detail);
	else
		fprintf(stderr, "%s: %s: %s\n", cli_prog, what, text);
	return cli_exit_code(code);
}

int cli_fail(const char *what, int code)
{
	return cli_fail_as(what, code, NULL);
}

#define QEMU_LOCK_PERM_BASE 100   /* RAW_LOCK_PERM_BASE */
#define QEMU_LOCK_SHARED_BASE 200 /* RAW_LOCK_SHARED_BASE */
#define QEMU_PERM_READ 0          /* BLK_PERM_CONSISTENT_READ, bit 0 */
#define QEMU_PERM_WRITE 1         /* BLK_PERM_WRITE, bit 1 */

/* F_OFD_GETLK/SETLK on one byte; for GETLK *held is 1 when another has it. */
static int ofd_lock(int fd, int cmd, short type, off_t byte, int *held)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1 };

	if (fcntl(fd, cmd, &fl) < 0)
		return -errno;
	if (held)
		*held = fl.l_type != F_UNLCK;
	return 0;
}

int cli_image_lock(const char *path, int force_share, int *fd)
{
	int held = 0, err;

	*fd = -1;
	if (force_share || !strcmp(path, "-"))
		return 0;
	*fd = open(path, O_RDONLY | O_CLOEXEC);
	if (*fd < 0)
		return 0;
	/* Someone writing it (a running VM), or refusing to share reads? */
	err = ofd_lock(*fd, F_OFD_GETLK, F_WRLCK, QEMU_LOCK_PERM_BASE + QEMU_PERM_WRITE, &held);
	if (!err && held)
		goto in_use;
	if (!err)
		err = ofd_lock(*fd, F_OFD_GETLK, F_WRLCK, QEMU_LOCK_SHARED_BASE + QEMU_PERM_READ, &held);
	if (!err && held)
		goto in_use;
	/* Ours, as qemu-img's: no QEMU may start writing while we read. */
	if (!err)
		err = ofd_lock(*fd, F_OFD_SETLK, F_RDLCK, QEMU_LOCK_PERM_BASE + QEMU_PERM_READ, NULL);
	if (!err)
		err = ofd_lock(*fd, F_OFD_SETLK, F_RDLCK, QEMU_LOCK_SHARED_BASE + QEMU_PERM_WRITE, NULL);
	if (err == -EAGAIN || err == -EACCES)
		goto in_use;
	/* A filesystem without locks (some network ones): read as qemu-img does. */
	return 0;
in_use:
	close(*fd);
	*fd = -1;
	progress_clear_current();
	fprintf(stderr, "%s: %s is in use by another process (QEMU holds its write lock); "
		"quit it first, or use --force-share (-U) to read the image anyway\n",
		cli_prog, path);
	return EXIT_SYSTEM;
}

int cli_fail_sys(const char *what, int err)
{
	progress_clear_current();
	fprintf(stderr, "%s: %s: %s\n", cli_prog, what, strerror(err));
	return err == EINTR ? EXIT_INTERRUPTED : EXIT_SYSTEM;
}

/* "fvmsnap: <message>" on stderr, over any progress bar; no newline. */
static void vmsg(const char *fmt, va_list ap)
{
	progress_clear_current();
	fprintf(stderr, "%s: ", cli_prog);
	vfprintf(stderr, fmt, ap);
}

void cli_msg(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmsg(fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int cli_usage_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmsg(fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '%s --help'.\n", cli_prog);
	return EXIT_USAGE;
}

int cli_one_operand(int argc, char **argv, const char *what, const char **out)
{
	if (optind + 1 != argc)
		return optind < argc ? cli_usage_error("expected one %s", what)
				     : cli_usage_error("no %s given", what);
	*out = argv[optind];
	return 0;
}

const char *cli_input_name(const char *in)
{
	return strcmp(in, "-") ? in : CLI_STDIN_NAME;
}

int cli_stdin_seekable(void)
{
	struct stat st;

	return fstat(STDIN_FILENO, &st) == 0 &&
	       (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode));
}

int cli_refuse_terminal(const char *in, const char *what)
{
	if (strcmp(in, "-") || !isatty(STDIN_FILENO))
		return 0;
	return cli_usage_error("refusing to read %s from a terminal", what);
}

int cli_open_snapshot(const char *in, fvm_reader **r)
{
	if (strcmp(in, "-"))
		return fvm_reader_open(r, in);
	if (cli_stdin_seekable())
		return fvm_reader_open_fd(r, STDIN_FILENO, CLI_STDIN_NAME);
	return fvm_reader_open_stream(r, STDIN_FILENO, CLI_STDIN_NAME);
}

/* Read exactly len bytes of fd (a pipe), retrying on EINTR. */
static int read_full(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* 1 when every writer of the pipe on standard input has closed it. */
static int stdin_hung_up(void)
{
	struct pollfd pf = { STDIN_FILENO, POLLIN, 0 };

	return poll(&pf, 1, 0) == 1 && (pf.revents & POLLHUP);
}

/*
 * tee(2) copies what the pipe holds into a pipe of ours without consuming
 * it. Until len bytes are there (a writer may start with a short write) the
 * copy is dropped and taken again a millisecond later. Once every writer
 * has closed the pipe (seen before the copy, so nothing can follow it) the
 * copy is all there is: a short input.
 */
static int peek_pipe(void *buf, size_t len, size_t *got)
{
	static const struct timespec ms = { 0, 1000000 };
	char scratch[64];
	int p[2], ret = 0, hung;
	ssize_t n;

	if (len > sizeof(scratch))
		return -EINVAL;
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	for (;;) {
		hung = stdin_hung_up();
		n = tee(STDIN_FILENO, p[1], len, 0);
		if (n < 0 && errno == EINTR && !util_interrupted())
			continue;
		if (n < 0) {
			ret = -errno;
			break;
		}
		if ((size_t)n >= len || n == 0 || hung) {
			*got = (size_t)n;
			ret = read_full(p[0], buf, (size_t)n);
			break;
		}
		if ((ret = read_full(p[0], scratch, (size_t)n)))
			break;
		nanosleep(&ms, NULL);
	}
	close(p[0]);
	close(p[1]);
	return ret;
}

int cli_peek_stdin(void *buf, size_t len, size_t *got)
{
	struct stat st;
	ssize_t n;

	*got = 0;
	if (fstat(STDIN_FILENO, &st) < 0)
		return -errno;
	if (S_ISFIFO(st.st_mode))
		return peek_pipe(buf, len, got);
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return -ENOTSUP;
	do
		n = pread(STDIN_FILENO, buf, len, 0);
	while (n < 0 && errno == EINTR && !util_interrupted());
	if (n < 0)
		return -errno;
	*got = (size_t)n;
	return 0;
}

/* Copy the rest of standard input to fd: splice from a pipe, else read. */
static int copy_stdin(int fd)
{
	static char buf[1 << 16];
	int use_splice = 1;

	for (;;) {
		ssize_t n;

		if (util_interrupted())
			return -EINTR;
		if (use_splice) {
			n = splice(STDIN_FILENO, NULL, fd, NULL, 1u << 20, SPLICE_F_MOVE);
			if (n < 0 && errno == EINVAL) {
				use_splice = 0;
				continue;
			}
		} else {
			n = read(STDIN_FILENO, buf, sizeof(buf));
			if (n > 0) {
				int err = cli_write_all(fd, buf, (size_t)n);

				if (err)
					return err;
			}
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : 0;
	}
}

int cli_spool_stdin(int *out, const char **dir)
{
	const char *d = getenv("TMPDIR");
	int fd, err;

	if (!d || !*d)
		d = "/tmp";
	*dir = d;
	fd = open(d, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
		/* no O_TMPFILE here: a named file, gone from the directory at once */
		char path[4096];

		if (snprintf(path, sizeof(path), "%s/.fvmsnap-stdin.XXXXXX", d) >= (int)sizeof(path))
			return -ENAMETOOLONG;
		fd = mkostemp(path, O_CLOEXEC);
		if (fd >= 0)
			unlink(path);
	}
	if (fd < 0)
		return -errno;
	if ((err = copy_stdin(fd)) || (lseek(fd, 0, SEEK_SET) < 0 && (err = -errno))) {
		close(fd);
		return err;
	}
	*out = fd;
	return 0;
}

int cli_load_env(fvm_load_options *lo, fvm_load_tuning *tu)
{
	const char *be = getenv("FVM_BACKEND"), *wn = getenv("FVM_WILLNEED");
	uint64_t v;

	if (be && *be && lo->backend == FVM_BACKEND_AUTO) {
		if (!strcmp(be, "pread"))
			lo->backend = FVM_BACKEND_PREAD;
		else if (!strcmp(be, "uring") || !strcmp(be, "io_uring"))
			lo->backend = FVM_BACKEND_URING;
		else
			return cli_usage_error("FVM_BACKEND=%s: expected pread, uring or io_uring", be);
	}
	if (wn && *wn && !tu->willneed_window) {
		if (cli_parse_uint(wn, 64, &v))
			return cli_usage_error("FVM_WILLNEED=%s: expected 0..64", wn);
		tu->willneed_window = (unsigned)v;
	}
	lo->tuning = tu;
	return 0;
}

int cli_try_help(void)
{
	fprintf(stderr, "Try '%s --help'.\n", cli_prog);
	return EXIT_USAGE;
}

int cli_parse_uint(const char *s, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (!s || !*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	if (v > max)
		return -1;
	*out = v;
	return 0;
}

int cli_parse_compress(const char *arg, fvm_write_options *wo)
{
	static const int codecs[] = { FVM_CODEC_NONE, FVM_CODEC_ZSTD, FVM_CODEC_LZ4 };
	const char *colon = strchr(arg, ':');
	size_t n = colon ? (size_t)(colon - arg) : strlen(arg);
	uint64_t level = 0;

	for (size_t i = 0; i < sizeof(codecs) / sizeof(codecs[0]); i++) {
		const char *name = fvm_codec_name(codecs[i]);

		if (strlen(name) != n || strncmp(arg, name, n))
			continue;
		if (!fvm_codec_available(codecs[i]))
			return cli_usage_error("--compress %s: this fvmsnap's libfastvm was built "
					       "without %s", arg, name);
		if (colon && (codecs[i] == FVM_CODEC_NONE ||
			      cli_parse_uint(colon + 1, codecs[i] == FVM_CODEC_ZSTD ? 19 : 12,
					     &level) || level == 0))
			return cli_usage_error("--compress %s: level must be %s", arg,
					       codecs[i] == FVM_CODEC_ZSTD ? "1..19" :
					       codecs[i] == FVM_CODEC_LZ4 ? "1..12 (3 and up: HC)"
									   : "absent for none");
		wo->codec = (uint32_t)codecs[i];
		wo->level = (int32_t)level;
		return 0;
	}
	return cli_usage_error("--compress '%s': expected zstd, lz4 or none, optionally "
			       ":LEVEL", arg);
}

int cli_parse_frame_size(const char *arg, fvm_write_options *wo)
{
	uint64_t v;

	if (cli_parse_size(arg, &v) || v < (64u << 10) || v > (1u << 20) || (v & (v - 1)))
		return cli_usage_error("--frame-size '%s': a power of two from 64K to 1M", arg);
	wo->frame_bytes = (uint32_t)v;
	return 0;
}

int cli_parse_size(const char *s, uint64_t *out)
{
	static const char units[] = "KMGT";
	uint64_t v = 0;
	unsigned shift = 0;
	const char *p = s;

	if (!s || *s < '0' || *s > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (*p) {
		const char *u = strchr(units, *p & ~0x20);

		if (!u || !(*p & ~0x20))
			return -1;
		shift = 10 * (unsigned)(u - units + 1);
		p++;
		/* "K", "KB" and "KiB" all mean 1024: sizes here are memory. */
		if (*p == 'i' || *p == 'I')
			p++;
		if (*p == 'B' || *p == 'b')
			p++;
		if (*p)
			return -1;
	}
	if (shift && v > (UINT64_MAX >> shift))
		return -1;
	*out = v << shift;
	return 0;
}

int cli_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR && !util_interrupted())
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int cli_atomic_open(struct cli_atomic *a, const char *path)
{
	return cli_atomic_open_mode(a, path, 0, 0);
}

int cli_atomic_open_mode(struct cli_atomic *a, const char *path, mode_t mode, int noreplace)
{
	size_t n = strlen(path);
	const char *slash = strrchr(path, '/');
	const char *base = slash ? slash + 1 : path;
	size_t dir_len = (size_t)(base - path);

	struct stat st;

	a->fd = -1;
	a->path = a->tmp = NULL;
	a->unnamed = 0;
	a->noreplace = noreplace;
	if (!mode && stat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
		/* A device or FIFO (/dev/null, a named pipe) is written in place:
		 * a rename would replace the node itself. */
		a->fd = open(path, O_WRONLY | O_CLOEXEC);
		return a->fd < 0 ? -errno : 0;
	}
	a->path = strdup(path);
	/* dir/.base.XXXXXX: hidden, same directory so rename is atomic. */
	a->tmp = malloc(n + 10);
	if (!a->path || !a->tmp) {
		free(a->path);
		free(a->tmp);
		a->path = a->tmp = NULL;
		return -ENOMEM;
	}
	memcpy(a->tmp, path, dir_len);
	sprintf(a->tmp + dir_len, ".%s.XXXXXX", base);
	/* unnamed until committed where the filesystem allows (O_TMPFILE):
	 * a process killed meanwhile leaves nothing behind */
	a->unnamed = 0;
	{
		mode_t mask = umask(0);
		char *dir = dir_len ? strndup(path, dir_len) : strdup(".");

		umask(mask);
		a->fd = dir ? open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, mode ? 0 : 0666 & ~mask) : -1;
		free(dir);
		if (a->fd >= 0 && mode && fchmod(a->fd, mode) < 0) {
			int err = errno;

			close(a->fd);
			a->fd = -1;
			free(a->path);
			free(a->tmp);
			a->path = a->tmp = NULL;
			return -err;
		}
		if (a->fd >= 0) {
			a->unnamed = 1;
			return 0;
		}
	}
	a->fd = mkostemp(a->tmp, O_CLOEXEC);
	if (a->fd < 0) {
		int err = errno;

		free(a->path);
		free(a->tmp);
		a->path = a->tmp = NULL;
		return -err;
	}
	/* mkstemp makes 0600; outputs are ordinary files: 0666 & ~umask. */
	if (!mode) {
		mode_t mask = umask(0);

		umask(mask);
		fchmod(a->fd, 0666 & ~mask);
	} else if (fchmod(a->fd, mode) < 0) {
		int err = errno;

		cli_atomic_abort(a);
		return -err;
	}
	return 0;
}

int cli_fsync_dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir;
	int fd, ret = 0;

	if (!slash)
		dir = strdup(".");
	else if (slash == path)
		dir = strdup("/");
	else
		dir = strndup(path, (size_t)(slash - path));
	if (!dir)
		return -ENOMEM;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(dir);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0 && errno != EINVAL)
		ret = -errno;
	close(fd);
	return ret;
}

/* Name an O_TMPFILE file .base.XXXXXX (unique), as open(2) shows. */
static int link_unnamed(struct cli_atomic *a)
{
	char proc[64], *x = a->tmp + strlen(a->tmp) - 6;
	static const char digits[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	unsigned long long seed = (unsigned long long)getpid() * 0x9e3779b97f4a7c15ull ^
				  (unsigned long long)(uintptr_t)a;

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", a->fd);
	for (int tries = 0; tries < 64; tries++) {
		for (int i = 0; i < 6; i++) {
			seed = seed * 6364136223846793005ull + 1442695040888963407ull;
			x[i] = digits[(seed >> 33) % 36];
		}
		if (linkat(AT_FDCWD, proc, AT_FDCWD, a->tmp, AT_SYMLINK_FOLLOW) == 0 ||
		    (errno != EEXIST && linkat(a->fd, "", AT_FDCWD, a->tmp, AT_EMPTY_PATH) == 0)) {
			a->unnamed = 0;
			return 0;
		}
		if (errno != EEXIST)
			return -errno;
	}
	return -EEXIST;
}

int cli_atomic_sync(struct cli_atomic *a)
{
	int ret = 0;

	if (a->fd < 0)
		return 0;
	/* devices and FIFOs written in place may not support fsync */
	if (fsync(a->fd) < 0 && (a->tmp || errno != EINVAL))
		ret = -errno;
	if (!ret && a->unnamed)
		ret = link_unnamed(a);
	if (close(a->fd) < 0 && !ret)
		ret = -errno;
	a->fd = -1;
	return ret;
}

int cli_atomic_commit(struct cli_atomic *a)
{
	int ret = cli_atomic_sync(a);

	if (!a->tmp) /* written in place */
		return ret;
	if (!ret && a->noreplace) {
		/* never over an existing path, even one made meanwhile */
		if (renameat2(AT_FDCWD, a->tmp, AT_FDCWD, a->path, RENAME_NOREPLACE) < 0) {
			ret = -errno;
			/* a filesystem without RENAME_NOREPLACE: link(2) never replaces */
			if (ret == -EINVAL || ret == -ENOSYS) {
				ret = link(a->tmp, a->path) < 0 ? -errno : 0;
				if (!ret)
					unlink(a->tmp);
			}
		}
	} else if (!ret && rename(a->tmp, a->path) < 0) {
		ret = -errno;
	}
	if (ret) {
		/* named by us: ours to remove (an unnamed one went with its fd) */
		if (!a->unnamed)
			unlink(a->tmp);
	} else {
		ret = cli_fsync_dir_of(a->path);
	}
	free(a->path);
	free(a->tmp);
	a->path = a->tmp = NULL;
	return ret;
}

void cli_atomic_abort(struct cli_atomic *a)
{
	if (a->fd >= 0)
		close(a->fd); /* an unnamed file goes with its last fd */
	a->fd = -1;
	if (a->tmp && !a->unnamed)
		unlink(a->tmp);
	free(a->path);
	free(a->tmp);
	a->path = a->tmp = NULL;
}

void cli_utc_now(char *buf, size_t len)
{
	const char *sde = getenv("SOURCE_DATE_EPOCH");
	time_t t = time(NULL);
	struct tm tm;
	char *end;

	/* reproducible outputs (reproducible-builds.org): a whole number of
	 * seconds since 1970; anything else is ignored, as the spec asks */
	if (sde && *sde >= '0' && *sde <= '9') {
		unsigned long long v;

		errno = 0;
		v = strtoull(sde, &end, 10);
		if (!*end && !errno && v <= 253402300799ull) /* 9999-12-31T23:59:59Z */
			t = (time_t)v;
	}
	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void cli_safe_name(const char *name, char *buf)
{
	size_t i;

	for (i = 0; name[i] && i < 200; i++) {
		unsigned char c = (unsigned char)name[i];

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '_' || c == '+' || c == '-' ||
		    (c == '.' && i > 0))
			buf[i] = (char)c;
		else
			buf[i] = '_';
	}
	buf[i] = '\0';
	if (!i)
		strcpy(buf, "unnamed");
}

int cli_refuse_same_file(const char *in, const char *out)
{
	struct stat a, b;

	if (!in || !out || !strcmp(in, "-") || !strcmp(out, "-"))
		return 0;
	if (stat(in, &a) < 0 || stat(out, &b) < 0)
		return 0; /* no output yet, or the input's error comes later */
	if (a.st_dev != b.st_dev || a.st_ino != b.st_ino)
		return 0;
	if (!strcmp(in, out))
		cli_msg("%s: the output is the input; refusing to replace it (give another -o)", out);
	else
		cli_msg("%s is the input %s (%s); refusing to replace it (give another -o)", out, in,
			lstat(out, &b) == 0 && S_ISLNK(b.st_mode) ? "a symlink to it"
			: lstat(in, &b) == 0 && S_ISLNK(b.st_mode) ? "the file it links to"
			: "a hard link to it");
	return EXIT_USAGE;
}

/* ------------------------------------------------------------ keys */

static struct cli_key the_key;

static void wipe_key(void)
{
	explicit_bzero(&the_key, sizeof(the_key));
}

/* Read all of fd (at most len bytes, and one more to see there is no more). */
static ssize_t read_key_text(int fd, char *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, buf + got, len - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

int cli_key_load(const char *file, const struct cli_key **out)
{
	static int registered;
	char text[CLI_KEY_FILE_MAX + 1];
	struct stat st;
	ssize_t n;
	int fd, err;

	*out = NULL;
	if (!fvm_auth_available()) {
		cli_msg("--key %s: this fvmsnap's libfastvm was built without authenticated "
			"snapshots (libgcrypt)", file);
		return EXIT_UNSUPPORTED;
	}
	/* O_NONBLOCK: a FIFO given as the key file is refused, not waited on */
	fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		err = errno;
		cli_msg("key file %s: %s", file, strerror(err));
		return err == ENOENT || err == EACCES || err == ENOTDIR ? EXIT_USAGE : EXIT_SYSTEM;
	}
	if (fstat(fd, &st) < 0) {
		err = errno;
		close(fd);
		cli_msg("key file %s: %s", file, strerror(err));
		return EXIT_SYSTEM;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		cli_msg("key file %s: not a regular file", file);
		return EXIT_USAGE;
	}
	if (st.st_mode & 077) {
		close(fd);
		cli_msg("%s: permissions %04o are too open: a key file must be readable by its "
			"owner only (chmod 600 %s)", file, (unsigned)(st.st_mode & 07777), file);
		return EXIT_USAGE;
	}
	if (st.st_size > CLI_KEY_FILE_MAX) {
		close(fd);
		cli_msg("key file %s: %lld bytes, not a key (64 hexadecimal digits and a newline, "
			"as fvmsnap keygen writes)", file, (long long)st.st_size);
		return EXIT_USAGE;
	}
	n = read_key_text(fd, text, sizeof(text));
	close(fd);
	if (n < 0) {
		explicit_bzero(text, sizeof(text));
		cli_msg("key file %s: %s", file, strerror((int)-n));
		return EXIT_SYSTEM;
	}
	if (n > CLI_KEY_FILE_MAX) { /* it grew since fstat */
		explicit_bzero(text, sizeof(text));
		cli_msg("key file %s: more than %d bytes, not a key", file, CLI_KEY_FILE_MAX);
		return EXIT_USAGE;
	}
	if (!registered) {
		atexit(wipe_key);
		registered = 1;
	}
	wipe_key();
	err = fvm_key_parse(text, (size_t)n, the_key.key, sizeof(the_key.key));
	explicit_bzero(text, sizeof(text));
	if (!err)
		err = fvm_key_id(the_key.key, sizeof(the_key.key), &the_key.id);
	if (err) {
		wipe_key();
		cli_msg("key file %s: not a key (64 hexadecimal digits and at most one newline, as "
			"fvmsnap keygen writes): %s", file, detail_after(fvm_error_detail(), file));
		return EXIT_USAGE;
	}
	the_key.file = file;
	*out = &the_key;
	return 0;
}

int cli_key_writer(const struct cli_key *k, fvm_write_options *wo)
{
	if (!k)
		return 0;
	if (wo->codec != FVM_CODEC_NONE)
		return cli_usage_error("--key with --compress %s: authenticated snapshots cannot be "
				       "compressed in this format version (use --compress none, or "
				       "leave out --key)", fvm_codec_name((int)wo->codec));
	wo->key = k->key;
	return 0;
}

int cli_key_missing(const char *name, uint64_t key_id)
{
	progress_clear_current();
	fprintf(stderr, "%s: %s is authenticated (key id %016llx): give its key with --key FILE\n",
		cli_prog, name, (unsigned long long)key_id);
	return EXIT_USAGE;
}

int cli_key_reader(fvm_reader *r, const char *name, const struct cli_key *k)
{
	fvm_file_info fi = FVM_FILE_INFO_INIT;
	int c;

	if (k) {
		if ((c = fvm_reader_set_key(r, k->key, sizeof(k->key))))
			return cli_fail(name, c);
		return 0;
	}
	if ((c = fvm_reader_info(r, &fi)))
		return cli_fail(name, c);
	if (fi.authenticated)
		return cli_key_missing(name, fi.key_id);
	return 0;
}

/* ------------------------------------------------------------ SIGBUS of mapped inputs */

#define WATCH_MAX 64
static struct watch {
	const char *addr;
	uint64_t len;
	const char *name;
} watched[WATCH_MAX];

static void put(const char *p)
{
	if (write(STDERR_FILENO, p, strlen(p)) < 0) {
		/* nothing left to tell it with */
	}
}

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	const char *a = si->si_addr;

	(void)uc;
	for (size_t i = 0; i < WATCH_MAX; i++) {
		const struct watch *w = &watched[i];
		char hex[19] = "0x", *q = hex + 2;
		uint64_t off;
		int started = 0;

		if (!w->addr || a < w->addr || (uint64_t)(a - w->addr) >= w->len)
			continue;
		off = (uint64_t)(a - w->addr) & ~(uint64_t)4095;
		for (int sh = 60; sh >= 0; sh -= 4) {
			unsigned d = (unsigned)(off >> sh) & 15;

			if (d || started || sh == 0) {
				*q++ = "0123456789abcdef"[d];
				started = 1;
			}
		}
		*q = '\0';
		put(cli_prog);
		put(": ");
		put(w->name);
		put(": cannot read the page at offset ");
		put(hex);
		put(": an I/O error of its device, or the file was cut short while it was read\n");
		if (cli_output && strcmp(cli_output, "-")) {
			put(cli_prog);
			put(": ");
			put(cli_output);
			put(": not written; on a file system without O_TMPFILE a temporary "
			    "may be left beside it: fvmsnap clean ");
			put(cli_output);
			put(" removes it\n");
		}
		_exit(EXIT_SYSTEM);
	}
	signal(sig, SIG_DFL); /* not ours: the crash it is */
	raise(sig);
}

void cli_watch_mapping(const void *addr, uint64_t len, const char *name)
{
	static int installed;

	if (!installed) {
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = on_sigbus;
		sa.sa_flags = SA_SIGINFO;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGBUS, &sa, NULL);
		installed = 1;
	}
	for (size_t i = 0; i < WATCH_MAX; i++)
		if (!watched[i].addr) {
			watched[i] = (struct watch){ addr, len, name };
			return;
		}
}

void cli_unwatch_mapping(const void *addr)
{
	for (size_t i = 0; i < WATCH_MAX; i++)
		if (watched[i].addr == addr)
			watched[i].addr = NULL;
}
