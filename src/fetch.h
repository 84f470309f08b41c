/*-------------------------------------------------------------------------
 *
 * fetch.h
 *		Fetching what another machine published, with libcurl.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SYNC_FETCH_H
#define SYNC_FETCH_H

#include "postgres.h"

#include "remote.h"

typedef struct SyncFetchResult
{
	long		http_status;
	uint64		bytes;
} SyncFetchResult;

extern char *SyncRemoteUrl(const SyncRemote *remote, const char *name);
extern char *SyncFetchIndex(const SyncRemote *remote, SyncFetchResult *result,
							 size_t *len);
extern void SyncFetchArchive(const SyncRemote *remote, const char *name,
							 int fd, char *sha256_hex,
							 SyncFetchResult *result);
extern int64 SyncPushedSize(const SyncRemote *target, const char *name,
							const char *what);
extern void SyncPushFile(const SyncRemote *target, const char *name,
						 const char *what, int fd, uint64 size);

#endif							/* SYNC_FETCH_H */
