/*-------------------------------------------------------------------------
 *
 * keys.h
 *		The key of a registered table: its primary key, or a column the DBA
 *		named.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SYNC_KEYS_H
#define SYNC_KEYS_H

#include "postgres.h"

#include "utils/rel.h"
#include "utils/snapshot.h"

extern AttrNumber SyncTableKey(Relation rel, const char *declared,
							   bool *is_declared);
extern bool SyncKeyIsUnique(Relation rel, AttrNumber key);
extern char *SyncDuplicateKeys(const char *from, const char *key,
							   int64 start, int64 end, Snapshot snapshot);

#endif							/* SYNC_KEYS_H */
