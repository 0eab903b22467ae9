/*
 * Replay driver for builds without libFuzzer: runs every file of the given
 * corpus directories (or single files) through LLVMFuzzerTestOneInput once,
 * in name order, so the seed corpora are part of the normal test suite.
 * A crash or abort in the target fails the test; an empty corpus does too.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "testutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
	size_t len;
	uint8_t *p = tu_read_file(path, &len);

	if (!p) {
		perror(path);
		return -1;
	}
	LLVMFuzzerTestOneInput(p, len);
	free(p);
	return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

int main(int argc, char **argv)
{
	unsigned long files = 0;

	for (int i = 1; i < argc; i++) {
		struct stat st;
		struct dirent **ent;
		int n;

		if (stat(argv[i], &st)) {
			perror(argv[i]);
			return 1;
		}
		if (!S_ISDIR(st.st_mode)) {
			if (run_file(argv[i]))
				return 1;
			files++;
			continue;
		}
		n = scandir(argv[i], &ent, NULL, by_name);
		if (n < 0) {
			perror(argv[i]);
			return 1;
		}
		for (int k = 0; k < n; k++) {
			char path[4096];

			if (ent[k]->d_name[0] != '.') {
				snprintf(path, sizeof(path), "%s/%s", argv[i], ent[k]->d_name);
				if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
					if (run_file(path))
						return 1;
					files++;
				}
			}
			free(ent[k]);
		}
		free(ent);
	}
	printf("replayed %lu inputs\n", files);
	return files ? 0 : 1;
}
