/*
 * Entry points of the stock QEMU conversions used by the fvmsnap
 * subcommands (convert, export, inspect on stock inputs). They return 0 or
 * a negative FVM_E* code with the detail in fvm_error_detail(): the stock
 * code sets it with fvm_error_set(), and a failed libfastvm call leaves its
 * own detail and errno as they are.
 */
#ifndef STOCK_STOCK_H
#define STOCK_STOCK_H

#include <stdint.h>
#include <stdio.h>

#include "fastvm/fastvm.h"

struct stock_convert_opts {
	const char *input;        /* path, or "-" for standard input... */
	int in_fd;                /* ...unless this is > 0: a stream read from
	                             it (a pipe, front to back), which input
	                             names; not closed */
	const char *snapshot;     /* qcow2: id or name; NULL = the only one */
	const char *output;       /* .fvm path, written atomically... */
	int out_fd;               /* ...unless this is >= 0: written to it */
	const char *creator;      /* metadata "creator" */
	const char *created;      /* metadata "created" (RFC 3339) or NULL */
	uint32_t write_flags;     /* FVM_WRITE_* */
	uint32_t codec;           /* enum fvm_codec; 0 = uncompressed */
	int32_t level;            /* 0 = the codec's default */
	uint32_t frame_bytes;     /* 0 = the library's default */
	const uint8_t *key;       /* fvm_write_options.key: NULL = not authenticated */
	fvm_progress_fn progress; /* (input bytes done, input size or 0) */
	void *progress_ctx;
	/* the writer's progress (fvm_write_options.progress, progress_ctx
	 * too): also called while the shared RAM below is written */
	fvm_progress_fn write_progress;
	/*
	 * Blocks the stream has no pages of because the source QEMU had them
	 * in shared memory (x-ignore-shared; fvmsnap save): their whole
	 * contents from that memory, written after the stream's pages, zero
	 * pages found. The snapshot then records metadata qemu.shared-ram.
	 */
	const struct stock_shared_ram *shared;
	unsigned nshared;
	/* The VM's disk images, recorded with fvm_writer_add_disk; NULL-terminated (or NULL). */
	const char *const *disks;
};

struct stock_shared_ram {
	const char *name;
	const void *mem;
	uint64_t length;
	int fd;                   /* the backing file: its holes are zero pages
	                             without being read (SEEK_HOLE); -1: scan all */
};

struct stock_convert_result {
	uint64_t input_bytes;     /* stream bytes read */
	uint64_t ram_bytes;       /* sum of block lengths */
	uint64_t data_pages, zero_pages;
	uint32_t blocks;
	uint64_t devstate_bytes;
};

int stock_convert(const struct stock_convert_opts *o, struct stock_convert_result *res);

struct stock_export_opts {
	const char *input;        /* .fvm path (or the name of reader) */
	fvm_reader *reader;       /* NULL: open input; else this seekable
	                             reader (not freed), e.g. of a copy of
	                             standard input */
	int out_fd;               /* written sequentially, not closed */
	const char *out_name;     /* for messages */
	uint64_t batch_bytes;     /* pages read per fvm_reader_read_pages; 0 = 4 MiB */
	/*
	 * Blocks the destination already holds in shared memory (fvmsnap
	 * restore: memory-backend-file share=on): the stream then carries the
	 * x-ignore-shared capability and every block's address field, and no
	 * page of these blocks. NULL-terminated, or NULL for none.
	 */
	const char *const *shared;
	fvm_progress_fn progress;
	void *progress_ctx;
};

struct stock_export_result {
	uint64_t output_bytes;
	uint64_t data_pages, zero_pages;
};

int stock_export(const struct stock_export_opts *o, struct stock_export_result *res);

/* 1 when path is a file starting like a QEMU stream ("QEVM") or a qcow2
 * image ("QFI\xfb"): fvmsnap inspect then reports it with stock_inspect. */
int stock_input_probe(const char *path);

/* Report on a stock input (text or JSON) to out. */
int stock_inspect(const char *path, const char *snapshot, int json, FILE *out);

#endif
