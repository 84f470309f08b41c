/*-------------------------------------------------------------------------
 *
 * log.h
 *		sync_log: recording every dump, pull and scheduled run.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SYNC_LOG_H
#define SYNC_LOG_H

#include "postgres.h"

#include "datatype/timestamp.h"

/* One row of sync_log; NULL strings and negative counts are stored as NULL. */
typedef struct SyncLogEntry
{
	const char *kind;			/* 'dump', 'pull' or 'verify' */
	int64		machine_id;		/* -1: none */
	int64		job_id;			/* -1: none */
	TimestampTz started_at;
	TimestampTz finished_at;
	const char *status;
	int64		tables;
	int64		rows;
	int64		excluded;
	int64		inserted;
	int64		updated;
	int64		deleted;
	int64		bytes;
	const char *message;
	const char *details;		/* JSON text */
	int64		local_changed;	/* rows of this server a pull's triggers changed */
	const char *sqlstate;		/* of a failure: its error's fields */
	const char *detail;
	const char *hint;
	const char *context;
} SyncLogEntry;

extern void SyncLogInit(SyncLogEntry *entry, const char *kind);
extern void SyncLogWrite(const SyncLogEntry *entry);
extern void SyncLogFailure(SyncLogEntry *entry, ErrorData *edata) pg_attribute_noreturn();
extern void SyncLogSetError(SyncLogEntry *entry, const ErrorData *edata);
extern void SyncLogCommitted(const SyncLogEntry *entry);
extern void SyncLogInsert(const SyncLogEntry *entry);
extern char *SyncLogPruneSql(void);

/*
 * entries this process wrote so far in transactions of their own, which
 * stay whatever the caller's transaction does (not those of
 * SyncLogCommitted, nor those that fell back to the caller's transaction)
 */
extern uint64 sync_log_writes;

/* in a job worker, the job being run (its log rows name it), else -1 */
extern int64 sync_current_job;

#endif							/* SYNC_LOG_H */
