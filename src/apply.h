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

#include "conflict.h"
#include "format.h"
#include "merge.h"

/* One table of an archive, as the subscriber sees it. */
typedef struct PullTable
{
	SyncArchiveTable at;		/* as the archive's header and manifest say */

	/* from reading its data */
	char		sha256[SYNC_SHA256_HEX_LEN];
	int64		rows;
	int64		bytes;
	bool		seen;			/* its files were in the archive */
	SyncDigest	digest;			/* of its rows, as read */
	struct PullTable *del;		/* a delta's: the keys it deletes */
	Oid			left_out;		/* registered here, but not pulled this time */

	/* here */
	char	   *from;			/* qualname, with ONLY where children inherit */
	Oid			relid;			/* InvalidOid: not registered here */
	bool		unchanged;		/* same checksum as last applied */
	bool		folded;			/* a delta folded in changed it */
	bool		complete;		/* registered here, with all its columns */
	bool	   *local;			/* per column: the table here has it */
	bool		direct;			/* loaded straight into the table */
	char	   *stage;			/* staging table, or NULL */
	bool		prove;			/* a delta's: prove the copy (digests) */
#define SYNC_BASE_UNKNOWN (-2)	/* base_rows: no digest of the copy known */
	uint64		base_digest;	/* digest of the copy here before it */
	int64		base_rows;
	bool		key_unchecked;	/* no index here says the key is unique */
	bool		skip_conflicts; /* on_conflict = 'skip' */
	List	   *uniques;		/* SyncUnique: its other unique constraints */
	SyncMergeTarget mt;			/* what merging it works on */

	/* results */
	int64		inserted;
	int64		updated;
	int64		deleted;
	SyncSkipped skipped;		/* rows on_conflict left out */

	/* what sync_verify found (the first keys as bigint[] Datums) */
	int64		missing;
	int64		extra;
	int64		changed;
	Datum		first_missing;
	Datum		first_extra;
	Datum		first_changed;
} PullTable;

/* A whole pull. */
typedef struct Pull
{
	int64		machine_id;
	SyncRange	range;			/* the pulled machine's range here */
	const char *archive_path;	/* downloaded archive */
	uint64		unpacked;		/* bytes it unpacks to, as verified */
	PullTable  *tables;			/* parents first, as the archive has them */
	int			ntables;
	PullTable	registry;
	int64		inserted;
	int64		updated;
	int64		deleted;
	int64		skipped;		/* rows left out by on_conflict */
	char	   *skipped_json;	/* per table, rows and first keys left out */
	List	   *warnings;		/* messages also put into the log */
	MemoryContext cxt;			/* for what outlives SPI: warnings, skipped */
	char	   *session_path;	/* the caller's search_path */
	bool		verify;			/* compare only (sync_verify) */
	bool		delta;			/* the archive is a delta */
	List	   *folds;			/* Pulls: deltas that follow a full archive,
								 * folded into its staged rows */
	char	   *mismatch;		/* a table a delta did not prove, in cxt */
	List	   *only;			/* OIDs: pull these tables only (NIL: all) */
	List	   *leave_out;		/* OIDs: pull these tables not */
} Pull;

extern void SyncApplyArchive(Pull *pull);
extern void SyncVerifyArchive(Pull *pull);

#endif							/* SYNC_APPLY_H */
