/*
 * The public header as a strict C99 user sees it (built with -std=c99
 * -pedantic -Werror): every type, the option initialisers, and a call of
 * each kind, so a non-C99 construct or a warning fails the build.
 */
#include <fastvm/experimental.h>
#include <fastvm/fastvm.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
	fvm_write_options wo = FVM_WRITE_OPTIONS_INIT;
	fvm_load_options lo = FVM_LOAD_OPTIONS_INIT;
	fvm_mapping m = FVM_MAPPING_INIT;
	fvm_load_tuning t = FVM_LOAD_TUNING_INIT;
	fvm_file_info fi = FVM_FILE_INFO_INIT;
	fvm_block_info bi = FVM_BLOCK_INFO_INIT;
	fvm_run_info ri = FVM_RUN_INFO_INIT;
	fvm_devstate_info di = FVM_DEVSTATE_INFO_INIT;
	fvm_load_stats st = FVM_LOAD_STATS_INIT;

	memset(&fi, 0, sizeof(fi));
	memset(&bi, 0, sizeof(bi));
	memset(&ri, 0, sizeof(ri));
	memset(&di, 0, sizeof(di));
	memset(&st, 0, sizeof(st));
	lo.tuning = &t;
	m.name = "pc.ram";
	if (wo.size != sizeof(wo) || lo.size != sizeof(lo) || m.length || t.size != sizeof(t))
		return 1;
	if (fvm_version() != FVM_VERSION_NUMBER)
		return 1;
	printf("libfastvm %s, %s\n", fvm_version_string(), fvm_strerror(FVM_ECHECKSUM));
	return 0;
}
