/*
 * The lazy load of an authenticated snapshot (uffd.c): the destinations
 * registered with userfaultfd, a handler thread that installs each page
 * only after its chunk's tag verified, and the fill of every remaining page
 * that fvm_prefetch_start asks for. The session belongs to the reader that
 * loaded (its fd, model and keys are what the handler reads with) and ends
 * in fvm_reader_free at the latest.
 */
#ifndef FVM_UFFD_H
#define FVM_UFFD_H

#include <stddef.h>
#include <stdint.h>

#include "plan.h"
#include "reader.h"

struct fvm_uffd;

/*
 * Take the plan p (moved: the session frees it) of a lazy load of r,
 * register the n destinations, drop what their data pages held (the zero
 * policy was applied to the rest before) and start the handler.
 * On success r->uffd is the session. FVM_EUNSUPPORTED, *why set, when
 * userfaultfd is refused (nothing was changed then); FVM_ESTATE when r
 * still serves another lazy load; FVM_ENOMEM, FVM_EIO.
 */
int fvm_uffd_start(struct fvm_reader *r, struct fvm_plan *p, const struct fvm_map *maps,
		   size_t n, const char **why);

/*
 * The prefetch of a session: ask the handler to install every remaining
 * page (once; FVM_ESTATE for a second), then read its state. status:
 * bytes installed of all, whether the fill ended, and the first error the
 * handler met (a fault's or the fill's), with detail, else 0.
 */
int fvm_uffd_prefetch(struct fvm_uffd *u);
int fvm_uffd_status(struct fvm_uffd *u, uint64_t *done, uint64_t *total, int *ended);
/* Block until the fill ends; its first error, or 0. */
int fvm_uffd_wait(struct fvm_uffd *u);
/* Stop asking the handler to fill (it goes on serving faults). */
void fvm_uffd_cancel(struct fvm_uffd *u);

/*
 * End the session (fvm_reader_free, a new lazy load): every page not yet
 * installed is installed first (checked); pages whose chunk failed are
 * made inaccessible (PROT_NONE), then the registration is removed, which
 * wakes any thread still waiting on one of them: it faults (SIGSEGV)
 * instead of running on a page that was not checked. NULL is ok.
 */
void fvm_uffd_end(struct fvm_uffd *u);

#endif
