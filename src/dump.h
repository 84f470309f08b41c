/*-------------------------------------------------------------------------
 *
 * dump.h
 *		Types shared by the parts of sync_dump.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SYNC_DUMP_H
#define SYNC_DUMP_H

#include "postgres.h"

#include "archive.h"
#include "sync.h"

/* One table (or the registry) as it goes into a dump. */
typedef struct DumpTable
{
	Oid			relid;
	char	   *schema;			/* plain names, for the manifest */
	char	   *name;
	char	   *qualname;		/* quoted schema.table, for SQL */
	char	   *from;			/* qualname, with ONLY where children inherit */
	char	   *key;			/* quoted key column, for SQL */
	char	   *key_name;		/* plain key column, for the manifest */
	char	   *keep_sql;		/* whether a local row is published (alias t) */
	char	   *select_sql;		/* the published columns (alias t) */
	List	   *columns;		/* DumpColumn, in published order */
	char	   *dir;			/* archive directory of its files */
	char	   *ex_table;		/* rows left out by closure, or NULL */
	int64		ex_rows;		/* rows in ex_table */

	/* results */
	int64		rows;
	int64		excluded;
	List	   *files;			/* archive member names */
	char		sha256[SYNC_SHA256_HEX_LEN];
} DumpTable;

typedef struct DumpColumn
{
	char	   *name;
	char	   *type;			/* format_type_with_typemod */
	bool		anonymized;
} DumpColumn;

/* closure.c */
extern void SyncSortTablesByReferences(DumpTable *tables, int ntables);
extern void SyncDumpClosure(DumpTable *tables, int ntables,
							const SyncRange *range, int level,
							Snapshot snapshot);

#endif							/* SYNC_DUMP_H */
