/*-------------------------------------------------------------------------
 *
 * apply.h
 *		A verified archive, as the subscriber sees it, and merging it in.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SYNC_APPLY_H
#define SYNC_APPLY_H

#include "postgres.h"

#include "format.h"

/* One table of an archive, as the subscriber sees it. */
typedef struct PullTable
{
	SyncArchiveTable at;		/* as the archive's header and manifest say */

	/* from reading its data */
	char		sha256[SYNC_SHA256_HEX_LEN];
	int64		rows;
	bool		seen;			/* its files were in the archive */

	/* here */
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
	PullTable  *tables;			/* parents first, as the archive has them */
	int			ntables;
	PullTable	registry;
	int64		inserted;
	int64		updated;
	int64		deleted;
	List	   *warnings;		/* messages also put into the log */
	MemoryContext cxt;			/* for what outlives SPI: the warnings */
	char	   *session_path;	/* the caller's search_path */
} Pull;

extern void SyncApplyArchive(Pull *pull);

#endif							/* SYNC_APPLY_H */
