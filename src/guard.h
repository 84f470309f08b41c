/*-------------------------------------------------------------------------
 *
 * guard.h
 *		Ownership on this server: the guard of every registered table,
 *		which lets only a pull of machine N write N's rows.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SYNC_GUARD_H
#define SYNC_GUARD_H

#include "postgres.h"

#include "nodes/pg_list.h"

#include "helpers.h"

/* the names of the guard's triggers on a registered table */
#define SYNC_GUARD_TRIGGER "zz_sync_guard"
#define SYNC_GUARD_TRUNCATE_TRIGGER "zz_sync_guard_truncate"
/* and of its CHECK constraint */
#define SYNC_GUARD_CONSTRAINT "zz_sync_guard"

extern void SyncGuardInstall(Oid relid, const char *key_column);
extern void SyncGuardRemove(Oid relid);
extern void SyncGuardInvalidate(void);
extern void SyncGuardBeginPull(int64 machine_id);
extern int64 SyncGuardEndPull(void);
extern List *SyncWrittenTables(int64 machine_id);
extern void SyncForgetWritten(int64 machine_id, Oid relid);
extern int64 SyncCountUnowned(Oid relid, const char *key);
extern void SyncReportForeignRows(Oid relid, const char *key,
								  const SyncRange *local, bool writable);
extern void SyncWarnUnowned(Oid relid, int64 count, const SyncRange *local);

#endif							/* SYNC_GUARD_H */
