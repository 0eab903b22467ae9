/*
 * fvmsnap save: a snapshot of a running, unmodified QEMU whose RAM is in
 * shared file backends (memory-backend-file,share=on: for instance a QEMU
 * that fvmsnap restore started). Over QMP: stop the VM, migrate with the
 * x-ignore-shared capability (device state and the small RAM blocks only,
 * no page of the shared blocks) into a pipe handed to QEMU with getfd
 * (SCM_RIGHTS; migrate "fd:NAME"), converted on a thread as QEMU writes
 * it: no shell, no named temporary stream. The shared blocks' RAM comes
 * straight from their files (zero pages found, runs written from the
 * mapping, no copy), the snapshot is written atomically, and the VM
 * resumed unless --stop. The capability is set back as it was.
 * doc/QEMU.md, "Save".
 */
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "common/escape.h"
#include "common/qmp.h"
#include "common/util.h"
#include "stock/stock.h"

#define MAX_SHARED 16
#define REPLY (1u << 16)

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: fvmsnap save --qmp SOCKET -o OUT.fvm [options]\n"
		"\n"
		"Snapshot a running QEMU whose RAM is in shared file backends\n"
		"(-object memory-backend-file,...,share=on -machine memory-backend=ID, as\n"
		"fvmsnap restore starts it): the VM is stopped, its device state and small\n"
		"RAM blocks taken by a migration with x-ignore-shared over QMP, the shared\n"
		"RAM read from the backend files, OUT.fvm written atomically, and the VM\n"
		"resumed (unless --stop, or it was paused already).\n"
		"\n"
		"  --qmp SOCKET       QEMU's QMP unix socket (-qmp unix:SOCKET,server=on)\n"
		"  -o, --output OUT   the snapshot to write\n"
		"  --stop             leave the VM stopped afterwards\n"
		"  --key KEYFILE      an authenticated snapshot (fvmsnap keygen): restore\n"
		"                     and the other readers need the same --key\n"
		"  --timeout SECS     give up when QEMU has not sent its state (default 120)\n"
		"      --json         the phase times as JSON on stdout\n"
		"  -q, --quiet        no summary line\n"
		"  -h, --help         this help\n");
}

struct backend {
	char id[256];
	char path[PATH_MAX];
	uint64_t size;
	const void *mem;
	int fd;
};

struct save {
	const char *sock, *out;
	const struct cli_key *key;  /* --key, or NULL */
	int stop, json, quiet;
	long timeout_ms;
	struct qmp q;
	char *reply;
	pid_t pid;                /* QEMU, from the socket's peer credentials */
	struct backend b[MAX_SHARED];
	unsigned nb;
	int was_running, cap_was_on;
	int from_postmigrate;     /* found in postmigrate: ran for ran_ns */
	uint64_t ran_ns;
	int pipe_rd;              /* read end of QEMU's migration stream */
	char mig_name[PATH_MAX + 32]; /* the stream, for messages */
	int conv_err;             /* the converting thread's result... */
	char conv_detail[1024];   /* ...and its fvm_error_detail() */
	char mig_fail[1024];      /* why QEMU's migration failed, or "" */
	/* the VM's disk images (query-block), recorded as disk.N metadata */
	char disk[8][PATH_MAX];
	const char *disks[8 + 1];
	unsigned ndisks;
	uint64_t t0, t_stop, t_state, t_written;
};

static long deadline(struct save *s)
{
	return qmp_now_ms() + s->timeout_ms;
}

/* One QMP command, printf-style; a failure is reported and an exit code. */
static int qmp(struct save *s, const char *fmt, ...) CLI_PRINTF(2, 3);

static int qmp(struct save *s, const char *fmt, ...)
{
	char cmd[PATH_MAX + 256];
	va_list ap;
	int err;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	err = qmp_command(&s->q, cmd, s->reply, REPLY, deadline(s));
	if (err == -EREMOTEIO) {
		cli_msg("QEMU refused %s: %s", cmd, s->reply);
		return EXIT_INVALID;
	}
	if (err)
		return cli_fail_sys(s->sock, -err);
	return 0;
}

/* The value of {"return": VALUE} as text (quotes removed). */
static int qmp_return(const char *reply, char *out, size_t cap)
{
	const char *p = strstr(reply, "\"return\"");
	size_t n;

	if (!p)
		return -1;
	p += 8;
	while (*p == ' ' || *p == ':')
		p++;
	if (*p == '"') {
		p++;
		n = strcspn(p, "\"");
	} else {
		n = strcspn(p, ",}");
	}
	if (n >= cap)
		return -1;
	memcpy(out, p, n);
	out[n] = '\0';
	return 0;
}

/* The memory-backend-file objects with share=on: id, mem-path, size. */
static int find_backends(struct save *s)
{
	char *list, *p, val[PATH_MAX];
	int err;

	if ((err = qmp(s, "{\"execute\":\"qom-list\",\"arguments\":{\"path\":\"/objects\"}}")))
		return err;
	list = strdup(s->reply);
	if (!list)
		return cli_fail_sys("QMP reply", ENOMEM);
	for (p = list; (p = strchr(p, '{')) != NULL; p++) {
		char *end = strchr(p, '}'), id[256];

		if (!end)
			break;
		*end = '\0';
		if (strstr(p, "child<memory-backend-file>") &&
		    qmp_string(p, "name", id, sizeof(id)) == 0 && s->nb < MAX_SHARED) {
			struct backend *b = &s->b[s->nb];

			err = qmp(s, "{\"execute\":\"qom-get\",\"arguments\":{\"path\":\"/objects/%s\","
				  "\"property\":\"share\"}}", id);
			if (!err && !qmp_return(s->reply, val, sizeof(val)) && !strcmp(val, "true")) {
				snprintf(b->id, sizeof(b->id), "%s", id);
				err = qmp(s, "{\"execute\":\"qom-get\",\"arguments\":{\"path\":"
					  "\"/objects/%s\",\"property\":\"mem-path\"}}", id);
				if (!err && qmp_return(s->reply, b->path, sizeof(b->path)))
					err = cli_usage_error("backend %s: no mem-path in %s", id, s->reply);
				if (!err)
					err = qmp(s, "{\"execute\":\"qom-get\",\"arguments\":{\"path\":"
						  "\"/objects/%s\",\"property\":\"size\"}}", id);
				if (!err && (qmp_return(s->reply, val, sizeof(val)) ||
					     cli_parse_uint(val, UINT64_MAX, &b->size)))
					err = cli_usage_error("backend %s: no size in %s", id, s->reply);
				if (!err)
					s->nb++;
			}
		}
		*end = '}';
		if (err)
			break;
		p = end;
	}
	free(list);
	if (!err && !s->nb) {
		cli_msg("QEMU at %s has no shared memory backend: start it with -object "
			"memory-backend-file,id=pc.ram,size=...,mem-path=FILE,share=on -machine "
			"memory-backend=pc.ram (as fvmsnap restore does), or save with QEMU's own "
			"migrate and fvmsnap convert", s->sock);
		return EXIT_UNSUPPORTED;
	}
	return err;
}

/*
 * A backend's file: its path, or (fvmsnap restore removes the name once
 * QEMU mapped it) QEMU's open descriptor of it in /proc/PID/fd.
 */
static int open_backend(struct save *s, const struct backend *b)
{
	char link[64], target[PATH_MAX + 16], deleted[PATH_MAX + 16];
	struct dirent *e;
	DIR *d;
	int fd = open(b->path, O_RDONLY | O_CLOEXEC);

	if (fd >= 0 || errno != ENOENT || s->pid <= 0)
		return fd;
	snprintf(link, sizeof(link), "/proc/%d/fd", (int)s->pid);
	snprintf(deleted, sizeof(deleted), "%s (deleted)", b->path);
	d = opendir(link);
	if (!d)
		return -1;
	while ((e = readdir(d)) != NULL) {
		char path[PATH_MAX];
		ssize_t n;

		snprintf(path, sizeof(path), "%s/%s", link, e->d_name);
		n = readlink(path, target, sizeof(target) - 1);
		if (n <= 0)
			continue;
		target[n] = '\0';
		if (!strcmp(target, deleted) || !strcmp(target, b->path)) {
			fd = open(path, O_RDONLY | O_CLOEXEC);
			break;
		}
	}
	closedir(d);
	if (fd < 0)
		errno = ENOENT;
	return fd;
}

static int map_backends(struct save *s)
{
	for (unsigned i = 0; i < s->nb; i++) {
		struct backend *b = &s->b[i];
		int fd = open_backend(s, b);
		void *m;

		if (fd < 0)
			return cli_fail_sys(b->path, errno);
		m = mmap(NULL, b->size, PROT_READ, MAP_SHARED, fd, 0);
		if (m == MAP_FAILED) {
			close(fd);
			return cli_fail_sys(b->path, errno);
		}
		b->mem = m;
		b->fd = fd; /* for its holes (SEEK_HOLE): zero pages not scanned */
		cli_watch_mapping(m, b->size, b->path); /* a SIGBUS reading it: said, not a crash */
	}
	return 0;
}

/* The image files of the block devices with media (query-block). */
static int find_disks(struct save *s)
{
	char *list, *p;
	int err;

	if ((err = qmp(s, "{\"execute\":\"query-block\"}")))
		return err;
	list = strdup(s->reply);
	if (!list)
		return cli_fail_sys("QMP reply", ENOMEM);
	for (p = list; (p = strstr(p, "\"file\": \"")) != NULL && s->ndisks < 8; p++) {
		fvm_disk_info d = FVM_DISK_INFO_INIT;
		char *file = s->disk[s->ndisks];
		size_t l;

		p += 9;
		l = strcspn(p, "\"");
		if (l >= sizeof(s->disk[0]))
			continue;
		memcpy(file, p, l);
		file[l] = '\0';
		if (fvm_disk_identify(file, &d))
			continue; /* not a local file (a URI, a node name) */
		s->disks[s->ndisks++] = file;
	}
	s->disks[s->ndisks] = NULL;
	free(list);
	return 0;
}

/* Stop the VM and turn x-ignore-shared on (its old state kept). */
static int stop_vm(struct save *s)
{
	char st[64];
	int err;

	if ((err = qmp(s, "{\"execute\":\"query-status\"}")) ||
	    qmp_string(s->reply, "status", st, sizeof(st)))
		return err ? err : cli_usage_error("QMP query-status: %s", s->reply);
	s->was_running = !strcmp(st, "running");
	if (!strcmp(st, "postmigrate")) {
		/*
		 * Stopped by an earlier migration (a save that left the VM
		 * stopped): QEMU migrates such a VM again only after it ran
		 * ("Can't migrate the vm that was paused due to previous
		 * migration"). cont and stop at once, and say for how long the
		 * guest ran; it is stopped, as before, when the save ends.
		 */
		uint64_t t = util_now_ns();

		if ((err = qmp(s, "{\"execute\":\"cont\"}")) ||
		    (err = qmp(s, "{\"execute\":\"stop\"}")))
			return err;
		s->ran_ns = util_now_ns() - t;
		s->from_postmigrate = 1;
	}
	if (s->was_running && (err = qmp(s, "{\"execute\":\"stop\"}")))
		return err;
	s->t_stop = util_now_ns();
	if ((err = qmp(s, "{\"execute\":\"query-migrate-capabilities\"}")))
		return err;
	{
		/* [{"state": false, "capability": "xbzrle"}, ...]: in its own object */
		char *p = strstr(s->reply, "\"x-ignore-shared\""), *a = p, *e;

		while (a && a > s->reply && *a != '{')
			a--;
		e = p ? strchr(p, '}') : NULL;
		if (a && e) {
			*e = '\0';
			p = strstr(a, "\"state\"");
			s->cap_was_on = p && !strncmp(p + 7 + strspn(p + 7, " :"), "true", 4);
		}
	}
	return qmp(s, "{\"execute\":\"migrate-set-capabilities\",\"arguments\":{\"capabilities\":"
		   "[{\"capability\":\"x-ignore-shared\",\"state\":true}]}}");
}

/* Put the VM and the capability back as they were (errors only reported). */
static void give_back(struct save *s, int resume)
{
	if (!s->cap_was_on)
		(void)qmp(s, "{\"execute\":\"migrate-set-capabilities\",\"arguments\":{\"capabilities\":"
			  "[{\"capability\":\"x-ignore-shared\",\"state\":false}]}}");
	if (resume && s->was_running)
		(void)qmp(s, "{\"execute\":\"cont\"}");
}

/* SIGINT/SIGTERM stop the conversion (the writer removes its file). */
static int save_progress(void *ctx, uint64_t done, uint64_t total)
{
	(void)ctx;
	(void)done;
	(void)total;
	return util_interrupted() != 0;
}

/*
 * The converting thread: the stream from the pipe as QEMU writes it, then
 * the shared RAM. Its error detail is per thread: kept for the main thread
 * to report. The read end is closed when done, so that a QEMU still
 * writing gets EPIPE instead of blocking on a conversion that failed.
 */
static void *convert_thread(void *arg)
{
	struct save *s = arg;
	struct stock_shared_ram sh[MAX_SHARED];
	struct stock_convert_opts o = { 0 };
	struct stock_convert_result res;
	char created[64], creator[64];

	for (unsigned i = 0; i < s->nb; i++)
		sh[i] = (struct stock_shared_ram){ s->b[i].id, s->b[i].mem, s->b[i].size, s->b[i].fd };
	cli_utc_now(created, sizeof(created));
	o.input = s->mig_name;
	o.in_fd = s->pipe_rd;
	o.output = s->out;
	o.out_fd = -1;
	o.key = s->key ? s->key->key : NULL;
	snprintf(creator, sizeof(creator), "fvmsnap save %s", fvm_version_string());
	o.creator = creator;
	o.created = created;
	o.shared = sh;
	o.nshared = s->nb;
	o.disks = s->ndisks ? s->disks : NULL;
	o.progress = save_progress;
	o.write_progress = save_progress;
	s->conv_err = stock_convert(&o, &res);
	if (s->conv_err)
		snprintf(s->conv_detail, sizeof(s->conv_detail), "%s", fvm_error_detail());
	close(s->pipe_rd);
	s->pipe_rd = -1;
	return NULL;
}

/* Wait for QEMU's migration to end: 0 completed, else an exit code. */
static int wait_migration(struct save *s)
{
	long end = deadline(s);
	char st[64];
	int err;

	for (;;) {
		if (util_interrupted()) {
			(void)qmp(s, "{\"execute\":\"migrate_cancel\"}");
			return EXIT_INTERRUPTED;
		}
		if ((err = qmp(s, "{\"execute\":\"query-migrate\"}")))
			return err;
		if (qmp_string(s->reply, "status", st, sizeof(st)) == 0) {
			if (!strcmp(st, "completed")) {
				s->t_state = util_now_ns();
				return 0;
			}
			if (!strcmp(st, "failed") || !strcmp(st, "cancelled")) {
				snprintf(s->mig_fail, sizeof(s->mig_fail), "QEMU's migration for %s %s: %s",
					 s->out, st, s->reply);
				return EXIT_SYSTEM;
			}
		}
		if (qmp_now_ms() > end) {
			(void)qmp(s, "{\"execute\":\"migrate_cancel\"}");
			snprintf(s->mig_fail, sizeof(s->mig_fail),
				 "QEMU did not send its state within the timeout");
			return EXIT_SYSTEM;
		}
		usleep(2000);
	}
}

/*
 * QEMU's state into a pipe (getfd + migrate fd:), converted as it comes,
 * then the snapshot written. QEMU closes its end when the migration ends,
 * completed or not, which ends the stream the thread reads.
 */
static int stream_and_convert(struct save *s)
{
	static const char fdname[] = "fvmsnap-save";
	pthread_t t;
	sigset_t all, old;
	int p[2], err, mig;

	if (pipe2(p, O_CLOEXEC) < 0)
		return cli_fail_sys("pipe", errno);
	err = qmp_command_fd(&s->q, "{\"execute\":\"getfd\",\"arguments\":{\"fdname\":\"fvmsnap-save\"}}",
			     p[1], s->reply, REPLY, deadline(s));
	close(p[1]); /* QEMU has its own copy: its close is the stream's end */
	if (err) {
		close(p[0]);
		if (err == -EREMOTEIO) {
			cli_msg("QEMU refused getfd: %s", s->reply);
			return EXIT_INVALID;
		}
		return cli_fail_sys(s->sock, -err);
	}
	s->pipe_rd = p[0];
	snprintf(s->mig_name, sizeof(s->mig_name), "QEMU's migration stream (%s)", s->sock);
	cli_output = s->out;
	/* the thread takes no signal: they reach the main thread, which
	 * cancels QEMU's migration (and the thread's progress stops it) */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&t, NULL, convert_thread, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		close(p[0]);
		s->pipe_rd = -1;
		(void)qmp(s, "{\"execute\":\"closefd\",\"arguments\":{\"fdname\":\"%s\"}}", fdname);
		return cli_fail_sys("thread", err);
	}
	mig = qmp(s, "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"fd:%s\"}}", fdname);
	if (mig) /* QEMU did not take the fd: drop it, which ends the stream */
		(void)qmp(s, "{\"execute\":\"closefd\",\"arguments\":{\"fdname\":\"%s\"}}", fdname);
	else
		mig = wait_migration(s);
	pthread_join(t, NULL);
	if (mig == EXIT_INTERRUPTED || (!mig && s->conv_err == FVM_ECANCELED && util_interrupted())) {
		fvm_error_set(FVM_ECANCELED, 0, "%s", s->out);
		return cli_fail(s->out, FVM_ECANCELED);
	}
	/* QEMU's reason, not the stream it left cut; but a conversion that
	 * failed first (a full disk) closed the pipe QEMU says broke */
	if (mig && !(s->conv_err && strstr(s->mig_fail, "Broken pipe"))) {
		if (*s->mig_fail)
			cli_msg("%s", s->mig_fail);
		return mig;
	}
	if (s->conv_err) {
		/* the detail has its errno text already */
		fvm_error_set(s->conv_err, 0, "%s", s->conv_detail);
		return cli_fail(s->out, s->conv_err);
	}
	return 0;
}

static int peer_pid(int fd)
{
	struct ucred c;
	socklen_t l = sizeof(c);

	return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c, &l) == 0 ? (int)c.pid : -1;
}

enum { OPT_QMP = 256, OPT_STOP, OPT_TIMEOUT, OPT_JSON, OPT_KEY };

int cmd_save(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "qmp", required_argument, NULL, OPT_QMP },
		{ "output", required_argument, NULL, 'o' },
		{ "stop", no_argument, NULL, OPT_STOP },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "key", required_argument, NULL, OPT_KEY },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	static struct save s;

	s.timeout_ms = 120000;
	s.q.fd = -1;
	s.pipe_rd = -1;
	uint64_t secs;
	char b1[32];
	int c, err, resumable = 0;
	double stop_s, state_s, write_s, total_s;

	while ((c = getopt_long(argc, argv, "o:qh", opts, NULL)) != -1) {
		switch (c) {
		case OPT_QMP: s.sock = optarg; break;
		case 'o': s.out = optarg; break;
		case OPT_STOP: s.stop = 1; break;
		case OPT_TIMEOUT:
			if (cli_parse_uint(optarg, 86400, &secs) || !secs)
				return cli_usage_error("--timeout %s: not a number of seconds", optarg);
			s.timeout_ms = (long)secs * 1000;
			break;
		case OPT_JSON: s.json = 1; break;
		case OPT_KEY:
			if ((err = cli_key_load(optarg, &s.key)))
				return err;
			break;
		case 'q': s.quiet = 1; break;
		case 'h': usage(stdout); return EXIT_OK;
		default: return cli_try_help();
		}
	}
	if (optind < argc)
		return cli_usage_error("unexpected argument %s", argv[optind]);
	if (!s.sock || !s.out)
		return cli_usage_error("--qmp SOCKET and -o OUT.fvm are both needed");
	s.reply = malloc(REPLY);
	if (!s.reply)
		return cli_fail_sys("QMP", ENOMEM);
	s.t0 = util_now_ns();
	if ((err = qmp_connect(&s.q, s.sock, deadline(&s), NULL, NULL))) {
		err = cli_fail_sys(s.sock, -err);
		goto out;
	}
	s.pid = peer_pid(s.q.fd);
	if ((err = find_backends(&s)))
		goto out;
	resumable = 1;
	/* the disks after the stop: the VM writes nothing more to them */
	if ((err = stop_vm(&s)) || (err = find_disks(&s)) || (err = map_backends(&s)) ||
	    (err = stream_and_convert(&s)))
		goto out;
	s.t_written = util_now_ns();
out:
	if (resumable)
		give_back(&s, !s.stop);
	for (unsigned i = 0; i < s.nb; i++)
		if (s.b[i].mem) {
			cli_unwatch_mapping(s.b[i].mem);
			munmap((void *)s.b[i].mem, s.b[i].size);
			close(s.b[i].fd);
		}
	qmp_close(&s.q);
	free(s.reply);
	if (err)
		return err;
	stop_s = (double)(s.t_stop - s.t0) / 1e9;
	state_s = (double)(s.t_state - s.t_stop) / 1e9;
	write_s = (double)(s.t_written - s.t_state) / 1e9;
	total_s = (double)(s.t_written - s.t0) / 1e9;
	if (s.json) {
		fputs("{\"output\":", stdout);
		json_str(stdout, s.out);
		printf(",\"stop_seconds\":%.6f,\"device_state_seconds\":%.6f,\"write_seconds\":%.6f,"
		       "\"total_seconds\":%.6f,\"shared_bytes\":%" PRIu64 ",\"resumed\":%s,"
		       "\"postmigrate_run_seconds\":%.6f}\n", stop_s, state_s, write_s, total_s,
		       s.b[0].size, !s.stop && s.was_running ? "true" : "false",
		       (double)s.ran_ns / 1e9);
	}
	if (!s.quiet && s.from_postmigrate)
		fprintf(stderr, "%s: the VM was stopped by an earlier migration (postmigrate): ran it "
			"for %.3f ms so that QEMU migrates it again\n", cli_prog,
			(double)s.ran_ns / 1e6);
	if (!s.quiet)
		fprintf(stderr, "saved %s in %.3f s: stop %.3f s, device state %.3f s, RAM and "
			"write %.3f s (%s shared RAM in %u backend%s); VM %s\n", s.out, total_s,
			stop_s, state_s, write_s, util_fmt_bytes(b1, sizeof(b1), s.b[0].size), s.nb,
			s.nb == 1 ? "" : "s", !s.stop && s.was_running ? "resumed" : "stopped");
	return EXIT_OK;
}
