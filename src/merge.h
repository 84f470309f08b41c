/*-------------------------------------------------------------------------
 *
 * merge.h
 *		The statements of a merge, each checked against its plan.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SYNC_MERGE_H
#define SYNC_MERGE_H

#include "postgres.h"

#include "fkeys.h"
#include "helpers.h"

/* A table merged from its staging table. */
typedef struct SyncMergeTarget SyncMergeTarget;

/*
 * A child whose rows left out (on_conflict) keep the rows of the target
 * they reference from being deleted.
 */
typedef struct SyncKeeper
{
	const SyncMergeTarget *child;
	SyncForeignKey *fk;
} SyncKeeper;

struct SyncMergeTarget
{
	int64		machine_id;		/* the publisher */
	SyncRange	range;			/* its range here */
	Oid			relid;
	const char *qualname;		/* quoted schema.table, for messages */
	const char *from;			/* the table as a FROM item (ONLY ...) */
	const char *key;			/* quoted key column */
	const char *stage;			/* staging table: the archive's rows */
	Oid			stage_relid;
	const char *skip;			/* keys on_conflict left out, or NULL */
	const char *deleted;		/* a delta's keys deleted, or NULL: a full
								 * archive deletes the rows it lacks */
	bool		keyed;			/* a unique index on the key finds rows */
	int64		touched;		/* a delta's rows and deleted keys */
	List	   *keepers;		/* SyncKeeper */
};

extern int	SyncBeginKeyLookups(const SyncMergeTarget *t);
extern void SyncEndKeyLookups(int level);
extern char *SyncDeletedRowsSql(const SyncMergeTarget *t, const char *alias);
extern char *SyncNotSkippedSql(const SyncMergeTarget *t, const char *alias);
extern int64 SyncMergeInsert(const SyncMergeTarget *t, const char *columns,
							 const char *values, const char *condition);
extern int64 SyncMergeUpdate(const SyncMergeTarget *t, const char *set,
							 const char *old_row, const char *new_row,
							 const char *condition);
extern int64 SyncMergeSet(const SyncMergeTarget *t, const char *operation,
						  const char *set, const char *condition);
extern char *SyncDoom(const SyncMergeTarget *t, const char *condition,
					  const char *name, int64 *rows);
extern int64 SyncMergeDelete(const SyncMergeTarget *t, const char *doomed);
extern void SyncCheckUniqueKeys(const SyncMergeTarget *t, const char *what,
								const char *hint);

#endif							/* SYNC_MERGE_H */
