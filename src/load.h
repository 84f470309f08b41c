/*-------------------------------------------------------------------------
 *
 * load.h
 *		Loading the tables of an archive into relations with COPY.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SYNC_LOAD_H
#define SYNC_LOAD_H

#include "postgres.h"

#include "nodes/pg_list.h"

#include "archive.h"

/*
 * Reads an archive's members in order, and each table's files (all of
 * them in a row) into a relation with COPY.
 */
typedef struct SyncLoader
{
	SyncArchiveReader *reader;
	const char *path;
	uint64		limit;			/* the most it unpacks to */
	int64		machine_id;		/* the publisher, for messages and progress */
	SyncRange	range;			/* its range here: every key must be in it */
	MemoryContext cxt;			/* outlives each COPY */

	/* the table being loaded */
	const char *dir;			/* its directory in the archive */
	const char *qualname;		/* its name, for messages and progress */

	/* the member the reader is on, when a COPY stopped at it */
	bool		pending;
	char	   *pending_name;
	uint64		bytes;			/* of the table so far */
} SyncLoader;

extern void SyncLoaderOpen(SyncLoader *loader, const char *path,
						   uint64 limit, int64 machine_id,
						   const SyncRange *range);
extern bool SyncLoaderNext(SyncLoader *loader, char **name);
extern uint64 SyncLoad(SyncLoader *loader, const char *dir,
					   const char *qualname, Oid relid, List *columns,
					   const char *key, int64 expected_rows);
extern Oid	SyncLoadAsText(SyncLoader *loader, const char *dir,
						   const char *qualname, List *columns,
						   const char *name, int64 expected_rows);
extern void SyncLoaderClose(SyncLoader *loader);

#endif							/* SYNC_LOAD_H */
