/*
 * The 0.1 ABI. Binaries built against libfastvm 0.1 call fvm_load,
 * fvm_reader_info, fvm_reader_block, fvm_reader_run and fvm_reader_devstate
 * at version LIBFASTVM_0 with the 0.1 struct layouts, which had no size
 * field (or, for the load options, the tuning fields inline). These
 * functions read and write exactly those layouts and call the same code as
 * the 0.2 entry points; the rest of the 0.1 API is unchanged and kept at
 * LIBFASTVM_0 (lib/libfastvm.map). tests/abi/ runs a caller built against
 * the 0.1 header against this library.
 */
#include <stdlib.h>
#include <string.h>

#include "abi.h"
#include "error.h"
#include "load.h"
#include "reader.h"

/* The 0.1 version of name is name_v01 (exported only through the alias). */
#define FVM_V01(name) FVM_SYMVER(#name "_v01", #name "@LIBFASTVM_0"); FVM_API

/* ------------------------------------------------------------ 0.1 layouts */

struct v01_mapping {
	const char *name;
	void *addr;
	uint64_t length;
	uint64_t page_size;
};

#define V01_LOAD_INLINE (1u << 3)

struct v01_load_options {
	uint32_t size;
	uint32_t flags;
	int backend;
	int zero_policy;
	unsigned queue_depth;
	uint64_t chunk_bytes;
	fvm_progress_fn progress;
	void *progress_ctx;
	unsigned willneed_window;
};

struct v01_load_stats {
	int backend;
	const char *backend_name;
	const char *fallback_reason;
	int direct;
	uint64_t bytes_read, requests, extents, zero_bytes, elapsed_ns;
};

struct v01_file_info {
	uint16_t version_major, version_minor;
	uint64_t incompat_features, compat_features;
	uint64_t file_size;
	uint64_t payload_bytes;
	uint64_t data_pages, zero_pages;
	uint64_t data_runs, zero_runs;
	uint32_t block_count, devstate_count, meta_count;
	int streamed;
};

struct v01_block_info {
	const char *name;
	uint64_t length;
	uint64_t page_size;
	uint64_t data_pages, zero_pages;
	uint64_t data_runs, zero_runs;
};

struct v01_run_info {
	uint32_t block_id;
	int kind;
	uint64_t first_page;
	uint64_t page_count;
	uint64_t file_offset;
};

struct v01_devstate_info {
	const char *name;
	uint64_t size;
	uint64_t file_offset;
};

/* ------------------------------------------------------------ fvm_load */

static int v01_cfg(const struct v01_load_options *in, struct fvm_load_cfg *c)
{
	struct v01_load_options o = { sizeof(o), 0, FVM_BACKEND_AUTO, FVM_ZERO_LEAVE, 0, 0,
				      NULL, NULL, 0 };

	if (in) {
		/* 0.1 read the fields it knew of a struct at least its size */
		if (in->size < sizeof(*in))
			return fvm_err(FVM_EINVAL, "fvm_load: options size %u, expected %zu "
				       "(use FVM_LOAD_OPTIONS_INIT)", in->size, sizeof(*in));
		o = *in;
	}
	*c = (struct fvm_load_cfg){ o.flags & ~V01_LOAD_INLINE, o.backend, o.zero_policy,
				    o.progress, o.progress_ctx, NULL, NULL, o.queue_depth,
				    o.chunk_bytes, o.willneed_window,
				    !!(o.flags & V01_LOAD_INLINE), 0 };
	return 0;
}

FVM_V01(fvm_load)
int fvm_load_v01(fvm_reader *r, const struct v01_mapping *maps, size_t n_maps,
		 const struct v01_load_options *opts, struct v01_load_stats *stats);

int fvm_load_v01(fvm_reader *r, const struct v01_mapping *maps, size_t n_maps,
		 const struct v01_load_options *opts, struct v01_load_stats *stats)
{
	struct fvm_load_cfg c;
	struct fvm_map *v = NULL;
	fvm_load_stats st;
	int rc;

	fvm_api_begin();
	memset(&st, 0, sizeof(st));
	if (!r)
		return fvm_err(FVM_EINVAL, "fvm_load: NULL reader");
	rc = v01_cfg(opts, &c);
	if (!rc && n_maps && !maps)
		rc = fvm_err(FVM_EINVAL, "fvm_load: %zu mappings but no array", n_maps);
	if (!rc && n_maps && !(v = calloc(n_maps, sizeof(*v))))
		rc = fvm_err(FVM_ENOMEM, "fvm_load: %zu mappings", n_maps);
	for (size_t k = 0; !rc && k < n_maps; k++)
		v[k] = (struct fvm_map){ maps[k].name, maps[k].addr, maps[k].length,
					 maps[k].page_size, 0 };
	if (!rc)
		rc = fvm_load_maps(r, v, n_maps, &c, &st);
	free(v);
	if (stats)
		*stats = (struct v01_load_stats){ st.backend, st.backend_name,
						  st.fallback_reason, st.direct, st.bytes_read,
						  st.requests, st.extents, st.zero_bytes,
						  st.elapsed_ns };
	return fvm_api_end(rc);
}

/* ------------------------------------------------------------ listings */

FVM_V01(fvm_reader_info)
int fvm_reader_info_v01(const fvm_reader *r, struct v01_file_info *info);

int fvm_reader_info_v01(const fvm_reader *r, struct v01_file_info *info)
{
	fvm_file_info f;

	fvm_api_begin();
	if (!r || !info)
		return fvm_err(FVM_EINVAL, "fvm_reader_info: NULL argument");
	fvm_reader_fill_info(r, &f);
	*info = (struct v01_file_info){ f.version_major, f.version_minor, f.incompat_features,
					f.compat_features, f.file_size, f.payload_bytes,
					f.data_pages, f.zero_pages, f.data_runs, f.zero_runs,
					f.block_count, f.devstate_count, f.meta_count,
					f.streamed };
	return fvm_api_end(0);
}

FVM_V01(fvm_reader_block)
int fvm_reader_block_v01(const fvm_reader *r, uint32_t i, struct v01_block_info *info);

int fvm_reader_block_v01(const fvm_reader *r, uint32_t i, struct v01_block_info *info)
{
	fvm_block_info b;
	int rc;

	fvm_api_begin();
	if (!r || !info)
		return fvm_err(FVM_EINVAL, "fvm_reader_block: NULL argument");
	rc = fvm_reader_fill_block(r, i, &b);
	if (!rc)
		*info = (struct v01_block_info){ b.name, b.length, b.page_size, b.data_pages,
						 b.zero_pages, b.data_runs, b.zero_runs };
	return fvm_api_end(rc);
}

FVM_V01(fvm_reader_run)
int fvm_reader_run_v01(const fvm_reader *r, uint64_t i, struct v01_run_info *run);

int fvm_reader_run_v01(const fvm_reader *r, uint64_t i, struct v01_run_info *run)
{
	fvm_run_info x;
	int rc;

	fvm_api_begin();
	if (!r || !run)
		return fvm_err(FVM_EINVAL, "fvm_reader_run: NULL argument");
	rc = fvm_reader_fill_run(r, i, &x);
	if (!rc)
		*run = (struct v01_run_info){ x.block_id, x.kind, x.first_page, x.page_count,
					      x.file_offset };
	return fvm_api_end(rc);
}

FVM_V01(fvm_reader_devstate)
int fvm_reader_devstate_v01(const fvm_reader *r, uint32_t i, struct v01_devstate_info *info);

int fvm_reader_devstate_v01(const fvm_reader *r, uint32_t i, struct v01_devstate_info *info)
{
	fvm_devstate_info d;
	int rc;

	fvm_api_begin();
	if (!r || !info)
		return fvm_err(FVM_EINVAL, "fvm_reader_devstate: NULL argument");
	rc = fvm_reader_fill_devstate(r, i, &d);
	if (!rc)
		*info = (struct v01_devstate_info){ d.name, d.length, d.file_offset };
	return fvm_api_end(rc);
}
