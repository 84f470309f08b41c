/*-------------------------------------------------------------------------
 *
 * chain.h
 *		The publisher's record of what its last dump published, row by row,
 *		from which the next dump computes its delta.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SYNC_CHAIN_H
#define SYNC_CHAIN_H

#include "postgres.h"

#include "executor/tuptable.h"

/* One published row, as the state records it. */
typedef struct SyncStateRow
{
	int64		key;
	uint64		value;			/* hash of its values (SyncValueHash) */
	uint64		text;			/* hash of its COPY text (SyncRowHash) */
} SyncStateRow;

/* One table of a state: its rows, and a hash index to find them by key. */
typedef struct SyncStateTable
{
	char	   *qualname;
	uint64		shape;			/* hash of its description (SyncShapeHash) */
	int64		nrows;
	uint64		digest;
	SyncStateRow *rows;			/* in the order they were published */
	int32	   *slots;			/* hash index: positions + 1, 0 = empty */
	uint64		mask;			/* slots - 1 */
	uint8	   *seen;			/* per row: met again by the running dump */
	int64		cursor;			/* the row after the last one met */
	MemoryContext cxt;			/* where the state was read, for the index */
} SyncStateTable;

/* What the last dump of this database into a directory published. */
typedef struct SyncState
{
	char		chain[17];
	int64		seq;
	uint64		registry;		/* digest of the registry's rows */
	int			ntables;
	SyncStateTable *tables;
} SyncState;

typedef struct SyncStateWriter SyncStateWriter;

extern SyncState *SyncStateRead(const char *path);
extern SyncStateTable *SyncStateFind(SyncState *state, const char *qualname,
									  bool index);
extern int64 SyncStateLookup(SyncStateTable *t, int64 key);
extern void SyncStateRelease(SyncStateTable *t);

extern SyncStateWriter *SyncStateBegin(const char *tmppath, const char *chain,
									   int64 seq, int ntables);
extern void SyncStateBeginTable(SyncStateWriter *w, const char *qualname,
								uint64 shape);
extern void SyncStateAddRow(SyncStateWriter *w, const SyncStateRow *row);
extern void SyncStateEndTable(SyncStateWriter *w, int64 nrows, uint64 digest);
extern void SyncStateFinish(SyncStateWriter *w, uint64 registry,
							const char *path);
extern void SyncStateAbort(SyncStateWriter *w, bool discard);

extern uint64 SyncValueHash(TupleTableSlot *slot, int first, int16 *typlen,
							bool *typbyval);
extern char *SyncNewChainName(void);

#endif							/* SYNC_CHAIN_H */
