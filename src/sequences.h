/*-------------------------------------------------------------------------
 *
 * sequences.h
 *		Confining the sequences that feed registered keys to the local
 *		range, and counting the keys of a range.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SYNC_SEQUENCES_H
#define SYNC_SEQUENCES_H

#include "postgres.h"

#include "helpers.h"

extern void SyncConfineTableSequences(Oid relid, const char *key_column,
									  const SyncRange *range);
extern int64 SyncCountKeys(Oid relid, const char *key_column,
						   const SyncRange *range, const SyncRange *except);

#endif							/* SYNC_SEQUENCES_H */
