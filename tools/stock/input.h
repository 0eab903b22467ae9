/*
 * Opening a stock QEMU input for convert and inspect: a migration stream
 * file (also a mapped-ram file), standard input ("-"), or a qcow2 image
 * (recognised by its magic "QFI\xfb") whose internal snapshot's VM state
 * is read as the stream.
 */
#ifndef STOCK_INPUT_H
#define STOCK_INPUT_H

#include "qcow2.h"
#include "source.h"

enum stock_input_kind { STOCK_INPUT_STREAM, STOCK_INPUT_QCOW2 };

struct stock_input {
	enum stock_input_kind kind;
	int fd;                    /* -1 when not owned */
	struct stock_qcow2 *q;
	size_t snapshot;           /* index in the qcow2 snapshot table */
	struct stock_source *src;
	char name[512];            /* for messages: "disk.qcow2 snapshot 'snap1'" */
};

/*
 * snapshot: id or name (qcow2 only; NULL picks the only snapshot of an
 * image with exactly one). FVM_EINVAL when snapshot is given for a stream.
 */
/*
 * A migration stream or mapped-ram file on descriptor fd (not closed by
 * stock_input_close), called name in messages; a qcow2 image is refused
 * (it is read by its path).
 */
int stock_input_open_fd(struct stock_input *in, int fd, const char *name);
int stock_input_open(struct stock_input *in, const char *path,
		     const char *snapshot);
void stock_input_close(struct stock_input *in);

#endif
