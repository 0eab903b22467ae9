/*
 * fvmsnap: the command-line tool. This file owns only the dispatch: global
 * options (--help, --version) and the subcommand table, which is generated
 * from commands.def so that adding a subcommand is one line there plus its
 * cmd_<name>.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common/util.h"

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

static const struct command commands[] = {
#define FVMSNAP_CMD(name, summary) { #name, cmd_##name, summary },
#include "commands.def"
#undef FVMSNAP_CMD
};

static void usage(FILE *f)
{
	size_t i;

	fprintf(f,
		"Usage: fvmsnap COMMAND [OPTIONS] [ARGS]\n"
		"       fvmsnap --help | --version\n"
		"\n"
		"Fast VM snapshots (libfastvm %s).\n"
		"\n"
		"Commands:\n", fvm_version_string());
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(f,
		"\n"
		"Run 'fvmsnap COMMAND --help' for the options of a command.\n"
		"Exit status: 0 ok, 1 usage, 2 invalid input, 3 system error,\n"
		"4 mismatch or unsupported; see fvmsnap(1).\n");
}

int main(int argc, char **argv)
{
	static char prog[64];
	size_t i;

	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help")) {
		usage(stdout);
		return EXIT_OK;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
		printf("fvmsnap %s\n", fvm_version_string());
		return EXIT_OK;
	}
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(argv[1], commands[i].name))
			continue;
		snprintf(prog, sizeof(prog), "fvmsnap %s", commands[i].name);
		cli_prog = prog;
		util_install_signals();
		/* getopt prefixes its messages with argv[0]: "fvmsnap pack". */
		argv[1] = prog;
		return commands[i].run(argc - 1, argv + 1);
	}
	fprintf(stderr, "fvmsnap: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return EXIT_USAGE;
}
