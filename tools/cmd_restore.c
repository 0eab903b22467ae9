/*
 * fvmsnap restore: start an unmodified QEMU from a snapshot, fast.
 *
 * The guest's main RAM block goes where QEMU maps it: a file in a RAM
 * directory (tmpfs by default), written by the library's loader straight
 * from the snapshot, zero runs left as holes. QEMU is started with that
 * file as a shared memory backend (memory-backend-file,share=on) and the
 * x-ignore-shared capability, so the incoming migration stream carries no
 * page of it: the stream (tools/stock/export.c) holds the device state and
 * the pages of the small blocks (ROMs, ACPI tables, VGA memory) only.
 * QEMU reads it from an fd (-incoming fd:N); fvmsnap waits on QMP until it
 * is loaded, leaves the VM paused or running, and prints the time of each
 * phase. doc/QEMU.md, "Restore", says why this shape and what it costs.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "disk_id.h"
#include "common/escape.h"
#include "common/qmp.h"
#include "common/util.h"
#include "stock/stock.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: fvmsnap restore SNAP.fvm [options] -- QEMU [QEMU ARGS...]\n"
		"\n"
		"Start QEMU (e.g. qemu-system-x86_64 with the VM's usual arguments) from a\n"
		"snapshot converted from QEMU. The main RAM block is written into a file in\n"
		"the RAM directory and mapped by QEMU as a shared memory backend; the rest of\n"
		"the state reaches QEMU as a migration stream without those pages. fvmsnap\n"
		"adds to the QEMU arguments: -object memory-backend-file, -machine\n"
		"memory-backend=, -m (when missing), -global migration.x-ignore-shared=on,\n"
		"-incoming fd:N, -S and -qmp. QEMU must not be given -incoming or -loadvm.\n"
		"\n"
		"  --ram-dir DIR     where the RAM file goes (default /dev/shm: tmpfs)\n"
		"  --block NAME      the RAM block QEMU maps from a file (default pc.ram)\n"
		"  --paused          leave the VM paused once restored (default)\n"
		"  --run             start the VM once restored\n"
		"  --detach          return once restored, QEMU keeps running (its output\n"
		"                    goes to DIR/qemu.log); else wait for QEMU to exit\n"
		"  --force           restore even when a disk changed since the snapshot\n"
		"  --key KEYFILE     the key of an authenticated snapshot (required for one)\n"
		"  --keep-ram        keep the RAM file (default: removed once QEMU mapped it;\n"
		"                    the memory is freed when QEMU exits)\n"
		"  --timeout SECS    give up when QEMU has not loaded the state (default 120)\n"
		"      --json        the phase times as JSON on stdout\n"
		"  -q, --quiet       no summary line\n"
		"  -h, --help        this help\n"
		"\n"
		"Exit status: as fvmsnap(1); without --detach, QEMU's own exit status once it\n"
		"has run.\n");
}

struct restore {
	const char *snap, *base, *block;
	const struct cli_key *key; /* --key, or NULL */
	int run, detach, keep_ram, json, quiet, force;
	long timeout_ms;
	char **qemu;              /* the user's QEMU command */
	int nqemu;
	char dir[PATH_MAX - 64], ram[PATH_MAX], state[PATH_MAX], sock[PATH_MAX], log[PATH_MAX];
	fvm_reader *r;
	void *mem;                /* the RAM file, mapped, until filled */
	uint64_t ram_len, ram_data;
	const char *machine;      /* of the snapshot (metadata), or NULL */
	pid_t pid;
	int reaped, status;       /* QEMU exited, with this status */
	int err_fd;               /* foreground: QEMU's stderr */
	pthread_t pump;
	int pumping;
	uint64_t t0, t_ram, t_state, t_start, t_qmp, t_loaded;
};

/* ------------------------------------------------------------ QEMU's arguments */

/* QEMU's -m value as bytes: a number in MiB unless it has a suffix. */
static int qemu_mem_bytes(const char *v, uint64_t *out)
{
	char buf[64], *end;
	const char *p = v;
	unsigned long long n;
	size_t len;

	if (!strncmp(p, "size=", 5))
		p += 5;
	len = strcspn(p, ",");
	if (!len || len >= sizeof(buf))
		return -1;
	memcpy(buf, p, len);
	buf[len] = '\0';
	errno = 0;
	n = strtoull(buf, &end, 10);
	if (errno || end == buf)
		return -1;
	switch (*end) {
	case '\0': case 'M': case 'm': n <<= 20; break;
	case 'G': case 'g': n <<= 30; break;
	case 'K': case 'k': n <<= 10; break;
	case 'T': case 't': n <<= 40; break;
	case 'B': case 'b': break;
	default: return -1;
	}
	*out = n;
	return 0;
}

/* The machine type a -machine/-M value names (type=X or a leading X), or "". */
static void machine_type(const char *v, char *out, size_t cap)
{
	const char *t = strstr(v, "type=");
	size_t len;

	if (t && (t == v || t[-1] == ','))
		v = t + 5;
	else if (strchr(v, '=') && strchr(v, '=') < v + strcspn(v, ","))
		v = ""; /* only properties, no type */
	len = strcspn(v, ",");
	if (len >= cap)
		len = cap - 1;
	memcpy(out, v, len);
	out[len] = '\0';
}

/* Does QEMU's machine type t restore a snapshot of machine m? Aliases count. */
static int machine_fits(const char *t, const char *m)
{
	if (!strcmp(t, m))
		return 1;
	if (!strcmp(t, "pc") && !strncmp(m, "pc-i440fx-", 10))
		return 1;
	if (!strcmp(t, "q35") && !strncmp(m, "pc-q35-", 7))
		return 1;
	return 0;
}

/* Check the user's QEMU arguments against the snapshot: 0 or an exit code. */
static int check_args(struct restore *rs, int *has_mem, int *has_machine)
{
	for (int i = 1; i < rs->nqemu; i++) {
		const char *a = rs->qemu[i], *v = i + 1 < rs->nqemu ? rs->qemu[i + 1] : NULL;
		char type[128];
		uint64_t bytes;

		if (a[0] == '-' && a[1] == '-')
			a++; /* QEMU takes --opt as -opt */
		if (!strcmp(a, "-incoming") || !strcmp(a, "-loadvm"))
			return cli_usage_error("QEMU is given %s: restore brings the state itself", a);
		if (!strcmp(a, "-m") && v) {
			*has_mem = 1;
			if (qemu_mem_bytes(v, &bytes))
				return cli_usage_error("QEMU's -m %s: not a size fvmsnap understands", v);
			if (bytes != rs->ram_len)
				return cli_usage_error("QEMU is given -m %s (%" PRIu64 " bytes), but block %s "
						       "of %s has %" PRIu64 " bytes", v, bytes, rs->block,
						       rs->snap, rs->ram_len);
		}
		if ((!strcmp(a, "-machine") || !strcmp(a, "-M")) && v) {
			if (strstr(v, "memory-backend="))
				return cli_usage_error("QEMU is given a memory backend already (-machine %s)", v);
			machine_type(v, type, sizeof(type));
			if (type[0]) {
				*has_machine = 1;
				if (rs->machine && !machine_fits(type, rs->machine))
					return cli_usage_error("%s is a snapshot of machine %s; QEMU is told "
							       "-machine %s", rs->snap, rs->machine, type);
			}
		}
	}
	return 0;
}

/* ------------------------------------------------------------ phases */

/*
 * The RAM file, DIR/ram, of the block's length and all holes: QEMU opens
 * and maps it at start, fill_ram() writes the data while QEMU starts.
 */
static int make_ram(struct restore *rs)
{
	struct statvfs sv;
	char b1[32], b2[32];
	int fd, err;

	if (statvfs(rs->dir, &sv) == 0 &&
	    (uint64_t)sv.f_bavail * sv.f_frsize < rs->ram_data + (1u << 20)) {
		cli_msg("RAM directory %s: %s free, block %s needs %s", rs->base,
			util_fmt_bytes(b1, sizeof(b1), (uint64_t)sv.f_bavail * sv.f_frsize),
			rs->block, util_fmt_bytes(b2, sizeof(b2), rs->ram_data));
		return EXIT_SYSTEM;
	}
	fd = open(rs->ram, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return cli_fail_sys(rs->ram, errno);
	if (ftruncate(fd, (off_t)rs->ram_len) < 0) {
		err = cli_fail_sys(rs->ram, errno);
		close(fd);
		return err;
	}
	rs->mem = mmap(NULL, rs->ram_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (rs->mem == MAP_FAILED) {
		rs->mem = NULL;
		return cli_fail_sys(rs->ram, errno);
	}
	return 0;
}

/*
 * The block's pages into the RAM file, by the library's loader (data runs
 * read straight into the shared mapping; zero runs stay holes). Done while
 * QEMU starts: QEMU reads none of it before the device state is loaded,
 * which wait_loaded() starts only after this returned.
 */
static int fill_ram(struct restore *rs)
{
	fvm_load_options lo = FVM_LOAD_OPTIONS_INIT;
	fvm_load_tuning tu = FVM_LOAD_TUNING_INIT;
	fvm_mapping m = FVM_MAPPING_INIT;
	void *mem = rs->mem;
	int err;

	rs->mem = NULL;
	if ((err = cli_load_env(&lo, &tu))) {
		munmap(mem, rs->ram_len);
		return err;
	}
	/* a file: never mapped over, and new, so its holes read as zero */
	m.flags = FVM_MAP_SHARED | FVM_MAP_ZERO;
	m.name = rs->block;
	m.addr = mem;
	m.length = rs->ram_len;
	/* CRCs checked: a damaged snapshot is refused before QEMU gets it (it
	 * costs about 24 ms of 155 MiB, while QEMU starts) */
	lo.flags = FVM_LOAD_PARTIAL | FVM_LOAD_VERIFY;
	err = fvm_load(rs->r, &m, 1, &lo, NULL);
	munmap(mem, rs->ram_len);
	return err ? cli_fail(rs->snap, err) : 0;
}

/* The migration stream without the block's pages, into DIR/state.mig. */
static int write_state(struct restore *rs, int *fd)
{
	const char *shared[2] = { rs->block, NULL };
	struct stock_export_opts o = { 0 };
	struct stock_export_result res;
	int err;

	*fd = open(rs->state, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (*fd < 0)
		return cli_fail_sys(rs->state, errno);
	o.input = rs->snap;
	o.reader = rs->r;
	o.out_fd = *fd;
	o.out_name = rs->state;
	o.shared = shared;
	if ((err = stock_export(&o, &res)))
		return cli_fail(rs->snap, err);
	if (lseek(*fd, 0, SEEK_SET) < 0)
		return cli_fail_sys(rs->state, errno);
	return 0;
}

/* Foreground: QEMU's stderr to ours, as it comes (a failure's reason too). */
static void *pump(void *arg)
{
	struct restore *rs = arg;
	char buf[4096];
	ssize_t n;

	while ((n = read(rs->err_fd, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR))
		if (n > 0)
			(void)!write(STDERR_FILENO, buf, (size_t)n);
	return NULL;
}

static int start_qemu(struct restore *rs, int state_fd, int has_mem, int has_machine)
{
	char obj[PATH_MAX + 128], mach[512], mem[32], qmp[PATH_MAX + 32];
	char **argv = calloc((size_t)rs->nqemu + 16, sizeof(*argv));
	int n = 0, pfd[2] = { -1, -1 }, logfd = -1;

	if (!argv)
		return cli_fail_sys("QEMU arguments", ENOMEM);
	for (int i = 0; i < rs->nqemu; i++)
		argv[n++] = rs->qemu[i];
	snprintf(obj, sizeof(obj), "memory-backend-file,id=%s,size=%" PRIu64 ",mem-path=%s,share=on",
		 rs->block, rs->ram_len, rs->ram);
	argv[n++] = "-object";
	argv[n++] = obj;
	if (!has_machine && rs->machine)
		snprintf(mach, sizeof(mach), "type=%s,memory-backend=%s", rs->machine, rs->block);
	else
		snprintf(mach, sizeof(mach), "memory-backend=%s", rs->block);
	argv[n++] = "-machine";
	argv[n++] = mach;
	if (!has_mem) {
		snprintf(mem, sizeof(mem), "%" PRIu64 "M", rs->ram_len >> 20);
		argv[n++] = "-m";
		argv[n++] = mem;
	}
	/* capabilities are set over QMP before the stream is read (QEMU 7.2
	 * has no -global for x-ignore-shared) */
	argv[n++] = "-incoming";
	argv[n++] = "defer";
	argv[n++] = "-S";
	snprintf(qmp, sizeof(qmp), "unix:%s,server=on,wait=off", rs->sock);
	argv[n++] = "-qmp";
	argv[n++] = qmp;
	argv[n] = NULL;

	if (rs->detach) {
		logfd = open(rs->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (logfd < 0) {
			free(argv);
			return cli_fail_sys(rs->log, errno);
		}
	} else if (pipe2(pfd, O_CLOEXEC) < 0) {
		free(argv);
		return cli_fail_sys("pipe", errno);
	}
	rs->t_start = util_now_ns();
	rs->pid = fork();
	if (rs->pid == 0) {
		int fl = fcntl(state_fd, F_GETFD);

		(void)fcntl(state_fd, F_SETFD, fl & ~FD_CLOEXEC);
		dup2(rs->detach ? logfd : pfd[1], STDERR_FILENO);
		if (rs->detach) {
			/* a daemon: nothing of the caller's terminal or pipes kept
			 * open (a caller reading our output would wait for QEMU) */
			int nul = open("/dev/null", O_RDONLY);

			if (nul >= 0)
				dup2(nul, STDIN_FILENO);
			dup2(logfd, STDOUT_FILENO);
			setsid();
		}
		signal(SIGPIPE, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		execvp(argv[0], argv);
		fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	free(argv);
	if (logfd >= 0)
		close(logfd);
	if (pfd[1] >= 0)
		close(pfd[1]);
	if (rs->pid < 0) {
		if (pfd[0] >= 0)
			close(pfd[0]);
		return cli_fail_sys("fork", errno);
	}
	if (!rs->detach) {
		rs->err_fd = pfd[0];
		rs->pumping = pthread_create(&rs->pump, NULL, pump, rs) == 0;
	}
	return 0;
}

/* 1 while QEMU runs; once it exited, its status is kept for the message. */
static int qemu_alive(void *ctx)
{
	struct restore *rs = ctx;

	if (rs->reaped)
		return 0;
	if (waitpid(rs->pid, &rs->status, WNOHANG) == rs->pid)
		rs->reaped = 1;
	return !rs->reaped;
}

/* What QEMU said before it failed: its stderr's last lines. */
static void show_qemu_tail(struct restore *rs)
{
	char buf[4097];
	ssize_t n = 0;
	off_t end, from;
	int fd;

	if (!rs->detach) { /* on our stderr already, as it came: wait for its end */
		if (rs->pumping)
			pthread_join(rs->pump, NULL);
		rs->pumping = 0;
		return;
	}
	fd = open(rs->log, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	end = lseek(fd, 0, SEEK_END);
	from = end > 4096 ? end - 4096 : 0;
	if (end > 0)
		n = pread(fd, buf, (size_t)(end - from), from);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	fprintf(stderr, "%s: QEMU said:\n%s%s", cli_prog, buf, buf[n - 1] == '\n' ? "" : "\n");
}

/* After QEMU failed or gave up: its exit, what it said, and an exit code. */
static int qemu_failed(struct restore *rs, const char *what)
{
	int status = rs->status;
	pid_t w = rs->reaped ? rs->pid : waitpid(rs->pid, &status, WNOHANG);

	if (w == 0) { /* still there: it has failed us, stop it */
		kill(rs->pid, SIGTERM);
		for (int i = 0; i < 50 && (w = waitpid(rs->pid, &status, WNOHANG)) == 0; i++)
			usleep(20000);
		if (w == 0) {
			kill(rs->pid, SIGKILL);
			w = waitpid(rs->pid, &status, 0);
		}
	}
	rs->reaped = 1;
	show_qemu_tail(rs);
	if (w == rs->pid && WIFEXITED(status))
		cli_msg("%s: QEMU exited with status %d before the VM was restored", what,
			WEXITSTATUS(status));
	else if (w == rs->pid && WIFSIGNALED(status))
		cli_msg("%s: QEMU was killed by signal %d before the VM was restored", what,
			WTERMSIG(status));
	else
		cli_msg("%s: QEMU did not restore the VM", what);
	return EXIT_INVALID;
}

/* QMP: wait until the incoming stream is loaded; then cont for --run. */
static int wait_loaded(struct restore *rs, struct qmp *q, int state_fd)
{
	long deadline = qmp_now_ms() + rs->timeout_ms;
	char reply[4096], st[64], cmd[160];
	int err;

	err = qmp_connect(q, rs->sock, deadline, qemu_alive, rs);
	if (err)
		return qemu_failed(rs, err == -ETIMEDOUT ? "QMP did not answer in time" : rs->snap);
	rs->t_qmp = util_now_ns();
	snprintf(cmd, sizeof(cmd), "{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":"
		 "\"fd:%d\"}}", state_fd);
	if (qmp_command(q, "{\"execute\":\"migrate-set-capabilities\",\"arguments\":"
			"{\"capabilities\":[{\"capability\":\"x-ignore-shared\",\"state\":true}]}}",
			reply, sizeof(reply), deadline) ||
	    qmp_command(q, cmd, reply, sizeof(reply), deadline)) {
		cli_msg("QMP: %s", reply);
		return qemu_failed(rs, rs->snap);
	}
	for (;;) {
		err = qmp_command(q, "{\"execute\":\"query-status\"}", reply, sizeof(reply), deadline);
		if (err)
			return qemu_failed(rs, rs->snap);
		if (qmp_string(reply, "status", st, sizeof(st)))
			return qemu_failed(rs, "QMP query-status gave no status");
		if (strcmp(st, "inmigrate"))
			break;
		if (qmp_now_ms() >= deadline)
			return qemu_failed(rs, "the device state did not load in time");
		usleep(1000);
	}
	if (strcmp(st, "paused") && strcmp(st, "prelaunch")) {
		cli_msg("%s: after the incoming stream QEMU's status is %s", rs->snap, st);
		return qemu_failed(rs, rs->snap);
	}
	rs->t_loaded = util_now_ns();
	if (rs->run &&
	    qmp_command(q, "{\"execute\":\"cont\"}", reply, sizeof(reply), deadline)) {
		cli_msg("QMP cont: %s", reply);
		return qemu_failed(rs, rs->snap);
	}
	return 0;
}

static void report(struct restore *rs)
{
	/* RAM is written while QEMU starts: both are timed from QEMU's fork */
	double ram = (double)(rs->t_ram - rs->t_start) / 1e9, state = (double)(rs->t_state - rs->t0) / 1e9;
	double qemu = (double)(rs->t_qmp - rs->t_start) / 1e9;
	double load = (double)(rs->t_loaded - rs->t_qmp) / 1e9;
	double total = (double)(rs->t_loaded - rs->t0) / 1e9;
	char b1[32];

	if (rs->json) {
		fputs("{\"snapshot\":", stdout);
		json_str(stdout, rs->snap);
		printf(",\"ram_seconds\":%.6f,\"stream_seconds\":%.6f,\"qemu_start_seconds\":%.6f,"
		       "\"device_state_seconds\":%.6f,\"total_seconds\":%.6f,\"ram_bytes\":%" PRIu64
		       ",\"pid\":%d,\"qmp\":", ram, state, qemu, load, total, rs->ram_data,
		       (int)rs->pid);
		json_str(stdout, rs->sock);
		printf(",\"running\":%s}\n", rs->run ? "true" : "false");
		fflush(stdout);
	}
	if (rs->quiet)
		return;
	fprintf(stderr, "restored %s in %.3f s: stream %.3f s, then RAM %.3f s (%s of %s into %s) "
		"while QEMU started (QMP up %.3f s after start), device state %.3f s; VM %s, QEMU "
		"pid %d, QMP %s\n", rs->snap, total, state, ram,
		util_fmt_bytes(b1, sizeof(b1), rs->ram_data), rs->block, rs->base, qemu, load,
		rs->run ? "running" : "paused", (int)rs->pid, rs->sock);
}

static volatile sig_atomic_t forward_pid;

static void forward(int sig)
{
	if (forward_pid > 0)
		kill((pid_t)forward_pid, sig);
}

/* Foreground: wait for QEMU, passing on SIGINT/SIGTERM; its exit status. */
static int wait_qemu(struct restore *rs)
{
	struct sigaction sa = { .sa_handler = forward };
	int status = 0;

	forward_pid = rs->pid;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	while (waitpid(rs->pid, &status, 0) < 0 && errno == EINTR)
		;
	if (rs->pumping)
		pthread_join(rs->pump, NULL);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void cleanup(struct restore *rs, int keep_dir)
{
	if (!rs->dir[0])
		return;
	if (!rs->keep_ram || !keep_dir)
		unlink(rs->ram);
	unlink(rs->state);
	if (!keep_dir) {
		unlink(rs->sock);
		unlink(rs->log);
		rmdir(rs->dir);
	}
}

enum { OPT_RAM_DIR = 256, OPT_BLOCK, OPT_PAUSED, OPT_RUN, OPT_DETACH, OPT_KEEP, OPT_TIMEOUT,
       OPT_JSON, OPT_FORCE, OPT_KEY };

static int parse(struct restore *rs, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "ram-dir", required_argument, NULL, OPT_RAM_DIR },
		{ "block", required_argument, NULL, OPT_BLOCK },
		{ "paused", no_argument, NULL, OPT_PAUSED },
		{ "run", no_argument, NULL, OPT_RUN },
		{ "detach", no_argument, NULL, OPT_DETACH },
		{ "keep-ram", no_argument, NULL, OPT_KEEP },
		{ "force", no_argument, NULL, OPT_FORCE },
		{ "key", required_argument, NULL, OPT_KEY },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	uint64_t secs;
	int c, dd = 1;

	/* fvmsnap's options and the snapshot end at "--": what follows is QEMU's */
	while (dd < argc && strcmp(argv[dd], "--"))
		dd++;
	while ((c = getopt_long(dd, argv, "qh", opts, NULL)) != -1) {
		switch (c) {
		case OPT_RAM_DIR: rs->base = optarg; break;
		case OPT_BLOCK: rs->block = optarg; break;
		case OPT_PAUSED: rs->run = 0; break;
		case OPT_RUN: rs->run = 1; break;
		case OPT_DETACH: rs->detach = 1; break;
		case OPT_KEEP: rs->keep_ram = 1; break;
		case OPT_FORCE: rs->force = 1; break;
		case OPT_KEY:
			if ((c = cli_key_load(optarg, &rs->key)))
				return c;
			break;
		case OPT_TIMEOUT:
			if (cli_parse_uint(optarg, 86400, &secs) || !secs)
				return cli_usage_error("--timeout %s: not a number of seconds", optarg);
			rs->timeout_ms = (long)secs * 1000;
			break;
		case OPT_JSON: rs->json = 1; break;
		case 'q': rs->quiet = 1; break;
		case 'h': usage(stdout); return -1;
		default: return cli_try_help();
		}
	}
	if (optind >= dd)
		return cli_usage_error("no snapshot given");
	if (optind + 1 < dd)
		return cli_usage_error("expected one snapshot before --, got %s and %s",
				       argv[optind], argv[optind + 1]);
	rs->snap = argv[optind];
	if (dd >= argc)
		return cli_usage_error("expected -- and the QEMU command after the snapshot");
	if (dd + 1 >= argc)
		return cli_usage_error("no QEMU command after --");
	rs->qemu = argv + dd + 1;
	rs->nqemu = argc - dd - 1;
	if (!strcmp(rs->snap, "-"))
		return cli_usage_error("restore needs a snapshot file, not standard input");
	return 0;
}

int cmd_restore(int argc, char **argv)
{
	struct restore rs = { .base = "/dev/shm", .block = "pc.ram", .timeout_ms = 120000,
			      .err_fd = -1 };
	fvm_block_info bi = FVM_BLOCK_INFO_INIT;
	struct qmp q = { .fd = -1 };
	int has_mem = 0, has_machine = 0, state_fd = -1, err;
	uint32_t id;

	if ((err = parse(&rs, argc, argv)))
		return err < 0 ? EXIT_OK : err;
	if ((err = fvm_reader_open(&rs.r, rs.snap)))
		return cli_fail(rs.snap, err);
	if ((err = cli_key_reader(rs.r, rs.snap, rs.key)))
		goto out;
	if ((err = fvm_reader_find_block(rs.r, rs.block, &id)) ||
	    (err = fvm_reader_block(rs.r, id, &bi))) {
		err = cli_fail(rs.snap, err);
		goto out;
	}
	rs.ram_len = bi.length;
	rs.ram_data = bi.data_pages * bi.page_size;
	rs.machine = fvm_reader_meta_get(rs.r, "machine");
	if ((err = check_args(&rs, &has_mem, &has_machine)) ||
	    (err = disk_id_check(rs.r, rs.snap, rs.qemu, rs.nqemu, rs.force)))
		goto out;
	/* QMP's socket is DIR/qmp.sock, and a unix socket path has 107 bytes */
	if (strlen(rs.base) > 64) {
		err = cli_usage_error("--ram-dir %s: longer than 64 bytes (QEMU's QMP socket goes "
				      "there too)", rs.base);
		goto out;
	}
	snprintf(rs.dir, sizeof(rs.dir), "%s/fvmsnap-restore-XXXXXX", rs.base);
	if (!mkdtemp(rs.dir)) {
		err = cli_fail_sys(rs.base, errno);
		rs.dir[0] = '\0';
		goto out;
	}
	snprintf(rs.ram, sizeof(rs.ram), "%s/%s", rs.dir, "ram");
	snprintf(rs.state, sizeof(rs.state), "%s/state.mig", rs.dir);
	snprintf(rs.sock, sizeof(rs.sock), "%s/qmp.sock", rs.dir);
	snprintf(rs.log, sizeof(rs.log), "%s/qemu.log", rs.dir);

	rs.t0 = util_now_ns();
	if ((err = make_ram(&rs)) || (err = write_state(&rs, &state_fd)))
		goto out;
	rs.t_state = util_now_ns();
	if ((err = start_qemu(&rs, state_fd, has_mem, has_machine)))
		goto out;
	if ((err = fill_ram(&rs))) {
		qemu_failed(&rs, "RAM not written");
		rs.pid = 0;
		goto out;
	}
	rs.t_ram = util_now_ns();
	err = wait_loaded(&rs, &q, state_fd);
	close(state_fd);
	state_fd = -1;
	if (err) {
		rs.pid = 0;
		goto out;
	}
	/* QEMU has the RAM file mapped and the stream read: neither is needed by name */
	cleanup(&rs, 1);
	report(&rs);
	qmp_close(&q);
	fvm_reader_free(rs.r);
	rs.r = NULL;
	if (rs.detach)
		return EXIT_OK;
	err = wait_qemu(&rs);
	cleanup(&rs, 0);
	return err;
out:
	if (rs.mem)
		munmap(rs.mem, rs.ram_len);
	if (state_fd >= 0)
		close(state_fd);
	qmp_close(&q);
	fvm_reader_free(rs.r);
	cleanup(&rs, 0);
	return err;
}
