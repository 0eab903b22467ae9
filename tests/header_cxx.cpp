// The public headers from C++: they must compile warning-free and link
// (extern "C"), with every initialiser usable as an aggregate.
#include <fastvm/experimental.h>
#include <fastvm/fastvm.h>
#include <cstdio>

int main()
{
	fvm_write_options wo = FVM_WRITE_OPTIONS_INIT;
	fvm_load_options lo = FVM_LOAD_OPTIONS_INIT;
	fvm_load_tuning t = FVM_LOAD_TUNING_INIT;
	fvm_mapping m = FVM_MAPPING_INIT;
	fvm_file_info fi = FVM_FILE_INFO_INIT;
	fvm_block_info bi = FVM_BLOCK_INFO_INIT;
	fvm_run_info ri = FVM_RUN_INFO_INIT;
	fvm_devstate_info di = FVM_DEVSTATE_INFO_INIT;
	fvm_load_stats st = FVM_LOAD_STATS_INIT;
	fvm_reader *r = nullptr;

	lo.tuning = &t;
	if (wo.size != sizeof(wo) || lo.size != sizeof(lo) || m.size != sizeof(m) ||
	    fi.size != sizeof(fi) || bi.size != sizeof(bi) || ri.size != sizeof(ri) ||
	    di.size != sizeof(di) || st.size != sizeof(st))
		return 1;
	// a missing file: the error path of a real call, through C linkage
	if (fvm_reader_open(&r, "/nonexistent/x.fvm") != FVM_EIO || r ||
	    fvm_error_errno() == 0)
		return 1;
	std::printf("libfastvm %s from C++: %s\n", fvm_version_string(), fvm_error_detail());
	return 0;
}
