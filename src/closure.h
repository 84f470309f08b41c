/*-------------------------------------------------------------------------
 *
 * closure.h
 *		Referential closure of a dump.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SYNC_CLOSURE_H
#define SYNC_CLOSURE_H

#include "postgres.h"

#include "utils/snapshot.h"

#include "helpers.h"

/* What the closure needs to know of a table of the dump, and finds out. */
typedef struct SyncClosureTable
{
	Oid			relid;
	const char *key;			/* quoted key column */
	const char *from;			/* the table as a FROM item */
	const char *keep_sql;		/* is local row t published by level and filter */
	char	   *ex_table;		/* keys of rows left out by closure, or NULL */
	int64		ex_rows;		/* rows in ex_table */
} SyncClosureTable;

extern void SyncDumpClosure(SyncClosureTable **tables, int ntables,
							const SyncRange *range, int level,
							Snapshot snapshot);

#endif							/* SYNC_CLOSURE_H */
