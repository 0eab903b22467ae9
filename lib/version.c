/*
 * Runtime version, so callers can check the library they run against.
 */
#include "fastvm/fastvm.h"

#define STR2(x) #x
#define STR(x) STR2(x)

unsigned fvm_version(void)
{
	return FVM_VERSION_NUMBER;
}

const char *fvm_version_string(void)
{
	return STR(FVM_VERSION_MAJOR) "." STR(FVM_VERSION_MINOR) "." STR(FVM_VERSION_PATCH);
}
