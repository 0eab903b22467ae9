// The public header from C++: it must compile warning-free and link
// (extern "C"), with the option initialisers usable as aggregates.
#include <fastvm/fastvm.h>
#include <cstdio>

int main()
{
	fvm_write_options wo = FVM_WRITE_OPTIONS_INIT;
	fvm_load_options lo = FVM_LOAD_OPTIONS_INIT;
	fvm_reader *r = nullptr;

	if (wo.size != sizeof(wo) || lo.size != sizeof(lo))
		return 1;
	// a missing file: the error path of a real call, through C linkage
	if (fvm_reader_open(&r, "/nonexistent/x.fvm") != FVM_EIO || r)
		return 1;
	std::printf("libfastvm %s from C++: %s\n", fvm_version_string(), fvm_error_detail());
	return 0;
}
