/*-------------------------------------------------------------------------
 *
 * pull.h
 *		Types shared by the parts of sync_pull.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SYNC_PULL_H
#define SYNC_PULL_H

#include "postgres.h"

#include "archive.h"
#include "sync.h"

/* One table of an archive, as the subscriber sees it. */
typedef struct PullTable
{
	/* from the archive's header */
	char	   *schema;
	char	   *name;
	char	   *key;			/* key column name */
	char	   *dir;			/* its directory in the archive */
	int			ncolumns;
	char	  **columns;		/* column names, in COPY order */
	char	  **types;			/* their types at the publisher */
	int			key_index;		/* position of the key among columns */

	/* from reading its data, then from the manifest */
	char		sha256[SYNC_SHA256_HEX_LEN];
	int64		rows;
	char	   *manifest_sha256;
	int64		manifest_rows;
	bool		seen;			/* its files were in the archive */

	/* here */
	char	   *qualname;		/* quoted schema.table */
	char	   *from;			/* qualname, with ONLY where children inherit */
	Oid			relid;			/* InvalidOid: not registered here */
	bool		unchanged;		/* same checksum as last applied */
	bool		complete;		/* registered here, with all its columns */
	bool	   *local;			/* per column: the table here has it */
	bool		direct;			/* loaded straight into the table */
	char	   *stage;			/* staging table, or NULL */

	/* results */
	int64		inserted;
	int64		updated;
	int64		deleted;
} PullTable;

/* A whole pull. */
typedef struct Pull
{
	int64		machine_id;
	SyncRange	range;			/* the pulled machine's range here */
	const char *archive_path;	/* downloaded archive */
	const char *encoding;		/* of its COPY text */
	PullTable  *tables;
	int			ntables;
	PullTable	registry;
	int64		inserted;
	int64		updated;
	int64		deleted;
	List	   *warnings;		/* messages also put into the log */
	MemoryContext cxt;			/* for what outlives SPI: the warnings */
	char	   *session_path;	/* the caller's search_path */
} Pull;

/* apply.c */
extern void SyncApplyArchive(Pull *pull);
extern void SyncPullProgress(Pull *pull, const char *phase,
							 const char *table, int64 bytes, int64 rows);

#endif							/* SYNC_PULL_H */
