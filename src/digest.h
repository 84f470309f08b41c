/*-------------------------------------------------------------------------
 *
 * digest.h
 *		Digests of this server's copy of another machine's rows.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SYNC_DIGEST_H
#define SYNC_DIGEST_H

#include "postgres.h"

extern void SyncDigestQuery(const char *sql, uint64 *sum, int64 *rows);

#endif							/* SYNC_DIGEST_H */
