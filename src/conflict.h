/*-------------------------------------------------------------------------
 *
 * conflict.h
 *		Unique constraints during a merge: values that move between rows,
 *		and values another machine's row holds.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SYNC_CONFLICT_H
#define SYNC_CONFLICT_H

#include "postgres.h"

#include "nodes/pg_list.h"

#include "merge.h"

/* A unique constraint or index of a table, other than its key's. */
typedef struct SyncUnique
{
	char	   *name;			/* as named in messages */
	char	   *constraint;		/* quoted, qualified, if a deferrable constraint */
	List	   *columns;		/* column names */
	List	   *operators;		/* their equality operators: OPERATOR(schema.=) */
	bool		nulls_equal;	/* NULLS NOT DISTINCT */
	char	   *vacate;			/* a column that may be NULL, or NULL */
} SyncUnique;

/* What resolving a table's conflicts left out, for the log. */
typedef struct SyncSkipped
{
	int64		rows;
	char	   *keys;			/* the first of them */
} SyncSkipped;

extern List *SyncUniquesOf(Oid relid, AttrNumber key);
extern void SyncDeferUniques(List *uniques);
extern void SyncSkipConflicts(SyncMergeTarget *t, List *uniques,
							  bool skip_policy, int position);
extern void SyncSkipReferencing(SyncMergeTarget *t, const SyncMergeTarget *parent,
								SyncForeignKey *fk, int position);
extern int64 SyncSkipCount(const SyncMergeTarget *t);
extern bool SyncValuesMove(const SyncMergeTarget *t, List *uniques);
extern char *SyncFreeValuesSql(const SyncMergeTarget *t, List *uniques,
							   const char *alias);
extern char *SyncMovingValuesSql(const SyncMergeTarget *t, List *uniques,
								 const char *old, const char *new);
extern void SyncSetAsideMoves(SyncMergeTarget *t, List *uniques);
extern bool SyncSkippedRows(const SyncMergeTarget *t, SyncSkipped *skipped);

#endif							/* SYNC_CONFLICT_H */
