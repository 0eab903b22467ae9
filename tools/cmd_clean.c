/*
 * fvmsnap clean: list and remove the temporaries a killed writer left.
 * Every output of fvmsnap and of libfastvm's path writer is written as a
 * temporary beside it, named .NAME.XXXXXX (NAME the target's file name,
 * XXXXXX six letters or digits, as mkstemp makes them), and renamed over
 * NAME when complete. Where the filesystem has O_TMPFILE the file has no
 * name until then; elsewhere a SIGKILL leaves it behind. A file is taken
 * for such a leftover only when all of these hold (doc/fvmsnap.1, clean):
 * its name has exactly that form, it is a regular file, it begins with the
 * snapshot magic "FVMSNAP\x1a" or the QEMU stream magic "QEVM" or is
 * empty, no process has it open (every /proc/PID/fd read; a process
 * whose fd directory cannot be read counts as holding it) or mapped (its
 * /proc/PID/maps, where readable), and it was not changed in the last --min-age seconds (a writer
 * between naming its file and renaming it holds no descriptor).
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "common/util.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: fvmsnap clean [--dry-run] [--min-age SECS] [-q] DIR|FILE...\n"
		"\n"
		"List and remove stale temporaries of fvmsnap and libfastvm writers:\n"
		"files named .NAME.XXXXXX (XXXXXX: six letters or digits) that begin\n"
		"with a snapshot or QEMU stream magic or are empty, that no process\n"
		"holds open or mapped, and that did not change for SECS seconds. DIR:\n"
		"every such file in DIR; FILE: the temporaries of the target FILE\n"
		"(.FILE.XXXXXX beside it). Each is listed with its size and age.\n"
		"\n"
		"  -n, --dry-run      list, remove nothing\n"
		"      --min-age SECS keep files changed less than SECS ago (default 60)\n"
		"  -q, --quiet        list nothing (errors are still reported)\n"
		"  -h, --help         this help\n");
}

#define MAGIC_FVM "FVMSNAP\x1a"
#define MAGIC_QEVM "QEVM"
#define MAX_CANDIDATES 4096

struct candidate {
	char path[PATH_MAX];
	dev_t dev;
	ino_t ino;
	off_t size;
	time_t changed;           /* max(mtime, ctime) */
	pid_t holder;             /* a process holding it; -1 none */
	int mapped;               /* holder has it mapped, not open */
	int uninspectable;        /* holder could not be read */
};

struct clean {
	int dry_run, quiet;
	uint64_t min_age;
	struct candidate *c;
	unsigned n;               /* candidates found... */
	int full;                 /* ...and more were not kept */
	int errors;
};

/* ".NAME.XXXXXX" with a non-empty NAME; base: NAME must be exactly it. */
static int temp_name(const char *name, const char *base)
{
	size_t len = strlen(name);

	if (len < 1 + 1 + 1 + 6 || name[0] != '.' || name[len - 7] != '.')
		return 0;
	for (size_t i = len - 6; i < len; i++)
		if (!isascii((unsigned char)name[i]) || !isalnum((unsigned char)name[i]))
			return 0;
	if (base)
		return len - 8 == strlen(base) && !memcmp(name + 1, base, len - 8);
	return 1;
}

/* Regular, with our magic or empty; fills in the candidate's identity. */
static int ours(struct clean *cl, const char *path, struct candidate *c)
{
	char head[8];
	struct stat st, lst;
	ssize_t got;
	int fd;

	if (lstat(path, &lst) < 0) {
		if (errno == ENOENT)
			return 0; /* gone meanwhile */
		cli_fail_sys(path, errno);
		cl->errors++;
		return 0;
	}
	if (!S_ISREG(lst.st_mode))
		return 0;
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		cli_fail_sys(path, errno);
		cl->errors++;
		return 0;
	}
	got = fstat(fd, &st) < 0 ? -1 : pread(fd, head, sizeof(head), 0);
	if (got < 0) {
		cli_fail_sys(path, errno);
		cl->errors++;
		close(fd);
		return 0;
	}
	close(fd);
	if (st.st_dev != lst.st_dev || st.st_ino != lst.st_ino)
		return 0; /* replaced meanwhile */
	if (!(st.st_size == 0 ||
	      (got >= 8 && !memcmp(head, MAGIC_FVM, 8)) ||
	      (got >= 4 && !memcmp(head, MAGIC_QEVM, 4))))
		return 0;
	snprintf(c->path, sizeof(c->path), "%s", path);
	c->dev = st.st_dev;
	c->ino = st.st_ino;
	c->size = st.st_size;
	c->changed = st.st_mtime > st.st_ctime ? st.st_mtime : st.st_ctime;
	c->holder = -1;
	c->mapped = 0;
	c->uninspectable = 0;
	return 1;
}

static struct candidate *find(struct clean *cl, dev_t dev, ino_t ino);

static void add(struct clean *cl, const char *path)
{
	struct candidate *c = &cl->c[cl->n];

	if (cl->n == MAX_CANDIDATES) {
		if (!cl->full++) {
			cli_msg("more than %d temporaries: the rest are left for another run",
				MAX_CANDIDATES);
			cl->errors++;
		}
		return;
	}
	/* named twice (DIR and a FILE in it): once */
	if (ours(cl, path, c) && !find(cl, c->dev, c->ino))
		cl->n++;
}

/* The temporaries in dir (of target base, or of any target when NULL). */
static void scan_dir(struct clean *cl, const char *dir, const char *base)
{
	char path[PATH_MAX];
	struct dirent *e;
	DIR *d = opendir(dir);

	if (!d) {
		cli_fail_sys(dir, errno);
		cl->errors++;
		return;
	}
	while ((e = readdir(d)) != NULL) {
		if (!temp_name(e->d_name, base))
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= (int)sizeof(path))
			continue;
		add(cl, path);
	}
	closedir(d);
}

static void operand(struct clean *cl, const char *arg)
{
	struct stat st;
	char *copy, *slash;

	if (stat(arg, &st) == 0 && S_ISDIR(st.st_mode)) {
		scan_dir(cl, arg, NULL);
		return;
	}
	/* a target, existing or not: .BASE.XXXXXX in its directory */
	copy = strdup(arg);
	if (!copy) {
		cli_fail_sys(arg, ENOMEM);
		cl->errors++;
		return;
	}
	slash = strrchr(copy, '/');
	if (slash && slash[1] == '\0') {
		cli_msg("%s: No such directory", arg);
		cl->errors++;
	} else if (slash) {
		*slash = '\0';
		scan_dir(cl, slash == copy ? "/" : copy, slash + 1);
	} else {
		scan_dir(cl, ".", copy);
	}
	free(copy);
}

/* Among the candidates before cl->n. */
static struct candidate *find(struct clean *cl, dev_t dev, ino_t ino)
{
	for (unsigned i = 0; i < cl->n; i++)
		if (cl->c[i].dev == dev && cl->c[i].ino == ino)
			return &cl->c[i];
	return NULL;
}

/* Every candidate gets pid as holder (a process we could not read). */
static void held_by_all(struct clean *cl, pid_t pid)
{
	for (unsigned i = 0; i < cl->n; i++)
		if (cl->c[i].holder < 0) {
			cl->c[i].holder = pid;
			cl->c[i].uninspectable = 1;
		}
}

/* /proc/PID/fd: 0 read (or the process is gone), -1 not readable. */
static int scan_fds(struct clean *cl, pid_t pid)
{
	char dir[64], path[64 + sizeof(((struct dirent *)0)->d_name)];
	struct dirent *e;
	struct stat st;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	d = opendir(dir);
	if (!d)
		return errno == ENOENT || errno == ESRCH ? 0 : -1;
	while ((e = readdir(d)) != NULL) {
		struct candidate *c;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (stat(path, &st) == 0 && (c = find(cl, st.st_dev, st.st_ino)) && c->holder < 0)
			c->holder = pid;
	}
	closedir(d);
	return 0;
}

/*
 * /proc/PID/maps: "addr perms offset MAJ:MIN INODE path". The inode alone
 * decides: on some filesystems (btrfs) the device maps shows is not the
 * one stat gives, and a mapping missed would be a file removed. Only an
 * extra care where it can be read (it needs ptrace access, which
 * containers often deny for their init): the writers never map their
 * temporaries; they hold them open, which scan_fds sees.
 */
static void scan_maps(struct clean *cl, pid_t pid)
{
	char path[64], line[PATH_MAX + 128];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long ino;

		if (sscanf(line, "%*s %*s %*s %*s %llu", &ino) != 1 || !ino)
			continue;
		for (unsigned i = 0; i < cl->n; i++)
			if (cl->c[i].holder < 0 && cl->c[i].ino == (ino_t)ino) {
				cl->c[i].holder = pid;
				cl->c[i].mapped = 1;
			}
	}
	fclose(f);
}

/* Who holds each candidate: every process but this one. */
static void scan_procs(struct clean *cl)
{
	struct dirent *e;
	DIR *d = opendir("/proc");
	pid_t self = getpid();

	if (!d) {
		/* nothing can be checked: nothing is removed */
		cli_fail_sys("/proc", errno);
		cl->errors++;
		held_by_all(cl, 0);
		return;
	}
	while ((e = readdir(d)) != NULL) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);

		if (*end || pid <= 0 || pid == self)
			continue;
		if (scan_fds(cl, (pid_t)pid) < 0)
			held_by_all(cl, (pid_t)pid);
		else
			scan_maps(cl, (pid_t)pid);
	}
	closedir(d);
}

static const char *fmt_age(char *buf, size_t len, uint64_t s)
{
	if (s < 120)
		snprintf(buf, len, "%" PRIu64 " s", s);
	else if (s < 7200)
		snprintf(buf, len, "%" PRIu64 " min", s / 60);
	else if (s < 2 * 86400)
		snprintf(buf, len, "%" PRIu64 " h", s / 3600);
	else
		snprintf(buf, len, "%" PRIu64 " days", s / 86400);
	return buf;
}

static int by_path(const void *a, const void *b)
{
	return strcmp(((const struct candidate *)a)->path, ((const struct candidate *)b)->path);
}

static void finish(struct clean *cl, uint64_t *removed, uint64_t *bytes)
{
	time_t now = time(NULL);

	qsort(cl->c, cl->n, sizeof(*cl->c), by_path);
	for (unsigned i = 0; i < cl->n; i++) {
		struct candidate *c = &cl->c[i];
		uint64_t age = now > c->changed ? (uint64_t)(now - c->changed) : 0;
		char b1[32], b2[32];
		struct stat st;

		util_fmt_bytes(b1, sizeof(b1), (uint64_t)c->size);
		fmt_age(b2, sizeof(b2), age);
		if (c->holder >= 0) {
			if (!cl->quiet)
				printf("kept %s (%s, %s old): %s %d\n", c->path, b1, b2,
				       c->uninspectable ? "may be open in process (cannot read its "
							  "/proc entry)" :
				       c->mapped ? "mapped by process" : "open in process",
				       (int)c->holder);
			continue;
		}
		if (age < cl->min_age) {
			if (!cl->quiet)
				printf("kept %s (%s, %s old): changed less than %" PRIu64
				       " s ago\n", c->path, b1, b2, cl->min_age);
			continue;
		}
		/* still the file that was checked, not one renamed over it */
		if (lstat(c->path, &st) < 0 || st.st_dev != c->dev || st.st_ino != c->ino)
			continue;
		if (!cl->dry_run && unlink(c->path) < 0) {
			cli_fail_sys(c->path, errno);
			cl->errors++;
			continue;
		}
		(*removed)++;
		*bytes += (uint64_t)c->size;
		if (!cl->quiet)
			printf("%s %s (%s, %s old)\n", cl->dry_run ? "stale" : "removed", c->path, b1,
			       b2);
	}
}

enum { OPT_MIN_AGE = 256 };

int cmd_clean(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dry-run", no_argument, NULL, 'n' },
		{ "min-age", required_argument, NULL, OPT_MIN_AGE },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct clean cl = { .min_age = 60 };
	uint64_t removed = 0, bytes = 0;
	char b1[32];
	int c;

	while ((c = getopt_long(argc, argv, "nqh", opts, NULL)) != -1) {
		switch (c) {
		case 'n': cl.dry_run = 1; break;
		case OPT_MIN_AGE:
			if (cli_parse_uint(optarg, UINT32_MAX, &cl.min_age))
				return cli_usage_error("--min-age %s: not a number of seconds", optarg);
			break;
		case 'q': cl.quiet = 1; break;
		case 'h': usage(stdout); return EXIT_OK;
		default: return cli_try_help();
		}
	}
	if (optind == argc)
		return cli_usage_error("no directory or file given");
	cl.c = calloc(MAX_CANDIDATES, sizeof(*cl.c));
	if (!cl.c)
		return cli_fail_sys("candidates", ENOMEM);
	for (int i = optind; i < argc; i++)
		operand(&cl, argv[i]);
	if (cl.n)
		scan_procs(&cl);
	finish(&cl, &removed, &bytes);
	if (!cl.quiet)
		printf("%s %" PRIu64 " stale temporar%s (%s) of %u found\n",
		       cl.dry_run ? "would remove" : "removed", removed, removed == 1 ? "y" : "ies",
		       util_fmt_bytes(b1, sizeof(b1), bytes), cl.n);
	free(cl.c);
	return cl.errors ? EXIT_SYSTEM : EXIT_OK;
}
