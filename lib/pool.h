/*
 * Running one function on several threads at once: the frame compressor of
 * the writer and the frame decoders of the compressed load. Threads are
 * made per call and joined before it returns; the caller's thread is one
 * of them.
 */
#ifndef FVM_POOL_H
#define FVM_POOL_H

/*
 * Run fn(ctx, i) for i = 0 .. n-1, i = 0 on the calling thread, the others
 * on new threads, and wait for all. When a thread cannot be made, its i
 * runs on the calling thread after fn(ctx, 0) (fn must not wait for other
 * i to make progress unless told so by *started). *started (may be NULL)
 * receives how many ran concurrently. Returns 0.
 */
int fvm_parallel(unsigned n, void (*fn)(void *ctx, unsigned i), void *ctx, unsigned *started);

/* Online CPUs, at least 1 (sysconf). */
unsigned fvm_cpus(void);
#endif
