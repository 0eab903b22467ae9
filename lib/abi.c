/*
 * The INIT macros of the structs that have no defaults but their size, as
 * functions (fastvm.h): size bytes zeroed, the size field set. The option
 * structs' init functions are beside their readers (load.c, writer.c).
 */
#include "abi.h"

static int zero_init(void *p, size_t size, const char *what)
{
	const uint32_t none[2] = { 0, 0 };

	fvm_api_begin();
	return fvm_api_end(fvm_abi_init(p, size, none, sizeof(none), what));
}

int fvm_file_info_init(fvm_file_info *p, size_t size)
{
	return zero_init(p, size, "fvm_file_info_init");
}

int fvm_block_info_init(fvm_block_info *p, size_t size)
{
	return zero_init(p, size, "fvm_block_info_init");
}

int fvm_run_info_init(fvm_run_info *p, size_t size)
{
	return zero_init(p, size, "fvm_run_info_init");
}

int fvm_devstate_info_init(fvm_devstate_info *p, size_t size)
{
	return zero_init(p, size, "fvm_devstate_info_init");
}

int fvm_mapping_init(fvm_mapping *m, size_t size)
{
	return zero_init(m, size, "fvm_mapping_init");
}

int fvm_load_stats_init(fvm_load_stats *st, size_t size)
{
	return zero_init(st, size, "fvm_load_stats_init");
}

int fvm_disk_info_init(fvm_disk_info *p, size_t size)
{
	return zero_init(p, size, "fvm_disk_info_init");
}
