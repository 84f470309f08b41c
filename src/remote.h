/*-------------------------------------------------------------------------
 *
 * remote.h
 *		How to reach other machines (sync_remote): CA file, credentials,
 *		proxy.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SYNC_REMOTE_H
#define SYNC_REMOTE_H

#include "postgres.h"

#include "registry.h"

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

extern void SyncReadRemote(const SyncMachine *machine, const char *source,
						   SyncRemote *remote);
extern char *SyncSourceUrl(const char *source);
extern bool SyncReadPushTarget(SyncRemote *target);

#endif							/* SYNC_REMOTE_H */
