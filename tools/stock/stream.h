/*
 * QEMU migration stream reader (QEMU 7.2 .. 10.x; doc/QEMU.md). One pass
 * over a stock_source with callbacks:
 *
 *  - everything before the "ram" START section (file header, configuration
 *    section, commands) is kept byte for byte in pre_ram;
 *  - the "ram" sections (START, PART, END) are decoded in full: the block
 *    list goes to ops->block, page records to ops->pages / ops->zero in
 *    batches of consecutive pages of one block (PAGE and COMPRESS_PAGE
 *    inflated into one buffer, ZERO counted), mapped-ram blocks read from
 *    their bitmap and fixed offsets;
 *  - commands between the ram START and END sections are kept in mid_ram;
 *  - everything after the ram END section (device FULL sections, EOF, the
 *    JSON description) is kept byte for byte in post_ram without parsing.
 *
 * What cannot be converted faithfully is refused with the record and its
 * offset: XBZRLE, RDMA hooks, other iterable sections, device sections
 * before the ram END, postcopy packages.
 */
#ifndef STOCK_STREAM_H
#define STOCK_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "source.h"

#define STOCK_QEVM_MAGIC 0x5145564du
#define STOCK_PAGE_SIZE 4096u  /* x86 target page: the unit of every record */
#define STOCK_PAGE_SHIFT 12

/* Section types (migration/savevm.c). */
enum {
	QEMU_VM_EOF = 0x00,
	QEMU_VM_SECTION_START = 0x01,
	QEMU_VM_SECTION_PART = 0x02,
	QEMU_VM_SECTION_END = 0x03,
	QEMU_VM_SECTION_FULL = 0x04,
	QEMU_VM_SUBSECTION = 0x05,
	QEMU_VM_VMDESCRIPTION = 0x06,
	QEMU_VM_CONFIGURATION = 0x07,
	QEMU_VM_COMMAND = 0x08,
	QEMU_VM_SECTION_FOOTER = 0x7e
};

/* ram record flags (migration/ram.c), in the low bits of a be64. */
enum {
	RAM_SAVE_FLAG_ZERO = 0x02,
	RAM_SAVE_FLAG_MEM_SIZE = 0x04,
	RAM_SAVE_FLAG_PAGE = 0x08,
	RAM_SAVE_FLAG_EOS = 0x10,
	RAM_SAVE_FLAG_CONTINUE = 0x20,
	RAM_SAVE_FLAG_XBZRLE = 0x40,
	RAM_SAVE_FLAG_HOOK = 0x80,
	RAM_SAVE_FLAG_COMPRESS_PAGE = 0x100,
	RAM_SAVE_FLAG_MULTIFD_FLUSH = 0x200
};

#define STOCK_MAX_BLOCKS 4096

struct stock_ram_block {
	char name[256];
	uint64_t length;          /* used_length, a multiple of 4 KiB */
	int has_page_size;        /* postcopy: block page size field */
	uint64_t page_size;
	int has_addr;             /* x-ignore-shared: mr->addr field */
	uint64_t addr;
	int mapped;               /* mapped-ram header present */
	uint32_t mr_version;
	uint64_t mr_page_size, bitmap_offset, pages_offset;
};

struct stock_stream_ops {
	void *ctx;
	/* A block of the MEM_SIZE list, in stream order (index from 0). */
	int (*block)(void *ctx, uint32_t index, const struct stock_ram_block *b);
	/* count consecutive data pages of block index, count * 4 KiB at data. */
	int (*pages)(void *ctx, uint32_t block, uint64_t first_page,
		     uint64_t count, const void *data);
	int (*zero)(void *ctx, uint32_t block, uint64_t first_page,
		    uint64_t count);
	/* Input offset and size (UINT64_MAX when unknown); may be NULL. */
	int (*progress)(void *ctx, uint64_t offset, uint64_t size);
};

struct stock_stream {
	/* Settings (0 = default) */
	uint64_t batch_pages;     /* pages per ops->pages call (1024) */
	size_t keep_max;          /* max bytes of pre/mid/post_ram (1 GiB) */

	/* Kept bytes */
	struct stock_buf pre_ram, mid_ram, post_ram;

	/* Configuration section */
	int has_config;
	char machine[256];
	char caps[512];           /* capability names, comma separated */
	int ignore_shared, mapped_ram, postcopy_advised;
	uint32_t target_page_bits;
	uint64_t caps_count_off;  /* in pre_ram: the be32 caps count */
	uint64_t mapped_cap_off;  /* in pre_ram: the "mapped-ram" entry */
	uint32_t mapped_cap_len;

	/* The ram section */
	uint32_t section_id, instance_id, version_id;
	int footers;              /* sections carry footers */
	uint64_t total_bytes;     /* of the MEM_SIZE record */
	struct stock_ram_block *blocks;
	uint32_t nblocks;

	/* Counts */
	uint64_t page_records, zero_records, compressed_records;
	uint64_t mapped_data_pages, mapped_zero_pages;
	uint64_t ram_sections, commands;
	uint64_t ram_end_offset;  /* input offset where post_ram starts */
	size_t vmdesc_off, vmdesc_len; /* the JSON description in post_ram */
};

/* st must be zeroed (settings may be filled in) before parsing. */
int stock_stream_parse(struct stock_source *src,
		       const struct stock_stream_ops *ops,
		       struct stock_stream *st);
void stock_stream_release(struct stock_stream *st);

/*
 * The "qemu.ram-section" device-state record (doc/QEMU.md): section id,
 * instance and version, footers, configuration offsets and the block
 * list with its extra fields, so that export can regenerate the ram START
 * section. decode fills blocks/nblocks and the scalar fields of st.
 */
int stock_ram_desc_encode(const struct stock_stream *st, struct stock_buf *out);
int stock_ram_desc_decode(const void *data, size_t len, const char *name,
			  struct stock_stream *st);

#endif
