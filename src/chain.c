/*-------------------------------------------------------------------------
 *
 * chain.c
 *		The publisher's state: what its last dump published, row by row.
 *
 * A dump that may write a delta needs to know, for every row it publishes,
 * whether the previous dump published the same row, and which rows that
 * dump published that this one no longer does.  The state file records,
 * per table, every published row's key, a hash of its values (cheap to
 * compute, without output functions: a row whose values hash the same is
 * not rendered again) and the hash of its COPY text (for the table's
 * digest, format.c).  It lies in the dump directory as
 * .sync-<system>-<database>.state, readable by the server's user only, and
 * is replaced, like every published file, by a rename once written whole.
 *
 * The state is trusted only if it is the state of the chain and sequence
 * number the current index names, and was written by a server of the same
 * major version and platform (the hash of values depends on both).
 * Anything else, and the next dump writes a full archive and starts the
 * record again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/hashfn.h"
#include "storage/fd.h"
#include "utils/memutils.h"

#include "chain.h"
#include "format.h"

#define STATE_MAGIC "SYNCSTA1"
#define STATE_END "SYNCEND1"

/* what the hash of values depends on: major version, Datum size, byte order */
#ifdef WORDS_BIGENDIAN
#define STATE_PLATFORM ((PG_VERSION_NUM / 100) * 100 + SIZEOF_DATUM * 10 + 1)
#else
#define STATE_PLATFORM ((PG_VERSION_NUM / 100) * 100 + SIZEOF_DATUM * 10)
#endif

/* size of the buffer rows are written through */
#define STATE_BUFFER (256 * 1024)

/* The file's header. */
typedef struct StateHeader
{
	char		magic[8];
	int32		platform;
	int32		ntables;
	char		chain[24];
	int64		seq;
} StateHeader;

/* The header of one table's rows in the file (its name follows, padded). */
typedef struct StateTableHeader
{
	int32		namelen;
	int32		padding;
	uint64		shape;
	int64		nrows;
	uint64		digest;
} StateTableHeader;

/* The end of the file. */
typedef struct StateTrailer
{
	uint64		registry;
	char		magic[8];
} StateTrailer;

struct SyncStateWriter
{
	char	   *tmppath;
	int			fd;
	off_t		offset;			/* bytes written (and buffered) */
	off_t		table_at;		/* where the current table's header is */
	char	   *buf;
	size_t		used;
};

/* Finalizer of a 64-bit key: spreads neighbouring keys over the slots. */
static inline uint64
MixKey(int64 key)
{
	uint64		h = (uint64) key;

	h ^= h >> 33;
	h *= UINT64CONST(0xff51afd7ed558ccd);
	h ^= h >> 33;
	h *= UINT64CONST(0xc4ceb9fe1a85ec53);
	h ^= h >> 33;
	return h;
}

/* A state that is not whole: its memory is given back, and NULL returned. */
static SyncState *
Distrust(SyncState *state, char *data)
{
	pfree(state->tables);
	pfree(state);
	pfree(data);
	return NULL;
}

/*
 * Read the state file at path, or NULL if there is none or it is not one
 * this server wrote whole (a state that cannot be trusted is not used: the
 * next dump is a full one).
 */
SyncState *
SyncStateRead(const char *path)
{
	int			fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	struct stat st;
	char	   *data;
	size_t		pos;
	StateHeader header;
	StateTrailer trailer;
	SyncState  *state;
	int			i;

	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) != 0 || st.st_size < (off_t) (sizeof(StateHeader) + sizeof(StateTrailer)) ||
		(uint64) st.st_size >= MaxAllocHugeSize)
	{
		CloseTransientFile(fd);
		return NULL;
	}
	data = palloc_extended(st.st_size, MCXT_ALLOC_HUGE);
	for (pos = 0; pos < (size_t) st.st_size;)
	{
		ssize_t		n = pg_pread(fd, data + pos, Min((size_t) st.st_size - pos, 1024 * 1024 * 1024), pos);

		if (n <= 0)
		{
			CloseTransientFile(fd);
			pfree(data);
			return NULL;
		}
		pos += n;
	}
	CloseTransientFile(fd);

	memcpy(&header, data, sizeof(header));
	memcpy(&trailer, data + st.st_size - sizeof(trailer), sizeof(trailer));
	if (memcmp(header.magic, STATE_MAGIC, 8) != 0 ||
		memcmp(trailer.magic, STATE_END, 8) != 0 ||
		header.platform != STATE_PLATFORM || header.ntables < 0 ||
		header.ntables > 100000 || header.chain[16] != '\0')
	{
		pfree(data);
		return NULL;
	}
	state = palloc0(sizeof(SyncState));
	memcpy(state->chain, header.chain, 17);
	state->seq = header.seq;
	state->registry = trailer.registry;
	state->ntables = header.ntables;
	state->tables = palloc0(sizeof(SyncStateTable) * (header.ntables + 1));
	pos = sizeof(header);
	for (i = 0; i < header.ntables; i++)
	{
		SyncStateTable *t = &state->tables[i];
		StateTableHeader th;
		size_t		end = st.st_size - sizeof(trailer);

		if (pos + sizeof(th) > end)
			return Distrust(state, data);
		memcpy(&th, data + pos, sizeof(th));
		pos += sizeof(th);
		if (th.namelen <= 0 || th.nrows < 0 ||
			pos + TYPEALIGN64(8, th.namelen) > end ||
			(uint64) th.nrows > (end - pos - TYPEALIGN64(8, th.namelen)) / sizeof(SyncStateRow))
			return Distrust(state, data);
		t->qualname = pnstrdup(data + pos, th.namelen);
		t->cxt = CurrentMemoryContext;
		pos += TYPEALIGN64(8, th.namelen);
		t->shape = th.shape;
		t->nrows = th.nrows;
		t->digest = th.digest;
		t->rows = (SyncStateRow *) (data + pos);
		pos += th.nrows * sizeof(SyncStateRow);
	}
	if (pos != st.st_size - sizeof(trailer))
		return Distrust(state, data);
	return state;
}

/*
 * The table qualname of state, or NULL; with index, ready for
 * SyncStateLookup (which builds a hash index of its rows when it needs one).
 */
SyncStateTable *
SyncStateFind(SyncState *state, const char *qualname, bool index)
{
	int			i;

	if (state == NULL)
		return NULL;
	for (i = 0; i < state->ntables; i++)
	{
		SyncStateTable *t = &state->tables[i];

		if (strcmp(t->qualname, qualname) != 0)
			continue;
		if (!index || t->seen != NULL)
			return t;
		t->cursor = 0;
		t->seen = palloc_extended(t->nrows + 1, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
		return t;
	}
	return NULL;
}

/*
 * Build the hash index of t's rows by key, at the first row met out of
 * order (a table whose rows come in the order they came last time needs
 * none).
 */
static void
BuildIndex(SyncStateTable *t)
{
	uint64		nslots = 16;
	int64		r;

	while (nslots < (uint64) t->nrows * 2)
		nslots <<= 1;
	/* (built while a row is read, in the row's context: not there) */
	t->slots = MemoryContextAllocExtended(t->cxt, nslots * sizeof(int32),
										  MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	t->mask = nslots - 1;
	for (r = 0; r < t->nrows; r++)
	{
		uint64		s = MixKey(t->rows[r].key) & t->mask;

		while (t->slots[s] != 0)
			s = (s + 1) & t->mask;
		t->slots[s] = (int32) (r + 1);
	}
}

/*
 * Position of the row with key in t, or -1.  Rows come in about the order
 * the previous dump met them (the table's physical order): the row after
 * the last one met is tried first, in memory order, before the hash index.
 */
int64
SyncStateLookup(SyncStateTable *t, int64 key)
{
	uint64		s;

	if (t->cursor < t->nrows && t->rows[t->cursor].key == key)
		return t->cursor++;
	if (t->slots == NULL)
		BuildIndex(t);
	s = MixKey(key) & t->mask;
	while (t->slots[s] != 0)
	{
		int64		r = t->slots[s] - 1;

		if (t->rows[r].key == key)
		{
			t->cursor = r + 1;
			return r;
		}
		s = (s + 1) & t->mask;
	}
	return -1;
}

/* Free what SyncStateFind and SyncStateLookup built for t. */
void
SyncStateRelease(SyncStateTable *t)
{
	if (t == NULL || t->seen == NULL)
		return;
	if (t->slots)
		pfree(t->slots);
	pfree(t->seen);
	t->slots = NULL;
	t->seen = NULL;
}

/* Write the buffered bytes. */
static void
FlushState(SyncStateWriter *w)
{
	errno = 0;
	if (w->used > 0 && write(w->fd, w->buf, w->used) != (ssize_t) w->used)
	{
		if (errno == 0)
			errno = ENOSPC;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write file \"%s\": %m", w->tmppath)));
	}
	w->used = 0;
}

/* Append len bytes to the file. */
static void
PutState(SyncStateWriter *w, const void *data, size_t len)
{
	if (w->used + len > STATE_BUFFER)
		FlushState(w);
	memcpy(w->buf + w->used, data, len);
	w->used += len;
	w->offset += len;
}

/*
 * Start writing a state of chain and seq, with ntables tables, into
 * tmppath (readable by the server's user only).
 */
SyncStateWriter *
SyncStateBegin(const char *tmppath, const char *chain, int64 seq, int ntables)
{
	SyncStateWriter *w = palloc0(sizeof(SyncStateWriter));
	StateHeader header;

	w->tmppath = pstrdup(tmppath);
	w->buf = palloc(STATE_BUFFER);
	w->fd = OpenTransientFilePerm(tmppath, O_RDWR | O_CREAT | O_TRUNC | PG_BINARY,
								  S_IRUSR | S_IWUSR);
	if (w->fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create file \"%s\": %m", tmppath)));
	memset(&header, 0, sizeof(header));
	memcpy(header.magic, STATE_MAGIC, 8);
	header.platform = STATE_PLATFORM;
	header.ntables = ntables;
	strlcpy(header.chain, chain, 17);
	header.seq = seq;
	PutState(w, &header, sizeof(header));
	return w;
}

/* Start the rows of a table. */
void
SyncStateBeginTable(SyncStateWriter *w, const char *qualname, uint64 shape)
{
	StateTableHeader th;
	static const char zeros[8] = {0};
	int			len = strlen(qualname);

	memset(&th, 0, sizeof(th));
	th.namelen = len;
	th.shape = shape;
	w->table_at = w->offset;
	PutState(w, &th, sizeof(th));
	PutState(w, qualname, len);
	PutState(w, zeros, TYPEALIGN(8, len) - len);
}

/* Record one published row. */
void
SyncStateAddRow(SyncStateWriter *w, const SyncStateRow *row)
{
	PutState(w, row, sizeof(SyncStateRow));
}

/* End the rows of a table: its header gets their count and digest. */
void
SyncStateEndTable(SyncStateWriter *w, int64 nrows, uint64 digest)
{
	StateTableHeader th;

	FlushState(w);
	if (pg_pread(w->fd, &th, sizeof(th), w->table_at) != sizeof(th))
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read file \"%s\": %m", w->tmppath)));
	th.nrows = nrows;
	th.digest = digest;
	if (pg_pwrite(w->fd, &th, sizeof(th), w->table_at) != sizeof(th))
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write file \"%s\": %m", w->tmppath)));
}

/* Finish the state (with the registry's digest) and put it in place at path. */
void
SyncStateFinish(SyncStateWriter *w, uint64 registry, const char *path)
{
	StateTrailer trailer;

	trailer.registry = registry;
	memcpy(trailer.magic, STATE_END, 8);
	PutState(w, &trailer, sizeof(trailer));
	FlushState(w);
	if (pg_fsync(w->fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not fsync file \"%s\": %m", w->tmppath)));
	if (CloseTransientFile(w->fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not close file \"%s\": %m", w->tmppath)));
	w->fd = -1;
	durable_rename(w->tmppath, path, ERROR);
	w->tmppath = NULL;
}

/*
 * Give up the state being written: remove the file.  After an error, its
 * descriptor is closed by the abort; without one (discard), here.
 */
void
SyncStateAbort(SyncStateWriter *w, bool discard)
{
	if (w == NULL || w->tmppath == NULL)
		return;
	if (discard && w->fd >= 0)
		(void) CloseTransientFile(w->fd);
	w->fd = -1;
	(void) unlink(w->tmppath);
	w->tmppath = NULL;
}

/*
 * Hash of the values of slot from column first on, as they are stored
 * (typlen and typbyval per column): equal values of a type stored alike
 * hash alike, without their output functions.  Only ever compared with
 * hashes this server computed (the state records its platform).
 */
uint64
SyncValueHash(TupleTableSlot *slot, int first, int16 *typlen, bool *typbyval)
{
	int			natts = slot->tts_tupleDescriptor->natts;
	uint64		h = UINT64CONST(0x2545F4914F6CDD1D);
	int			i;

	for (i = first; i < natts; i++)
	{
		Datum		d = slot->tts_values[i];
		uint64		part;

		if (slot->tts_isnull[i])
			part = UINT64CONST(0x9E3779B97F4A7C15);
		else if (typbyval[i])
			part = MixKey((int64) d);
		else if (typlen[i] > 0)
			part = SyncRowHash(DatumGetPointer(d), typlen[i]);
		else if (typlen[i] == -1)
		{
			struct varlena *v = PG_DETOAST_DATUM_PACKED(d);

			part = SyncRowHash(VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v));
		}
		else
			part = SyncRowHash(DatumGetCString(d), strlen(DatumGetCString(d)));
		h = ((h << 23) | (h >> 41)) ^ part;
		h *= UINT64CONST(0xC2B2AE3D27D4EB4F);
	}
	return h;
}

/* A new chain's name: 16 random hexadecimal digits. */
char *
SyncNewChainName(void)
{
	uint64		r;

	if (!pg_strong_random(&r, sizeof(r)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random chain name")));
	return psprintf("%016" INT64_MODIFIER "x", r);
}
