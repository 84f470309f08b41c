/*-------------------------------------------------------------------------
 *
 * reach.h
 *		What a merge's deletions and changes would reach through foreign
 *		keys.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SYNC_REACH_H
#define SYNC_REACH_H

#include "postgres.h"

#include "nodes/pg_list.h"

#include "merge.h"

extern void SyncCheckReach(const SyncMergeTarget *t,
						   const SyncMergeTarget *const *pulled, int npulled,
						   List *changing, const char *doomed);
extern char *SyncReferencedSql(const SyncMergeTarget *t, const char *alias);

#endif							/* SYNC_REACH_H */
