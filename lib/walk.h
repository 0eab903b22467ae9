/*
 * The sequential walker: reads a snapshot front to back, record by record,
 * checking each one (R10..R14, R20..R56), applying SEGM entries to a list of
 * extents in file order, and at the INDX record checking that the index is
 * exactly what the records before it produced (R61, R68), then the footer
 * (R70..R74). It knows nothing of loading: payload goes where a sink says,
 * device state to the sink's callback or into the model.
 *
 * Two modes:
 *  - keep: records go into the model (a stream reader's, filled as the
 *    stream arrives);
 *  - check: the model is that of the opened file, and the walk checks the
 *    file against it (verify).
 * Memory: the largest record body (a SEGM body is at most ~6 MiB once its
 * header is checked; a DEVS body is kept only in keep mode), one 1 MiB
 * payload buffer, and the extent list.
 */
#ifndef FVM_WALK_H
#define FVM_WALK_H

#include <stdint.h>

#include "model.h"

struct fvm_walk;

struct fvm_walk_sink {
	/* Where the payload of a DATA entry goes; NULL (or a NULL return):
	 * read through the walker's buffer and dropped. */
	uint8_t *(*dst)(void *ctx, const struct fvm_entry *e);
	/* keep mode: a block just joined the model (id), before its pages. */
	int (*block)(void *ctx, uint32_t id);
	void *ctx;
	/* keep mode: device state handed on as each record arrives (CRC
	 * checked first), instead of kept in the model. */
	fvm_devstate_fn devstate;
	void *devstate_ctx;
	int check;              /* compare chunk CRCs of the payload */
	fvm_progress_fn progress;
	void *pctx;
	int by_pos;             /* progress in file bytes (verify), else payload */
	uint64_t total;
	uint64_t reads, bytes, extents; /* what the walk did */
};

/*
 * fd is read from its current position (a stream) or from offset 0
 * (seekable, check mode). NULL when out of memory.
 */
struct fvm_walk *fvm_walk_new(struct fvm_model *m, int fd, int seekable, int keep);
/*
 * The file header, then (pause) the records up to the first SEGM or DEVS
 * record, which stays pending for fvm_walk_rest: where its bytes go is the
 * sink's business.
 */
int fvm_walk_start(struct fvm_walk *w, int pause);
/* Walk to the end of the footer, sending payload and device state to k. */
int fvm_walk_rest(struct fvm_walk *w, struct fvm_walk_sink *k);
int fvm_walk_done(const struct fvm_walk *w);
uint64_t fvm_walk_pos(const struct fvm_walk *w);
void fvm_walk_free(struct fvm_walk *w);

#endif
