/*
 * Structs that cross the ABI carry their size (fastvm.h): helpers that read
 * a caller's options struct of any size and write a caller's output struct
 * no further than its size.
 */
#ifndef FVM_ABI_H
#define FVM_ABI_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "error.h"

/*
 * Symbol versions (lib/libfastvm.map): a function whose layout changed
 * keeps its old implementation at the old node (compat.c, FVM_SYMVER_OLD)
 * and gets its new one as the default at the new node. Both must be bound
 * explicitly, since the map lists the name in both nodes.
 */
/*
 * The .symver directive, not GCC's symver attribute: clang 14 (the fuzz
 * build) ignores the attribute but assembles the directive.
 */
#if defined(__GNUC__) && !defined(FVM_NO_SYMVER)
#define FVM_SYMVER(impl, versioned) __asm__(".symver " impl ", " versioned)
/* The definition of the 0.2 default version of name, e.g.
 * FVM_DEFAULT_0_2(fvm_load)(fvm_reader *r, ...) { ... } */
#define FVM_DEFAULT_0_2(name) \
	FVM_SYMVER(#name "_v02", #name "@@LIBFASTVM_0.2"); \
	FVM_API int name##_v02
#define FVM_SAME_TYPE(name) \
	_Static_assert(__builtin_types_compatible_p(__typeof__(name), \
						    __typeof__(name##_v02)), \
		       #name " differs from its declaration")
#else
#define FVM_SYMVER(impl, versioned) _Static_assert(1, "")
#define FVM_DEFAULT_0_2(name) int name
#define FVM_SAME_TYPE(name) _Static_assert(1, "")
#endif

/*
 * Read the caller's struct at in (its size in its first uint32_t) over
 * *out, which holds the defaults and is known bytes long: a smaller struct
 * (at least min bytes: the oldest layout shipped) leaves the fields it
 * lacks at their defaults; a larger one must be zero past known.
 */
static inline int fvm_abi_in(void *out, size_t known, const void *in, size_t min,
			     const char *what)
{
	uint32_t size;

	memcpy(&size, in, sizeof(size));
	if (size < min)
		return fvm_err(FVM_EINVAL, "%s: size %u is smaller than any layout of it (%zu); "
			       "set it with its INIT macro or init function", what, size, min);
	for (size_t i = known; i < size; i++)
		if (((const unsigned char *)in)[i])
			return fvm_err(FVM_EINVAL, "%s: size %u, and byte %zu is set: a field "
				       "this library (%zu bytes) does not know", what, size, i,
				       known);
	memcpy(out, in, size < known ? size : known);
	memcpy(out, &(uint32_t){ (uint32_t)known }, sizeof(uint32_t));
	return 0;
}

/*
 * Copy the library's full output struct (known bytes, size field first) to
 * the caller's, whose size field says how far it reaches.
 */
static inline int fvm_abi_out(void *out, const void *full, size_t known, const char *what)
{
	uint32_t size;

	memcpy(&size, out, sizeof(size));
	if (size < sizeof(uint32_t))
		return fvm_err(FVM_EINVAL, "%s: size %u; set it to sizeof the struct (its INIT "
			       "macro does)", what, size);
	if (size > known)
		size = (uint32_t)known;
	memcpy((unsigned char *)out + sizeof(uint32_t),
	       (const unsigned char *)full + sizeof(uint32_t), size - sizeof(uint32_t));
	return 0;
}

/* Options init functions: the defaults, size bytes of them, size set. */
static inline int fvm_abi_init(void *opts, size_t size, const void *def, size_t known,
			       const char *what)
{
	if (!opts || size < 2 * sizeof(uint32_t))
		return fvm_err(FVM_EINVAL, "%s: NULL or size %zu too small", what, size);
	memset(opts, 0, size);
	memcpy(opts, def, size < known ? size : known);
	memcpy(opts, &(uint32_t){ (uint32_t)size }, sizeof(uint32_t));
	return 0;
}

#endif
