/*
 * fvmsnap keygen: a new file key for authenticated snapshots (doc/FORMAT.md
 * 4.6): 32 bytes from getrandom(2), written as 64 lowercase hexadecimal
 * digits and a newline, the text fvm_key_parse reads and --key FILE takes.
 * The file is mode 0600 from its creation on and written atomically (a
 * temporary file in the same directory, fsync, rename, fsync of the
 * directory); an existing FILE is kept unless --force, even one that
 * appears meanwhile (the rename never replaces it then). The key id goes
 * to standard output, the key itself nowhere else.
 */
#include <errno.h>
#include <getopt.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: fvmsnap keygen -o KEYFILE [--force]\n"
		"\n"
		"Make a new secret key for authenticated snapshots (--key KEYFILE of pack,\n"
		"convert, recompress, save and of the commands that read them): 32 random\n"
		"bytes (getrandom) as 64 hexadecimal digits and a newline, in a file of\n"
		"mode 0600 written atomically. Prints the key id (16 hexadecimal digits),\n"
		"which names the key in inspect's output and in error messages.\n"
		"\n"
		"  -o, --output KEYFILE  the key file to write; an existing one is kept\n"
		"      --force           replace an existing KEYFILE\n"
		"  -h, --help            this help\n");
}

/* n random bytes; 0 or -errno. */
static int random_bytes(uint8_t *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = getrandom(buf + got, n - got, 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		got += (size_t)r;
	}
	return 0;
}

enum { OPT_FORCE = 256 };

int cmd_keygen(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "force", no_argument, NULL, OPT_FORCE },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	static const char hex[] = "0123456789abcdef";
	struct cli_atomic at = { .fd = -1 };
	uint8_t key[FVM_KEY_BYTES];
	char text[2 * FVM_KEY_BYTES + 1];
	const char *out = NULL;
	struct stat st;
	uint64_t id;
	int c, err, force = 0;

	while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
		case OPT_FORCE: force = 1; break;
		case 'h': usage(stdout); return EXIT_OK;
		default: return cli_try_help();
		}
	}
	if (optind < argc)
		return cli_usage_error("unexpected argument '%s'", argv[optind]);
	if (!out)
		return cli_usage_error("no key file given (-o KEYFILE)");
	if (!strcmp(out, "-"))
		return cli_usage_error("a key is written to a file of mode 0600, not to standard "
				       "output; give -o KEYFILE");
	if (!fvm_auth_available()) {
		cli_msg("this fvmsnap's libfastvm was built without authenticated snapshots "
			"(libgcrypt): no key it makes could be used");
		return EXIT_UNSUPPORTED;
	}
	if (lstat(out, &st) == 0) {
		if (!force) {
			cli_msg("%s exists; refusing to replace a key (snapshots made with it would "
				"no longer load): give --force to replace it", out);
			return EXIT_USAGE;
		}
		if (!S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode)) {
			cli_msg("%s: not a regular file; refusing to replace it with a key", out);
			return EXIT_USAGE;
		}
	}
	if ((err = random_bytes(key, sizeof(key))))
		return cli_fail_sys("getrandom", -err);
	for (size_t i = 0; i < sizeof(key); i++) {
		text[2 * i] = hex[key[i] >> 4];
		text[2 * i + 1] = hex[key[i] & 15];
	}
	text[2 * FVM_KEY_BYTES] = '\n';
	err = fvm_key_id(key, sizeof(key), &id);
	explicit_bzero(key, sizeof(key));
	if (err) {
		explicit_bzero(text, sizeof(text));
		return cli_fail("key id", err);
	}
	if ((err = cli_atomic_open_mode(&at, out, 0600, !force))) {
		explicit_bzero(text, sizeof(text));
		return cli_fail_sys(out, -err);
	}
	err = cli_write_all(at.fd, text, sizeof(text));
	explicit_bzero(text, sizeof(text));
	if (err) {
		cli_atomic_abort(&at);
		return cli_fail_sys(out, -err);
	}
	if ((err = cli_atomic_commit(&at))) {
		cli_atomic_abort(&at);
		if (err == -EEXIST) {
			cli_msg("%s appeared while the key was written; refusing to replace it "
				"(give --force)", out);
			return EXIT_USAGE;
		}
		return cli_fail_sys(out, -err);
	}
	printf("%016llx\n", (unsigned long long)id);
	if (fflush(stdout) || ferror(stdout))
		return cli_fail_sys("stdout", errno ? errno : EIO);
	return EXIT_OK;
}
