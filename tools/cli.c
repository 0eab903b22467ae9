/*
 * Shared helpers of the fvmsnap subcommands (see cli.h): the exit-code
 * mapping, the one error format, size parsing, atomic small files, signals,
 * and the one escaper of names for JSON and for the terminal.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "progress.h"

const char *cli_prog = "fvmsnap";

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

int cli_fail_detail(const char *what, int code, const char *detail,
		    const char *not_what)
{
	const char *text = code == FVM_EMAGIC && not_what ? not_what
			   : fvm_strerror(code);

	progress_clear_current();
	if (detail && *detail)
		fprintf(stderr, "%s: %s: %s: %s\n", cli_prog, what, text, detail);
	else
		fprintf(stderr, "%s: %s: %s\n", cli_prog, what, text);
	return cli_exit_code(code);
}

int cli_fail(const char *what, int code)
{
	return cli_fail_detail(what, code, fvm_error_detail(), NULL);
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

unsigned cli_run_bucket(uint64_t pages)
{
	return 63u - (unsigned)__builtin_clzll(pages);
}

uint64_t cli_run_bucket_max(unsigned k)
{
	return k == 63 ? ~0ull : (2ull << k) - 1;
}

void cli_run_bucket_label(char *buf, size_t len, unsigned k)
{
	if (k == 0)
		snprintf(buf, len, "1");
	else
		snprintf(buf, len, "%llu-%llu", 1ull << k,
			 (unsigned long long)cli_run_bucket_max(k));
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

const char *cli_fmt_bytes(char *buf, size_t len, uint64_t bytes)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)bytes;
	unsigned i = 0;

	while (v >= 1024 && i < 4) {
		v /= 1024;
		i++;
	}
	if (i == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)bytes);
	else
		snprintf(buf, len, "%.1f %s", v, units[i]);
	return buf;
}

uint64_t cli_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

void cli_install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: a blocked read returns EINTR and we stop sooner. */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	/* A closed output pipe shows up as EPIPE from write(), reported. */
	signal(SIGPIPE, SIG_IGN);
}

int cli_interrupted(void)
{
	return interrupted;
}

int cli_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR && !interrupted)
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
	size_t n = strlen(path);
	const char *slash = strrchr(path, '/');
	const char *base = slash ? slash + 1 : path;
	size_t dir_len = (size_t)(base - path);

	struct stat st;

	a->fd = -1;
	a->path = a->tmp = NULL;
	if (stat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
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
	a->fd = mkostemp(a->tmp, O_CLOEXEC);
	if (a->fd < 0) {
		int err = errno;

		free(a->path);
		free(a->tmp);
		a->path = a->tmp = NULL;
		return -err;
	}
	/* mkstemp makes 0600; outputs are ordinary files: 0666 & ~umask. */
	{
		mode_t mask = umask(0);

		umask(mask);
		fchmod(a->fd, 0666 & ~mask);
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

int cli_atomic_sync(struct cli_atomic *a)
{
	int ret = 0;

	if (a->fd < 0)
		return 0;
	/* devices and FIFOs written in place may not support fsync */
	if (fsync(a->fd) < 0 && (a->tmp || errno != EINVAL))
		ret = -errno;
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
	if (!ret && rename(a->tmp, a->path) < 0)
		ret = -errno;
	if (ret)
		unlink(a->tmp);
	else
		ret = cli_fsync_dir_of(a->path);
	free(a->path);
	free(a->tmp);
	a->path = a->tmp = NULL;
	return ret;
}

void cli_atomic_abort(struct cli_atomic *a)
{
	if (a->fd >= 0)
		close(a->fd);
	a->fd = -1;
	if (a->tmp)
		unlink(a->tmp);
	free(a->path);
	free(a->tmp);
	a->path = a->tmp = NULL;
}

void cli_utc_now(char *buf, size_t len)
{
	time_t t = time(NULL);
	struct tm tm;

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

void cli_print_escaped(FILE *f, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		switch (c) {
		case '\\': fputs("\\\\", f); break;
		case '\t': fputs("\\t", f); break;
		case '\n': fputs("\\n", f); break;
		case '\r': fputs("\\r", f); break;
		default:
			if (c < 0x20 || c > 0x7e)
				fprintf(f, "\\x%02x", c);
			else
				fputc(c, f);
		}
	}
}

/*
 * Length of the valid UTF-8 sequence at s (left bytes available), or 0:
 * truncated sequences, overlong forms, surrogates and code points above
 * U+10FFFF are not valid.
 */
static size_t utf8_len(const unsigned char *s, size_t left)
{
	size_t n, i;

	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4;
	else
		return 0;
	if (left < n)
		return 0;
	for (i = 1; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0) ||
	    (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))
		return 0;
	return n;
}

void cli_json_mem(FILE *f, const void *str, size_t len)
{
	const unsigned char *s = str, *end = s + len;

	fputc('"', f);
	while (s < end) {
		size_t n;

		if (*s == '"' || *s == '\\') {
			fputc('\\', f);
			fputc(*s++, f);
		} else if (*s == '\n') {
			fputs("\\n", f), s++;
		} else if (*s == '\t') {
			fputs("\\t", f), s++;
		} else if (*s == '\r') {
			fputs("\\r", f), s++;
		} else if (*s < 0x20 || *s == 0x7f) {
			fprintf(f, "\\u%04x", *s++);
		} else if (*s < 0x80) {
			fputc(*s++, f);
		} else if ((n = utf8_len(s, (size_t)(end - s))) > 0) {
			fwrite(s, 1, n, f);
			s += n;
		} else {
			/* not UTF-8: its Latin-1 reading, so no byte is lost */
			fprintf(f, "\\u%04x", *s++);
		}
	}
	fputc('"', f);
}

void cli_json_str(FILE *f, const char *s)
{
	cli_json_mem(f, s, strlen(s));
}

int cli_print_safe_mem(FILE *f, const void *str, size_t len, int width)
{
	const unsigned char *s = str, *end = s + len;
	int chars = 0, i;

	while (s < end) {
		size_t n = *s < 0x80 ? 1 : utf8_len(s, (size_t)(end - s));

		/* C1 controls (U+0080..U+009F, c2 80..c2 9f) act like C0 ones
		 * on many terminals. */
		if (n == 0 || *s < 0x20 || *s == 0x7f || (*s == 0xc2 && s[1] < 0xa0)) {
			fputc('?', f);
			s += n ? n : 1;
		} else {
			fwrite(s, 1, n, f);
			s += n;
		}
		chars++;
	}
	for (i = chars; i < width; i++)
		fputc(' ', f);
	return chars;
}

int cli_print_safe(FILE *f, const char *s, int width)
{
	return cli_print_safe_mem(f, s, strlen(s), width);
}
