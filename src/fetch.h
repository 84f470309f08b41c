/*-------------------------------------------------------------------------
 *
 * fetch.h
 *		Fetching what another machine published.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SYNC_FETCH_H
#define SYNC_FETCH_H

#include "postgres.h"

/* Where and how to reach a machine. */
typedef struct SyncRemote
{
	int64		machine_id;
	char	   *url;			/* its sync_url */
	char	   *ca_file;		/* CA certificates to trust, or NULL */
	char	   *username;		/* HTTP basic auth, or NULL */
	char	   *password;
	char	   *proxy;			/* proxy URL, or NULL */
} SyncRemote;

typedef struct SyncFetchResult
{
	long		http_status;
	uint64		bytes;
} SyncFetchResult;

extern char *SyncRemoteUrl(const SyncRemote *remote, const char *name);
extern char *SyncFetchIndex(const SyncRemote *remote, SyncFetchResult *result);
extern void SyncFetchArchive(const SyncRemote *remote, const char *name,
							 int fd, char *sha256_hex,
							 SyncFetchResult *result);

#endif							/* SYNC_FETCH_H */
