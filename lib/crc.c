/*
 * CRC32C: SSE4.2 crc32 instruction when the CPU has it, else slicing-by-8
 * tables. FVM_CRC_SOFT=1 forces the tables, so tests cover both paths.
 *
 * One crc32 instruction has a latency of 3 cycles but a throughput of one
 * per cycle, so a single dependent chain runs at a third of what the unit
 * can do. Long inputs (every 4 KiB payload chunk) are therefore cut into
 * blocks of three lanes of LANE bytes, each lane CRCed as its own chain
 * (the three chains overlap in the pipeline), and the lane results are
 * joined: the CRC register is linear over GF(2), so the register after
 * lane0||lane1||lane2 from start state c is
 *	shift(crc(c, lane0), 2 * LANE) ^ shift(crc(0, lane1), LANE) ^ crc(0, lane2)
 * where shift(r, n) is r advanced over n zero bytes, a linear map applied
 * here with four 256-entry tables per distance (built at init from the
 * 32 basis vectors). This is the scheme of Intel's crc_pcl and the Linux
 * kernel's crc32c-intel, with tables instead of carry-less multiplies.
 * 4096 = 3 * 1360 + 16: one block and a 16-byte tail per chunk.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "crc.h"

#define POLY 0x82F63B78u /* CRC32C, reflected */
#define LANE 1360u       /* multiple of 8; 3 lanes fill a 4 KiB chunk */

static uint32_t table[8][256];
static int have_hw;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init_tables(void)
{
	for (unsigned i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ POLY : c >> 1;
		table[0][i] = c;
	}
	for (unsigned i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
}

static uint32_t crc_sw(uint32_t c, const unsigned char *p, size_t n)
{
	while (n && ((uintptr_t)p & 7)) {
		c = (c >> 8) ^ table[0][(c ^ *p++) & 0xff];
		n--;
	}
	while (n >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		w ^= c;
		c = table[7][w & 0xff] ^ table[6][(w >> 8) & 0xff] ^
		    table[5][(w >> 16) & 0xff] ^ table[4][(w >> 24) & 0xff] ^
		    table[3][(w >> 32) & 0xff] ^ table[2][(w >> 40) & 0xff] ^
		    table[1][(w >> 48) & 0xff] ^ table[0][w >> 56];
		p += 8;
		n -= 8;
	}
	while (n--)
		c = (c >> 8) ^ table[0][(c ^ *p++) & 0xff];
	return c;
}

#if defined(__x86_64__) && defined(__GNUC__)
static uint32_t shift1[4][256], shift2[4][256]; /* over LANE, 2 * LANE zeros */

/* Tables of the linear map "advance the register over n zero bytes". */
static void init_shift(uint32_t t[4][256], size_t n)
{
	static const unsigned char zero[2 * LANE];
	uint32_t basis[32];

	for (int i = 0; i < 32; i++)
		basis[i] = crc_sw(1u << i, zero, n);
	for (int k = 0; k < 4; k++)
		for (unsigned b = 0; b < 256; b++) {
			uint32_t v = 0;
			for (int j = 0; j < 8; j++)
				if (b >> j & 1)
					v ^= basis[8 * k + j];
			t[k][b] = v;
		}
}

static inline uint32_t shift(const uint32_t t[4][256], uint32_t r)
{
	return t[0][r & 0xff] ^ t[1][(r >> 8) & 0xff] ^ t[2][(r >> 16) & 0xff] ^
	       t[3][r >> 24];
}

/*
 * Whole blocks of three 1360-byte lanes: three independent crc32 chains
 * (the instruction's latency is 3 cycles, its throughput 1 per cycle),
 * joined by the shift tables. With dst, each word is also stored there, so
 * a copy and its CRC take one pass over the source. Inlined into both
 * callers, the dst test folds away.
 */
__attribute__((target("sse4.2"), always_inline))
static inline uint64_t crc_lanes(uint64_t c64, unsigned char *dst, const unsigned char **pp,
				 size_t *np)
{
	const unsigned char *p = *pp;
	size_t n = *np;

	while (n >= 3 * LANE) {
		uint64_t a = c64, b = 0, d = 0;

		for (size_t i = 0; i < LANE; i += 8) {
			uint64_t wa, wb, wd;
			memcpy(&wa, p + i, 8);
			memcpy(&wb, p + LANE + i, 8);
			memcpy(&wd, p + 2 * LANE + i, 8);
			if (dst) {
				memcpy(dst + i, &wa, 8);
				memcpy(dst + LANE + i, &wb, 8);
				memcpy(dst + 2 * LANE + i, &wd, 8);
			}
			a = __builtin_ia32_crc32di(a, wa);
			b = __builtin_ia32_crc32di(b, wb);
			d = __builtin_ia32_crc32di(d, wd);
		}
		c64 = shift(shift2, (uint32_t)a) ^ shift(shift1, (uint32_t)b) ^ (uint32_t)d;
		p += 3 * LANE;
		n -= 3 * LANE;
		if (dst)
			dst += 3 * LANE;
	}
	*pp = p;
	*np = n;
	return c64;
}

__attribute__((target("sse4.2")))
static uint32_t crc_hw(uint32_t c, const unsigned char *p, size_t n)
{
	uint64_t c64 = c;

	while (n && ((uintptr_t)p & 7)) {
		c64 = __builtin_ia32_crc32qi((uint32_t)c64, *p++);
		n--;
	}
	c64 = crc_lanes(c64, NULL, &p, &n);
	while (n >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		c64 = __builtin_ia32_crc32di(c64, w);
		p += 8;
		n -= 8;
	}
	while (n--)
		c64 = __builtin_ia32_crc32qi((uint32_t)c64, *p++);
	return (uint32_t)c64;
}

/* The copying variant: whole blocks fused, the tail copied and then CRCed. */
__attribute__((target("sse4.2")))
static uint32_t crc_hw_copy(uint32_t c, unsigned char *dst, const unsigned char *p,
			    size_t n)
{
	size_t done = n;
	uint64_t c64 = crc_lanes(c, dst, &p, &n);

	dst += done - n;
	memcpy(dst, p, n);
	return crc_hw((uint32_t)c64, dst, n);
}
#endif

static int force_soft;

void fvm_crc_force_soft(void)
{
	force_soft = 1;
}

static void init(void)
{
	init_tables();
#if defined(__x86_64__) && defined(__GNUC__)
	__builtin_cpu_init();
	have_hw = __builtin_cpu_supports("sse4.2") && !force_soft;
	if (have_hw) {
		init_shift(shift1, LANE);
		init_shift(shift2, 2 * LANE);
	}
#else
	have_hw = 0;
#endif
}

uint32_t fvm_crc32c(uint32_t crc, const void *p, size_t n)
{
	uint32_t c = ~crc;

	pthread_once(&once, init);
#if defined(__x86_64__) && defined(__GNUC__)
	if (have_hw)
		return ~crc_hw(c, p, n);
#endif
	return ~crc_sw(c, p, n);
}

uint32_t fvm_crc32c_copy(uint32_t crc, void *dst, const void *src, size_t n)
{
	pthread_once(&once, init);
#if defined(__x86_64__) && defined(__GNUC__)
	if (have_hw)
		return ~crc_hw_copy(~crc, dst, src, n);
#endif
	memcpy(dst, src, n);
	return ~crc_sw(~crc, dst, n);
}
