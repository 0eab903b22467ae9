/* fvm_parallel (pool.h). */
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "pool.h"

struct arg {
	void (*fn)(void *, unsigned);
	void *ctx;
	unsigned i;
};

static void *trampoline(void *p)
{
	struct arg *a = p;

	a->fn(a->ctx, a->i);
	return NULL;
}

int fvm_parallel(unsigned n, void (*fn)(void *ctx, unsigned i), void *ctx, unsigned *started)
{
	pthread_t tid[64];
	struct arg args[64];
	unsigned lateidx[64], made = 0, late = 0;

	if (n > 64)
		n = 64;
	for (unsigned i = 1; i < n; i++) {
		args[i] = (struct arg){ fn, ctx, i };
		if (pthread_create(&tid[made], NULL, trampoline, &args[i]) == 0)
			made++;
		else
			lateidx[late++] = i; /* runs below, on this thread */
	}
	if (started)
		*started = made + 1;
	fn(ctx, 0);
	for (unsigned k = 0; k < late; k++)
		fn(ctx, lateidx[k]);
	for (unsigned k = 0; k < made; k++)
		pthread_join(tid[k], NULL);
	return 0;
}

unsigned fvm_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : n > 64 ? 64 : (unsigned)n;
}
