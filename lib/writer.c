/*
 * The writer: blocks -> zero scan -> runs -> segments (entries, chunk CRCs,
 * payload) -> index -> footer, in one sequential pass that never seeks, so
 * it can write to a pipe. A path writer goes through a temporary file that
 * is fsynced and renamed over the target only in fvm_writer_finish(); it
 * is unnamed (O_TMPFILE) until then where the filesystem allows.
 *
 * A segment's header precedes its payload, so the runs of a segment are
 * collected first: as iovecs into the caller's memory (write_block, no copy)
 * or into the segment buffer (put_pages, whose data is transient). Memory:
 * the segment buffer (segment_bytes, only when put_pages is used) plus the
 * index under construction (40 bytes per run).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stddef.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "abi.h"
#include "array.h"
#include "codec.h"
#include "auth.h"
#include "crc.h"
#include "error.h"
#include "extents.h"
#include "format.h"
#include "frames.h"
#include "pool.h"
#include "writer.h"
#include "zeroscan.h"

#define DEFAULT_SEGMENT_BYTES (16u << 20)
/*
 * Device state written in pieces is stored in DEVS records of at most this
 * much data (FORMAT.md 4.3): the writer's buffer, and what a reader holds
 * of a section at once.
 */
#define DEVS_PART (1u << 20)
#define DEFAULT_FRAME_BYTES (1u << 20) /* doc/BENCHMARKS.md 8: 5-6% fewer bytes than 256 KiB (zstd 3-9) */

struct wblock {
	char name[FVM_MAX_NAME + 1];
	uint64_t length;
	uint32_t page_shift;
	uint64_t rec_offset;
};

struct u64vec {
	uint64_t *v;
	size_t n, cap;
};

struct fvm_writer {
	int fd, own_fd;        /* own_fd: opened here, closed at finish/free */
	char *path, *tmp_path; /* path writer only; no tmp_path for devices */
	int unnamed;           /* O_TMPFILE: tmp_path is the name it gets at finish */
	const char *name;      /* for messages */
	int failed, finished;
	uint64_t off;          /* bytes written so far = next file offset */
	fvm_write_options o;
	unsigned disks;        /* disk.N.* recorded (disk.c) */
	int with_crc;
	unsigned chk;          /* check bytes per payload chunk: 0, 4 (CRC), 16 (tag) */
	/* AUTHENTICATED (FORMAT.md 4.6): the keys, the salt and what the MAC
	 * covers as it is written; NULL keys: not authenticated */
	struct fvm_auth *keys;
	uint8_t salt[FVM_SALT_LEN], header[FVM_HEADER_SIZE];
	struct fvm_auth_digest db, dm;
	uint8_t *devs_tags;    /* 16 per DEVS record written */
	size_t devs_tags_cap;
	uint8_t *tags;         /* the pending segment's chunk tags */
	size_t tags_cap;

	struct wblock *blocks;
	struct fvm_blockdesc *desc;
	uint32_t nblocks;
	uint32_t *name_hash;    /* open addressing: block id + 1, 0 = empty */
	uint32_t hash_cap;      /* a power of two, > 2 x nblocks */
	struct u64vec meta, devs;
	struct fvm_extlist ext; /* extents in file order, resolved at finish */

	/* the pending segment */
	struct fvm_entry *ents;
	uint32_t nents;
	size_t ents_cap;
	struct iovec *iov;
	size_t niov, iov_cap;
	uint64_t pay_len;
	uint32_t *crcs;
	size_t crc_cap;
	unsigned char *sbuf;   /* copies of put_pages data */
	uint64_t sbuf_len, sbuf_cap;

	uint64_t progress_total, progress_done;

	/*
	 * Pipelined writes of a seekable output (write_block/write_pages, from
	 * the caller's memory): a segment's record and payload are written by
	 * a thread with pwritev at their offset while this thread scans and
	 * CRCs the next segment. One job in flight; every other write waits
	 * for it first, and write_mem returns only when it is done.
	 */
	int seekable;           /* pwritev at off: a temporary file we own */
	int pipeline;           /* inside write_mem: seg_flush hands off */
	int wt_started, wt_quit, job_pending;
	pthread_t wt;
	pthread_mutex_t wmu;
	pthread_cond_t wcv;
	struct iovec *jiov;     /* the job: its head (record, padding), then payload */
	size_t jniov, jiov_cap;
	uint8_t *jhead;
	size_t jhead_cap;
	uint64_t joff;
	int jerr;               /* errno of the job's failed write, 0 if none */
	uint64_t jerr_off;

	/* COMPRESSED (FORMAT.md 4.5): frames of each segment, compressed by
	 * nthreads threads with a codec context each */
	unsigned fshift, nthreads;
	struct fvm_codec_ctx *cctx;
	unsigned char *cbuf;    /* one bound-sized slot per frame of a segment */
	size_t cbuf_cap;
	unsigned char *gather;  /* nthreads frames: plain bytes that span iovecs */
	struct fvm_frame *fr;   /* the pending segment's frames */
	size_t fr_cap;
	struct iovec *ciov;     /* the frames and their padding, to write */
	size_t ciov_cap;
	uint64_t *iov_at;       /* plain offset of each pending iovec */
	size_t iov_at_cap;
	struct fvm_frame *frames; /* every frame so far, for the index */
	uint64_t nframes;
	size_t frames_cap;
	uint64_t plain_base;    /* plain payload space written so far */

	/* the device-state section being written in pieces */
	int dv_open;
	char dv_name[FVM_MAX_NAME + 1];
	unsigned char *dv_buf;  /* dv_part bytes */
	size_t dv_len, dv_part; /* dv_part: DEVS_PART, but for tests */
};

static int push_u64(struct u64vec *v, uint64_t x)
{
	if (fvm_grow((void **)&v->v, &v->cap, v->n + 1, sizeof(*v->v)))
		return fvm_err(FVM_ENOMEM, "writer record list");
	v->v[v->n++] = x;
	return 0;
}

/* ------------------------------------------------------------ output */

static int fail(fvm_writer *w, int rc)
{
	w->failed = 1;
	return rc;
}

/*
 * Bytes per write call. A buffered write of 2 MiB or more asks the kernel
 * (6.x, ext4 with large folios) for PMD-sized page-cache folios; on this
 * project's bench machine (a VM, kernel 6.18) such writes cost 0.4-3.3 s
 * per GiB from one run to the next, against a steady 0.29-0.33 s in calls
 * of 128 KiB-1 MiB (mmap'd 1 GiB image written in calls of N bytes, 4-5
 * alternating rounds; dd bs=16M against bs=1M alike). fvmsnap pack wrote a
 * 16 MiB segment per call. 256 KiB, the load's read size, also keeps the
 * file's cached folios small, so that a lazy map of a freshly written
 * snapshot maps about as many neighbours per fault as before (fvmsnap
 * hot, tests/hot.sh); doc/BENCHMARKS.md section 9 has the numbers.
 */
#define WRITE_CALL_MAX ((size_t)256 << 10)

/*
 * Write n iovecs at *off (pwritev) or at the file position (seekable 0),
 * advancing *off, at most WRITE_CALL_MAX bytes per call; short writes
 * resume mid-iovec. 0 or an errno, with the offset it happened at in *off.
 */
static int write_iov(int fd, int seekable, struct iovec *iov, size_t n, uint64_t *off)
{
	while (n) {
		size_t sum = 0, cut_len = 0;
		int cnt = 0, cut = 0;
		ssize_t r;

		while ((size_t)cnt < n && cnt < IOV_MAX && sum + iov[cnt].iov_len <= WRITE_CALL_MAX)
			sum += iov[cnt++].iov_len;
		if ((size_t)cnt < n && cnt < IOV_MAX && sum < WRITE_CALL_MAX) {
			/* the first part of the next iovec fills the call */
			cut = 1;
			cut_len = iov[cnt].iov_len;
			iov[cnt++].iov_len = WRITE_CALL_MAX - sum;
		}
		r = seekable ? pwritev(fd, iov, cnt, (off_t)*off) : writev(fd, iov, cnt);
		if (cut)
			iov[cnt - 1].iov_len = cut_len;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		if (r == 0)
			return EIO; /* a regular file that takes nothing */
		*off += (uint64_t)r;
		while (n && (size_t)r >= iov->iov_len) {
			r -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n) {
			iov->iov_base = (char *)iov->iov_base + r;
			iov->iov_len -= (size_t)r;
		}
	}
	return 0;
}

/*
 * A temporary file is fsynced at finish anyway: start writing a segment
 * back as soon as it is written, so the device works while the next
 * segment is built and the final fsync waits only for the tail
 * (bench/convert-speed.sh, 157 MiB vmstate: convert -o disk about 15%
 * faster). Not with SYNC_AT_FINISH (the caller wants all device work
 * after finish) nor NO_FSYNC. Advisory: an error shows again at fsync.
 */
static void write_back(const fvm_writer *w, uint64_t off, uint64_t len)
{
	if (w->tmp_path && !(w->o.flags & (FVM_WRITE_NO_FSYNC | FVM_WRITE_SYNC_AT_FINISH)))
		(void)sync_file_range(w->fd, (off_t)off, (off_t)len, SYNC_FILE_RANGE_WRITE);
}

static void *write_thread(void *arg)
{
	fvm_writer *w = arg;

	pthread_mutex_lock(&w->wmu);
	for (;;) {
		uint64_t off;
		int e;

		while (!w->job_pending && !w->wt_quit)
			pthread_cond_wait(&w->wcv, &w->wmu);
		if (!w->job_pending)
			break;
		off = w->joff;
		pthread_mutex_unlock(&w->wmu);
		e = write_iov(w->fd, 1, w->jiov, w->jniov, &off);
		if (!e)
			write_back(w, w->joff, off - w->joff);
		pthread_mutex_lock(&w->wmu);
		if (e && !w->jerr) {
			w->jerr = e;
			w->jerr_off = off;
		}
		w->job_pending = 0;
		pthread_cond_broadcast(&w->wcv);
	}
	pthread_mutex_unlock(&w->wmu);
	return NULL;
}

/* Wait for the job in flight; its error, if it failed. */
static int job_wait(fvm_writer *w)
{
	int e;

	if (!w->wt_started)
		return 0;
	pthread_mutex_lock(&w->wmu);
	while (w->job_pending)
		pthread_cond_wait(&w->wcv, &w->wmu);
	e = w->jerr;
	pthread_mutex_unlock(&w->wmu);
	if (!e)
		return 0;
	return fail(w, fvm_err_sys(e, "%s: write at offset 0x%" PRIx64, w->name, w->jerr_off));
}

static void job_stop(fvm_writer *w)
{
	if (!w->wt_started)
		return;
	pthread_mutex_lock(&w->wmu);
	w->wt_quit = 1;
	pthread_cond_broadcast(&w->wcv);
	pthread_mutex_unlock(&w->wmu);
	pthread_join(w->wt, NULL); /* after the job in flight: the fd stays open until then */
	pthread_mutex_destroy(&w->wmu);
	pthread_cond_destroy(&w->wcv);
	w->wt_started = 0;
}

static int out_writev(fvm_writer *w, struct iovec *iov, size_t n)
{
	int e = job_wait(w);

	if (e)
		return e;
	e = write_iov(w->fd, w->seekable, iov, n, &w->off);
	if (e)
		return fail(w, fvm_err_sys(e, "%s: write at offset 0x%" PRIx64, w->name, w->off));
	return 0;
}

static int out_write(fvm_writer *w, const void *p, size_t len)
{
	struct iovec iov = { (void *)p, len };

	return len ? out_writev(w, &iov, 1) : 0;
}

static const unsigned char zeros[FVM_PAYLOAD_ALIGN];

static int out_pad(fvm_writer *w, uint64_t align)
{
	return out_write(w, zeros, fvm_align(w->off, align) - w->off);
}

/* A record whose body is a then b; padded to 8 bytes after. */
static int out_record(fvm_writer *w, uint32_t type, const void *a, uint64_t alen,
		      const void *b, uint64_t blen)
{
	uint8_t hdr[FVM_RECHDR_SIZE];
	struct iovec iov[3] = { { hdr, sizeof(hdr) }, { (void *)a, alen }, { (void *)b, blen } };
	int rc;

	fvm_rechdr_encode2(hdr, type, a, alen, b, blen);
	if (w->keys && (type == FVM_REC_BLCK || type == FVM_REC_META)) { /* 4.6: D_B, D_M */
		struct fvm_auth_digest *d = type == FVM_REC_BLCK ? &w->db : &w->dm;

		fvm_auth_digest_rec(d, type, alen + blen, a, alen);
		fvm_auth_digest_add(d, b, blen);
	} else if (w->keys && type == FVM_REC_DEVS) { /* 4.6: the record's tag */
		struct fvm_auth_rec t;

		if (fvm_grow((void **)&w->devs_tags, &w->devs_tags_cap,
			     (size_t)w->devs.n * FVM_TAG_LEN, 1))
			return fail(w, fvm_err(FVM_ENOMEM, "%s: device-state tags", w->name));
		fvm_auth_rec_begin(&t, w->keys, w->off, type, alen + blen);
		fvm_auth_rec_add(&t, a, alen);
		fvm_auth_rec_add(&t, b, blen);
		rc = fvm_auth_rec_end(&t, w->devs_tags + (w->devs.n - 1) * FVM_TAG_LEN);
		if (rc)
			return fail(w, rc);
	}
	rc = out_writev(w, iov, 3);
	return rc ? rc : out_pad(w, 8);
}

/* ------------------------------------------------------------ setup */

static int check_codec(const fvm_write_options *o)
{
	const char *name = fvm_codec_name(o->codec);

	if (!name)
		return fvm_err(FVM_EINVAL, "fvm_write_options: unknown codec %u", o->codec);
	if (!fvm_codec_built(o->codec))
		return fvm_err(FVM_EUNSUPPORTED, "codec %s: this libfastvm was built without it",
			       name);
	if (o->level && !fvm_codec_level_ok(o->codec, o->level))
		return fvm_err(FVM_EINVAL, "codec %s: level %d outside %s", name, o->level,
			       o->codec == FVM_CODEC_ZSTD ? "1..19" : "1..12");
	if (o->frame_bytes && (o->frame_bytes & (o->frame_bytes - 1) ||
			       o->frame_bytes < (1u << FVM_MIN_FRAME_SHIFT) ||
			       o->frame_bytes > (1u << FVM_MAX_FRAME_SHIFT)))
		return fvm_err(FVM_EINVAL, "frame size %u: a power of two from 64 KiB to 1 MiB",
			       o->frame_bytes);
	if (o->flags & FVM_WRITE_NO_CRC)
		return fvm_err(FVM_EINVAL, "FVM_WRITE_NO_CRC with a codec: frames always carry "
			       "their CRCs");
	return 0;
}

static int writer_new(fvm_writer **out, const fvm_write_options *opts)
{
	fvm_writer *w;

	fvm_write_options o = FVM_WRITE_OPTIONS_INIT;
	int rc;

	*out = NULL;
	/* the 0.1 layout is the oldest, and this one */
	if (opts && (rc = fvm_abi_in(&o, sizeof(o), opts, offsetof(fvm_write_options, codec),
				     "fvm_write_options")))
		return rc;
	if (o.codec && (rc = check_codec(&o)))
		return rc;
	if (o.key && o.codec)
		return fvm_err(FVM_EINVAL, "fvm_write_options: an authenticated snapshot cannot "
			       "be compressed in this format version (FORMAT.md R9a)");
	if (o.key && !fvm_auth_built())
		return fvm_err(FVM_EUNSUPPORTED, "authenticated snapshots: this libfastvm was "
			       "built without libgcrypt");
	if (o.flags & ~(uint32_t)(FVM_WRITE_NO_CRC | FVM_WRITE_NO_FSYNC | FVM_WRITE_SYNC_AT_FINISH |
				  FVM_WRITE_STABLE_MEM))
		return fvm_err(FVM_EINVAL, "fvm_write_options: unknown flags 0x%x", o.flags);
	w = calloc(1, sizeof(*w));
	if (!w)
		return fvm_err(FVM_ENOMEM, "writer");
	w->o = o;
	if (!w->o.segment_bytes)
		w->o.segment_bytes = DEFAULT_SEGMENT_BYTES;
	if (w->o.segment_bytes % FVM_PAYLOAD_ALIGN || w->o.segment_bytes > FVM_MAX_SEG_PAYLOAD ||
	    (w->o.max_run_bytes % FVM_PAYLOAD_ALIGN)) {
		free(w);
		return fvm_err(FVM_EINVAL, "segment_bytes %" PRIu64 " and max_run_bytes %" PRIu64
			       " must be multiples of 4096, segment_bytes at most 4 GiB",
			       o.segment_bytes, o.max_run_bytes);
	}
	w->with_crc = !(w->o.flags & FVM_WRITE_NO_CRC) && !o.codec && !o.key;
	w->chk = w->with_crc ? FVM_CHK_CRC : 0;
	if (o.key) {
		w->o.key = NULL; /* copied, not kept */
		w->keys = malloc(sizeof(*w->keys));
		if (!w->keys || fvm_auth_random(w->salt, sizeof(w->salt))) {
			free(w->keys);
			free(w);
			return fvm_err(FVM_ENOMEM, "writer: keys");
		}
		if (fvm_auth_derive(w->keys, o.key, w->salt)) {
			free(w->keys);
			free(w);
			return FVM_ENOMEM;
		}
		fvm_auth_digest_begin(&w->db);
		fvm_auth_digest_begin(&w->dm);
		w->chk = FVM_CHK_TAG;
	}
	if (o.codec) {
		w->fshift = (unsigned)__builtin_ctz(o.frame_bytes ? o.frame_bytes
					   : DEFAULT_FRAME_BYTES);
		w->nthreads = o.threads ? (o.threads > 64 ? 64 : o.threads) : fvm_cpus();
		w->cctx = calloc(w->nthreads, sizeof(*w->cctx));
		w->gather = malloc((size_t)w->nthreads << w->fshift);
		if (!w->cctx || !w->gather) {
			unsigned n = w->nthreads;

			free(w->cctx);
			free(w->gather);
			free(w);
			return fvm_err(FVM_ENOMEM, "writer: %u compressing threads", n);
		}
		for (unsigned i = 0; i < w->nthreads; i++)
			fvm_codec_ctx_init(&w->cctx[i], o.codec, o.level);
	}
	w->fd = -1;
	*out = w;
	return 0;
}

static int write_header(fvm_writer *w)
{
	struct fvm_header h = { FVM_VERSION_MAJOR_FILE, FVM_VERSION_MINOR_FILE,
				w->with_crc ? FVM_INCOMPAT_PAYLOAD_CRC : 0, 0, 0, 0, 0, { 0 }, 0 };

	if (w->keys) {
		h.minor = FVM_VERSION_MINOR_AUTH;
		h.incompat = FVM_INCOMPAT_AUTH;
		memcpy(h.salt, w->salt, sizeof(h.salt));
		h.tag_alg = FVM_TAG_ALG_GMAC;
	}
	if (w->o.codec) {
		h.minor = FVM_VERSION_MINOR_COMPRESSED;
		h.incompat = FVM_INCOMPAT_COMPRESSED;
		h.codec = (uint8_t)w->o.codec;
		h.level = (uint8_t)(w->o.level ? w->o.level : fvm_codec_default_level(w->o.codec));
		h.frame_shift = (uint8_t)w->fshift;
	}
	uint8_t buf[FVM_HEADER_SIZE];

	fvm_header_encode(buf, &h);
	memcpy(w->header, buf, sizeof(buf));
	return out_write(w, buf, sizeof(buf));
}

int fvm_write_options_init(fvm_write_options *opts, size_t size)
{
	const fvm_write_options def = FVM_WRITE_OPTIONS_INIT;

	fvm_api_begin();
	return fvm_api_end(fvm_abi_init(opts, size, &def, sizeof(def), "fvm_write_options_init"));
}

int fvm_writer_open_fd(fvm_writer **out, int fd, const fvm_write_options *opts)
{
	fvm_writer *w;
	int rc;

	fvm_api_begin();
	if (!out || fd < 0)
		return fvm_err(FVM_EINVAL, "fvm_writer_open_fd: no output or bad fd");
	rc = writer_new(&w, opts);
	if (rc)
		return rc;
	w->fd = fd;
	w->name = "output";
	rc = write_header(w);
	if (rc) {
		fvm_writer_free(w);
		return rc;
	}
	*out = w;
	return 0;
}

/*
 * Names for the temporary file, .NAME.XXXXXX with the X made unique: seeded
 * by process and writer, so that writers racing for one path (other
 * processes, other threads) try different names first; EEXIST moves on.
 */
static uint64_t temp_seed(const fvm_writer *w)
{
	return (uint64_t)getpid() * 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)w;
}

static void temp_name(fvm_writer *w, uint64_t *seed)
{
	static const char digits[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	char *x = w->tmp_path + strlen(w->tmp_path) - 6;

	for (int i = 0; i < 6; i++) {
		*seed = *seed * 6364136223846793005ull + 1442695040888963407ull;
		x[i] = digits[(*seed >> 33) % 36];
	}
}

/* Where O_TMPFILE is refused: a named temporary (mode 0666 less the umask,
 * as for the target itself; mkostemp would make 0600, and fixing that up
 * needs the umask, which only setting it reveals). */
static int create_named(fvm_writer *w)
{
	uint64_t seed = temp_seed(w);

	for (int tries = 0; tries < 64; tries++) {
		int fd;

		temp_name(w, &seed);
		fd = open(w->tmp_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
		if (fd >= 0 || errno != EEXIST)
			return fd;
	}
	errno = EEXIST;
	return -1;
}

int fvm_writer_open_path(fvm_writer **out, const char *path,
			 const fvm_write_options *opts)
{
	const char *slash;
	struct stat st;
	fvm_writer *w;
	size_t dlen;
	int rc;

	fvm_api_begin();
	if (!out || !path || !*path)
		return fvm_err(FVM_EINVAL, "no output path given");
	rc = writer_new(&w, opts);
	if (rc)
		return rc;
	slash = strrchr(path, '/');
	dlen = slash ? (size_t)(slash - path) + 1 : 0;
	w->path = strdup(path);
	w->tmp_path = malloc(strlen(path) + 16);
	if (!w->path || !w->tmp_path) {
		fvm_writer_free(w);
		return fvm_err(FVM_ENOMEM, "%s: path", path);
	}
	w->name = w->path;
	if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
		/* a device or FIFO (/dev/null, a named pipe) is written in place:
		 * renaming a temporary over it would replace the node itself */
		if (S_ISDIR(st.st_mode)) {
			fvm_writer_free(w);
			return fvm_err(FVM_EINVAL, "%s: is a directory", path);
		}
		w->fd = open(path, O_WRONLY | O_CLOEXEC);
		if (w->fd < 0) {
			rc = fvm_err_sys(errno, "%s: open", path);
			fvm_writer_free(w);
			return rc;
		}
		w->own_fd = 1;
		free(w->tmp_path);
		w->tmp_path = NULL;
		goto header;
	}
	/*
	 * .NAME.XXXXXX beside the target: same filesystem, so rename is
	 * atomic. Where the filesystem allows, the file has no name at all
	 * until finish (O_TMPFILE, linked then): a process killed while
	 * writing leaves nothing behind; elsewhere a named temporary, removed
	 * by fvm_writer_free, can survive a SIGKILL.
	 */
	memcpy(w->tmp_path, path, dlen);
	sprintf(w->tmp_path + dlen, ".%s.XXXXXX", path + dlen);
	/* mode 0666: the kernel applies the umask (reading it would mean
	 * setting it, for every thread of the process) */
	{
		char *dir = strndup(path, dlen ? dlen : 0);

		w->fd = dir ? open(dlen ? dir : ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666) : -1;
		free(dir);
	}
	if (w->fd >= 0) {
		w->unnamed = 1;
		w->seekable = 1;
		goto header;
	}
	w->fd = create_named(w);
	if (w->fd < 0) {
		rc = fvm_err_sys(errno, "%s: cannot create the file", path);
		free(w->tmp_path);
		w->tmp_path = NULL;
		fvm_writer_free(w);
		return rc;
	}
	w->seekable = 1;
header:
	rc = write_header(w);
	if (rc) {
		fvm_writer_free(w);
		return rc;
	}
	*out = w;
	return 0;
}

static int usable_any(fvm_writer *w)
{
	if (!w)
		return fvm_err(FVM_EINVAL, "no writer");
	if (w->failed)
		return fvm_err(FVM_ESTATE, "%s: writer failed earlier", w->name);
	if (w->finished)
		return fvm_err(FVM_ESTATE, "%s: writer already finished", w->name);
	return 0;
}

/* Usable, and no device-state section open (only its calls are allowed then). */
static int usable(fvm_writer *w)
{
	int rc = usable_any(w);

	if (!rc && w->dv_open)
		return fvm_err(FVM_ESTATE, "%s: device-state section %s is open: end it first",
			       w->name, w->dv_name);
	return rc;
}

static int check_name(const char *what, const char *name, size_t min)
{
	size_t len;

	if (!name)
		return fvm_err(FVM_EINVAL, "%s: NULL name", what);
	len = strlen(name);
	if (len < min || len > FVM_MAX_NAME)
		return fvm_err(FVM_EINVAL, "%s \"%.40s\": name of %zu bytes, allowed %zu..255",
			       what, name, len, min);
	return 0;
}

/* ------------------------------------------------------------ segments */

/* ------------------------------------------------------------ frames */

struct cjob {
	fvm_writer *w;
	uint64_t nframes;
	uint64_t slot;          /* bytes per frame in cbuf */
	atomic_uint_fast64_t next;
	atomic_int failed;
};

/* Plain bytes [off, off + n) of the pending segment: in place, or gathered. */
static const unsigned char *frame_plain(fvm_writer *w, uint64_t off, uint64_t n,
					unsigned char *gather)
{
	size_t lo = 0, hi = w->niov;
	unsigned char *p = gather;

	while (hi - lo > 1) { /* the iovec holding off */
		size_t mid = lo + (hi - lo) / 2;

		if (w->iov_at[mid] <= off)
			lo = mid;
		else
			hi = mid;
	}
	if (off + n <= w->iov_at[lo] + w->iov[lo].iov_len)
		return (const unsigned char *)w->iov[lo].iov_base + (off - w->iov_at[lo]);
	for (size_t i = lo; n; i++) {
		uint64_t skip = off - w->iov_at[i];
		uint64_t k = w->iov[i].iov_len - skip < n ? w->iov[i].iov_len - skip : n;

		memcpy(p, (const unsigned char *)w->iov[i].iov_base + skip, k);
		p += k;
		off += k;
		n -= k;
	}
	return gather;
}

/* One compressing thread: frames taken in turn until none is left. */
static void compress_frames(void *ctx, unsigned t)
{
	struct cjob *j = ctx;
	fvm_writer *w = j->w;

	for (;;) {
		uint64_t k = atomic_fetch_add(&j->next, 1);
		struct fvm_frame *f;
		const unsigned char *plain;
		unsigned char *slot;
		int64_t z;

		if (k >= j->nframes || atomic_load(&j->failed))
			return;
		f = &w->fr[k];
		slot = w->cbuf + k * j->slot;
		plain = frame_plain(w, k << w->fshift, f->plain_len,
				    w->gather + ((size_t)t << w->fshift));
		/* the CRC while the bytes are hot, then the codec reads them again */
		f->crc_plain = fvm_crc32c(0, plain, f->plain_len);
		z = fvm_codec_compress(&w->cctx[t], slot, j->slot, plain, f->plain_len);
		if (z < 0) {
			atomic_store(&j->failed, 1);
			return;
		}
		if (z == 0) { /* does not shrink: stored (4.5) */
			memcpy(slot, plain, f->plain_len);
			f->stored_len = f->plain_len;
			f->crc_stored = f->crc_plain;
		} else {
			f->stored_len = (uint32_t)z;
			f->crc_stored = fvm_crc32c(0, slot, (size_t)z);
		}
	}
}

/*
 * The pending segment as a COMPRESSED one (FORMAT.md 4.5): its plain
 * payload (the iovecs) cut into frames, compressed on nthreads threads into
 * cbuf, then the record with the frame table, the frames in their layout,
 * and its extents and frames for the index.
 */
static int cseg_write(fvm_writer *w, uint64_t rec_off)
{
	uint64_t plain = w->pay_len, n = fvm_frame_count(plain, w->fshift);
	uint64_t F = 1ull << w->fshift, slot = fvm_codec_bound(w->o.codec, F);
	uint64_t body_len = fvm_cseg_body_len(w->nents, n), pay_off;
	struct fvm_seghdr sh = { w->nents, 0 };
	struct cjob j = { w, n, slot, 0, 0 };
	size_t niov = 0;
	uint8_t *body;
	int rc;

	if (fvm_grow((void **)&w->fr, &w->fr_cap, n, sizeof(*w->fr)) ||
	    fvm_grow((void **)&w->ciov, &w->ciov_cap, 2 * n, sizeof(*w->ciov)) ||
	    fvm_grow((void **)&w->iov_at, &w->iov_at_cap, w->niov + 1, sizeof(*w->iov_at)) ||
	    fvm_grow((void **)&w->frames, &w->frames_cap, w->nframes + n, sizeof(*w->frames)) ||
	    fvm_grow((void **)&w->cbuf, &w->cbuf_cap, n * slot, 1))
		return fail(w, fvm_err(FVM_ENOMEM, "%s: %" PRIu64 " frames", w->name, n));
	for (size_t i = 0, at = 0; i < w->niov; at += w->iov[i].iov_len, i++)
		w->iov_at[i] = at;
	for (uint64_t k = 0; k < n; k++)
		w->fr[k] = (struct fvm_frame){ .plain_offset = w->plain_base + (k << w->fshift),
					       .plain_len = (uint32_t)(plain - (k << w->fshift) < F
							? plain - (k << w->fshift) : F) };
	if (n)
		fvm_parallel(w->nthreads < n ? w->nthreads : (unsigned)n, compress_frames, &j,
			     NULL);
	if (atomic_load(&j.failed))
		return fail(w, fvm_err(FVM_ENOMEM, "%s: %s compression context", w->name,
				       fvm_codec_name(w->o.codec)));
	pay_off = fvm_seg_payload_offset(rec_off, body_len);
	sh.payload_len = n ? fvm_cseg_layout(w->fr, n, pay_off) : 0;

	body = malloc(body_len);
	if (!body)
		return fail(w, fvm_err(FVM_ENOMEM, "%s: segment of %u entries", w->name, w->nents));
	fvm_seghdr_encode(body, &sh);
	for (uint32_t i = 0; i < w->nents; i++)
		fvm_entry_encode(body + FVM_SEGHDR_SIZE + (size_t)i * FVM_ENTRY_SIZE, &w->ents[i]);
	for (uint64_t k = 0; k < n; k++)
		fvm_frame_desc_encode(body + fvm_cseg_body_len(w->nents, k), &w->fr[k]);
	rc = out_record(w, FVM_REC_SEGM, body, body_len, NULL, 0);
	free(body);
	if (rc || !n)
		return rc;
	/* the frames, each after the zeros that align it (stored ones), one writev */
	for (uint64_t k = 0, pos = pay_off; k < n; k++) {
		if (w->fr[k].file_offset > pos)
			w->ciov[niov++] = (struct iovec){ (void *)zeros,
							  w->fr[k].file_offset - pos };
		w->ciov[niov++] = (struct iovec){ w->cbuf + k * slot, w->fr[k].stored_len };
		pos = w->fr[k].file_offset + w->fr[k].stored_len;
	}
	rc = out_pad(w, FVM_PAYLOAD_ALIGN);
	if (!rc)
		rc = out_writev(w, w->ciov, niov);
	if (!rc)
		rc = out_pad(w, FVM_PAYLOAD_ALIGN);
	if (rc)
		return rc;
	memcpy(w->frames + w->nframes, w->fr, n * sizeof(*w->fr));
	w->nframes += n;
	write_back(w, rec_off, w->off - rec_off);
	return 0;
}

/*
 * Hand the pending segment (record body a + b, payload w->iov) to the
 * write thread: its record header, body and padding are copied into the
 * job's head, its payload iovecs (the caller's memory) into the job's list.
 */
static int seg_submit(fvm_writer *w, const uint8_t *a, uint64_t alen, const void *b,
		      uint64_t blen)
{
	uint64_t rec_end = w->off + FVM_RECHDR_SIZE + alen + blen;
	uint64_t head_len = fvm_align(fvm_align(rec_end, 8), FVM_PAYLOAD_ALIGN) - w->off;
	int rc = job_wait(w);

	if (rc)
		return rc;
	if (fvm_grow((void **)&w->jhead, &w->jhead_cap, head_len, 1) ||
	    fvm_grow((void **)&w->jiov, &w->jiov_cap, w->niov + 1, sizeof(*w->jiov)))
		return fail(w, fvm_err(FVM_ENOMEM, "%s: write job", w->name));
	fvm_rechdr_encode2(w->jhead, FVM_REC_SEGM, a, alen, b, blen);
	memcpy(w->jhead + FVM_RECHDR_SIZE, a, alen);
	if (blen)
		memcpy(w->jhead + FVM_RECHDR_SIZE + alen, b, blen);
	memset(w->jhead + FVM_RECHDR_SIZE + alen + blen, 0,
	       head_len - (FVM_RECHDR_SIZE + alen + blen));
	w->jiov[0] = (struct iovec){ w->jhead, head_len };
	memcpy(w->jiov + 1, w->iov, w->niov * sizeof(*w->iov));
	w->jniov = w->niov + 1;
	pthread_mutex_lock(&w->wmu);
	w->joff = w->off;
	w->job_pending = 1;
	pthread_cond_broadcast(&w->wcv);
	pthread_mutex_unlock(&w->wmu);
	w->off += head_len + w->pay_len;
	return 0;
}

/* The check data after a segment's entries: chunk CRCs or chunk tags. */
static const void *chk_data(const fvm_writer *w)
{
	return w->keys ? (const void *)w->tags : (const void *)w->crcs;
}

/*
 * AUTHENTICATED: the tag of every chunk of the pending segment, keyed by
 * the file offset its bytes will have (FORMAT.md 4.6), which the body
 * length gives: made here, once the segment is complete.
 */
static int seg_tags(fvm_writer *w, uint64_t rec_off)
{
	uint64_t n = w->pay_len / FVM_CHUNK, at = 0;
	uint64_t off = fvm_seg_payload_offset(rec_off, fvm_seg_body_len(w->nents, w->pay_len,
									 w->chk));

	if (fvm_grow((void **)&w->tags, &w->tags_cap, (size_t)n * FVM_TAG_LEN + 1, 1))
		return fail(w, fvm_err(FVM_ENOMEM, "%s: chunk tags", w->name));
	for (size_t i = 0; i < w->niov; i++) {
		uint64_t k = w->iov[i].iov_len / FVM_CHUNK; /* pages are whole chunks */

		if (fvm_auth_chunk_tags(w->keys, off + at * FVM_CHUNK, w->iov[i].iov_base,
					(size_t)k, w->tags + at * FVM_TAG_LEN))
			return fail(w, FVM_ENOMEM);
		at += k;
	}
	return 0;
}

static int seg_flush(fvm_writer *w)
{
	uint8_t head[FVM_SEGHDR_SIZE];
	struct fvm_seghdr sh = { w->nents, w->pay_len };
	uint64_t rec_off = w->off;
	uint8_t *body;
	int rc;

	if (!w->nents)
		return 0;
	if (w->o.codec) {
		rc = cseg_write(w, rec_off);
		if (!rc && fvm_grow((void **)&w->ext.v, &w->ext.cap, w->ext.n + w->nents,
				    sizeof(*w->ext.v)))
			rc = fvm_err(FVM_ENOMEM, "%s: index", w->name);
		if (!rc) {
			struct fvm_seghdr csh = { w->nents, 0 };

			fvm_cseg_extents(&csh, w->ents, w->desc, w->plain_base, w->ext.v + w->ext.n);
			w->ext.n += w->nents;
			w->plain_base += w->pay_len;
		}
		goto done;
	}
	body = malloc(FVM_SEGHDR_SIZE + (size_t)w->nents * FVM_ENTRY_SIZE);
	if (!body)
		return fail(w, fvm_err(FVM_ENOMEM, "%s: segment of %u entries", w->name, w->nents));
	if (w->keys && (rc = seg_tags(w, rec_off))) {
		free(body);
		return rc;
	}
	fvm_seghdr_encode(head, &sh);
	memcpy(body, head, sizeof(head));
	for (uint32_t i = 0; i < w->nents; i++)
		fvm_entry_encode(body + FVM_SEGHDR_SIZE + (size_t)i * FVM_ENTRY_SIZE, &w->ents[i]);

	if (w->pipeline && w->pay_len) {
		rc = seg_submit(w, body, FVM_SEGHDR_SIZE + (uint64_t)w->nents * FVM_ENTRY_SIZE,
				chk_data(w), w->pay_len / FVM_CHUNK * w->chk);
		free(body);
		if (rc)
			return rc;
		goto index;
	}
	rc = out_record(w, FVM_REC_SEGM, body, FVM_SEGHDR_SIZE + (uint64_t)w->nents * FVM_ENTRY_SIZE,
			chk_data(w), w->pay_len / FVM_CHUNK * w->chk);
	free(body);
	if (rc)
		return rc;
	if (w->pay_len) {
		rc = out_pad(w, FVM_PAYLOAD_ALIGN);
		if (!rc)
			rc = out_writev(w, w->iov, w->niov);
		if (rc)
			return rc;
		write_back(w, rec_off, w->off - rec_off);
	}
index:
	/* the entries, with where their bytes went, join the index */
	if (fvm_grow((void **)&w->ext.v, &w->ext.cap, w->ext.n + w->nents, sizeof(*w->ext.v)))
		rc = fvm_err(FVM_ENOMEM, "%s: index", w->name);
	if (!rc) {
		fvm_seg_extents(rec_off, &sh, w->ents, w->chk, w->desc, w->ext.v + w->ext.n);
		w->ext.n += w->nents;
	}
done:
	w->nents = 0;
	w->niov = 0;
	w->pay_len = 0;
	w->sbuf_len = 0;
	return rc ? fail(w, rc) : 0;
}

/* Segment payload cap: at least one page of the largest page size used. */
static uint64_t seg_cap(const fvm_writer *w, uint64_t page)
{
	return w->o.segment_bytes > page ? w->o.segment_bytes : page;
}

/*
 * Add count pages of one kind to the pending segment, extending the last
 * entry when it continues it. Data comes from src (count pages); with copy,
 * it is copied into the segment buffer first.
 */
static int seg_add(fvm_writer *w, uint32_t b, int data, uint64_t first, uint64_t count,
		   const unsigned char *src, int copy)
{
	uint64_t page = 1ull << w->blocks[b].page_shift;

	while (count) {
		struct fvm_entry *last = w->nents ? &w->ents[w->nents - 1] : NULL;
		uint64_t n = count, room;
		int extend = last && last->block_id == b && !!(last->flags & FVM_RUN_FLAG_DATA) == data &&
			     last->first_page + last->page_count == first;

		if (data) {
			if (w->o.max_run_bytes >= page) {
				uint64_t cap = w->o.max_run_bytes / page; /* pages per run */

				if (extend && last->page_count >= cap)
					extend = 0;
				if (n > cap - (extend ? last->page_count : 0))
					n = cap - (extend ? last->page_count : 0);
			}
			room = (seg_cap(w, page) - w->pay_len) / page;
			if (room == 0 || (!extend && w->nents == FVM_MAX_ENTRIES)) {
				int rc = seg_flush(w);
				if (rc)
					return rc;
				continue;
			}
			if (n > room)
				n = room;
			if (copy && w->sbuf_len + n * page > w->sbuf_cap) {
				/* never move the buffer under pending iovecs: flush first */
				uint64_t cap = seg_cap(w, page);
				unsigned char *nb;
				int rc = w->sbuf_len ? seg_flush(w) : 0;

				if (!rc)
					rc = job_wait(w); /* it may be writing from the buffer */
				if (rc)
					return rc;
				nb = realloc(w->sbuf, cap);
				if (!nb)
					return fail(w, fvm_err(FVM_ENOMEM, "%s: segment buffer of %"
							       PRIu64 " bytes", w->name, cap));
				w->sbuf = nb;
				w->sbuf_cap = cap;
				continue;
			}
		} else if (!extend && w->nents == FVM_MAX_ENTRIES) {
			int rc = seg_flush(w);
			if (rc)
				return rc;
			continue;
		}
		if (!extend) {
			if (fvm_grow((void **)&w->ents, &w->ents_cap, w->nents + 1, sizeof(*w->ents)))
				return fail(w, fvm_err(FVM_ENOMEM, "%s: segment entries", w->name));
			w->ents[w->nents++] = (struct fvm_entry){ b, data ? FVM_RUN_FLAG_DATA : 0,
								  first, 0 };
			last = &w->ents[w->nents - 1];
		}
		last->page_count += n;
		if (data) {
			uint64_t bytes = n * page;
			const unsigned char *p = src;

			if (copy) {
				/* a job in flight may still be writing the buffer */
				if (w->sbuf_len == 0) {
					int rc = job_wait(w);

					if (rc)
						return rc;
				}
				p = w->sbuf + w->sbuf_len;
				/* with CRCs, the copy is made below, fused with the CRC */
				if (!w->with_crc)
					memcpy((void *)p, src, bytes);
				w->sbuf_len += bytes;
			}
			if (w->niov && (const unsigned char *)w->iov[w->niov - 1].iov_base +
					       w->iov[w->niov - 1].iov_len == p) {
				w->iov[w->niov - 1].iov_len += bytes;
			} else {
				if (fvm_grow((void **)&w->iov, &w->iov_cap, w->niov + 1, sizeof(*w->iov)))
					return fail(w, fvm_err(FVM_ENOMEM, "%s: iovecs", w->name));
				w->iov[w->niov++] = (struct iovec){ (void *)p, bytes };
			}
			if (w->with_crc) {
				size_t have = w->pay_len / FVM_CHUNK;
				if (fvm_grow((void **)&w->crcs, &w->crc_cap, have + bytes / FVM_CHUNK,
					 sizeof(*w->crcs)))
					return fail(w, fvm_err(FVM_ENOMEM, "%s: chunk crcs", w->name));
				/*
				 * CRC while the page is hot in cache: about as costly as the
				 * scan. put_pages copies and CRCs each chunk in one pass
				 * (fvm_crc32c_copy reads src once; a memcpy of the whole
				 * batch followed by the CRCs read it twice, the second
				 * time from farther away in the cache).
				 */
				for (uint64_t k = 0; k < bytes; k += FVM_CHUNK)
					w->crcs[have++] = copy ? fvm_crc32c_copy(0, (void *)(p + k), src + k,
										 FVM_CHUNK)
							       : fvm_crc32c(0, p + k, FVM_CHUNK);
			}
			w->pay_len += bytes;
			src += bytes;
		}
		first += n;
		count -= n;
	}
	return 0;
}

/* ------------------------------------------------------------ public */

int fvm_writer_add_meta(fvm_writer *w, const char *key, const char *value)
{
	struct fvm_meta_rec m;
	uint8_t *body;
	size_t len;
	int rc;

	fvm_api_begin();
	if ((rc = usable(w)) || (rc = check_name("metadata key", key, 1)))
		return rc;
	if (!value || strlen(value) > FVM_MAX_BODY_META - 8 - FVM_MAX_NAME)
		return fvm_err(FVM_EINVAL, "metadata %s: value missing or too long", key);
	if ((rc = seg_flush(w)))
		return rc;
	m = (struct fvm_meta_rec){ key, strlen(key), value, strlen(value) };
	len = fvm_meta_size(m.key_len, m.value_len);
	body = malloc(len);
	if (!body)
		return fvm_err(FVM_ENOMEM, "metadata %s", key);
	fvm_meta_encode(body, &m);
	rc = push_u64(&w->meta, w->off);
	if (!rc)
		rc = out_record(w, FVM_REC_META, body, len, NULL, 0);
	free(body);
	return rc;
}

/*
 * Block names, for the duplicate check: a hash table, so 65536 blocks
 * (FORMAT.md R26) with long common prefixes take no quadratic time.
 */
static uint32_t name_slot(const fvm_writer *w, const char *name)
{
	uint32_t h = 2166136261u;

	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 16777619u;
	for (h &= w->hash_cap - 1;; h = (h + 1) & (w->hash_cap - 1))
		if (!w->name_hash[h] || !strcmp(w->blocks[w->name_hash[h] - 1].name, name))
			return h;
}

static int name_seen(const fvm_writer *w, const char *name)
{
	return w->hash_cap && w->name_hash[name_slot(w, name)];
}

/* Room for one more name (the table is rebuilt at twice the size). */
static int name_reserve(fvm_writer *w)
{
	uint32_t cap = w->hash_cap ? w->hash_cap : 64;
	uint32_t *old = w->name_hash;

	if (2 * (w->nblocks + 1) < w->hash_cap)
		return 0;
	while (2 * (w->nblocks + 1) >= cap)
		cap *= 2;
	w->name_hash = calloc(cap, sizeof(*w->name_hash));
	if (!w->name_hash) {
		w->name_hash = old;
		return fvm_err(FVM_ENOMEM, "%s: block names", w->name);
	}
	w->hash_cap = cap;
	for (uint32_t i = 0; i < w->nblocks; i++)
		w->name_hash[name_slot(w, w->blocks[i].name)] = i + 1;
	free(old);
	return 0;
}

int fvm_writer_add_block(fvm_writer *w, const char *name, uint64_t length,
			 uint64_t page_size, uint32_t *block_id)
{
	struct fvm_block_rec br = { 0 };
	uint8_t body[17 + FVM_MAX_NAME];
	struct wblock *nb;
	struct fvm_blockdesc *nd;
	int rc;

	fvm_api_begin();
	if ((rc = usable(w)) || (rc = check_name("block", name, 1)))
		return rc;
	if (page_size < 4096 || page_size > (1u << 30) || (page_size & (page_size - 1)))
		return fvm_err(FVM_EINVAL, "block %s: page size %" PRIu64 " is not a power of "
			       "two from 4 KiB to 1 GiB", name, page_size);
	if (!length || length % page_size || length > FVM_MAX_BLOCK_LEN)
		return fvm_err(FVM_EINVAL, "block %s: length %" PRIu64 " is not a non-zero "
			       "multiple of the page size %" PRIu64, name, length, page_size);
	if (w->nblocks == FVM_MAX_BLOCKS)
		return fvm_err(FVM_EINVAL, "block %s: more than 65536 blocks", name);
	if (name_seen(w, name))
		return fvm_err(FVM_EINVAL, "block %s declared twice", name);
	if ((rc = seg_flush(w)))
		return rc;
	if ((rc = name_reserve(w)))
		return rc;
	nb = realloc(w->blocks, (w->nblocks + 1) * sizeof(*nb));
	if (nb)
		w->blocks = nb;
	nd = realloc(w->desc, (w->nblocks + 1) * sizeof(*nd));
	if (nd)
		w->desc = nd;
	if (!nb || !nd)
		return fvm_err(FVM_ENOMEM, "block %s", name);
	br.id = w->nblocks;
	br.page_shift = (uint32_t)__builtin_ctzll(page_size);
	br.length = length;
	br.name_len = (uint8_t)strlen(name);
	memcpy(br.name, name, br.name_len);
	nb = &w->blocks[w->nblocks];
	memcpy(nb->name, br.name, br.name_len + 1);
	nb->length = length;
	nb->page_shift = br.page_shift;
	nb->rec_offset = w->off;
	w->desc[w->nblocks] = (struct fvm_blockdesc){ length >> br.page_shift, br.page_shift };
	w->progress_total += length;
	rc = out_record(w, FVM_REC_BLCK, body, fvm_block_encode(body, &br), NULL, 0);
	if (rc)
		return rc;
	if (block_id)
		*block_id = w->nblocks;
	w->name_hash[name_slot(w, name)] = w->nblocks + 1;
	w->nblocks++;
	return 0;
}

static int check_block(fvm_writer *w, uint32_t b, uint64_t first, uint64_t count)
{
	if (b >= w->nblocks)
		return fvm_err(FVM_EINVAL, "%s: block id %u not declared", w->name, b);
	if (first > w->desc[b].pages || count > w->desc[b].pages - first)
		return fvm_err(FVM_EINVAL, "%s: pages %" PRIu64 "+%" PRIu64 " outside block %s "
			       "of %" PRIu64 " pages", w->name, first, count, w->blocks[b].name,
			       w->desc[b].pages);
	return 0;
}

static int report(fvm_writer *w, uint64_t bytes)
{
	int rc;

	w->progress_done += bytes;
	if (!w->o.progress)
		return 0;
	fvm_api_begin();
	rc = w->o.progress(w->o.progress_ctx, w->progress_done, w->progress_total);
	return rc ? fail(w, fvm_err_callback(rc, "%s: canceled by the progress callback",
					     w->name)) : 0;
}

/*
 * Split count pages at src into zero and data runs and add them. write_block
 * passes copy = 0: runs are written from src itself, so src must stay valid
 * until the segment is flushed (write_block flushes before returning).
 */
static int add_pages(fvm_writer *w, uint32_t b, uint64_t first, uint64_t count,
		     const unsigned char *src, int copy)
{
	size_t page = (size_t)1 << w->blocks[b].page_shift;

	while (count) {
		int zero = fvm_is_zero(src, page);
		/* bound each scan so progress and segment flushes stay regular */
		size_t span = count > (1u << 16) ? (1u << 16) : (size_t)count;
		size_t n = 1 + fvm_run_length(src + page, span - 1, page, zero);
		int rc = seg_add(w, b, !zero, first, n, src, copy);

		if (rc)
			return rc;
		first += n;
		count -= n;
		src += n * page;
	}
	return 0;
}

/* Pages first..first+pages of a block from host memory at p, no copy. */
/*
 * Pipelined writes for write_mem, where the segments' payload is the
 * caller's memory: on a seekable output, uncompressed (the frame path has
 * its own threads), once the write thread runs.
 */
static void pipeline_on(fvm_writer *w)
{
	if (!w->seekable || w->o.codec)
		return;
	if (!w->wt_started) {
		pthread_mutex_init(&w->wmu, NULL);
		pthread_cond_init(&w->wcv, NULL);
		if (pthread_create(&w->wt, NULL, write_thread, w)) {
			pthread_mutex_destroy(&w->wmu);
			pthread_cond_destroy(&w->wcv);
			return; /* synchronous writes, as before */
		}
		w->wt_started = 1;
	}
	w->pipeline = 1;
}

static int write_mem(fvm_writer *w, uint32_t block_id, uint64_t first0, uint64_t pages,
		     const unsigned char *p)
{
	uint64_t step, page;
	int rc = 0, e;

	page = 1ull << w->blocks[block_id].page_shift;
	/*
	 * Rounds only pace the progress callback: a run that crosses a round
	 * continues in the same entry, and segments are cut where their
	 * payload is full, not at fixed places in the block.
	 */
	step = seg_cap(w, page) / page;
	pipeline_on(w);
	for (uint64_t first = 0; first < pages; first += step) {
		uint64_t n = pages - first < step ? pages - first : step;

		rc = add_pages(w, block_id, first0 + first, n, p + first * page, 0);
		if (!rc)
			rc = report(w, n * page);
		if (rc)
			break;
	}
	/* the pending runs point into mem: written before returning, unless
	 * the caller keeps it as it is until finish */
	if (w->o.flags & FVM_WRITE_STABLE_MEM)
		return rc;
	if (!rc)
		rc = seg_flush(w);
	w->pipeline = 0;
	e = job_wait(w);
	return rc ? rc : e;
}

int fvm_writer_write_block(fvm_writer *w, uint32_t block_id, const void *mem)
{
	int rc;

	fvm_api_begin();
	if ((rc = usable(w)) || (rc = check_block(w, block_id, 0, 0)))
		return rc;
	if (!mem)
		return fvm_err(FVM_EINVAL, "%s: block %s: NULL memory", w->name,
			       w->blocks[block_id].name);
	return fvm_api_end(write_mem(w, block_id, 0, w->desc[block_id].pages, mem));
}

int fvm_writer_write_pages(fvm_writer *w, uint32_t block_id, uint64_t first_page,
			   uint64_t count, const void *mem)
{
	int rc;

	fvm_api_begin();
	if ((rc = usable(w)) || (rc = check_block(w, block_id, first_page, count)))
		return rc;
	if (!mem && count)
		return fvm_err(FVM_EINVAL, "%s: block %s: NULL memory", w->name,
			       w->blocks[block_id].name);
	return fvm_api_end(count ? write_mem(w, block_id, first_page, count, mem) : 0);
}

int fvm_writer_put_pages(fvm_writer *w, uint32_t block_id, uint64_t first_page,
			 uint64_t count, const void *data)
{
	int rc;

	fvm_api_begin();
	if ((rc = usable(w)) || (rc = check_block(w, block_id, first_page, count)))
		return rc;
	if (!data && count)
		return fvm_err(FVM_EINVAL, "%s: put_pages with NULL data", w->name);
	return add_pages(w, block_id, first_page, count, data, 1);
}

int fvm_writer_put_zero(fvm_writer *w, uint32_t block_id, uint64_t first_page,
			uint64_t count)
{
	int rc;

	fvm_api_begin();
	if ((rc = usable(w)) || (rc = check_block(w, block_id, first_page, count)))
		return rc;
	return count ? seg_add(w, block_id, 0, first_page, count, NULL, 0) : 0;
}

/* One DEVS record: head, then data (one part of a section). */
static int devs_record(fvm_writer *w, const char *name, const void *data, size_t len,
		       uint8_t flags)
{
	uint8_t head[FVM_DEVS_HEAD];
	size_t hlen = fvm_devs_encode_head(head, name, strlen(name), flags);
	int rc = push_u64(&w->devs, w->off);

	return rc ? rc : out_record(w, FVM_REC_DEVS, head, hlen, data, len);
}

int fvm_writer_add_devstate(fvm_writer *w, const char *name, const void *data, size_t len)
{
	int rc;

	fvm_api_begin();
	if ((rc = usable(w)) || (rc = check_name("device-state section", name, 0)))
		return rc;
	if (!data && len)
		return fvm_err(FVM_EINVAL, "device-state section %s: NULL data", name);
	/*
	 * A section that fits one record is one record, as 0.1 wrote it (and
	 * as every reader of format 1.0 reads it); a larger one (over 1 GiB)
	 * goes in parts.
	 */
	if (len <= FVM_MAX_BODY_DEVS - FVM_DEVS_HEAD) {
		if ((rc = seg_flush(w)))
			return rc;
		return fvm_api_end(devs_record(w, name, data, len, 0));
	}
	rc = fvm_writer_devstate_begin(w, name);
	if (!rc)
		rc = fvm_writer_devstate_write(w, data, len);
	if (!rc)
		rc = fvm_writer_devstate_end(w);
	return rc;
}

int fvm_writer_devstate_begin(fvm_writer *w, const char *name)
{
	int rc;

	fvm_api_begin();
	if ((rc = usable(w)) || (rc = check_name("device-state section", name, 0)))
		return rc;
	if (!w->dv_part)
		w->dv_part = DEVS_PART;
	if (!w->dv_buf && !(w->dv_buf = malloc(w->dv_part)))
		return fvm_err(FVM_ENOMEM, "%s: device-state buffer", w->name);
	if ((rc = seg_flush(w)))
		return rc;
	strcpy(w->dv_name, name);
	w->dv_len = 0;
	w->dv_open = 1;
	return 0;
}

int fvm_writer_devstate_write(fvm_writer *w, const void *data, size_t len)
{
	const unsigned char *p = data;
	int rc;

	fvm_api_begin();
	if ((rc = usable_any(w)))
		return rc;
	if (!w->dv_open)
		return fvm_err(FVM_ESTATE, "%s: no device-state section is open "
			       "(fvm_writer_devstate_begin)", w->name);
	if (!data && len)
		return fvm_err(FVM_EINVAL, "%s: device-state section %s: NULL data", w->name,
			       w->dv_name);
	/*
	 * A full buffer is written as a part that continues once more bytes
	 * come; whole parts beyond it go straight from the caller's memory.
	 * The last bytes always stay buffered, so end() writes the final part.
	 */
	while (len) {
		size_t k;

		if (w->dv_len == w->dv_part) {
			rc = devs_record(w, w->dv_name, w->dv_buf, w->dv_part, FVM_DEVS_CONTINUES);
			if (rc)
				return fail(w, rc);
			w->dv_len = 0;
		}
		if (!w->dv_len && len > w->dv_part) {
			rc = devs_record(w, w->dv_name, p, w->dv_part, FVM_DEVS_CONTINUES);
			if (rc)
				return fail(w, rc);
			p += w->dv_part;
			len -= w->dv_part;
			continue;
		}
		k = w->dv_part - w->dv_len < len ? w->dv_part - w->dv_len : len;
		memcpy(w->dv_buf + w->dv_len, p, k);
		w->dv_len += k;
		p += k;
		len -= k;
	}
	return 0;
}

int fvm_writer_set_devs_part(fvm_writer *w, size_t bytes)
{
	if (!w || !bytes || bytes > DEVS_PART || w->dv_buf)
		return fvm_err(FVM_EINVAL, "fvm_writer_set_devs_part: %zu bytes", bytes);
	w->dv_part = bytes;
	return 0;
}

int fvm_writer_devstate_end(fvm_writer *w)
{
	int rc;

	fvm_api_begin();
	if ((rc = usable_any(w)))
		return rc;
	if (!w->dv_open)
		return fvm_err(FVM_ESTATE, "%s: no device-state section is open", w->name);
	w->dv_open = 0;
	rc = devs_record(w, w->dv_name, w->dv_buf, w->dv_len, 0);
	w->dv_len = 0;
	return rc ? fail(w, rc) : 0;
}

static int write_index(fvm_writer *w)
{
	struct fvm_indexhdr ih;
	uint8_t *body, *p, foot[FVM_FOOTER_SIZE];
	uint64_t len, index_off;
	struct fvm_footer f;
	int rewrites, rc;

	rc = fvm_extents_resolve(&w->ext, w->desc, &rewrites);
	if (rc)
		return fail(w, rc);
	ih = (struct fvm_indexhdr){ w->nblocks, w->meta.n, w->devs.n, w->ext.n,
				    !!w->o.codec, w->nframes, /* 5.1: the frame list */
				    !!w->keys }; /* 5.2 */
	len = fvm_index_body_len(&ih);
	body = malloc(len);
	if (!body)
		return fail(w, fvm_err(FVM_ENOMEM, "%s: index of %" PRIu64 " bytes", w->name, len));
	fvm_indexhdr_encode(body, &ih);
	p = body + FVM_INDEXHDR_SIZE;
	for (uint32_t i = 0; i < w->nblocks; i++, p += 8)
		fvm_st64(p, w->blocks[i].rec_offset);
	for (uint32_t i = 0; i < w->meta.n; i++, p += 8)
		fvm_st64(p, w->meta.v[i]);
	for (uint32_t i = 0; i < w->devs.n; i++, p += 8)
		fvm_st64(p, w->devs.v[i]);
	for (uint64_t i = 0; i < w->ext.n; i++, p += FVM_EXTENT_SIZE)
		fvm_extent_encode(p, &w->ext.v[i]);
	if (w->o.codec) {
		fvm_st64(p, w->nframes);
		p += 8;
		for (uint64_t k = 0; k < w->nframes; k++, p += FVM_FRAME_SIZE)
			fvm_frame_encode(p, &w->frames[k]);
	}
	if (w->keys) { /* 5.2: key id, DEVS tags, MAC (4.6) */
		struct fvm_auth_digest di;
		uint8_t db[FVM_DIGEST_LEN], dm[FVM_DIGEST_LEN], dd[FVM_DIGEST_LEN];

		fvm_st64(p, w->keys->key_id);
		p += 8;
		if (w->devs.n)
			memcpy(p, w->devs_tags, (size_t)w->devs.n * FVM_TAG_LEN);
		p += (size_t)w->devs.n * FVM_TAG_LEN;
		fvm_auth_digest_begin(&di);
		fvm_auth_digest_rec(&di, FVM_REC_INDX, len, body, (size_t)(len - FVM_MAC_LEN));
		rc = fvm_auth_digest_end(&di, dd);
		rc = fvm_auth_digest_end(&w->db, db) ? FVM_ENOMEM : rc;
		rc = fvm_auth_digest_end(&w->dm, dm) ? FVM_ENOMEM : rc;
		if (!rc)
			rc = fvm_auth_mac(w->keys, w->header, db, dm, dd, p);
		if (rc) {
			free(body);
			return fail(w, rc);
		}
	}
	index_off = w->off;
	rc = out_record(w, FVM_REC_INDX, body, len, NULL, 0);
	free(body);
	if (rc)
		return rc;
	f = (struct fvm_footer){ index_off, FVM_RECHDR_SIZE + len, w->off + FVM_FOOTER_SIZE };
	fvm_footer_encode(foot, &f);
	return out_write(w, foot, sizeof(foot));
}

static int sync_dir(const char *path)
{
	char *dir = strdup(path), *slash;
	int fd, rc = 0;

	if (!dir)
		return fvm_err(FVM_ENOMEM, "%s", path);
	slash = strrchr(dir, '/');
	if (slash)
		slash[slash == dir ? 1 : 0] = '\0';
	fd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0)
		rc = fvm_err_sys(errno, "%s: fsync of its directory", path);
	if (fd >= 0)
		close(fd);
	free(dir);
	return rc;
}

/*
 * Give the O_TMPFILE file a name beside the target (.NAME.XXXXXX, made
 * unique here), through /proc/self/fd as open(2) describes, else with
 * AT_EMPTY_PATH (which needs CAP_DAC_READ_SEARCH).
 */
static int link_unnamed(fvm_writer *w)
{
	char proc[64];
	uint64_t seed = temp_seed(w);

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", w->fd);
	for (int tries = 0; tries < 64; tries++) {
		temp_name(w, &seed);
		if (linkat(AT_FDCWD, proc, AT_FDCWD, w->tmp_path, AT_SYMLINK_FOLLOW) == 0 ||
		    (errno != EEXIST && linkat(w->fd, "", AT_FDCWD, w->tmp_path, AT_EMPTY_PATH) == 0)) {
			w->unnamed = 0; /* named now: removed like one on failure */
			return 0;
		}
		if (errno != EEXIST)
			return fvm_err_sys(errno, "%s: cannot name the new file %s (linkat)", w->path,
					   w->tmp_path);
	}
	return fvm_err_sys(EEXIST, "%s: cannot name the new file %s (linkat)", w->path, w->tmp_path);
}

int fvm_writer_flush(fvm_writer *w)
{
	int rc;

	fvm_api_begin();
	if ((rc = usable(w)) || (rc = seg_flush(w)) || (rc = job_wait(w)))
		return rc;
	return 0;
}

int fvm_writer_finish(fvm_writer *w)
{
	int rc, sync = 0;

	fvm_api_begin();
	if ((rc = usable(w)))
		return rc;
	rc = seg_flush(w);
	if (!rc)
		rc = write_index(w);
	if (rc)
		return fail(w, rc);
	if (w->tmp_path) {
		sync = !(w->o.flags & FVM_WRITE_NO_FSYNC);
		if (sync && fsync(w->fd) < 0)
			return fail(w, fvm_err_sys(errno, "%s: fsync", w->path));
		if (w->unnamed && (rc = link_unnamed(w)))
			return fail(w, rc);
		if (close(w->fd) < 0) {
			w->fd = -1;
			return fail(w, fvm_err_sys(errno, "%s: close", w->tmp_path));
		}
		w->fd = -1;
		if (rename(w->tmp_path, w->path) < 0)
			return fail(w, fvm_err_sys(errno, "%s: rename from %s", w->path, w->tmp_path));
		free(w->tmp_path);
		w->tmp_path = NULL;
		if (sync && (rc = sync_dir(w->path)))
			return fail(w, rc);
	} else if (w->own_fd) {
		int fd = w->fd;

		w->fd = -1;
		if (close(fd) < 0)
			return fail(w, fvm_err_sys(errno, "%s: close", w->name));
	}
	w->finished = 1;
	return 0;
}

void fvm_writer_free(fvm_writer *w)
{
	if (!w)
		return;
	job_stop(w);
	if (w->tmp_path) { /* unfinished: the target stays as it was */
		if (w->fd >= 0)
			close(w->fd); /* an unnamed file goes with its last fd */
		if (!w->unnamed)
			unlink(w->tmp_path);
		free(w->tmp_path);
	} else if (w->own_fd && w->fd >= 0) {
		close(w->fd);
	}
	free(w->path);
	free(w->blocks);
	free(w->name_hash);
	free(w->desc);
	free(w->meta.v);
	free(w->devs.v);
	fvm_extlist_free(&w->ext);
	free(w->ents);
	free(w->iov);
	free(w->crcs);
	free(w->tags);
	free(w->devs_tags);
	if (w->keys) {
		fvm_auth_digest_drop(&w->db); /* begun, and not ended when finish was not reached */
		fvm_auth_digest_drop(&w->dm);
		fvm_auth_wipe(w->keys);
		free(w->keys);
	}
	free(w->sbuf);
	free(w->dv_buf);
	for (unsigned i = 0; w->cctx && i < w->nthreads; i++)
		fvm_codec_ctx_free(&w->cctx[i]);
	free(w->cctx);
	free(w->gather);
	free(w->cbuf);
	free(w->fr);
	free(w->ciov);
	free(w->iov_at);
	free(w->frames);
	free(w->jiov);
	free(w->jhead);
	free(w);
}

unsigned fvm_writer_next_disk(fvm_writer *w)
{
	return w->disks++;
}
