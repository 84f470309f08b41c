/*-------------------------------------------------------------------------
 *
 * registry.h
 *		The machine registry (sync_machine) and this server's identity
 *		(sync_instance): every read and write of them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SYNC_REGISTRY_H
#define SYNC_REGISTRY_H

#include "postgres.h"

#include "helpers.h"

/* One registry entry. */
typedef struct SyncMachine
{
	int64		id;
	char	   *hostname;
	char	   *url;			/* sync_url, or NULL */
	char	   *contact;		/* sync_contact, or NULL */
	SyncRange	range;
} SyncMachine;

/*
 * What sync_register_machine was given: a NULL string (or no range) keeps
 * a known machine's value; an empty url or contact clears it.
 */
typedef struct SyncRegistration
{
	int64		id;
	const char *hostname;
	const char *url;
	const char *contact;
	bool		has_range;
	SyncRange	range;
} SyncRegistration;

/* reading */
extern bool SyncLookupMachine(int64 id, SyncMachine *machine);
extern void SyncFindMachine(bool by_name, int64 id, const char *hostname,
							SyncMachine *machine);
extern bool SyncMachineOwning(int64 key, SyncMachine *machine);
extern bool SyncLocalMachine(SyncMachine *machine);
extern void SyncRequireLocalMachine(SyncMachine *machine);
extern void SyncReportUnknownMachine(int64 id) pg_attribute_noreturn();

/* writing */
extern void SyncPrepareRegistration(const SyncRegistration *reg,
									SyncMachine *result);
extern void SyncStoreMachine(const SyncMachine *machine);
extern void SyncMergeRegistry(const char *stage, int64 publisher,
							  bool authority);
extern void SyncLockIdentity(void);
extern bool SyncRegistryWriting(void);
extern void SyncStoreIdentity(int64 id);

#endif							/* SYNC_REGISTRY_H */
