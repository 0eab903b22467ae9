/*
 * Seed generator for fuzz/corpus/qcow2 (run by hand, output committed):
 *   build/fuzz/make_qcow2_corpus fuzz/corpus/qcow2
 * Small images from tests/qcow2_gen.c covering what savevm never writes:
 * compressed, zero-flagged and subcluster-mapped vmstate, v2 without extra
 * data, several snapshots, 512 B and 16 KiB clusters. The real QEMU seeds
 * beside them (real-*.qcow2) were made with qemu-system-x86_64 -M none.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tests/qcow2_gen.h"

static void emit(const char *dir, const char *name, const struct gen_opts *o)
{
	struct gen_layout lay;
	char path[512];
	uint8_t *img;
	size_t len;
	FILE *f;

	if (gen_qcow2(o, &img, &len, &lay)) {
		fprintf(stderr, "gen %s failed\n", name);
		exit(1);
	}
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(img, 1, len, f) != len || fclose(f)) {
		perror(path);
		exit(1);
	}
	printf("%s: %zu bytes\n", path, len);
	free(img);
}

int main(int argc, char **argv)
{
	static uint8_t vm[6000], disk[3000];
	struct gen_snap s[3];
	struct gen_opts o;

	if (argc != 2) {
		fprintf(stderr, "usage: make_qcow2_corpus DIR\n");
		return 2;
	}
	memcpy(vm, "QEVM\0\0\0\3", 8);
	for (size_t i = 8; i < sizeof(vm); i++)
		vm[i] = (i / 512) % 3 ? (uint8_t)("ram pc.ram "[i % 11]) : 0;
	for (size_t i = 0; i < sizeof(disk); i++)
		disk[i] = (i / 512) % 2 ? (uint8_t)(i * 31) : 0;
	s[0] = (struct gen_snap){ .id = "1", .name = "s1", .vm = vm, .vm_len = sizeof(vm),
		.extra_size = 24, .date_sec = 1700000000, .vm_clock_nsec = 1000000,
		.icount = UINT64_MAX };
	s[1] = (struct gen_snap){ .id = "2", .name = "1", .vm = vm + 100, .vm_len = 2000,
		.extra_size = 24, .icount = 7 };
	s[2] = (struct gen_snap){ .id = "3", .name = "x", .vm = vm, .vm_len = 700,
		.extra_size = 40 };

	o = (struct gen_opts){ .version = 3, .cluster_bits = 9, .disk_size = 8192,
		.disk = disk, .disk_len = sizeof(disk), .policy = gen_policy_mixed,
		.snaps = s, .nsnaps = 3 };
	emit(argv[1], "gen-v3-512-mixed.qcow2", &o);
	o.policy = gen_policy_compressed;
	o.nsnaps = 1;
	emit(argv[1], "gen-v3-512-compressed.qcow2", &o);
	o.version = 2;
	o.policy = NULL;
	s[0].extra_size = 0;
	o.nsnaps = 2;
	emit(argv[1], "gen-v2-512-noextra.qcow2", &o);
	s[0].extra_size = 24;
	o = (struct gen_opts){ .version = 3, .cluster_bits = 14, .extl2 = true,
		.disk_size = 65536, .disk = disk, .disk_len = sizeof(disk),
		.policy = gen_policy_mixed, .snaps = s, .nsnaps = 2 };
	emit(argv[1], "gen-v3-16k-extl2.qcow2", &o);
	return 0;
}
